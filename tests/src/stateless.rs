//! Peers and helpers for the stateless-era (2026-07-28) end-to-end tests: server scripts other
//! than `server.py` (Python `stateless_server.py`, the Node servers), the Python
//! `stateless_client.py`, and a raw HTTP/1.1 client for crafted requests.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::env::test_env;
use crate::peers::{comm_of, CLIENT_TIMEOUT, SERVER_START_TIMEOUT};
use crate::process::ChildGuard;
use crate::tls::SelfSignedCert;

/// A peer server started from a script under `tests/peers` (Python or Node), listening on
/// 127.0.0.1:`port` with its MCP endpoint at `/mcp`.
pub struct ScriptServer {
    process: ChildGuard,
    port: u16,
    tls: bool,
    // Declared last: dropped after `process`.
    _dir: TempDir,
}

impl ScriptServer {
    /// `tests/peers/python/<script> PORT [--tls CERT KEY]` with the `.venv` interpreter.
    pub fn python(script: &str, port: u16, tls: Option<&SelfSignedCert>) -> ScriptServer {
        let env = test_env();
        let mut args: Vec<OsString> = vec![
            env.peers_dir.join("python").join(script).into(),
            port.to_string().into(),
        ];
        if let Some(t) = tls {
            args.extend(["--tls".into(), t.cert.clone().into(), t.key.clone().into()]);
        }
        let mut cmd = Command::new(&env.python);
        cmd.args(args);
        Self::spawn("python server", cmd, port, tls.is_some())
    }

    /// `node tests/peers/node/<script> PORT` with the pinned Node peers on `NODE_PATH`.
    pub fn node(script: &str, port: u16) -> ScriptServer {
        Self::node_with(script, port, None)
    }

    /// As [`ScriptServer::node`], serving HTTPS with `tls` (`--tls CERT KEY`).
    pub fn node_with(script: &str, port: u16, tls: Option<&SelfSignedCert>) -> ScriptServer {
        let env = test_env();
        assert!(
            env.node_modules.join("@modelcontextprotocol/server").is_dir(),
            "the Node peers are not installed in {} (MCPWARDEN_NODE_MODULES): run `cargo xtask setup`",
            env.node_modules.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(env.peers_dir.join("node").join(script))
            .arg(port.to_string())
            .env("NODE_PATH", &env.node_modules);
        if let Some(t) = tls {
            cmd.arg("--tls").arg(&t.cert).arg(&t.key);
        }
        Self::spawn("node server", cmd, port, tls.is_some())
    }

    fn spawn(what: &str, mut cmd: Command, port: u16, tls: bool) -> ScriptServer {
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-server-")
            .tempdir()
            .expect("cannot create a temporary directory for the server");
        let shown = format!("{cmd:?}");
        let mut process = ChildGuard::spawn(what, &mut cmd, dir.path());
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        loop {
            if let Some(status) = process.try_wait() {
                panic!(
                    "the {what} ({shown}) exited with {status} before listening on {addr}\n\
                     --- stderr ---\n{}",
                    process.stderr()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < SERVER_START_TIMEOUT,
                "the {what} ({shown}) did not listen on {addr} within {SERVER_START_TIMEOUT:?}\n\
                 --- stderr ---\n{}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ScriptServer {
            process,
            port,
            tls,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn comm(&self) -> String {
        comm_of(self.pid())
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/mcp", self.port)
    }

    /// `"127.0.0.1:PORT/mcp"`: the `server` field of the agent's records.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}/mcp", self.port)
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

/// Runs `tests/peers/python/stateless_client.py URL [--cafile CA] --conversation C` to
/// completion and returns its JSON summary.
pub fn run_stateless_py_client(url: &str, cafile: Option<&Path>, conversation: &str) -> Value {
    let env = test_env();
    let mut cmd = Command::new(&env.python);
    cmd.arg(env.peers_dir.join("python/stateless_client.py"))
        .arg(url)
        .arg("--conversation")
        .arg(conversation);
    if let Some(ca) = cafile {
        cmd.arg("--cafile").arg(ca);
    }
    run_client("python client", cmd)
}

/// Runs `node tests/peers/node/<script> URL` to completion and returns its JSON summary.
pub fn run_node_script(script: &str, url: &str) -> Value {
    let env = test_env();
    let mut cmd = Command::new("node");
    cmd.arg(env.peers_dir.join("node").join(script))
        .arg(url)
        .env("NODE_PATH", &env.node_modules);
    run_client("node client", cmd)
}

fn run_client(what: &str, mut cmd: Command) -> Value {
    let dir = tempfile::Builder::new()
        .prefix("mcpwarden-e2e-client-")
        .tempdir()
        .expect("cannot create a temporary directory for the client");
    let shown = format!("{cmd:?}");
    let mut process = ChildGuard::spawn(what, &mut cmd, dir.path());
    let Some(status) = process.wait_timeout(CLIENT_TIMEOUT) else {
        panic!(
            "the {what} ({shown}) did not finish within {CLIENT_TIMEOUT:?}\n--- stderr ---\n{}",
            process.stderr()
        );
    };
    assert!(
        status.success(),
        "the {what} ({shown}) exited with {status}\n--- stderr ---\n{}",
        process.stderr()
    );
    let stdout = process.stdout();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the {what} ({shown}) printed no JSON summary ({e}): {stdout:?}\n--- stderr ---\n{}",
            process.stderr()
        )
    });
    assert_eq!(
        summary["pid"].as_u64(),
        Some(u64::from(process.pid())),
        "the {what} reports a pid other than the one we started: {summary}"
    );
    summary
}

/// One HTTP/1.1 answer read by [`RawClient::post`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawAnswer {
    pub status: u16,
    /// Lower-cased header names.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// A plain keep-alive HTTP/1.1 connection to 127.0.0.1:`port` that POSTs exactly the
/// headers it is given (plus `Host`, `Content-Type`, `Accept`, `Content-Length`).
pub struct RawClient {
    stream: BufReader<TcpStream>,
    port: u16,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set_read_timeout");
        RawClient {
            stream: BufReader::new(stream),
            port,
        }
    }

    /// The local port of the connection (the client end the agent reports).
    pub fn local_port(&self) -> u16 {
        self.stream
            .get_ref()
            .local_addr()
            .map(|a| a.port())
            .expect("local address of the raw connection")
    }

    /// POSTs `body` to `/mcp` with `headers` and reads the whole answer (JSON or SSE; an SSE
    /// body yields the last event's JSON).
    pub fn post(&mut self, headers: &[(&str, &str)], body: &str) -> RawAnswer {
        let mut req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .expect("cannot write the raw request");
        self.read_answer()
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stream
            .read_line(&mut line)
            .expect("cannot read from the raw connection");
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    fn read_answer(&mut self) -> RawAnswer {
        let status_line = self.read_line();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut raw = Vec::new();
        if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            raw.resize(len, 0);
            self.stream
                .read_exact(&mut raw)
                .expect("cannot read the raw answer's body");
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let size =
                    usize::from_str_radix(self.read_line().trim(), 16).expect("a chunk size line");
                let mut chunk = vec![0; size + 2];
                self.stream
                    .read_exact(&mut chunk)
                    .expect("cannot read a chunk");
                chunk.truncate(size);
                raw.extend_from_slice(&chunk);
                if size == 0 {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| {
            text.lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str(d.trim()).ok())
                .unwrap_or(Value::Null)
        });
        RawAnswer {
            status,
            headers,
            body,
        }
    }
}

/// The `_meta` envelope of a 2026-07-28 request from client `name` `version`.
pub fn modern_meta(name: &str, version: &str) -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": name, "version": version}
    })
}
