//! Kernel-side loss and mis-attribution paths (issue 18, item 1), each driven end to end with
//! real processes: large TLS messages written in one `SSL_write`, a thread that dies inside a
//! blocking `SSL_read`, and plaintext HTTP in a process with a pending memory-BIO TLS write.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpwarden_tests::conversation::assert_peers_behaved;
use mcpwarden_tests::records::{assert_final_health_shows_no_loss, messages_of, outline};
use mcpwarden_tests::{
    free_port, test_env, Agent, ChildGuard, ClientOptions, PyServer, SdkClient, SelfSignedCert,
};
use serde_json::Value;

/// Runs `tests/peers/python/<script> <args>` to completion; returns its JSON stdout.
fn run_py(script: &str, args: &[&str]) -> Value {
    let env = test_env();
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python").join(script))
        .args(args);
    let shown = format!("{cmd:?}");
    let mut process = ChildGuard::spawn("python peer", &mut cmd, dir.path());
    let pid = process.pid();
    mcpwarden_tests::peers::finish_client(&mut process, &shown, pid)
}

/// The tools/call exchanges of `pid` for tool `name`: (request, response) pairs by id.
fn calls_of<'a>(records: &'a [Value], pid: u32, name: &str) -> Vec<(&'a Value, &'a Value)> {
    let messages = messages_of(records, pid);
    let requests: Vec<&Value> = messages
        .iter()
        .copied()
        .filter(|m| m["kind"] == "request" && m["method"] == "tools/call" && m["name"] == name)
        .collect();
    requests
        .into_iter()
        .map(|req| {
            let resp = messages
                .iter()
                .copied()
                .find(|m| m["kind"] == "response" && m["id"] == req["id"])
                .unwrap_or_else(|| {
                    panic!(
                        "pid {pid}: the {name} call {} has no response record; records:\n{}",
                        req["id"],
                        outline(&messages)
                    )
                });
            (req, resp)
        })
        .collect()
}

fn large_messages_over_tls(sizes: &[usize], server_flags: &[&str]) {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let server = PyServer::start_tls_with(free_port(), &cert, server_flags);
    let sizes_arg = sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cafile = cert.cert.display().to_string();
    let summary = run_py(
        "large_client.py",
        &[&server.url(), "--cafile", &cafile, "--sizes", &sizes_arg],
    );
    for (i, size) in sizes.iter().enumerate() {
        for (j, tool) in ["blob", "measure"].iter().enumerate() {
            let call = &summary["calls"][i * 2 + j];
            assert_eq!(call["tool"], *tool, "{summary}");
            assert_eq!(
                call["result_len"].as_u64(),
                Some(*size as u64),
                "the peers themselves must have exchanged the whole message: {call}"
            );
        }
    }
    let client_pid = summary["pid"].as_u64().expect("client pid") as u32;
    let records = agent.stop();
    for (side, pid) in [("client", client_pid), ("server", server.pid())] {
        for tool in ["blob", "measure"] {
            let calls = calls_of(&records, pid, tool);
            assert_eq!(
                calls.len(),
                sizes.len(),
                "{side} (pid {pid}): one {tool} request per size {sizes:?}; records:\n{}",
                outline(&messages_of(&records, pid))
            );
            for (req, resp) in calls {
                assert_eq!(resp["method"], "tools/call", "{side}: {resp}");
                assert!(
                    resp["latency_ns"].as_u64().unwrap_or(0) > 0,
                    "{side}: the response is paired with its request ({req}): {resp}"
                );
                assert_ne!(resp["is_error"], true, "{side}: {resp}");
            }
        }
    }
    // Exactly: nothing truncated, nothing unreadable, no gap in any stream.
    assert_final_health_shows_no_loss(&records);
}

/// The server answers over SSE (the SDK default): the 600 KB result is one SSE event, the
/// body chunk uvicorn hands to one `SSL_write`.
#[test]
fn a_600_kb_tool_result_and_argument_over_tls_are_reported_from_both_ends() {
    large_messages_over_tls(&[600_000], &["--large-tools"]);
}

/// JSON responses: the SDK client refuses SSE events above 1 MiB, so a 2 MB result travels
/// as one Content-Length body (again one `SSL_write`).
#[test]
fn two_megabyte_tool_results_and_arguments_over_tls_are_reported_from_both_ends() {
    large_messages_over_tls(&[2_000_000], &["--large-tools", "--json-response"]);
}

/// `/proc/sys/kernel/ns_last_pid`: the next process gets `last + 1`.
fn set_last_pid(last: u32) {
    std::fs::write("/proc/sys/kernel/ns_last_pid", last.to_string())
        .expect("cannot write /proc/sys/kernel/ns_last_pid (needs root in the init pid namespace)");
}

#[test]
fn a_thread_that_died_inside_ssl_read_does_not_silence_a_later_process_with_its_id() {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let env = test_env();
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");

    // A process whose main thread (tid == pid) blocks in SSL_read, then dies there.
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python/tls_edge.py"))
        .arg("stuck-reader")
        .arg(&cert.cert)
        .arg(&cert.key);
    let mut stuck = ChildGuard::spawn("stuck reader", &mut cmd, dir.path());
    let t0 = Instant::now();
    while !stuck.stderr().contains("\"ready\": true") {
        assert!(
            stuck.try_wait().is_none() && t0.elapsed() < Duration::from_secs(30),
            "the stuck reader did not get ready\n{}",
            stuck.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // inside recv → SSL_read_ex
    let dead_pid = stuck.pid();
    stuck.kill();

    // A plaintext MCP client that gets the same pid, so its main thread has the same id.
    let server = PyServer::start(free_port());
    let mut client = None;
    for _ in 0..20 {
        set_last_pid(dead_pid - 1);
        let c = SdkClient::spawn(&server.url(), &ClientOptions::default());
        if c.pid() == dead_pid {
            client = Some(c);
            break;
        }
        drop(c); // another process took the pid first: try again
    }
    let client = client
        .unwrap_or_else(|| panic!("could not start the client as pid {dead_pid} (20 attempts)"));
    let summary = client.finish();
    assert_peers_behaved(&summary, &server);
    let records = agent.stop();

    let sent: Vec<&str> = messages_of(&records, dead_pid)
        .iter()
        .filter(|m| m["direction"] == "client_to_server" && m["kind"] == "request")
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(
        sent,
        [
            "initialize",
            "tools/list",
            "tools/call",
            "tools/call",
            "resources/read",
            "prompts/get"
        ],
        "the client (pid {dead_pid}, same id as the thread that died in SSL_read) must be \
         captured; its records:\n{}",
        outline(&messages_of(&records, dead_pid))
    );
    let health = records
        .iter()
        .rev()
        .find(|r| r["type"] == "health")
        .expect("a final health record");
    assert!(
        health["kernel"]["tls_args_exited"].as_u64().unwrap_or(0) >= 1,
        "the dead thread's in-call entry was removed at its exit: {}",
        health["kernel"]
    );
}

#[test]
fn plaintext_http_written_while_a_memory_bio_tls_write_is_pending_is_captured() {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let tls_server = PyServer::start_tls(free_port(), &cert);
    let plain_server = PyServer::start(free_port());
    let cafile = cert.cert.display().to_string();
    let summary = run_py(
        "tls_edge.py",
        &["mixed", &tls_server.url(), &plain_server.url(), &cafile],
    );
    assert_eq!(summary["plain_status"], 200, "{summary}");
    let pid = summary["pid"].as_u64().expect("pid") as u32;
    let records = agent.stop();
    let messages = messages_of(&records, pid);
    let kinds: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or("?"),
                m["method"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("request", "initialize")) && kinds.contains(&("response", "initialize")),
        "the plaintext initialize written while the TLS write was pending must be reported \
         (request and response); records of pid {pid}:\n{}",
        outline(&messages)
    );
    let health = records
        .iter()
        .rev()
        .find(|r| r["type"] == "health")
        .expect("a final health record");
    assert!(
        health["kernel"]["tls_tie_not_record"].as_u64().unwrap_or(0) >= 1,
        "the plaintext write was seen to skip the pending tie: {}",
        health["kernel"]
    );
}
