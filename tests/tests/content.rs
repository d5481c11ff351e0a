//! What was said reaches the records: the params, results, errors and notification texts of a
//! full Python SDK conversation, tied to their ids, from both ends; a planted secret argument
//! is redacted everywhere the agent writes.

use mcpwarden_tests::policy::{outcomes, run_policy_client, PolicyServer, Sdk};
use mcpwarden_tests::records::messages_of;
use mcpwarden_tests::{free_port, Agent};
use serde_json::{json, Value};

const SECRET: &str = "hunter2-planted-secret";

fn find<'a>(msgs: &[&'a Value], kind: &str, method: &str, name: Option<&str>) -> Vec<&'a Value> {
    msgs.iter()
        .copied()
        .filter(|m| m["kind"] == kind && m["method"] == method)
        .filter(|m| name.is_none_or(|n| m["name"] == n))
        .collect()
}

#[test]
fn params_results_errors_and_notification_texts_are_reported_and_secrets_are_redacted() {
    let agent = Agent::start(&["--redact-path", "$.arguments.pin"]);
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([[
        {"op": "list"},
        {"op": "call", "tool": "add", "args": {"a": 2, "b": 3}},
        {"op": "call", "tool": "login", "args": {"user": "ann", "password": SECRET}},
        {"op": "call", "tool": "chatty", "args": {"n": 2}},
        {"op": "call", "tool": "fail", "args": {"reason": "on purpose"}},
        {"op": "call", "tool": "fetch", "args": {"url": "https://docs.internal/a", "pin": "pin-sekrit-4321"}}
    ]]);
    let client = run_policy_client(Sdk::Python, &server.url(), &script, None);
    assert_eq!(
        outcomes(&client),
        vec![vec!["ok", "ok", "ok", "ok", "tool_error", "ok"]],
        "{client}"
    );
    let client_pid = client["pid"].as_u64().unwrap_or(0) as u32;
    let records = agent.stop();
    let output = serde_json::to_string(&records).unwrap_or_default();
    assert!(
        !output.contains(SECRET),
        "the planted secret reached the output"
    );
    assert!(
        !output.contains("pin-sekrit-4321"),
        "a configured redact path reached the output"
    );

    for pid in [client_pid, server.pid()] {
        let msgs = messages_of(&records, pid);
        let add = find(&msgs, "request", "tools/call", Some("add"));
        assert_eq!(add.len(), 1, "pid {pid}");
        assert_eq!(add[0]["params"]["arguments"], json!({"a": 2, "b": 3}));
        let add_answer = find(&msgs, "response", "tools/call", Some("add"));
        assert_eq!(add_answer.len(), 1);
        assert_eq!(add_answer[0]["id"], add[0]["id"]);
        assert_eq!(add_answer[0]["result"]["content"][0]["text"], json!("5"));
        assert_eq!(
            add_answer[0]["result"]["structuredContent"],
            json!({"result": 5})
        );

        let login = find(&msgs, "request", "tools/call", Some("login"));
        assert_eq!(
            login[0]["params"]["arguments"],
            json!({"user": "ann", "password": "[REDACTED]"})
        );
        let fetch = find(&msgs, "request", "tools/call", Some("fetch"));
        assert_eq!(
            fetch[0]["params"]["arguments"],
            json!({"url": "https://docs.internal/a", "pin": "[REDACTED]"})
        );

        let chatty = find(&msgs, "request", "tools/call", Some("chatty"));
        let logs = find(&msgs, "notification", "notifications/message", None);
        let texts: Vec<&Value> = logs.iter().map(|m| &m["params"]["data"]).collect();
        assert_eq!(
            texts,
            vec![&json!("step 1 of 2"), &json!("step 2 of 2")],
            "pid {pid}"
        );
        for l in &logs {
            assert_eq!(l["related_id"], chatty[0]["id"], "{l}");
            assert_eq!(l["params"]["level"], json!("info"));
        }
        let chatty_answer = find(&msgs, "response", "tools/call", Some("chatty"));
        assert_eq!(
            chatty_answer[0]["result"]["content"][0]["text"],
            json!("done after 2 steps")
        );

        let fail = find(&msgs, "response", "tools/call", Some("fail"));
        assert_eq!(fail[0]["tool_error"], json!(true));
        assert_eq!(fail[0]["result"]["isError"], json!(true));
        assert!(
            fail[0]["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("Error executing tool fail")),
            "{}",
            fail[0]
        );

        let list = find(&msgs, "response", "tools/list", None);
        let names: Vec<&Value> = list[0]["result"]["tools"]
            .as_array()
            .map(|t| t.iter().map(|t| &t["name"]).collect())
            .unwrap_or_default();
        assert!(names.contains(&&json!("explode")), "{}", list[0]);
    }
    // The server's catalogue is reported once, with the published schemas.
    let catalogs: Vec<&Value> = records.iter().filter(|r| r["type"] == "catalog").collect();
    assert_eq!(catalogs.len(), 1, "{catalogs:?}");
    let note = catalogs[0]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "note"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(note["inputSchema"]["additionalProperties"], json!(false));
    assert_eq!(
        note["inputSchema"]["properties"]["text"]["maxLength"],
        json!(64)
    );
}

/// One planted secret, every sink: the JSON lines, the `--record` file, the collector's store
/// and HTTP API (over gRPC), and the OTLP spans. A policy audits the call so the verdict
/// record carries the offending request too.
#[test]
fn a_planted_secret_is_redacted_in_every_sink() {
    use base64::Engine;
    use mcpwarden_tests::collector::{wait_until, CollectorProc};
    use mcpwarden_tests::OtlpReceiver;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let collector = CollectorProc::start(&store, free_port(), free_port());
    let receiver = OtlpReceiver::start();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "default: allow\nrules:\n  - id: watch-logins\n    action: audit\n    match: { tool: login }\n",
    )
    .expect("policy");
    let recording = dir.path().join("events.jsonl");
    let agent = Agent::start(&[
        "--export",
        &collector.url(),
        "--otlp",
        &format!("http://127.0.0.1:{}", receiver.port),
        "--record",
        recording.to_str().unwrap_or_default(),
        "--policy",
        policy.to_str().unwrap_or_default(),
        "--control-socket",
        dir.path().join("control.sock").to_str().unwrap_or_default(),
    ]);
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([[
        {"op": "list"},
        {"op": "call", "tool": "login", "args": {"user": "ann", "password": SECRET}}
    ]]);
    let client = run_policy_client(Sdk::Python, &server.url(), &script, None);
    assert_eq!(outcomes(&client), vec![vec!["ok", "ok"]]);
    let records = agent.stop();
    let written = records.len() as u64;
    let verdict = records
        .iter()
        .find(|r| r["type"] == "verdict" && r["rule_id"] == "watch-logins")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        verdict["request"]["params"]["arguments"]["password"],
        json!("[REDACTED]"),
        "{verdict}"
    );
    let lines = serde_json::to_string(&records).unwrap_or_default();
    assert!(!lines.contains(SECRET), "JSON lines");

    let recorded = std::fs::read_to_string(&recording).expect("recording");
    let mut payload = Vec::new();
    for line in recorded.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(b) = v["b64"].as_str() {
            payload.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default(),
            );
        }
    }
    assert!(
        String::from_utf8_lossy(&payload).contains("\"password\""),
        "the recording holds the call"
    );
    assert!(
        !String::from_utf8_lossy(&payload).contains(SECRET),
        "--record file"
    );

    wait_until(
        "the collector stores every record",
        Duration::from_secs(30),
        || collector.stored() >= written,
    );
    let stored = mcpwarden_tests::collector::stored_records(&store);
    assert!(!stored.is_empty());
    assert!(
        !serde_json::to_string(&stored)
            .unwrap_or_default()
            .contains(SECRET),
        "collector store"
    );
    let sessions = collector.get("/api/sessions");
    for s in sessions["sessions"].as_array().cloned().unwrap_or_default() {
        if let Some(key) = s["key"].as_str() {
            let timeline = collector.get(&format!("/api/sessions/{key}"));
            assert!(!timeline.to_string().contains(SECRET), "collector API");
        }
    }
    wait_until("spans arrive", Duration::from_secs(10), || {
        !receiver.spans().is_empty()
    });
    assert!(
        !serde_json::to_string(&receiver.spans())
            .unwrap_or_default()
            .contains(SECRET),
        "OTLP spans"
    );
    collector.stop();
}
