//! OTLP/HTTP span export (JSON encoding, `POST {url}/v1/traces`): bounded, never blocking
//! capture, at-most-once (a batch the receiver refuses is dropped and counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::mpsc;

use super::otlp_span::{export_request, SpanBuilder};
use crate::mcp::Record;

/// Spans per POST.
const BATCH: usize = 512;
/// Longest wait before a partial batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// OTLP exporter settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// `http://HOST:PORT` (the `/v1/traces` path is added unless the URL has a path).
    pub url: String,
    /// Records held for span building (beyond: dropped, counted).
    pub queue: usize,
    /// Added to kernel timestamps to get Unix time.
    pub realtime_offset_ns: u64,
}

/// Why the OTLP exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Only plain `http://HOST:PORT[/path]` is supported.
    #[error("OTLP URL {0:?}: expected http://HOST:PORT[/path]")]
    Url(String),
    /// The worker could not start.
    #[error("starting the OTLP worker: {0}")]
    Worker(std::io::Error),
}

/// OTLP counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OtlpStats {
    /// Records dropped because the queue was full.
    pub dropped_queue: u64,
    /// Spans built.
    pub spans: u64,
    /// Spans the receiver accepted.
    pub exported: u64,
    /// Spans in batches that failed (connection, timeout, non-2xx).
    pub failed: u64,
}

impl OtlpStats {
    /// Spans built and not yet accepted or failed.
    pub fn waiting(&self) -> u64 {
        self.spans.saturating_sub(self.exported + self.failed)
    }
}

#[derive(Debug, Default)]
struct Counters {
    dropped_queue: AtomicU64,
    spans: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
}

/// The running OTLP exporter.
pub struct OtlpExporter {
    tx: Option<mpsc::Sender<Record>>,
    counters: Arc<Counters>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// `(host:port, path)` of an OTLP URL.
fn target(url: &str) -> Result<(String, String), OtlpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| OtlpError::Url(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) if rest[i..].len() > 1 => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], "/v1/traces".to_owned()),
        None => (rest, "/v1/traces".to_owned()),
    };
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
            Ok((authority.to_owned(), path))
        }
        _ => Err(OtlpError::Url(url.into())),
    }
}

impl OtlpExporter {
    /// Starts the worker thread.
    pub fn start(cfg: OtlpConfig) -> Result<OtlpExporter, OtlpError> {
        let (authority, path) = target(&cfg.url)?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let counters = Arc::new(Counters::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OtlpError::Worker)?;
        let c = counters.clone();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let builder = SpanBuilder::new(cfg.realtime_offset_ns, seed);
        let worker = std::thread::Builder::new()
            .name("mcpwarden-otlp".into())
            .spawn(move || rt.block_on(run(rx, builder, authority, path, host, c)))
            .map_err(OtlpError::Worker)?;
        Ok(OtlpExporter {
            tx: Some(tx),
            counters,
            worker: Some(worker),
        })
    }

    /// Queues a record (never blocks; a full queue drops it, counted).
    pub fn submit(&self, record: &Record) {
        let wanted = matches!(record, Record::Message(_) | Record::SessionEnd(_));
        if let (true, Some(tx)) = (wanted, &self.tx) {
            if tx.try_send(record.clone()).is_err() {
                self.counters.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> OtlpStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OtlpStats {
            dropped_queue: g(&self.counters.dropped_queue),
            spans: g(&self.counters.spans),
            exported: g(&self.counters.exported),
            failed: g(&self.counters.failed),
        }
    }

    /// Sends what is queued, then stops.
    pub fn shutdown(mut self) -> OtlpStats {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.stats()
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Record>,
    mut builder: SpanBuilder,
    authority: String,
    path: String,
    host: String,
    c: Arc<Counters>,
) {
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        let (closed, ticked) = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    if let Some(span) = builder.on_record(&r) {
                        c.spans.fetch_add(1, Ordering::Relaxed);
                        batch.push(span);
                    }
                    (false, false)
                }
                None => (true, false),
            },
            _ = tick.tick() => (false, true),
        };
        if !batch.is_empty() && (closed || ticked || batch.len() >= BATCH) {
            let spans = std::mem::take(&mut batch);
            let n = spans.len() as u64;
            let body = export_request(spans, &host).to_string();
            match tokio::time::timeout(POST_TIMEOUT, post(&authority, &path, body)).await {
                Ok(Ok(())) => c.exported.fetch_add(n, Ordering::Relaxed),
                Ok(Err(e)) => {
                    tracing::debug!("otlp: {e}");
                    c.failed.fetch_add(n, Ordering::Relaxed)
                }
                Err(_) => c.failed.fetch_add(n, Ordering::Relaxed),
            };
        }
        if closed {
            return;
        }
    }
}

/// Why one POST failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("receiver answered {0}")]
    Status(u16),
}

async fn post(authority: &str, path: &str, body: String) -> Result<(), PostError> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| PostError::Connect(authority.to_owned(), e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = send.send_request(req).await?;
    conn.abort();
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(PostError::Status(resp.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_urls() {
        assert_eq!(
            target("http://127.0.0.1:4318").ok(),
            Some(("127.0.0.1:4318".into(), "/v1/traces".into()))
        );
        assert_eq!(
            target("http://h:1/custom").ok(),
            Some(("h:1".into(), "/custom".into()))
        );
        assert!(target("https://h:1").is_err());
        assert!(target("http://h").is_err());
    }
}
