//! Records leave the host: the gRPC export to a collector and the OTLP span export.

pub mod convert;
