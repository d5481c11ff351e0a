//! Session lifecycle, pairing extras and session-id locations, driven like the connection glue
//! drives the tracker.

use serde_json::{json, Value};

use super::tests::*;
use super::*;

const MIN: u64 = 60 * SEC;

fn server_ep(conn: &str, client_port: u16) -> Endpoint {
    Endpoint {
        pid: 200,
        comm: "uvicorn".into(),
        side: Side::Server,
        local: "127.0.0.1:8000".into(),
        remote: format!("127.0.0.1:{client_port}"),
        conn_id: conn.into(),
    }
}

fn ping(id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)
}

fn only(records: Vec<Value>) -> Value {
    assert_eq!(records.len(), 1, "want exactly one record, got {records:?}");
    records.into_iter().next().unwrap_or(Value::Null)
}

fn session_ends(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["type"] == "session_end")
        .collect()
}

#[test]
fn the_handshake_moves_new_initializing_initialized_operating_and_the_summary_says_where_it_got() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let states =
        |sim: &Sim| -> Vec<SessionState> { sim.tracker.sessions().map(|s| s.state).collect() };

    // A session seen mid-way (started before we looked) stays `new`.
    let x = Exchange::post(&[("mcp-session-id", "old")]);
    sim.request(&c1, &x, &ping(40), SEC);
    assert_eq!(states(&sim), vec![SessionState::New]);
    let old = sim.head(
        &c1,
        &Exchange::new("DELETE", &[("mcp-session-id", "old")]).answered(200, &[], Transport::Json),
        2 * SEC,
    );
    assert_eq!(old[0]["state"], json!("new"));
    assert_eq!(old[0]["end_reason"], json!("delete"));

    let x = Exchange::post(&[]);
    sim.request(&c1, &x, INITIALIZE, 3 * SEC);
    assert_eq!(states(&sim), vec![SessionState::Initializing]);
    let x = x.answered(200, &[("mcp-session-id", "s1")], Transport::Sse);
    sim.head(&c1, &x, 3 * SEC + 1);
    sim.answer(&c1, &x, INITIALIZE_RESULT, 3 * SEC + 2);
    assert_eq!(states(&sim), vec![SessionState::Initialized]);
    let before_initialized = sim.finish(4 * SEC);
    assert_eq!(before_initialized[0]["state"], json!("initialized"));

    sim.handshake(&c1, "s2", 5 * SEC);
    let ended = sim.finish(6 * SEC);
    assert_eq!(ended[0]["state"], json!("operating"));
    assert_eq!(ended[0]["client_capabilities"], client_caps());
    assert_eq!(ended[0]["server_capabilities"], server_caps());
    assert_eq!(ended[0]["protocol_version"], json!("2025-06-18"));
}

#[test]
fn closing_every_connection_ends_a_session_after_the_grace_period_at_the_last_close() {
    let mut sim = Sim::new();
    let (c1, c2) = (client("c1", 40001), client("c2", 40002));
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(&c2, &x, &ping(1), 2 * SEC);
    sim.answer(
        &c2,
        &x.answered(200, &[], Transport::Json),
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        2 * SEC + 5,
    );

    assert_eq!(sim.closed(&c1, 5 * SEC), Vec::<Value>::new());
    assert_eq!(sim.tick(40 * SEC), Vec::<Value>::new(), "c2 is still open");
    assert_eq!(sim.closed(&c2, 41 * SEC), Vec::<Value>::new());
    assert_eq!(
        sim.tick(41 * SEC + 29 * SEC),
        Vec::<Value>::new(),
        "within the grace period"
    );
    let ended = sim.tick(41 * SEC + 30 * SEC);
    assert_eq!(ended.len(), 1);
    let end = &ended[0];
    assert_eq!(
        (
            &end["session_id"],
            &end["end_reason"],
            &end["status"],
            &end["ended_ns"],
            &end["duration_ns"]
        ),
        (
            &json!("s1"),
            &json!("closed"),
            &json!("ended"),
            &json!(41 * SEC),
            &json!(40 * SEC)
        )
    );
    assert_eq!(sim.tracker.stats().sessions, 0);
}

#[test]
fn a_new_connection_per_post_within_the_grace_period_keeps_the_session_alive() {
    let mut sim = Sim::new();
    sim.handshake(&client("c1", 40001), "s1", SEC);
    sim.closed(&client("c1", 40001), 2 * SEC);
    // The client's next POST comes 20 s later on a fresh connection.
    let c3 = client("c3", 40003);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(&c3, &x, &ping(1), 22 * SEC);
    sim.answer(
        &c3,
        &x.answered(200, &[], Transport::Json),
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        22 * SEC + 1,
    );
    sim.closed(&c3, 23 * SEC);
    assert_eq!(
        sim.tick(40 * SEC),
        Vec::<Value>::new(),
        "30 s since c1 closed, but c3 reset it"
    );
    let ended = sim.tick(53 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (&ended[0]["end_reason"], &ended[0]["ended_ns"]),
        (&json!("closed"), &json!(23 * SEC))
    );
}

#[test]
fn an_open_get_stream_keeps_a_session_whose_posts_closed() {
    let mut sim = Sim::new();
    let (c1, get_conn) = (client("c1", 40001), client("c9", 40009));
    sim.handshake(&c1, "s1", SEC);
    let get = Exchange::new("GET", &[("mcp-session-id", "s1")]).answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    assert_eq!(sim.head(&get_conn, &get, 2 * SEC), Vec::<Value>::new());
    sim.closed(&c1, 3 * SEC);
    assert_eq!(sim.tick(5 * MIN), Vec::<Value>::new());
    let s: Vec<Vec<&str>> = sim
        .tracker
        .sessions()
        .map(|s| s.open_conns().collect())
        .collect();
    assert_eq!(s, vec![vec!["c9"]]);
    sim.closed(&get_conn, 6 * MIN);
    let ended = sim.tick(7 * MIN);
    assert_eq!(
        (&ended[0]["end_reason"], &ended[0]["ended_ns"]),
        (&json!("closed"), &json!(6 * MIN))
    );
}

#[test]
fn a_pending_request_keeps_a_session_open_through_closes_and_idle_time() {
    let mut sim = Sim::with(McpConfig {
        idle_timeout_ns: 10 * MIN,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"train"}}"#,
        10 * SEC,
    );
    sim.closed(&c1, 11 * SEC);
    assert_eq!(sim.tick(11 * SEC + 20 * MIN), Vec::<Value>::new());
    // The answer comes on a resumed stream (GET with Last-Event-ID) on a new connection.
    let c2 = client("c2", 40002);
    let get = Exchange::new(
        "GET",
        &[("mcp-session-id", "s1"), ("last-event-id", "ev-7")],
    )
    .answered(200, &[], Transport::Sse);
    let done = only(sim.answer(
        &c2,
        &get,
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#,
        10 * SEC + 25 * MIN,
    ));
    assert_eq!(
        (&done["name"], &done["latency_ns"]),
        (&json!("train"), &json!(25 * MIN))
    );
    sim.closed(&c2, 10 * SEC + 26 * MIN);
    let ended = sim.tick(10 * SEC + 27 * MIN);
    assert_eq!(ended[0]["end_reason"], json!("closed"));
}

#[test]
fn a_30_second_call_and_a_30_minute_call_both_pair_with_a_10_minute_idle_timeout() {
    let mut sim = Sim::with(McpConfig {
        idle_timeout_ns: 10 * MIN,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    let answered = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );

    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"compile"}}"#,
        100 * SEC,
    );
    let quick = only(sim.answer(
        &c1,
        &answered,
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
        130 * SEC,
    ));
    assert_eq!(
        (&quick["method"], &quick["latency_ns"]),
        (&json!("tools/call"), &json!(30 * SEC))
    );

    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deep_research"}}"#,
        200 * SEC,
    );
    for minute in 1..30 {
        assert_eq!(
            sim.tick(200 * SEC + minute * MIN),
            Vec::<Value>::new(),
            "minute {minute}"
        );
    }
    let slow = only(sim.answer(
        &c1,
        &answered,
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"report"}]}}"#,
        200 * SEC + 30 * MIN,
    ));
    assert_eq!(
        slow,
        msg(json!({
            "ts_ns": 200 * SEC + 30 * MIN, "http_status": 200, "session_id": "s1",
            "direction": "server_to_client", "kind": "response", "id": 2,
            "method": "tools/call", "name": "deep_research", "latency_ns": 30 * MIN,
            "transport": "sse"
        }))
    );
    // Once answered, idleness counts again from the last message.
    let last = 200 * SEC + 30 * MIN;
    assert_eq!(sim.tick(last + 10 * MIN), Vec::<Value>::new());
    let ended = sim.tick(last + 10 * MIN + 1);
    assert_eq!(
        (&ended[0]["end_reason"], &ended[0]["ended_ns"]),
        (&json!("idle"), &json!(last))
    );
}

/// Two clients initialize against one observed server at once; both number their ids from 0.
fn two_clients_from_the_server_side(with_ids: bool) -> Vec<Value> {
    let mut sim = Sim::new();
    let (a, b) = (server_ep("srv-a", 51000), server_ep("srv-b", 52000));
    let sid = |s: &'static str| {
        if with_ids {
            vec![("mcp-session-id", s)]
        } else {
            vec![]
        }
    };
    let init = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"1.0"}}}}}}"#
        )
    };
    let xa = Exchange::post(&[]);
    let xb = Exchange::post(&[]);
    sim.request(&a, &xa, &init("alpha"), SEC);
    sim.request(&b, &xb, &init("beta"), SEC + 10);
    let xa = xa.answered(200, &sid("A"), Transport::Sse);
    let xb = xb.answered(200, &sid("B"), Transport::Sse);
    let mut out = Vec::new();
    // Answers in the opposite order.
    sim.head(&b, &xb, SEC + 20);
    out.extend(sim.answer(&b, &xb, INITIALIZE_RESULT, SEC + 30));
    sim.head(&a, &xa, SEC + 40);
    out.extend(sim.answer(&a, &xa, INITIALIZE_RESULT, SEC + 50));
    let call = |tool: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#)
    };
    let xa = Exchange::post(&sid("A"));
    let xb = Exchange::post(&sid("B"));
    sim.request(&a, &xa, &call("add"), 2 * SEC);
    sim.request(&b, &xb, &call("subtract"), 2 * SEC + 100);
    let done = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    out.extend(sim.answer(
        &b,
        &xb.answered(200, &[], Transport::Json),
        done,
        2 * SEC + 300,
    ));
    out.extend(sim.answer(
        &a,
        &xa.answered(200, &[], Transport::Json),
        done,
        2 * SEC + 1000,
    ));
    assert_eq!(sim.tracker.stats().unpaired_answers, 0);
    out.extend(sim.finish(3 * SEC));
    out
}

#[test]
fn two_clients_numbering_ids_from_0_against_one_server_are_never_cross_paired() {
    for with_ids in [true, false] {
        let out = two_clients_from_the_server_side(with_ids);
        let answers: Vec<(&Value, &Value, &Value, &Value, &Value)> = out
            .iter()
            .filter(|r| r["type"] == "message")
            .map(|r| {
                (
                    &r["conn_id"],
                    &r["id"],
                    &r["method"],
                    &r["name"],
                    &r["latency_ns"],
                )
            })
            .collect();
        let null = Value::Null;
        assert_eq!(
            answers,
            vec![
                (
                    &json!("srv-b"),
                    &json!(0),
                    &json!("initialize"),
                    &null,
                    &json!(20)
                ),
                (
                    &json!("srv-a"),
                    &json!(0),
                    &json!("initialize"),
                    &null,
                    &json!(50)
                ),
                (
                    &json!("srv-b"),
                    &json!(1),
                    &json!("tools/call"),
                    &json!("subtract"),
                    &json!(200)
                ),
                (
                    &json!("srv-a"),
                    &json!(1),
                    &json!("tools/call"),
                    &json!("add"),
                    &json!(1000)
                ),
            ],
            "with session ids: {with_ids}"
        );
        let ends = session_ends(&out);
        let who: Vec<(&Value, &Value, &Value)> = ends
            .iter()
            .map(|e| (&e["session_id"], &e["client_name"], &e["tools"]))
            .collect();
        let (ida, idb) = if with_ids {
            ("A", "B")
        } else {
            ("srv-a", "srv-b")
        };
        assert_eq!(
            who,
            vec![
                (&json!(ida), &json!("alpha"), &json!(["add"])),
                (&json!(idb), &json!("beta"), &json!(["subtract"])),
            ]
        );
    }
}

#[test]
fn the_mcp_protocol_version_header_is_recorded_and_mismatches_are_counted_with_the_first_value() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC); // negotiates 2025-06-18
    let with =
        |v: &'static str| Exchange::post(&[("mcp-session-id", "s1"), ("MCP-Protocol-Version", v)]);
    let ok = only(sim.request(&c1, &with("2025-06-18"), &ping(1), 2 * SEC));
    assert_eq!(ok["mcp_protocol_version"], json!("2025-06-18"));
    let bad = only(sim.request(&c1, &with("2025-03-26"), &ping(2), 3 * SEC));
    assert_eq!(bad["mcp_protocol_version"], json!("2025-03-26"));
    sim.request(&c1, &with("2024-11-05"), &ping(3), 4 * SEC);
    // A bodiless GET is checked at its response head.
    let get = Exchange::new(
        "GET",
        &[
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
    );
    sim.head(&c1, &get.answered(405, &[], Transport::Json), 5 * SEC);
    // An answer record does not repeat the request header.
    let answer = only(sim.answer(
        &c1,
        &with("2024-11-05").answered(200, &[], Transport::Json),
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        6 * SEC,
    ));
    assert_eq!(answer.get("mcp_protocol_version"), None);

    let ended = sim.finish(7 * SEC);
    assert_eq!(
        (
            &ended[0]["protocol_version"],
            &ended[0]["protocol_version_mismatches"],
            &ended[0]["first_mismatched_protocol_version"]
        ),
        (&json!("2025-06-18"), &json!(3), &json!("2025-03-26"))
    );
    assert_eq!(sim.tracker.stats().protocol_version_mismatches, 3);
}

#[test]
fn without_a_negotiated_version_the_header_is_the_summarys_version_and_nothing_mismatches() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    let x = Exchange::post(&[
        ("mcp-session-id", "joined-late"),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    sim.request(&c1, &x, &ping(1), SEC);
    let ended = sim.finish(2 * SEC);
    assert_eq!(
        (
            &ended[0]["protocol_version"],
            &ended[0]["protocol_version_mismatches"]
        ),
        (&json!("2025-11-25"), &json!(0))
    );
}

#[test]
fn a_header_configured_for_one_server_names_its_session_id_and_others_keep_the_default() {
    let mut sim = Sim::with(McpConfig {
        servers: vec![ServerConfig {
            server: "127.0.0.1:9000/rpc".into(),
            session_id: Some(SessionIdLocation::Header("X-Gateway-Session".into())),
            identity: None,
        }],
        ..McpConfig::default()
    });
    let mut gw = client("g1", 41001);
    gw.remote = "127.0.0.1:9000".into();
    let mut x = Exchange::post(&[]);
    x.path = "/rpc";
    sim.request(&gw, &x, INITIALIZE, SEC);
    let x = x.answered(
        200,
        &[("x-gateway-session", "gw-1"), ("mcp-session-id", "ignored")],
        Transport::Json,
    );
    let init = only(sim.answer(&gw, &x, INITIALIZE_RESULT, SEC + 5));
    assert_eq!(
        (&init["session_id"], &init["latency_ns"]),
        (&json!("gw-1"), &json!(5))
    );
    let mut x = Exchange::post(&[("x-gateway-session", "gw-1"), ("mcp-session-id", "ignored")]);
    x.path = "/rpc";
    let rec = only(sim.request(
        &client("g2", 41002).clone_with_remote("127.0.0.1:9000"),
        &x,
        INITIALIZED,
        2 * SEC,
    ));
    assert_eq!(rec["session_id"], json!("gw-1"));

    // The default header still applies to another server.
    sim.handshake(&client("c1", 40001), "plain", 3 * SEC);
    let ended = sim.finish(4 * SEC);
    let ids: Vec<(&Value, &Value, &Value)> = ended
        .iter()
        .map(|e| (&e["session_id"], &e["server"], &e["state"]))
        .collect();
    assert_eq!(
        ids,
        vec![
            (
                &json!("gw-1"),
                &json!("127.0.0.1:9000/rpc"),
                &json!("operating")
            ),
            (
                &json!("plain"),
                &json!("127.0.0.1:8000/mcp"),
                &json!("operating")
            ),
        ]
    );
}

trait WithRemote {
    fn clone_with_remote(&self, remote: &str) -> Endpoint;
}

impl WithRemote for Endpoint {
    fn clone_with_remote(&self, remote: &str) -> Endpoint {
        Endpoint {
            remote: remote.to_string(),
            ..self.clone()
        }
    }
}

#[test]
fn a_query_parameter_session_id_groups_legacy_http_sse_traffic_and_pairs_answers_on_the_get_stream()
{
    let mut sim = Sim::with(McpConfig {
        servers: vec![ServerConfig {
            server: "127.0.0.1:8000".into(),
            session_id: Some(SessionIdLocation::Query("session_id".into())),
            identity: None,
        }],
        ..McpConfig::default()
    });
    let (get_conn, c1) = (client("c9", 40009), client("c1", 40001));
    // The client opens the SSE stream; the first event names the POST endpoint.
    let mut get = Exchange::new("GET", &[("accept", "text/event-stream")]);
    get.path = "/sse";
    let get = get.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    assert_eq!(sim.head(&get_conn, &get, SEC), Vec::<Value>::new());
    assert_eq!(
        sim.answer(
            &get_conn,
            &get,
            "/messages/?session_id=9f86d081884c7d65",
            SEC + 1
        ),
        Vec::<Value>::new()
    );
    assert_eq!(
        sim.tracker.stats().decode_errors,
        0,
        "the endpoint event is not an error"
    );

    let mut post = Exchange::post(&[("content-type", "application/json")]);
    post.path = "/messages/?session_id=9f86d081884c7d65";
    let init = only(sim.request(&c1, &post, INITIALIZE, 2 * SEC));
    assert_eq!(init["session_id"], json!("9f86d081884c7d65"));
    assert_eq!(
        sim.head(&c1, &post.answered(202, &[], Transport::Json), 2 * SEC + 1),
        Vec::<Value>::new()
    );
    // The answer comes on the GET stream, which carries no session id of its own.
    let answer = only(sim.answer(&get_conn, &get, INITIALIZE_RESULT, 2 * SEC + 7));
    assert_eq!(
        answer,
        msg(json!({
            "ts_ns": 2 * SEC + 7, "local": "127.0.0.1:40009", "conn_id": "c9",
            "http_method": "GET", "http_path": "/sse", "http_status": 200,
            "session_id": "9f86d081884c7d65", "direction": "server_to_client",
            "kind": "response", "id": 0, "method": "initialize", "latency_ns": 7,
            "transport": "sse"
        }))
    );
    sim.request(&c1, &post, INITIALIZED, 3 * SEC);
    let ended = sim.finish(4 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (
            &ended[0]["session_id"],
            &ended[0]["grouping"],
            &ended[0]["server_name"],
            &ended[0]["state"]
        ),
        (
            &json!("9f86d081884c7d65"),
            &json!("session_query"),
            &json!("demo"),
            &json!("operating")
        )
    );
    assert_eq!(
        query_param("/m?a=1&session_id=x%2Fy#frag", "session_id"),
        Some("x/y".into())
    );
    assert_eq!(query_param("/m?session_id=&b=2", "session_id"), None);
    assert_eq!(query_param("/m?session_id=%zz", "session_id"), None);
}

#[test]
fn cancelled_requests_are_marked_on_a_late_answer_and_counted_and_do_not_hold_the_session_open() {
    let mut sim = Sim::with(McpConfig {
        idle_timeout_ns: MIN,
        ..McpConfig::default()
    });
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow"}}"#,
        2 * SEC,
    );
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":"six","method":"tools/call","params":{"name":"slower"}}"#,
        2 * SEC,
    );
    let note = only(sim.request(&c1, &x, r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5,"reason":"User requested cancellation"}}"#, 3 * SEC));
    assert_eq!(
        note,
        msg(json!({
            "ts_ns": 3 * SEC, "session_id": "s1", "kind": "notification",
            "method": "notifications/cancelled", "related_id": 5
        }))
    );
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"six"}}"#,
        3 * SEC,
    );
    // A cancellation of something not pending is reported but counts nothing.
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#,
        3 * SEC,
    );
    // The race: request 5's answer still comes.
    let late = only(sim.answer(
        &c1,
        &x.answered(200, &[], Transport::Sse),
        r#"{"jsonrpc":"2.0","id":5,"result":{"content":[]}}"#,
        4 * SEC,
    ));
    assert_eq!(
        (
            &late["method"],
            &late["name"],
            &late["latency_ns"],
            &late["cancelled"]
        ),
        (
            &json!("tools/call"),
            &json!("slow"),
            &json!(2 * SEC),
            &json!(true)
        )
    );
    // "six" is never answered; it is cancelled, so the session still idles out.
    let ended = sim.tick(4 * SEC + MIN + 1);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (&ended[0]["end_reason"], &ended[0]["cancelled"]),
        (&json!("idle"), &json!(2))
    );
    assert_eq!(sim.tracker.stats().cancelled, 2);
}

#[test]
fn progress_notifications_name_the_request_that_carried_their_token() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let x = Exchange::post(&[("mcp-session-id", "s1")]);
    sim.request(&c1, &x, r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"tok-a"}}}"#, 2 * SEC);
    sim.request(&c1, &x, r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"b","_meta":{"progressToken":7}}}"#, 2 * SEC);
    let sse = x.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    let progress = |token: &str, p: f64| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},"progress":{p},"total":1.0}}}}"#
        )
    };
    let pa = only(sim.answer(&c1, &sse, &progress(r#""tok-a""#, 0.25), 3 * SEC));
    assert_eq!(
        pa,
        msg(json!({
            "ts_ns": 3 * SEC, "http_status": 200, "session_id": "s1",
            "direction": "server_to_client", "kind": "notification",
            "method": "notifications/progress", "progress_token": "tok-a", "related_id": 11,
            "transport": "sse"
        }))
    );
    let pb = only(sim.answer(&c1, &sse, &progress("7", 0.5), 3 * SEC));
    assert_eq!(
        (&pb["progress_token"], &pb["related_id"]),
        (&json!(7), &json!(12))
    );
    // A string "7" is not the integer 7.
    let other = only(sim.answer(&c1, &sse, &progress(r#""7""#, 0.5), 3 * SEC));
    assert_eq!(other.get("related_id"), None);
    sim.answer(
        &c1,
        &sse,
        r#"{"jsonrpc":"2.0","id":12,"result":{"content":[]}}"#,
        4 * SEC,
    );
    let after = only(sim.answer(&c1, &sse, &progress("7", 1.0), 5 * SEC));
    assert_eq!(after.get("related_id"), None, "the request was answered");
}

#[test]
fn server_requests_on_a_post_stream_pair_with_the_clients_posted_answers_and_count_as_primitives() {
    let mut sim = Sim::new();
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let sid = [("mcp-session-id", "s1")];
    let call = Exchange::post(&sid);
    sim.request(&c1, &call, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"book_flight","arguments":{"to":"NRT"}}}"#, 2 * SEC);
    let sse = call.answered(
        200,
        &[("content-type", "text/event-stream")],
        Transport::Sse,
    );
    // Related server→client requests ride the POST's SSE stream, numbered from 0 and 1 too.
    let elicit = only(sim.answer(&c1, &sse, r#"{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{"mode":"form","message":"Seat preference?","requestedSchema":{"type":"object","properties":{"seat":{"type":"string","enum":["aisle","window"]}},"required":["seat"]}}}"#, 3 * SEC));
    assert_eq!(
        (&elicit["kind"], &elicit["direction"], &elicit["id"]),
        (&json!("request"), &json!("server_to_client"), &json!(1))
    );
    sim.answer(
        &c1,
        &sse,
        r#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#,
        3 * SEC + 1,
    );

    let reply = Exchange::post(&sid);
    let roots = only(sim.request(&c1, &reply, r#"{"jsonrpc":"2.0","id":0,"result":{"roots":[{"uri":"file:///home/u/trips","name":"trips"}]}}"#, 4 * SEC));
    assert_eq!(
        (&roots["method"], &roots["latency_ns"]),
        (&json!("roots/list"), &json!(SEC - 1))
    );
    let accepted = only(sim.request(
        &c1,
        &reply,
        r#"{"jsonrpc":"2.0","id":1,"result":{"action":"accept","content":{"seat":"aisle"}}}"#,
        5 * SEC,
    ));
    assert_eq!(
        accepted,
        msg(json!({
            "ts_ns": 5 * SEC, "session_id": "s1", "kind": "response", "id": 1,
            "method": "elicitation/create", "latency_ns": 2 * SEC
        }))
    );
    let done = only(sim.answer(
        &c1,
        &sse,
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Booked"}]}}"#,
        6 * SEC,
    ));
    assert_eq!(
        (&done["method"], &done["name"], &done["latency_ns"]),
        (&json!("tools/call"), &json!("book_flight"), &json!(4 * SEC))
    );

    let x = Exchange::post(&sid);
    sim.request(&c1, &x, r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"trip"},"argument":{"name":"city","value":"To"}}}"#, 7 * SEC);
    sim.request(
        &c1,
        &x,
        r#"{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"info"}}"#,
        7 * SEC,
    );
    sim.answer(&c1, &sse, r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"booked"}}"#, 7 * SEC);
    assert_eq!(sim.tracker.stats().unpaired_answers, 0);
    let ended = sim.finish(8 * SEC);
    assert_eq!(
        ended[0]["primitives"],
        json!(["completions", "elicitation", "logging", "roots", "tools"])
    );
}
