//! The tracker as the connection glue drives it: realistic MCP conversations in, exact
//! records out.

use serde_json::{json, Value};

use super::*;

pub(super) const SEC: u64 = 1_000_000_000;
pub(super) const SESSION: &str = "fa60cf06151643aa9614f08ced9ea783";

pub(super) type Headers = Vec<(String, String)>;

pub(super) fn hdrs(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A client process (pid 100) talking to a server on 127.0.0.1:8000 over connection `conn`.
pub(super) fn client(conn: &str, port: u16) -> Endpoint {
    Endpoint {
        pid: 100,
        comm: "python3".into(),
        side: Side::Client,
        local: format!("127.0.0.1:{port}"),
        remote: "127.0.0.1:8000".into(),
        conn_id: conn.into(),
    }
}

/// One HTTP exchange, before and after its response head.
#[derive(Clone)]
pub(super) struct Exchange {
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) req: Headers,
    pub(super) status: Option<u16>,
    pub(super) resp: Option<Headers>,
    pub(super) transport: Transport,
}

impl Exchange {
    pub(super) fn new(method: &'static str, req: &[(&str, &str)]) -> Self {
        Exchange {
            method,
            path: "/mcp",
            req: hdrs(req),
            status: None,
            resp: None,
            transport: Transport::Json,
        }
    }

    pub(super) fn post(req: &[(&str, &str)]) -> Self {
        Exchange::new("POST", req)
    }

    pub(super) fn answered(
        &self,
        status: u16,
        resp: &[(&str, &str)],
        transport: Transport,
    ) -> Self {
        Exchange {
            status: Some(status),
            resp: Some(hdrs(resp)),
            transport,
            ..self.clone()
        }
    }

    pub(super) fn meta(&self) -> HttpMeta<'_> {
        HttpMeta {
            method: self.method,
            path: self.path,
            status: self.status,
            request_headers: &self.req,
            response_headers: self.resp.as_deref(),
            transport: self.transport,
        }
    }
}

pub(super) struct Sim {
    pub(super) tracker: McpTracker,
    /// Keep `catalog` records in what the helpers return.
    pub(super) catalogs: bool,
}

impl Sim {
    pub(super) fn new() -> Self {
        Sim::with(McpConfig::default())
    }

    /// The tracker as most tests here see it: message content off, no live session
    /// reports and no catalogue records (each has its own tests, see `tests_content.rs`).
    pub(super) fn with(mut cfg: McpConfig) -> Self {
        cfg.content.mode = content::PayloadMode::Off;
        cfg.session_update_interval_ns = 0;
        Sim {
            tracker: McpTracker::new(cfg),
            catalogs: false,
        }
    }

    /// The tracker exactly as configured, every record type kept.
    pub(super) fn full(cfg: McpConfig) -> Self {
        Sim {
            tracker: McpTracker::new(cfg),
            catalogs: true,
        }
    }

    fn keep(&self, records: Vec<Record>) -> Vec<Value> {
        values(
            records
                .into_iter()
                .filter(|r| self.catalogs || !matches!(r, Record::Catalog(_)))
                .collect(),
        )
    }

    pub(super) fn send(
        &mut self,
        ep: &Endpoint,
        x: &Exchange,
        flow: Flow,
        body: &str,
        ts: u64,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        self.tracker
            .on_payload(ep, &x.meta(), flow, body.as_bytes(), ts, &mut out);
        self.keep(out)
    }

    /// A request body (client → server).
    pub(super) fn request(
        &mut self,
        ep: &Endpoint,
        x: &Exchange,
        body: &str,
        ts: u64,
    ) -> Vec<Value> {
        self.send(ep, x, Flow::ClientToServer, body, ts)
    }

    /// A response body or SSE event (server → client).
    pub(super) fn answer(
        &mut self,
        ep: &Endpoint,
        x: &Exchange,
        body: &str,
        ts: u64,
    ) -> Vec<Value> {
        self.send(ep, x, Flow::ServerToClient, body, ts)
    }

    pub(super) fn head(&mut self, ep: &Endpoint, x: &Exchange, ts: u64) -> Vec<Value> {
        let mut out = Vec::new();
        self.tracker.on_response_head(ep, &x.meta(), ts, &mut out);
        values(out)
    }

    pub(super) fn tick(&mut self, now: u64) -> Vec<Value> {
        let mut out = Vec::new();
        self.tracker.on_tick(now, &mut out);
        values(out)
    }

    pub(super) fn closed(&mut self, ep: &Endpoint, ts: u64) -> Vec<Value> {
        let mut out = Vec::new();
        self.tracker
            .on_conn_closed(ep.pid, &ep.conn_id, ts, &mut out);
        values(out)
    }

    pub(super) fn finish(&mut self, now: u64) -> Vec<Value> {
        let mut out = Vec::new();
        self.tracker.finish(now, &mut out);
        values(out)
    }

    /// Initializes a session with id `sid` on connection `ep` at `ts`; returns nothing.
    pub(super) fn handshake(&mut self, ep: &Endpoint, sid: &str, ts: u64) {
        let x = Exchange::post(&[("content-type", "application/json")]);
        self.request(ep, &x, INITIALIZE, ts);
        let x = x.answered(200, &[("mcp-session-id", sid)], Transport::Json);
        self.head(ep, &x, ts + 1);
        self.answer(ep, &x, INITIALIZE_RESULT, ts + 2);
        let x = Exchange::post(&[("mcp-session-id", sid)]);
        self.request(ep, &x, INITIALIZED, ts + 3);
    }
}

pub(super) fn values(records: Vec<Record>) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::to_value(r).expect("records serialise"))
        .collect()
}

/// The always-present fields of a message record from `client("c1", 40001)`, with `patch`
/// applied (a `null` in the patch sets the field to null; keys it adds are added).
pub(super) fn msg(patch: Value) -> Value {
    let mut base = json!({
        "type": "message", "ts_ns": 0, "pid": 100, "comm": "python3", "side": "client",
        "local": "127.0.0.1:40001", "remote": "127.0.0.1:8000", "conn_id": "c1",
        "http_method": "POST", "http_path": "/mcp", "http_status": null, "session_id": null,
        "era": "handshake", "direction": "client_to_server", "kind": "request", "id": null,
        "method": null, "tool_error": false, "batch": false, "transport": "json"
    });
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

pub(super) const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{},"roots":{"listChanged":true}},"clientInfo":{"name":"mcp","version":"0.1.0"}}}"#;
pub(super) const INITIALIZE_RESULT: &str = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"experimental":{},"prompts":{"listChanged":false},"resources":{"subscribe":false,"listChanged":false},"tools":{"listChanged":false}},"serverInfo":{"name":"demo","version":"2.3.0"}}}"#;
pub(super) const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// `capabilities` of [`INITIALIZE`].
pub(super) fn client_caps() -> Value {
    json!({"sampling": {}, "roots": {"listChanged": true}})
}

/// `capabilities` of [`INITIALIZE_RESULT`].
pub(super) fn server_caps() -> Value {
    json!({"experimental": {}, "prompts": {"listChanged": false},
           "resources": {"subscribe": false, "listChanged": false},
           "tools": {"listChanged": false}})
}

#[test]
fn a_handshake_session_is_reported_message_by_message_and_summarised_on_delete() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let c2 = client("c2", 40002);

    // initialize: no session id yet; the SSE answer's head carries it.
    let init = Exchange::post(&[
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ]);
    assert_eq!(
        sim.request(&c1, &init, INITIALIZE, 10 * SEC),
        vec![json!({
            "type": "message", "ts_ns": 10 * SEC, "pid": 100, "comm": "python3",
            "side": "client", "local": "127.0.0.1:40001", "remote": "127.0.0.1:8000",
            "conn_id": "c1", "http_method": "POST", "http_path": "/mcp", "http_status": null,
            "session_id": null, "era": "handshake", "direction": "client_to_server",
            "kind": "request", "id": 0, "method": "initialize", "tool_error": false,
            "batch": false, "transport": "json"
        })]
    );
    let init = init.answered(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("mcp-session-id", SESSION),
        ],
        Transport::Sse,
    );
    assert_eq!(
        sim.head(&c1, &init, 10 * SEC + 4_000_000),
        Vec::<Value>::new()
    );
    assert_eq!(
        sim.answer(&c1, &init, INITIALIZE_RESULT, 10 * SEC + 5_000_000),
        vec![json!({
            "type": "message", "ts_ns": 10 * SEC + 5_000_000, "pid": 100, "comm": "python3",
            "side": "client", "local": "127.0.0.1:40001", "remote": "127.0.0.1:8000",
            "conn_id": "c1", "http_method": "POST", "http_path": "/mcp", "http_status": 200,
            "session_id": SESSION, "era": "handshake", "direction": "server_to_client",
            "kind": "response", "id": 0, "method": "initialize", "latency_ns": 5_000_000,
            "tool_error": false, "batch": false, "transport": "sse"
        })]
    );

    // notifications/initialized on a second connection, carrying the session id.
    let with_sid = [
        ("mcp-session-id", SESSION),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let x = Exchange::post(&with_sid);
    assert_eq!(
        sim.request(&c2, &x, INITIALIZED, 11 * SEC),
        vec![msg(json!({
            "ts_ns": 11 * SEC, "local": "127.0.0.1:40002", "conn_id": "c2",
            "session_id": SESSION, "kind": "notification",
            "method": "notifications/initialized", "mcp_protocol_version": "2025-06-18"
        }))]
    );
    assert_eq!(
        sim.head(&c2, &x.answered(202, &[], Transport::Json), 11 * SEC + 1),
        Vec::<Value>::new()
    );

    // tools/list answered with JSON.
    let x = Exchange::post(&with_sid);
    sim.request(
        &c2,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        12 * SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    sim.head(&c2, &x, 12 * SEC + 1_000);
    assert_eq!(
        sim.answer(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"divide","description":"Divide a by b","inputSchema":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}}]}}"#,
            12 * SEC + 2_000,
        ),
        vec![msg(json!({
            "ts_ns": 12 * SEC + 2_000, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "session_id": SESSION, "direction": "server_to_client",
            "kind": "response", "id": 1, "method": "tools/list", "latency_ns": 2_000
        }))]
    );

    // tools/call with a progress token: progress on SSE, then a tool failure as a result.
    let x = Exchange::post(&with_sid);
    assert_eq!(
        sim.request(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"divide","arguments":{"a":1,"b":0},"_meta":{"progressToken":2}}}"#,
            13 * SEC,
        ),
        vec![msg(json!({
            "ts_ns": 13 * SEC, "local": "127.0.0.1:40002", "conn_id": "c2",
            "session_id": SESSION, "id": 2, "method": "tools/call", "name": "divide",
            "progress_token": 2, "mcp_protocol_version": "2025-06-18"
        }))]
    );
    let x = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    sim.head(&c2, &x, 13 * SEC + 10);
    assert_eq!(
        sim.answer(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2,"progress":0.5,"total":1.0,"message":"dividing"}}"#,
            13 * SEC + 20,
        ),
        vec![msg(json!({
            "ts_ns": 13 * SEC + 20, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "session_id": SESSION, "direction": "server_to_client",
            "kind": "notification", "method": "notifications/progress",
            "progress_token": 2, "related_id": 2, "transport": "sse"
        }))]
    );
    assert_eq!(
        sim.answer(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Error executing tool divide: division by zero"}],"isError":true}}"#,
            13 * SEC + 30,
        ),
        vec![msg(json!({
            "ts_ns": 13 * SEC + 30, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "session_id": SESSION, "direction": "server_to_client",
            "kind": "response", "id": 2, "method": "tools/call", "name": "divide",
            "latency_ns": 30, "tool_error": true,
            "error_message": "Error executing tool divide: division by zero",
            "transport": "sse"
        }))]
    );

    // resources/read answered with a JSON-RPC error.
    let x = Exchange::post(&with_sid);
    sim.request(
        &c2,
        &x,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///missing.txt"}}"#,
        14 * SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    assert_eq!(
        sim.answer(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"file:///missing.txt"}}}"#,
            14 * SEC + 7,
        ),
        vec![msg(json!({
            "ts_ns": 14 * SEC + 7, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "session_id": SESSION, "direction": "server_to_client",
            "kind": "error", "id": 3, "method": "resources/read",
            "name": "file:///missing.txt", "latency_ns": 7, "error_code": -32002,
            "error_name": "resource_not_found", "error_message": "Resource not found"
        }))]
    );

    // prompts/get.
    let x = Exchange::post(&with_sid);
    sim.request(
        &c2,
        &x,
        r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"review","arguments":{"code":"x = 1"}}}"#,
        15 * SEC,
    );
    let x = x.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    assert_eq!(
        sim.answer(
            &c2,
            &x,
            r#"{"jsonrpc":"2.0","id":4,"result":{"description":"Review code","messages":[{"role":"user","content":{"type":"text","text":"Please review: x = 1"}}]}}"#,
            15 * SEC + 9,
        ),
        vec![msg(json!({
            "ts_ns": 15 * SEC + 9, "local": "127.0.0.1:40002", "conn_id": "c2",
            "http_status": 200, "session_id": SESSION, "direction": "server_to_client",
            "kind": "response", "id": 4, "method": "prompts/get", "name": "review",
            "latency_ns": 9
        }))]
    );
    assert_eq!(sim.tracker.stats().pending, 0);

    // DELETE ends the session.
    let delete = Exchange::new("DELETE", &with_sid);
    assert_eq!(
        sim.head(&c2, &delete.answered(200, &[], Transport::Json), 16 * SEC),
        vec![json!({
            "type": "session_end", "session_id": SESSION, "grouping": "session_header", "era": "handshake",
            "pid": 100, "comm": "python3", "side": "client", "server": "127.0.0.1:8000/mcp",
            "client_name": "mcp", "client_version": "0.1.0", "server_name": "demo",
            "server_version": "2.3.0", "protocol_version": "2025-06-18",
            "started_ns": 10 * SEC, "ended_ns": 16 * SEC, "duration_ns": 6 * SEC,
            "requests": 5, "notifications": 2, "responses": 4, "errors": 1,
            "status": "ended", "end_reason": "delete",
            "methods": ["initialize", "notifications/initialized", "notifications/progress",
                        "prompts/get", "resources/read", "tools/call", "tools/list"],
            "tools": ["divide"], "primitives": ["prompts", "resources", "tools"],
            "state": "operating", "user": null, "role": null, "identity_source": null,
            "identity_verified": false, "client_capabilities": client_caps(),
            "server_capabilities": server_caps(), "cancelled": 0,
            "protocol_version_mismatches": 0, "first_mismatched_protocol_version": null,
            "supported_versions": null, "verification_failures": 0, "attacks": []
        })]
    );
    assert_eq!(sim.tracker.stats().sessions, 0);
}

#[test]
fn idle_sessions_share_their_capabilities_and_hold_no_empty_tables() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    sim.handshake(&c1, "s2", 2 * SEC);
    let sessions: Vec<&McpSession> = sim.tracker.sessions().collect();
    assert_eq!(sessions.len(), 2);
    let (a, b) = (sessions[0], sessions[1]);
    for (x, y) in [
        (&a.client_capabilities, &b.client_capabilities),
        (&a.server_capabilities, &b.server_capabilities),
    ] {
        let (Some(x), Some(y)) = (x, y) else {
            panic!("both sessions keep the capabilities");
        };
        assert!(std::sync::Arc::ptr_eq(x, y), "one copy for equal values");
    }
    for s in [a, b] {
        // The initialize request was answered: nothing pending, nothing allocated for it.
        assert_eq!((s.pending(), s.pending.capacity()), (0, 0));
        // Exactly sized name sets.
        assert_eq!(s.methods.capacity(), s.methods.len());
        assert_eq!(s.conns.capacity(), 1);
    }
}

#[test]
fn handshake_capabilities_and_state_are_kept_on_the_session() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = Exchange::post(&[]);
    sim.request(&c1, &x, INITIALIZE, SEC);
    let s: Vec<_> = sim.tracker.sessions().map(|s| s.state).collect();
    assert_eq!(s, vec![SessionState::Initializing]);
    let x = x.answered(200, &[("Mcp-Session-Id", "s1")], Transport::Json);
    sim.head(&c1, &x, SEC + 1);
    sim.answer(&c1, &x, INITIALIZE_RESULT, SEC + 2);
    let s: Vec<_> = sim.tracker.sessions().map(|s| s.state).collect();
    assert_eq!(s, vec![SessionState::Initialized]);
    sim.request(
        &c1,
        &Exchange::post(&[("MCP-SESSION-ID", "s1")]),
        INITIALIZED,
        SEC + 3,
    );
    let sessions: Vec<&McpSession> = sim.tracker.sessions().collect();
    assert_eq!(
        sessions.len(),
        1,
        "the header is matched case-insensitively"
    );
    let s = sessions[0];
    assert_eq!(s.state, SessionState::Operating);
    assert_eq!(s.grouping(), Grouping::SessionHeader);
    assert_eq!(
        s.client_capabilities.as_deref(),
        Some(&json!({"sampling": {}, "roots": {"listChanged": true}}))
    );
    assert_eq!(
        s.server_capabilities.as_ref().and_then(|c| c.get("tools")),
        Some(&json!({"listChanged": false}))
    );
    assert_eq!(s.requested_protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(s.negotiated_protocol_version.as_deref(), Some("2025-06-18"));
}

#[test]
fn the_initialize_answer_binds_the_session_even_when_its_body_comes_before_the_head() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = Exchange::post(&[]);
    sim.request(&c1, &x, INITIALIZE, SEC);
    let x = x.answered(200, &[("mcp-session-id", "s1")], Transport::Json);
    let recs = sim.answer(&c1, &x, INITIALIZE_RESULT, 2 * SEC);
    assert_eq!(recs[0]["method"], json!("initialize"));
    assert_eq!(recs[0]["session_id"], json!("s1"));
    assert_eq!(recs[0]["latency_ns"], json!(SEC));
    assert_eq!(sim.head(&c1, &x, 2 * SEC + 1), Vec::<Value>::new());
    let ended = sim.finish(3 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["session_id"], json!("s1"));
    assert_eq!(ended[0]["requests"], json!(1));
    assert_eq!(ended[0]["responses"], json!(1));
}

#[test]
fn a_404_to_a_request_with_a_session_id_ends_the_session_and_the_error_body_is_still_reported() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "gone", SEC);
    let x = Exchange::post(&[("mcp-session-id", "gone")]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        5 * SEC,
    );
    let x = x.answered(
        404,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    let ended = sim.head(&c1, &x, 5 * SEC + 100);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["type"], json!("session_end"));
    assert_eq!(ended[0]["end_reason"], json!("not_found"));
    assert_eq!(ended[0]["status"], json!("ended"));
    assert_eq!(ended[0]["ended_ns"], json!(5 * SEC + 100));
    assert_eq!(ended[0]["requests"], json!(2));

    // The body answers with a null id: reported, unpaired, and no session is resurrected.
    assert_eq!(
        sim.answer(
            &c1,
            &x,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#,
            5 * SEC + 200,
        ),
        vec![msg(json!({
            "ts_ns": 5 * SEC + 200, "http_status": 404, "session_id": "gone",
            "direction": "server_to_client", "kind": "error", "error_code": -32600,
            "error_name": "invalid_request", "error_message": "Session not found"
        }))]
    );
    assert_eq!(sim.tracker.stats().sessions, 0);
    assert_eq!(sim.finish(6 * SEC), Vec::<Value>::new());
}

#[test]
fn delete_not_answered_2xx_does_not_end_the_session() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let delete = Exchange::new("DELETE", &[("mcp-session-id", "s1")]);
    assert_eq!(
        sim.head(&c1, &delete.answered(405, &[], Transport::Json), 2 * SEC),
        Vec::<Value>::new()
    );
    assert_eq!(sim.tracker.stats().sessions, 1);
}

#[test]
fn a_server_request_on_the_get_stream_pairs_with_the_clients_posted_answer() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let get_conn = client("c9", 40009);
    sim.handshake(&c1, "s1", SEC);
    let sid = [("mcp-session-id", "s1")];

    // The client has its own request 0 in flight: same id, other direction.
    let call = Exchange::post(&sid);
    sim.request(
        &c1,
        &call,
        r#"{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"summarise","arguments":{"text":"long"}}}"#,
        2 * SEC,
    );

    let get = Exchange::new("GET", &sid).answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    sim.head(&get_conn, &get, 2 * SEC + 1);
    assert_eq!(
        sim.answer(
            &get_conn,
            &get,
            r#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"Summarise: long"}}],"maxTokens":100}}"#,
            3 * SEC,
        ),
        vec![msg(json!({
            "ts_ns": 3 * SEC, "local": "127.0.0.1:40009", "conn_id": "c9",
            "http_method": "GET", "http_status": 200, "session_id": "s1",
            "direction": "server_to_client", "kind": "request", "id": 0,
            "method": "sampling/createMessage", "transport": "sse"
        }))]
    );

    let reply = Exchange::post(&sid);
    assert_eq!(
        sim.request(
            &c1,
            &reply,
            r#"{"jsonrpc":"2.0","id":0,"result":{"role":"assistant","content":{"type":"text","text":"Short."},"model":"test-model","stopReason":"endTurn"}}"#,
            4 * SEC,
        ),
        vec![msg(json!({
            "ts_ns": 4 * SEC, "session_id": "s1", "kind": "response", "id": 0,
            "method": "sampling/createMessage", "latency_ns": SEC
        }))]
    );

    let call = call.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    assert_eq!(
        sim.answer(
            &c1,
            &call,
            r#"{"jsonrpc":"2.0","id":0,"result":{"content":[{"type":"text","text":"Short."}],"isError":false}}"#,
            5 * SEC,
        ),
        vec![msg(json!({
            "ts_ns": 5 * SEC, "http_status": 200, "session_id": "s1",
            "direction": "server_to_client", "kind": "response", "id": 0,
            "method": "tools/call", "name": "summarise", "latency_ns": 3 * SEC
        }))]
    );
    assert_eq!(sim.tracker.stats().unpaired_answers, 0);
}

#[test]
fn two_sessions_reusing_the_same_string_ids_are_never_cross_paired() {
    let mut sim = Sim::new();
    let a = client("ca", 40001);
    let b = client("cb", 40002);
    sim.handshake(&a, "A", SEC);
    sim.handshake(&b, "B", SEC);
    let xa = Exchange::post(&[("mcp-session-id", "A")]);
    let xb = Exchange::post(&[("mcp-session-id", "B")]);
    let call = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{{"name":"{tool}"}}}}"#
        )
    };
    sim.request(&a, &xa, &call("alpha"), 10 * SEC);
    sim.request(&b, &xb, &call("beta"), 20 * SEC);
    let done = r#"{"jsonrpc":"2.0","id":"req-1","result":{"content":[]}}"#;

    let rb = sim.answer(&b, &xb.answered(200, &[], Transport::Json), done, 21 * SEC);
    assert_eq!(
        (&rb[0]["id"], &rb[0]["name"], &rb[0]["latency_ns"]),
        (&json!("req-1"), &json!("beta"), &json!(SEC))
    );
    // B's request is answered: a second answer in B finds nothing, A's request is not used.
    let again = sim.answer(&b, &xb.answered(200, &[], Transport::Json), done, 22 * SEC);
    assert_eq!(again[0]["method"], Value::Null);
    assert_eq!(again[0].get("latency_ns"), None);

    let ra = sim.answer(&a, &xa.answered(200, &[], Transport::Json), done, 13 * SEC);
    assert_eq!(
        (&ra[0]["name"], &ra[0]["latency_ns"]),
        (&json!("alpha"), &json!(3 * SEC))
    );
    assert_eq!(sim.tracker.stats().unpaired_answers, 1);
}

#[test]
fn a_long_call_pairs_after_30_seconds_of_kernel_time() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow_build"}}"#,
        100 * SEC,
    );
    for t in [110, 120, 129] {
        assert_eq!(sim.tick(t * SEC), Vec::<Value>::new());
    }
    let recs = sim.answer(
        &c1,
        &x.answered(200, &[], Transport::Json),
        r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}"#,
        130 * SEC,
    );
    assert_eq!(recs[0]["method"], json!("tools/call"));
    assert_eq!(recs[0]["name"], json!("slow_build"));
    assert_eq!(recs[0]["latency_ns"], json!(30 * SEC));
}

#[test]
fn pending_requests_beyond_the_bound_evict_the_oldest_and_count_it() {
    let mut sim = Sim::with(McpConfig {
        max_pending_per_session: 2,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    for id in 1..=3 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        sim.request(&c1, &x, &body, (10 + id) * SEC);
    }
    let stats = sim.tracker.stats();
    assert_eq!((stats.pending, stats.evicted_pending), (2, 1));

    let answer = x.answered(200, &[], Transport::Json);
    let lost = sim.answer(
        &c1,
        &answer,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        20 * SEC,
    );
    assert_eq!(
        lost,
        vec![msg(json!({
            "ts_ns": 20 * SEC, "http_status": 200, "session_id": "s1",
            "direction": "server_to_client", "kind": "response", "id": 1
        }))],
        "an answer whose request was evicted is still reported, with method null"
    );
    let kept = sim.answer(
        &c1,
        &answer,
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        20 * SEC,
    );
    assert_eq!(kept[0]["method"], json!("ping"));
    assert_eq!(sim.tracker.stats().unpaired_answers, 1);
}

#[test]
fn batches_mixing_requests_and_notifications_are_reported_per_element_and_paired() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    let recs = sim.request(
        &c1,
        &x,
        r#"[{"jsonrpc":"2.0","id":10,"method":"tools/list"},
            {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"user"}},
            {"jsonrpc":"1.0","id":11,"method":"bogus"},
            {"jsonrpc":"2.0","id":"p","method":"resources/read","params":{"uri":"mem://a"}}]"#,
        5 * SEC,
    );
    assert_eq!(
        recs,
        vec![
            msg(json!({"ts_ns": 5 * SEC, "session_id": "s1", "id": 10,
                       "method": "tools/list", "batch": true})),
            msg(
                json!({"ts_ns": 5 * SEC, "session_id": "s1", "kind": "notification",
                       "method": "notifications/cancelled", "related_id": 9,
                       "batch": true})
            ),
            msg(json!({"ts_ns": 5 * SEC, "session_id": "s1", "id": "p",
                       "method": "resources/read", "name": "mem://a", "batch": true})),
        ]
    );
    assert_eq!(sim.tracker.stats().decode_errors, 1);

    let recs = sim.answer(
        &c1,
        &x.answered(
            200,
            &[("content-type", "application/json")],
            Transport::Json,
        ),
        r#"[{"jsonrpc":"2.0","id":"p","result":{"contents":[{"uri":"mem://a","text":"A"}]}},
            {"jsonrpc":"2.0","id":10,"result":{"tools":[]}}]"#,
        6 * SEC,
    );
    let base = json!({"ts_ns": 6 * SEC, "http_status": 200, "session_id": "s1",
                      "direction": "server_to_client", "kind": "response",
                      "latency_ns": SEC, "batch": true});
    let mut first = msg(base.clone());
    first["id"] = json!("p");
    first["method"] = json!("resources/read");
    first["name"] = json!("mem://a");
    let mut second = msg(base);
    second["id"] = json!(10);
    second["method"] = json!("tools/list");
    assert_eq!(recs, vec![first, second]);
}

#[test]
fn deeply_nested_payloads_are_counted_as_decode_errors_not_crashes() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    assert_eq!(sim.request(&c1, &x, &body, SEC), Vec::<Value>::new());
    assert_eq!(
        sim.request(&c1, &x, "not json at all", SEC),
        Vec::<Value>::new()
    );
    assert_eq!(sim.request(&c1, &x, " \r\n", SEC), Vec::<Value>::new());
    let stats = sim.tracker.stats();
    assert_eq!((stats.decode_errors, stats.sessions), (2, 0));
}

#[test]
fn oversized_payloads_are_counted_as_decode_errors() {
    let mut sim = Sim::with(McpConfig {
        max_payload_bytes: 64,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}"}}}}"#,
        "x".repeat(100)
    );
    assert_eq!(
        sim.request(&c1, &Exchange::post(&[]), &body, SEC),
        Vec::<Value>::new()
    );
    assert_eq!(sim.tracker.stats().decode_errors, 1);
}

#[test]
fn sessions_idle_longer_than_the_timeout_end_at_their_last_message() {
    let mut sim = Sim::with(McpConfig {
        idle_timeout_ns: 60 * SEC,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let last = SEC + 3;
    assert_eq!(sim.tick(last + 60 * SEC), Vec::<Value>::new());
    let ended = sim.tick(last + 60 * SEC + 1);
    assert_eq!(
        ended,
        vec![json!({
            "type": "session_end", "session_id": "s1", "grouping": "session_header", "era": "handshake",
            "pid": 100, "comm": "python3", "side": "client", "server": "127.0.0.1:8000/mcp",
            "client_name": "mcp", "client_version": "0.1.0", "server_name": "demo",
            "server_version": "2.3.0", "protocol_version": "2025-06-18",
            "started_ns": SEC, "ended_ns": last, "duration_ns": 3,
            "requests": 1, "notifications": 1, "responses": 1, "errors": 0,
            "status": "ended", "end_reason": "idle",
            "methods": ["initialize", "notifications/initialized"], "tools": [],
            "primitives": [], "state": "operating", "user": null, "role": null,
            "identity_source": null, "identity_verified": false,
            "client_capabilities": client_caps(), "server_capabilities": server_caps(),
            "cancelled": 0, "protocol_version_mismatches": 0,
            "first_mismatched_protocol_version": null, "supported_versions": null,
            "verification_failures": 0, "attacks": []
        })]
    );
    // Traffic with the same id afterwards starts a new session (the server still knows it).
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#,
        200 * SEC,
    );
    assert_eq!(sim.tracker.stats().sessions, 1);
}

#[test]
fn servers_without_session_ids_are_grouped_per_connection_until_it_closes() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = Exchange::post(&[]);
    sim.request(&c1, &x, INITIALIZE, SEC);
    let x = x.answered(
        200,
        &[("content-type", "application/json")],
        Transport::Json,
    );
    sim.head(&c1, &x, SEC + 1);
    let recs = sim.answer(&c1, &x, INITIALIZE_RESULT, SEC + 2);
    assert_eq!(recs[0]["session_id"], Value::Null);
    assert_eq!(recs[0]["method"], json!("initialize"));
    sim.request(&c1, &Exchange::post(&[]), INITIALIZED, SEC + 3);
    let x = Exchange::post(&[]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"s":"hi"}}}"#,
        SEC + 4,
    );
    let recs = sim.answer(
        &c1,
        &x.answered(200, &[], Transport::Json),
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#,
        SEC + 10,
    );
    assert_eq!(recs[0]["latency_ns"], json!(6));

    assert_eq!(
        sim.closed(&c1, 2 * SEC),
        vec![json!({
            "type": "session_end", "session_id": "c1", "grouping": "connection", "era": "handshake",
            "pid": 100, "comm": "python3", "side": "client", "server": "127.0.0.1:8000/mcp",
            "client_name": "mcp", "client_version": "0.1.0", "server_name": "demo",
            "server_version": "2.3.0", "protocol_version": "2025-06-18",
            "started_ns": SEC, "ended_ns": 2 * SEC, "duration_ns": SEC,
            "requests": 2, "notifications": 1, "responses": 2, "errors": 0,
            "status": "ended", "end_reason": "closed",
            "methods": ["initialize", "notifications/initialized", "tools/call"],
            "tools": ["echo"], "primitives": ["tools"], "state": "operating", "user": null,
            "role": null, "identity_source": null, "identity_verified": false,
            "client_capabilities": client_caps(), "server_capabilities": server_caps(),
            "cancelled": 0, "protocol_version_mismatches": 0,
            "first_mismatched_protocol_version": null, "supported_versions": null,
            "verification_failures": 0, "attacks": []
        })]
    );
    assert_eq!(sim.tracker.stats().sessions, 0);
}

#[test]
fn closing_a_connection_does_not_end_a_header_session() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    assert_eq!(sim.closed(&c1, 2 * SEC), Vec::<Value>::new());
    assert_eq!(sim.tracker.stats().sessions, 1);
}

#[test]
fn an_observed_server_reports_its_own_address_as_the_server() {
    let mut sim = Sim::new();
    let srv = Endpoint {
        pid: 200,
        comm: "uvicorn".into(),
        side: Side::Server,
        local: "127.0.0.1:8000".into(),
        remote: "127.0.0.1:51000".into(),
        conn_id: "s-c1".into(),
    };
    sim.handshake(&srv, "s1", SEC);
    let ended = sim.finish(2 * SEC);
    assert_eq!(ended[0]["server"], json!("127.0.0.1:8000/mcp"));
    assert_eq!(ended[0]["side"], json!("server"));
    assert_eq!(ended[0]["pid"], json!(200));
}

#[test]
fn the_same_session_id_in_two_processes_is_two_sessions() {
    let mut sim = Sim::new();
    let mut other = client("c1", 40001);
    other.pid = 101;
    sim.handshake(&client("c1", 40001), "s1", SEC);
    sim.handshake(&other, "s1", SEC);
    assert_eq!(sim.tracker.stats().sessions, 2);
}

#[test]
fn beyond_max_sessions_the_least_recently_active_is_evicted_and_counted() {
    let mut sim = Sim::with(McpConfig {
        max_sessions: 2,
        ..McpConfig::default()
    });
    sim.handshake(&client("c1", 40001), "s1", SEC);
    sim.handshake(&client("c2", 40002), "s2", 2 * SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &client("c1", 40001),
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        3 * SEC,
    );
    let x = Exchange::post(&[("mcp-session-id", "s3")]);
    let recs = sim.request(
        &client("c3", 40003),
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        4 * SEC,
    );
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["type"], json!("session_end"));
    assert_eq!(recs[0]["session_id"], json!("s2"));
    assert_eq!(recs[0]["end_reason"], json!("evicted"));
    assert_eq!(recs[0]["status"], json!("active"));
    assert_eq!(recs[1]["type"], json!("message"));
    let stats = sim.tracker.stats();
    assert_eq!((stats.sessions, stats.evicted_sessions), (2, 1));
}

#[test]
fn finish_reports_every_open_session_as_active_in_start_order() {
    let mut sim = Sim::new();
    sim.handshake(&client("c2", 40002), "late", 5 * SEC);
    sim.handshake(&client("c1", 40001), "early", SEC);
    let ended = sim.finish(9 * SEC);
    let ids: Vec<&Value> = ended.iter().map(|r| &r["session_id"]).collect();
    assert_eq!(ids, vec![&json!("early"), &json!("late")]);
    assert!(ended
        .iter()
        .all(|r| r["status"] == json!("active") && r["end_reason"] == json!("shutdown")));
    assert_eq!(ended[1]["duration_ns"], json!(4 * SEC));
    assert_eq!(
        sim.tracker.stats(),
        McpStats {
            messages: 6,
            ..McpStats::default()
        }
    );
}

#[test]
fn garbage_payloads_never_panic_the_tracker() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = Exchange::post(&[("mcp-session-id", "s1")]).answered(200, &[], Transport::Sse);
    let bodies = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"not-an-object"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"x":1},"_meta":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":"nope"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":5}]}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"clientInfo":"x","protocolVersion":1}}"#,
        r#"{"jsonrpc":"2.0","id":2,"result":null}"#,
        r#"[{"jsonrpc":"2.0","id":1e400}]"#,
        r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}"#,
        "\u{0}\u{1}\u{2}",
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
    assert_eq!(sim.finish(SEC).len(), 1);
}
