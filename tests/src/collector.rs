//! The collector under test (`mcpwarden collector`, same binary as the agent), a small HTTP
//! client for its API, an OTLP/HTTP receiver, and the exactly-once check of stored records.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::env::test_env;
use crate::process::ChildGuard;

/// A running collector process.
pub struct CollectorProc {
    process: ChildGuard,
    /// gRPC and HTTP ports on 127.0.0.1.
    pub grpc: u16,
    pub http: u16,
    // Declared last: dropped after `process`.
    _dir: TempDir,
}

impl CollectorProc {
    /// Starts `mcpwarden collector` on the given ports and store; waits until it listens.
    pub fn start(store: &str, grpc: u16, http: u16) -> CollectorProc {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-collector-")
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
            .arg(store)
            .arg("--ready-file")
            .arg(&ready);
        let mut process = ChildGuard::spawn("collector", &mut cmd, dir.path());
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(status) = process.try_wait() {
                panic!(
                    "the collector exited with {status} before it was ready\n--- stderr ---\n{}",
                    process.stderr()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the collector was not ready in 60 s\n--- stderr ---\n{}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        CollectorProc {
            process,
            grpc,
            http,
            _dir: dir,
        }
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.grpc)
    }

    /// Stops it with SIGTERM and waits for its exit.
    pub fn stop(mut self) {
        self.process.signal(libc::SIGTERM);
        let status = self.process.wait_timeout(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "the collector did not stop cleanly ({status:?})\n--- stderr ---\n{}",
            self.process.stderr()
        );
    }

    /// Kills it with SIGKILL.
    pub fn kill(mut self) {
        self.process.kill();
    }

    /// `GET path` on the HTTP API, as JSON (panics unless 200).
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http_get(self.http, path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Records stored (from `/api/stats`).
    pub fn stored(&self) -> u64 {
        self.get("/api/stats")["records"].as_u64().unwrap_or(0)
    }
}

/// `GET path` on 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("cannot connect to the API");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("cannot send the request");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("cannot read the answer");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

/// Polls `f` every 100 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record in `store_url`, as (agent id, JSON line).
pub fn stored_records(store_url: &str) -> Vec<(String, Value)> {
    let store = mcpwarden_collector::store::open(store_url).expect("cannot open the store");
    let types = [
        "message",
        "session_start",
        "session_update",
        "session_end",
        "tool_drift",
        "call_cancelled",
        "verdict",
        "catalog",
        "health",
    ];
    store
        .events_of_types(&types)
        .expect("cannot read the store")
        .into_iter()
        .map(|e| (e.agent_id, e.record))
        .collect()
}

/// Asserts that the store holds exactly the agents' JSON lines, each once.
pub fn assert_stored_exactly_once(store_url: &str, written: &[(String, Value)]) {
    let key = |(a, v): &(String, Value)| format!("{a} {v}");
    let mut want: Vec<String> = written.iter().map(key).collect();
    let mut got: Vec<String> = stored_records(store_url).iter().map(key).collect();
    want.sort();
    got.sort();
    if want != got {
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
        let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
        let mut dups = got.clone();
        dups.dedup();
        panic!(
            "stored records differ from the agents' output: {} written, {} stored ({} duplicates)\n\
             missing (first 5): {missing:#?}\nextra (first 5): {extra:#?}",
            want.len(),
            got.len(),
            got.len() - dups.len()
        );
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1: accepts `POST /v1/traces` (JSON) and keeps the spans.
pub struct OtlpReceiver {
    /// Its port.
    pub port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl OtlpReceiver {
    /// Starts listening (a background thread serves connections until the process ends).
    pub fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the OTLP receiver");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve_otlp(conn, &sink));
            }
        });
        OtlpReceiver { port, spans }
    }

    /// Spans received so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn serve_otlp(conn: TcpStream, sink: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim().to_owned();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let ok = request_line.starts_with("POST /v1/traces");
        if let (true, Ok(v)) = (ok, serde_json::from_slice::<Value>(&body)) {
            let mut got = Vec::new();
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    got.extend(ss["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            if let Ok(mut s) = sink.lock() {
                s.extend(got);
            }
        }
        let status = if ok { "200 OK" } else { "404 Not Found" };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
    }
}

/// The value of a span attribute (`stringValue` or `intValue`, as text).
pub fn span_attr(span: &Value, key: &str) -> Option<String> {
    let a = span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?;
    let v = &a["value"];
    v["stringValue"]
        .as_str()
        .or_else(|| v["intValue"].as_str())
        .map(str::to_owned)
}
