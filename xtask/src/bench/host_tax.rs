//! Host tax: what the agent costs the host's non-MCP work. Five workloads, each run with
//! and without the agent (`mcpwarden run`, monitor), interleaved in rounds: `dd bs=1` from
//! /dev/zero to /dev/null (two syscalls per byte, no sockets), a write loop to a pipe, a TCP
//! echo loop on loopback, an HTTPS client loop (keep-alive, plain text answers) and an HTTPS
//! download loop (keep-alive, 1 MiB bodies). Each workload's wall time per operation and the
//! CPU of its process tree are compared; the agent's counted ring loss over its blocks is
//! reported too (bulk HTTP that is not MCP still crosses the ring).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::agent::{self, Observer};
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
pub fn run(dir: &Path, cert: &Cert, plan: HostTaxPlan) -> Result<Value> {
    // (workload, with agent) → [(ns/op, cpu s)]
    let mut runs: BTreeMap<(&str, bool), Vec<(f64, f64)>> = BTreeMap::new();
    let mut n = 1000;
    // The agent's counted ring loss over its blocks: (chunks, bytes) lost to a full ring,
    // and shed (see the README's "What is counted").
    let (mut lost_chunks, mut lost_bytes) = (0u64, 0u64);
    let (mut shed_chunks, mut shed_bytes) = (0u64, 0u64);
    for round in 0..plan.rounds {
        // Alternate which half goes first.
        for half in 0..2 {
            let with_agent = (round + half) % 2 == 1;
            eprintln!(
                "bench: host tax round {}/{}: {}",
                round + 1,
                plan.rounds,
                if with_agent { "agent" } else { "no agent" }
            );
            n += 1;
            let agent = if with_agent {
                Some(agent::start(dir, Observer::Monitor, n, 0)?)
            } else {
                None
            };
            for (what, _) in WORKLOADS {
                runs.entry((what, with_agent))
                    .or_default()
                    .push(run_one(what, plan, cert)?);
            }
            if let Some(a) = agent {
                let records = a.stop()?;
                if let Some(h) = agent::last_health(&records) {
                    lost_chunks += h["kernel"]["ring_full_chunks"].as_u64().unwrap_or(0);
                    lost_bytes += h["kernel"]["ring_full_bytes"].as_u64().unwrap_or(0);
                    shed_chunks += h["kernel"]["shed_chunks"].as_u64().unwrap_or(0);
                    shed_bytes += h["kernel"]["shed_bytes"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (what, label) in WORKLOADS {
        let get = |with: bool| runs.get(&(*what, with)).cloned().unwrap_or_default();
        let (without, with) = (get(false), get(true));
        let ns = |v: &[(f64, f64)]| mean(&v.iter().map(|x| x.0).collect::<Vec<_>>());
        let cpu = |v: &[(f64, f64)]| mean(&v.iter().map(|x| x.1).collect::<Vec<_>>());
        out.insert(
            what.to_string(),
            json!({
                "label": label,
                "ns_per_op_without": round1(ns(&without)),
                "ns_per_op_with": round1(ns(&with)),
                "time_ratio": ratio(ns(&with), ns(&without)),
                "cpu_s_without": round3(cpu(&without)),
                "cpu_s_with": round3(cpu(&with)),
                "cpu_ratio": ratio(cpu(&with), cpu(&without)),
            }),
        );
    }
    Ok(json!({
        "rounds": plan.rounds,
        "dd_bytes": plan.dd_bytes,
        "pipe_writes": plan.pipe_writes,
        "tcp_round_trips": plan.tcp_round_trips,
        "https_requests": plan.https_requests,
        "downloads": plan.downloads,
        "agent_ring_full_chunks": lost_chunks,
        "agent_ring_full_bytes": lost_bytes,
        "agent_shed_chunks": shed_chunks,
        "agent_shed_bytes": shed_bytes,
        "workloads": out,
    }))
}
