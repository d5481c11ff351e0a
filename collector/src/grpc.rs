//! The `mcpwarden.v1.Export` service: receives agents' streams, stores each batch in one
//! transaction (duplicates skipped by agent id + seq) and acknowledges it only after the
//! commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcpwarden_proto::v1::{export_server::Export, Ack, AgentIdentity, Envelope};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::model::normalise;
use crate::store::Store;

/// Most envelopes stored in one transaction.
const MAX_BATCH: usize = 1024;
/// How long a batch waits for more envelopes before it is committed.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// Ingest counters.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Envelopes received.
    pub received: AtomicU64,
    /// Records stored for the first time.
    pub stored: AtomicU64,
    /// Records already stored (resent after a reconnect), skipped.
    pub duplicates: AtomicU64,
    /// Envelopes that could not be rendered (no record, bad JSON, no agent), acknowledged
    /// and dropped.
    pub rejected: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions that failed (the stream is closed; the agent resends).
    pub store_errors: AtomicU64,
    /// Streams open now.
    pub streams: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct IngestStats {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub commits: u64,
    pub store_errors: u64,
    pub streams: u64,
}

impl IngestCounters {
    /// The current values.
    pub fn snapshot(&self) -> IngestStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestStats {
            received: g(&self.received),
            stored: g(&self.stored),
            duplicates: g(&self.duplicates),
            rejected: g(&self.rejected),
            commits: g(&self.commits),
            store_errors: g(&self.store_errors),
            streams: g(&self.streams),
        }
    }
}

/// The Export service.
#[derive(Clone)]
pub struct IngestService {
    store: Arc<dyn Store>,
    counters: Arc<IngestCounters>,
}

impl IngestService {
    /// A service storing into `store`.
    pub fn new(store: Arc<dyn Store>, counters: Arc<IngestCounters>) -> IngestService {
        IngestService { store, counters }
    }
}

/// Reads up to [`MAX_BATCH`] envelopes: waits for the first, then takes what arrives within
/// [`BATCH_WAIT`]. `Ok((batch, ended))`.
async fn next_batch(inbound: &mut Streaming<Envelope>) -> Result<(Vec<Envelope>, bool), Status> {
    let Some(first) = inbound.message().await? else {
        return Ok((Vec::new(), true));
    };
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout(BATCH_WAIT, inbound.message()).await {
            Ok(Ok(Some(e))) => batch.push(e),
            Ok(Ok(None)) => return Ok((batch, true)),
            // Store what we have; the error ends the stream on the next read.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok((batch, false))
}

async fn serve_stream(
    store: Arc<dyn Store>,
    counters: Arc<IngestCounters>,
    mut inbound: Streaming<Envelope>,
    tx: mpsc::Sender<Result<Ack, Status>>,
) {
    let mut identity: Option<AgentIdentity> = None;
    loop {
        let (batch, ended) = match next_batch(&mut inbound).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("ingest stream: {e}");
                return;
            }
        };
        let Some(last_seq) = batch.last().map(|e| e.seq) else {
            return;
        };
        counters
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut events = Vec::with_capacity(batch.len());
        let mut obs = Vec::new();
        for env in &batch {
            if let Some(a) = &env.agent {
                // A full identity (first envelope of a stream) replaces the stream's.
                let full = !a.hostname.is_empty() || !a.boot_id.is_empty();
                if full || identity.as_ref().is_none_or(|i| i.agent_id != a.agent_id) {
                    identity = Some(a.clone());
                }
            }
            let Some(id) = identity.as_ref() else {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match normalise(env, id) {
                Ok((e, o)) => {
                    events.push(e);
                    obs.extend(o);
                }
                Err(e) => {
                    tracing::warn!("rejected envelope from {}: {e}", id.agent_id);
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let n = events.len() as u64;
        let st = store.clone();
        let res = tokio::task::spawn_blocking(move || st.ingest(&events, &obs)).await;
        match res {
            Ok(Ok(new)) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.stored.fetch_add(new as u64, Ordering::Relaxed);
                counters
                    .duplicates
                    .fetch_add(n.saturating_sub(new as u64), Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("store: {e}");
                let _ = tx
                    .send(Err(Status::unavailable(format!("store: {e}"))))
                    .await;
                return;
            }
            Err(e) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                let _ = tx
                    .send(Err(Status::internal(format!("store task: {e}"))))
                    .await;
                return;
            }
        }
        if tx
            .send(Ok(Ack {
                acked_through: last_seq,
            }))
            .await
            .is_err()
            || ended
        {
            return;
        }
    }
}

#[tonic::async_trait]
impl Export for IngestService {
    type StreamStream = ReceiverStream<Result<Ack, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            counters.streams.fetch_add(1, Ordering::Relaxed);
            serve_stream(store, counters.clone(), inbound, tx).await;
            counters.streams.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Checks `authorization: Bearer <token>` when a token is configured.
pub fn check_token(
    token: Option<Arc<str>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(t) = &token else { return Ok(req) };
        let ok = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| constant_time_eq(v.as_bytes(), t.as_bytes()));
        if ok {
            Ok(req)
        } else {
            Err(Status::unauthenticated("bad or missing bearer token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
