//! A socket shared across `fork` (issue 18): each process that does I/O on it is streamed on
//! its own, and every one of their connections ends when the socket closes, not only the last
//! one the kernel saw using it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use mcpwarden_tests::agent::Agent;
use mcpwarden_tests::{free_port, test_env, PyServer};
use serde_json::Value;

fn session_end<'a>(records: &'a [Value], pid: u64, session: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "session_end" && r["pid"] == pid && r["session_id"] == session)
        .collect()
}

#[test]
fn both_processes_of_a_forked_connection_see_it_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, "close_grace_secs: 1\n").expect("write config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let server = PyServer::start(free_port());
    let agent = Agent::start(&["--config", config.to_str().unwrap_or_default()]);
    let env = test_env();
    let out = Command::new(&env.python)
        .arg(env.peers_dir.join("python/fork_shared.py"))
        .arg(server.port().to_string())
        .output()
        .expect("run fork_shared.py");
    assert!(
        out.status.success(),
        "fork_shared.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("its JSON line");
    assert!(report["tools"].as_u64().unwrap_or(0) > 0, "{report}");
    // The child lived 4 s after its close; the grace is 1 s: both sessions end on their own.
    std::thread::sleep(Duration::from_millis(1500));
    let records = agent.stop();
    let session = report["session"].as_str().unwrap_or_default();
    let (parent, child) = (
        report["parent"].as_u64().unwrap_or_default(),
        report["child"].as_u64().unwrap_or_default(),
    );
    let methods = |pid: u64| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["type"] == "message" && r["pid"] == pid)
            .filter(|r| r["direction"] == "client_to_server")
            .filter_map(|r| r["method"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(methods(child), vec!["initialize"], "the child's view");
    assert_eq!(
        methods(parent),
        vec!["notifications/initialized", "tools/list"],
        "the parent's view"
    );
    for (who, pid) in [("child", child), ("parent", parent)] {
        let ends = session_end(&records, pid, session);
        assert_eq!(ends.len(), 1, "{who}: {ends:?}");
        assert_eq!(
            ends[0]["end_reason"], "closed",
            "{who}'s session must end with the connection, not at the agent's stop: {}",
            ends[0]
        );
    }
}

/// A client that writes its requests through a `dup` of its socket and reads the answers
/// through the socket itself (a reader/writer split, like Rust's `try_clone`): its view is
/// one conversation on one connection, every answer paired with its request.
#[test]
fn a_client_writing_through_a_duplicated_fd_is_one_conversation() {
    let server = PyServer::start(free_port());
    let agent = Agent::start(&[]);
    let env = test_env();
    let out = Command::new(&env.python)
        .arg(env.peers_dir.join("python/dup_fd.py"))
        .arg(server.port().to_string())
        .output()
        .expect("run dup_fd.py");
    assert!(
        out.status.success(),
        "dup_fd.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("its JSON line");
    assert_eq!(report["sum"], "5", "{report}");
    let records = agent.stop();
    let pid = report["pid"].as_u64().unwrap_or_default();
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "message" && r["pid"] == pid)
        .collect();
    let shape: Vec<(String, String, String)> = mine
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or_default().to_string(),
                m["method"].as_str().unwrap_or("null").to_string(),
                m["id"].to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("request", "initialize", "1"),
        ("response", "initialize", "1"),
        ("notification", "notifications/initialized", "null"),
        ("request", "tools/list", "2"),
        ("response", "tools/list", "2"),
        ("request", "tools/call", "3"),
        ("response", "tools/call", "3"),
    ]
    .iter()
    .map(|(k, m, i)| (k.to_string(), m.to_string(), i.to_string()))
    .collect();
    assert_eq!(shape, want, "the client's view: {mine:#?}");
    let conns: std::collections::BTreeSet<&str> =
        mine.iter().filter_map(|m| m["conn_id"].as_str()).collect();
    assert_eq!(conns.len(), 1, "one connection: {conns:?}");
    for m in mine.iter().filter(|m| m["kind"] == "response") {
        assert!(m["latency_ns"].as_u64().unwrap_or(0) > 0, "paired: {m}");
    }
    let health = records
        .iter()
        .rev()
        .find(|r| r["type"] == "health")
        .cloned()
        .unwrap_or_default();
    assert!(
        health["conn"]["dup_fds_joined"].as_u64().unwrap_or(0) >= 1,
        "{health}"
    );
    assert_eq!(health["conn"]["dup_stream_conflicts"], 0, "{health}");
}
