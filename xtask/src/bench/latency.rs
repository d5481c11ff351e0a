//! Per-request latency, mode by mode, interleaved in rounds so machine drift hits every
//! mode alike: in each round every mode runs one block (its observer started, then the raw
//! TLS, raw plaintext and SDK clients one after another, then the observer stopped); the
//! order of the modes rotates from round to round. Two identical no-agent modes (A and B)
//! show the noise. The agent's start-up, CPU per message and peak RSS are read from `/proc`
//! around its blocks.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::agent::{self, Observer};
use super::budget::Rounds;
use super::nginx::Nginx;
use super::peers::{raw_client, sdk_client, Cert, SdkServer};
use super::stats::{mean, p50_p99, ratio, round1, round3};

/// One mode: what runs beside the traffic.
pub struct Mode {
    pub name: &'static str,
    pub key: &'static str,
    pub observer: Option<Observer>,
    pub nginx: bool,
}

pub const MODES: &[Mode] = &[
    Mode {
        name: "no agent (A)",
        key: "none_a",
        observer: None,
        nginx: false,
    },
    Mode {
        name: "no agent (B)",
        key: "none_b",
        observer: None,
        nginx: false,
    },
    Mode {
        name: "agent monitor",
        key: "monitor",
        observer: Some(Observer::Monitor),
        nginx: false,
    },
    Mode {
        name: "agent policy+schema",
        key: "policy",
        observer: Some(Observer::Policy),
        nginx: false,
    },
    Mode {
        name: "agent hold",
        key: "hold",
        observer: Some(Observer::Hold),
        nginx: false,
    },
    Mode {
        name: "nginx proxy hop",
        key: "nginx",
        observer: None,
        nginx: true,
    },
    Mode {
        name: "floor: own hooks",
        key: "floor_own",
        observer: Some(Observer::FloorOwn),
        nginx: false,
    },
    Mode {
        name: "floor: obvious hooks",
        key: "floor_obvious",
        observer: Some(Observer::FloorObvious),
        nginx: false,
    },
];

/// The clients of every block.
pub const CLIENTS: &[(&str, &str)] = &[
    ("raw_tls", "raw keep-alive TLS"),
    ("raw_plain", "raw keep-alive plaintext"),
    ("sdk_tls", "Python SDK client (TLS)"),
];

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct LatencyPlan {
    pub rounds: usize,
    pub raw_calls: usize,
    pub sdk_calls: usize,
}

/// What the agent cost in one mode, summed over its blocks.
#[derive(Debug, Default)]
struct ObserverCost {
    ready_ms: Vec<f64>,
    startup_cpu_s: Vec<f64>,
    run_cpu_s: f64,
    total_cpu_s: f64,
    messages: u64,
    calls: u64,
    hwm_bytes: u64,
}

/// Runs the rounds; returns the `latency` part of results.json.
pub fn run(dir: &Path, cert: &Cert, plan: LatencyPlan, budget: Option<Duration>) -> Result<Value> {
    let tls = SdkServer::start(Some(cert))?;
    let plain = SdkServer::start(None)?;
    // Warm the servers (first-call imports, TLS session setup) outside every block.
    raw_client(&url("https", tls.port), 20, Some(&cert.cert))?;
    raw_client(&url("http", plain.port), 20, None)?;
    let mut samples: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    // p50 of each block, by round: (mode, client) → [p50 of round 0, 1, …].
    let mut block_p50: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut costs: BTreeMap<&str, ObserverCost> = BTreeMap::new();
    let mut n = 0;
    let mut rounds = Rounds::new(plan.rounds, budget);
    while let Some(round) = rounds.next() {
        for k in 0..MODES.len() {
            let mode = &MODES[(k + round) % MODES.len()];
            n += 1;
            eprintln!(
                "bench: latency round {}/{}: {}",
                round + 1,
                rounds.planned(),
                mode.name
            );
            let running = match mode.observer {
                Some(o) => Some(agent::start(dir, o, n, 0)?),
                None => None,
            };
            let proxy = if mode.nginx {
                let d = dir.join(format!("nginx-{n}"));
                std::fs::create_dir_all(&d)?;
                Some(Nginx::start(&d, cert, tls.port, plain.port)?)
            } else {
                None
            };
            let (tls_port, plain_port) = match &proxy {
                Some(p) => (p.tls_port, p.plain_port),
                None => (tls.port, plain.port),
            };
            let cpu_before = match &running {
                Some(r) => r.cpu_seconds()?,
                None => 0.0,
            };
            let tls_url = url("https", tls_port);
            let blocks = [
                (
                    "raw_tls",
                    raw_client(&tls_url, plan.raw_calls, Some(&cert.cert))?,
                ),
                (
                    "raw_plain",
                    raw_client(&url("http", plain_port), plan.raw_calls, None)?,
                ),
                (
                    "sdk_tls",
                    sdk_client(&tls_url, plan.sdk_calls, Some(&cert.cert))?,
                ),
            ];
            for (client, us) in blocks {
                block_p50
                    .entry((mode.key, client))
                    .or_default()
                    .push(p50_p99(&us).0);
                samples.entry((mode.key, client)).or_default().extend(us);
            }
            drop(proxy);
            if let Some(r) = running {
                let is_agent = r.observer.is_agent();
                // Let the agent drain what the clients just said before reading its CPU.
                std::thread::sleep(Duration::from_millis(if is_agent { 300 } else { 0 }));
                let cpu_after = r.cpu_seconds()?;
                let cost = costs.entry(mode.key).or_default();
                cost.ready_ms.push(r.ready_after.as_secs_f64() * 1000.0);
                cost.startup_cpu_s.push(r.startup_cpu);
                cost.run_cpu_s += cpu_after - cpu_before;
                cost.total_cpu_s += cpu_after;
                cost.hwm_bytes = cost.hwm_bytes.max(r.hwm_bytes()?);
                cost.calls += (2 * plan.raw_calls + plan.sdk_calls) as u64;
                let records = r.stop()?;
                cost.messages += agent::message_count(&records);
            }
        }
    }
    rounds.say_if_cut("latency");
    Ok(report(&samples, &block_p50, &costs, plan, &rounds))
}

fn url(scheme: &str, port: u16) -> String {
    format!("{scheme}://127.0.0.1:{port}/mcp")
}

/// The median over rounds of (this mode's block p50 − no agent (A)'s block p50 in the same
/// round): the added p50 with slow drift paired away.
fn paired_added(block_p50: &BTreeMap<(&str, &str), Vec<f64>>, mode: &str, client: &str) -> f64 {
    let (Some(m), Some(base)) = (
        block_p50.get(&(mode, client)),
        block_p50.get(&("none_a", client)),
    ) else {
        return 0.0;
    };
    let deltas: Vec<f64> = m.iter().zip(base).map(|(a, b)| a - b).collect();
    p50_p99(&deltas).0
}

fn report(
    samples: &BTreeMap<(&str, &str), Vec<f64>>,
    block_p50: &BTreeMap<(&str, &str), Vec<f64>>,
    costs: &BTreeMap<&str, ObserverCost>,
    plan: LatencyPlan,
    rounds: &Rounds,
) -> Value {
    let stat = |mode: &str, client: &str| -> (f64, f64) {
        samples
            .get(&(mode, client))
            .map(|s| p50_p99(s))
            .unwrap_or_default()
    };
    let mut modes = serde_json::Map::new();
    for mode in MODES {
        let mut clients = serde_json::Map::new();
        for (client, _) in CLIENTS {
            let (p50, p99) = stat(mode.key, client);
            let (base, _) = stat("none_a", client);
            clients.insert(
                client.to_string(),
                json!({
                    "p50_us": round1(p50),
                    "p99_us": round1(p99),
                    "added_p50_us": round1(p50 - base),
                    "added_p50_paired_us": round1(paired_added(block_p50, mode.key, client)),
                    "samples": samples.get(&(mode.key, *client)).map_or(0, Vec::len),
                }),
            );
        }
        let mut entry = json!({ "name": mode.name, "clients": clients });
        if let Some(c) = costs.get(mode.key) {
            entry["observer"] = json!({
                "ready_ms_mean": round1(mean(&c.ready_ms)),
                "startup_cpu_ms_mean": round1(mean(&c.startup_cpu_s) * 1000.0),
                "run_cpu_s": round3(c.run_cpu_s),
                "messages_reported": c.messages,
                "tools_calls": c.calls,
                "cpu_us_per_message": if c.messages > 0 { json!(round1(c.run_cpu_s * 1e6 / c.messages as f64)) } else { Value::Null },
                "cpu_us_per_message_with_startup": if c.messages > 0 { json!(round1(c.total_cpu_s * 1e6 / c.messages as f64)) } else { Value::Null },
                "cpu_us_per_call": if c.calls > 0 && c.messages > 0 { json!(round1(c.run_cpu_s * 1e6 / c.calls as f64)) } else { Value::Null },
                "vm_hwm_bytes": c.hwm_bytes,
            });
        }
        modes.insert(mode.key.to_string(), entry);
    }
    // Added p50 of the agent over the floor and over the proxy, per client.
    let mut ratios = serde_json::Map::new();
    for (client, _) in CLIENTS {
        let added = |m: &str| stat(m, client).0 - stat("none_a", client).0;
        ratios.insert(
            client.to_string(),
            json!({
                "monitor_over_floor_own": ratio(added("monitor"), added("floor_own")),
                "monitor_over_floor_obvious": ratio(added("monitor"), added("floor_obvious")),
                "monitor_over_nginx": ratio(added("monitor"), added("nginx")),
                "aa_noise_p50_us": round1(added("none_b")),
            }),
        );
    }
    json!({
        "rounds": rounds.done(),
        "rounds_planned": rounds.planned(),
        "raw_calls_per_block": plan.raw_calls,
        "sdk_calls_per_block": plan.sdk_calls,
        "modes": modes,
        "ratios": ratios,
    })
}
