//! Host tax: what the agent costs the host's non-MCP work. Five workloads, each run with
//! and without the agent (`mcpwarden run`, monitor), interleaved in rounds: `dd bs=1` from
//! /dev/zero to /dev/null (two syscalls per byte, no sockets), a write loop to a pipe, a TCP
//! echo loop on loopback, an HTTPS client loop (keep-alive, plain text answers) and an HTTPS
//! download loop (keep-alive, 1 MiB bodies). Each workload's wall time per operation and the
//! CPU of its process tree are compared; the agent's counted ring loss over its blocks is
//! reported too. The two HTTPS workloads also run with the agent carrying every exchange
//! (`--no-exchange-skip`), in the same rounds: what exchange skipping saves; and with the TLS
//! uprobes only in a program of another name (`--tls-processes`): what per-process attachment
//! saves the processes it leaves out.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::agent::{self, Observer};
use super::budget::Rounds;
use super::peers::{python, script, Cert};
use super::procs::children_cpu_seconds;
use super::stats::{mean, ratio, round1, round3};

/// Operations per workload run.
#[derive(Debug, Clone, Copy)]
pub struct HostTaxPlan {
    pub rounds: usize,
    pub dd_bytes: u64,
    pub pipe_writes: u64,
    pub tcp_round_trips: u64,
    pub https_requests: u64,
    /// 1 MiB downloads per run.
    pub downloads: u64,
}

/// In the order they run; the download goes last: the agent is still digesting its bytes for
/// a while after it ends, and would tax whatever ran next.
pub const WORKLOADS: &[(&str, &str)] = &[
    ("dd", "dd bs=1 /dev/zero → /dev/null"),
    ("pipe", "write loop to a pipe (64 B)"),
    ("tcp_echo", "TCP echo loop (64 B, loopback)"),
    ("https", "HTTPS client loop (keep-alive, non-MCP)"),
    (
        "https_download",
        "HTTPS download loop (1 MiB bodies, non-MCP)",
    ),
];

/// One run: (ns per operation, CPU seconds of the process tree).
fn run_one(what: &str, plan: HostTaxPlan, cert: &Cert) -> Result<(f64, f64)> {
    if what != "dd" {
        let (arg, n) = match what {
            "pipe" => ("pipe", plan.pipe_writes),
            "tcp_echo" => ("tcp", plan.tcp_round_trips),
            "https_download" => ("download", plan.downloads),
            _ => ("https", plan.https_requests),
        };
        return python_workload(arg, n, cert);
    }
    let cpu0 = children_cpu_seconds();
    let t0 = Instant::now();
    let out = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1"])
        .arg(format!("count={}", plan.dd_bytes))
        .output()
        .context("bench: running dd")?;
    if !out.status.success() {
        bail!("bench: dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // dd: the whole run is the loop.
    let ns = t0.elapsed().as_secs_f64() * 1e9 / plan.dd_bytes as f64;
    Ok((ns, children_cpu_seconds() - cpu0))
}

/// One run of `tests/bench/host_tax.py ARG N` (`pipe`, `tcp`, `https`, `download`, `ssl`): (ns per
/// operation as the loop timed itself, without the interpreter's start; CPU seconds of the
/// process tree).
pub fn python_workload(arg: &str, n: u64, cert: &Cert) -> Result<(f64, f64)> {
    let cpu0 = children_cpu_seconds();
    let mut cmd = Command::new(python()?);
    cmd.arg(script("tests/bench/host_tax.py"))
        .arg(arg)
        .arg(n.to_string());
    if matches!(arg, "https" | "ssl" | "download") {
        cmd.arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key);
    }
    let out = cmd.output().context("bench: running host_tax.py")?;
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench: host_tax.py {arg}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let ns = v["ns_per_op"]
        .as_f64()
        .with_context(|| format!("bench: host_tax.py {arg} printed no ns_per_op: {v}"))?;
    Ok((ns, children_cpu_seconds() - cpu0))
}

/// Runs the rounds; returns the `host_tax` part of results.json.
pub fn run(dir: &Path, cert: &Cert, plan: HostTaxPlan, budget: Option<Duration>) -> Result<Value> {
    // (workload, arm) → [(ns/op, cpu s)]
    let mut runs: BTreeMap<(&str, Arm), Vec<(f64, f64)>> = BTreeMap::new();
    let mut n = 1000;
    // The agent's counted ring loss over its blocks: (chunks, bytes) lost to a full ring,
    // and shed; and what it skipped as not MCP (see the README's "What is counted"), per arm.
    let mut counted: BTreeMap<Arm, [u64; 6]> = BTreeMap::new();
    let mut rounds = Rounds::new(plan.rounds, budget);
    while let Some(round) = rounds.next() {
        // Rotate which arm goes first.
        for k in 0..ARMS.len() {
            let arm = ARMS[(k + round) % ARMS.len()];
            eprintln!(
                "bench: host tax round {}/{}: {}",
                round + 1,
                rounds.planned(),
                arm.label()
            );
            n += 1;
            let agent = match arm.observer() {
                Some(o) => Some(agent::start(dir, o, n, 0)?),
                None => None,
            };
            for (what, _) in WORKLOADS {
                if matches!(arm, Arm::AgentNoSkip | Arm::AgentScoped)
                    && !HTTP_WORKLOADS.contains(what)
                {
                    continue;
                }
                runs.entry((what, arm))
                    .or_default()
                    .push(run_one(what, plan, cert)?);
            }
            if let Some(a) = agent {
                let records = a.stop()?;
                if let Some(h) = agent::last_health(&records) {
                    let c = counted.entry(arm).or_default();
                    for (i, name) in COUNTED.iter().enumerate() {
                        c[i] += h["kernel"][*name].as_u64().unwrap_or(0);
                    }
                }
            }
        }
    }
    rounds.say_if_cut("host tax");
    let mut out = serde_json::Map::new();
    for (what, label) in WORKLOADS {
        let get = |arm: Arm| runs.get(&(*what, arm)).cloned().unwrap_or_default();
        let (without, with, no_skip) = (get(Arm::None), get(Arm::Agent), get(Arm::AgentNoSkip));
        let scoped = get(Arm::AgentScoped);
        let ns = |v: &[(f64, f64)]| mean(&v.iter().map(|x| x.0).collect::<Vec<_>>());
        let cpu = |v: &[(f64, f64)]| mean(&v.iter().map(|x| x.1).collect::<Vec<_>>());
        let mut w = json!({
            "label": label,
            "ns_per_op_without": round1(ns(&without)),
            "ns_per_op_with": round1(ns(&with)),
            "time_ratio": ratio(ns(&with), ns(&without)),
            "cpu_s_without": round3(cpu(&without)),
            "cpu_s_with": round3(cpu(&with)),
            "cpu_ratio": ratio(cpu(&with), cpu(&without)),
        });
        if !no_skip.is_empty() {
            w["ns_per_op_with_no_skip"] = json!(round1(ns(&no_skip)));
            w["time_ratio_no_skip"] = json!(ratio(ns(&no_skip), ns(&without)));
            w["cpu_s_with_no_skip"] = json!(round3(cpu(&no_skip)));
            w["cpu_ratio_no_skip"] = json!(ratio(cpu(&no_skip), cpu(&without)));
        }
        if !scoped.is_empty() {
            w["ns_per_op_with_scoped"] = json!(round1(ns(&scoped)));
            w["time_ratio_scoped"] = json!(ratio(ns(&scoped), ns(&without)));
            w["cpu_s_with_scoped"] = json!(round3(cpu(&scoped)));
            w["cpu_ratio_scoped"] = json!(ratio(cpu(&scoped), cpu(&without)));
        }
        out.insert(what.to_string(), w);
    }
    let c = |arm: Arm, i: usize| counted.get(&arm).map_or(0, |c| c[i]);
    Ok(json!({
        "rounds": rounds.done(),
        "rounds_planned": rounds.planned(),
        "dd_bytes": plan.dd_bytes,
        "pipe_writes": plan.pipe_writes,
        "tcp_round_trips": plan.tcp_round_trips,
        "https_requests": plan.https_requests,
        "downloads": plan.downloads,
        "agent_ring_full_chunks": c(Arm::Agent, 0),
        "agent_ring_full_bytes": c(Arm::Agent, 1),
        "agent_shed_chunks": c(Arm::Agent, 2),
        "agent_shed_bytes": c(Arm::Agent, 3),
        "agent_exchanges_skipped": c(Arm::Agent, 4),
        "agent_skipped_bytes": c(Arm::Agent, 5),
        "no_skip_ring_full_bytes": c(Arm::AgentNoSkip, 1),
        "no_skip_shed_bytes": c(Arm::AgentNoSkip, 3),
        "scoped_program": super::agent::SCOPED_PROGRAM,
        "workloads": out,
    }))
}

/// Kernel counters summed over an arm's blocks (final health records).
const COUNTED: [&str; 6] = [
    "ring_full_chunks",
    "ring_full_bytes",
    "shed_chunks",
    "shed_bytes",
    "exchanges_skipped",
    "skipped_bytes",
];

/// The workloads the no-skip arm runs (the others carry no HTTP: skipping cannot matter).
const HTTP_WORKLOADS: &[&str] = &["https", "https_download"];

/// What runs beside the workloads in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    None,
    Agent,
    AgentNoSkip,
    AgentScoped,
}

const ARMS: [Arm; 4] = [Arm::None, Arm::Agent, Arm::AgentNoSkip, Arm::AgentScoped];

impl Arm {
    fn observer(self) -> Option<Observer> {
        match self {
            Arm::None => None,
            Arm::Agent => Some(Observer::Monitor),
            Arm::AgentNoSkip => Some(Observer::MonitorNoSkip),
            Arm::AgentScoped => Some(Observer::MonitorScoped),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Arm::None => "no agent",
            Arm::Agent => "agent",
            Arm::AgentNoSkip => "agent, --no-exchange-skip",
            Arm::AgentScoped => "agent, --tls-processes naming another program",
        }
    }
}
