//! The bench's output: the machine it ran on, the tables printed at the end, the issue's
//! targets checked against the figures (reported, never enforced), and `bench/results.json`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::latency::{CLIENTS, MODES};

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn proc_field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// What the figures were measured on.
pub fn machine() -> Value {
    json!({
        "date_utc": first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        "kernel": first_line(Command::new("uname").arg("-r")),
        "arch": std::env::consts::ARCH,
        "cpu": proc_field("/proc/cpuinfo", "model name"),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": proc_field("/proc/meminfo", "MemTotal"),
        "git_commit": first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(crate::util::workspace_root())),
        "nginx": first_line(Command::new(super::nginx::NGINX).arg("-v")),
        "openssl": first_line(Command::new("openssl").arg("version")),
        "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The issue's targets, each with the figure it is judged on and whether it is met.
pub fn targets(r: &Value) -> Value {
    let lat = &r["latency"]["modes"];
    let added = |mode: &str, client: &str| f(&lat[mode]["clients"][client]["added_p50_us"]);
    let mut t = Vec::new();
    let mut push = |name: &str, figure: f64, limit: f64, met: bool| {
        if !figure.is_nan() && !limit.is_nan() {
            t.push(json!({"target": name, "figure": figure, "limit": limit, "met": met}));
        }
    };
    if !lat.is_null() {
        let raw = added("monitor", "raw_tls");
        push(
            "raw TLS client: added p50 ≤ 200 µs",
            raw,
            200.0,
            raw <= 200.0,
        );
        let nginx = added("nginx", "raw_tls");
        push(
            "raw TLS client: added p50 ≤ nginx TLS hop",
            raw,
            nginx,
            raw <= nginx,
        );
        let plain = added("monitor", "raw_plain");
        let nginx_plain = added("nginx", "raw_plain");
        push(
            "raw plaintext client: added p50 ≤ nginx plaintext hop",
            plain,
            nginx_plain,
            plain <= nginx_plain,
        );
        let sdk = added("monitor", "sdk_tls");
        let nginx_sdk = added("nginx", "sdk_tls");
        push(
            "SDK client: added p50 ≤ nginx hop",
            sdk,
            nginx_sdk,
            sdk <= nginx_sdk,
        );
        for client in ["raw_tls", "sdk_tls"] {
            let ratio = f(&r["latency"]["ratios"][client]["monitor_over_floor_own"]);
            push(
                &format!("{client}: agent ≤ 1.1× empty programs on its own hooks"),
                ratio,
                1.1,
                ratio <= 1.1,
            );
        }
    }
    if let Some(w) = r["host_tax"]["workloads"].as_object() {
        for (name, v) in w {
            let ratio = f(&v["time_ratio"]).max(f(&v["cpu_ratio"]));
            push(
                &format!("host tax {name}: ≤ 1.05× (worse of time and CPU)"),
                ratio,
                1.05,
                ratio <= 1.05,
            );
            if v.get("time_ratio_scoped").is_some() {
                let ratio = f(&v["time_ratio_scoped"]).max(f(&v["cpu_ratio_scoped"]));
                push(
                    &format!("host tax {name}, --tls-processes naming another program: ≤ 1.05×"),
                    ratio,
                    1.05,
                    ratio <= 1.05,
                );
            }
        }
    }
    if let Some(figs) = r["decoder"]["figures"].as_array() {
        let worst = figs
            .iter()
            .filter(|x| x["stage"] == "pipeline")
            .map(|x| f(&x["mb_per_s"]))
            .fold(f64::INFINITY, f64::min);
        if worst.is_finite() {
            push(
                "decoder (whole pipeline, slowest fixture) ≥ 300 MB/s per core",
                worst,
                300.0,
                worst >= 300.0,
            );
        }
    }
    let loss = &r["loss"];
    if !loss.is_null() {
        let un = f(&loss["unaccounted"]);
        push(
            &format!(
                "0 unaccounted loss at {} messages/s",
                loss["target_messages_per_s"]
            ),
            un,
            0.0,
            un == 0.0,
        );
        let counted = f(&loss["counted_loss_chunks_pct"]);
        push(
            "counted loss ≤ 0.1 % (ring chunks)",
            counted,
            0.1,
            counted <= 0.1,
        );
    }
    let idle = &r["idle_sessions"];
    if !idle.is_null() {
        let mib = f(&idle["agent_vm_rss_bytes"]) / 1048576.0;
        push(
            &format!("RSS ≤ 64 MiB at {} idle sessions", idle["sessions"]),
            (mib * 10.0).round() / 10.0,
            64.0,
            mib <= 64.0,
        );
    }
    Value::Array(t)
}

/// Prints the tables.
pub fn print(r: &Value) {
    let m = &r["machine"];
    println!(
        "\n== mcpwarden bench ({}) on {} ({} cores), Linux {}, {}; load average at start {}, at end {}",
        r["profile"].as_str().unwrap_or(""),
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["kernel"].as_str().unwrap_or("?"),
        m["date_utc"].as_str().unwrap_or(""),
        m["loadavg_at_start"].as_str().unwrap_or("?"),
        m["loadavg_at_end"].as_str().unwrap_or("?"),
    );
    let lat = &r["latency"];
    if !lat.is_null() {
        println!(
            "\nper-call latency, µs ({} rounds; {} raw / {} SDK calls per block; added = p50 − p50 of no agent (A); paired = median over rounds of the same difference per round)",
            lat["rounds"], lat["raw_calls_per_block"], lat["sdk_calls_per_block"]
        );
        print!("{:<22}", "mode");
        for (_, label) in CLIENTS {
            print!(" | {:^35}", label);
        }
        println!();
        print!("{:<22}", "");
        for _ in CLIENTS {
            print!(
                " | {:>8} {:>8} {:>8} {:>8}",
                "p50", "p99", "added", "paired"
            );
        }
        println!();
        for mode in MODES {
            let e = &lat["modes"][mode.key];
            print!("{:<22}", mode.name);
            for (client, _) in CLIENTS {
                let c = &e["clients"][client];
                print!(
                    " | {:>8.0} {:>8.0} {:>+8.0} {:>+8.0}",
                    f(&c["p50_us"]),
                    f(&c["p99_us"]),
                    f(&c["added_p50_us"]),
                    f(&c["added_p50_paired_us"])
                );
            }
            println!();
        }
        println!("\nagent added p50 as a multiple of: empty programs on its own hooks / on the obvious hooks / the nginx hop");
        for (client, label) in CLIENTS {
            let x = &lat["ratios"][client];
            println!(
                "  {:<28} {:>6} / {:>6} / {:>6}   (A/A noise {:+.0} µs)",
                label,
                x["monitor_over_floor_own"].to_string(),
                x["monitor_over_floor_obvious"].to_string(),
                x["monitor_over_nginx"].to_string(),
                f(&x["aa_noise_p50_us"])
            );
        }
        println!("\nobserver cost (summed over its blocks)");
        println!(
            "{:<22} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
            "mode", "ready ms", "start CPU ms", "CPU µs/msg", "CPU µs/call", "messages", "HWM MiB"
        );
        for mode in MODES {
            let o = &lat["modes"][mode.key]["observer"];
            if o.is_null() {
                continue;
            }
            println!(
                "{:<22} {:>10.0} {:>12.0} {:>12} {:>12} {:>12} {:>10.1}",
                mode.name,
                f(&o["ready_ms_mean"]),
                f(&o["startup_cpu_ms_mean"]),
                o["cpu_us_per_message"].to_string(),
                o["cpu_us_per_call"].to_string(),
                o["messages_reported"].to_string(),
                f(&o["vm_hwm_bytes"]) / 1048576.0
            );
        }
    }
    if let Some(w) = r["host_tax"]["workloads"].as_object() {
        println!(
            "\nhost tax (non-MCP work, with the agent vs without; {} rounds)",
            r["host_tax"]["rounds"]
        );
        println!(
            "{:<42} {:>12} {:>12} {:>8} {:>8}",
            "workload", "ns/op w/o", "ns/op with", "time ×", "CPU ×"
        );
        for v in w.values() {
            println!(
                "{:<42} {:>12.1} {:>12.1} {:>8} {:>8}",
                v["label"].as_str().unwrap_or(""),
                f(&v["ns_per_op_without"]),
                f(&v["ns_per_op_with"]),
                v["time_ratio"].to_string(),
                v["cpu_ratio"].to_string()
            );
        }
        let h = &r["host_tax"];
        println!(
            "the agent's counted loss over its blocks: ring full {} chunks, {} bytes; shed (not MCP, ring over half full) {} chunks, {} bytes",
            h["agent_ring_full_chunks"], h["agent_ring_full_bytes"], h["agent_shed_chunks"], h["agent_shed_bytes"]
        );
        println!(
            "exchanges the agent skipped as not MCP (not loss): {}, {} bytes",
            h["agent_exchanges_skipped"], h["agent_skipped_bytes"]
        );
        for v in w.values().filter(|v| v.get("time_ratio_no_skip").is_some()) {
            println!(
                "with --no-exchange-skip (every exchange carried), {}: {:.1} ns/op, time × {}, CPU × {}",
                v["label"].as_str().unwrap_or(""),
                f(&v["ns_per_op_with_no_skip"]),
                v["time_ratio_no_skip"],
                v["cpu_ratio_no_skip"]
            );
        }
        println!(
            "the no-skip agent's counted loss: ring full {} bytes; shed {} bytes",
            h["no_skip_ring_full_bytes"], h["no_skip_shed_bytes"]
        );
        for v in w.values().filter(|v| v.get("time_ratio_scoped").is_some()) {
            println!(
                "with --tls-processes {} (TLS uprobes only in that program), {}: {:.1} ns/op, time × {}, CPU × {}",
                h["scoped_program"].as_str().unwrap_or(""),
                v["label"].as_str().unwrap_or(""),
                f(&v["ns_per_op_with_scoped"]),
                v["time_ratio_scoped"],
                v["cpu_ratio_scoped"]
            );
        }
    }
    if let Some(modes) = r["hooks"]["modes"].as_object() {
        println!(
            "\nthe price of each kind of hook alone (median of {} rounds; ns per operation, added over none)",
            r["hooks"]["rounds"]
        );
        let loops = ["ssl", "tcp_echo", "pipe"];
        println!(
            "{:<13} {:>22} {:>22} {:>22}",
            "mode", "SSL write+read pair", "TCP echo round trip", "pipe write"
        );
        let order = [
            "none",
            "ssl-exports",
            "ssl-entry",
            "ssl-return",
            "ssl",
            "sock",
            "syscalls",
            "agent",
        ];
        for mode in order {
            let Some(per) = modes.get(mode) else {
                continue;
            };
            let cells: Vec<String> = loops
                .iter()
                .map(|w| {
                    format!(
                        "{:>9.0} ({:>+7.0})",
                        f(&per[w]["ns_per_op"]),
                        f(&per[w]["added_ns"])
                    )
                })
                .collect();
            println!(
                "{:<13} {:>22} {:>22} {:>22}",
                mode, cells[0], cells[1], cells[2]
            );
        }
    }
    let loss = &r["loss"];
    if !loss.is_null() {
        let lost = nonzero(&loss["loss_counters"]);
        println!(
            "\nloss: {} messages/s asked, {} achieved for {} s; records expected {} (both ends), reported {}, unaccounted {} ({} %), counted chunk loss {} %; non-zero loss counters: [{}]; agent CPU {} % of a core, HWM {:.1} MiB",
            loss["target_messages_per_s"],
            loss["achieved_messages_per_s"],
            loss["seconds"],
            loss["expected_records"],
            loss["reported_records"],
            loss["unaccounted"],
            loss["unaccounted_pct"],
            loss["counted_loss_chunks_pct"],
            lost.join(", "),
            loss["agent_cpu_pct_of_core"],
            f(&loss["agent_vm_hwm_bytes"]) / 1048576.0
        );
    }
    let idle = &r["idle_sessions"];
    if !idle.is_null() {
        println!(
            "idle sessions: {} handshakes (tracked by the agent: {}, settled after {} s), agent RSS {:.1} MiB (before {:.1} MiB, HWM {:.1} MiB); non-zero loss counters: [{}]",
            idle["sessions"],
            idle["tracked_sessions"],
            idle["settle_s"],
            f(&idle["agent_vm_rss_bytes"]) / 1048576.0,
            f(&idle["agent_vm_rss_bytes_before"]) / 1048576.0,
            f(&idle["agent_vm_hwm_bytes"]) / 1048576.0,
            nonzero(&idle["loss_counters"]).join(", ")
        );
    }
    if let Some(figs) = r["decoder"]["figures"].as_array() {
        println!("\ndecoder, one core");
        for x in figs {
            println!(
                "  {:<9} {:<20} {:>8.1} MB/s {:>10.0} {}",
                x["stage"].as_str().unwrap_or(""),
                x["fixture"].as_str().unwrap_or(""),
                f(&x["mb_per_s"]),
                f(&x["messages_per_s"]),
                x["unit"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(t) = r["targets"].as_array() {
        println!("\ntargets of issue 19 (reported, never enforced)");
        for x in t {
            println!(
                "  {:<4} {:<62} {:>10} (limit {})",
                if x["met"] == true { "met" } else { "NOT" },
                x["target"].as_str().unwrap_or(""),
                x["figure"].to_string(),
                x["limit"]
            );
        }
    }
    if let Some(parts) = r["part_seconds"].as_object() {
        println!(
            "\nwhere the run's {} s went",
            r["elapsed_s"].as_f64().unwrap_or(0.0)
        );
        for (part, s) in parts {
            println!("  {part:<34} {:>7.1} s", s.as_f64().unwrap_or(0.0));
        }
        match r["budget_minutes"].as_f64() {
            Some(m) => println!("  time budget: {m} minutes, setup and builds included"),
            None => println!("  time budget: none (every planned round)"),
        }
        for (key, label) in [
            ("latency", "latency"),
            ("host_tax", "host tax"),
            ("hooks", "hooks"),
            ("loss", "loss"),
            ("idle_sessions", "idle sessions"),
        ] {
            if let Some(plan) = r[key]["plan"].as_str().filter(|p| p.starts_with("short")) {
                println!("  {label}: {plan}");
            }
            let (done, planned) = (r[key]["rounds"].as_u64(), r[key]["rounds_planned"].as_u64());
            if let (Some(d), Some(p)) = (done, planned) {
                if d < p {
                    println!("  {label}: {d} of {p} planned rounds fit the budget");
                }
            }
        }
    }
}

/// Writes `path` (pretty JSON), creating its directory.
pub fn write(path: &Path, r: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(r)? + "\n")
        .with_context(|| format!("bench: writing {}", path.display()))?;
    println!("\nbench: wrote {}", path.display());
    Ok(())
}

/// The loss counters of a figure that are not zero, as `name=value`.
fn nonzero(counters: &Value) -> Vec<String> {
    counters
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default()
}
