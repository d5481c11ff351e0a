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
        {"op": "call", "tool": "fetch", "args": {"url": "https://docs.internal/a", "pin": "4321"}}
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
    assert!(!output.contains(SECRET), "the planted secret reached the output");
    assert!(!output.contains("4321"), "a configured redact path reached the output");

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
        assert_eq!(texts, vec![&json!("step 1 of 2"), &json!("step 2 of 2")], "pid {pid}");
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
    assert_eq!(note["inputSchema"]["properties"]["text"]["maxLength"], json!(64));
}
