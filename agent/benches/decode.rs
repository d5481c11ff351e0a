//! Decoder throughput on the recorded fixtures (`tests/fixtures/*.events.jsonl`), one thread:
//!
//! * pipeline: every event of a fixture through a fresh `ConnTable` (conn → http → rpc →
//!   mcp, records built but not serialised), `finish` included — MB/s of payload bytes
//!   and JSON-RPC messages/s;
//! * http: the raw HTTP/1.1 parser alone over every per-direction stream of the fixtures,
//!   fed in the pieces the kernel captured — MB/s;
//! * rpc: `rpc::decode` alone over every body and SSE `data` of the fixtures — MB/s and
//!   messages/s.
//!
//! `cargo xtask bench` (or `cargo bench -p mcpwarden --bench decode -- --seconds S`).
//! It prints figures and never fails on time. Building the events for one pass (cloning
//! the payloads) is outside the timed region.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::conn::ConnTable;
use mcpwarden::http::{HttpEvent, HttpParser, Limits, MessageKind};
use mcpwarden::mcp::{McpTracker, Record};
use mcpwarden::replay::{read_events, ReplayConfig};

fn fixtures() -> Vec<(String, Vec<KernelEvent>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".events.jsonl"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".events.jsonl"))
                .unwrap_or("?")
                .to_string();
            let events = read_events(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, events)
        })
        .collect()
}

fn payload_bytes(events: &[KernelEvent]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            KernelEvent::Data { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Runs `pass` (which returns the time it spent) until `budget` is used up; at least
/// `min_passes` times. Returns (passes, timed total).
fn measure(
    budget: Duration,
    min_passes: u64,
    mut pass: impl FnMut() -> Duration,
) -> (u64, Duration) {
    // Warm-up.
    for _ in 0..min_passes.min(3) {
        pass();
    }
    let (mut n, mut total) = (0u64, Duration::ZERO);
    while total < budget || n < min_passes {
        total += pass();
        n += 1;
    }
    (n, total)
}

fn mb_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

fn pipeline(name: &str, events: &[KernelEvent], budget: Duration) {
    let cfg = ReplayConfig::default();
    let bytes = payload_bytes(events);
    let mut messages = 0u64;
    let (n, t) = measure(budget, 5, || {
        let evs = events.to_vec();
        let mut table = ConnTable::new(McpTracker::new(cfg.mcp.clone()), cfg.limits, cfg.max_conns);
        let mut out: Vec<Record> = Vec::with_capacity(256);
        let started = Instant::now();
        let mut latest = 0;
        for ev in evs {
            if let Some(ts) = mcpwarden::replay::event_ts(&ev) {
                latest = latest.max(ts);
            }
            table.on_event(ev, &mut out);
        }
        table.finish(latest, &mut out);
        let spent = started.elapsed();
        messages = out
            .iter()
            .filter(|r| matches!(r, Record::Message(_)))
            .count() as u64;
        drop(out);
        spent
    });
    println!(
        "pipeline  {name:<20} {:>9.1} MB/s {:>11.0} messages/s   ({} events, {} payload bytes, {} messages per pass; {n} passes in {:.2} s)",
        mb_per_s(bytes * n, t),
        (messages * n) as f64 / t.as_secs_f64(),
        events.len(),
        bytes,
        messages,
        t.as_secs_f64(),
    );
}

type Streams = BTreeMap<(ConnIdent, bool), Vec<Vec<u8>>>;

/// The pieces of every (connection, direction) stream, in capture order.
fn streams(events: &[KernelEvent]) -> Streams {
    let mut s: Streams = BTreeMap::new();
    for ev in events {
        if let KernelEvent::Data {
            conn,
            direction,
            bytes,
            ..
        } = ev
        {
            s.entry((*conn, *direction == Direction::Ingress))
                .or_default()
                .push(bytes.clone());
        }
    }
    s
}

fn kind_of(pieces: &[Vec<u8>]) -> MessageKind {
    if pieces.first().is_some_and(|p| p.starts_with(b"HTTP/")) {
        MessageKind::Response
    } else {
        MessageKind::Request
    }
}

fn http(name: &str, events: &[KernelEvent], budget: Duration) {
    let streams = streams(events);
    let bytes: u64 = streams.values().flatten().map(|p| p.len() as u64).sum();
    let mut http_messages = 0u64;
    let (n, t) = measure(budget, 5, || {
        let started = Instant::now();
        let mut heads = 0u64;
        let mut out = Vec::with_capacity(64);
        for pieces in streams.values() {
            let mut p = HttpParser::new(kind_of(pieces), Limits::default());
            for piece in pieces {
                p.push(piece, 1, &mut out);
                heads += out
                    .iter()
                    .filter(|e| matches!(e, HttpEvent::Request(_) | HttpEvent::Response(_)))
                    .count() as u64;
                out.clear();
            }
            p.close(1, &mut out);
            out.clear();
        }
        http_messages = heads;
        started.elapsed()
    });
    println!(
        "http      {name:<20} {:>9.1} MB/s {:>11.0} HTTP messages/s ({} streams, {} bytes per pass; {n} passes in {:.2} s)",
        mb_per_s(bytes * n, t),
        (http_messages * n) as f64 / t.as_secs_f64(),
        streams.len(),
        bytes,
        t.as_secs_f64(),
    );
}

fn rpc(name: &str, events: &[KernelEvent], budget: Duration) {
    // Every JSON body and SSE `data` of the fixture, as the tracker receives them.
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for pieces in streams(events).values() {
        let mut p = HttpParser::new(kind_of(pieces), Limits::default());
        let mut out = Vec::new();
        for piece in pieces {
            p.push(piece, 1, &mut out);
        }
        p.close(1, &mut out);
        for ev in out {
            match ev {
                HttpEvent::Body { data, .. } => payloads.push(data.to_vec()),
                HttpEvent::Sse(e) if !e.data.trim().is_empty() => {
                    payloads.push(e.data.into_bytes())
                }
                _ => {}
            }
        }
    }
    let bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    let mut messages = 0u64;
    let (n, t) = measure(budget, 5, || {
        let started = Instant::now();
        let mut m = 0u64;
        for p in &payloads {
            if let Ok(decoded) = mcpwarden::rpc::decode(p) {
                m += decoded.messages.len() as u64;
            }
        }
        messages = m;
        started.elapsed()
    });
    println!(
        "rpc       {name:<20} {:>9.1} MB/s {:>11.0} messages/s   ({} payloads, {} bytes per pass; {n} passes in {:.2} s)",
        mb_per_s(bytes * n, t),
        (messages * n) as f64 / t.as_secs_f64(),
        payloads.len(),
        bytes,
        t.as_secs_f64(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `--seconds S` sets the time per figure.
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    println!(
        "mcpwarden decoder throughput, one thread (per core), {seconds} s per figure, fixtures in tests/fixtures/"
    );
    let all = fixtures();
    for (name, events) in &all {
        pipeline(name, events, budget);
    }
    for (name, events) in &all {
        http(name, events, budget);
    }
    for (name, events) in &all {
        rpc(name, events, budget);
    }
}
