//! Tracker configuration.

use crate::rpc::DEFAULT_MAX_BODY_BYTES;

/// Bounds and knobs for [`McpTracker`](super::McpTracker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// HTTP header carrying the session id; matched case-insensitively.
    pub session_header: String,
    /// A session with no message for longer than this ends with `end_reason: "idle"`.
    pub idle_timeout_ns: u64,
    /// Requests awaiting an answer kept per session; beyond it the oldest is evicted
    /// (and counted), never by age.
    pub max_pending_per_session: usize,
    /// Sessions tracked at once; beyond it the least recently active one is ended with
    /// `end_reason: "evicted"` (and counted).
    pub max_sessions: usize,
    /// Largest JSON-RPC payload decoded; larger ones count as decode errors.
    pub max_payload_bytes: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            session_header: "mcp-session-id".to_string(),
            idle_timeout_ns: 10 * 60 * 1_000_000_000,
            max_pending_per_session: 4096,
            max_sessions: 65_536,
            max_payload_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
