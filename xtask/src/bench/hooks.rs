//! The price of each kind of hook, alone: the figures behind the agent's hook design.
//! Three loops of `tests/bench/host_tax.py` run with no observer, with empty programs on one
//! kind of hook at a time (`mcpwarden floor --hooks SET`), and with the agent (monitor),
//! interleaved in rounds:
//! - `ssl`: one `SSL_write_ex` and one `SSL_read_ex` per operation over memory BIOs (no
//!   socket): the SSL probes alone, as the agent places them (`ssl-entry`, `ssl-return`,
//!   `ssl`) and on the exported symbols (`ssl-exports`, the placement a first design uses);
//! - `tcp_echo`: a 64-byte round trip on loopback (two sends, two receives);
//! - `pipe`: a 64-byte write to a pipe.
//!
//! The tracepoint sets are the agent's (`sock`: `sock_send_length`, `sock_recv_length`,
//! `inet_sock_set_state`, `sched_process_exec`/`exit`) and the obvious syscall ones
//! (`syscalls`: `sys_{enter,exit}_{read,write,sendto,recvfrom}`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::agent::{self, Observer};
use super::budget::Rounds;
use super::host_tax::python_workload;
use super::peers::Cert;
use super::stats::{p50_p99, round1};

/// Operations per loop, and rounds.
#[derive(Debug, Clone, Copy)]
pub struct HooksPlan {
    pub rounds: usize,
    pub ssl_pairs: u64,
    pub tcp_round_trips: u64,
    pub pipe_writes: u64,
}

/// (mode, floor hook set or none for "no observer"/"agent").
const MODES: &[(&str, Option<&str>)] = &[
    ("none", None),
    ("ssl-exports", Some("ssl-exports")),
    ("ssl-entry", Some("ssl-entry")),
    ("ssl-return", Some("ssl-return")),
    ("ssl", Some("ssl")),
    ("sock", Some("sock")),
    ("syscalls", Some("syscalls")),
    ("agent", None),
];

/// (workload, host_tax.py argument, label).
pub const LOOPS: &[(&str, &str, &str)] = &[
    (
        "ssl",
        "ssl",
        "SSL_write_ex + SSL_read_ex, memory BIOs (ns per pair)",
    ),
    (
        "tcp_echo",
        "tcp",
        "TCP echo, 64 B, loopback (ns per round trip)",
    ),
    ("pipe", "pipe", "pipe write, 64 B (ns per write)"),
];

fn ops(plan: HooksPlan, workload: &str) -> u64 {
    match workload {
        "ssl" => plan.ssl_pairs,
        "tcp_echo" => plan.tcp_round_trips,
        _ => plan.pipe_writes,
    }
}

/// Runs the rounds; returns the `hooks` part of results.json.
pub fn run(dir: &Path, cert: &Cert, plan: HooksPlan, budget: Option<Duration>) -> Result<Value> {
    // (mode, workload) → ns per operation, one per round
    let mut ns: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut n = 3000;
    let mut rounds = Rounds::new(plan.rounds, budget);
    while let Some(round) = rounds.next() {
        // Rotate the order so drift hits every mode alike.
        for i in 0..MODES.len() {
            let (mode, set) = MODES[(i + round) % MODES.len()];
            eprintln!(
                "bench: hooks round {}/{}: {mode}",
                round + 1,
                rounds.planned()
            );
            n += 1;
            let observer = match (mode, set) {
                ("agent", _) => Some(agent::start(dir, Observer::Monitor, n, 0)?),
                (_, Some(set)) => Some(agent::start(dir, Observer::FloorSet(set), n, 0)?),
                _ => None,
            };
            for (workload, arg, _) in LOOPS {
                let (per_op, _cpu) = python_workload(arg, ops(plan, workload), cert)?;
                ns.entry((mode, workload)).or_default().push(per_op);
            }
            if let Some(o) = observer {
                o.stop()?;
            }
        }
    }
    rounds.say_if_cut("hooks");
    // The median of the rounds: one slow round (other work on the host) does not move it.
    let median =
        |mode: &str, workload: &str| p50_p99(ns.get(&(mode, workload)).map_or(&[][..], |v| v)).0;
    let base = |workload: &str| median("none", workload);
    let mut modes = serde_json::Map::new();
    for (mode, _) in MODES {
        let mut per = serde_json::Map::new();
        for (workload, _, _) in LOOPS {
            let m = median(mode, workload);
            per.insert(
                workload.to_string(),
                json!({"ns_per_op": round1(m), "added_ns": round1(m - base(workload))}),
            );
        }
        modes.insert(mode.to_string(), Value::Object(per));
    }
    let loops: serde_json::Map<String, Value> = LOOPS
        .iter()
        .map(|(w, _, label)| (w.to_string(), json!({"label": label, "ops": ops(plan, w)})))
        .collect();
    Ok(json!({
        "rounds": rounds.done(),
        "rounds_planned": rounds.planned(),
        "loops": loops,
        "modes": modes,
    }))
}
