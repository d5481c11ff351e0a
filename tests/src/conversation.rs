//! The Python SDK peers' scripted conversation (tests/peers/python/client.py) and the exact
//! records the agent must report for it, from the client side and from the server side. Shared
//! by the plain-HTTP and the TLS end-to-end tests.

use crate::records::{
    bool_field, messages_of, outline, session_ends_of, split_addr, str_field, u64_field,
};
use serde_json::{json, Value};

use crate::peers::PyServer;

/// Client-to-server requests and notifications, in the order the client peer sends them.
pub const CONVERSATION: &[(&str, &str)] = &[
    ("request", "initialize"),
    ("notification", "notifications/initialized"),
    ("request", "tools/list"),
    ("request", "tools/call"),
    ("request", "tools/call"),
    ("request", "resources/read"),
    ("request", "prompts/get"),
];

/// What one side must have seen.
pub struct Expected<'a> {
    pub side: &'a str,
    pub pid: u32,
    pub comm: &'a str,
    pub session_id: &'a str,
    pub server_port: u16,
    pub client: &'a Value,
}

/// The peers themselves behaved as scripted (a failure here is about the peers, not the
/// agent); returns the session id both saw.
pub fn assert_peers_behaved<'a>(client: &'a Value, server: &PyServer) -> &'a str {
    let session_id = client["session_id"].as_str().unwrap_or_else(|| {
        panic!("the client peer should have seen exactly one mcp-session-id, summary: {client}")
    });
    assert_eq!(
        server.session_ids(),
        [session_id],
        "the server peer should have handed out exactly the session id the client saw; \
         server responses: {:?}",
        server.responses()
    );
    assert_eq!(
        client["tools"],
        json!(["add", "fail"]),
        "client summary: {client}"
    );
    assert_eq!(
        client["add"]["text"],
        json!(["5"]),
        "client summary: {client}"
    );
    assert_eq!(
        client["fail"]["is_error"],
        json!(true),
        "client summary: {client}"
    );
    session_id
}

/// The whole check: the conversation seen exactly once from the client process and once from
/// the server process, each with its session summary.
pub fn assert_both_sides(
    records: &[Value],
    client: &Value,
    session_id: &str,
    server_pid: u32,
    server_comm: &str,
    server_port: u16,
) {
    let client_pid = u64_field(client, "pid") as u32;
    let client_comm = str_field(client, "comm");
    let all: Vec<&Value> = records.iter().collect();
    for expected in [
        Expected {
            side: "client",
            pid: client_pid,
            comm: client_comm,
            session_id,
            server_port,
            client,
        },
        Expected {
            side: "server",
            pid: server_pid,
            comm: server_comm,
            session_id,
            server_port,
            client,
        },
    ] {
        assert_conversation(records, &expected, &all);
        assert_session_end(records, &expected);
    }
}

pub fn assert_conversation(records: &[Value], want: &Expected, all: &[&Value]) {
    let side = want.side;
    let messages = messages_of(records, want.pid);
    assert!(
        !messages.is_empty(),
        "{side} (pid {}): want the conversation's message records, got none; all records:\n{}",
        want.pid,
        outline(all)
    );
    let context = || format!("{side} (pid {}) records:\n{}", want.pid, outline(&messages));

    // Who, where, and that everything belongs to the one session.
    for m in &messages {
        assert_eq!(str_field(m, "side"), side, "side of {m}\n{}", context());
        assert_eq!(str_field(m, "comm"), want.comm, "comm of {m}");
        assert!(!bool_field(m, "batch"), "no batches were sent: {m}");
        let (local_ip, local_port) = split_addr(str_field(m, "local"));
        let (remote_ip, remote_port) = split_addr(str_field(m, "remote"));
        assert_eq!(local_ip, "127.0.0.1", "local address of {m}");
        assert_eq!(remote_ip, "127.0.0.1", "remote address of {m}");
        if side == "server" {
            assert_eq!(local_port, want.server_port, "server's local port in {m}");
            assert_ne!(remote_port, want.server_port, "client's port in {m}");
        } else {
            assert_eq!(remote_port, want.server_port, "client's remote port in {m}");
            assert_ne!(local_port, want.server_port, "client's local port in {m}");
        }
        let is_initialize_request = m["kind"] == "request" && m["method"] == "initialize";
        if is_initialize_request {
            // The id is only handed out in the answer to this request.
            assert!(
                m["session_id"].is_null() || m["session_id"] == want.session_id,
                "the initialize request may carry no session id yet, or the real one \
                 ({}): {m}",
                want.session_id
            );
        } else {
            assert_eq!(
                m["session_id"],
                want.session_id,
                "every record after the initialize request belongs to session {}: {m}\n{}",
                want.session_id,
                context()
            );
        }
    }

    // The client's requests and notifications, exactly and in order.
    let sent: Vec<&Value> = messages
        .iter()
        .copied()
        .filter(|m| m["direction"] == "client_to_server")
        .collect();
    let got: Vec<(&str, &str)> = sent
        .iter()
        .map(|m| (str_field(m, "kind"), str_field(m, "method")))
        .collect();
    assert_eq!(
        got,
        CONVERSATION,
        "{side}: client_to_server (kind, method) in order\n{}",
        context()
    );
    let names: Vec<Option<&str>> = sent.iter().map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            None,
            None,
            None,
            Some("add"),
            Some("fail"),
            Some("config://app"),
            Some("greet")
        ],
        "{side}: `name` (tools/call and prompts/get: params.name, resources/read: params.uri)\n{}",
        context()
    );
    for m in &sent {
        assert_eq!(str_field(m, "era"), "handshake", "{m}");
        assert_eq!(str_field(m, "http_method"), "POST", "{m}");
        assert_eq!(str_field(m, "http_path"), "/mcp", "{m}");
        assert_eq!(str_field(m, "transport"), "json", "{m}");
    }

    // Exactly one answer per request, paired by id, and nothing else from the server.
    let answers: Vec<&Value> = messages
        .iter()
        .copied()
        .filter(|m| m["direction"] == "server_to_client")
        .collect();
    let requests: Vec<&Value> = sent
        .iter()
        .copied()
        .filter(|m| m["kind"] == "request")
        .collect();
    assert_eq!(
        answers.len(),
        requests.len(),
        "{side}: want exactly one server_to_client record per request (no errors, no \
         server-initiated messages)\n{}",
        context()
    );
    let mut tool_calls = Vec::new();
    for request in &requests {
        let id = &request["id"];
        assert!(!id.is_null(), "{side}: request without id: {request}");
        let matching: Vec<&&Value> = answers.iter().filter(|a| a["id"] == *id).collect();
        assert_eq!(
            matching.len(),
            1,
            "{side}: want exactly one answer with id {id} to {request}\n{}",
            context()
        );
        let answer = matching[0];
        assert_eq!(
            str_field(answer, "kind"),
            "response",
            "{side}: {request} should be answered by a response, got {answer}"
        );
        assert_eq!(
            answer["method"], request["method"],
            "{side}: the answer carries its request's method: {answer}"
        );
        assert_eq!(
            answer["name"], request["name"],
            "{side}: the answer carries its request's name: {answer}"
        );
        assert!(
            u64_field(answer, "latency_ns") > 0,
            "{side}: want latency_ns > 0 on {answer}"
        );
        assert_eq!(u64_field(answer, "http_status"), 200, "{answer}");
        assert_eq!(
            str_field(answer, "transport"),
            "sse",
            "the Python SDK answers requests with text/event-stream: {answer}"
        );
        if request["method"] == "tools/call" {
            tool_calls.push((str_field(request, "name"), bool_field(answer, "tool_error")));
        } else {
            assert!(!bool_field(answer, "tool_error"), "{answer}");
        }
        if bool_field(answer, "tool_error") {
            assert_eq!(
                answer["error_message"], want.client["fail"]["text"][0],
                "{side}: a tool error's error_message is the result's first text: {answer}"
            );
        } else {
            assert!(
                answer.get("error_message").is_none(),
                "{side}: no error_message on a successful answer: {answer}"
            );
        }
    }
    assert_eq!(
        tool_calls,
        [("add", false), ("fail", true)],
        "{side}: (tool name, tool_error) of the two tools/call exchanges\n{}",
        context()
    );
}

pub fn assert_session_end(records: &[Value], want: &Expected) {
    let side = want.side;
    let ends = session_ends_of(records, want.pid, want.session_id);
    assert_eq!(
        ends.len(),
        1,
        "{side} (pid {}): want one session_end for session {}, got {}; all session_end \
         records: {:?}",
        want.pid,
        want.session_id,
        ends.len(),
        records
            .iter()
            .filter(|r| r["type"] == "session_end")
            .collect::<Vec<_>>()
    );
    let end = ends[0];
    let client = want.client;
    assert_eq!(str_field(end, "side"), side, "{end}");
    assert_eq!(str_field(end, "comm"), want.comm, "{end}");
    assert_eq!(
        str_field(end, "end_reason"),
        "delete",
        "the client sent DELETE: {end}"
    );
    // The client peer records these from its own clientInfo and the InitializeResult.
    for field in [
        "client_name",
        "client_version",
        "server_name",
        "server_version",
        "protocol_version",
    ] {
        assert_eq!(
            end[field], client[field],
            "{side}: session_end {field} should be what the SDK reports ({}): {end}",
            client[field]
        );
    }
    assert_eq!(
        str_field(end, "server"),
        format!("127.0.0.1:{}/mcp", want.server_port),
        "{side}: session_end server is the endpoint ip:port/path: {end}"
    );
    assert_eq!(str_field(end, "grouping"), "session_header", "{end}");
    assert_eq!(str_field(end, "status"), "ended", "{end}");
    assert_eq!(end["tools"], json!(["add", "fail"]), "{side}: tools: {end}");
    assert_eq!(end["attacks"], json!([]), "{side}: attacks: {end}");
    for (field, count) in [
        ("requests", 6),
        ("notifications", 1),
        ("responses", 6),
        ("errors", 0),
    ] {
        assert_eq!(
            u64_field(end, field),
            count,
            "{side}: session_end {field}: {end}"
        );
    }
    // Sorted and unique, requests and notifications.
    let mut methods: Vec<&str> = CONVERSATION.iter().map(|(_, method)| *method).collect();
    methods.sort_unstable();
    methods.dedup();
    assert_eq!(
        end["methods"],
        json!(methods),
        "{side}: session_end methods: {end}"
    );
    let started = u64_field(end, "started_ns");
    let ended = u64_field(end, "ended_ns");
    assert!(
        ended > started,
        "{side}: session ends after it starts: {end}"
    );
    assert_eq!(
        u64_field(end, "duration_ns"),
        ended - started,
        "{side}: duration_ns = ended_ns - started_ns: {end}"
    );
}
