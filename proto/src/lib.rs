//! The wire contract between the agent and a collector: the `mcpwarden.v1` package
//! (`proto/mcpwarden/v1/*.proto`), generated with prost/tonic from a pure-Rust `.proto`
//! compiler, and the one place that renders a received record back into the agent's JSON line
//! ([`json`]).

pub mod json;

/// Generated `mcpwarden.v1` messages, client and server.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("mcpwarden.v1");
}
