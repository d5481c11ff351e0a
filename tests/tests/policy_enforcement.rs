//! The positive security model end to end: the real agent with a policy file, real SDK peers
//! (Python and the TypeScript SDK on node), and the server's own log of what it ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mcpwarden_tests::policy::{outcomes, run_policy_client, PolicyServer, Sdk};
use mcpwarden_tests::{free_port, test_env, Agent, ChildGuard, SelfSignedCert};
use serde_json::{json, Value};

/// The README's minimal policy, exactly as users copy it.
const MINIMAL: &str =
    "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::Builder::new()
                .prefix("mcpwarden-e2e-policy-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn policy(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("policy.yaml");
        std::fs::write(&p, text).expect("write policy");
        p
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }
}

/// The agent with `policy` in enforcement `mode`. Hold mode gets a 1 s fail-open timeout
/// instead of 50 ms: these tests prove what a hold stops, on a 2-core machine that also runs
/// every peer; the timeout path has unit tests of its own.
fn agent_with(policy: &Path, socket: &Path, mode: &str) -> Agent {
    Agent::start(&[
        "--policy",
        policy.to_str().unwrap_or_default(),
        "--enforce",
        mode,
        "--control-socket",
        socket.to_str().unwrap_or_default(),
        "--hold-timeout-ms",
        "1000",
    ])
}

fn of_type<'a>(records: &'a [Value], t: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == t).collect()
}

fn tools_run(server: &PolicyServer, tool: &str) -> usize {
    server
        .executions()
        .iter()
        .filter(|e| e["tool"] == tool)
        .count()
}

fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

fn minimal_policy_denies_explode(sdk: Sdk) {
    let s = Setup::new();
    let policy = s.policy(MINIMAL);
    let agent = agent_with(&policy, &s.socket(), "reset");
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([
        [call("add", json!({"a": 2, "b": 3}))],
        [call("explode", json!({"why": "test"}))]
    ]);
    let client = run_policy_client(sdk, &server.url(), &script, None);
    let client_pid = client["pid"].clone();
    let records = agent.stop();
    let seen: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "verdict" || r["type"] == "health")
        .collect();
    assert_eq!(
        outcomes(&client),
        vec![vec!["ok"], vec!["connection_error"]],
        "add succeeds, explode gets a connection error (not a tool result): {client}\nagent: {seen:?}"
    );
    // (Calls made without a prior tools/list are also audited as unverifiable.)
    let verdicts: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == client_pid || v["pid"] == json!(server.pid()))
        .filter(|v| v["name"] == "explode")
        .collect();
    assert!(!verdicts.is_empty(), "no verdict record");
    for v in &verdicts {
        assert_eq!(v["action"], json!("deny"), "{v}");
        assert_eq!(v["rule_id"], json!("no-explode"), "{v}");
        assert_eq!(v["name"], json!("explode"), "{v}");
        assert_eq!(v["method"], json!("tools/call"), "{v}");
        // Both ends are on this host: the first verdict resets the connection; the other
        // end's finds it gone.
        assert!(
            v["enforcement"] == "reset" || v["enforcement"] == "reset_failed",
            "{v}"
        );
        assert_eq!(v["request"]["params"]["arguments"]["why"], json!("test"));
    }
    assert!(
        verdicts.iter().any(|v| v["enforcement"] == "reset"),
        "{verdicts:?}"
    );
    // The client never got the answer.
    let answered = records.iter().any(|r| {
        r["type"] == "message"
            && r["pid"] == client_pid
            && r["kind"] == "response"
            && r["name"] == "explode"
    });
    assert!(!answered, "the client received the denied call's answer");
    let attacks: Vec<Value> = of_type(&records, "session_end")
        .into_iter()
        .filter(|e| e["pid"] == client_pid)
        .flat_map(|e| e["attacks"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        attacks
            .iter()
            .any(|a| a["kind"] == "acl_violation" && a["rule_id"] == "no-explode"),
        "{attacks:?}"
    );
}

#[test]
fn the_minimal_policy_denies_explode_for_the_python_sdk_client() {
    minimal_policy_denies_explode(Sdk::Python);
}

#[test]
fn the_minimal_policy_denies_explode_for_the_typescript_sdk_client() {
    minimal_policy_denies_explode(Sdk::Node);
}

/// A denied call whose body is too large to read (9 MB of arguments, over the agent's 8 MiB
/// body limit) is still judged, by the tool name its first bytes carry: a deny rule cannot be
/// escaped by padding. It is judged once its first 64 KiB are in (or at the held write), not
/// at its end: in hold mode the server never sees it; in reset mode the connection is reset
/// while the rest of the body is still on its way (whether the server ran it is reported).
fn denied_call_too_large_to_read(mode: &str) {
    let s = Setup::new();
    let policy = s.policy(MINIMAL);
    let agent = agent_with(&policy, &s.socket(), mode);
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([
        [{"op": "list"}, {"op": "sleep", "ms": 1500}],
        [
            call("add", json!({"a": 1, "b": 2})),
            {"op": "call", "tool": "explode", "args": {}, "pad": {"why": 9_000_000}}
        ]
    ]);
    let client = run_policy_client(Sdk::Python, &server.url(), &script, None);
    let got = outcomes(&client);
    let records = agent.stop();
    // Hold mode stops the client's write, so the client's view decides. In reset mode both
    // ends are judged and the first reset takes the connection: when the server's view came
    // first, the client's may never be (its connection is gone), so either end's counts.
    let v: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["action"] == "deny" && v["name"] == "explode")
        .filter(|v| mode != "hold" || v["pid"] == client["pid"])
        .collect();
    assert!(!v.is_empty(), "{v:?}\nclient: {got:?}");
    if mode == "hold" {
        assert_eq!(v.len(), 1, "{v:?}\nclient: {got:?}");
    }
    assert_eq!(
        (&v[0]["rule_id"], &v[0]["name"], &v[0]["method"]),
        (
            &json!("no-explode"),
            &json!("explode"),
            &json!("tools/call")
        )
    );
    let kinds: Vec<&Value> = v[0]["reasons"]
        .as_array()
        .map(|r| r.iter().map(|r| &r["kind"]).collect())
        .unwrap_or_default();
    assert!(kinds.contains(&&json!("truncated_request")), "{kinds:?}");
    assert!(kinds.contains(&&json!("body_too_large")), "{kinds:?}");
    let ran = tools_run(&server, "explode");
    eprintln!("oversized denied call ({mode}): client {got:?}, the server ran explode {ran} times");
    if mode == "hold" {
        assert_eq!(v[0]["enforcement"], "held_then_reset", "{}", v[0]);
        assert_eq!(ran, 0, "the held call reached the server");
        assert_eq!(got[1], ["ok", "connection_error"], "{client}");
    } else {
        // Both ends are on this host: the server's view of the call is denied too, and the
        // first of the two resets takes the connection (the other finds it gone).
        let resets: Vec<&Value> = of_type(&records, "verdict")
            .into_iter()
            .filter(|v| v["action"] == "deny" && v["name"] == "explode")
            .map(|v| &v["enforcement"])
            .collect();
        assert!(resets.contains(&&json!("reset")), "{resets:?}");
    }
}

#[test]
fn a_denied_call_too_large_to_read_is_judged_and_reset() {
    denied_call_too_large_to_read("reset");
}

#[test]
fn a_denied_call_too_large_to_read_is_held_and_never_reaches_the_server() {
    denied_call_too_large_to_read("hold");
}

#[test]
fn in_audit_the_call_succeeds_and_is_recorded() {
    let s = Setup::new();
    let policy = s.policy(&MINIMAL.replace("action: deny", "action: audit"));
    let agent = agent_with(&policy, &s.socket(), "reset");
    let server = PolicyServer::start(free_port(), None, false);
    let client = run_policy_client(
        Sdk::Python,
        &server.url(),
        &json!([[call("explode", json!({"why": "audit"}))]]),
        None,
    );
    assert_eq!(outcomes(&client), vec![vec!["ok"]]);
    assert_eq!(tools_run(&server, "explode"), 1);
    let records = agent.stop();
    let v: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == client["pid"] && v["rule_id"] == "no-explode")
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (&v[0]["action"], &v[0]["enforcement"], &v[0]["rule_id"]),
        (&json!("audit"), &json!("audit_only"), &json!("no-explode"))
    );
}

#[test]
fn schema_violations_and_argument_conditions_decide_calls() {
    let s = Setup::new();
    let policy = s.policy(
        "default: allow\nchecks:\n  schema_violation: deny\nrules:\n  - id: docs-only\n    action: allow\n    match:\n      tool: fetch\n      args:\n        url: { prefix: \"https://docs.internal/\" }\n  - id: no-other-fetch\n    action: deny\n    match: { tool: fetch }\n",
    );
    let agent = agent_with(&policy, &s.socket(), "reset");
    let server = PolicyServer::start(free_port(), None, false);
    let long = "x".repeat(100);
    let script = json!([
        [{"op": "list"}, call("note", json!({"text": "fine", "level": 1}))],
        [{"op": "list"}, call("note", json!({"text": "fine", "level": 1, "extra": true}))],
        [{"op": "list"}, call("note", json!({"text": "fine", "level": "high"}))],
        [{"op": "list"}, call("note", json!({"text": long, "level": 1}))],
        [call("fetch", json!({"url": "https://docs.internal/guide"}))],
        [call("fetch", json!({"url": "https://evil.example/steal"}))]
    ]);
    let client = run_policy_client(Sdk::Python, &server.url(), &script, None);
    // Reset mode is reactive: the server may answer (here its own argument validation, a tool
    // error) before the reset lands; the verdicts below are what the agent decided.
    let mut got = outcomes(&client);
    for s in got.iter_mut().take(4).skip(1) {
        if s[1] == "tool_error" {
            s[1] = "connection_error".into();
        }
    }
    assert_eq!(
        got,
        vec![
            vec!["ok", "ok"],
            vec!["ok", "connection_error"],
            vec!["ok", "connection_error"],
            vec!["ok", "connection_error"],
            vec!["ok"],
            vec!["connection_error"],
        ],
        "{client}"
    );
    let records = agent.stop();
    let verdicts: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == client["pid"] && v["action"] == "deny")
        .collect();
    let kinds: Vec<(Value, Value)> = verdicts
        .iter()
        .map(|v| (v["rule_id"].clone(), v["reasons"][0]["kind"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Value::Null, json!("schema_violation")),
            (Value::Null, json!("schema_violation")),
            (Value::Null, json!("schema_violation")),
            (json!("no-other-fetch"), Value::Null),
        ],
        "{verdicts:?}"
    );
    let invalid = of_type(&records, "session_end")
        .into_iter()
        .filter(|e| e["pid"] == client["pid"])
        .flat_map(|e| e["attacks"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["kind"] == "invalid_tool_call")
        .count();
    assert_eq!(invalid, 3);
}

/// N denied calls interleaved with allowed ones, held before they leave the client.
fn hold_stops_denied_calls(sdk: Sdk, tls: bool) {
    const N: usize = 50;
    let s = Setup::new();
    let policy = s.policy(MINIMAL);
    let cert = tls.then(SelfSignedCert::generate);
    let agent = agent_with(&policy, &s.socket(), "hold");
    let server = PolicyServer::start(free_port(), cert.as_ref(), false);
    // First session: the agent learns this process speaks MCP (and, in plaintext, attaches
    // its write probes) before any call.
    let mut sessions = vec![json!([{"op": "list"}, {"op": "sleep", "ms": 1500}])];
    for i in 0..N {
        sessions.push(json!([
            call("add", json!({"a": i, "b": 1})),
            call("explode", json!({"why": format!("n{i}")}))
        ]));
    }
    let client = run_policy_client(
        sdk,
        &server.url(),
        &Value::Array(sessions),
        cert.as_ref().map(|c| &c.cert),
    );
    let got = outcomes(&client);
    let records = agent.stop();
    // What the agent counted, for a failure's message.
    let health = records
        .iter()
        .rev()
        .find(|r| r["type"] == "health")
        .map(|h| json!({"enforce": h["enforce"], "kernel": h["kernel"], "conn": h["conn"]}))
        .unwrap_or_default();
    let enforcement: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == client["pid"])
        .map(|v| &v["enforcement"])
        .collect();
    // Which sockets the deny verdicts reset, both ends (the server's own view of a call
    // that got out is a deny there too): for a failure's message.
    let sockets: Vec<String> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["action"] == "deny")
        .map(|v| {
            format!(
                "{} {} {} {}->{} {}",
                v["request"]["params"]["arguments"]["why"],
                v["side"].as_str().unwrap_or("?"),
                if v["pid"] == client["pid"] {
                    "client"
                } else {
                    "other"
                },
                v["local"].as_str().unwrap_or("?"),
                v["remote"].as_str().unwrap_or("?"),
                v["enforcement"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let denied = got[1..]
        .iter()
        .filter(|s| s.as_slice() == ["ok", "connection_error"])
        .count();
    assert_eq!(
        denied, N,
        "every add ok, every explode refused: {got:?}\nclient verdicts: {enforcement:?}\nagent: {health}"
    );
    assert_eq!(
        tools_run(&server, "explode"),
        0,
        "the server ran a denied call: {:?}\nclient verdicts: {enforcement:?}\ndeny verdicts: {sockets:#?}\nagent: {health}",
        server.executions()
    );
    assert_eq!(tools_run(&server, "add"), N, "agent: {health}");
    let add_ms: Vec<f64> = client["sessions"]
        .as_array()
        .map(|s| s.iter().filter_map(|ops| ops[0]["ms"].as_f64()).collect())
        .unwrap_or_default();
    let mut sorted = add_ms.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "hold ({sdk:?}, {}): allowed tools/call p50 {:.2} ms over {} calls",
        if tls { "TLS" } else { "plaintext" },
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        sorted.len()
    );
    let held: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == client["pid"] && v["action"] == "deny")
        .collect();
    assert_eq!(held.len(), N, "{held:?}\nagent: {health}");
    assert!(
        held.iter().all(|v| v["enforcement"] == "held_then_reset"),
        "{:?}\nagent: {health}",
        held.iter().map(|v| &v["enforcement"]).collect::<Vec<_>>()
    );
}

#[test]
fn hold_stops_50_denied_calls_of_the_python_client_in_plaintext() {
    hold_stops_denied_calls(Sdk::Python, false);
}

#[test]
fn hold_stops_50_denied_calls_of_the_python_client_over_tls() {
    hold_stops_denied_calls(Sdk::Python, true);
}

#[test]
fn hold_stops_50_denied_calls_of_the_node_client_in_plaintext() {
    hold_stops_denied_calls(Sdk::Node, false);
}

#[test]
fn hold_stops_50_denied_calls_of_the_node_client_over_tls() {
    hold_stops_denied_calls(Sdk::Node, true);
}

fn mcpwarden(args: &[&str]) -> (bool, String) {
    let env = test_env();
    let out = Command::new(&env.agent_bin)
        .args(args)
        .output()
        .expect("run mcpwarden");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_redefined_tool_is_denied_until_accepted_then_allowed() {
    let s = Setup::new();
    let policy = s.policy(MINIMAL);
    let socket = s.socket();
    let agent = agent_with(&policy, &socket, "reset");
    let server = PolicyServer::start(free_port(), None, false);
    let first = run_policy_client(
        Sdk::Python,
        &server.url(),
        &json!([[
            {"op": "list"},
            call("add", json!({"a": 1, "b": 1})),
            call("redefine", json!({})),
            {"op": "list"},
            call("add", json!({"a": 2, "b": 2}))
        ]]),
        None,
    );
    assert_eq!(
        outcomes(&first),
        vec![vec!["ok", "ok", "ok", "ok", "connection_error"]],
        "{first}"
    );
    let endpoint = format!("127.0.0.1:{}/mcp", server.port());
    let (ok, out) = mcpwarden(&[
        "catalog",
        "accept",
        &endpoint,
        "add",
        "--control-socket",
        socket.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "catalog accept: {out}");
    let second = run_policy_client(
        Sdk::Python,
        &server.url(),
        &json!([[{"op": "list"}, call("add", json!({"a": 3, "b": 3}))]]),
        None,
    );
    assert_eq!(outcomes(&second), vec![vec!["ok", "ok"]], "{second}");
    let records = agent.stop();
    let drift = of_type(&records, "verdict")
        .into_iter()
        .find(|v| v["pid"] == first["pid"] && v["action"] == "deny")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        drift["reasons"][0]["kind"],
        json!("tool_definition_drift"),
        "{drift}"
    );
    assert!(
        drift["reasons"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("description")),
        "{drift}"
    );
}

/// A crafted stateless-era client (`crafted_client.py`).
fn crafted(url: &str, requests: &Value, pause_ms: u64) -> Value {
    let env = test_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python/crafted_client.py"))
        .arg(url)
        .arg("--requests")
        .arg(requests.to_string())
        .arg("--pause-ms")
        .arg(pause_ms.to_string());
    let shown = format!("{cmd:?}");
    let mut p = ChildGuard::spawn("crafted client", &mut cmd, dir.path());
    let pid = p.pid();
    mcpwarden_tests::peers::finish_client(&mut p, &shown, pid)
}

fn stateless_request(id: u64, header_name: &str, tool: &str) -> Value {
    let meta = mcpwarden_tests::stateless::modern_meta("crafted", "0.0.1");
    json!({
        "headers": {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": header_name},
        "body": {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                 "params": {"name": tool, "arguments": {"why": "crafted", "a": 1, "b": 2}, "_meta": meta}}
    })
}

#[test]
fn a_stateless_call_naming_an_allowed_tool_in_its_header_is_judged_by_its_body_and_held() {
    let s = Setup::new();
    let policy = s.policy(MINIMAL);
    let agent = agent_with(&policy, &s.socket(), "hold");
    let server = PolicyServer::start(free_port(), None, false);
    let requests = json!([
        stateless_request(1, "add", "add"),
        stateless_request(2, "add", "explode"),
        stateless_request(3, "explode", "explode"),
        stateless_request(4, "add", "add")
    ]);
    let answers = crafted(&server.url(), &requests, 1500);
    let a = answers["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(a.len(), 4, "{answers}");
    assert_eq!(a[0]["status"], json!(200), "{answers}");
    assert_eq!(a[1]["outcome"], json!("connection_error"), "{answers}");
    assert_eq!(a[2]["outcome"], json!("connection_error"), "{answers}");
    assert_eq!(a[3]["status"], json!(200), "{answers}");
    assert_eq!(
        tools_run(&server, "explode"),
        0,
        "{:?}",
        server.executions()
    );
    let records = agent.stop();
    let denied: Vec<&Value> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == answers["pid"] && v["action"] == "deny")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied
        .iter()
        .all(|v| v["era"] == "stateless" && v["name"] == "explode"));
    assert!(
        denied.iter().all(|v| v["enforcement"] == "held_then_reset"),
        "{denied:?}"
    );
    let mismatch = denied[0]["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["kind"] == "header_mismatch"));
    assert!(
        mismatch,
        "the header naming add is a finding: {}",
        denied[0]
    );
}

fn pending_ids(socket: &Path) -> Vec<u64> {
    let (ok, out) = mcpwarden(&[
        "pending",
        "--control-socket",
        socket.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "pending: {out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v["pending"]
        .as_array()
        .map(|p| p.iter().filter_map(|c| c["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn wait_pending(socket: &Path) -> u64 {
    let started = Instant::now();
    loop {
        if let Some(id) = pending_ids(socket).first() {
            return *id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no call became pending"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn approval_releases_rejection_resets_and_silence_resets_at_the_timeout() {
    let s = Setup::new();
    let policy = s.policy(
        "default: allow\nrules:\n  - id: ask-first\n    action: approve\n    approve_timeout_secs: 3\n    match: { tool: explode }\n",
    );
    let socket = s.socket();
    let agent = agent_with(&policy, &socket, "hold");
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([
        [{"op": "list"}, {"op": "sleep", "ms": 1500}],
        [call("explode", json!({"why": "approved"}))],
        [call("explode", json!({"why": "rejected"}))],
        [call("explode", json!({"why": "nobody"}))]
    ]);
    let client =
        mcpwarden_tests::policy::PolicyClient::spawn(Sdk::Python, &server.url(), &script, None);
    let sock = socket.as_path();
    let id = wait_pending(sock);
    let (ok, out) = mcpwarden(&[
        "approve",
        &id.to_string(),
        "--control-socket",
        sock.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "approve: {out}");
    let started = Instant::now();
    let id2 = loop {
        let ids = pending_ids(sock);
        if let Some(next) = ids.into_iter().find(|x| *x != id) {
            break next;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the second call never became pending"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ok, out) = mcpwarden(&[
        "reject",
        &id2.to_string(),
        "--control-socket",
        sock.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "reject: {out}");
    let summary = client.finish();
    assert_eq!(
        outcomes(&summary),
        vec![
            vec!["ok", "ok"],
            vec!["ok"],
            vec!["connection_error"],
            vec!["connection_error"]
        ],
        "{summary}"
    );
    let runs: Vec<Value> = server
        .executions()
        .into_iter()
        .filter(|e| e["tool"] == "explode")
        .collect();
    assert_eq!(
        runs,
        vec![json!({"tool": "explode", "args": {"why": "approved"}})]
    );
    let records = agent.stop();
    let outcomes: Vec<(Value, Value)> = of_type(&records, "verdict")
        .into_iter()
        .filter(|v| v["pid"] == summary["pid"] && v["name"] == "explode")
        .map(|v| (v["action"].clone(), v["enforcement"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (json!("approve"), json!("held_then_released")),
            (json!("approve"), json!("held_then_reset")),
            (json!("approve"), json!("held_then_reset")),
        ]
    );
}

#[test]
fn policy_check_names_line_and_field_and_a_sighup_reload_changes_verdicts_mid_session() {
    let s = Setup::new();
    let broken = s.dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "default: allow\nrules:\n  - id: r\n    action: deny\n    match: { tol: explode }\n",
    )
    .expect("write");
    let (ok, out) = mcpwarden(&["policy", "check", broken.to_str().unwrap_or_default()]);
    assert!(!ok);
    assert!(out.contains("broken.yaml:5:"), "{out}");
    assert!(out.contains("rules[0].match"), "{out}");
    let (ok, out) = mcpwarden(&[
        "policy",
        "check",
        s.policy(MINIMAL).to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("no-explode"), "{out}");

    let policy = s.policy("default: allow\n");
    let agent = agent_with(&policy, &s.socket(), "reset");
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([[
        call("explode", json!({"why": "before"})),
        {"op": "sleep", "ms": 3000},
        call("add", json!({"a": 1, "b": 2})),
        call("explode", json!({"why": "after"}))
    ]]);
    let client =
        mcpwarden_tests::policy::PolicyClient::spawn(Sdk::Python, &server.url(), &script, None);
    // While the client sleeps: the minimal policy, then SIGHUP.
    let started = Instant::now();
    while tools_run(&server, "explode") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first call never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&policy, MINIMAL).expect("rewrite policy");
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let summary = client.finish();
    assert_eq!(
        outcomes(&summary),
        vec![vec!["ok", "ok", "ok", "connection_error"]],
        "the session goes on after the reload, then the new rule denies: {summary}"
    );
    assert!(agent.stderr().contains("reloaded"), "{}", agent.stderr());
    let _ = agent.stop();
}
