//! What the page tests need around the browser: a collector process, HS256 JWTs for the
//! clients' identities, scripted SDK clients with a bearer token, and a tiny HTTP GET for the
//! collector's JSON API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mcpwarden_tests::peers::finish_client;
use mcpwarden_tests::{test_env, ChildGuard};
use serde_json::Value;
use tempfile::TempDir;

/// `mcpwarden collector` on loopback with an SQLite store in a temporary directory.
pub struct Collector {
    process: ChildGuard,
    pub grpc: u16,
    pub http: u16,
    // Declared last: dropped after `process`.
    _dir: TempDir,
}

impl Collector {
    pub fn start(grpc: u16, http: u16) -> Collector {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-pages-collector-")
            .tempdir()
            .expect("cannot create a temporary directory for the collector");
        let ready = dir.path().join("ready");
        let mut cmd = Command::new(&env.agent_bin);
        cmd.arg("collector")
            .arg("--grpc")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--store")
            .arg(format!(
                "sqlite://{}",
                dir.path().join("store.db").display()
            ))
            .arg("--ready-file")
            .arg(&ready);
        let mut process = ChildGuard::spawn("collector", &mut cmd, dir.path());
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(status) = process.try_wait() {
                panic!("the collector exited with {status}\n{}", process.stderr());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the collector was not ready in 60 s\n{}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Collector {
            process,
            grpc,
            http,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT` of the pages and the API.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// GET `path` of the HTTP API as JSON.
    pub fn get(&self, path: &str) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).expect("connect to the collector");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "GET {path}: {head}\n{body}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not JSON ({e}): {body}\n{}",
                self.process.stderr()
            )
        })
    }
}

/// An HS256 JWT over `claims` signed with `secret`.
pub fn hs256_jwt(secret: &[u8], claims: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// A scripted Python SDK client (`policy_client.py`) sending `Authorization: Bearer TOKEN`.
pub struct BearerClient {
    process: ChildGuard,
    cmd: String,
    _dir: TempDir,
}

impl BearerClient {
    pub fn spawn(url: &str, script: &Value, bearer: &str) -> BearerClient {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-pages-client-")
            .tempdir()
            .expect("cannot create a temporary directory for the client");
        let mut cmd = Command::new(&env.python);
        cmd.arg(env.peers_dir.join("python/policy_client.py"))
            .arg(url)
            .arg("--script")
            .arg(script.to_string())
            .arg("--bearer")
            .arg(bearer);
        // The token is a secret: not in failure messages.
        let cmd_shown = format!("policy_client.py {url} --script {script}");
        let process = ChildGuard::spawn("pages client", &mut cmd, dir.path());
        BearerClient {
            process,
            cmd: cmd_shown,
            _dir: dir,
        }
    }

    /// Waits for the script to end; returns its summary.
    pub fn finish(mut self) -> Value {
        let pid = self.process.pid();
        finish_client(&mut self.process, &self.cmd, pid)
    }
}
