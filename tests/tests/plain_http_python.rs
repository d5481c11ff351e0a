//! The official Python SDK (client and server, `mcp` 2.3.0) talk streamable HTTP in plain text
//! on 127.0.0.1 while the agent runs; the agent must report the conversation exactly, once
//! from the client process and once from the server process.
//!
//! Wire facts this relies on (observed with a relay, see tests/peers/python): every client
//! message is its own POST to `/mcp` with a JSON body; every request is answered with
//! `text/event-stream` (one `event: message` per response); the session id comes in the
//! `mcp-session-id` header of the initialize response and is sent on every later request; the
//! SDK's GET stream carries no message here, and leaving the client sends `DELETE /mcp`.

use mcpwarden_tests::conversation::{assert_both_sides, assert_peers_behaved};
use mcpwarden_tests::records::assert_final_health_shows_no_loss;
use mcpwarden_tests::{free_port, run_py_client, Agent, PyServer};

#[test]
fn python_sdk_conversation_over_plain_http_is_reported_exactly_from_both_sides() {
    let records = conversation(&[]);
    // And nothing was lost on the way: the agent's last record says so.
    let health = assert_final_health_shows_no_loss(&records);
    assert!(
        health["conn"]["conns_opened"].as_u64().unwrap_or(0) >= 2,
        "the final health record should count both ends' connections: {health}"
    );
}

/// The fallback capture mode (sys_enter/sys_exit tracepoints) reports the same, exactly.
#[test]
fn the_syscall_capture_mode_reports_the_same_conversation_exactly() {
    conversation(&["--capture-mode", "syscalls"]);
}

/// Runs the conversation, asserts it was reported exactly, and returns every record.
fn conversation(agent_args: &[&str]) -> Vec<serde_json::Value> {
    let agent = Agent::start(agent_args);
    let server = PyServer::start(free_port());
    let server_comm = server.comm();

    let client = run_py_client(&server.url());

    let session_id = assert_peers_behaved(&client, &server);
    let records = agent.stop();
    assert_both_sides(
        &records,
        &client,
        session_id,
        server.pid(),
        &server_comm,
        server.port(),
    );
    records
}
