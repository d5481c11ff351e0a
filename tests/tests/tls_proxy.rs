//! A TLS-terminating reverse proxy between the official Python SDK client and server, both over
//! TLS: Debian's nginx, one worker, `proxy_pass https://…` to a keep-alive upstream. The
//! worker multiplexes every client connection and its upstream connection on one thread, each
//! with its own `SSL *` (socket BIO); a freed `SSL *` address is handed to the next connection.
//! The agent must report four exact views of the one conversation: the client's, the server's,
//! and the proxy's downstream (as a server) and upstream (as a client) views, each request on
//! the connection it really travelled on, with the socket's own 4-tuple, and each answer paired.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use mcpwarden_tests::conversation::{assert_conversation, assert_peers_behaved, Expected};
use mcpwarden_tests::peers::wait_listening;
use mcpwarden_tests::records::{messages_of, outline, split_addr, str_field};
use mcpwarden_tests::{
    free_port, Agent, ChildGuard, ClientOptions, PyServer, SdkClient, SelfSignedCert,
};
use serde_json::Value;

/// nginx in the foreground with its own prefix directory; stopped (master and worker) on drop.
struct Nginx {
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(listen: u16, upstream: u16, cert: &SelfSignedCert) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-nginx-")
            .tempdir()
            .expect("temp dir");
        let p = dir.path().display().to_string();
        let conf = format!(
            "worker_processes 1;\n\
             daemon off;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
               upstream mcp {{ server 127.0.0.1:{upstream}; keepalive 8; }}\n\
               server {{\n\
                 listen 127.0.0.1:{listen} ssl;\n\
                 ssl_certificate {cert}; ssl_certificate_key {key};\n\
                 location / {{\n\
                   proxy_pass https://mcp;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header Host $http_host;\n\
                   proxy_buffering off;\n\
                 }}\n\
               }}\n\
             }}\n",
            cert = cert.cert.display(),
            key = cert.key.display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-c").arg(&conf_path).arg("-p").arg(dir.path());
        let mut process = ChildGuard::spawn("nginx", &mut cmd, dir.path());
        wait_listening(&mut process, listen, &format!("{cmd:?}"));
        Nginx { process, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker, then exits (the guard then reaps it).
        self.process.signal(libc::SIGTERM);
        let t0 = std::time::Instant::now();
        while self.process.try_wait().is_none() && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn nginx_bin() -> &'static str {
    let bin = "/usr/sbin/nginx";
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: `cargo xtask setup` installs Debian's nginx for this test"
    );
    bin
}

/// The records of one side of a process (a proxy is both).
fn side_of(records: &[Value], pid: u32, side: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| !(r["type"] == "message" && r["pid"] == pid && r["side"] != side))
        .cloned()
        .collect()
}

fn ports(records: &[Value], pid: u32, side: &str, field: &str) -> BTreeSet<u16> {
    messages_of(records, pid)
        .iter()
        .filter(|m| m["side"] == side)
        .map(|m| split_addr(str_field(m, field)).1)
        .collect()
}

#[test]
fn nginx_terminating_tls_in_front_of_the_python_sdk_is_decoded_exactly_from_all_four_views() {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let server = PyServer::start_tls(free_port(), &cert);
    let server_comm = server.comm();
    let proxy_port = free_port();
    let nginx = Nginx::start(proxy_port, server.port(), &cert);
    let url = format!("https://127.0.0.1:{proxy_port}/mcp");
    let opts = ClientOptions {
        cafile: Some(cert.cert.clone()),
        ..ClientOptions::default()
    };
    let client = SdkClient::spawn(&url, &opts);
    let client_pid = client.pid();
    let summary = client.finish();
    let session_id = assert_peers_behaved(&summary, &server);
    drop(nginx);
    let records = agent.stop();
    let all: Vec<&Value> = records.iter().collect();

    // The worker is the one nginx process that moved bytes.
    let workers: BTreeSet<u32> = records
        .iter()
        .filter(|r| r["type"] == "message" && r["comm"] == "nginx")
        .filter_map(|r| r["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    assert_eq!(workers.len(), 1, "one nginx worker: {workers:?}");
    let worker = workers.into_iter().next().unwrap_or_default();
    let client_comm = str_field(&summary, "comm").to_string();

    let views = [
        ("client", client_pid, client_comm.as_str(), proxy_port),
        ("server", server.pid(), server_comm.as_str(), server.port()),
        ("server", worker, "nginx", proxy_port),
        ("client", worker, "nginx", server.port()),
    ];
    for (side, pid, comm, server_port) in views {
        let records = side_of(&records, pid, side);
        assert_conversation(
            &records,
            &Expected {
                side,
                pid,
                comm,
                session_id,
                server_port,
                client: &summary,
            },
            &all,
        );
    }
    // Each downstream request on the connection it travelled on: the proxy's remote ports
    // are exactly the client's local ports, and its upstream local ports exactly the
    // server's remote ports.
    assert_eq!(
        ports(&records, worker, "server", "remote"),
        ports(&records, client_pid, "client", "local"),
        "nginx downstream connections = the client's connections"
    );
    assert_eq!(
        ports(&records, worker, "client", "local"),
        ports(&records, server.pid(), "server", "remote"),
        "nginx upstream connections = the server's connections"
    );
    // Nothing displaced or left unpaired anywhere.
    assert_nothing_displaced_or_unpaired(&records);
}

/// (kind, method, id) of each message, in order.
fn shape(messages: &[&Value]) -> Vec<(String, String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                str_field(m, "kind").to_string(),
                m["method"].as_str().unwrap_or("null").to_string(),
                m["id"].to_string(),
            )
        })
        .collect()
}

/// A second event-loop TLS server: node's `https` server (the official TypeScript SDK), whose
/// one thread drives every connection's `SSL *` through node's own OpenSSL and memory BIOs,
/// with three Python SDK clients talking to it at once. The server's view of each session
/// must be exactly that client's conversation, on that client's connections, every answer
/// paired.
#[test]
fn a_node_https_server_with_three_concurrent_sdk_clients_is_decoded_per_session() {
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&[]);
    let server = mcpwarden_tests::stateless::ScriptServer::node_with(
        "handshake_server.mjs",
        free_port(),
        Some(&cert),
    );
    let opts = ClientOptions {
        cafile: Some(cert.cert.clone()),
        ..ClientOptions::default()
    };
    let clients: Vec<SdkClient> = (0..3)
        .map(|_| SdkClient::spawn(&server.url(), &opts))
        .collect();
    let summaries: Vec<Value> = clients.into_iter().map(SdkClient::finish).collect();
    let records = agent.stop();
    let server_messages: Vec<&Value> = messages_of(&records, server.pid())
        .into_iter()
        .filter(|m| m["side"] == "server")
        .collect();
    let mut seen_sessions = BTreeSet::new();
    for summary in &summaries {
        let pid = summary["pid"].as_u64().expect("client pid") as u32;
        let session_id = summary["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the client saw one session id: {summary}"));
        seen_sessions.insert(session_id.to_string());
        let client_messages: Vec<&Value> = messages_of(&records, pid)
            .into_iter()
            .filter(|m| m["side"] == "client")
            .collect();
        let of_session: Vec<&Value> = server_messages
            .iter()
            .copied()
            .filter(|m| {
                m["session_id"] == session_id
                    || (m["session_id"].is_null()
                        && ports(&records, pid, "client", "local")
                            .contains(&split_addr(str_field(m, "remote")).1))
            })
            .collect();
        assert!(
            client_messages.len() >= 10,
            "client {pid}: its conversation is reported:\n{}",
            outline(&client_messages)
        );
        assert_eq!(
            shape(&of_session),
            shape(&client_messages),
            "server's view of session {session_id} = client {pid}'s view\nserver:\n{}\nclient:\n{}",
            outline(&of_session),
            outline(&client_messages)
        );
        // On that client's connections, and nowhere else.
        let server_remote: BTreeSet<u16> = of_session
            .iter()
            .map(|m| split_addr(str_field(m, "remote")).1)
            .collect();
        assert_eq!(
            server_remote,
            ports(&records, pid, "client", "local"),
            "session {session_id}: the server's remote ports are client {pid}'s local ports"
        );
        for m in of_session.iter().chain(client_messages.iter()) {
            if m["kind"] == "response" {
                assert!(
                    !m["method"].is_null() && m["latency_ns"].as_u64().unwrap_or(0) > 0,
                    "every answer is paired: {m}"
                );
            }
        }
    }
    assert_eq!(seen_sessions.len(), 3, "three sessions: {seen_sessions:?}");
    // Nothing of the server's view is left over.
    let counted: usize = summaries
        .iter()
        .map(|s| {
            server_messages
                .iter()
                .filter(|m| m["session_id"] == s["session_id"])
                .count()
        })
        .sum();
    let unnamed = server_messages
        .iter()
        .filter(|m| m["session_id"].is_null())
        .count();
    assert_eq!(
        counted + unnamed,
        server_messages.len(),
        "every server message belongs to one of the sessions:\n{}",
        outline(&server_messages)
    );
    assert_nothing_displaced_or_unpaired(&records);
}

/// The final health record shows no displaced request, unpaired answer or decode error.
fn assert_nothing_displaced_or_unpaired(records: &[Value]) {
    let health = records
        .iter()
        .rev()
        .find(|r| r["type"] == "health")
        .cloned()
        .unwrap_or_default();
    assert_eq!(health["mcp"]["replaced_pending"], 0, "{health}");
    assert_eq!(health["mcp"]["unpaired_answers"], 0, "{health}");
    assert_eq!(health["mcp"]["decode_errors"], 0, "{health}");
}
