//! What the tracker reports: one record per JSON-RPC message, one per ended session.
//!
//! Field names are the output contract (JSON lines, later the gRPC export): change them
//! only together with the consumers.

use serde::Serialize;
use serde_json::Value;

use super::{Flow, Side, Transport};
use crate::rpc::RpcId;

/// One reported event. Serialises with a `"type"` field: `"message"` or `"session_end"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Message(MessageRecord),
    SessionEnd(SessionSummary),
}

/// Which protocol era a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: `initialize` handshake, optional session header.
    Handshake,
    /// 2026-07-28 and later: no handshake, version and client info in every request's `_meta`.
    Stateless,
}

/// The JSON-RPC message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

/// How a session's messages were grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// By the session header the server issued.
    SessionHeader,
    /// By TCP connection: the server issued no session id.
    Connection,
    /// Stateless era: by server endpoint and client name.
    Stateless,
}

/// Why a session summary was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `DELETE` with the session header answered 2xx.
    Delete,
    /// The server answered a request carrying the session id with 404.
    NotFound,
    /// No message for longer than the idle timeout.
    Idle,
    /// The connection a connection-grouped session lived on closed.
    Closed,
    /// The agent is stopping; the session may still be alive.
    Shutdown,
    /// Dropped to stay within `max_sessions` (least recently active first).
    Evicted,
}

/// Whether the session is known to be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Ended,
    Active,
}

/// One JSON-RPC message as seen on the wire, with its pairing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRecord {
    /// Kernel timestamp of the bytes that carried the message.
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    pub local: String,
    pub remote: String,
    pub conn_id: String,
    pub http_method: String,
    pub http_path: String,
    /// `None` for a request body seen before its response head.
    pub http_status: Option<u16>,
    /// The session header of the exchange (request's, else response's), if any.
    pub session_id: Option<String>,
    pub era: Era,
    pub direction: Flow,
    pub kind: Kind,
    /// `None` for notifications and errors with a null id.
    pub id: Option<RpcId>,
    /// The method; for answers, the paired request's (`None` when unpaired).
    pub method: Option<String>,
    /// `tools/call`, `prompts/get`: `params.name`; `resources/read`: `params.uri`; answers
    /// copy their request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Answer's kernel time minus its request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    /// JSON-RPC `error.code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// JSON-RPC `error.message`, or the first text content of a result with `isError: true`
    /// (at most [`MAX_ERROR_MESSAGE_BYTES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// A result with `isError: true` (a tool failure reported as a result).
    pub tool_error: bool,
    /// `params._meta.progressToken` of a request, `params.progressToken` of a progress
    /// notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_token: Option<Value>,
    /// The message was an element of a JSON array body.
    pub batch: bool,
    pub transport: Transport,
}

/// Longest error message copied into a record; longer ones are cut at a char boundary.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// A session that ended (or is still open when the agent stops).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session header value; for connection grouping the `conn_id`; for stateless
    /// grouping `"<client name>@<server>"`.
    pub session_id: String,
    pub grouping: Grouping,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    /// `"ip:port"` of the server end followed by the HTTP path, e.g. `127.0.0.1:8000/mcp`.
    pub server: String,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// Negotiated (from the `initialize` result), else requested, else from `_meta`.
    pub protocol_version: Option<String>,
    pub started_ns: u64,
    pub ended_ns: u64,
    pub duration_ns: u64,
    pub requests: u64,
    pub notifications: u64,
    pub responses: u64,
    pub errors: u64,
    pub status: SessionStatus,
    pub end_reason: EndReason,
    /// Sorted, unique request and notification methods (both directions).
    pub methods: Vec<String>,
    /// Sorted, unique tool names called.
    pub tools: Vec<String>,
    /// Attacks detected on the session (filled by the policy stage; empty for now).
    pub attacks: Vec<Value>,
}
