//! Records leave the host: the gRPC export to a collector (at-least-once, bounded, never
//! blocking capture) and the OTLP span export.

pub mod backoff;
pub mod convert;
pub mod grpc;
pub mod identity;
pub mod outbox;
pub mod spool;
pub mod stats;

pub use grpc::{ExportConfig, ExportError, Exporter};
pub use stats::ExportStats;
