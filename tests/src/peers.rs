//! Real MCP SDK peers: the Python server and client under `tests/peers/python`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::agent::parse_json_lines;
use crate::env::test_env;
use crate::process::ChildGuard;

/// How long a peer server may take to accept connections.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the scripted client conversation may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// `/proc/<pid>/comm` of a live process (what the kernel, and so the agent, calls it).
pub fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/comm: {e}"))
        .trim_end()
        .to_string()
}

/// `tests/peers/python/server.py`: the official Python SDK's `MCPServer` under uvicorn on
/// 127.0.0.1:`port`, streamable HTTP at `/mcp`, logging each HTTP response to a file.
pub struct PyServer {
    process: ChildGuard,
    port: u16,
    response_log: PathBuf,
    // Declared last: dropped after `process`.
    dir: TempDir,
}

impl PyServer {
    /// Starts the server and waits until the port accepts connections.
    pub fn start(port: u16) -> PyServer {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-pyserver-")
            .tempdir()
            .expect("cannot create a temporary directory for the server");
        let response_log = dir.path().join("responses.jsonl");
        let mut cmd = Command::new(&env.python);
        cmd.arg(env.peers_dir.join("python/server.py"))
            .arg(port.to_string())
            .arg("--log")
            .arg(&response_log);
        let process = ChildGuard::spawn("python server", &mut cmd, dir.path());
        let mut server = PyServer {
            process,
            port,
            response_log,
            dir,
        };
        server.wait_listening(&cmd);
        server
    }

    fn wait_listening(&mut self, cmd: &Command) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "the Python server ({cmd:?}) exited with {status} before listening on {addr}\n\
                     --- server stderr ---\n{}",
                    self.process.stderr()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if started.elapsed() > SERVER_START_TIMEOUT {
                panic!(
                    "the Python server ({cmd:?}) did not listen on {addr} within \
                     {SERVER_START_TIMEOUT:?}\n--- server stderr ---\n{}",
                    self.process.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The server's `comm` (read while it runs).
    pub fn comm(&self) -> String {
        comm_of(self.pid())
    }

    /// The streamable HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Every HTTP response the server sent so far:
    /// `{"method", "path", "status", "mcp_session_id"}`.
    pub fn responses(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.response_log).unwrap_or_default();
        parse_json_lines(&text, &self.response_log.display().to_string())
    }

    /// The distinct `mcp-session-id` response header values, in the order they appeared.
    pub fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for response in self.responses() {
            if let Some(id) = response["mcp_session_id"].as_str() {
                if !ids.iter().any(|known| known == id) {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    /// The directory holding the server's logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Runs the Python SDK client's scripted conversation against `url` to completion
/// (initialize … prompts/get, then DELETE) and returns the JSON summary it prints (its `pid`,
/// `comm`, `session_id`, results; see client.py). Panics with the client's stderr if it fails
/// or takes longer than [`CLIENT_TIMEOUT`].
pub fn run_py_client(url: &str) -> Value {
    let env = test_env();
    let dir = tempfile::Builder::new()
        .prefix("mcpwarden-e2e-pyclient-")
        .tempdir()
        .expect("cannot create a temporary directory for the client");
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python/client.py")).arg(url);
    let mut process = ChildGuard::spawn("python client", &mut cmd, dir.path());
    let pid = process.pid();
    let Some(status) = process.wait_timeout(CLIENT_TIMEOUT) else {
        panic!(
            "the Python client ({cmd:?}) did not finish within {CLIENT_TIMEOUT:?}\n\
             --- client stderr ---\n{}",
            process.stderr()
        );
    };
    assert!(
        status.success(),
        "the Python client ({cmd:?}) exited with {status}\n--- client stderr ---\n{}",
        process.stderr()
    );
    let stdout = process.stdout();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the Python client printed no JSON summary ({e}): {stdout:?}\n--- client stderr ---\n{}",
            process.stderr()
        )
    });
    assert_eq!(
        summary["pid"].as_u64(),
        Some(u64::from(pid)),
        "the client reports a pid other than the one we started: {summary}"
    );
    summary
}
