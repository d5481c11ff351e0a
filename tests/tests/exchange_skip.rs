//! Exchange skipping (`mcpwarden_common::conn::EXCH_SKIPPING`): on one keep-alive connection
//! a client interleaves MCP requests with requests that cannot be MCP (`GET`s and a `HEAD`
//! that do not ask for an event stream, an `OPTIONS`) and one `GET` that does ask for one,
//! the connection's first request being one that cannot be MCP (the connection is announced
//! to userspace only at its first MCP request),
//! against the official Python SDK server, in plaintext and over TLS. The kernel skips exactly
//! the exchanges that cannot be MCP, from both ends; the MCP conversation is reported whole,
//! every response paired, and userspace sees no gap, no HTTP error and no unpaired answer.

use std::process::Command;

use mcpwarden_tests::hostile::counter;
use mcpwarden_tests::peers::finish_client;
use mcpwarden_tests::records::{messages_of, outline};
use mcpwarden_tests::stateless::{modern_meta, ScriptServer};
use mcpwarden_tests::{free_port, test_env, Agent, ChildGuard, SelfSignedCert};
use serde_json::{json, Value};

/// A stateless-era (2026-07-28) MCP request: headers mirror the body.
fn mcp(id: u64, method: &str, params: Value, name: Option<&str>) -> Value {
    let mut params = params;
    params["_meta"] = modern_meta("skip-test", "0.0.1");
    let mut headers = json!({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method});
    if let Some(n) = name {
        headers["Mcp-Name"] = json!(n);
    }
    json!({
        "headers": headers,
        "body": {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    })
}

/// A request with no body: `method` on `path`, with `accept`.
fn plain(method: &str, path: &str, accept: &str) -> Value {
    json!({"method": method, "path": path, "headers": {"Accept": accept}})
}

/// The conversation, on one connection: 4 MCP requests, 4 exchanges that cannot be MCP
/// (skipped; the first opens the connection), 1 `GET` asking for an event stream (carried,
/// whatever its path).
fn conversation() -> Value {
    let add = |id: u64, a: i64| {
        mcp(
            id,
            "tools/call",
            json!({"name": "add", "arguments": {"a": a, "b": 1}}),
            Some("add"),
        )
    };
    json!([
        plain("GET", "/", "text/html"),
        mcp(1, "tools/list", json!({}), None),
        plain("GET", "/health", "text/plain"),
        add(2, 1),
        plain("HEAD", "/mcp", "*/*"),
        plain("GET", "/health", "application/json, text/event-stream"),
        add(3, 2),
        plain("OPTIONS", "/mcp", "*/*"),
        add(4, 3),
    ])
}

/// Non-MCP exchanges in [`conversation`] that the kernel skips, per end.
const SKIPPED_PER_END: u64 = 4;

fn run_case(tls: bool) {
    let env = test_env();
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let server = ScriptServer::python("stateless_server.py", free_port(), tls.then_some(&cert));
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python/crafted_client.py"))
        .arg(server.url())
        .arg("--requests")
        .arg(conversation().to_string())
        .arg("--cafile")
        .arg(&cert.cert);
    let shown = format!("{cmd:?}");
    let mut process = ChildGuard::spawn("crafted client", &mut cmd, dir.path());
    let client_pid = process.pid();
    let out = finish_client(&mut process, &shown, client_pid);
    let statuses: Vec<Value> = out["answers"]
        .as_array()
        .map(|a| a.iter().map(|x| x["status"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(statuses.len(), 9, "every request was answered: {out}");
    for i in [1, 3, 6, 8] {
        assert_eq!(statuses[i], json!(200), "MCP request {i} succeeded: {out}");
    }
    assert!(
        statuses.iter().all(|s| s.is_u64()),
        "no connection error: {out}"
    );
    let records = agent.stop();
    let health = records
        .last()
        .filter(|r| r["type"] == "health" && r["reason"] == "stop")
        .unwrap_or_else(|| panic!("no final health record: {:?}", records.last()));
    let scheme = if tls { "TLS" } else { "plaintext" };
    for (side, pid) in [("client", client_pid), ("server", server.pid())] {
        let messages = messages_of(&records, pid);
        let got: Vec<(Value, Value, Value)> = messages
            .iter()
            .map(|m| (m["kind"].clone(), m["method"].clone(), m["id"].clone()))
            .collect();
        let want: Vec<(Value, Value, Value)> = [
            (1, "tools/list"),
            (2, "tools/call"),
            (3, "tools/call"),
            (4, "tools/call"),
        ]
        .iter()
        .flat_map(|&(id, method)| {
            [
                (json!("request"), json!(method), json!(id)),
                (json!("response"), json!(method), json!(id)),
            ]
        })
        .collect();
        assert_eq!(
            got,
            want,
            "{scheme}, {side} (pid {pid}): the MCP conversation exactly; records:\n{}",
            outline(&messages)
        );
        for m in messages.iter().filter(|m| m["kind"] == "response") {
            assert!(
                m["latency_ns"].as_u64() > Some(0),
                "{scheme}, {side}: a paired response: {m}"
            );
        }
    }
    assert_eq!(
        counter(health, "kernel", "exchanges_skipped"),
        2 * SKIPPED_PER_END,
        "{scheme}: the non-MCP exchanges, skipped at both ends, no other: {health}"
    );
    assert!(
        counter(health, "kernel", "skipped_bytes") > 0,
        "{scheme}: {health}"
    );
    for name in ["gaps", "http_errors", "unmatched_responses"] {
        assert_eq!(
            counter(health, "conn", name),
            0,
            "{scheme}: userspace saw one unbroken stream: {health}"
        );
    }
}

#[test]
fn exchanges_that_cannot_be_mcp_are_skipped_in_the_kernel_and_the_mcp_ones_reported_whole() {
    // One after the other: the kernel's counters are host-wide.
    run_case(false);
    run_case(true);
}
