//! The gRPC exporter: `submit` never blocks the capture loop; a worker thread with its own
//! tokio runtime streams envelopes to the collector, reconnects with backoff and resends what
//! was not acknowledged (at-least-once; the collector de-duplicates by agent id + seq).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpwarden_proto::v1::{export_client::ExportClient, AgentIdentity, Envelope};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::backoff::Backoff;
use super::convert::record_to_proto;
use super::outbox::Outbox;
use super::spool::{Spool, SpoolError};
use super::stats::{ExportCounters, ExportStats};
use crate::mcp::Record;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most records in flight on one stream before waiting for acknowledgements.
const WINDOW: usize = 8192;
/// Capacity of the hand-off channel between `submit` and the worker.
const HANDOFF: usize = 16 * 1024;

/// Everything the exporter needs.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `grpc://HOST:PORT` (plaintext) or `https://HOST:PORT` (TLS); several, separated by
    /// commas, are collector replicas tried in turn when a stream breaks.
    pub url: String,
    /// PEM CA bundle that signs the collector's certificate (TLS; else the system roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer …`.
    pub token: Option<String>,
    /// Records held in memory (waiting or unacknowledged).
    pub queue: usize,
    /// Spool directory and its byte bound.
    pub spool_dir: Option<PathBuf>,
    pub spool_bytes: u64,
    /// Who we are.
    pub identity: AgentIdentity,
    /// Added to kernel timestamps to get Unix time.
    pub realtime_offset_ns: u64,
    /// The first sequence number (unique across restarts: the start time in Unix ns).
    pub first_seq: u64,
    /// How long `shutdown` waits for outstanding acknowledgements.
    pub shutdown_grace: Duration,
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The URL is not `grpc://` or `https://` with a host and port.
    #[error("export URL {0:?}: expected grpc://HOST:PORT or https://HOST:PORT")]
    Url(String),
    /// A certificate, key or token file could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS or endpoint configuration is invalid.
    #[error("export endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
    /// The token is not a valid header value.
    #[error("export token is not a valid header value")]
    Token,
    /// The spool directory could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The worker thread or its runtime could not start.
    #[error("starting the export worker: {0}")]
    Worker(std::io::Error),
}

/// The running exporter.
pub struct Exporter {
    tx: Option<mpsc::Sender<Envelope>>,
    seq: AtomicU64,
    agent_id: String,
    realtime_offset_ns: u64,
    counters: Arc<ExportCounters>,
    worker: Option<std::thread::JoinHandle<()>>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::File {
        path: path.clone(),
        source,
    })
}

/// The tonic endpoints of `cfg.url` (one per comma-separated URL).
fn endpoints(cfg: &ExportConfig) -> Result<Vec<Endpoint>, ExportError> {
    cfg.url
        .split(',')
        .map(|u| endpoint(cfg, u.trim()))
        .collect()
}

/// Builds the tonic endpoint for one URL with `cfg`'s TLS material.
fn endpoint(cfg: &ExportConfig, url: &str) -> Result<Endpoint, ExportError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("grpc://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(ExportError::Url(url.to_owned()));
    };
    let authority = rest.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => h,
        _ => return Err(ExportError::Url(url.to_owned())),
    };
    let scheme = if tls { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{authority}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if tls {
        let mut t = ClientTlsConfig::new().domain_name(host.trim_matches(['[', ']']));
        t = match &cfg.ca {
            Some(ca) => t.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => t.with_native_roots(),
        };
        if let (Some(c), Some(k)) = (&cfg.cert, &cfg.key) {
            t = t.identity(Identity::from_pem(read(c)?, read(k)?));
        }
        ep = ep.tls_config(t)?;
    }
    Ok(ep)
}

impl Exporter {
    /// Starts the worker thread. Fails only on configuration errors; an unreachable
    /// collector is retried forever.
    pub fn start(cfg: ExportConfig) -> Result<Exporter, ExportError> {
        let eps = endpoints(&cfg)?;
        let token = match &cfg.token {
            Some(t) => Some(
                tonic::metadata::MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| ExportError::Token)?,
            ),
            None => None,
        };
        let spool = match &cfg.spool_dir {
            Some(d) => Some(Spool::open(d, cfg.spool_bytes)?),
            None => None,
        };
        let counters = Arc::new(ExportCounters::default());
        let outbox = Outbox::new(cfg.queue, spool, counters.clone());
        let (tx, rx) = mpsc::channel(HANDOFF.min(cfg.queue.max(1)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ExportError::Worker)?;
        let worker = Worker {
            eps,
            current: 0,
            token,
            identity: cfg.identity.clone(),
            outbox,
            rx,
            counters: counters.clone(),
            grace: cfg.shutdown_grace,
            closing_since: None,
        };
        let handle = std::thread::Builder::new()
            .name("mcpwarden-export".into())
            .spawn(move || rt.block_on(worker.run()))
            .map_err(ExportError::Worker)?;
        Ok(Exporter {
            tx: Some(tx),
            seq: AtomicU64::new(cfg.first_seq),
            agent_id: cfg.identity.agent_id.clone(),
            realtime_offset_ns: cfg.realtime_offset_ns,
            counters,
            worker: Some(handle),
        })
    }

    /// Queues a record for export. Never blocks: when the hand-off is full the record is
    /// dropped and counted.
    pub fn submit(&self, record: &Record) {
        let env = Envelope {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            agent: Some(AgentIdentity {
                agent_id: self.agent_id.clone(),
                ..Default::default()
            }),
            realtime_offset_ns: self.realtime_offset_ns,
            record: Some(record_to_proto(record)),
        };
        let Some(tx) = &self.tx else { return };
        match tx.try_send(env) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters
                    .dropped_overflow
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Stops: waits up to the grace period for acknowledgements, spools the rest.
    pub fn shutdown(mut self) -> ExportStats {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.counters.snapshot()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Worker {
    /// Collector replicas; `current` is tried first, the next one after a broken stream.
    eps: Vec<Endpoint>,
    current: usize,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    identity: AgentIdentity,
    outbox: Outbox,
    rx: mpsc::Receiver<Envelope>,
    counters: Arc<ExportCounters>,
    grace: Duration,
    /// Set once `submit`'s side is gone: flush until the grace period ends.
    closing_since: Option<Instant>,
}

enum StreamEnd {
    /// The stream broke or could not be opened.
    Broken,
    /// Closing and everything sent was acknowledged, or the grace period ended.
    Done,
}

impl Worker {
    fn deadline_passed(&self) -> bool {
        self.closing_since
            .is_some_and(|t| t.elapsed() >= self.grace)
    }

    fn receive(&mut self, env: Option<Envelope>) {
        match env {
            Some(e) => self.outbox.accept(e),
            None => {
                self.closing_since.get_or_insert_with(Instant::now);
            }
        }
    }

    async fn run(mut self) {
        let seed = u64::from(std::process::id())
            ^ (Instant::now().elapsed().as_nanos() as u64)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5), seed);
        loop {
            if self.closing_since.is_some()
                && (self.deadline_passed()
                    || (!self.outbox.has_pending() && self.outbox.inflight() == 0))
            {
                break;
            }
            match self.stream(&mut backoff).await {
                StreamEnd::Done => break,
                StreamEnd::Broken => {
                    self.current = (self.current + 1) % self.eps.len().max(1);
                    self.outbox.disconnected();
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            let delay = tokio::time::sleep(backoff.next_delay());
            tokio::pin!(delay);
            loop {
                tokio::select! {
                    _ = &mut delay => break,
                    env = self.rx.recv(), if self.closing_since.is_none() => self.receive(env),
                }
            }
        }
        // Keep whatever is still queued for the next run.
        while let Ok(e) = self.rx.try_recv() {
            self.outbox.accept(e);
        }
        self.outbox.shutdown();
    }

    async fn stream(&mut self, backoff: &mut Backoff) -> StreamEnd {
        let Some(ep) = self.eps.get(self.current) else {
            return StreamEnd::Broken;
        };
        let channel: Channel = match ep.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("export: connecting: {e}");
                return StreamEnd::Broken;
            }
        };
        let token = self.token.clone();
        let mut client =
            ExportClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                if let Some(t) = &token {
                    req.metadata_mut().insert("authorization", t.clone());
                }
                Ok(req)
            })
            .max_decoding_message_size(1 << 20);
        let (out_tx, out_rx) = mpsc::channel::<Envelope>(256);
        let call = client.stream(tokio_stream::wrappers::ReceiverStream::new(out_rx));
        tokio::pin!(call);
        let mut first = true;
        let mut acks: Option<tonic::Streaming<mcpwarden_proto::v1::Ack>> = None;
        let grace_tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(grace_tick);
        loop {
            if self.closing_since.is_some() {
                if !self.outbox.has_pending() && self.outbox.inflight() == 0 {
                    return StreamEnd::Done;
                }
                if self.deadline_passed() {
                    return StreamEnd::Done;
                }
            }
            let can_send = self.outbox.has_pending() && self.outbox.inflight() < WINDOW;
            tokio::select! {
                res = &mut call, if acks.is_none() => match res {
                    Ok(resp) => {
                        backoff.reset();
                        acks = Some(resp.into_inner());
                    }
                    Err(e) => {
                        tracing::debug!("export: stream: {e}");
                        return StreamEnd::Broken;
                    }
                },
                ack = async {
                    match acks.as_mut() {
                        Some(a) => a.message().await,
                        None => std::future::pending().await,
                    }
                } => match ack {
                    Ok(Some(a)) => {
                        self.outbox.ack(a.acked_through);
                    }
                    Ok(None) => return StreamEnd::Broken,
                    Err(e) => {
                        tracing::debug!("export: acks: {e}");
                        return StreamEnd::Broken;
                    }
                },
                permit = out_tx.reserve(), if can_send => {
                    let Ok(permit) = permit else { return StreamEnd::Broken };
                    if let Some(mut env) = self.outbox.next_to_send() {
                        if first {
                            env.agent = Some(self.identity.clone());
                            first = false;
                        }
                        permit.send(env);
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                },
                env = self.rx.recv(), if self.closing_since.is_none() => self.receive(env),
                _ = &mut grace_tick, if self.closing_since.is_some() => {
                    grace_tick.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(100));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ExportConfig {
        ExportConfig {
            url: url.into(),
            ca: None,
            cert: None,
            key: None,
            token: None,
            queue: 10,
            spool_dir: None,
            spool_bytes: 0,
            identity: AgentIdentity::default(),
            realtime_offset_ns: 0,
            first_seq: 1,
            shutdown_grace: Duration::from_millis(10),
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(endpoints(&cfg("grpc://127.0.0.1:4317")).is_ok());
        assert!(endpoints(&cfg("https://collector.example:443")).is_ok());
        assert_eq!(
            endpoints(&cfg("grpc://a:1, grpc://b:2"))
                .map(|v| v.len())
                .ok(),
            Some(2)
        );
        assert!(matches!(
            endpoints(&cfg("tcp://x:1")),
            Err(ExportError::Url(_))
        ));
        assert!(matches!(
            endpoints(&cfg("grpc://nohost")),
            Err(ExportError::Url(_))
        ));
        assert!(matches!(
            endpoints(&cfg("grpc://a:1,")),
            Err(ExportError::Url(_))
        ));
    }
}
