//! `cargo xtask bench`, enforcement part (root): what the policy and the hold add to a real
//! MCP call. The official Python SDK server (`tests/peers/python/policy_server.py`) and a
//! scripted SDK client (`policy_client.py`) run the same session of `tools/call add` calls
//! with no agent, with the agent judging them (`--enforce reset`, the README's minimal policy:
//! every call judged and allowed) and with every call held and released (`--enforce hold`);
//! blocks are interleaved in rounds so machine drift hits every mode alike. Prints p50/p99 per
//! mode and the added p50 over no agent. Figures only; never fails on time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::agent_binary;
use crate::util::{is_root, workspace_root};

const MINIMAL: &str =
    "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";
const MODES: [(&str, Option<&str>); 3] = [
    ("no agent", None),
    ("agent, policy, reset", Some("reset")),
    ("agent, policy, hold", Some("hold")),
];

/// Kills a child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("bench: {what} did not happen within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_agent(dir: &Path, mode: &str) -> Result<Guard> {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, MINIMAL)?;
    let ready = dir.join(format!("ready-{mode}"));
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(agent_binary())
        .args(["run", "--enforce", mode, "--output"])
        .arg(dir.join(format!("records-{mode}.jsonl")))
        .arg("--policy")
        .arg(&policy)
        .arg("--control-socket")
        .arg(dir.join(format!("control-{mode}.sock")))
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("bench: starting the agent")?;
    let guard = Guard(child);
    wait_for("the agent attaching", || ready.exists())?;
    Ok(guard)
}

/// Milliseconds of each `add` call of one client run.
fn client_run(python: &Path, url: &str, calls: usize) -> Result<Vec<f64>> {
    let mut ops = vec![serde_json::json!({"op": "list"})];
    for i in 0..calls {
        ops.push(serde_json::json!({"op": "call", "tool": "add", "args": {"a": i, "b": 1}}));
    }
    let script = serde_json::Value::Array(vec![serde_json::Value::Array(ops)]);
    let out = Command::new(python)
        .arg(workspace_root().join("tests/peers/python/policy_client.py"))
        .arg(url)
        .arg("--script")
        .arg(script.to_string())
        .output()
        .context("bench: running the SDK client")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("bench: the client's summary")?;
    let ms: Vec<f64> = v["sessions"][0]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter(|o| o["op"] == "call" && o["outcome"] == "ok")
                .filter_map(|o| o["ms"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    if ms.len() != calls {
        bail!("bench: {} of {calls} calls succeeded: {v}", ms.len());
    }
    Ok(ms)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the enforcement latency comparison (`rounds` rounds of `calls` calls per mode).
pub fn hold_latency(rounds: usize, calls: usize) -> Result<()> {
    if !is_root() {
        println!("bench: enforcement latency skipped: needs root (the agent loads eBPF programs)");
        return Ok(());
    }
    let python: PathBuf = workspace_root().join(".venv/bin/python");
    if !python.is_file() || !agent_binary().is_file() {
        bail!("bench: enforcement latency needs `cargo xtask setup` and `cargo xtask build` first");
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let server = Guard(
        Command::new(&python)
            .arg(workspace_root().join("tests/peers/python/policy_server.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("bench: starting the SDK server")?,
    );
    wait_for("the SDK server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for _ in 0..rounds {
        for (i, (_, mode)) in MODES.iter().enumerate() {
            let agent = match mode {
                Some(m) => Some(start_agent(dir.path(), m)?),
                None => None,
            };
            samples[i].extend(client_run(&python, &url, calls)?);
            drop(agent);
        }
    }
    drop(server);
    println!("\nenforcement latency: Python SDK client → Python SDK server, plaintext loopback, tools/call add ({rounds} rounds × {calls} calls per mode)");
    println!(
        "{:<24} {:>10} {:>10} {:>14}",
        "mode", "p50 ms", "p99 ms", "added p50 ms"
    );
    let mut base = 0.0;
    for (i, (name, _)) in MODES.iter().enumerate() {
        let mut s = samples[i].clone();
        s.sort_by(f64::total_cmp);
        let p50 = pct(&s, 0.5);
        if i == 0 {
            base = p50;
        }
        println!(
            "{:<24} {:>10.3} {:>10.3} {:>14.3}",
            name,
            p50,
            pct(&s, 0.99),
            p50 - base
        );
    }
    Ok(())
}
