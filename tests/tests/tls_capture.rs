//! TLS plaintext capture with the official SDKs over HTTPS (uvicorn terminates TLS with
//! a throwaway self-signed certificate; the client trusts it). Both peers use OpenSSL through
//! Python's `ssl` module (libssl.so.3, `SSL_read_ex`/`SSL_write_ex`, memory BIOs under
//! asyncio): the agent must decode the same conversation as over plain HTTP, from both
//! processes, with the 4-tuples of the real sockets.

use std::collections::BTreeSet;

use mcpwarden_tests::conversation::{
    assert_both_sides, assert_conversation, assert_peers_behaved, assert_session_end, Expected,
};
use mcpwarden_tests::records::{messages_of, split_addr, str_field};
use mcpwarden_tests::{free_port, Agent, ClientOptions, PyServer, SdkClient, SelfSignedCert};
use serde_json::Value;

/// Every (client port) seen by the client process must be a (remote port) seen by the server
/// process for the same connection, and the other way round: the tuples are the real sockets'.
fn assert_tuples_pair_up(records: &[Value], client_pid: u32, server_pid: u32, port: u16) {
    let client_ports: BTreeSet<u16> = messages_of(records, client_pid)
        .iter()
        .map(|m| split_addr(str_field(m, "local")).1)
        .collect();
    let server_peer_ports: BTreeSet<u16> = messages_of(records, server_pid)
        .iter()
        .map(|m| split_addr(str_field(m, "remote")).1)
        .collect();
    assert!(!client_ports.is_empty(), "no client records");
    assert!(
        !client_ports.contains(&port),
        "the client's own port cannot be the server's"
    );
    assert_eq!(
        client_ports, server_peer_ports,
        "the client's local ports must be exactly the server's remote ports"
    );
}

fn https_conversation(opts: ClientOptions, start_agent_after_initialize: bool) {
    https_conversation_with(opts, start_agent_after_initialize, &[]);
}

fn https_conversation_with(
    opts: ClientOptions,
    start_agent_after_initialize: bool,
    agent_args: &[&str],
) {
    let cert = SelfSignedCert::generate();
    let mut agent = None;
    if !start_agent_after_initialize {
        agent = Some(Agent::start_with_env(
            agent_args,
            &[("MCPWARDEN_LOG", "mcpwarden::capture::tls=info")],
        ));
    }
    let server = PyServer::start_tls(free_port(), &cert);
    let server_comm = server.comm();
    let opts = ClientOptions {
        cafile: Some(cert.cert.clone()),
        pause_after_initialize: start_agent_after_initialize,
        ..opts
    };
    let mut client = SdkClient::spawn(&server.url(), &opts);
    if opts.pause_before_start {
        // The client has mapped its libssl; wait until the agent attached to the file this
        // process maps (in its own mount namespace), then let it connect.
        client.wait_ready();
        let needle = format!("/proc/{}/root", client.pid());
        let agent = agent.as_ref().expect("agent started");
        let t0 = std::time::Instant::now();
        while !agent.stderr().contains(&needle) {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(15),
                "the agent did not attach to the client's own libssl ({needle}/...) within 15 s\n\
                 --- agent stderr ---\n{}",
                agent.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        client.start();
    }
    if start_agent_after_initialize {
        client.wait_initialized();
        agent = Some(Agent::start(agent_args));
        client.resume();
    }
    let client_pid = client.pid();
    let summary = client.finish();
    let session_id = assert_peers_behaved(&summary, &server);
    let records = agent.expect("agent started").stop();
    if start_agent_after_initialize {
        check_later_calls(&records, client_pid, server.pid(), session_id);
    } else {
        assert_both_sides(
            &records,
            &summary,
            session_id,
            server.pid(),
            &server_comm,
            server.port(),
        );
    }
    assert_tuples_pair_up(&records, client_pid, server.pid(), server.port());
}

/// The agent started after initialize: the calls that followed are reported, from both sides,
/// in order, in the session the client had already opened.
fn check_later_calls(records: &[Value], client_pid: u32, server_pid: u32, session_id: &str) {
    for (side, pid) in [("client", client_pid), ("server", server_pid)] {
        let sent: Vec<(String, String)> = messages_of(records, pid)
            .iter()
            .filter(|m| m["direction"] == "client_to_server" && m["kind"] == "request")
            .map(|m| {
                assert_eq!(m["session_id"], session_id, "{side}: session of {m}");
                (
                    str_field(m, "method").to_string(),
                    m["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            ("tools/list", ""),
            ("tools/call", "add"),
            ("tools/call", "fail"),
            ("resources/read", "config://app"),
            ("prompts/get", "greet"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(
            sent, want,
            "{side} (pid {pid}): requests made after the agent started"
        );
        let answered = messages_of(records, pid)
            .iter()
            .filter(|m| m["kind"] == "response" && m["latency_ns"].as_u64().unwrap_or(0) > 0)
            .count();
        assert_eq!(
            answered, 5,
            "{side}: each later request paired with its response"
        );
    }
}

#[test]
fn python_sdk_over_https_is_decoded_from_client_and_server_with_real_tuples() {
    https_conversation(ClientOptions::default(), false);
}

#[test]
fn https_in_the_syscall_capture_mode_is_decoded_the_same() {
    https_conversation_with(
        ClientOptions::default(),
        false,
        &["--capture-mode", "syscalls"],
    );
}

#[test]
fn a_client_that_initialized_before_the_agent_started_has_its_later_calls_captured() {
    https_conversation(ClientOptions::default(), true);
}

#[test]
fn a_client_in_another_mount_namespace_with_its_own_libssl_is_captured() {
    // The client runs in a new mount namespace where libssl.so.3 is a bind-mounted private
    // copy (another inode): the agent must find it through /proc/PID/root and attach to it.
    let copy_dir = tempfile::tempdir().expect("tempdir for the libssl copy");
    let lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
    let copy = copy_dir.path().join("libssl.so.3");
    std::fs::copy(lib, &copy).expect("cannot copy libssl.so.3");
    let script = format!("mount --bind {} {lib} && exec \"$@\"", copy.display());
    let opts = ClientOptions {
        wrapper: vec![
            "unshare".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
        ],
        pause_before_start: true,
        ..ClientOptions::default()
    };
    https_conversation(opts, false);
}

#[test]
fn typescript_sdk_client_on_node_over_https_is_decoded_from_both_sides() {
    // node carries its own OpenSSL and exports SSL_read/SSL_write from the executable.
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let server = PyServer::start_tls(free_port(), &cert);
    let server_comm = server.comm();
    let summary = mcpwarden_tests::run_node_client(
        "conversation_client.mjs",
        &server.url(),
        &[("NODE_EXTRA_CA_CERTS", cert.cert.as_os_str())],
    );
    let session_id = assert_peers_behaved(&summary, &server);
    let records = agent.stop();
    assert_both_sides(
        &records,
        &summary,
        session_id,
        server.pid(),
        &server_comm,
        server.port(),
    );
    let client_pid = summary["pid"].as_u64().expect("client pid") as u32;
    assert_tuples_pair_up(&records, client_pid, server.pid(), server.port());
}

#[test]
fn a_node_keep_alive_tls_connection_opened_before_the_agent_is_captured() {
    // node's fetch keeps its TLS connection alive: the calls after the pause travel on the
    // connection (and SSL*) that existed before the agent started.
    let cert = SelfSignedCert::generate();
    let server = PyServer::start_tls(free_port(), &cert);
    let mut client = SdkClient::spawn_node(
        &server.url(),
        &ClientOptions {
            cafile: Some(cert.cert.clone()),
            pause_after_initialize: true,
            ..ClientOptions::default()
        },
    );
    client.wait_initialized();
    let agent = Agent::start(&[]);
    client.resume();
    let client_pid = client.pid();
    let summary = client.finish();
    let session_id = assert_peers_behaved(&summary, &server);
    let records = agent.stop();
    // The premise: node reused its keep-alive connections (opened for initialize and the
    // initialized notification, before the agent ran) instead of opening one per call.
    let conns: BTreeSet<&str> = messages_of(&records, client_pid)
        .iter()
        .map(|m| str_field(m, "conn_id"))
        .collect();
    assert!(
        conns.len() <= 2,
        "node should reuse its keep-alive TLS connections for the 5 later calls, used {conns:?}"
    );
    check_later_calls(&records, client_pid, server.pid(), session_id);
    assert_tuples_pair_up(&records, client_pid, server.pid(), server.port());
}

/// `--tls-processes node`: the node client gets the TLS uprobes of its own, bound to it;
/// the Python server, which maps another OpenSSL, gets none. The client's whole conversation
/// is reported exactly as without the flag; nothing of the server's (its TLS calls never
/// reach a program). The health records count the one process attached, and its uprobes
/// detached once it has exited.
#[test]
fn with_tls_processes_only_the_named_program_is_probed() {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&["--tls-processes", "node", "--health-interval", "1"]);
    let server = PyServer::start_tls(free_port(), &cert);
    let summary = mcpwarden_tests::run_node_client(
        "conversation_client.mjs",
        &server.url(),
        &[("NODE_EXTRA_CA_CERTS", cert.cert.as_os_str())],
    );
    let session_id = assert_peers_behaved(&summary, &server);
    // The client has exited: its uprobes are detached within 5 s (a health record a second).
    let output = agent.dir().join("records.jsonl");
    let t0 = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let detached = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["type"] == "health")
            .any(|h| h["kernel"]["tls_processes_detached"] == 1);
        if detached {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "no health record counted the exited client's uprobes detached within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let records = agent.stop();
    let client_pid = summary["pid"].as_u64().expect("client pid") as u32;
    let client = Expected {
        side: "client",
        pid: client_pid,
        comm: str_field(&summary, "comm"),
        session_id,
        server_port: server.port(),
        client: &summary,
    };
    let health = assert_one_process_probed(
        &records,
        &client,
        server.pid(),
        "the server is not a named program: none of its TLS calls may be seen",
    );
    assert_eq!(health["kernel"]["tls_processes_detached"], 1, "{health}");
}

/// A run with TLS uprobes on one process: `seen`'s whole conversation, nothing of
/// `unseen_pid`, no loss, that one process attached and none refused. Returns the final
/// health record.
fn assert_one_process_probed(
    records: &[Value],
    seen: &Expected,
    unseen_pid: u32,
    why_unseen: &str,
) -> Value {
    let all: Vec<&Value> = records.iter().collect();
    assert_conversation(records, seen, &all);
    assert_session_end(records, seen);
    assert_eq!(
        messages_of(records, unseen_pid),
        Vec::<&Value>::new(),
        "{why_unseen}"
    );
    let health = mcpwarden_tests::records::assert_final_health_shows_no_loss(records);
    assert_eq!(
        health["kernel"]["tls_processes_attached"], 1,
        "one process (the {}) attached: {health}",
        seen.side
    );
    assert_eq!(health["kernel"]["tls_processes_over_limit"], 0, "{health}");
    health.clone()
}

/// `--pid` attaches the TLS uprobes to that process alone, as `--tls-processes` does: the
/// Python server's pid is given, and its whole conversation is reported; the node client,
/// whose own OpenSSL would have been attached per file before, is neither probed nor seen.
#[test]
fn with_pid_only_that_process_is_probed() {
    let cert = SelfSignedCert::generate();
    let server = PyServer::start_tls(free_port(), &cert);
    let server_pid = server.pid().to_string();
    let agent = Agent::start(&["--pid", &server_pid]);
    let summary = mcpwarden_tests::run_node_client(
        "conversation_client.mjs",
        &server.url(),
        &[("NODE_EXTRA_CA_CERTS", cert.cert.as_os_str())],
    );
    let session_id = assert_peers_behaved(&summary, &server);
    let records = agent.stop();
    let expected = Expected {
        side: "server",
        pid: server.pid(),
        comm: &server.comm(),
        session_id,
        server_port: server.port(),
        client: &summary,
    };
    let client_pid = summary["pid"].as_u64().expect("client pid") as u32;
    assert_one_process_probed(
        &records,
        &expected,
        client_pid,
        "only the server's pid was given",
    );
}
