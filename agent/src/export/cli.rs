//! The `run` flags of the exports (`--export*`, `--otlp*`, `--agent-id`) and the sinks they
//! start.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::grpc::{ExportConfig, ExportError, Exporter};
use super::identity::{self, IdentityError, DEFAULT_STATE_DIR};
use super::otlp::{OtlpConfig, OtlpError, OtlpExporter, OtlpStats};
use super::stats::ExportStats;
use crate::mcp::Record;

/// Export flags of `mcpwarden run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExportArgs {
    /// Stream every record to a collector: `grpc://HOST:PORT` or `https://HOST:PORT`; a
    /// comma-separated list names replicas, tried in turn when a stream breaks.
    #[arg(long, value_name = "URL")]
    pub export: Option<String>,
    /// PEM CA certificate(s) of the collector (https; default: the system roots).
    #[arg(long, value_name = "FILE")]
    pub export_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --export-key).
    #[arg(long, value_name = "FILE", requires = "export_key")]
    pub export_cert: Option<PathBuf>,
    /// PEM private key of --export-cert.
    #[arg(long, value_name = "FILE", requires = "export_cert")]
    pub export_key: Option<PathBuf>,
    /// Bearer token for the collector: the token itself, or `@FILE` to read it from FILE.
    #[arg(long, value_name = "TOKEN|@FILE")]
    pub export_token: Option<String>,
    /// Records held in memory for the collector (waiting or unacknowledged).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub export_queue: usize,
    /// Spool records that do not fit in memory, or are unacknowledged at exit, to DIR.
    #[arg(long, value_name = "DIR")]
    pub export_spool: Option<PathBuf>,
    /// Most bytes the spool may hold (records beyond are dropped, counted).
    #[arg(long, value_name = "N", default_value_t = 1 << 30)]
    pub export_spool_bytes: u64,
    /// Seconds to wait for acknowledgements when stopping.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub export_grace: u64,
    /// This agent's id (default: a UUID persisted in --state-dir).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Where the agent keeps its id.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Export one OpenTelemetry span per request and per session over OTLP/HTTP, e.g.
    /// `http://127.0.0.1:4318` (spans are POSTed to `/v1/traces`).
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// Spans held for the OTLP exporter (beyond: dropped, counted).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub otlp_queue: usize,
}

/// Why the exports could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The agent identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The gRPC exporter.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The OTLP exporter.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// The token file.
    #[error("reading the export token {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The running exports (either may be off).
#[derive(Default)]
pub struct ExportSinks {
    grpc: Option<Exporter>,
    otlp: Option<OtlpExporter>,
}

/// Counters of both exports.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SinkStats {
    /// gRPC export (absent when off).
    pub grpc: Option<ExportStats>,
    /// OTLP export (absent when off).
    pub otlp: Option<OtlpStats>,
}

/// Unix time now, in ns.
fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl ExportArgs {
    /// Starts the configured exports. `realtime_offset_ns` turns kernel timestamps into Unix
    /// time.
    pub fn start(&self, realtime_offset_ns: u64) -> Result<ExportSinks, SinkError> {
        let mut sinks = ExportSinks::default();
        if let Some(url) = &self.export {
            let token = match self.export_token.as_deref() {
                Some(t) => Some(match t.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|source| SinkError::Token {
                            path: path.into(),
                            source,
                        })?
                        .trim()
                        .to_owned(),
                    None => t.to_owned(),
                }),
                None => None,
            };
            let identity = identity::resolve(self.agent_id.as_deref(), &self.state_dir)?;
            sinks.grpc = Some(Exporter::start(ExportConfig {
                url: url.clone(),
                ca: self.export_ca.clone(),
                cert: self.export_cert.clone(),
                key: self.export_key.clone(),
                token,
                queue: self.export_queue,
                spool_dir: self.export_spool.clone(),
                spool_bytes: self.export_spool_bytes,
                identity,
                realtime_offset_ns,
                // Unique across restarts: no run hands out a billion records per second.
                first_seq: unix_ns(),
                shutdown_grace: Duration::from_secs(self.export_grace),
            })?);
        }
        if let Some(url) = &self.otlp {
            sinks.otlp = Some(OtlpExporter::start(OtlpConfig {
                url: url.clone(),
                queue: self.otlp_queue,
                realtime_offset_ns,
            })?);
        }
        Ok(sinks)
    }
}

impl ExportSinks {
    /// Hands one record to every export (never blocks).
    pub fn submit(&self, record: &Record) {
        if let Some(g) = &self.grpc {
            g.submit(record);
        }
        if let Some(o) = &self.otlp {
            o.submit(record);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            grpc: self.grpc.as_ref().map(Exporter::stats),
            otlp: self.otlp.as_ref().map(OtlpExporter::stats),
        }
    }

    /// Flushes and stops both exports; their final counters.
    pub fn shutdown(self) -> SinkStats {
        SinkStats {
            grpc: self.grpc.map(Exporter::shutdown),
            otlp: self.otlp.map(OtlpExporter::shutdown),
        }
    }
}
