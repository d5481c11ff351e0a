//! Policy decision time, one thread: `Judge::judge` on a `tools/call` with a warm schema
//! cache, for the README's minimal policy and for a policy with argument conditions, server
//! defaults and schema validation (`checks: { schema_violation: deny }`). Prints the mean,
//! p50 and p99 per decision; never fails on time.
//!
//! `cargo bench -p mcpwarden --bench policy -- --seconds S`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use mcpwarden::mcp::{Era, SessionState, Side, ToolCatalog, ToolDef};
use mcpwarden::policy::{parse, Judge, ProcessFacts, RequestFacts};
use serde_json::{json, Value};

const SERVER: &str = "127.0.0.1:9000/mcp";

const MINIMAL: &str =
    "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";

const RICH: &str = r#"
default: allow
checks: { schema_violation: deny, unknown_tool: deny }
servers:
  - match: { server: "10.0.0.5:*/mcp" }
    default: deny
rules:
  - id: no-explode
    action: deny
    match: { tool: explode }
  - id: fetch-docs-only
    action: allow
    match: { tool: fetch, args: { url: { prefix: "https://docs.internal/" } } }
  - id: fetch-elsewhere
    action: deny
    match: { tool: fetch }
  - id: admins-write
    action: approve
    match: { tool: "write_*", identity: { role: admin, verified: true } }
  - id: weather-cities
    action: audit
    match: { tool: weather, args: { city: { regex: "^[A-Z][a-z]+$" }, days: { range: { min: 1, max: 14 } } } }
"#;

fn catalog() -> ToolCatalog {
    let mut cat = ToolCatalog {
        server: SERVER.into(),
        ..ToolCatalog::default()
    };
    let tools = [
        json!({"name": "weather", "inputSchema": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 64}, "days": {"type": "integer"},
                           "unit": {"$ref": "#/$defs/Unit"}},
            "required": ["city"], "additionalProperties": false,
            "$defs": {"Unit": {"enum": ["c", "f"], "type": "string"}}}}),
        json!({"name": "fetch", "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}}),
        json!({"name": "explode", "inputSchema": {"type": "object"}}),
    ];
    for t in &tools {
        if let Some(def) = ToolDef::from_value(t) {
            cat.tools.insert(def.name.clone(), def);
        }
    }
    cat.snapshots.tools = 1;
    cat
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn run(name: &str, policy: &str, tool: &str, params: Value, budget: Duration) {
    let policy = match parse(policy, Path::new("bench.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let mut judge = Judge::new(policy);
    let cat = catalog();
    judge.observe_catalog(SERVER, &cat);
    let process = ProcessFacts {
        pid: 1,
        comm: "python3".into(),
        ..ProcessFacts::default()
    };
    let facts = RequestFacts {
        server: SERVER,
        host: Some("localhost:9000"),
        client_name: Some("bench"),
        client_version: Some("1.0"),
        process: &process,
        side: Side::Client,
        user: Some("alice"),
        role: Some("dev,admin"),
        identity_verified: true,
        era: Era::Handshake,
        method: "tools/call",
        name: Some(tool),
        params: Some(&params),
        is_request: true,
        session_state: SessionState::Operating,
        body_bytes: 256,
        findings: Vec::new(),
        cut: false,
    };
    let first = judge.judge(&facts, Some(&cat));
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || samples.len() < 1000 {
        let t = Instant::now();
        black_box(judge.judge(black_box(&facts), Some(&cat)));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() / samples.len() as u64;
    println!(
        "{name:<34} {:>7?} {:>8} ns mean {:>8} ns p50 {:>8} ns p99  ({} decisions)",
        first.action,
        mean,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
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
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);
    println!("mcpwarden policy decision time, one thread, {seconds} s per figure");
    let weather =
        json!({"name": "weather", "arguments": {"city": "Paris", "days": 3, "unit": "c"}});
    run(
        "minimal policy, allowed call",
        MINIMAL,
        "weather",
        weather.clone(),
        budget,
    );
    run(
        "minimal policy, denied call",
        MINIMAL,
        "explode",
        json!({"name": "explode", "arguments": {}}),
        budget,
    );
    run(
        "rich policy, schema-valid call",
        RICH,
        "weather",
        weather,
        budget,
    );
    run(
        "rich policy, schema violation",
        RICH,
        "weather",
        json!({"name": "weather", "arguments": {"city": "Paris", "extra": true}}),
        budget,
    );
    run(
        "rich policy, argument condition",
        RICH,
        "fetch",
        json!({"name": "fetch", "arguments": {"url": "https://docs.internal/guide"}}),
        budget,
    );
}
