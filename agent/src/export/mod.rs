//! Records leave the host: the gRPC export to a collector (at-least-once, bounded, never
//! blocking capture) and the OTLP span export (at-most-once, bounded).

pub mod backoff;
pub mod cli;
pub mod convert;
pub mod grpc;
pub mod identity;
pub mod otlp;
pub mod otlp_span;
pub mod outbox;
pub mod spool;
pub mod stats;

pub use cli::{ExportArgs, ExportSinks, SinkStats};
pub use grpc::{ExportConfig, ExportError, Exporter};
pub use stats::ExportStats;
