//! The stateless MCP revision (2026-07-28) end to end, with the official SDKs as peers:
//!
//! 1. Python `mcp.Client` (2.3.0, `mode="auto"`) against `MCPServer` (stateless_server.py),
//!    plain HTTP and HTTPS: one stateless session with a synthetic id, the same from the
//!    client and the server process; discover, every call paired with its latency, a
//!    three-round `input_required` call reported as one logical call, a subscription stream
//!    and a cancelled call (both ended by closing their response stream).
//! 2. The same client against a handshake-only server (TypeScript SDK 1.32.2): the
//!    `server/discover` probe, the 400 that refuses it, the `initialize` fallback and the
//!    handshake-era session, in that order.
//! 3. The TypeScript SDK v2 client and server (2.4.0, node adapter 2.1.2).
//! 4. Crafted requests over a raw socket: `Mcp-Name` naming another tool than the body, a
//!    base64 `Mcp-Param-*` header decoding to another value, a missing `Mcp-Method`; each a
//!    typed verification failure with the header and body values, honest requests of the same
//!    connection none.
//!
//! Wire facts relied on (seen with a relay): the Python client sends `mcp-protocol-version`,
//! `mcp-method`, `mcp-name` and `Mcp-Param-Region` (base64 for "Zürich"), keeps one connection
//! for sequential requests, opens a second one while the listen stream holds the first, and
//! closes the connection of a stream it abandons; `MCPServer` answers JSON unless the handler
//! emits a notification first (then SSE).

use mcpwarden_tests::records::{messages_of, outline, str_field, u64_field};
use mcpwarden_tests::stateless::{
    modern_meta, run_node_script, run_stateless_py_client, RawClient, ScriptServer,
};
use mcpwarden_tests::{free_port, Agent, SelfSignedCert};
use serde_json::{json, Value};

/// The records of `type` written for process `pid`, in output order.
fn of_type<'a>(records: &'a [Value], ty: &str, pid: u32) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == ty && r["pid"].as_u64() == Some(u64::from(pid)))
        .collect()
}

/// The members of `record` named in `fields` that it has.
fn pick(record: &Value, fields: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for f in fields {
        if let Some(v) = record.get(*f) {
            out.insert((*f).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// One observed process.
struct Observed {
    side: &'static str,
    pid: u32,
    comm: String,
}

fn sides(client: &Value, server: &ScriptServer, server_comm: &str) -> [Observed; 2] {
    [
        Observed {
            side: "client",
            pid: u64_field(client, "pid") as u32,
            comm: str_field(client, "comm").to_string(),
        },
        Observed {
            side: "server",
            pid: server.pid(),
            comm: server_comm.to_string(),
        },
    ]
}

/// A synthetic stateless session id: `stateless:` and 16 lower-case hex digits.
fn assert_synthetic(id: &str) {
    let hex = id.strip_prefix("stateless:").unwrap_or("");
    assert!(
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "want a synthetic session id stateless:<16 hex>, got {id:?}"
    );
}

/// Every message record of `who`: its process, the endpoint, and no verification failure.
fn assert_common(messages: &[&Value], who: &Observed, port: u16) {
    for m in messages {
        assert_eq!(str_field(m, "side"), who.side, "{m}");
        assert_eq!(str_field(m, "comm"), who.comm, "{m}");
        assert_eq!(str_field(m, "http_method"), "POST", "{m}");
        assert_eq!(str_field(m, "http_path"), "/mcp", "{m}");
        assert_eq!(m["batch"], json!(false), "{m}");
        assert_eq!(m.get("verification"), None, "honest requests verify: {m}");
        let server_end = if who.side == "client" {
            str_field(m, "remote")
        } else {
            str_field(m, "local")
        };
        assert_eq!(server_end, format!("127.0.0.1:{port}"), "{m}");
    }
}

fn sent<'a>(messages: &[&'a Value]) -> Vec<&'a Value> {
    messages
        .iter()
        .copied()
        .filter(|m| m["direction"] == "client_to_server")
        .collect()
}

fn received<'a>(messages: &[&'a Value]) -> Vec<&'a Value> {
    messages
        .iter()
        .copied()
        .filter(|m| m["direction"] == "server_to_client")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Python mcp.Client (auto) against MCPServer.

const REQUEST_FIELDS: &[&str] = &[
    "kind",
    "method",
    "id",
    "name",
    "call_id",
    "round",
    "input_responses",
    "progress_token",
    "mcp_protocol_version",
    "transport",
];

const ANSWER_FIELDS: &[&str] = &[
    "kind",
    "method",
    "id",
    "name",
    "http_status",
    "transport",
    "result_type",
    "input_requests",
    "call_id",
    "round",
    "tool_error",
    "error_message",
    "supported_versions",
    "ttl_ms",
    "cache_scope",
    "related_id",
    "subscription_id",
    "progress_token",
];

fn full_requests() -> Vec<Value> {
    let r = |id: Value, method: &str, extra: Value| {
        let mut v = json!({"kind": "request", "method": method, "id": id,
                           "mcp_protocol_version": "2026-07-28", "transport": "json"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    vec![
        r(json!(1), "server/discover", json!({})),
        r(json!(2), "tools/list", json!({})),
        r(json!(3), "tools/call", json!({"name": "add"})),
        r(json!(4), "tools/call", json!({"name": "fail"})),
        r(json!(5), "resources/read", json!({"name": "config://app"})),
        r(json!(6), "prompts/get", json!({"name": "greet"})),
        r(json!(7), "tools/call", json!({"name": "route"})),
        r(json!(8), "tools/call", json!({"name": "route"})),
        r(json!(9), "tools/call", json!({"name": "ask"})),
        r(
            json!(10),
            "tools/call",
            json!({"name": "ask", "call_id": 9, "round": 2, "input_responses": ["name"]}),
        ),
        r(
            json!(11),
            "tools/call",
            json!({"name": "ask", "call_id": 9, "round": 3, "input_responses": ["confirm"]}),
        ),
        r(json!("listen-1"), "subscriptions/listen", json!({})),
        r(json!(12), "tools/call", json!({"name": "touch"})),
        r(
            json!(13),
            "tools/call",
            json!({"name": "slow", "progress_token": 13}),
        ),
    ]
}

fn full_answers() -> Vec<Value> {
    let a = |id: i64, method: &str, extra: Value| {
        let mut v = json!({"kind": "response", "method": method, "id": id, "http_status": 200,
                           "transport": "json", "result_type": "complete", "tool_error": false});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let cache = json!({"ttl_ms": 0, "cache_scope": "private"});
    let mut discover = cache.clone();
    discover["supported_versions"] = json!(["2026-07-28"]);
    let mut read = cache.clone();
    read["name"] = json!("config://app");
    vec![
        a(1, "server/discover", discover),
        a(2, "tools/list", cache),
        a(3, "tools/call", json!({"name": "add"})),
        a(
            4,
            "tools/call",
            json!({"name": "fail", "tool_error": true,
                   "error_message": "Error executing tool fail"}),
        ),
        a(5, "resources/read", read),
        a(6, "prompts/get", json!({"name": "greet"})),
        a(7, "tools/call", json!({"name": "route"})),
        a(8, "tools/call", json!({"name": "route"})),
        a(
            9,
            "tools/call",
            json!({"name": "ask", "result_type": "input_required", "call_id": 9, "round": 1,
                   "input_requests": [{"key": "name", "method": "elicitation/create"}]}),
        ),
        a(
            10,
            "tools/call",
            json!({"name": "ask", "result_type": "input_required", "call_id": 9, "round": 2,
                   "input_requests": [{"key": "confirm", "method": "elicitation/create"}]}),
        ),
        a(
            11,
            "tools/call",
            json!({"name": "ask", "call_id": 9, "round": 3}),
        ),
        a(12, "tools/call", json!({"name": "touch"})),
    ]
}

fn full_notifications() -> Vec<Value> {
    vec![
        json!({"kind": "notification", "method": "notifications/subscriptions/acknowledged",
               "id": null, "http_status": 200, "transport": "sse", "tool_error": false,
               "related_id": "listen-1", "subscription_id": "listen-1"}),
        json!({"kind": "notification", "method": "notifications/tools/list_changed",
               "id": null, "http_status": 200, "transport": "sse", "tool_error": false,
               "related_id": "listen-1", "subscription_id": "listen-1"}),
        json!({"kind": "notification", "method": "notifications/progress", "id": null,
               "http_status": 200,
               "transport": "sse", "tool_error": false, "related_id": 13,
               "progress_token": 13}),
    ]
}

fn assert_full_peer_summary(client: &Value) {
    let want = json!({
        "protocol_version": "2026-07-28",
        "server_name": "mcpwarden-test-server", "server_version": "0.1.0",
        "tools": ["add", "fail", "route", "ask", "slow", "touch"],
        "add": {"is_error": false, "text": ["5"]},
        "route": ["q1 @ eu-west-1", "q2 @ Zürich"],
        "ask": ["lunch for mcpwarden: yes"],
        "listen_events": ["ToolsListChanged"],
        "slow_progress": [1.0]
    });
    let keys: Vec<&str> = want
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        pick(client, &keys),
        want,
        "the peers behaved as scripted: {client}"
    );
    let headers: Vec<Value> = client["http"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|x| pick(x, &["mcp_method", "mcp_param_region"]))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        headers.contains(&json!({"mcp_method": "tools/call",
                                  "mcp_param_region": "=?base64?WsO8cmljaA==?="})),
        "the client mirrored Zürich as a base64 Mcp-Param-Region: {headers:?}"
    );
}

fn full_conversation(tls: bool) {
    let cert = tls.then(SelfSignedCert::generate);
    let agent = Agent::start(&[]);
    let server = ScriptServer::python("stateless_server.py", free_port(), cert.as_ref());
    let server_comm = server.comm();
    let client = run_stateless_py_client(
        &server.url(),
        cert.as_ref().map(|c| c.cert.as_path()),
        "full",
    );
    assert_full_peer_summary(&client);
    let records = agent.stop();
    let all: Vec<&Value> = records.iter().collect();

    let mut ids = Vec::new();
    for who in sides(&client, &server, &server_comm) {
        let side = who.side;
        let messages = messages_of(&records, who.pid);
        assert!(
            !messages.is_empty(),
            "{side}: no message records; all records:\n{}",
            outline(&all)
        );
        let context = || format!("{side} (pid {}):\n{}", who.pid, outline(&messages));
        assert_common(&messages, &who, server.port());
        let sid = str_field(messages[0], "session_id").to_string();
        assert_synthetic(&sid);
        for m in &messages {
            assert_eq!(str_field(m, "era"), "stateless", "{m}");
            assert_eq!(str_field(m, "session_id"), sid, "one session: {m}");
        }

        let got: Vec<Value> = sent(&messages)
            .iter()
            .map(|m| pick(m, REQUEST_FIELDS))
            .collect();
        assert_eq!(
            got,
            full_requests(),
            "{side}: requests in order\n{}",
            context()
        );

        let answers: Vec<&Value> = received(&messages)
            .into_iter()
            .filter(|m| m["kind"] != "notification")
            .collect();
        let mut got: Vec<Value> = answers.iter().map(|m| pick(m, ANSWER_FIELDS)).collect();
        got.sort_by_key(|a| a["id"].as_i64());
        assert_eq!(got, full_answers(), "{side}: answers\n{}", context());
        for a in &answers {
            assert!(u64_field(a, "latency_ns") > 0, "{side}: latency of {a}");
        }
        let notes: Vec<Value> = received(&messages)
            .into_iter()
            .filter(|m| m["kind"] == "notification")
            .map(|m| pick(m, ANSWER_FIELDS))
            .collect();
        assert_eq!(notes, full_notifications(), "{side}: notifications");

        // The listen stream and the slow call ended by closing their response streams.
        let cancelled = of_type(&records, "call_cancelled", who.pid);
        let got: Vec<Value> = cancelled
            .iter()
            .map(|c| {
                pick(
                    c,
                    &[
                        "session_id",
                        "era",
                        "reason",
                        "id",
                        "method",
                        "name",
                        "http_status",
                        "notifications",
                        "progress",
                        "side",
                        "comm",
                    ],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                json!({"session_id": sid, "era": "stateless", "reason": "stream_closed",
                       "id": "listen-1", "method": "subscriptions/listen", "http_status": 200,
                       "notifications": 2, "side": side, "comm": who.comm}),
                json!({"session_id": sid, "era": "stateless", "reason": "stream_closed",
                       "id": 13, "method": "tools/call", "name": "slow", "http_status": 200,
                       "notifications": 1,
                       "progress": {"progress": 1, "total": 10, "message": "step 1"},
                       "side": side, "comm": who.comm}),
            ],
            "{side}: call_cancelled records"
        );
        for c in &cancelled {
            let request = sent(&messages)
                .into_iter()
                .find(|m| m["id"] == c["id"])
                .unwrap_or_else(|| panic!("{side}: no request for {c}"));
            assert_eq!(c["conn_id"], request["conn_id"], "{side}: {c}");
            assert_eq!(c["requested_ns"], request["ts_ns"], "{side}: {c}");
            assert!(u64_field(c, "elapsed_ns") > 0, "{c}");
        }

        let ends = of_type(&records, "session_end", who.pid);
        assert_eq!(ends.len(), 1, "{side}: one session: {ends:?}");
        let end = ends[0];
        let mut fixed = end.clone();
        for f in ["started_ns", "ended_ns", "duration_ns"] {
            fixed.as_object_mut().map(|o| o.remove(f));
        }
        // Who the process is (its own tests are in node_agent.rs): present, then set aside.
        assert!(
            end["exe"].as_str().is_some_and(|e| e.contains("python")),
            "{side}: {end}"
        );
        assert_eq!(end["uid"], json!(0), "{side}");
        for f in [
            "exe",
            "uid",
            "cgroup",
            "container_id",
            "pod_name",
            "pod_namespace",
        ] {
            fixed.as_object_mut().map(|o| o.remove(f));
        }
        assert_eq!(
            fixed,
            json!({
                "type": "session_end", "session_id": sid, "grouping": "stateless",
                "era": "stateless", "pid": who.pid, "comm": who.comm, "side": side,
                "server": server.endpoint(), "client_name": "mcpwarden-stateless-client",
                "client_version": "0.2.0", "server_name": "mcpwarden-test-server",
                "server_version": "0.1.0", "protocol_version": "2026-07-28",
                "requests": 14, "notifications": 3, "responses": 12, "errors": 0,
                "status": "active", "end_reason": "shutdown",
                "methods": ["notifications/progress", "notifications/subscriptions/acknowledged",
                            "notifications/tools/list_changed", "prompts/get", "resources/read",
                            "server/discover", "subscriptions/listen", "tools/call",
                            "tools/list"],
                "tools": ["add", "ask", "fail", "route", "slow", "touch"],
                "primitives": ["elicitation", "prompts", "resources", "tools"],
                "state": "new", "user": null, "role": null, "identity_source": null,
                "identity_verified": false,
                "client_capabilities": {"elicitation": {"form": {}, "url": {}}},
                "server_capabilities": {"prompts": {"listChanged": true},
                                        "resources": {"listChanged": true, "subscribe": true},
                                        "tools": {"listChanged": true}},
                "cancelled": 2, "protocol_version_mismatches": 0,
                "first_mismatched_protocol_version": null,
                "supported_versions": ["2026-07-28"], "verification_failures": 0,
                "attacks": []
            }),
            "{side}: session_end"
        );
        assert_eq!(
            u64_field(end, "duration_ns"),
            u64_field(end, "ended_ns") - u64_field(end, "started_ns"),
            "{end}"
        );
        assert_eq!(end["started_ns"], messages[0]["ts_ns"], "{side}: {end}");
        ids.push(sid);
    }
    assert_eq!(
        ids[0], ids[1],
        "the client and the server process report the same synthetic session id"
    );
}

#[test]
fn python_auto_client_and_mcpserver_over_plain_http_are_one_stateless_session_from_both_sides() {
    full_conversation(false);
}

#[test]
fn python_auto_client_and_mcpserver_over_https_are_decoded_the_same() {
    full_conversation(true);
}

// ---------------------------------------------------------------------------------------------
// 2. The same client against a handshake-only server.

#[test]
fn a_probe_refused_by_a_handshake_only_typescript_server_falls_back_in_order() {
    let agent = Agent::start(&[]);
    let server = ScriptServer::node("handshake_server.mjs", free_port());
    let server_comm = server.comm();
    let client = run_stateless_py_client(&server.url(), None, "basic");
    assert_eq!(
        pick(
            &client,
            &["protocol_version", "server_name", "server_version", "tools"]
        ),
        json!({"protocol_version": "2025-11-25",
               "server_name": "mcpwarden-ts-handshake-server", "server_version": "1.32.2",
               "tools": ["add", "fail"]}),
        "the client fell back: {client}"
    );
    let http: Vec<Value> = client["http"]
        .as_array()
        .map(|h| h.iter().map(|x| pick(x, &["method", "status"])).collect())
        .unwrap_or_default();
    assert_eq!(
        http.first(),
        Some(&json!({"method": "POST", "status": 400})),
        "{http:?}"
    );
    let session_id = client["http"]
        .as_array()
        .and_then(|h| h.iter().find_map(|x| x["session_id"].as_str()))
        .unwrap_or_else(|| panic!("the server handed out a session id: {client}"))
        .to_string();
    let records = agent.stop();

    for who in sides(&client, &server, &server_comm) {
        let side = who.side;
        let messages = messages_of(&records, who.pid);
        let context = || format!("{side} (pid {}):\n{}", who.pid, outline(&messages));
        assert_common(&messages, &who, server.port());
        let probe_sid = str_field(messages[0], "session_id").to_string();
        assert_synthetic(&probe_sid);

        let got: Vec<Value> = messages
            .iter()
            .map(|m| {
                pick(
                    m,
                    &[
                        "direction",
                        "kind",
                        "method",
                        "id",
                        "era",
                        "session_id",
                        "http_status",
                        "error_code",
                        "related_id",
                        "transport",
                    ],
                )
            })
            .collect();
        let c2s = |kind: &str, method: &str, id: Value, era: &str, sid: Value| {
            json!({"direction": "client_to_server", "kind": kind, "method": method, "id": id,
                   "era": era, "session_id": sid, "http_status": null, "transport": "json"})
        };
        let s2c = |id: i64, method: &str| {
            json!({"direction": "server_to_client", "kind": "response", "method": method,
                   "id": id, "era": "handshake", "session_id": session_id, "http_status": 200,
                   "transport": "sse"})
        };
        let hs = json!(session_id);
        assert_eq!(
            got,
            vec![
                c2s(
                    "request",
                    "server/discover",
                    json!(1),
                    "stateless",
                    json!(probe_sid)
                ),
                json!({"direction": "server_to_client", "kind": "error",
                       "method": "server/discover", "id": null, "era": "stateless",
                       "session_id": probe_sid, "http_status": 400, "error_code": -32000,
                       "related_id": 1, "transport": "json"}),
                c2s("request", "initialize", json!(2), "handshake", Value::Null),
                s2c(2, "initialize"),
                c2s(
                    "notification",
                    "notifications/initialized",
                    Value::Null,
                    "handshake",
                    hs.clone()
                ),
                c2s("request", "tools/list", json!(3), "handshake", hs.clone()),
                s2c(3, "tools/list"),
                c2s("request", "tools/call", json!(4), "handshake", hs.clone()),
                s2c(4, "tools/call"),
                c2s("request", "tools/call", json!(5), "handshake", hs.clone()),
                s2c(5, "tools/call"),
                c2s(
                    "request",
                    "resources/read",
                    json!(6),
                    "handshake",
                    hs.clone()
                ),
                s2c(6, "resources/read"),
                c2s("request", "prompts/get", json!(7), "handshake", hs.clone()),
                s2c(7, "prompts/get"),
            ],
            "{side}: probe, refusal, fallback, handshake session\n{}",
            context()
        );
        for a in received(&messages) {
            assert!(u64_field(a, "latency_ns") > 0, "{side}: latency of {a}");
        }

        // By start: the handshake session's summary is written first (at its DELETE).
        let mut ends = of_type(&records, "session_end", who.pid);
        ends.sort_by_key(|e| e["started_ns"].as_u64());
        let got: Vec<Value> = ends
            .iter()
            .map(|e| {
                pick(
                    e,
                    &[
                        "session_id",
                        "grouping",
                        "era",
                        "client_name",
                        "client_version",
                        "server_name",
                        "server_version",
                        "protocol_version",
                        "requests",
                        "notifications",
                        "responses",
                        "errors",
                        "status",
                        "end_reason",
                        "methods",
                        "state",
                        "supported_versions",
                    ],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                json!({"session_id": probe_sid, "grouping": "stateless", "era": "stateless",
                       "client_name": "mcpwarden-stateless-client", "client_version": "0.2.0",
                       "server_name": null, "server_version": null,
                       "protocol_version": "2026-07-28", "requests": 1, "notifications": 0,
                       "responses": 0, "errors": 1, "status": "active",
                       "end_reason": "shutdown", "methods": ["server/discover"],
                       "state": "new", "supported_versions": null}),
                json!({"session_id": session_id, "grouping": "session_header",
                       "era": "handshake", "client_name": "mcpwarden-stateless-client",
                       "client_version": "0.2.0",
                       "server_name": "mcpwarden-ts-handshake-server",
                       "server_version": "1.32.2", "protocol_version": "2025-11-25",
                       "requests": 6, "notifications": 1, "responses": 6, "errors": 0,
                       "status": "ended", "end_reason": "delete",
                       "methods": ["initialize", "notifications/initialized", "prompts/get",
                                   "resources/read", "tools/call", "tools/list"],
                       "state": "operating", "supported_versions": null}),
            ],
            "{side}: the probe's stateless session, then the handshake session"
        );
        assert!(
            u64_field(ends[0], "started_ns") < u64_field(ends[1], "started_ns"),
            "{side}: in order: {ends:?}"
        );
        assert!(of_type(&records, "call_cancelled", who.pid).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// 3. TypeScript SDK v2 client and server.

#[test]
fn typescript_v2_client_and_server_are_one_stateless_session_from_both_sides() {
    let agent = Agent::start(&[]);
    let server = ScriptServer::node("modern_server.mjs", free_port());
    let server_comm = server.comm();
    let client = run_node_script("modern_client.mjs", &server.url());
    assert_eq!(
        pick(
            &client,
            &[
                "protocol_version",
                "tools",
                "add",
                "fail",
                "route",
                "server"
            ]
        ),
        json!({"protocol_version": "2026-07-28", "tools": ["add", "fail", "route"],
               "add": {"is_error": false, "text": ["5"]},
               "fail": {"is_error": true, "text": ["requested failure: on purpose"]},
               "route": ["q1 @ eu-west-1"],
               "server": {"name": "mcpwarden-ts-modern-server", "version": "2.4.0"}}),
        "the TypeScript peers behaved: {client}"
    );
    let records = agent.stop();
    let mut ids = Vec::new();
    for who in sides(&client, &server, &server_comm) {
        let side = who.side;
        let messages = messages_of(&records, who.pid);
        let context = || format!("{side} (pid {}):\n{}", who.pid, outline(&messages));
        assert_common(&messages, &who, server.port());
        let sid = str_field(messages[0], "session_id").to_string();
        assert_synthetic(&sid);
        for m in &messages {
            assert_eq!(str_field(m, "era"), "stateless", "{m}");
            assert_eq!(str_field(m, "session_id"), sid, "{m}");
        }
        let got: Vec<Value> = sent(&messages)
            .iter()
            .map(|m| pick(m, &["kind", "method", "id", "name", "mcp_protocol_version"]))
            .collect();
        let r = |id: Value, method: &str, name: Option<&str>| {
            let mut v = json!({"kind": "request", "method": method, "id": id,
                               "mcp_protocol_version": "2026-07-28"});
            if let Some(n) = name {
                v["name"] = json!(n);
            }
            v
        };
        assert_eq!(
            got,
            vec![
                r(json!("server-discover-probe-1"), "server/discover", None),
                r(json!(0), "tools/list", None),
                r(json!(1), "tools/call", Some("add")),
                r(json!(2), "tools/call", Some("fail")),
                r(json!(3), "resources/read", Some("config://app")),
                r(json!(4), "prompts/get", Some("greet")),
                r(json!(5), "tools/call", Some("route")),
            ],
            "{side}: requests\n{}",
            context()
        );
        let answers = received(&messages);
        assert_eq!(answers.len(), 7, "{side}: one answer each\n{}", context());
        for (a, q) in answers.iter().zip(sent(&messages)) {
            assert_eq!(
                pick(
                    a,
                    &["kind", "id", "method", "name", "http_status", "result_type"]
                ),
                pick(q, &["id", "method", "name"])
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.insert("kind".into(), json!("response"));
                        o.insert("http_status".into(), json!(200));
                        o.insert("result_type".into(), json!("complete"));
                        Value::Object(o)
                    })
                    .unwrap_or_default(),
                "{side}: answer to {q}"
            );
            assert!(u64_field(a, "latency_ns") > 0, "{a}");
        }
        let ends = of_type(&records, "session_end", who.pid);
        assert_eq!(ends.len(), 1, "{side}: {ends:?}");
        assert_eq!(
            pick(
                ends[0],
                &[
                    "session_id",
                    "grouping",
                    "era",
                    "client_name",
                    "client_version",
                    "server_name",
                    "server_version",
                    "protocol_version",
                    "requests",
                    "responses",
                    "errors",
                    "tools",
                    "supported_versions",
                    "verification_failures",
                    "attacks",
                    "server",
                ]
            ),
            json!({"session_id": sid, "grouping": "stateless", "era": "stateless",
                   "client_name": "mcpwarden-ts-modern-client", "client_version": "2.4.0",
                   "server_name": "mcpwarden-ts-modern-server", "server_version": "2.4.0",
                   "protocol_version": "2026-07-28", "requests": 7, "responses": 7,
                   "errors": 0, "tools": ["add", "fail", "route"],
                   "supported_versions": ["2026-07-28"], "verification_failures": 0,
                   "attacks": [], "server": server.endpoint()}),
            "{side}: session_end"
        );
        ids.push(sid);
    }
    assert_eq!(ids[0], ids[1], "same synthetic id from both processes");
}

// ---------------------------------------------------------------------------------------------
// 4. Crafted requests over a raw socket.

#[test]
fn crafted_header_body_mismatches_are_typed_failures_and_honest_requests_have_none() {
    let agent = Agent::start(&[]);
    let server = ScriptServer::python("stateless_server.py", free_port(), None);
    let server_comm = server.comm();
    let mut raw = RawClient::connect(server.port());
    let meta = modern_meta("raw-crafter", "0.0.1");
    let body = |id: i64, method: &str, params: Value| {
        let mut p = params;
        p["_meta"] = meta.clone();
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": p}).to_string()
    };
    let v = ("mcp-protocol-version", "2026-07-28");

    // Honest: the tool list (the catalogue learns route's x-mcp-header), a call, a base64 header.
    let list = raw.post(
        &[v, ("Mcp-Method", "tools/list")],
        &body(1, "tools/list", json!({})),
    );
    assert_eq!(list.status, 200, "{list:?}");
    let add = raw.post(
        &[v, ("Mcp-Method", "tools/call"), ("Mcp-Name", "add")],
        &body(
            2,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
        ),
    );
    assert_eq!(add.status, 200, "{add:?}");
    let zurich = raw.post(
        &[
            v,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "route"),
            ("Mcp-Param-Region", "=?base64?WsO8cmljaA==?="),
        ],
        &body(
            3,
            "tools/call",
            json!({"name": "route", "arguments": {"region": "Zürich", "query": "q"}}),
        ),
    );
    assert_eq!(zurich.status, 200, "{zurich:?}");

    // Crafted: the header names `add`, the body calls `fail`.
    let named = raw.post(
        &[v, ("Mcp-Method", "tools/call"), ("Mcp-Name", "add")],
        &body(
            4,
            "tools/call",
            json!({"name": "fail", "arguments": {"reason": "x"}}),
        ),
    );
    // Crafted: base64 of "us-east-1" while the body says eu-west-1.
    let encoded = raw.post(
        &[
            v,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "route"),
            ("Mcp-Param-Region", "=?base64?dXMtZWFzdC0x?="),
        ],
        &body(
            5,
            "tools/call",
            json!({"name": "route", "arguments": {"region": "eu-west-1", "query": "q"}}),
        ),
    );
    // Crafted: no Mcp-Method.
    let missing = raw.post(&[v], &body(6, "tools/list", json!({})));
    for (what, answer) in [
        ("named", &named),
        ("encoded", &encoded),
        ("missing", &missing),
    ] {
        assert_eq!(
            (answer.status, &answer.body["error"]["code"]),
            (400, &json!(-32020)),
            "the server rejects the {what} request with HeaderMismatch: {answer:?}"
        );
    }
    let client_port = raw.local_port();
    drop(raw);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let records = agent.stop();

    let me = Observed {
        side: "client",
        pid: std::process::id(),
        comm: std::fs::read_to_string("/proc/self/comm")
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    };
    let srv = Observed {
        side: "server",
        pid: server.pid(),
        comm: server_comm,
    };
    let named_failures = json!([{"reason": "header_mismatch", "header": "Mcp-Name",
                                 "header_value": "add", "body_field": "params.name",
                                 "body_value": "fail"}]);
    let encoded_failures = json!([{"reason": "header_mismatch", "header": "Mcp-Param-Region",
                                   "header_value": "=?base64?dXMtZWFzdC0x?=",
                                   "decoded_value": "us-east-1",
                                   "body_field": "params.arguments.region",
                                   "body_value": "eu-west-1"}]);
    let missing_failures = json!([{"reason": "header_missing", "header": "Mcp-Method",
                                   "header_value": null, "body_field": "method",
                                   "body_value": "tools/list"}]);
    for who in [me, srv] {
        let side = who.side;
        let messages: Vec<&Value> = messages_of(&records, who.pid)
            .into_iter()
            .filter(|m| {
                let client_end = if side == "client" {
                    str_field(m, "local")
                } else {
                    str_field(m, "remote")
                };
                client_end == format!("127.0.0.1:{client_port}")
            })
            .collect();
        let context = || format!("{side} (pid {}):\n{}", who.pid, outline(&messages));
        let got: Vec<Value> = messages
            .iter()
            .map(|m| {
                pick(
                    m,
                    &[
                        "direction",
                        "kind",
                        "id",
                        "method",
                        "name",
                        "verification",
                        "http_status",
                        "error_code",
                        "error_name",
                    ],
                )
            })
            .collect();
        let req = |id: i64, method: &str, name: Option<&str>, failures: Option<&Value>| {
            let mut r = json!({"direction": "client_to_server", "kind": "request", "id": id,
                               "method": method, "http_status": null});
            if let Some(n) = name {
                r["name"] = json!(n);
            }
            if let Some(f) = failures {
                r["verification"] = f.clone();
            }
            r
        };
        let ok = |id: i64, method: &str, name: Option<&str>| {
            let mut r = json!({"direction": "server_to_client", "kind": "response", "id": id,
                               "method": method, "http_status": 200});
            if let Some(n) = name {
                r["name"] = json!(n);
            }
            r
        };
        let refused = |id: i64, method: &str, name: Option<&str>| {
            let mut r = json!({"direction": "server_to_client", "kind": "error", "id": id,
                               "method": method, "http_status": 400, "error_code": -32020,
                               "error_name": "header_mismatch"});
            if let Some(n) = name {
                r["name"] = json!(n);
            }
            r
        };
        assert_eq!(
            got,
            vec![
                req(1, "tools/list", None, None),
                ok(1, "tools/list", None),
                req(2, "tools/call", Some("add"), None),
                ok(2, "tools/call", Some("add")),
                req(3, "tools/call", Some("route"), None),
                ok(3, "tools/call", Some("route")),
                req(4, "tools/call", Some("fail"), Some(&named_failures)),
                refused(4, "tools/call", Some("fail")),
                req(5, "tools/call", Some("route"), Some(&encoded_failures)),
                refused(5, "tools/call", Some("route")),
                req(6, "tools/list", None, Some(&missing_failures)),
                refused(6, "tools/list", None),
            ],
            "{side}: each crafted request carries its own typed failure\n{}",
            context()
        );
        let sid = str_field(messages[0], "session_id").to_string();
        assert_synthetic(&sid);
        let ends: Vec<&Value> = of_type(&records, "session_end", who.pid)
            .into_iter()
            .filter(|e| e["session_id"] == sid)
            .collect();
        assert_eq!(ends.len(), 1, "{side}: {ends:?}");
        let with = |failures: &Value, method: &str, id: i64| {
            let mut a = failures[0].clone();
            a["kind"] = json!("request_verification");
            a["method"] = json!(method);
            a["id"] = json!(id);
            a
        };
        assert_eq!(
            pick(
                ends[0],
                &["client_name", "verification_failures", "errors", "attacks"]
            ),
            json!({"client_name": "raw-crafter", "verification_failures": 3, "errors": 3,
                   "attacks": [with(&named_failures, "tools/call", 4),
                               with(&encoded_failures, "tools/call", 5),
                               with(&missing_failures, "tools/list", 6)]}),
            "{side}: the session's attacks"
        );
    }
}
