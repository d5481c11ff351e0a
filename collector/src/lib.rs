//! mcpwarden collector: receives agents' record streams over gRPC (`mcpwarden.v1.Export`),
//! stores them in SQLite or PostgreSQL (one merged session per server endpoint and session
//! id, whichever agents and sides saw it) and serves them over an HTTP JSON API.

pub mod grpc;
pub mod http;
pub mod inventory;
pub mod model;
pub mod pg_harness;
pub mod sessions;
pub mod store;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mcpwarden_proto::v1::export_server::ExportServer;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::grpc::{check_token, IngestCounters, IngestService};
use crate::store::{Store, StoreError};

/// `mcpwarden collector` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct CollectorArgs {
    /// Address of the gRPC ingest endpoint (agents: `--export grpc://ADDR`).
    #[arg(long, default_value = "0.0.0.0:7700")]
    pub grpc: SocketAddr,
    /// Address of the HTTP JSON API.
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub http: SocketAddr,
    /// `sqlite://PATH` (embedded) or `postgres://USER@HOST:PORT/DB` (shared by replicas).
    #[arg(long, default_value = "sqlite:///var/lib/mcpwarden/collector.db")]
    pub store: String,
    /// Keep records this many days.
    #[arg(long, default_value_t = 7)]
    pub retention_days: u64,
    /// Require `authorization: Bearer TOKEN` from agents (`TOKEN`, or `@FILE`).
    #[arg(long, value_name = "TOKEN|@FILE")]
    pub token: Option<String>,
    /// Serve gRPC over TLS with this PEM certificate (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require agents' client certificates signed by this PEM CA.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Create this file once both endpoints listen (for scripts and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// Why the collector stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file (token, certificate, ready file).
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Binding or serving.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// gRPC transport (TLS configuration, serving).
    #[error("gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CollectorError> {
    std::fs::read(path).map_err(|source| CollectorError::File {
        path: path.clone(),
        source,
    })
}

/// Runs the collector until SIGINT or SIGTERM.
pub fn run_blocking(args: CollectorArgs) -> Result<(), CollectorError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the collector until SIGINT or SIGTERM.
pub async fn run(args: CollectorArgs) -> Result<(), CollectorError> {
    serve(args, shutdown_signal()).await
}

/// How long open streams and requests may finish after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(3);

/// Runs the collector until `shutdown` completes (then drains for at most [`DRAIN`]).
pub async fn serve(
    args: CollectorArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let url = args.store.clone();
    let store: Arc<dyn Store> = Arc::from(
        tokio::task::spawn_blocking(move || store::open(&url))
            .await
            .map_err(|e| CollectorError::Io(std::io::Error::other(e)))??,
    );
    let token: Option<Arc<str>> = match args.token.as_deref() {
        Some(t) => Some(match t.strip_prefix('@') {
            Some(p) => {
                let path = PathBuf::from(p);
                String::from_utf8_lossy(&read(&path)?).trim().into()
            }
            None => t.into(),
        }),
        None => None,
    };
    let counters = Arc::new(IngestCounters::default());

    // Retention: now and every hour.
    let keep = Duration::from_secs(args.retention_days.saturating_mul(86_400));
    let st = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = std::time::SystemTime::now()
                .checked_sub(keep)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64);
            let st = st.clone();
            match tokio::task::spawn_blocking(move || st.purge(cutoff)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!("retention: {n} records removed"),
                Ok(Err(e)) => tracing::warn!("retention: {e}"),
                _ => {}
            }
        }
    });

    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(c)?, read(k)?));
        if let Some(ca) = &args.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(tls)?;
    }
    let svc = ExportServer::with_interceptor(
        IngestService::new(store.clone(), counters.clone()),
        check_token(token),
    );
    let grpc_listener = tokio::net::TcpListener::bind(args.grpc).await?;
    let http_listener = tokio::net::TcpListener::bind(args.http).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let grpc = builder.add_service(svc).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
        stopped(),
    );
    let app = http::router(http::ApiState {
        store: store.clone(),
        counters: counters.clone(),
    });
    let app = app.merge(web::router(store.clone()));
    let web = axum::serve(http_listener, app).with_graceful_shutdown(stopped());
    eprintln!(
        "mcpwarden collector: gRPC on {grpc_addr}, HTTP API on http://{http_addr}, store {}",
        redact_url(&args.store)
    );
    if let Some(p) = &args.ready_file {
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(|source| {
            CollectorError::File {
                path: p.clone(),
                source,
            }
        })?;
    }
    let drained = stopped();
    tokio::select! {
        (g, w) = async { tokio::join!(grpc, web) } => {
            g?;
            w?;
        }
        _ = async move {
            drained.await;
            tokio::time::sleep(DRAIN).await;
        } => {}
    }
    eprintln!(
        "mcpwarden collector: stopped; ingest {}",
        serde_json::to_string(&counters.snapshot()).unwrap_or_default()
    );
    Ok(())
}

/// The store URL without a password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
