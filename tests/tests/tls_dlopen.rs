//! A TLS library loaded by `dlopen` long after the process started (Python's `import ssl`)
//! is attached at once, through the dynamic loader's `_dl_debug_state` hook, not at the next
//! periodic rescan: the very first HTTPS request the process makes right after the import is
//! captured from the client side.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mcpwarden_tests::records::messages_of;
use mcpwarden_tests::{free_port, test_env, Agent, ChildGuard, PyServer, SelfSignedCert};

/// Waits for `go`, then imports ssl and POSTs one MCP `initialize` at once.
const CLIENT: &str = r#"
import json, os, sys, time
go, url, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
assert "_ssl" not in sys.modules, "ssl loaded at start"
print("waiting", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
import ssl, http.client, urllib.parse
u = urllib.parse.urlparse(url)
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=cafile))
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "dlopen-client", "version": "1.0"}}})
conn.request("POST", u.path, body, {"Content-Type": "application/json",
                                    "Accept": "application/json, text/event-stream"})
resp = conn.getresponse()
resp.read()
print("status", resp.status, flush=True)
"#;

#[test]
fn a_tls_library_dlopened_after_start_is_attached_before_the_first_request() {
    let env = test_env();
    // A private copy of libssl (another inode, outside the system directories the agent
    // attaches to at start), found by the loader through LD_LIBRARY_PATH: only a scan of
    // this process's maps after the dlopen can find it.
    let libdir = tempfile::Builder::new()
        .prefix("mcpwarden-e2e-libssl-")
        .tempdir()
        .expect("tempdir for the libssl copy");
    let system = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib64/libssl.so.3",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("no system libssl.so.3 to copy");
    std::fs::copy(system, libdir.path().join("libssl.so.3")).expect("cannot copy libssl.so.3");

    let cert = SelfSignedCert::generate();
    let agent = Agent::start_with_env(&[], &[("MCPWARDEN_LOG", "mcpwarden::capture::tls=info")]);
    let server = PyServer::start_tls(free_port(), &cert);
    let go = libdir.path().join("go");
    let mut cmd = Command::new(&env.python);
    cmd.arg("-c")
        .arg(CLIENT)
        .arg(&go)
        .arg(server.url())
        .arg(&cert.cert)
        .env("LD_LIBRARY_PATH", libdir.path());
    let mut client = ChildGuard::spawn("dlopen client", &mut cmd, libdir.path());
    let t0 = Instant::now();
    while !client.stdout().contains("waiting") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the client did not start: {}",
            client.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past every exec-time rescan (the last one is 1.5 s after the exec).
    std::thread::sleep(Duration::from_millis(2200));
    std::fs::write(&go, b"").expect("cannot write the go file");
    let status = client.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()) && client.stdout().contains("status 200"),
        "the client failed: {status:?}\n{}\n{}",
        client.stdout(),
        client.stderr()
    );
    let client_pid = client.pid();
    std::thread::sleep(Duration::from_millis(300));
    let stderr = agent.stderr();
    let records = agent.stop();
    let sent: Vec<_> = messages_of(&records, client_pid)
        .into_iter()
        .filter(|m| m["direction"] == "client_to_server" && m["method"] == "initialize")
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "the initialize the client sent right after `import ssl` must be captured in the \
         client (pid {client_pid}), through its private libssl\n--- agent stderr ---\n{stderr}"
    );
    assert!(
        stderr.contains(&libdir.path().display().to_string()),
        "the agent attached to the private libssl copy\n{stderr}"
    );
}
