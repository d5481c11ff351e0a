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
use crate::tls::SelfSignedCert;

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

/// Waits until 127.0.0.1:`port` accepts connections; panics with the server's stderr if
/// `process` exits first or takes longer than [`SERVER_START_TIMEOUT`].
pub fn wait_listening(process: &mut ChildGuard, port: u16, cmd: &str) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    loop {
        if let Some(status) = process.try_wait() {
            panic!(
                "the server ({cmd}) exited with {status} before listening on {addr}\n\
                 --- server stderr ---\n{}",
                process.stderr()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if started.elapsed() > SERVER_START_TIMEOUT {
            panic!(
                "the server ({cmd}) did not listen on {addr} within {SERVER_START_TIMEOUT:?}\n\
                 --- server stderr ---\n{}",
                process.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    tls: bool,
    response_log: PathBuf,
    // Declared last: dropped after `process`.
    dir: TempDir,
}

impl PyServer {
    /// Starts the server and waits until the port accepts connections.
    pub fn start(port: u16) -> PyServer {
        Self::start_with(port, None, &[])
    }

    /// Starts the server over HTTPS with `cert` (uvicorn terminates TLS itself).
    pub fn start_tls(port: u16, cert: &SelfSignedCert) -> PyServer {
        Self::start_with(port, Some(cert), &[])
    }

    /// Starts the server over HTTPS with extra command-line flags (e.g. `--large-tools`).
    pub fn start_tls_with(port: u16, cert: &SelfSignedCert, flags: &[&str]) -> PyServer {
        Self::start_with(port, Some(cert), flags)
    }

    /// Plain HTTP with extra server flags (e.g. `--large-tools`).
    pub fn start_with_flags(port: u16, flags: &[&str]) -> PyServer {
        Self::start_with(port, None, flags)
    }

    fn start_with(port: u16, tls: Option<&SelfSignedCert>, flags: &[&str]) -> PyServer {
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
        if let Some(t) = tls {
            cmd.arg("--tls").arg(&t.cert).arg(&t.key);
        }
        cmd.args(flags);
        let mut process = ChildGuard::spawn("python server", &mut cmd, dir.path());
        wait_listening(&mut process, port, &format!("{cmd:?}"));
        PyServer {
            process,
            port,
            tls: tls.is_some(),
            response_log,
            dir,
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
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/mcp", self.port)
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
    SdkClient::spawn(url, &ClientOptions::default()).finish()
}

/// How to run the Python client.
#[derive(Default, Clone)]
pub struct ClientOptions {
    /// Trust this certificate (HTTPS).
    pub cafile: Option<PathBuf>,
    /// Send `Authorization: Bearer <token>` on every request.
    pub bearer: Option<String>,
    /// Pause after initialize until [`SdkClient::resume`] (its stderr says when it got there).
    pub pause_after_initialize: bool,
    /// Pause before connecting (imports done) until [`SdkClient::start`].
    pub pause_before_start: bool,
    /// Run the client through this command prefix (e.g. `unshare -m sh -c ...`); the
    /// client command line is appended as further arguments.
    pub wrapper: Vec<String>,
}

/// A running SDK client: the Python one (`tests/peers/python/client.py`) or the TypeScript one
/// on node (`tests/peers/node/conversation_client.mjs`), both running the same conversation.
pub struct SdkClient {
    process: ChildGuard,
    cmd: String,
    resume_file: PathBuf,
    start_file: PathBuf,
    _dir: TempDir,
}

impl SdkClient {
    /// Starts the TypeScript SDK client on node; with `pause_after_initialize` it waits after
    /// initialize like the Python one (other options: `cafile` becomes NODE_EXTRA_CA_CERTS).
    pub fn spawn_node(url: &str, opts: &ClientOptions) -> SdkClient {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-nodeclient-")
            .tempdir()
            .expect("cannot create a temporary directory for the client");
        let resume_file = dir.path().join("resume");
        let start_file = dir.path().join("start");
        let mut cmd = Command::new("node");
        cmd.arg(env.peers_dir.join("node/conversation_client.mjs"))
            .arg(url)
            .env("NODE_PATH", &env.node_modules);
        if let Some(ca) = &opts.cafile {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        if opts.pause_after_initialize {
            cmd.env("MCPWARDEN_PAUSE_FILE", &resume_file);
        }
        let shown = format!("{cmd:?}");
        let process = ChildGuard::spawn("node client", &mut cmd, dir.path());
        SdkClient {
            process,
            cmd: shown,
            resume_file,
            start_file,
            _dir: dir,
        }
    }

    pub fn spawn(url: &str, opts: &ClientOptions) -> SdkClient {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-pyclient-")
            .tempdir()
            .expect("cannot create a temporary directory for the client");
        let resume_file = dir.path().join("resume");
        let start_file = dir.path().join("start");
        let mut args: Vec<std::ffi::OsString> = vec![
            env.python.clone().into(),
            env.peers_dir.join("python/client.py").into(),
            url.into(),
        ];
        if let Some(ca) = &opts.cafile {
            args.push("--cafile".into());
            args.push(ca.clone().into());
        }
        if let Some(token) = &opts.bearer {
            args.push("--bearer".into());
            args.push(token.into());
        }
        if opts.pause_before_start {
            args.push("--wait-start".into());
            args.push(start_file.clone().into());
        }
        if opts.pause_after_initialize {
            args.push("--wait-file".into());
            args.push(resume_file.clone().into());
        }
        let mut full: Vec<std::ffi::OsString> =
            opts.wrapper.iter().map(std::ffi::OsString::from).collect();
        full.extend(args);
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..]);
        let shown = format!("{cmd:?}");
        let process = ChildGuard::spawn("python client", &mut cmd, dir.path());
        SdkClient {
            process,
            cmd: shown,
            resume_file,
            start_file,
            _dir: dir,
        }
    }

    /// Waits until the client has initialized its session and paused.
    pub fn wait_initialized(&mut self) {
        self.wait_for_stderr("\"initialized\":true", "initializing");
    }

    /// Waits until the client has done its imports and paused before connecting.
    pub fn wait_ready(&mut self) {
        self.wait_for_stderr("\"ready\":true", "getting ready");
    }

    /// Lets a client paused before connecting go on.
    pub fn start(&self) {
        std::fs::write(&self.start_file, b"go").expect("cannot write the client's start file");
    }

    fn wait_for_stderr(&mut self, needle: &str, what: &str) {
        let started = Instant::now();
        // JSON from Python has a space after the colon, from node none: compare without spaces.
        while !self.process.stderr().replace(' ', "").contains(needle) {
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "the client ({}) exited with {status} before {what}\n\
                     --- client stderr ---\n{}",
                    self.cmd,
                    self.process.stderr()
                );
            }
            assert!(
                started.elapsed() < CLIENT_TIMEOUT,
                "the client ({}) did not finish {what} within {CLIENT_TIMEOUT:?}\n\
                 --- client stderr ---\n{}",
                self.cmd,
                self.process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets a paused client go on.
    pub fn resume(&self) {
        std::fs::write(&self.resume_file, b"go").expect("cannot write the client's resume file");
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for the end of the conversation; returns the client's JSON summary.
    pub fn finish(mut self) -> Value {
        let cmd = self.cmd.clone();
        let process = &mut self.process;
        let pid = process.pid();
        finish_client(process, &cmd, pid)
    }
}

/// Runs `tests/peers/node/<script> URL` with node (official TypeScript SDK) to completion and
/// returns the JSON summary it prints. `envs`: e.g. `NODE_EXTRA_CA_CERTS` for HTTPS.
pub fn run_node_client(script: &str, url: &str, envs: &[(&str, &std::ffi::OsStr)]) -> Value {
    let env = test_env();
    assert!(
        env.node_modules.join("@modelcontextprotocol/sdk").is_dir(),
        "the Node peers are not installed in {} (MCPWARDEN_NODE_MODULES): run `cargo xtask setup`",
        env.node_modules.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("mcpwarden-e2e-nodeclient-")
        .tempdir()
        .expect("cannot create a temporary directory for the client");
    let mut cmd = Command::new("node");
    cmd.arg(env.peers_dir.join("node").join(script))
        .arg(url)
        .env("NODE_PATH", &env.node_modules)
        .envs(envs.iter().copied());
    let shown = format!("{cmd:?}");
    let mut process = ChildGuard::spawn("node client", &mut cmd, dir.path());
    let pid = process.pid();
    finish_client(&mut process, &shown, pid)
}

/// Waits for a client to exit successfully; returns the JSON summary it printed.
pub fn finish_client(process: &mut ChildGuard, cmd: &str, pid: u32) -> Value {
    let Some(status) = process.wait_timeout(CLIENT_TIMEOUT) else {
        panic!(
            "the client ({cmd}) did not finish within {CLIENT_TIMEOUT:?}\n\
             --- client stderr ---\n{}",
            process.stderr()
        );
    };
    assert!(
        status.success(),
        "the client ({cmd}) exited with {status}\n--- client stderr ---\n{}",
        process.stderr()
    );
    let stdout = process.stdout();
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the client ({cmd}) printed no JSON summary ({e}): {stdout:?}\n--- client stderr ---\n{}",
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
