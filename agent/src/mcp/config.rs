//! Tracker configuration: bounds, timeouts, and per-server overrides for where the session id
//! lives and who the user is.
//!
//! Pure data (comparable, clonable): key material is carried as the bytes the operator gave;
//! [`McpTracker::try_new`](super::McpTracker::try_new) parses it and reports what it cannot use.

use std::path::Path;

use super::content::ContentConfig;
use crate::rpc::DEFAULT_MAX_BODY_BYTES;

/// Bounds and knobs for [`McpTracker`](super::McpTracker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// HTTP header carrying the session id; matched case-insensitively. A [`ServerConfig`]
    /// may name another header or a query parameter for one server.
    pub session_header: String,
    /// A session with no message for longer than this ends with `end_reason: "idle"` —
    /// unless it has a request still awaiting its answer (calls may last longer).
    pub idle_timeout_ns: u64,
    /// A stateless-era session (grouped without a session id, see
    /// [`StatelessKey`](super::stateless::StatelessKey)) with no message for longer than this
    /// ends with `end_reason: "idle"`, unless a request (e.g. a `subscriptions/listen` stream)
    /// still awaits its answer; the next request of the same client starts a new one.
    pub stateless_idle_gap_ns: u64,
    /// A session whose connections have all closed, with no request pending, ends with
    /// `end_reason: "closed"` once this much kernel time passes without a new connection.
    /// Clients often open a new TCP connection per POST, so closing is not ending at once.
    pub close_grace_ns: u64,
    /// Requests awaiting an answer kept per session; beyond it the oldest is evicted
    /// (and counted), never by age.
    pub max_pending_per_session: usize,
    /// Sessions tracked at once; beyond it the least recently active one is ended with
    /// `end_reason: "evicted"` (and counted).
    pub max_sessions: usize,
    /// Largest JSON-RPC payload decoded; larger ones count as decode errors.
    pub max_payload_bytes: usize,
    /// Servers (`"ip:port/path"`) whose catalogue is kept; further servers are counted, not kept.
    pub max_catalog_servers: usize,
    /// Entries kept per list (tools, resources, resource templates, prompts) per server;
    /// further entries are counted as truncated.
    pub max_catalog_items: usize,
    /// Where user and role come from, for servers without their own [`ServerConfig::identity`].
    pub identity: IdentityConfig,
    /// Per-server overrides, matched against `"ip:port/path"` of the server end (exactly), or
    /// against `"ip:port"` alone (any path); the first matching entry wins.
    pub servers: Vec<ServerConfig>,
    /// Kernel time (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) + this = Unix time in ns. When set,
    /// a JWT's `exp`/`nbf` are checked at the kernel time of the request that carried it;
    /// when `None`, time claims are not checked (the tracker reads no clock).
    pub realtime_offset_ns: Option<u64>,
    /// What message content reaches the records (`params`, `result`, `error.data`,
    /// configured headers), bounded and redacted.
    pub content: ContentConfig,
    /// Active sessions are announced (`session_start`) at the first housekeeping tick after
    /// their first message, then reported (`session_update`) at most this often while they
    /// change; `0` turns both off.
    pub session_update_interval_ns: u64,
    /// Records say who each process is (`exe`, `uid`, `cgroup`, container and pod), read from
    /// `/proc` (off for replays, which must not read this host's `/proc`).
    pub process_identity: bool,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            session_header: "mcp-session-id".to_string(),
            idle_timeout_ns: 10 * 60 * 1_000_000_000,
            stateless_idle_gap_ns: 5 * 60 * 1_000_000_000,
            close_grace_ns: 30 * 1_000_000_000,
            max_pending_per_session: 4096,
            max_sessions: 65_536,
            max_payload_bytes: DEFAULT_MAX_BODY_BYTES,
            max_catalog_servers: 1024,
            max_catalog_items: 2048,
            identity: IdentityConfig::default(),
            servers: Vec::new(),
            realtime_offset_ns: None,
            content: ContentConfig::default(),
            session_update_interval_ns: 10 * 1_000_000_000,
            process_identity: false,
        }
    }
}

/// Settings for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `"ip:port/path"` (e.g. `"10.0.0.5:443/mcp"`), or `"ip:port"` for every path.
    pub server: String,
    /// Where this server's session id is; `None`: the global `session_header`.
    pub session_id: Option<SessionIdLocation>,
    /// Who the user is on this server; `None`: the global [`McpConfig::identity`].
    pub identity: Option<IdentityConfig>,
}

/// Where a server carries its session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIdLocation {
    /// A request header (case-insensitive); the server hands it out in the same response
    /// header on the `initialize` answer.
    Header(String),
    /// A query parameter of the request path (e.g. `session_id` of the legacy HTTP+SSE
    /// transport, whose SSE `endpoint` event hands it out).
    Query(String),
}

/// Where a session's user and role come from.
///
/// A configured `user_header` wins when the request carries it; otherwise the JWT in
/// `Authorization: Bearer`. The token is never output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Read `Authorization: Bearer <JWT>`.
    pub jwt: bool,
    /// Claim naming the user (`"sub"` by default). A dotted path (`"ext.user"`) descends into
    /// objects when no claim has that literal name.
    pub user_claim: String,
    /// Claim naming the role: a string, or an array of strings joined with `","`
    /// (e.g. `"role"`, `"roles"`, `"realm_access.roles"`). `None`: no role.
    pub role_claim: Option<String>,
    /// Keys that verify the token's signature. Empty: identities from JWTs are reported with
    /// `identity_verified: false`.
    pub keys: Vec<JwtKeySource>,
    /// The issuer a token's `iss` must be exactly for it to count as verified. `None`: not
    /// checked. Checked only once a key verified the signature.
    pub issuer: Option<String>,
    /// Audiences one of which a token's `aud` (a string or an array) must name for it to count
    /// as verified. Empty: not checked. Checked only once a key verified the signature.
    pub audience: Vec<String>,
    /// A header naming the user (e.g. `x-user`), set by a trusted gateway.
    pub user_header: Option<String>,
    /// A header naming the role, read together with `user_header`.
    pub role_header: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            jwt: true,
            user_claim: "sub".to_string(),
            role_claim: None,
            keys: Vec::new(),
            issuer: None,
            audience: Vec::new(),
            user_header: None,
            role_header: None,
        }
    }
}

/// Key material for JWT verification, as given by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// An HS256 shared secret (raw bytes).
    Hs256Secret(Vec<u8>),
    /// A PEM public key: `PUBLIC KEY` (RSA or P-256 SubjectPublicKeyInfo) or
    /// `RSA PUBLIC KEY` (PKCS#1). Several blocks may follow each other.
    Pem(String),
    /// A DER public key: SubjectPublicKeyInfo (RSA or P-256) or PKCS#1 `RSAPublicKey`.
    Der(Vec<u8>),
    /// A JWKS document (`{"keys":[...]}`) or a single JWK: `kty` `RSA` (`n`, `e`),
    /// `EC` with `crv` `P-256` (`x`, `y`), `oct` (`k`, used for HS256).
    Jwks(String),
}

impl JwtKeySource {
    /// Reads a public key or JWKS file, telling the format from its content: a JSON object
    /// is a JWKS (or one JWK), text with `-----BEGIN` is PEM, anything else DER.
    pub fn from_file(path: &Path) -> std::io::Result<JwtKeySource> {
        let bytes = std::fs::read(path)?;
        let text = std::str::from_utf8(&bytes).ok();
        Ok(match text.map(str::trim_start) {
            Some(t) if t.starts_with('{') => JwtKeySource::Jwks(t.to_string()),
            Some(t) if t.contains("-----BEGIN") => JwtKeySource::Pem(t.to_string()),
            _ => JwtKeySource::Der(bytes),
        })
    }
}
