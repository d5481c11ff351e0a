//! Decoder throughput on the recorded fixtures (`tests/fixtures/*.events.jsonl`), one thread:
//!
//! * whole: what a captured byte costs in userspace, end to end: every event of a fixture
//!   through a fresh `ConnTable` (conn reassembly → http → rpc → mcp tracker), `finish`
//!   included, and every record serialised as a JSON line into a buffer
//!   (`JsonLinesWriter::push`, as `mcpwarden run` writes them) — MB/s of payload bytes and
//!   JSON-RPC messages/s;
//! * pipeline: the same without the serialisation (records built, then dropped);
//! * serialise: the records of one pass written as JSON lines alone — MB/s of the payload
//!   bytes they came from (and of the JSON written) and records/s;
//! * http: the raw HTTP/1.1 parser alone over every per-direction stream of the fixtures,
//!   fed in the pieces the kernel captured — MB/s;
//! * rpc: `rpc::decode` alone over every body and SSE `data` of the fixtures — MB/s and
//!   messages/s.
//!
//! `cargo xtask bench` (or `cargo bench -p mcpwarden --bench decode -- --seconds S`).
//! It prints figures and never fails on time. Building the events for one pass (cloning
//! the payloads) is outside the timed region. A per-stage table follows (µs per pass of
//! each fixture: http, rpc, serialise measured alone; conn + mcp tracker the rest of the
//! whole pipeline), and the last line is machine-readable:
//! `decode_bench {"mb_per_s":…,"msgs_per_s":…,…}` (whole pipeline over all fixtures).
//! `--only STAGE` runs one stage (`whole`, `pipeline`, `serialise`, `http`, `rpc`),
//! `--fixture NAME` one fixture (e.g. `python_sdk`), and
//! `--passes N` exactly N passes of it, e.g. to count instructions per pass with
//! `valgrind --tool=callgrind --toggle-collect='decode::one_pass*'`.

/// The agent binary's allocator (`src/main.rs`), so these figures are the agent's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::conn::ConnTable;
use mcpwarden::http::{HttpEvent, HttpParser, Limits, MessageKind};
use mcpwarden::mcp::{McpTracker, Record};
use mcpwarden::output::JsonLinesWriter;
use mcpwarden::replay::{read_events, ReplayConfig};

/// Time per pass of one stage of one fixture, for the per-stage table.
#[derive(Debug, Default, Clone, Copy)]
struct Figure {
    /// Seconds per pass.
    secs: f64,
    /// Bytes per pass (payload bytes the stage saw).
    bytes: u64,
    /// Items per pass (messages, records).
    items: u64,
}

impl Figure {
    fn new(bytes: u64, items: u64, passes: u64, t: Duration) -> Self {
        Figure {
            secs: t.as_secs_f64() / passes.max(1) as f64,
            bytes,
            items,
        }
    }
}

/// The figures of one fixture.
#[derive(Debug, Default, Clone)]
struct Stages {
    name: String,
    whole: Figure,
    pipeline: Figure,
    serialise: Figure,
    http: Figure,
    rpc: Figure,
}

fn fixtures() -> Vec<(String, Vec<KernelEvent>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".events.jsonl"))
        .collect();
    paths.sort();
    let wanted = arg_value("--fixture");
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".events.jsonl"))
                .unwrap_or("?")
                .to_string();
            (name, p)
        })
        .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w == name))
        .map(|(name, p)| {
            let events = read_events(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, events)
        })
        .collect()
}

/// The value after `flag` on the command line.
fn arg_value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
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
    if let Some(n) = fixed_passes() {
        // `--passes N`: exactly N passes, no warm-up (for instruction counts under callgrind).
        let total = (0..n).map(|_| pass()).sum();
        return (n, total);
    }
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

/// `--passes N` on the command line.
fn fixed_passes() -> Option<u64> {
    arg_value("--passes").and_then(|s| s.parse().ok())
}

fn mb_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

/// One pass of the pipeline over `events`: the records (and, with `sink`, every record
/// serialised into it as a JSON line, inside the timed region). Returns the time spent.
fn one_pass(
    cfg: &ReplayConfig,
    events: Vec<KernelEvent>,
    out: &mut Vec<Record>,
    sink: Option<&mut JsonLinesWriter<Vec<u8>>>,
) -> Duration {
    let mut table = ConnTable::new(McpTracker::new(cfg.mcp.clone()), cfg.limits, cfg.max_conns);
    let started = Instant::now();
    let mut latest = 0;
    for ev in events {
        if let Some(ts) = mcpwarden::replay::event_ts(&ev) {
            latest = latest.max(ts);
        }
        table.on_event(ev, out);
    }
    table.finish(latest, out);
    if let Some(w) = sink {
        for r in out.iter() {
            if let Err(e) = w.push(r) {
                panic!("serialising a record: {e}");
            }
        }
        if let Err(e) = w.flush() {
            panic!("writing the records: {e}");
        }
    }
    started.elapsed()
}

fn messages_in(out: &[Record]) -> u64 {
    out.iter()
        .filter(|r| matches!(r, Record::Message(_)))
        .count() as u64
}

/// The whole pipeline, records serialised as JSON lines into a buffer.
fn whole(name: &str, events: &[KernelEvent], budget: Duration) -> Figure {
    let cfg = ReplayConfig::default();
    let bytes = payload_bytes(events);
    let mut messages = 0u64;
    let mut written = 0u64;
    let mut w = JsonLinesWriter::new(Vec::with_capacity(1 << 20));
    let (n, t) = measure(budget, 5, || {
        let evs = events.to_vec();
        let mut out: Vec<Record> = Vec::with_capacity(256);
        w.get_mut().clear();
        let spent = one_pass(&cfg, evs, &mut out, Some(&mut w));
        messages = messages_in(&out);
        written = w.get_ref().len() as u64;
        drop(out);
        spent
    });
    println!(
        "whole     {name:<20} {:>9.1} MB/s {:>11.0} messages/s   ({} events, {} payload bytes, {} messages, {} JSON bytes written per pass; {n} passes in {:.2} s)",
        mb_per_s(bytes * n, t),
        (messages * n) as f64 / t.as_secs_f64(),
        events.len(),
        bytes,
        messages,
        written,
        t.as_secs_f64(),
    );
    Figure::new(bytes, messages, n, t)
}

fn pipeline(name: &str, events: &[KernelEvent], budget: Duration) -> Figure {
    let cfg = ReplayConfig::default();
    let bytes = payload_bytes(events);
    let mut messages = 0u64;
    let (n, t) = measure(budget, 5, || {
        let evs = events.to_vec();
        let mut out: Vec<Record> = Vec::with_capacity(256);
        let spent = one_pass(&cfg, evs, &mut out, None);
        messages = messages_in(&out);
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
    Figure::new(bytes, messages, n, t)
}

/// The records of one pass serialised alone.
fn serialise(name: &str, events: &[KernelEvent], budget: Duration) -> Figure {
    let cfg = ReplayConfig::default();
    let bytes = payload_bytes(events);
    let mut records = Vec::new();
    one_pass(&cfg, events.to_vec(), &mut records, None);
    let mut w = JsonLinesWriter::new(Vec::with_capacity(1 << 20));
    let (n, t) = measure(budget, 5, || {
        w.get_mut().clear();
        let started = Instant::now();
        for r in &records {
            if let Err(e) = w.push(r) {
                panic!("serialising a record: {e}");
            }
        }
        if let Err(e) = w.flush() {
            panic!("writing the records: {e}");
        }
        started.elapsed()
    });
    let written = w.get_ref().len() as u64;
    println!(
        "serialise {name:<20} {:>9.1} MB/s {:>11.0} records/s    ({} records, {} JSON bytes per pass = {:.1} MB/s written; {n} passes in {:.2} s)",
        mb_per_s(bytes * n, t),
        (records.len() as u64 * n) as f64 / t.as_secs_f64(),
        records.len(),
        written,
        mb_per_s(written * n, t),
        t.as_secs_f64(),
    );
    Figure::new(bytes, records.len() as u64, n, t)
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

fn http(name: &str, events: &[KernelEvent], budget: Duration) -> Figure {
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
    Figure::new(bytes, http_messages, n, t)
}

fn rpc(name: &str, events: &[KernelEvent], budget: Duration) -> Figure {
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
    Figure::new(bytes, messages, n, t)
}

fn main() {
    // `cargo bench` passes `--bench`; `--seconds S` sets the time per figure.
    let seconds: f64 = arg_value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    // `--only whole` (or another stage) runs that stage alone, e.g. under `perf record`.
    let only = arg_value("--only");
    if let Some(stage) = only {
        for (name, events) in &fixtures() {
            match stage.as_str() {
                "whole" => {
                    let _ = whole(name, events, budget);
                }
                "pipeline" => {
                    let _ = pipeline(name, events, budget);
                }
                "serialise" => {
                    let _ = serialise(name, events, budget);
                }
                "http" => {
                    let _ = http(name, events, budget);
                }
                "rpc" => {
                    let _ = rpc(name, events, budget);
                }
                other => panic!("--only {other}: expected whole, pipeline, serialise, http or rpc"),
            }
        }
        return;
    }
    println!(
        "mcpwarden decoder throughput, one thread (per core), {seconds} s per figure, fixtures in tests/fixtures/"
    );
    let all = fixtures();
    let mut stages: Vec<Stages> = all
        .iter()
        .map(|(name, _)| Stages {
            name: name.clone(),
            ..Stages::default()
        })
        .collect();
    for ((name, events), st) in all.iter().zip(stages.iter_mut()) {
        st.whole = whole(name, events, budget);
    }
    for ((name, events), st) in all.iter().zip(stages.iter_mut()) {
        st.pipeline = pipeline(name, events, budget);
    }
    for ((name, events), st) in all.iter().zip(stages.iter_mut()) {
        st.serialise = serialise(name, events, budget);
    }
    for ((name, events), st) in all.iter().zip(stages.iter_mut()) {
        st.http = http(name, events, budget);
    }
    for ((name, events), st) in all.iter().zip(stages.iter_mut()) {
        st.rpc = rpc(name, events, budget);
    }
    report_stages(&stages);
}

/// µs per pass of each stage, its share of the whole pipeline, and the whole pipeline's
/// figures over every fixture as one machine-readable line.
fn report_stages(stages: &[Stages]) {
    println!("per stage, µs per pass (share of whole): http, rpc and serialise measured alone; conn + mcp = pipeline − http − rpc");
    let us = |f: f64| f * 1e6;
    for st in stages {
        let conn_mcp = (st.pipeline.secs - st.http.secs - st.rpc.secs).max(0.0);
        let share = |x: f64| 100.0 * x / st.whole.secs.max(f64::MIN_POSITIVE);
        println!(
            "stages    {:<20} whole {:>8.1}  http {:>8.1} ({:>4.1} %)  rpc {:>8.1} ({:>4.1} %)  conn+mcp {:>8.1} ({:>4.1} %)  serialise {:>8.1} ({:>4.1} %)",
            st.name,
            us(st.whole.secs),
            us(st.http.secs),
            share(st.http.secs),
            us(st.rpc.secs),
            share(st.rpc.secs),
            us(conn_mcp),
            share(conn_mcp),
            us(st.serialise.secs),
            share(st.serialise.secs),
        );
    }
    // Over all fixtures: one pass of each, as if one capture carried them all.
    let sum = |f: fn(&Stages) -> Figure| {
        stages.iter().fold((0.0, 0u64, 0u64), |(s, b, i), st| {
            let x = f(st);
            (s + x.secs, b + x.bytes, i + x.items)
        })
    };
    let rate = |(secs, bytes, items): (f64, u64, u64)| {
        let secs = secs.max(f64::MIN_POSITIVE);
        (bytes as f64 / secs / 1e6, items as f64 / secs)
    };
    let (whole_mb, whole_msgs) = rate(sum(|s| s.whole));
    let (pipe_mb, pipe_msgs) = rate(sum(|s| s.pipeline));
    let (ser_mb, ser_recs) = rate(sum(|s| s.serialise));
    let (http_mb, http_msgs) = rate(sum(|s| s.http));
    let (rpc_mb, rpc_msgs) = rate(sum(|s| s.rpc));
    let line = serde_json::json!({
        "mb_per_s": round1(whole_mb),
        "msgs_per_s": whole_msgs.round(),
        "stages": {
            "pipeline_unserialised": {"mb_per_s": round1(pipe_mb), "msgs_per_s": pipe_msgs.round()},
            "serialise": {"mb_per_s": round1(ser_mb), "records_per_s": ser_recs.round()},
            "http": {"mb_per_s": round1(http_mb), "http_msgs_per_s": http_msgs.round()},
            "rpc": {"mb_per_s": round1(rpc_mb), "msgs_per_s": rpc_msgs.round()},
        },
        "fixtures": stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "threads": 1,
    });
    println!("decode_bench {line}");
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
