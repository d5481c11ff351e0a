//! Collector ingest rate: one agent stream over real gRPC (loopback) into the store, counting
//! records acknowledged (i.e. committed) per second, on SQLite and on PostgreSQL (a throw-away
//! server started here). Prints figures; never fails on time.
//!
//! `cargo bench -p mcpwarden-collector --bench ingest -- [--seconds S]`

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use mcpwarden_collector::pg_harness::TestPostgres;
use mcpwarden_collector::store::suite;
use mcpwarden_collector::CollectorArgs;
use mcpwarden_proto::v1::export_client::ExportClient;
use mcpwarden_proto::v1::{session_record::Kind, Envelope};

fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())
}

fn envelope(seq: u64) -> Envelope {
    let session = format!("bench-{}", seq / 50);
    let mut e = match seq % 10 {
        0 => suite::summary(seq, "server", Kind::Update, &session, seq),
        n if n % 2 == 0 => suite::call(
            seq,
            "client",
            seq,
            &session,
            r#"{"name":"add","arguments":{"a":1,"b":2}}"#,
        ),
        _ => suite::call(
            seq,
            "server",
            seq,
            &session,
            r#"{"name":"add","arguments":{"a":1,"b":2}}"#,
        ),
    };
    e.seq = seq;
    e
}

async fn measure(store: String, seconds: f64) -> Result<(u64, f64), String> {
    let (grpc, http) = (free_addr()?, free_addr()?);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ready = dir.path().join("ready");
    let args = CollectorArgs {
        grpc,
        http,
        store,
        retention_days: 36500,
        token: None,
        tls_cert: None,
        tls_key: None,
        client_ca: None,
        ready_file: Some(ready.clone()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mcpwarden_collector::serve(args, async {
        let _ = stop_rx.await;
    }));
    let t0 = Instant::now();
    while !ready.exists() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("collector not ready".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = ExportClient::connect(format!("http://{grpc}"))
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Envelope>(4096);
    let agent = suite::agent("bench-agent");
    let budget = Duration::from_secs_f64(seconds);
    let producer = tokio::spawn(async move {
        let start = Instant::now();
        let mut seq = 1u64;
        while start.elapsed() < budget || seq <= 10_000 {
            let mut e = envelope(seq);
            if seq == 1 {
                e.agent = Some(agent.clone());
            }
            if tx.send(e).await.is_err() {
                break;
            }
            seq += 1;
        }
        seq - 1
    });
    let started = Instant::now();
    let mut acks = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut last_acked = 0u64;
    let mut total = None;
    let mut producer = Some(producer);
    loop {
        if let Some(p) = producer.as_mut() {
            if p.is_finished() {
                total = Some(p.await.map_err(|e| e.to_string())?);
                producer = None;
            }
        }
        if total.is_some_and(|t| last_acked >= t) {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), acks.message()).await {
            Ok(Ok(Some(a))) => last_acked = a.acked_through,
            Ok(Ok(None)) => return Err("stream ended".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok((last_acked, secs))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ingest bench: {e}");
            return;
        }
    };
    println!("collector ingest over gRPC (one agent stream, batches committed then acked):");
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ingest bench: {e}");
            return;
        }
    };
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    report("sqlite", rt.block_on(measure(sqlite, seconds)));
    match TestPostgres::start() {
        Ok(pg) => match pg.fresh_database("bench") {
            Ok(url) => report("postgres", rt.block_on(measure(url, seconds))),
            Err(e) => println!("  postgres: skipped ({e})"),
        },
        Err(e) => println!("  postgres: skipped ({e})"),
    }
}

fn report(name: &str, r: Result<(u64, f64), String>) {
    match r {
        Ok((n, secs)) => println!(
            "  {name:>8}: {n} records in {secs:.2} s = {:.0} records/s",
            n as f64 / secs
        ),
        Err(e) => println!("  {name:>8}: failed: {e}"),
    }
}
