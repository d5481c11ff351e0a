//! What the policy stage is given about one client→server message, and what it answers.
//!
//! The tracker (`mcp/`) builds a [`RequestFacts`] for every client→server request and
//! notification (and for client→server bodies that are not JSON-RPC at all), with the
//! findings only it can know (header verification, session-id and handshake state). The
//! policy ([`super::Judge`]) adds its own checks (schema, catalogue, pins, limits), matches
//! the rules and answers a [`Judgement`]. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mcp::{Era, SessionState, Side};

/// Who the observed process is. Fields the agent could not read are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessFacts {
    pub pid: u32,
    pub comm: String,
    /// `/proc/PID/exe` target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Real uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The cgroup v2 path (or the first v1 path) of the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// A container id parsed from the cgroup path (containerd, CRI-O, Docker, systemd-style).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// A typed reason a request may be refused. Rules name these in `match.check`; the names are
/// the snake_case serialisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// `tools/call` arguments do not satisfy the tool's `inputSchema`.
    SchemaViolation,
    /// The server's complete catalogue has no such tool.
    UnknownTool,
    /// No complete `tools/list` of the server was seen (the agent started later): the call
    /// cannot be checked against the catalogue.
    UnverifiableTool,
    /// The tool's definition changed since it was pinned (first seen, or the pins file) and
    /// the change was not accepted.
    ToolDefinitionDrift,
    /// The body is not JSON-RPC (not JSON, not an object or array of objects, no method…).
    MalformedJsonrpc,
    /// `jsonrpc` is not `"2.0"`.
    WrongJsonrpcVersion,
    /// The server issued a session id and this request carries none.
    MissingSessionId,
    /// `MCP-Protocol-Version` differs from the negotiated version.
    ProtocolVersionMismatch,
    /// A request other than `initialize`/`ping` before the handshake (handshake era, on a
    /// session whose `initialize` was seen being absent).
    BeforeInitialize,
    /// Body larger than the policy's `limits.max_body_bytes`.
    BodyTooLarge,
    /// JSON nested deeper than `limits.max_json_depth`.
    JsonTooDeep,
    /// A string longer than `limits.max_string_bytes`.
    StringTooLong,
    /// A mirrored header (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, `MCP-Protocol-Version`)
    /// disagrees with the body, is missing, unexpected, malformed or duplicated.
    HeaderMismatch,
    /// The request was cut before all of it was read (its body is over the decoder's size
    /// limit, or the capture lost bytes inside it): judged by what its first bytes say, its
    /// arguments unchecked.
    TruncatedRequest,
}

/// One finding, with the evidence a person needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    /// Human-readable evidence (e.g. the schema error with its instance path, the header).
    pub detail: String,
}

/// A policy action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    /// Record, let through.
    Audit,
    Deny,
    /// Hold until a person approves (`mcpwarden approve ID`) or rejects.
    Approve,
}

/// Everything known about one client→server message when it is judged.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// `"ip:port/path"` of the server (path without query).
    pub server: &'a str,
    /// The HTTP `Host` header.
    pub host: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub client_version: Option<&'a str>,
    pub process: &'a ProcessFacts,
    /// Which end the agent saw the message from.
    pub side: Side,
    pub user: Option<&'a str>,
    pub role: Option<&'a str>,
    pub identity_verified: bool,
    pub era: Era,
    /// `""` for a body that is not JSON-RPC.
    pub method: &'a str,
    /// `tools/call`/`prompts/get`: `params.name`; `resources/read`: `params.uri`.
    pub name: Option<&'a str>,
    pub params: Option<&'a Value>,
    /// A request (has an id), not a notification.
    pub is_request: bool,
    /// Handshake state of the session (`New` when none is known).
    pub session_state: SessionState,
    /// Size of the HTTP body that carried the message.
    pub body_bytes: usize,
    /// What the tracker found (header verification, session id, handshake, JSON-RPC form).
    pub findings: Vec<Reason>,
    /// The message was cut before all of it was read: `params` is absent, `name` is what
    /// its first bytes said (see [`ReasonKind::TruncatedRequest`]).
    pub cut: bool,
}

/// The policy's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub action: Action,
    /// The rule that matched; `None` when the (server's or global) default decided.
    pub rule_id: Option<String>,
    /// Every finding (the tracker's and the policy's own checks), matched or not.
    pub reasons: Vec<Reason>,
    /// Hold mode: when the decision cannot be made in time, reset instead of releasing.
    pub fail_closed: bool,
    /// `approve`: how long a person has to decide (then reset).
    pub approve_timeout_ms: u64,
    /// The rule asks to refuse new connections from this process to this server.
    pub block_connect: bool,
}

impl Judgement {
    /// A plain allow: nothing to record.
    pub fn is_plain_allow(&self) -> bool {
        self.action == Action::Allow && self.reasons.is_empty() && self.rule_id.is_none()
    }
}
