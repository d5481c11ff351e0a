//! Loss under load and memory with many idle sessions, each with a fresh agent
//! (`mcpwarden run`, monitor): the load peers of [`super::load`] send a paced stream of
//! `tools/call`s; what they carried (each message seen from both ends: twice) is compared
//! with the message records the agent wrote for that server (unaccounted loss), beside the
//! loss counters of its final health record (counted loss, see the README's "What is
//! counted"), its CPU and RSS. Then many handshakes, their connections left open, and the
//! agent's resident memory.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::agent::{self, last_health, Observer};
use super::load::{idle_sessions, paced_calls, LoadServer};
use super::stats::{round1, round3};

#[derive(Debug, Clone, Copy)]
pub struct LossPlan {
    /// JSON-RPC messages per second on the wire (requests + answers).
    pub messages_per_s: f64,
    pub seconds: f64,
    pub connections: usize,
    pub idle_sessions: usize,
}

/// The README's loss counters ("What is counted", **Loss**): (section, counter).
const LOSS_COUNTERS: &[(&str, &str)] = &[
    ("kernel", "ring_full_chunks"),
    ("kernel", "ring_full_bytes"),
    ("kernel", "shed_chunks"),
    ("kernel", "shed_bytes"),
    ("kernel", "truncated_bytes"),
    ("kernel", "read_user_failed"),
    ("kernel", "args_map_full"),
    ("kernel", "conn_map_full"),
    ("kernel", "tls_args_map_full"),
    ("conn", "gaps"),
    ("conn", "gap_bytes"),
    ("conn", "bad_records"),
    ("conn", "conns_evicted"),
    ("mcp", "evicted_pending"),
    ("mcp", "evicted_sessions"),
    ("mcp", "dropped_exchanges"),
];

/// Every loss counter of a health record, by name (hooks' `*_ring_full_bytes` and
/// `*_truncated_bytes` and programs' `recursion_misses` summed in).
pub fn loss_counters(health: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (section, name) in LOSS_COUNTERS {
        out.insert(
            format!("{section}.{name}"),
            json!(health[section][name].as_u64().unwrap_or(0)),
        );
    }
    let hooks = health["hooks"].as_object();
    for suffix in ["_ring_full_bytes", "_truncated_bytes"] {
        let sum: u64 = hooks
            .map(|h| {
                h.iter()
                    .filter(|(k, _)| k.ends_with(suffix))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0);
        out.insert(format!("hooks.*{suffix}"), json!(sum));
    }
    let misses: u64 = health["programs"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|x| x["recursion_misses"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    out.insert("programs.recursion_misses".into(), json!(misses));
    out
}

/// Message records of connections to `port` (either end).
fn messages_for_port(records: &[Value], port: u16) -> u64 {
    let suffix = format!(":{port}");
    records
        .iter()
        .filter(|r| r["type"] == "message")
        .filter(|r| {
            r["local"].as_str().is_some_and(|a| a.ends_with(&suffix))
                || r["remote"].as_str().is_some_and(|a| a.ends_with(&suffix))
        })
        .count() as u64
}

/// Runs the loss figure; returns the `loss` part of results.json.
pub fn loss(dir: &Path, plan: LossPlan) -> Result<Value> {
    eprintln!(
        "bench: loss: {} messages/s for {} s",
        plan.messages_per_s, plan.seconds
    );
    let server = LoadServer::start()?;
    let agent = agent::start(dir, Observer::Monitor, 2001, 0)?;
    let cpu0 = agent.cpu_seconds()?;
    let load = paced_calls(
        server.port,
        plan.connections,
        plan.messages_per_s / 2.0,
        Duration::from_secs_f64(plan.seconds),
    )?;
    // The agent drains what is left in the ring.
    std::thread::sleep(Duration::from_secs(1));
    let cpu = agent.cpu_seconds()? - cpu0;
    let hwm = agent.hwm_bytes()?;
    let rss = agent.rss_bytes()?;
    let records = agent.stop()?;
    let expected = 2 * load.messages;
    let reported = messages_for_port(&records, server.port);
    let health = last_health(&records).cloned().unwrap_or(Value::Null);
    let kernel = &health["kernel"];
    let lost_chunks = kernel["ring_full_chunks"].as_u64().unwrap_or(0);
    let chunks = kernel["chunks_emitted"].as_u64().unwrap_or(0) + lost_chunks;
    Ok(json!({
        "target_messages_per_s": plan.messages_per_s,
        "seconds": round3(load.seconds),
        "connections": plan.connections,
        "calls": load.calls,
        "wire_messages": load.messages,
        "achieved_messages_per_s": round1(load.messages as f64 / load.seconds),
        "expected_records": expected,
        "reported_records": reported,
        "unaccounted": expected.saturating_sub(reported),
        "unaccounted_pct": if expected > 0 { json!(round3(expected.saturating_sub(reported) as f64 * 100.0 / expected as f64)) } else { Value::Null },
        "excess_records": reported.saturating_sub(expected),
        "counted_loss_chunks_pct": if chunks > 0 { json!(round3(lost_chunks as f64 * 100.0 / chunks as f64)) } else { json!(0.0) },
        "loss_counters": loss_counters(&health),
        "agent_cpu_s": round3(cpu),
        "agent_cpu_pct_of_core": round1(cpu * 100.0 / load.seconds),
        "agent_cpu_us_per_record": if reported > 0 { json!(round1(cpu * 1e6 / reported as f64)) } else { Value::Null },
        "agent_vm_hwm_bytes": hwm,
        "agent_vm_rss_bytes": rss,
    }))
}

/// Handshakes per second of the idle-sessions figure: 10,000 sessions in 2 s.
const IDLE_HANDSHAKES_PER_S: f64 = 5_000.0;

/// The last health record of an agent's output, read from the file's end (the whole file
/// is tens of MB after the handshakes: parsing it each second would be the wait).
fn last_health_in(path: &Path) -> Option<Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4 << 20))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .filter(|l| l.contains("\"health\""))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "health")
}

/// Runs the idle-session figure; returns the `idle_sessions` part of results.json.
pub fn idle(dir: &Path, plan: LossPlan) -> Result<Value> {
    eprintln!("bench: {} idle sessions", plan.idle_sessions);
    let server = LoadServer::start()?;
    let agent = agent::start(dir, Observer::Monitor, 2002, 1)?;
    let rss_before = agent.rss_bytes()?;
    // Paced: this figure is the memory of many sessions, not a flood (an unpaced one from 10
    // client threads starves the agent of CPU on 2 cores; loss at a rate is `loss`'s figure).
    let (clients, messages) =
        idle_sessions(server.port, 10, plan.idle_sessions, IDLE_HANDSHAKES_PER_S)?;
    // The handshakes come faster than one core decodes them: the agent works through the
    // ring's backlog after the clients are done. Measure once its health records (one a
    // second here) stop changing the tracked-session count, or after 30 s.
    let wait_from = std::time::Instant::now();
    let mut last: Option<Value> = None;
    let mut settled_for = 0;
    let health = loop {
        std::thread::sleep(Duration::from_millis(1100));
        let h = agent.output.as_deref().and_then(last_health_in);
        let tracked = h.as_ref().map(|h| h["tracked"]["sessions"].clone());
        if tracked.is_some() && tracked == last.as_ref().map(|l| l["tracked"]["sessions"].clone()) {
            settled_for += 1;
        } else {
            settled_for = 0;
        }
        if settled_for >= 2 || wait_from.elapsed() > Duration::from_secs(30) {
            break h.unwrap_or(Value::Null);
        }
        last = h;
    };
    let settle_s = wait_from.elapsed().as_secs_f64();
    let rss_after = agent.rss_bytes()?;
    let hwm = agent.hwm_bytes()?;
    let tracked = health["tracked"]["sessions"].clone();
    let counters = loss_counters(&health);
    drop(clients);
    let records = agent.stop()?;
    let reported = messages_for_port(&records, server.port);
    Ok(json!({
        "sessions": plan.idle_sessions,
        "connections_kept_open": 10,
        "wire_messages": messages,
        "reported_records": reported,
        "tracked_sessions": tracked,
        "settle_s": (settle_s * 10.0).round() / 10.0,
        "loss_counters": counters,
        "agent_vm_rss_bytes_before": rss_before,
        "agent_vm_rss_bytes": rss_after,
        "agent_vm_hwm_bytes": hwm,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counters_sum_hooks_and_programs_and_default_to_zero() {
        let h = json!({
            "kernel": {"ring_full_chunks": 3},
            "hooks": {"ssl_read_ring_full_bytes": 5, "sock_send_ring_full_bytes": 7, "ssl_read_chunks": 9},
            "programs": [{"recursion_misses": 1}, {"recursion_misses": 2}],
        });
        let c = loss_counters(&h);
        assert_eq!(c["kernel.ring_full_chunks"], 3);
        assert_eq!(c["conn.gaps"], 0);
        assert_eq!(c["hooks.*_ring_full_bytes"], 12);
        assert_eq!(c["programs.recursion_misses"], 3);
    }
}
