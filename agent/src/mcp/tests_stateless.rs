//! The stateless (2026-07-28) era through the tracker: grouping without a session id, era per
//! request, discover, multi round-trip calls, subscriptions, cancellation by closing the
//! response stream, error names and header verification.

use serde_json::{json, Value};

use super::tests::{client, msg, Exchange, Sim, INITIALIZE, INITIALIZE_RESULT, SEC};
use super::*;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"mcp","version":"2.3.0"}}"#;

/// A stateless request body: `params` (a JSON object body without braces) plus the `_meta`.
fn req(id: &str, method: &str, params: &str) -> String {
    let sep = if params.is_empty() { "" } else { "," };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}{sep}{META}}}}}"#)
}

/// The headers a conforming client sends with a stateless request.
fn headers(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28".to_string()),
        ("mcp-method", method.to_string()),
    ];
    if let Some(n) = name {
        h.push(("mcp-name", n.to_string()));
    }
    h
}

fn post(h: &[(&'static str, String)]) -> Exchange {
    let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Exchange::post(&pairs)
}

/// The synthetic id of `client("…")`'s stateless session with client `mcp 2.3.0`.
fn sid() -> String {
    StatelessKey::new(
        "127.0.0.1:8000/mcp".into(),
        "127.0.0.1".into(),
        "mcp".into(),
        "2.3.0".into(),
        None,
    )
    .id
}

/// A stateless message record of `client("c1", 40001)` with `patch`.
fn smsg(patch: Value) -> Value {
    let mut m = msg(json!({"era": "stateless", "session_id": sid()}));
    if let (Some(b), Some(p)) = (m.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    m
}

/// Sends a stateless request on `ep` and answers it with `answer` (JSON), returning the two
/// message records.
#[allow(clippy::too_many_arguments)]
fn exchange(
    sim: &mut Sim,
    ep: &Endpoint,
    id: &str,
    method: &str,
    name: Option<&str>,
    params: &str,
    answer: &str,
    ts: u64,
) -> (Value, Value) {
    let x = post(&headers(method, name));
    let mut r = sim.request(ep, &x, &req(id, method, params), ts);
    let x = x.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    sim.head(ep, &x, ts + 5);
    let mut a = sim.answer(ep, &x, answer, ts + 10);
    assert_eq!((r.len(), a.len()), (1, 1), "{r:?} {a:?}");
    (r.remove(0), a.remove(0))
}

const DISCOVER_RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true}},"instructions":"be nice","ttlMs":60000,"cacheScope":"public","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"demo","version":"2.3.0"}}}}"#;

#[test]
fn a_stateless_conversation_is_one_session_with_a_synthetic_id_across_connections() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let c2 = client("c2", 40002);
    let (r, a) = exchange(
        &mut sim,
        &c1,
        "1",
        "server/discover",
        None,
        "",
        DISCOVER_RESULT,
        SEC,
    );
    assert_eq!(
        r,
        smsg(json!({"ts_ns": SEC, "id": 1, "method": "server/discover",
                    "mcp_protocol_version": "2026-07-28"}))
    );
    assert_eq!(
        a,
        smsg(
            json!({"ts_ns": SEC + 10, "http_status": 200, "direction": "server_to_client",
                    "kind": "response", "id": 1, "method": "server/discover", "latency_ns": 10,
                    "result_type": "complete", "supported_versions": ["2026-07-28"],
                    "ttl_ms": 60000, "cache_scope": "public"})
        )
    );
    let discovered = sim
        .tracker
        .catalog("127.0.0.1:8000/mcp")
        .map(|c| c.discover.clone());
    assert_eq!(
        discovered,
        Some(Some(DiscoverInfo {
            supported_versions: vec!["2026-07-28".into()],
            capabilities: Some(json!({"tools": {"listChanged": true}})),
            instructions: Some("be nice".into()),
            ttl_ms: Some(60000),
            cache_scope: Some("public".into()),
            seen_ns: SEC + 10,
        }))
    );

    // Another connection, a tool call answered on an SSE stream with progress.
    let x = post(&headers("tools/call", Some("add")));
    sim.request(
        &c2,
        &x,
        &req(
            "2",
            "tools/call",
            r#""name":"add","arguments":{"a":1,"b":2}"#,
        ),
        2 * SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    sim.head(&c2, &x, 2 * SEC + 1);
    let log = sim.answer(
        &c2,
        &x,
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"adding"}}"#,
        2 * SEC + 2,
    );
    assert_eq!(
        log[0]["related_id"],
        json!(2),
        "a stateless stream's notification"
    );
    assert_eq!(log[0]["session_id"], json!(sid()));
    let done = sim.answer(
        &c2,
        &x,
        r#"{"jsonrpc":"2.0","id":2,"result":{"resultType":"complete","content":[{"type":"text","text":"3"}],"structuredContent":3,"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"demo","version":"2.3.1"}}}}"#,
        2 * SEC + 9,
    );
    assert_eq!(
        done,
        vec![smsg(json!({
            "ts_ns": 2 * SEC + 9, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "direction": "server_to_client", "kind": "response", "id": 2,
            "method": "tools/call", "name": "add", "latency_ns": 9, "transport": "sse",
            "result_type": "complete"
        }))]
    );

    // Closing connections (answered) neither ends the session nor cancels anything.
    assert_eq!(sim.closed(&c1, 3 * SEC), Vec::<Value>::new());
    assert_eq!(sim.closed(&c2, 3 * SEC), Vec::<Value>::new());
    assert_eq!(
        sim.finish(4 * SEC),
        vec![json!({
            "type": "session_end", "session_id": sid(), "grouping": "stateless",
            "era": "stateless", "pid": 100, "comm": "python3", "side": "client",
            "server": "127.0.0.1:8000/mcp", "client_name": "mcp", "client_version": "2.3.0",
            "server_name": "demo", "server_version": "2.3.1",
            "protocol_version": "2026-07-28", "started_ns": SEC, "ended_ns": 4 * SEC,
            "duration_ns": 3 * SEC, "requests": 2, "notifications": 1, "responses": 2,
            "errors": 0, "status": "active", "end_reason": "shutdown",
            "methods": ["notifications/message", "server/discover", "tools/call"],
            "tools": ["add"], "primitives": ["logging", "tools"], "state": "new", "user": null,
            "role": null, "identity_source": null, "identity_verified": false,
            "client_capabilities": {"elicitation": {}},
            "server_capabilities": {"tools": {"listChanged": true}}, "cancelled": 0,
            "protocol_version_mismatches": 0, "first_mismatched_protocol_version": null,
            "supported_versions": ["2026-07-28"], "verification_failures": 0, "attacks": []
        })]
    );
}

#[test]
fn the_server_process_reports_the_same_synthetic_session_id() {
    let mut sim = Sim::new();
    let srv = Endpoint {
        pid: 200,
        comm: "uvicorn".into(),
        side: Side::Server,
        local: "127.0.0.1:8000".into(),
        remote: "127.0.0.1:51000".into(),
        conn_id: "s1".into(),
    };
    let (r, _) = exchange(
        &mut sim,
        &srv,
        "1",
        "server/discover",
        None,
        "",
        DISCOVER_RESULT,
        SEC,
    );
    assert_eq!(r["session_id"], json!(sid()));
    let ended = sim.finish(2 * SEC);
    assert_eq!(ended[0]["session_id"], json!(sid()));
    assert_eq!(ended[0]["server"], json!("127.0.0.1:8000/mcp"));
}

#[test]
fn different_clients_and_subjects_are_different_stateless_sessions() {
    let mut cfg = McpConfig::default();
    cfg.identity.user_header = Some("x-user".into());
    let mut sim = Sim::with(cfg);
    let c1 = client("c1", 40001);
    let x = post(&headers("tools/list", None));
    let other_client = req("2", "tools/list", "").replace(r#""name":"mcp""#, r#""name":"other""#);
    let mut with_user = headers("tools/list", None);
    with_user.push(("x-user", "alice".into()));
    sim.request(&c1, &x, &req("1", "tools/list", ""), SEC);
    sim.request(&c1, &x, &other_client, SEC + 1);
    sim.request(&c1, &post(&with_user), &req("3", "tools/list", ""), SEC + 2);
    sim.request(&c1, &x, &req("4", "tools/list", ""), SEC + 3);
    let ended = sim.finish(2 * SEC);
    let ids: Vec<&str> = ended
        .iter()
        .map(|r| r["session_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), 3, "{ended:?}");
    assert_eq!(ids[0], sid());
    assert!(ids.iter().all(|i| i.starts_with("stateless:")));
    assert_ne!(ids[1], ids[2]);
    assert_eq!(ended[0]["requests"], json!(2));
    assert_eq!(ended[1]["client_name"], json!("other"));
    assert_eq!(
        (&ended[2]["user"], &ended[2]["identity_source"]),
        (&json!("alice"), &json!("header"))
    );
}

#[test]
fn a_stateless_request_carrying_a_stray_session_header_is_still_grouped_statelessly() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let mut h = headers("tools/list", None);
    h.push(("mcp-session-id", "stale".into()));
    let x = post(&h);
    let r = sim.request(&c1, &x, &req("1", "tools/list", ""), SEC);
    assert_eq!(r[0]["session_id"], json!(sid()));
    let x = x.answered(200, &[("mcp-session-id", "stale")], Transport::Json);
    assert_eq!(sim.head(&c1, &x, SEC + 1), Vec::<Value>::new());
    let a = sim.answer(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        SEC + 2,
    );
    assert_eq!(
        (&a[0]["session_id"], &a[0]["era"], &a[0]["method"]),
        (&json!(sid()), &json!("stateless"), &json!("tools/list"))
    );
    assert_eq!(sim.finish(2 * SEC).len(), 1);
}

#[test]
fn a_probe_refused_with_a_null_id_then_the_fallback_handshake_show_both_eras_in_order() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = post(&headers("server/discover", None));
    sim.request(&c1, &x, &req("1", "server/discover", ""), SEC);
    let x = x.answered(
        400,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    sim.head(&c1, &x, SEC + 1);
    // TypeScript SDK 1.x: a transport-level refusal without the request's id.
    let refused = sim.answer(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#,
        SEC + 2,
    );
    assert_eq!(
        refused,
        vec![smsg(json!({
            "ts_ns": SEC + 2, "http_status": 400, "direction": "server_to_client",
            "kind": "error", "method": "server/discover", "latency_ns": 2,
            "related_id": 1, "error_code": -32000,
            "error_message": "Bad Request: Server not initialized"
        }))]
    );

    // The fallback, on the same connection; the client still sends its modern header.
    let x = Exchange::post(&[("mcp-protocol-version", "2026-07-28")]);
    let init = sim.request(&c1, &x, INITIALIZE, SEC + 3);
    assert_eq!(
        (&init[0]["era"], &init[0]["session_id"]),
        (&json!("handshake"), &Value::Null)
    );
    assert_eq!(init[0]["verification"], Value::Null, "no failures reported");
    let x = x.answered(200, &[("mcp-session-id", "s1")], Transport::Json);
    sim.head(&c1, &x, SEC + 4);
    let answer = sim.answer(&c1, &x, INITIALIZE_RESULT, SEC + 5);
    assert_eq!(
        (
            &answer[0]["era"],
            &answer[0]["method"],
            &answer[0]["session_id"]
        ),
        (&json!("handshake"), &json!("initialize"), &json!("s1"))
    );
    let ended = sim.finish(2 * SEC);
    let got: Vec<(&Value, &Value, &Value, &Value)> = ended
        .iter()
        .map(|r| (&r["grouping"], &r["era"], &r["requests"], &r["errors"]))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                &json!("stateless"),
                &json!("stateless"),
                &json!(1),
                &json!(1)
            ),
            (
                &json!("session_header"),
                &json!("handshake"),
                &json!(1),
                &json!(0)
            ),
        ]
    );
    assert_eq!(sim.tracker.stats().unpaired_answers, 0);
}

#[test]
fn errors_of_the_stateless_revision_are_named_with_their_data() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let (_, a) = exchange(
        &mut sim,
        &c1,
        "1",
        "server/discover",
        None,
        "",
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28"],"requested":"2099-01-01"}}}"#,
        SEC,
    );
    assert_eq!(
        (&a["error_name"], &a["supported_versions"]),
        (
            &json!("unsupported_protocol_version"),
            &json!(["2026-07-28"])
        )
    );
    let (_, a) = exchange(
        &mut sim,
        &c1,
        "2",
        "tools/call",
        Some("ask"),
        r#""name":"ask""#,
        r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32021,"message":"Missing capability","data":{"requiredCapabilities":{"elicitation":{}}}}}"#,
        2 * SEC,
    );
    assert_eq!(
        (&a["error_name"], &a["required_capabilities"]),
        (
            &json!("missing_required_client_capability"),
            &json!({"elicitation": {}})
        )
    );
    let (_, a) = exchange(
        &mut sim,
        &c1,
        "3",
        "tools/call",
        Some("ask"),
        r#""name":"ask""#,
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32020,"message":"Header mismatch"}}"#,
        3 * SEC,
    );
    assert_eq!(a["error_name"], json!("header_mismatch"));
    let ended = sim.finish(4 * SEC);
    assert_eq!(ended[0]["supported_versions"], json!(["2026-07-28"]));
    assert_eq!(ended[0]["errors"], json!(3));
}

const ASK_1: &str = r#"{"jsonrpc":"2.0","id":9,"result":{"resultType":"input_required","inputRequests":{"name":{"method":"elicitation/create","params":{"message":"Who?","requestedSchema":{"type":"object"}}}},"requestState":"state-1"}}"#;

#[test]
fn input_required_rounds_and_their_retries_are_one_logical_call() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let call = r#""name":"ask","arguments":{"topic":"lunch"}"#;
    let (r1, a1) = exchange(
        &mut sim,
        &c1,
        "9",
        "tools/call",
        Some("ask"),
        call,
        ASK_1,
        SEC,
    );
    assert_eq!(r1.get("call_id"), None, "the first request cannot know yet");
    assert_eq!(
        a1,
        smsg(json!({
            "ts_ns": SEC + 10, "http_status": 200, "direction": "server_to_client",
            "kind": "response", "id": 9, "method": "tools/call", "name": "ask",
            "latency_ns": 10, "result_type": "input_required",
            "input_requests": [{"key": "name", "method": "elicitation/create"}],
            "call_id": 9, "round": 1
        }))
    );
    assert_eq!(sim.tracker.stats().open_rounds, 1);

    // Round 2: a new id, the arguments again, the answers and the echoed state.
    let retry = format!(
        r#"{call},"inputResponses":{{"name":{{"action":"accept","content":{{"name":"bob"}}}}}},"requestState":"state-1""#
    );
    let (r2, a2) = exchange(
        &mut sim,
        &c1,
        "10",
        "tools/call",
        Some("ask"),
        &retry,
        r#"{"jsonrpc":"2.0","id":10,"result":{"resultType":"input_required","inputRequests":{"confirm":{"method":"elicitation/create","params":{}},"llm":{"method":"sampling/createMessage","params":{}}},"requestState":"state-2"}}"#,
        2 * SEC,
    );
    assert_eq!(
        r2,
        smsg(json!({
            "ts_ns": 2 * SEC, "id": 10, "method": "tools/call", "name": "ask",
            "mcp_protocol_version": "2026-07-28", "input_responses": ["name"],
            "call_id": 9, "round": 2
        }))
    );
    assert_eq!(
        (&a2["call_id"], &a2["round"], &a2["input_requests"]),
        (
            &json!(9),
            &json!(2),
            &json!([{"key": "confirm", "method": "elicitation/create"},
                    {"key": "llm", "method": "sampling/createMessage"}])
        )
    );

    // Round 3 completes the call.
    let retry = format!(
        r#"{call},"inputResponses":{{"confirm":{{"action":"accept"}},"llm":{{}}}},"requestState":"state-2""#
    );
    let (r3, a3) = exchange(
        &mut sim,
        &c1,
        "11",
        "tools/call",
        Some("ask"),
        &retry,
        r#"{"jsonrpc":"2.0","id":11,"result":{"resultType":"complete","content":[]}}"#,
        3 * SEC,
    );
    assert_eq!(
        (&r3["call_id"], &r3["round"], &r3["input_responses"]),
        (&json!(9), &json!(3), &json!(["confirm", "llm"]))
    );
    assert_eq!(
        (
            &a3["call_id"],
            &a3["round"],
            &a3["result_type"],
            &a3["input_requests"]
        ),
        (&json!(9), &json!(3), &json!("complete"), &Value::Null)
    );
    let stats = sim.tracker.stats();
    assert_eq!(
        (
            stats.open_rounds,
            stats.input_required_retries,
            stats.unmatched_retries
        ),
        (0, 2, 0)
    );
    let ended = sim.finish(4 * SEC);
    assert_eq!(ended[0]["requests"], json!(3));
    assert_eq!(
        ended[0]["primitives"],
        json!(["elicitation", "sampling", "tools"])
    );
}

#[test]
fn a_retry_without_request_state_is_matched_by_its_arguments() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let call = r#""uri":"file:///secret""#;
    exchange(
        &mut sim,
        &c1,
        "1",
        "resources/read",
        Some("file:///secret"),
        call,
        r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"ok":{"method":"elicitation/create","params":{}}}}}"#,
        SEC,
    );
    // A retry of another resource does not match; the right one does.
    let (other, _) = exchange(
        &mut sim,
        &c1,
        "2",
        "resources/read",
        Some("file:///other"),
        r#""uri":"file:///other","inputResponses":{"ok":{}}"#,
        r#"{"jsonrpc":"2.0","id":2,"result":{"contents":[]}}"#,
        2 * SEC,
    );
    assert_eq!(
        (&other["call_id"], &other["input_responses"]),
        (&Value::Null, &json!(["ok"]))
    );
    let (retry, answer) = exchange(
        &mut sim,
        &c1,
        "3",
        "resources/read",
        Some("file:///secret"),
        r#""uri":"file:///secret","inputResponses":{"ok":{"action":"accept"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"contents":[]}}"#,
        3 * SEC,
    );
    assert_eq!((&retry["call_id"], &retry["round"]), (&json!(1), &json!(2)));
    assert_eq!(
        (&answer["call_id"], &answer["round"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(sim.tracker.stats().unmatched_retries, 1);
}

#[test]
fn closing_a_stateless_response_stream_cancels_its_request_with_how_far_it_got() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = post(&headers("tools/call", Some("slow")));
    sim.request(
        &c1,
        &x,
        &req(
            "13",
            "tools/call",
            r#""name":"slow","arguments":{"steps":10}"#,
        ),
        SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    sim.head(&c1, &x, SEC + 1);
    for (i, ts) in [(1, SEC + 200), (2, SEC + 400)] {
        let p = sim.answer(
            &c1,
            &x,
            &format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"t","progress":{i},"total":10,"message":"step {i}"}}}}"#
            ),
            ts,
        );
        assert_eq!(p[0]["related_id"], json!(13));
    }
    assert_eq!(
        sim.closed(&c1, 2 * SEC),
        vec![json!({
            "type": "call_cancelled", "ts_ns": 2 * SEC, "pid": 100, "comm": "python3",
            "side": "client", "local": "127.0.0.1:40001", "remote": "127.0.0.1:8000",
            "conn_id": "c1", "session_id": sid(), "era": "stateless",
            "reason": "stream_closed", "id": 13, "method": "tools/call", "name": "slow",
            "requested_ns": SEC, "elapsed_ns": SEC, "http_status": 200, "notifications": 2,
            "progress": {"progress": 2, "total": 10, "message": "step 2"}
        })]
    );
    let stats = sim.tracker.stats();
    assert_eq!((stats.streams_cancelled, stats.pending), (1, 0));
    let ended = sim.finish(3 * SEC);
    assert_eq!(ended[0]["cancelled"], json!(1));
}

#[test]
fn a_request_closed_before_any_answer_reports_no_status_and_no_progress() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = post(&headers("tools/call", Some("slow")));
    sim.request(&c1, &x, &req("1", "tools/call", r#""name":"slow""#), SEC);
    let closed = sim.closed(&c1, SEC + 50);
    assert_eq!(
        (
            &closed[0]["http_status"],
            &closed[0]["notifications"],
            closed[0].get("progress")
        ),
        (&Value::Null, &json!(0), None)
    );
}

#[test]
fn closing_is_not_cancelling_for_answered_refused_or_handshake_requests() {
    let mut sim = Sim::new();
    // Answered.
    let c1 = client("c1", 40001);
    exchange(
        &mut sim,
        &c1,
        "1",
        "tools/list",
        None,
        "",
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        SEC,
    );
    assert_eq!(sim.closed(&c1, 2 * SEC), Vec::<Value>::new());
    // Refused at the HTTP level without a JSON-RPC body.
    let c2 = client("c2", 40002);
    let x = post(&headers("tools/list", None));
    sim.request(&c2, &x, &req("2", "tools/list", ""), SEC);
    sim.head(&c2, &x.answered(405, &[], Transport::Json), SEC + 1);
    assert_eq!(sim.closed(&c2, 2 * SEC), Vec::<Value>::new());
    // Handshake era: a disconnect is not a cancellation (the client may resume).
    let c3 = client("c3", 40003);
    sim.handshake(&c3, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &c3,
        &x,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow"}}"#,
        2 * SEC,
    );
    assert_eq!(sim.closed(&c3, 3 * SEC), Vec::<Value>::new());
    let stats = sim.tracker.stats();
    assert_eq!((stats.streams_cancelled, stats.pending), (0, 1));
}

#[test]
fn a_subscription_stream_tags_its_notifications_and_ends_when_closed() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = post(&headers("subscriptions/listen", None));
    sim.request(
        &c1,
        &x,
        &req(
            r#""listen-1""#,
            "subscriptions/listen",
            r#""notifications":{"toolsListChanged":true}"#,
        ),
        SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    sim.head(&c1, &x, SEC + 1);
    let ack = sim.answer(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"listen-1"},"notifications":{"toolsListChanged":true}}}"#,
        SEC + 2,
    );
    assert_eq!(
        ack,
        vec![smsg(json!({
            "ts_ns": SEC + 2, "http_status": 200, "direction": "server_to_client",
            "kind": "notification", "method": "notifications/subscriptions/acknowledged",
            "related_id": "listen-1", "subscription_id": "listen-1", "transport": "sse"
        }))]
    );
    let changed = sim.answer(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"listen-1"}}}"#,
        5 * SEC,
    );
    assert_eq!(
        (&changed[0]["subscription_id"], &changed[0]["related_id"]),
        (&json!("listen-1"), &json!("listen-1"))
    );
    assert_eq!(
        sim.tracker
            .catalog("127.0.0.1:8000/mcp")
            .map(|c| c.list_changed.tools),
        Some(1)
    );
    // Quiet for longer than the idle gap: the open subscription keeps the session.
    assert_eq!(sim.tick(5 * SEC + 6 * 60 * SEC), Vec::<Value>::new());
    let closed = sim.closed(&c1, 7 * 60 * SEC);
    assert_eq!(
        (
            &closed[0]["type"],
            &closed[0]["method"],
            &closed[0]["id"],
            &closed[0]["notifications"]
        ),
        (
            &json!("call_cancelled"),
            &json!("subscriptions/listen"),
            &json!("listen-1"),
            &json!(2)
        )
    );
    // Now idle: the stateless session ends after the gap.
    let ended = sim.tick(7 * 60 * SEC + 5 * 60 * SEC + 1);
    assert_eq!(
        (&ended[0]["end_reason"], &ended[0]["ended_ns"]),
        (&json!("idle"), &json!(7 * 60 * SEC))
    );
}

#[test]
fn a_graceful_subscription_end_is_an_answer_carrying_the_subscription_id() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let (_, a) = exchange(
        &mut sim,
        &c1,
        "4",
        "subscriptions/listen",
        None,
        r#""notifications":{}"#,
        r#"{"jsonrpc":"2.0","id":4,"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/subscriptionId":4}}}"#,
        SEC,
    );
    assert_eq!(
        (&a["method"], &a["subscription_id"], &a["latency_ns"]),
        (&json!("subscriptions/listen"), &json!(4), &json!(10))
    );
    assert_eq!(sim.closed(&c1, 2 * SEC), Vec::<Value>::new());
}

#[test]
fn stateless_sessions_end_after_the_idle_gap_and_a_later_request_starts_a_new_one() {
    let mut sim = Sim::with(McpConfig {
        stateless_idle_gap_ns: 10 * SEC,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;
    exchange(&mut sim, &c1, "1", "tools/list", None, "", list, SEC);
    assert_eq!(sim.tick(11 * SEC), Vec::<Value>::new());
    let ended = sim.tick(11 * SEC + 11);
    assert_eq!(
        (
            &ended[0]["session_id"],
            &ended[0]["end_reason"],
            &ended[0]["status"]
        ),
        (&json!(sid()), &json!("idle"), &json!("ended"))
    );
    exchange(&mut sim, &c1, "1", "tools/list", None, "", list, 20 * SEC);
    let again = sim.finish(21 * SEC);
    assert_eq!(
        (&again[0]["session_id"], &again[0]["started_ns"]),
        (&json!(sid()), &json!(20 * SEC))
    );
}

const ROUTE_TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","tools":[{"name":"add","inputSchema":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}},{"name":"route","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"query":{"type":"string"}},"required":["region","query"]}}]}}"#;

#[test]
fn headers_that_disagree_with_the_body_are_typed_failures_on_the_message_and_the_session() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    exchange(&mut sim, &c1, "1", "tools/list", None, "", ROUTE_TOOLS, SEC);
    // Honest: no verification field at all.
    let (honest, _) = exchange(
        &mut sim,
        &c1,
        "2",
        "tools/call",
        Some("add"),
        r#""name":"add","arguments":{"a":1,"b":2}"#,
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#,
        2 * SEC,
    );
    assert_eq!(honest.get("verification"), None);
    let mut h = headers("tools/call", Some("route"));
    h.push(("mcp-param-region", "=?base64?WsO8cmljaA==?=".into()));
    let x = post(&h);
    let honest = sim.request(
        &c1,
        &x,
        &req(
            "3",
            "tools/call",
            r#""name":"route","arguments":{"region":"Zürich","query":"q"}"#,
        ),
        3 * SEC,
    );
    assert_eq!(honest[0].get("verification"), None, "{honest:?}");

    // Mcp-Name names another tool than the body.
    let x = post(&headers("tools/call", Some("add")));
    let named = sim.request(
        &c1,
        &x,
        &req(
            "4",
            "tools/call",
            r#""name":"route","arguments":{"region":"eu","query":"q"}"#,
        ),
        4 * SEC,
    );
    assert_eq!(
        named[0]["verification"],
        json!([
            {"reason": "header_mismatch", "header": "Mcp-Name", "header_value": "add",
             "body_field": "params.name", "body_value": "route"},
            {"reason": "header_missing", "header": "Mcp-Param-Region", "header_value": null,
             "body_field": "params.arguments.region", "body_value": "eu"}
        ])
    );
    // A base64 parameter header decoding to another region.
    let mut h = headers("tools/call", Some("route"));
    h.push(("Mcp-Param-Region", "=?base64?dXMtZWFzdC0x?=".into()));
    let encoded = sim.request(
        &c1,
        &post(&h),
        &req(
            "5",
            "tools/call",
            r#""name":"route","arguments":{"region":"eu-west-1","query":"q"}"#,
        ),
        5 * SEC,
    );
    assert_eq!(
        encoded[0]["verification"],
        json!([{"reason": "header_mismatch", "header": "Mcp-Param-Region",
                "header_value": "=?base64?dXMtZWFzdC0x?=", "decoded_value": "us-east-1",
                "body_field": "params.arguments.region", "body_value": "eu-west-1"}])
    );
    // No Mcp-Method at all.
    let x = Exchange::post(&[("mcp-protocol-version", "2026-07-28")]);
    let missing = sim.request(&c1, &x, &req("6", "tools/list", ""), 6 * SEC);
    assert_eq!(
        missing[0]["verification"],
        json!([{"reason": "header_missing", "header": "Mcp-Method", "header_value": null,
                "body_field": "method", "body_value": "tools/list"}])
    );
    let stats = sim.tracker.stats();
    assert_eq!(
        (stats.verification_failures, stats.unverified_param_headers),
        (4, 0)
    );
    let ended = sim.finish(7 * SEC);
    assert_eq!(ended[0]["verification_failures"], json!(4));
    assert_eq!(
        ended[0]["attacks"],
        json!([
            {"kind": "request_verification", "reason": "header_mismatch", "header": "Mcp-Name",
             "header_value": "add", "body_field": "params.name", "body_value": "route",
             "method": "tools/call", "id": 4},
            {"kind": "request_verification", "reason": "header_missing",
             "header": "Mcp-Param-Region", "header_value": null,
             "body_field": "params.arguments.region", "body_value": "eu",
             "method": "tools/call", "id": 4},
            {"kind": "request_verification", "reason": "header_mismatch",
             "header": "Mcp-Param-Region", "header_value": "=?base64?dXMtZWFzdC0x?=",
             "decoded_value": "us-east-1", "body_field": "params.arguments.region",
             "body_value": "eu-west-1", "method": "tools/call", "id": 5},
            {"kind": "request_verification", "reason": "header_missing", "header": "Mcp-Method",
             "header_value": null, "body_field": "method", "body_value": "tools/list",
             "method": "tools/list", "id": 6}
        ])
    );
}

#[test]
fn param_headers_of_tools_not_yet_listed_are_counted_as_unverified() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let mut h = headers("tools/call", Some("route"));
    h.push(("mcp-param-region", "eu".into()));
    let r = sim.request(
        &c1,
        &post(&h),
        &req(
            "1",
            "tools/call",
            r#""name":"route","arguments":{"region":"us"}"#,
        ),
        SEC,
    );
    assert_eq!(r[0].get("verification"), None);
    assert_eq!(sim.tracker.stats().unverified_param_headers, 1);
}

#[test]
fn handshake_requests_are_checked_only_for_the_headers_they_carry() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1"), ("mcp-method", "tools/list")]);
    let r = sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
        2 * SEC,
    );
    assert_eq!(r[0]["era"], json!("handshake"));
    assert_eq!(
        r[0]["verification"],
        json!([{"reason": "header_mismatch", "header": "Mcp-Method",
                "header_value": "tools/list", "body_field": "method",
                "body_value": "tools/call"}])
    );
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    let r = sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add"}}"#,
        3 * SEC,
    );
    assert_eq!(
        r[0].get("verification"),
        None,
        "nothing is required before 2026-07-28"
    );
}

#[test]
fn list_results_of_the_stateless_era_feed_the_catalogue_and_drift() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    exchange(&mut sim, &c1, "1", "tools/list", None, "", ROUTE_TOOLS, SEC);
    let drifted = ROUTE_TOOLS.replace(r#""x-mcp-header":"Region""#, r#""x-mcp-header":"Zone""#);
    let x = post(&headers("tools/list", None));
    sim.request(&c1, &x, &req("2", "tools/list", ""), 2 * SEC);
    let x = x.answered(200, &[], Transport::Json);
    let out = sim.answer(
        &c1,
        &x,
        &drifted.replace(r#""id":1"#, r#""id":2"#),
        2 * SEC + 1,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        (
            &out[1]["type"],
            &out[1]["tool"],
            &out[1]["fields"],
            &out[1]["session_id"]
        ),
        (
            &json!("tool_drift"),
            &json!("route"),
            &json!(["inputSchema"]),
            &json!(sid())
        )
    );
    let ended = sim.finish(3 * SEC);
    assert_eq!(
        ended[0]["attacks"],
        json!([{"kind": "tool_definition_drift", "tool": "route", "fields": ["inputSchema"]}])
    );
}

#[test]
fn hostile_stateless_shapes_never_panic() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = post(&headers("tools/call", Some("x")));
    let bodies = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":7,"io.modelcontextprotocol/clientInfo":"x"},"inputResponses":[],"requestState":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":[1],"requestState":5}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":7,"supportedVersions":{},"ttlMs":"x","_meta":{"io.modelcontextprotocol/subscriptionId":[]}}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32022,"message":"x","data":{"supported":"x"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":{},"progress":"x"}}"#,
        r#"[{"jsonrpc":"2.0","id":2,"method":"server/discover"},{"jsonrpc":"2.0","id":null,"error":{"code":-32021,"message":"m","data":7}}]"#,
    ];
    for (i, b) in bodies.iter().enumerate() {
        for flow in [Flow::ClientToServer, Flow::ServerToClient] {
            let mut out = Vec::new();
            sim.tracker
                .on_payload(&c1, &x.meta(), flow, b.as_bytes(), i as u64, &mut out);
            for r in &out {
                assert!(serde_json::to_string(r).is_ok());
            }
        }
    }
    let mut out = Vec::new();
    sim.tracker.on_conn_closed(100, "c1", 99, &mut out);
    sim.tracker.finish(100, &mut out);
    assert!(out.iter().all(|r| serde_json::to_string(r).is_ok()));
}
