//! MCP on top of JSON-RPC: sessions, request/response pairing and the records we report.
//!
//! Pure: the connection glue hands in decoded HTTP context ([`HttpMeta`]) and payload bytes
//! with kernel timestamps; nothing here reads a clock or touches I/O.
//!
//! * Sessions belong to one observed process. They are keyed by `(pid, Mcp-Session-Id)`
//!   (the header is configurable and matched case-insensitively); the `initialize` exchange,
//!   which has no id yet, is held on its connection until the response head binds it.
//!   Servers that issue no id are grouped per connection, and stateless (2026-07-28) traffic
//!   by server endpoint, client address, `clientInfo` and subject ([`StatelessKey`]), with an
//!   idle gap that ends the group.
//! * Pairing is by (session, direction of the request, id): string and numeric ids, batches,
//!   server→client requests, calls lasting minutes. Pending requests are bounded by count
//!   per session, never by wall-clock age; every eviction is counted. `notifications/cancelled`
//!   marks its request; progress notifications name the request that carried their token.
//! * Sessions end on DELETE, 404, idle timeout (never while a request is pending) or once all
//!   their connections stayed closed for a grace period (see [`McpTracker`]).
//! * Where the session id lives, and who the user is, are configurable per server
//!   ([`ServerConfig`]); identities come from a header or a JWT claim, verified with `ring`
//!   (`jwt.rs`) when keys are configured. Tokens are never output.
//! * `catalog.rs`: tools, resources, templates and prompts per server from list results
//!   (paginated) and `server/discover`, and tool-definition drift ([`Record::Drift`]).
//! * `stateless.rs`: what the 2026-07-28 revision adds (era per request, discover,
//!   `input_required` rounds tied into one call, subscription tags, error names);
//!   `verify.rs`: the mirrored request headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`,
//!   `MCP-Protocol-Version`) checked against the body.

mod catalog;
mod config;
pub mod content;
mod endpoint;
mod extract;
mod identity;
mod judging;
mod jwt;
mod pairing;
mod record;
mod session;
mod stateless;
mod tracker;
mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_catalog;
#[cfg(test)]
mod tests_content;
#[cfg(test)]
mod tests_identity;
#[cfg(test)]
mod tests_lifecycle;
#[cfg(test)]
mod tests_stateless;

pub use catalog::{
    canonical_json, DiscoverInfo, ListCounts, ListKind, ToolCatalog, ToolDef, DRIFT_FIELDS,
};
pub use config::{IdentityConfig, JwtKeySource, McpConfig, ServerConfig, SessionIdLocation};
pub use endpoint::{header_value, Endpoint, Flow, HttpMeta, Side, Transport};
pub use identity::{Identity, IdentityResolver, IdentitySource, Resolution};
pub use judging::RequestPolicy;
pub use jwt::{decode as decode_jwt, DecodedJwt, JwtError, JwtKeys, KeyError, Verification};
pub use record::{
    CancelReason, CancelRecord, CatalogRecord, DriftRecord, EndReason, Enforcement, Era, Grouping,
    Kind, MessageRecord, Record, SessionStatus, SessionSummary, VerdictRecord,
};
pub use session::{McpSession, SessionState};
pub use stateless::{error_name, request_era, InputRequestSummary, StatelessKey};
pub use tracker::{query_param, ConfigError, McpStats, McpTracker};
pub use verify::{
    decode_header_value, header_params, HeaderParam, HeaderValueError, VerificationFailure,
    VerificationReason,
};
