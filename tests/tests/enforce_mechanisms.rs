//! The enforcement mechanisms against real processes: SOCK_DESTROY of a loopback
//! connection, the reactive reset, the pre-execution hold of a Python TLS client (memory BIO
//! under asyncio, and two threads with socket BIOs held at once), human approval through the
//! control socket, and the connect-time block. The verdicts come from a test judge by tool
//! name (`mcpwarden_tests::enforce_driver`); everything else is the agent's code.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mcpwarden::control::ControlRequest;
use mcpwarden::enforce::sock_destroy::SockDestroyer;
use mcpwarden::enforce::{EnforceMode, VerdictHints};
use mcpwarden_tests::enforce_driver::{by_name, Collected, Driver};
use mcpwarden_tests::{free_port, test_env, ChildGuard, SelfSignedCert};
use serde_json::Value;

#[test]
fn sock_destroy_aborts_the_local_end_and_resets_the_peer() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"hello").expect("write");
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).expect("read");
    let mut d = SockDestroyer::new().expect("netlink sock_diag");
    let (local, remote) = (
        client.local_addr().expect("local"),
        client.peer_addr().expect("peer"),
    );
    d.destroy(local, remote).expect("SOCK_DESTROY");
    let e = client
        .read(&mut buf)
        .expect_err("the destroyed socket must fail");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNABORTED), "local end: {e}");
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let e = server
        .read(&mut buf)
        .expect_err("the peer must see a reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "peer: {e}");
    // The same tuple again: gone.
    assert!(matches!(
        d.destroy(local, remote),
        Err(mcpwarden::enforce::sock_destroy::DestroyError::NotFound { .. })
    ));
    // The server's end of the connection is gone too (the reset closed it): its tuple must
    // not fall back to the listening socket on the same port (the kernel's lookup would).
    let server_end = (
        server.local_addr().expect("local"),
        server.peer_addr().unwrap_or(local),
    );
    assert!(matches!(
        d.destroy(server_end.0, server_end.1),
        Err(mcpwarden::enforce::sock_destroy::DestroyError::NotFound { .. })
    ));
    listener.set_nonblocking(false).expect("blocking listener");
    let again = TcpStream::connect(listener.local_addr().expect("addr"));
    assert!(again.is_ok(), "the listener survived: {again:?}");
    assert!(listener.accept().is_ok(), "the listener still accepts");
}

struct Peers {
    server: ChildGuard,
    log: std::path::PathBuf,
    port: u16,
    _cert: Option<SelfSignedCert>,
    _dir: tempfile::TempDir,
}

fn start_server(tls: bool) -> Peers {
    let env = test_env();
    let dir = tempfile::Builder::new()
        .prefix("mcpwarden-enforce-peers-")
        .tempdir()
        .expect("tempdir");
    let log = dir.path().join("server.log");
    let port = free_port();
    let cert = tls.then(SelfSignedCert::generate);
    let script = env.peers_dir.join("enforce/jsonrpc_server.py");
    let mut cmd = Command::new(&env.python);
    cmd.arg(&script).arg(port.to_string()).arg(&log);
    if let Some(c) = &cert {
        cmd.arg(&c.cert).arg(&c.key);
    }
    let server = ChildGuard::spawn("jsonrpc server", &mut cmd, dir.path());
    let t0 = Instant::now();
    while !server.stdout().contains("ready") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the server did not start: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Peers {
        server,
        log,
        port,
        _cert: cert,
        _dir: dir,
    }
}

impl Peers {
    fn client(&self, mode: &str, tools: &[&str]) -> ChildGuard {
        self.client_paused(mode, tools, 0)
    }

    fn client_paused(&self, mode: &str, tools: &[&str], pause_ms: u64) -> ChildGuard {
        let env = test_env();
        let mut cmd = Command::new(&env.python);
        cmd.env("PAUSE_AFTER_INIT_MS", pause_ms.to_string());
        cmd.arg(env.peers_dir.join("enforce/jsonrpc_client.py"))
            .arg(self.port.to_string())
            .arg(
                self._cert
                    .as_ref()
                    .map_or(Path::new("-"), |c| c.cert.as_path()),
            )
            .arg(mode)
            .args(tools);
        ChildGuard::spawn(
            &format!("client {}", tools.join(" ")),
            &mut cmd,
            self._dir.path(),
        )
    }

    /// The request bodies the server received (and EOF lines).
    fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn calls_received(&self, tool: &str) -> usize {
        self.received()
            .lines()
            .filter(|l| l.contains("tools/call") && l.contains(&format!("\"name\": \"{tool}\"")))
            .count()
    }
}

/// The client's per-call outcomes, by tool.
fn outcomes(client: &mut ChildGuard) -> Vec<(String, String, String)> {
    let status = client.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the client did not finish: {}",
        client.stderr()
    );
    client
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["tool"].as_str().unwrap_or_default().to_string(),
                v["outcome"].as_str().unwrap_or_default().to_string(),
                v["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn outcome_of(outs: &[(String, String, String)], tool: &str) -> String {
    outs.iter()
        .find(|o| o.0 == tool)
        .map(|o| o.1.clone())
        .unwrap_or_else(|| panic!("no outcome for {tool}: {outs:?}"))
}

fn verdicts<'a>(c: &'a Collected, tool: &str) -> Vec<&'a Value> {
    c.records
        .iter()
        .filter(|r| r["type"] == "verdict" && r["name"] == tool)
        .collect()
}

fn kernel(c: &Collected, name: &str) -> u64 {
    c.kernel
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}

/// State letter of a process (`T`: stopped).
fn proc_state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .unwrap_or('?')
}

#[test]
fn reactive_reset_keeps_the_answer_from_the_client() {
    let peers = start_server(false);
    let driver = Driver::start(
        EnforceMode::Reset,
        by_name,
        VerdictHints::default(),
        peers.port,
    );
    let mut client = peers.client("async", &["add", "explode_slow", "add2"]);
    let outs = outcomes(&mut client);
    let c = driver.stop();
    assert_eq!(outcome_of(&outs, "add"), "ok");
    assert_eq!(outcome_of(&outs, "explode_slow"), "error", "{outs:?}");
    assert_eq!(outcome_of(&outs, "add2"), "ok");
    // Reactive: the server did get the call; the client never got its answer.
    assert_eq!(peers.calls_received("explode_slow"), 1);
    let v = verdicts(&c, "explode_slow");
    assert_eq!(v.len(), 1, "{:?}", c.records);
    assert_eq!(v[0]["enforcement"], "reset");
    assert!(v[0]["enforced_after_ns"].as_u64().is_some_and(|n| n > 0));
    let stats = c.stats.clone().expect("stats");
    assert_eq!(stats.resets, 1);
    assert!(stats.reset_latency_p50_ns.is_some());
    drop(peers.server);
}

#[test]
fn tls_hold_stops_a_denied_call_before_it_leaves_and_lets_others_through() {
    let peers = start_server(true);
    let driver = Driver::start(
        EnforceMode::Hold,
        by_name,
        VerdictHints::default(),
        peers.port,
    );
    let mut client = peers.client("async", &["add", "explode", "add2", "explode2", "add3"]);
    let outs = outcomes(&mut client);
    let c = driver.stop();
    for tool in ["add", "add2", "add3"] {
        assert_eq!(outcome_of(&outs, tool), "ok", "{tool}: {outs:?}");
        assert_eq!(peers.calls_received(tool), 1, "{}", peers.received());
    }
    for tool in ["explode", "explode2"] {
        assert_eq!(outcome_of(&outs, tool), "error", "{tool}: {outs:?}");
        assert_eq!(
            peers.calls_received(tool),
            0,
            "the server received a held call: {}",
            peers.received()
        );
        let v = verdicts(&c, tool);
        assert_eq!(v.len(), 1, "{tool}: {:?}", c.records);
        assert_eq!(v[0]["enforcement"], "held_then_reset", "{:?}", v[0]);
        assert!(v[0]["hold_id"].as_u64().is_some());
    }
    let stats = c.stats.clone().expect("stats");
    // Every call after the first is held; the first may slip through unheld when it is
    // written before the agent has read the process's `initialize` (the participant mark).
    assert!(stats.holds_seen >= 4, "{stats:?} {:?}", c.kernel);
    assert_eq!(stats.holds_reset, 2, "{stats:?}");
    assert_eq!(stats.hold_timeouts, 0, "{stats:?}");
    assert!(kernel(&c, "holds") >= 4, "{:?}", c.kernel);
    assert_eq!(kernel(&c, "hold_signal_failed"), 0);
}

#[test]
fn plaintext_hold_stops_a_denied_call_before_it_leaves() {
    let peers = start_server(false);
    let driver = Driver::start(
        EnforceMode::Hold,
        by_name,
        VerdictHints::default(),
        peers.port,
    );
    // The libc probes are attached once the agent has seen the process's first JSON-RPC
    // POST: the pause keeps the first call from racing that attachment on a busy machine.
    let mut client = peers.client_paused(
        "async",
        &["add", "explode", "add2", "explode2", "add3"],
        1500,
    );

    let outs = outcomes(&mut client);
    let c = driver.stop();
    // (Other MCP clients on this machine may get the probes too.)
    assert!(
        c.libc_hold_pids.contains(&client.pid()),
        "the client got no probes: {:?} {:?}",
        c.libc_hold_pids,
        c.libc_hold_error
    );
    for tool in ["add", "add2", "add3"] {
        assert_eq!(outcome_of(&outs, tool), "ok", "{tool}: {outs:?}");
        assert_eq!(peers.calls_received(tool), 1, "{}", peers.received());
    }
    for tool in ["explode", "explode2"] {
        assert_eq!(
            outcome_of(&outs, tool),
            "error",
            "{tool}: {outs:?} {:?}",
            c.kernel
        );
        assert_eq!(
            peers.calls_received(tool),
            0,
            "the server received a held call: {}",
            peers.received()
        );
        let v = verdicts(&c, tool);
        assert_eq!(v.len(), 1, "{tool}: {:?}", c.records);
        assert_eq!(v[0]["enforcement"], "held_then_reset", "{:?}", v[0]);
    }
    let stats = c.stats.clone().expect("stats");
    assert!(stats.holds_seen >= 5, "{stats:?} {:?}", c.kernel);
    assert_eq!(stats.holds_reset, 2, "{stats:?}");
    // Allowed calls decoded exactly once: the socket path skipped the held bytes.
    let add_msgs = c
        .records
        .iter()
        .filter(|r| r["type"] == "message" && r["name"] == "add" && r["side"] == "client")
        .filter(|r| r["direction"] == "client_to_server")
        .count();
    assert_eq!(
        add_msgs,
        1,
        "{:?} {:?}",
        c.records
            .iter()
            .filter(|r| r["name"] == "add")
            .map(|r| (
                r["type"].clone(),
                r["side"].clone(),
                r["direction"].clone(),
                r["kind"].clone(),
                r["ts_ns"].clone(),
                r["pid"].clone()
            ))
            .collect::<Vec<_>>(),
        c.kernel
    );
    // The two reset calls' sends failed after the hold: their positions were pulled back.
    assert_eq!(kernel(&c, "hold_short_write"), 2, "{:?}", c.kernel);
}

#[test]
fn approval_holds_the_call_until_a_person_decides() {
    let peers = start_server(true);
    let driver = Driver::start(
        EnforceMode::Hold,
        by_name,
        VerdictHints::default(),
        peers.port,
    );
    // The pause after initialize lets the agent mark the client as an MCP process before its
    // first call (a first call written sooner is not held: see the README, "Enforcement").
    let mut client = peers.client_paused("async", &["approve_yes", "approve_no", "add"], 500);
    let p = driver.wait_pending(1, Duration::from_secs(20));
    assert_eq!(p.len(), 1, "no held call appeared: {}", client.stderr());
    assert_eq!(p[0]["tool"], "approve_yes");
    assert_eq!(p[0]["method"], "tools/call");
    // (`arguments` come from the verdict's `request`, which the test judge cannot fill: the
    // message records carry no params yet.)
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proc_state(client.pid()), 'T', "the client must be stopped");
    assert_eq!(
        peers.calls_received("approve_yes"),
        0,
        "{}",
        peers.received()
    );
    let id = p[0]["id"].as_u64().expect("id");
    assert_eq!(driver.control(ControlRequest::Approve { id })["ok"], true);
    let p = driver.wait_pending(1, Duration::from_secs(20));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["tool"], "approve_no");
    assert_eq!(peers.calls_received("approve_yes"), 1);
    assert_eq!(peers.calls_received("approve_no"), 0);
    let id = p[0]["id"].as_u64().expect("id");
    assert_eq!(driver.control(ControlRequest::Reject { id })["ok"], true);
    assert_eq!(
        driver.control(ControlRequest::Reject { id })["ok"],
        false,
        "a decided call is no longer pending"
    );
    let outs = outcomes(&mut client);
    let c = driver.stop();
    assert_eq!(outcome_of(&outs, "approve_yes"), "ok");
    assert_eq!(outcome_of(&outs, "approve_no"), "error");
    assert_eq!(outcome_of(&outs, "add"), "ok");
    assert_eq!(
        peers.calls_received("approve_no"),
        0,
        "{}",
        peers.received()
    );
    assert_eq!(
        verdicts(&c, "approve_yes")[0]["enforcement"],
        "held_then_released"
    );
    assert_eq!(
        verdicts(&c, "approve_no")[0]["enforcement"],
        "held_then_reset"
    );
}

#[test]
fn an_unanswered_approval_is_reset_at_its_timeout() {
    let peers = start_server(true);
    let hints = VerdictHints {
        approve_timeout_ms: 400,
        ..VerdictHints::default()
    };
    let driver = Driver::start(EnforceMode::Hold, by_name, hints, peers.port);
    // The pause after initialize lets the agent mark the client as an MCP process before its
    // only call (a first call written sooner is not held: see the README, "Enforcement").
    let mut client = peers.client_paused("async", &["approve_never"], 500);
    let outs = outcomes(&mut client);
    let c = driver.stop();
    assert_eq!(outcome_of(&outs, "approve_never"), "error");
    assert_eq!(peers.calls_received("approve_never"), 0);
    let stats = c.stats.clone().expect("stats");
    assert_eq!(stats.approval_timeouts, 1, "{stats:?}");
    assert_eq!(
        verdicts(&c, "approve_never")[0]["enforcement"],
        "held_then_reset"
    );
}

#[test]
fn two_threads_held_at_once_each_wait_for_their_own_decision() {
    let peers = start_server(true);
    let driver = Driver::start(
        EnforceMode::Hold,
        by_name,
        VerdictHints::default(),
        peers.port,
    );
    let tools = ["approve_t1", "approve_t2", "approve_t3"];
    let mut client = peers.client("threads", &tools);
    let mut max_pending = 0;
    let mut approved: Vec<String> = Vec::new();
    while approved.len() < tools.len() {
        let p = driver.wait_pending(1, Duration::from_secs(20));
        assert!(!p.is_empty(), "a call was never held: {}", client.stderr());
        // Give any other thread time to reach its own hold before deciding.
        std::thread::sleep(Duration::from_millis(200));
        let p = driver.pending();
        max_pending = max_pending.max(p.len());
        assert_eq!(proc_state(client.pid()), 'T');
        // A call reaches the server only after its approval.
        let leaked: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| !approved.iter().any(|a| a == t) && peers.calls_received(t) > 0)
            .collect();
        if !leaked.is_empty() {
            let c = driver.stop();
            let vs: Vec<&Value> = c
                .records
                .iter()
                .filter(|r| r["type"] == "verdict")
                .collect();
            panic!(
                "{leaked:?} arrived unapproved; approved {approved:?}, pending {p:?}\nverdicts {vs:?}\nstats {:?}\nkernel {:?}",
                c.stats, c.kernel
            );
        }
        let tool = p[0]["tool"].as_str().expect("tool").to_string();
        let id = p[0]["id"].as_u64().expect("id");
        assert_eq!(driver.control(ControlRequest::Approve { id })["ok"], true);
        approved.push(tool.clone());
        if p.len() > 1 {
            // Another thread's hold is outstanding: the process must stay stopped, so the
            // approved call cannot leave yet.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                proc_state(client.pid()),
                'T',
                "resumed with a hold outstanding"
            );
            assert_eq!(peers.calls_received(&tool), 0, "{}", peers.received());
        }
        // With no other hold the process resumes; the approved call leaves when its thread
        // runs (another thread may hit its own hold first and stop the process again).
    }
    let outs = outcomes(&mut client);
    let c = driver.stop();
    for t in tools {
        assert_eq!(outcome_of(&outs, t), "ok", "{outs:?}");
        assert_eq!(peers.calls_received(t), 1, "{}", peers.received());
    }
    eprintln!(
        "most calls held at once: {max_pending}; restops {}",
        c.stats.as_ref().map_or(0, |s| s.restops)
    );
    assert_eq!(kernel(&c, "hold_signal_failed"), 0, "{:?}", c.kernel);
}

#[test]
fn a_blocked_client_cannot_connect_again() {
    let peers = start_server(false);
    let hints = VerdictHints {
        block_connect: true,
        ..VerdictHints::default()
    };
    let driver = Driver::start(EnforceMode::Reset, by_name, hints, peers.port);
    let mut client = peers.client("async", &["explode_slow", "add"]);
    let outs = outcomes(&mut client);
    let c = driver.stop();
    assert_eq!(outcome_of(&outs, "explode_slow"), "error");
    let add = outs.iter().find(|o| o.0 == "add").expect("add outcome");
    assert_eq!(add.1, "error", "{:?} {:?}", c.stats, c.kernel);
    assert!(add.2.contains("PermissionError"), "{add:?}");
    assert_eq!(peers.calls_received("add"), 0);
    assert!(kernel(&c, "connect_blocked") >= 1, "{:?}", c.kernel);
    assert_eq!(c.stats.clone().expect("stats").blocks, 1);
}
