//! What the tracker reports: one record per JSON-RPC message, one per ended session.
//!
//! Field names are the output contract (JSON lines, later the gRPC export): change them
//! only together with the consumers.

use serde::Serialize;
use serde_json::Value;

use super::identity::IdentitySource;
use super::stateless::InputRequestSummary;
use super::verify::VerificationFailure;
use super::{Flow, SessionState, Side, Transport};
use crate::process::ProcessIdentity;
use crate::rpc::RpcId;

/// One reported event. Serialises with a `"type"` field: `"message"`, `"session_start"`,
/// `"session_update"`, `"session_end"`, `"tool_drift"`, `"call_cancelled"`, `"verdict"`,
/// `"catalog"` or `"health"`.
// Records live briefly in one Vec between the tracker and the sinks; most are messages, so
// boxing the largest variant would add an allocation to nearly every record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Message(MessageRecord),
    /// A session's first message was seen (same fields as `session_end`, `status: "active"`,
    /// `end_reason: null`).
    SessionStart(SessionSummary),
    /// Periodic progress of an active session (same fields as `session_start`).
    SessionUpdate(SessionSummary),
    SessionEnd(SessionSummary),
    /// The policy's judgement of one client→server message that was not a plain allow.
    Verdict(VerdictRecord),
    /// A server's complete catalogue, whenever it changes.
    Catalog(CatalogRecord),
    #[serde(rename = "tool_drift")]
    Drift(DriftRecord),
    #[serde(rename = "call_cancelled")]
    Cancelled(CancelRecord),
    /// The agent's own counters (periodic, and once at stop); see [`crate::health`].
    Health(crate::health::HealthRecord),
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
    /// By a session id in a query parameter (configured per server).
    SessionQuery,
    /// By TCP connection: the server issued no session id.
    Connection,
    /// Stateless era: by server endpoint, client address, `clientInfo` and authenticated
    /// subject (see [`StatelessKey`](super::stateless::StatelessKey)).
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
    /// The connection a connection-grouped session lived on closed; or every connection a
    /// session-id session used closed, nothing was pending, and no new connection came within
    /// the close grace period.
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
    /// The session id of the exchange: the request's (header, or query parameter where
    /// configured), else the response's header, else the one its connection was bound to by a
    /// legacy SSE `endpoint` event; for stateless-era messages the synthetic id of their
    /// session; `None` when there is none.
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
    /// The name of a JSON-RPC or MCP error code (`"header_mismatch"` for -32020, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_name: Option<&'static str>,
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
    /// `notifications/progress`: the id of the pending request that carried this
    /// `progressToken`; `notifications/cancelled`: its `params.requestId`; a notification on
    /// the response stream of a stateless request: that request's id; a notification tagged
    /// with a subscription: the `subscriptions/listen` request's id while it is open; an
    /// error with a null id answering a single-request POST: that request's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_id: Option<RpcId>,
    /// An answer to a request that a `notifications/cancelled` had named.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The `MCP-Protocol-Version` request header, on client→server messages that carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_protocol_version: Option<String>,
    /// The message was an element of a JSON array body.
    pub batch: bool,
    pub transport: Transport,
    /// A result's `resultType` (`"complete"`, `"input_required"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_type: Option<String>,
    /// An `input_required` result's `inputRequests`: key and method of each, by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_requests: Option<Vec<InputRequestSummary>>,
    /// A retry's `params.inputResponses` keys, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_responses: Option<Vec<String>>,
    /// Multi round-trip calls: the id of the call's first request, on every request and
    /// answer of the call from its first `input_required` answer on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<RpcId>,
    /// Multi round-trip calls: 1 for the first request (and its answer), 2 for the first
    /// retry, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// `_meta["io.modelcontextprotocol/subscriptionId"]` of a subscription's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<RpcId>,
    /// `supportedVersions` of a `server/discover` result, `data.supported` of a -32022 error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<String>>,
    /// `data.requiredCapabilities` of a -32021 error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_capabilities: Option<Value>,
    /// `ttlMs` of a cacheable result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// `cacheScope` of a cacheable result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_scope: Option<String>,
    /// Headers that disagree with the body (client→server messages; see `verify.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verification: Vec<VerificationFailure>,
    /// Requests and notifications: `params`, bounded and redacted (`--payloads`); absent
    /// when the message had none or payloads are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Responses: `result`, bounded and redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Errors: `error.data`, bounded and redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_data: Option<Value>,
    /// The content above was cut to the configured size (`payload_bytes` is the original).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Size in bytes of the serialised content (`params`, `result` or `error.data`) before
    /// bounding, when content is reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<u64>,
    /// W3C trace context of the request: its `traceparent` header, else
    /// `params._meta.traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Client→server messages: the request headers configured for output (names in lower
    /// case; secret-named ones redacted). Absent unless configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Who the process is: `exe`, `uid`, `cgroup`, `container_id`, `pod_name`,
    /// `pod_namespace` (each only when known).
    #[serde(flatten)]
    pub process: ProcessIdentity,
    /// The process at the other end of the connection, when it is on this host and seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_comm: Option<String>,
}

/// Longest error message copied into a record; longer ones are cut at a char boundary.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// A session that ended (or is still open when the agent stops).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session header value; for connection grouping the `conn_id`; for stateless
    /// grouping the synthetic `"stateless:<16 hex>"`.
    pub session_id: String,
    pub grouping: Grouping,
    /// `handshake` or `stateless`.
    pub era: Era,
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
    /// Why it ended; `null` on `session_start` and `session_update` records.
    pub end_reason: Option<EndReason>,
    /// Sorted, unique request and notification methods (both directions).
    pub methods: Vec<String>,
    /// Sorted, unique tool names called.
    pub tools: Vec<String>,
    /// Sorted: which of `tools`, `resources`, `prompts`, `completions`, `logging`,
    /// `sampling`, `elicitation`, `roots` the session's messages used.
    pub primitives: Vec<String>,
    /// Handshake state reached: `new` (no `initialize` seen), `initializing`, `initialized`
    /// (answered), `operating` (`notifications/initialized` seen).
    pub state: SessionState,
    /// User from the configured header or JWT claim (the token itself is never output).
    pub user: Option<String>,
    /// Role from the configured header or JWT claim (an array claim joined with `,`).
    pub role: Option<String>,
    /// `"jwt"`, `"header"`, or `null` when no identity was seen.
    pub identity_source: Option<IdentitySource>,
    /// A configured key verified the JWT; `false` for unverified JWTs and header identities.
    pub identity_verified: bool,
    /// `capabilities` of the `initialize` request (or the stateless `_meta`).
    pub client_capabilities: Option<Value>,
    /// `capabilities` of the `initialize` result.
    pub server_capabilities: Option<Value>,
    /// Requests named by a `notifications/cancelled` (answered later or not), and stateless
    /// requests whose response stream closed before their answer.
    pub cancelled: u64,
    /// Requests whose `MCP-Protocol-Version` header differed from the negotiated version.
    pub protocol_version_mismatches: u64,
    /// The first such header value.
    pub first_mismatched_protocol_version: Option<String>,
    /// `supportedVersions` of the server's `server/discover` result (or of a -32022 error).
    pub supported_versions: Option<Vec<String>>,
    /// Header verification failures over all requests (also listed in `attacks`, up to its
    /// bound).
    pub verification_failures: u64,
    /// Attacks detected on the session: `{"kind":"tool_definition_drift","tool":..,
    /// "fields":[..]}` from the catalogue, `{"kind":"request_verification",..}` from header
    /// verification; the policy stage adds its own.
    pub attacks: Vec<Value>,
    /// The agent joined the session late (started or restarted while it was open): a
    /// handshake-era session whose `initialize` was not seen, or one first seen on a
    /// connection that predates the agent. What it said before is missing from the counts.
    /// Written only when `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub joined_mid_stream: bool,
    /// Who the observed process is (see [`MessageRecord::process`]).
    #[serde(flatten)]
    pub process: ProcessIdentity,
}

/// A tool whose definition changed between two complete `tools/list` results of a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftRecord {
    /// Kernel time of the list result that showed the change.
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    /// `"ip:port/path"` of the server.
    pub server: String,
    /// The summary `session_id` of the session that saw the new list.
    pub session_id: String,
    pub tool: String,
    /// Which of `title`, `description`, `inputSchema`, `outputSchema`, `annotations` changed.
    pub fields: Vec<String>,
    /// SHA-256 (hex) of the canonical JSON of the old and the new definition.
    pub old_hash: String,
    pub new_hash: String,
}

/// Why a call ended without its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The connection carrying the stateless request's response stream closed (the
    /// 2026-07-28 way to cancel a request or end a subscription on HTTP).
    StreamClosed,
}

/// A stateless-era request whose response stream closed before its answer came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelRecord {
    /// Kernel time the connection closed.
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    pub local: String,
    pub remote: String,
    pub conn_id: String,
    /// The summary `session_id` of the request's session.
    pub session_id: String,
    pub era: Era,
    pub reason: CancelReason,
    /// The request's id, method and name.
    pub id: RpcId,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<RpcId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// Kernel time of the request.
    pub requested_ns: u64,
    /// `ts_ns - requested_ns`.
    pub elapsed_ns: u64,
    /// How far it got: the response's HTTP status (`null`: no response head yet), the
    /// notifications its stream carried, the last progress notification's
    /// `{progress, total?, message?}`.
    pub http_status: Option<u16>,
    pub notifications: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
}

/// What the agent did about a judged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Allowed: nothing was done.
    None,
    /// `audit`: recorded, let through.
    AuditOnly,
    /// The policy would deny, but the agent runs in monitor mode.
    MonitorOnly,
    /// The connection was reset (SOCK_DESTROY) after the request had left.
    Reset,
    /// Held before the bytes left the client, then reset: the server never received it.
    HeldThenReset,
    /// Held before the bytes left the client, then released.
    HeldThenReleased,
    /// Held, no decision in time: released (fail-open).
    FailOpenTimeout,
    /// Deny (or reject) that could not be carried out (the socket was not found, …).
    ResetFailed,
}

/// One judged client→server message (every non-plain allow; plain allows too when
/// configured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRecord {
    /// Kernel time of the bytes that carried the request.
    pub ts_ns: u64,
    pub session_id: Option<String>,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    pub local: String,
    pub remote: String,
    pub conn_id: String,
    /// `"ip:port/path"` of the server.
    pub server: String,
    pub era: Era,
    pub id: Option<RpcId>,
    /// `""` for a body that was not JSON-RPC.
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
    pub action: crate::policy::Action,
    /// The matching rule; `null` when a default decided.
    pub rule_id: Option<String>,
    pub reasons: Vec<crate::policy::Reason>,
    /// What was done (filled in by the enforcer).
    pub enforcement: Enforcement,
    /// Hold mode: the id of the held write (`mcpwarden approve ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<u64>,
    /// Wall time the policy took to decide (ns).
    pub decision_ns: u64,
    /// Kernel time from the request's bytes to the reset (or the release), when one happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced_after_ns: Option<u64>,
    /// The offending request (`{"method", "params"}`), redacted as configured; `null` for
    /// allows.
    pub request: Option<Value>,
    /// Who the process is (see [`MessageRecord::process`]).
    #[serde(flatten)]
    pub process: ProcessIdentity,
    /// Hold mode: reset rather than release when no decision comes in time (the rule's
    /// `fail: closed`). For the enforcer; not written.
    #[serde(skip)]
    pub fail_closed: bool,
    /// `approve`: how long a person has to decide. For the enforcer; not written.
    #[serde(skip)]
    pub approve_timeout_ms: u64,
    /// The rule asks to refuse new connections from this process to this server.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub block_connect: bool,
    /// The process at the other end of the connection, when on this host (for the
    /// enforcer; the message records name it).
    #[serde(skip)]
    pub peer_pid: Option<u32>,
}

/// A server's complete catalogue (tools, resources, resource templates, prompts), written
/// whenever one of its complete lists changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogRecord {
    /// Kernel time of the list result that completed the change.
    pub ts_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    /// `"ip:port/path"` of the server.
    pub server: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// The summary `session_id` of the session that saw the list.
    pub session_id: String,
    /// Which list changed: `"tools"`, `"resources"`, `"resource_templates"`, `"prompts"`.
    pub changed: String,
    /// The complete lists as the server sent them (`null` when never listed).
    pub tools: Option<Vec<Value>>,
    pub resources: Option<Vec<Value>>,
    pub resource_templates: Option<Vec<Value>>,
    pub prompts: Option<Vec<Value>>,
}
