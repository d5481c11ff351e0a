//! OTLP: the agent exports one span per paired request (and per session) of a real Python SDK
//! conversation to an OTLP/HTTP receiver, with the MCP semantic conventions' attributes.

use std::time::Duration;

use mcpwarden_tests::collector::{span_attr, wait_until};
use mcpwarden_tests::{free_port, run_py_client, Agent, OtlpReceiver, PyServer};

#[test]
fn spans_of_a_python_sdk_conversation_follow_the_mcp_conventions() {
    let receiver = OtlpReceiver::start();
    let otlp = format!("http://127.0.0.1:{}", receiver.port);
    let agent = Agent::start(&["--otlp", &otlp]);
    let server = PyServer::start(free_port());
    let client = run_py_client(&server.url());
    agent.stop();
    wait_until("spans arrive", Duration::from_secs(10), || {
        !receiver.spans().is_empty()
    });
    let spans = receiver.spans();
    let session_id = client["session_id"].as_str().expect("session id");
    // The agent sees the whole host: keep the spans of our two processes.
    let ours = [server.pid().to_string(), client["pid"].to_string()];
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| span_attr(s, "process.pid").is_some_and(|p| ours.contains(&p)))
        .collect();
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| span_attr(s, "mcp.method.name").as_deref() == Some("tools/call"))
        .collect();
    assert!(!calls.is_empty(), "no tools/call span in {spans:#?}");
    // Seen from both ends: a CLIENT span (sender) and a SERVER span (receiver).
    let kinds: Vec<i64> = calls.iter().filter_map(|s| s["kind"].as_i64()).collect();
    assert!(kinds.contains(&2) && kinds.contains(&3), "kinds {kinds:?}");
    for s in &calls {
        let tool = span_attr(s, "gen_ai.tool.name").expect("gen_ai.tool.name");
        assert_eq!(s["name"], format!("tools/call {tool}"));
        assert_eq!(
            span_attr(s, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert!(span_attr(s, "jsonrpc.request.id").is_some());
        assert_eq!(
            span_attr(s, "mcp.session.id").as_deref(),
            Some(session_id),
            "{s}"
        );
        assert!(span_attr(s, "mcp.protocol.version").is_some(), "{s}");
        assert_eq!(
            span_attr(s, "network.protocol.name").as_deref(),
            Some("http")
        );
        let start: u64 = s["startTimeUnixNano"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let end: u64 = s["endTimeUnixNano"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        assert!(start > 1_600_000_000_000_000_000 && end >= start, "{s}");
        if s["kind"] == 3 {
            assert_eq!(
                span_attr(s, "server.port"),
                Some(server.port().to_string()),
                "{s}"
            );
        } else {
            assert_eq!(span_attr(s, "client.address").as_deref(), Some("127.0.0.1"));
        }
    }
    assert!(
        spans.iter().any(|s| s["name"] == "mcp session"
            && span_attr(s, "mcp.session.id").as_deref() == Some(session_id)),
        "no session span"
    );
}
