//! What the tracker adds for the backend and the policy stage: message content (bounded and
//! redacted), catalogue records, live session reports, and judgements through the
//! [`RequestPolicy`] seam.

use serde_json::{json, Value};

use super::tests::*;
use super::*;
use crate::policy::{Action, Judgement, Reason, ReasonKind, RequestFacts};

const CALL: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"login","arguments":{"user":"ann","password":"hunter2","pin":"1234"},"_meta":{"progressToken":9,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#;
const CALL_RESULT: &str = r#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;
const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

fn tools_result(description: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [
        {"name": "login", "description": description,
         "inputSchema": {"type": "object", "properties": {"user": {"type": "string"}}}}
    ]}})
    .to_string()
}

fn messages(recs: &[Value]) -> Vec<&Value> {
    recs.iter().filter(|r| r["type"] == "message").collect()
}

fn of_type<'a>(recs: &'a [Value], t: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == t).collect()
}

fn content_cfg(paths: &[&str]) -> McpConfig {
    let mut cfg = McpConfig::default();
    cfg.content.redact_paths = paths
        .iter()
        .filter_map(|p| content::JsonPath::parse(p).ok())
        .collect();
    cfg
}

#[test]
fn params_and_results_are_reported_redacted_with_the_callers_trace_context() {
    let mut sim = Sim::full(content_cfg(&["$.arguments.pin"]));
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    let req = sim.request(&ep, &x, CALL, 10);
    let m = messages(&req);
    assert_eq!(
        m[0]["params"],
        json!({"name": "login", "arguments": {"user": "ann", "password": "[REDACTED]", "pin": "[REDACTED]"},
               "_meta": {"progressToken": 9, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
    );
    assert_eq!(
        m[0]["traceparent"],
        json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(
        m[0]["payload_bytes"],
        json!(serde_json::to_string(
            &serde_json::from_str::<Value>(CALL).unwrap_or_default()["params"]
        )
        .unwrap_or_default()
        .len())
    );
    assert!(m[0].get("truncated").is_none());
    let x = x.answered(200, &[], Transport::Json);
    let ans = sim.answer(&ep, &x, CALL_RESULT, 20);
    assert_eq!(
        messages(&ans)[0]["result"],
        json!({"content": [{"type": "text", "text": "ok"}], "isError": false})
    );
    // No secret reaches any record of the conversation.
    let all = serde_json::to_string(&[req, ans]).unwrap_or_default();
    assert!(!all.contains("hunter2") && !all.contains("1234"));
}

#[test]
fn error_data_is_reported_and_payloads_off_reports_no_content() {
    let mut sim = Sim::full(McpConfig::default());
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    sim.request(&ep, &x, CALL, 10);
    let err = r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"bad","data":{"field":"user","api_key":"k"}}}"#;
    let ans = sim.answer(&ep, &x.answered(200, &[], Transport::Json), err, 20);
    assert_eq!(
        messages(&ans)[0]["error_data"],
        json!({"field": "user", "api_key": "[REDACTED]"})
    );

    let mut cfg = McpConfig::default();
    cfg.content.mode = content::PayloadMode::Off;
    let mut sim = Sim::full(cfg);
    sim.handshake(&ep, SESSION, 0);
    let req = sim.request(&ep, &x, CALL, 10);
    assert!(messages(&req)[0].get("params").is_none());
    assert!(messages(&req)[0].get("payload_bytes").is_none());
}

#[test]
fn a_large_result_is_cut_to_the_bound_and_says_so_with_its_real_size() {
    let mut cfg = McpConfig::default();
    cfg.content.max_bytes = 4096;
    let mut sim = Sim::full(cfg);
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    sim.request(&ep, &x, CALL, 10);
    let big = "B".repeat(600 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "image", "data": big, "mimeType": "image/png"}]}}).to_string();
    let ans = sim.answer(&ep, &x.answered(200, &[], Transport::Json), &body, 20);
    let m = messages(&ans)[0];
    assert_eq!(m["truncated"], json!(true));
    assert!(m["payload_bytes"].as_u64().is_some_and(|n| n > 600 * 1024));
    assert_eq!(m["result"]["content"][0]["mimeType"], json!("image/png"));
    assert!(
        serde_json::to_string(&m["result"])
            .unwrap_or_default()
            .len()
            <= 4096
    );
    assert_eq!(m["method"], json!("tools/call"));
}

#[test]
fn only_configured_headers_are_reported_and_authorization_never_is() {
    let mut cfg = McpConfig::default();
    cfg.content.output_headers = vec!["x-request-id".into(), "authorization".into()];
    let mut sim = Sim::full(cfg);
    let ep = client("c1", 40001);
    let x = Exchange::post(&[
        ("x-request-id", "r-1"),
        ("authorization", "Bearer secret-token"),
        ("cookie", "sid=1"),
    ]);
    let recs = sim.request(&ep, &x, INITIALIZE, 1);
    assert_eq!(
        messages(&recs)[0]["headers"],
        json!({"x-request-id": "r-1", "authorization": "[REDACTED]"})
    );
}

#[test]
fn a_catalogue_record_is_written_when_the_tools_change_and_not_when_they_do_not() {
    let mut sim = Sim::full(McpConfig::default());
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    let answered = x.answered(200, &[], Transport::Json);
    sim.request(&ep, &x, TOOLS_LIST, 10);
    let first = sim.answer(&ep, &answered, &tools_result("Log in"), 11);
    let cats = of_type(&first, "catalog");
    assert_eq!(cats.len(), 1);
    assert_eq!(cats[0]["server"], json!("127.0.0.1:8000/mcp"));
    assert_eq!(cats[0]["server_name"], json!("demo"));
    assert_eq!(cats[0]["changed"], json!("tools"));
    assert_eq!(cats[0]["tools"][0]["name"], json!("login"));
    assert_eq!(
        cats[0]["tools"][0]["inputSchema"]["properties"]["user"],
        json!({"type": "string"})
    );
    assert_eq!(cats[0]["resources"], Value::Null);
    sim.request(&ep, &x, TOOLS_LIST, 20);
    let same = sim.answer(&ep, &answered, &tools_result("Log in"), 21);
    assert!(of_type(&same, "catalog").is_empty());
    sim.request(&ep, &x, TOOLS_LIST, 30);
    let changed = sim.answer(&ep, &answered, &tools_result("Log in (v2)"), 31);
    assert_eq!(of_type(&changed, "catalog").len(), 1);
    assert_eq!(of_type(&changed, "tool_drift").len(), 1);
}

#[test]
fn active_sessions_are_announced_then_updated_only_when_they_change() {
    let mut sim = Sim::full(McpConfig {
        session_update_interval_ns: 10 * SEC,
        ..McpConfig::default()
    });
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, SEC);
    let t1 = sim.tick(2 * SEC);
    assert_eq!(t1.len(), 1);
    assert_eq!(t1[0]["type"], json!("session_start"));
    assert_eq!(t1[0]["session_id"], json!(SESSION));
    assert_eq!(t1[0]["status"], json!("active"));
    assert_eq!(t1[0]["end_reason"], Value::Null);
    assert_eq!(t1[0]["client_name"], json!("mcp"));
    // Nothing new: no update, however long.
    assert!(sim.tick(30 * SEC).is_empty());
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    sim.request(&ep, &x, CALL, 31 * SEC);
    // Changed, but within the interval of the last report? The last report was at 2 s.
    let t2 = sim.tick(32 * SEC);
    assert_eq!(t2.len(), 1);
    assert_eq!(t2[0]["type"], json!("session_update"));
    assert_eq!(t2[0]["requests"], json!(2));
    sim.request(
        &ep,
        &x,
        CALL.replace("\"id\":5", "\"id\":6").as_str(),
        33 * SEC,
    );
    assert!(
        sim.tick(34 * SEC).is_empty(),
        "within 10 s of the last update"
    );
    assert_eq!(sim.tick(42 * SEC).len(), 1);
}

/// A tick between `initialize` and its answer must not announce the session under its
/// connection key: the answer renames it by `Mcp-Session-Id`, and the collector would keep
/// the first name as a session that never ends.
#[test]
fn a_session_is_not_announced_before_its_initialize_answer_names_it() {
    let mut sim = Sim::full(McpConfig {
        session_update_interval_ns: SEC,
        ..McpConfig::default()
    });
    let ep = client("c1", 40001);
    let x = Exchange::post(&[("content-type", "application/json")]);
    sim.request(&ep, &x, INITIALIZE, SEC);
    let t = sim.tick(3 * SEC);
    assert!(t.is_empty(), "initialize is unanswered: {t:#?}");
    let x = x.answered(200, &[("mcp-session-id", SESSION)], Transport::Json);
    sim.head(&ep, &x, 4 * SEC);
    sim.answer(&ep, &x, INITIALIZE_RESULT, 4 * SEC + 1);
    let t = sim.tick(5 * SEC);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert_eq!(t[0]["type"], json!("session_start"));
    assert_eq!(t[0]["session_id"], json!(SESSION));
}

/// A policy for these tests: denies the tool `explode`, audits anything with findings.
#[derive(Debug, Default)]
struct TestPolicy {
    seen: Vec<String>,
    catalogs: Vec<String>,
}

impl RequestPolicy for TestPolicy {
    fn judge(&mut self, facts: &RequestFacts, catalog: Option<&ToolCatalog>) -> Judgement {
        self.seen.push(format!(
            "{} {} user={:?} client={:?} state={:?} catalog={}",
            facts.method,
            facts.name.unwrap_or("-"),
            facts.user,
            facts.client_name,
            facts.session_state,
            catalog.is_some()
        ));
        let (action, rule_id) = if facts.name == Some("explode") {
            (Action::Deny, Some("no-explode".to_string()))
        } else if !facts.findings.is_empty() {
            (Action::Audit, None)
        } else {
            (Action::Allow, None)
        };
        Judgement {
            action,
            rule_id,
            reasons: facts.findings.clone(),
            fail_closed: false,
            approve_timeout_ms: 120_000,
            block_connect: false,
        }
    }

    fn observe_catalog(&mut self, server: &str, _catalog: &ToolCatalog) {
        self.catalogs.push(server.to_string());
    }

    fn record_allows(&self) -> bool {
        false
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

fn explode(id: u32) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "explode", "arguments": {"why": "test", "token": "t0k"}}})
    .to_string()
}

#[test]
fn a_denied_call_gets_a_verdict_record_after_its_message_and_an_acl_attack() {
    let mut sim = Sim::full(McpConfig::default());
    sim.tracker.set_policy(Box::new(TestPolicy::default()));
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    let recs = sim.request(&ep, &x, &explode(7), 10);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["type"], json!("message"));
    let v = &recs[1];
    assert_eq!(v["type"], json!("verdict"));
    assert_eq!(v["action"], json!("deny"));
    assert_eq!(v["rule_id"], json!("no-explode"));
    assert_eq!(v["enforcement"], json!("reset"));
    assert_eq!(v["session_id"], json!(SESSION));
    assert_eq!(v["server"], json!("127.0.0.1:8000/mcp"));
    assert_eq!(v["id"], json!(7));
    assert_eq!(v["method"], json!("tools/call"));
    assert_eq!(v["name"], json!("explode"));
    assert_eq!(v["conn_id"], json!("c1"));
    assert_eq!(v["local"], json!("127.0.0.1:40001"));
    assert_eq!(v["ts_ns"], json!(10));
    assert_eq!(
        v["request"],
        json!({"method": "tools/call", "params": {"name": "explode", "arguments": {"why": "test", "token": "[REDACTED]"}}})
    );
    // Allowed calls leave no verdict.
    let ok = sim.request(&ep, &x, CALL, 20);
    assert_eq!(of_type(&ok, "verdict").len(), 0);
    let end = sim.finish(30);
    let attacks = &end[0]["attacks"];
    assert_eq!(attacks.as_array().map(Vec::len), Some(1));
    assert_eq!(attacks[0]["kind"], json!("acl_violation"));
    assert_eq!(attacks[0]["rule_id"], json!("no-explode"));
    assert_eq!(attacks[0]["id"], json!(7));
    assert_eq!(
        attacks[0]["request"]["params"]["arguments"]["token"],
        json!("[REDACTED]")
    );
}

#[test]
fn the_policy_sees_the_session_client_and_identity_and_the_catalogue() {
    let policy = TestPolicy::default();
    let mut sim = Sim::full(McpConfig::default());
    sim.tracker.set_policy(Box::new(policy));
    let ep = client("c1", 40001);
    sim.handshake(&ep, SESSION, 0);
    let x = Exchange::post(&[("mcp-session-id", SESSION)]);
    sim.request(&ep, &x, TOOLS_LIST, 10);
    sim.answer(
        &ep,
        &x.answered(200, &[], Transport::Json),
        &tools_result("d"),
        11,
    );
    sim.request(&ep, &x, CALL, 12);
    let seen = format!("{:?}", sim.tracker.policy_mut());
    // The initialize request is judged with the clientInfo it carries.
    assert!(
        seen.contains(r#"initialize - user=None client=Some(\"mcp\") state=New catalog=false"#),
        "{seen}"
    );
    assert!(
        seen.contains(
            r#"tools/call login user=None client=Some(\"mcp\") state=Operating catalog=true"#
        ),
        "{seen}"
    );
    assert!(
        seen.contains(r#"catalogs: ["127.0.0.1:8000/mcp"]"#),
        "{seen}"
    );
}

#[test]
fn requests_before_the_initialize_answer_and_version_mismatches_are_findings() {
    let mut sim = Sim::full(McpConfig::default());
    sim.tracker.set_policy(Box::new(TestPolicy::default()));
    let ep = client("c1", 40001);
    let x = Exchange::post(&[("content-type", "application/json")]);
    sim.request(&ep, &x, INITIALIZE, 1);
    // A tools/call on the same connection before the initialize answer.
    let early = sim.request(&ep, &x, CALL, 2);
    let v = of_type(&early, "verdict");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["action"], json!("audit"));
    assert_eq!(v[0]["reasons"][0]["kind"], json!("before_initialize"));
    let x2 = x.answered(200, &[("mcp-session-id", SESSION)], Transport::Json);
    sim.head(&ep, &x2, 3);
    sim.answer(&ep, &x2, INITIALIZE_RESULT, 4);
    // The negotiated version is 2025-06-18; a request naming another one is a finding, and a
    // request without the session id the server issued is another.
    let x3 = Exchange::post(&[
        ("mcp-session-id", SESSION),
        ("mcp-protocol-version", "2025-03-26"),
    ]);
    let mismatch = sim.request(&ep, &x3, CALL, 5);
    let v = of_type(&mismatch, "verdict");
    assert_eq!(
        v[0]["reasons"][0]["kind"],
        json!("protocol_version_mismatch")
    );
    let x4 = Exchange::post(&[("content-type", "application/json")]);
    let missing = sim.request(&client("c2", 40002), &x4, CALL, 6);
    let v = of_type(&missing, "verdict");
    assert_eq!(v[0]["reasons"][0]["kind"], json!("missing_session_id"));
}

#[test]
fn a_body_that_is_not_json_rpc_is_judged_as_malformed_with_its_evidence() {
    let mut sim = Sim::full(McpConfig::default());
    sim.tracker.set_policy(Box::new(TestPolicy::default()));
    let ep = client("c1", 40001);
    let x = Exchange::post(&[]);
    let recs = sim.request(&ep, &x, "{not json", 1);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["type"], json!("verdict"));
    assert_eq!(recs[0]["method"], json!(""));
    assert_eq!(recs[0]["reasons"][0]["kind"], json!("malformed_jsonrpc"));
    assert_eq!(recs[0]["request"]["body"], json!("{not json"));
    let wrong = sim.request(&ep, &x, r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, 2);
    assert_eq!(
        wrong[0]["reasons"][0]["kind"],
        json!("wrong_jsonrpc_version")
    );
}

#[test]
fn reasons_serialise_by_kind_and_detail() {
    let r = Reason {
        kind: ReasonKind::SchemaViolation,
        detail: "x".into(),
    };
    assert_eq!(
        serde_json::to_value(&r).unwrap_or_default(),
        json!({"kind": "schema_violation", "detail": "x"})
    );
}
