//! The agent as a node agent: it keeps only the documented capabilities after attach, its
//! metrics move with real traffic, and records say which cgroup and container a client is in.

use std::time::Duration;

use mcpwarden_tests::policy::{outcomes, run_policy_client, PolicyServer, Sdk};
use mcpwarden_tests::records::messages_of;
use mcpwarden_tests::{free_port, Agent, ClientOptions, PyServer, SdkClient};
use serde_json::{json, Value};

/// Capability numbers (linux/capability.h) the agent keeps after attach on this kernel when it
/// enforces a policy (`reset` by default: CAP_SYS_NICE raises the event loop's priority) or
/// monitors with its catch-up priority (`--catch-up-nice`, on by default).
const KEPT: &[(u32, &str)] = &[
    (2, "CAP_DAC_READ_SEARCH"),
    (5, "CAP_KILL"),
    (12, "CAP_NET_ADMIN"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (23, "CAP_SYS_NICE"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

fn cap_set(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/PID/status:\n{status}"))
}

/// The agent's capability sets are exactly `kept` (effective, permitted, bounding), with no
/// inheritable or ambient ones.
fn assert_capabilities(agent: &Agent, kept: &[&(u32, &str)]) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .unwrap_or_else(|e| panic!("cannot read the agent's status: {e}"));
    let want: u64 = kept.iter().map(|(bit, _)| 1u64 << bit).sum();
    for field in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let got = cap_set(&status, field);
        let extra: Vec<u32> = (0..64).filter(|b| got & !want & (1 << b) != 0).collect();
        let missing: Vec<&str> = kept
            .iter()
            .filter(|(b, _)| got & (1 << b) == 0)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(
            got, want,
            "{field} of the agent: extra capability bits {extra:?}, missing {missing:?}"
        );
    }
    assert_eq!(cap_set(&status, "CapInh:"), 0);
    assert_eq!(cap_set(&status, "CapAmb:"), 0);
}

#[test]
fn after_attach_the_agent_holds_only_the_documented_capabilities() {
    // Enforcing the README's minimal policy: every documented capability.
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n",
    )
    .expect("write policy");
    let enforcing = Agent::start(&["--policy", policy.to_str().expect("utf-8 path")]);
    assert_capabilities(&enforcing, &KEPT.iter().collect::<Vec<_>>());
    drop(enforcing.stop());
    // Monitoring (no policy) keeps CAP_SYS_NICE for its catch-up priority (raised only
    // while behind the ring)...
    let monitoring = Agent::start(&[]);
    assert_capabilities(&monitoring, &KEPT.iter().collect::<Vec<_>>());
    drop(monitoring.stop());
    // ...and without it (`--catch-up-nice 0`) nothing needs CAP_SYS_NICE.
    let agent = Agent::start(&["--catch-up-nice", "0"]);
    let monitor: Vec<_> = KEPT.iter().filter(|(b, _)| *b != 23).collect();
    assert_capabilities(&agent, &monitor);
    // Still working with what it kept: a TLS-free conversation is reported.
    let server = PyServer::start(free_port());
    let client = mcpwarden_tests::run_py_client(&server.url());
    let records = agent.stop();
    let pid = client["pid"].as_u64().unwrap_or(0) as u32;
    assert!(
        messages_of(&records, pid).len() >= 10,
        "{}",
        mcpwarden_tests::records::outline(&messages_of(&records, pid))
    );
}

fn scrape(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot reach the metrics endpoint: {e}"));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn metric(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0, |v| v as u64)
}

#[test]
fn metrics_move_with_an_sdk_conversation_and_health_endpoints_answer() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(&["--metrics-addr", &addr]);
    assert_eq!(scrape(port, "/healthz").0, 200);
    assert_eq!(scrape(port, "/readyz").0, 200);
    let (_, before) = scrape(port, "/metrics");
    let server = PolicyServer::start(free_port(), None, false);
    let script = json!([[{"op": "call", "tool": "add", "args": {"a": 1, "b": 2}},
                         {"op": "call", "tool": "fail", "args": {"reason": "x"}}]]);
    let client = run_policy_client(Sdk::Python, &server.url(), &script, None);
    assert_eq!(outcomes(&client), vec![vec!["ok", "tool_error"]]);
    // Stage counters are read every second.
    std::thread::sleep(Duration::from_millis(2500));
    let (code, after) = scrape(port, "/metrics");
    assert_eq!(code, 200);
    let records = agent.stop();
    let messages = records.iter().filter(|r| r["type"] == "message").count() as u64;
    let series = "mcpwarden_records_total{type=\"message\"}";
    assert_eq!(metric(&before, series), 0, "{before}");
    assert_eq!(metric(&after, series), messages, "{after}");
    let decoded = "mcpwarden_mcp_events_total{counter=\"messages\"}";
    assert_eq!(metric(&after, decoded), messages, "{after}");
    assert!(
        metric(
            &after,
            "mcpwarden_conn_events_total{counter=\"conns_opened\"}"
        ) >= 2
    );
    assert_eq!(
        metric(
            &after,
            "mcpwarden_conn_events_total{counter=\"http_errors\"}"
        ),
        0
    );
    assert!(
        after.contains("mcpwarden_kernel_events_total{counter="),
        "{after}"
    );
}

/// A cgroup made by the test at a containerd-style (Kubernetes) path, removed on drop.
struct TestCgroup {
    dirs: Vec<std::path::PathBuf>,
}

impl TestCgroup {
    fn make(relative: &str) -> TestCgroup {
        let root = cgroup2_mount();
        let mut dirs = Vec::new();
        let mut cur = root;
        for part in relative.trim_start_matches('/').split('/') {
            cur = cur.join(part);
            if !cur.exists() {
                std::fs::create_dir(&cur)
                    .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", cur.display()));
                dirs.push(cur.clone());
            }
        }
        TestCgroup { dirs }
    }

    fn enter(&self, pid: u32) {
        let leaf = self.dirs.last().expect("a cgroup path");
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {}: {e}", leaf.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Where cgroup2 is mounted (hybrid hosts: `/sys/fs/cgroup/unified`).
fn cgroup2_mount() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("no cgroup2 mount on this host")
}

#[test]
fn a_client_in_a_containerd_style_cgroup_is_named_by_cgroup_and_container_id() {
    let id = "5d1b0cf2a9e84a6bb7a1c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    let path = format!("/kubepods/besteffort/pod4f7c0a1e-e2e0-4d11-9c55-aa00bb11cc22/{id}");
    let cgroup = TestCgroup::make(&path);
    let agent = Agent::start(&[]);
    let server = PyServer::start(free_port());
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_before_start: true,
            ..ClientOptions::default()
        },
    );
    client.wait_ready();
    cgroup.enter(client.pid());
    client.start();
    let summary = client.finish();
    let records = agent.stop();
    let pid = summary["pid"].as_u64().unwrap_or(0) as u32;
    let msgs = messages_of(&records, pid);
    assert!(!msgs.is_empty());
    for m in &msgs {
        assert_eq!(m["cgroup"], json!(path), "{m}");
        assert_eq!(m["container_id"], json!(id), "{m}");
        assert_eq!(m["uid"], json!(0));
        assert!(
            m["exe"].as_str().is_some_and(|e| e.contains("python")),
            "{m}"
        );
    }
    // The server runs on the host, in no container; both ends name each other.
    let server_msgs = messages_of(&records, server.pid());
    assert!(server_msgs.iter().all(|m| m.get("container_id").is_none()));
    assert!(
        server_msgs.iter().all(|m| m["peer_pid"] == json!(pid)),
        "{:?}",
        server_msgs
            .iter()
            .map(|m| &m["peer_pid"])
            .collect::<Vec<&Value>>()
    );
    let ends: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "session_end" && r["pid"] == json!(pid))
        .collect();
    assert_eq!(ends[0]["container_id"], json!(id));
}
