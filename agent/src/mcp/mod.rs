//! MCP on top of JSON-RPC: sessions, request/response pairing and the records we report.
//!
//! Pure: the connection glue hands in decoded HTTP context ([`HttpMeta`]) and payload bytes
//! with kernel timestamps; nothing here reads a clock or touches I/O.
//!
//! * Sessions belong to one observed process. They are keyed by `(pid, Mcp-Session-Id)`
//!   (the header is configurable and matched case-insensitively); the `initialize` exchange,
//!   which has no id yet, is held on its connection until the response head binds it.
//!   Servers that issue no id are grouped per connection, and stateless (2026-07-28) traffic
//!   by server endpoint + client name.
//! * Pairing is by (session, direction of the request, id): string and numeric ids, batches,
//!   server→client requests, calls lasting minutes. Pending requests are bounded by count
//!   per session, never by wall-clock age; every eviction is counted.

mod config;
mod endpoint;
mod extract;
mod pairing;
mod record;
mod session;
mod tracker;

#[cfg(test)]
mod tests;

pub use config::McpConfig;
pub use endpoint::{header_value, Endpoint, Flow, HttpMeta, Side, Transport};
pub use record::{
    EndReason, Era, Grouping, Kind, MessageRecord, Record, SessionStatus, SessionSummary,
};
pub use session::{McpSession, SessionState};
pub use tracker::{McpStats, McpTracker};
