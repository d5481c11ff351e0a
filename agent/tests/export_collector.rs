//! Agent exporter → collector, in one process over real gRPC on loopback (no kernel needed):
//! records replayed from the recorded SDK fixtures are stored exactly once across a collector
//! outage, a bad token is refused, and the HTTP API serves the merged sessions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcpwarden::export::identity;
use mcpwarden::export::{ExportConfig, Exporter};
use mcpwarden::mcp::Record;
use mcpwarden_collector::CollectorArgs;
use serde_json::Value;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

struct Collector {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start(grpc: SocketAddr, http: SocketAddr, store: &str, token: Option<&str>) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let args = CollectorArgs {
            grpc,
            http,
            store: store.to_owned(),
            retention_days: 36500,
            token: token.map(str::to_owned),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            ready_file: Some(ready.clone()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let r = rt.block_on(mcpwarden_collector::serve(args, async {
                let _ = rx.await;
            }));
            r.expect("collector runs");
        });
        let t0 = Instant::now();
        while !ready.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "collector not ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Collector {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
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

fn json_get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

fn fixture_records() -> Vec<Record> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut out = Vec::new();
    for name in ["python_sdk.events.jsonl", "server_everything.events.jsonl"] {
        let events = mcpwarden::replay::read_events(&dir.join(name)).expect("fixture");
        out.extend(mcpwarden::replay::replay(
            events,
            &mcpwarden::replay::ReplayConfig::default(),
        ));
    }
    out
}

fn exporter(url: &str, token: Option<&str>, spool: Option<PathBuf>, grace: u64) -> Exporter {
    let state = tempfile::tempdir().expect("state");
    Exporter::start(ExportConfig {
        url: url.into(),
        ca: None,
        cert: None,
        key: None,
        token: token.map(str::to_owned),
        queue: 100_000,
        spool_dir: spool,
        spool_bytes: 64 << 20,
        identity: identity::resolve(Some("it-agent"), state.path()).expect("identity"),
        realtime_offset_ns: 1_767_312_000 * 1_000_000_000,
        first_seq: 1_000,
        shutdown_grace: Duration::from_secs(grace),
    })
    .expect("exporter")
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn records_survive_a_collector_outage_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let (grpc, http) = (free_addr(), free_addr());
    let records = fixture_records();
    let half = records.len() / 2;
    let c = Collector::start(grpc, http, &store, None);
    let exp = exporter(&format!("grpc://{grpc}"), None, None, 30);
    for r in &records[..half] {
        exp.submit(r);
    }
    wait_for("first half acked", 20, || exp.stats().acked == half as u64);
    c.stop();
    // The collector is down: records wait in memory, the exporter keeps retrying.
    for r in &records[half..] {
        exp.submit(r);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(exp.stats().reconnects >= 1, "{:?}", exp.stats());
    let c = Collector::start(grpc, http, &store, None);
    wait_for("all acked", 60, || {
        exp.stats().acked >= records.len() as u64
    });
    let stats = exp.shutdown();
    assert_eq!(stats.queued, records.len() as u64);
    assert_eq!(
        stats.dropped_overflow + stats.dropped_full + stats.lost_at_shutdown,
        0
    );
    let api = json_get(http, "/api/stats");
    assert_eq!(api["records"], records.len() as u64, "{api}");

    // The API: sessions, one timeline with content, servers, CSV.
    let page = json_get(http, "/api/sessions?limit=100");
    let total = page["total"].as_u64().unwrap_or(0);
    assert!(total >= 2, "{page}");
    let row = &page["sessions"][0];
    let key = row["key"].as_str().expect("key");
    let detail = json_get(http, &format!("/api/sessions/{key}"));
    let events = detail["events"].as_array().expect("events");
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|e| e["agent_id"] == "it-agent" && e["pid"].as_u64().is_some()));
    let times: Vec<u64> = events
        .iter()
        .filter_map(|e| e["ts_unix_ns"].as_u64())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered timeline");
    let (status, csv) = http_get(http, "/api/sessions.csv");
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count() as u64, total + 1, "{csv}");
    let one = json_get(http, "/api/sessions?limit=1&offset=1");
    assert_eq!(one["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(json_get(http, "/api/sessions?status=nonsense")["total"], 0);
    let servers = json_get(http, "/api/servers");
    assert!(!servers["servers"].as_array().expect("servers").is_empty());
    assert_eq!(http_get(http, "/api/sessions/0000000000000000").0, 404);
    c.stop();
}

#[test]
fn a_wrong_token_is_refused_and_a_spool_keeps_records_for_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("c.db").display());
    let spool = dir.path().join("spool");
    let (grpc, http) = (free_addr(), free_addr());
    let records = fixture_records();
    let c = Collector::start(grpc, http, &store, Some("s3cret"));
    // Wrong token: nothing is stored, everything ends in the spool at shutdown.
    let exp = exporter(
        &format!("grpc://{grpc}"),
        Some("wrong"),
        Some(spool.clone()),
        1,
    );
    for r in &records {
        exp.submit(r);
    }
    std::thread::sleep(Duration::from_secs(1));
    let stats = exp.shutdown();
    assert_eq!(stats.acked, 0);
    assert_eq!(stats.lost_at_shutdown, 0, "{stats:?}");
    assert_eq!(json_get(http, "/api/stats")["records"], 0);
    // The next run (right token) sends the spooled records first.
    let exp = exporter(&format!("grpc://{grpc}"), Some("s3cret"), Some(spool), 10);
    wait_for("spool drained", 30, || {
        exp.stats().acked >= records.len() as u64
    });
    let stats = exp.shutdown();
    assert_eq!(stats.spool_bytes, 0, "{stats:?}");
    assert_eq!(
        json_get(http, "/api/stats")["records"],
        records.len() as u64
    );
    c.stop();
}
