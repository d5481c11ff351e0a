//! The tracker: payloads and HTTP heads in, [`Record`]s out.
//!
//! Which session a payload belongs to, in order (always within the observed process):
//! 1. the request carries the session id (the configured header, `mcp-session-id` by default,
//!    or a configured query parameter) → that session;
//! 2. only the response carries it (the `initialize` answer) → the session held on the
//!    connection is re-keyed to that id, and so is everything after;
//! 3. the connection was bound to a session id by a legacy SSE `endpoint` event (query-param
//!    servers) → that session;
//! 4. a request of the stateless era (see [`request_era`]: `params._meta` names a protocol
//!    version, or the method or the `MCP-Protocol-Version` header is of 2026-07-28+; this
//!    rule comes first, as the revision ignores `Mcp-Session-Id`) → the stateless session of
//!    its [`StatelessKey`] (server endpoint, client address, `clientInfo`, subject);
//!    answers and notifications on that connection's exchange follow it;
//! 5. otherwise → the connection (servers that issue no session id, `initialize` not yet
//!    answered).
//!
//! Each connection's current HTTP exchange (one at a time on HTTP/1.1) is remembered: its
//! session, era, single request and response status. It gives answers their era, pairs an
//! error with a null id to the request of its POST, relates the notifications of a stateless
//! request's response stream to that request, and turns the close of a connection whose
//! stateless request is still unanswered into a [`CancelRecord`] (the 2026-07-28 way to cancel
//! a request or end a subscription on HTTP).
//!
//! Client→server messages are verified against their mirrored headers ([`super::verify`]);
//! failures are reported on the message and as attacks on the session. `input_required`
//! answers and their retries are tied into one logical call ([`super::stateless`]).
//!
//! Lifecycle: `initialize` → its answer (binds the id; negotiated version, capabilities and
//! implementations of both sides) → `notifications/initialized` → operating → ended by DELETE
//! answered 2xx, a 404 to a request carrying the id, the close of every connection it used
//! (after [`McpConfig::close_grace_ns`] without a new one, nothing pending), idle timeout
//! (never while a request is pending), or shutdown. Connection-grouped sessions end when
//! their connection closes.
//!
//! Each request's headers also give the session's identity ([`super::identity`]) and its
//! `MCP-Protocol-Version`, checked against the negotiated one. List results feed the
//! per-server catalogue ([`super::catalog`]); a drifted tool definition is reported as a
//! [`DriftRecord`] and as an attack on the session that saw it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ring::digest;
use serde::Serialize;
use serde_json::Value;

use super::catalog::{Catalogs, CompleteList, DiscoverInfo, ListKind, ToolCatalog};
use super::config::{IdentityConfig, SessionIdLocation};
use super::extract::{self, StatelessMeta};
use super::identity::IdentityResolver;
use super::judging::RequestPolicy;
use super::jwt::KeyError;
use super::pairing::{Displaced, Pending};
use super::record::{
    CancelReason, CancelRecord, CatalogRecord, DriftRecord, EndReason, Enforcement, Era, Kind,
    MessageRecord, Record, SessionStatus, VerdictRecord,
};
use super::session::{GroupKey, McpSession, SessionState};
use super::stateless::{self, request_era, CallRound, OpenRound, StatelessKey, MRTR_METHODS};
use super::verify::{self, RequestView, ToolSchema, Verification};
use super::{header_value, Endpoint, Flow, HttpMeta, McpConfig};
use crate::policy::{Action, Judgement, Reason, ReasonKind, RequestFacts};
use crate::process::{ProcessIdentity, ProcessTable};
use crate::rpc::{decode_with, DecodeLimits, RpcError, RpcId, RpcMessage};

/// Request header naming the protocol revision (2025-06-18+).
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
/// Longest session id accepted from a query parameter.
const MAX_QUERY_SESSION_ID: usize = 1024;
/// Identity header fingerprints remembered with their subject (stateless grouping).
const MAX_SUBJECTS: usize = 4096;
/// Servers remembered as issuing session ids (for `missing_session_id`).
const MAX_ISSUING_SERVERS: usize = 4096;
/// Request header carrying the caller's W3C trace context.
const TRACEPARENT_HEADER: &str = "traceparent";

type SessionKey = (u32, GroupKey);
type ConnKey = (u32, String);
/// Maps keyed by connection: pid and the connection id the agent made itself, not text a
/// peer chooses, so a fast seeded hash serves (keys peers choose keep SipHash).
type ConnHash = foldhash::fast::RandomState;
type ConnMap<V> = HashMap<ConnKey, V, ConnHash>;

/// Counters, for metrics and the shutdown line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct McpStats {
    /// Sessions tracked now.
    pub sessions: usize,
    /// Requests awaiting an answer now, over all sessions.
    pub pending: usize,
    /// `input_required` rounds awaiting their retry now, over all sessions.
    pub open_rounds: usize,
    /// JSON-RPC messages decoded.
    pub messages: u64,
    /// Pending requests dropped because a session's table was full.
    pub evicted_pending: u64,
    /// Pending requests overwritten by a new request with the same direction and id.
    pub replaced_pending: u64,
    /// Answers that matched no pending request.
    pub unpaired_answers: u64,
    /// Sessions dropped because `max_sessions` was reached.
    pub evicted_sessions: u64,
    /// Payloads (or batch elements) that were not JSON-RPC.
    pub decode_errors: u64,
    /// Messages the capture or a size limit cut, reported from their first bytes
    /// (`truncated`, with `payload_bytes` their real size).
    pub partial_messages: u64,
    /// Cut messages whose first bytes did not say what they were (not counted as messages).
    pub partial_unreadable: u64,
    /// Cut client→server messages the policy judged by their first bytes (method, tool name;
    /// their arguments unchecked: a `truncated_request` finding).
    pub cut_judged: u64,
    /// `notifications/cancelled` that named a pending request.
    pub cancelled: u64,
    /// Requests whose `MCP-Protocol-Version` differed from their session's version.
    pub protocol_version_mismatches: u64,
    /// Bearer tokens that were not readable JWTs.
    pub jwt_errors: u64,
    /// JWTs that configured keys did not verify (bad signature, no matching key, unsupported
    /// algorithm, expired, not yet valid).
    pub jwt_unverified: u64,
    /// Configured keys that could not be used (skipped by [`McpTracker::new`]).
    pub key_errors: u64,
    /// Servers with a catalogue now.
    pub catalog_servers: usize,
    /// Complete lists of servers beyond `max_catalog_servers`, not kept.
    pub catalog_dropped: u64,
    /// Tool definitions that drifted.
    pub tool_drifts: u64,
    /// Header verification failures (see [`super::verify`]).
    pub verification_failures: u64,
    /// `Mcp-Param-*` headers of calls to tools whose schema was not known.
    pub unverified_param_headers: u64,
    /// Stateless requests whose response stream closed before their answer.
    pub streams_cancelled: u64,
    /// Retries (`inputResponses`/`requestState`) tied to the `input_required` round they answer.
    pub input_required_retries: u64,
    /// Retries that matched no remembered round (joined late, or evicted).
    pub unmatched_retries: u64,
    /// Input-required rounds dropped unanswered to stay within the per-session bound.
    pub evicted_rounds: u64,
    /// Connection exchanges forgotten because too many connections were open at once.
    pub dropped_exchanges: u64,
    /// Ended sessions (`session_end` records) whose start the agent did not see
    /// (`joined_mid_stream`).
    pub sessions_joined_mid_stream: u64,
    /// Client→server messages judged by the policy.
    pub judged: u64,
    /// Verdict records written.
    pub verdicts: u64,
    /// Catalogue records written.
    pub catalog_records: u64,
    /// `session_start` and `session_update` records written.
    pub session_reports: u64,
}

/// A configuration [`McpTracker::try_new`] cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("identity key for {}: {source}", server.as_deref().unwrap_or("all servers"))]
    Key {
        /// The [`ServerConfig::server`](super::ServerConfig::server), `None` for the global
        /// identity configuration.
        server: Option<String>,
        #[source]
        source: KeyError,
    },
}

/// A [`ServerConfig`](super::ServerConfig) with its keys parsed.
#[derive(Debug)]
struct ServerRule {
    server: String,
    session_id: Option<SessionIdLocation>,
    identity: Option<IdentityResolver>,
}

impl ServerRule {
    /// Whether the rule names `addr` (any path) or `addr` + `path`.
    fn matches(&self, addr: &str, path: &str) -> bool {
        match self.server.strip_prefix(addr) {
            Some("") => true,
            Some(rest) => rest == path,
            None => false,
        }
    }

    /// Whether the rule is about a server at `addr` (whatever its path).
    fn is_at(&self, addr: &str) -> bool {
        self.server
            .strip_prefix(addr)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Where an exchange's session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SidOrigin {
    RequestHeader,
    RequestQuery,
    ResponseHeader,
    /// The connection was bound by a legacy SSE `endpoint` event.
    BoundConn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionId {
    value: String,
    origin: SidOrigin,
}

impl SessionId {
    fn in_query(&self) -> bool {
        matches!(self.origin, SidOrigin::RequestQuery | SidOrigin::BoundConn)
    }
}

/// What an answer or notification changes beyond its session (done once the session's
/// borrow ends).
#[derive(Debug, Default)]
struct Effects {
    list: Option<(ListKind, CompleteList)>,
    list_changed: Option<ListKind>,
    discover: Option<DiscoverInfo>,
    cancelled: bool,
    /// The request of the connection's exchange was answered.
    answered: Option<RpcId>,
    retry_matched: bool,
    retry_unmatched: bool,
    evicted_rounds: u64,
}

/// The HTTP exchange a connection carries now (one at a time on HTTP/1.1).
#[derive(Debug)]
struct ConnExchange {
    ep: Endpoint,
    /// The session its messages belong to.
    key: GroupKey,
    era: Era,
    /// Its single request (not in a batch), until answered.
    request: Option<RpcId>,
    /// The response head's status, once seen.
    status: Option<u16>,
}

/// A client→server request the capture cut before its `id` (node writes `id` last): reported
/// once the answer on its HTTP exchange names the id.
#[derive(Debug)]
struct CutRequest {
    key: GroupKey,
    era: Era,
    method: String,
    /// `params.name` / `params.uri` as far as the first bytes said them.
    cut_params: Option<Value>,
    ts_ns: u64,
    size: u64,
    lost: u64,
}

/// Tracks MCP sessions across the payloads of every observed connection.
#[derive(Debug)]
pub struct McpTracker {
    cfg: McpConfig,
    limits: DecodeLimits,
    identity: IdentityResolver,
    servers: Vec<ServerRule>,
    /// Boxed: the map keeps ~1.1–2× its length in slots, and a slot holds only the key and
    /// a pointer instead of a whole session.
    sessions: HashMap<SessionKey, Box<McpSession>>,
    /// Each connection's current exchange: answers (which carry no `_meta` version) follow its
    /// session and era.
    exchanges: ConnMap<ConnExchange>,
    /// Cut requests waiting for their answer's id, by connection (bounded like `exchanges`).
    cut_requests: ConnMap<CutRequest>,
    /// Connections whose request body in progress, too large to read, was judged by its
    /// first bytes before its end ([`Self::on_cut_prefix`]): its `Partial` is not judged again.
    prejudged: std::collections::HashSet<ConnKey, ConnHash>,
    /// Identity header fingerprint → subject, for stateless grouping.
    subjects: HashMap<[u8; 32], Option<String>>,
    /// Connection → ids of the session-id sessions whose exchanges used it.
    conn_sessions: ConnMap<Vec<Arc<str>>>,
    /// Connections bound to a session id by a legacy SSE `endpoint` event.
    bound_conns: ConnMap<String>,
    /// Open connections first seen mid-stream (they predate the agent); a session created on
    /// one is marked `joined_mid_stream`. Entries go when the connection closes.
    adopted_conns: HashSet<ConnKey, ConnHash>,
    catalogs: Catalogs,
    /// Session ids ended by DELETE or 404: late messages carrying them are still reported
    /// but do not resurrect the session.
    ended_ids: Tombstones,
    counters: McpStats,
    /// The policy stage, when one is configured.
    policy: Option<Box<dyn RequestPolicy>>,
    /// Who the observed processes are (for the policy's process conditions).
    processes: ProcessTable,
    /// Servers (`"ip:port/path"`) seen answering with a session id.
    issuing_servers: HashSet<String>,
    /// Client→server messages of the payload being processed, judged once the payload's
    /// headers have been applied to the session (identity).
    to_judge: Vec<ToJudge>,
}

/// A client→server message waiting for its judgement.
#[derive(Debug)]
struct ToJudge {
    /// `None` for a body that was not JSON-RPC.
    key: Option<GroupKey>,
    era: Era,
    method: String,
    id: Option<RpcId>,
    name: Option<String>,
    params: Option<Value>,
    is_request: bool,
    /// Handshake state before this message.
    state_before: SessionState,
    findings: Vec<Reason>,
    /// What to show as the offending request when there is no JSON-RPC message.
    evidence: Option<Value>,
    /// Cut before all of it was read (see [`ReasonKind::TruncatedRequest`]).
    cut: bool,
}

impl McpTracker {
    /// A tracker; key material that cannot be used is logged, counted
    /// ([`McpStats::key_errors`]) and skipped. See [`McpTracker::try_new`] to refuse it.
    pub fn new(cfg: McpConfig) -> Self {
        let (identity, errors) = IdentityResolver::lenient(cfg.identity.clone());
        let mut key_errors = errors.len() as u64;
        for e in &errors {
            tracing::warn!(error = %e, "identity key skipped");
        }
        let servers = cfg
            .servers
            .iter()
            .map(|s| ServerRule {
                server: s.server.clone(),
                session_id: s.session_id.clone(),
                identity: s.identity.clone().map(|id| {
                    let (resolver, errors) = IdentityResolver::lenient(id);
                    key_errors += errors.len() as u64;
                    for e in &errors {
                        tracing::warn!(server = %s.server, error = %e, "identity key skipped");
                    }
                    resolver
                }),
            })
            .collect();
        let mut tracker = McpTracker::with_parts(cfg, identity, servers);
        tracker.counters.key_errors = key_errors;
        tracker
    }

    /// A tracker, or the first configured key that cannot be used.
    pub fn try_new(cfg: McpConfig) -> Result<Self, ConfigError> {
        let strict = |id: IdentityConfig, server: Option<&str>| {
            IdentityResolver::new(id).map_err(|source| ConfigError::Key {
                server: server.map(str::to_string),
                source,
            })
        };
        let identity = strict(cfg.identity.clone(), None)?;
        let mut servers = Vec::with_capacity(cfg.servers.len());
        for s in &cfg.servers {
            servers.push(ServerRule {
                server: s.server.clone(),
                session_id: s.session_id.clone(),
                identity: match &s.identity {
                    Some(id) => Some(strict(id.clone(), Some(&s.server))?),
                    None => None,
                },
            });
        }
        Ok(McpTracker::with_parts(cfg, identity, servers))
    }

    fn with_parts(cfg: McpConfig, identity: IdentityResolver, servers: Vec<ServerRule>) -> Self {
        let limits = DecodeLimits {
            max_body_bytes: cfg.max_payload_bytes,
            ..DecodeLimits::default()
        };
        let ended_ids = Tombstones::new(cfg.max_sessions);
        let catalogs = Catalogs::new(cfg.max_catalog_servers);
        McpTracker {
            cfg,
            limits,
            identity,
            servers,
            sessions: HashMap::new(),
            exchanges: ConnMap::default(),
            cut_requests: ConnMap::default(),
            prejudged: Default::default(),
            subjects: HashMap::new(),
            conn_sessions: ConnMap::default(),
            bound_conns: ConnMap::default(),
            adopted_conns: HashSet::default(),
            catalogs,
            ended_ids,
            counters: McpStats::default(),
            policy: None,
            processes: ProcessTable::default(),
            issuing_servers: HashSet::new(),
            to_judge: Vec::new(),
        }
    }

    /// Judges every client→server message with `policy` from now on (replacing any other).
    pub fn set_policy(&mut self, policy: Box<dyn RequestPolicy>) {
        self.policy = Some(policy);
    }

    /// The policy stage, to reload it or accept a pinned definition.
    pub fn policy_mut(&mut self) -> Option<&mut (dyn RequestPolicy + 'static)> {
        self.policy.as_deref_mut()
    }

    /// One JSON-RPC payload: a request body, a JSON response body, or one SSE event's `data`.
    pub fn on_payload(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        payload: &[u8],
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let decoded = match decode_with(payload, &self.limits) {
            Ok(decoded) => decoded,
            Err(RpcError::EmptyBody { .. }) => return,
            Err(error) => {
                if flow == Flow::ServerToClient && self.bind_endpoint_event(ep, payload) {
                    return;
                }
                if flow == Flow::ClientToServer {
                    self.exchanges.remove(&(ep.pid, ep.conn_id.clone()));
                    self.judge_malformed(ep, http, payload, &error, ts_ns, out);
                }
                self.counters.decode_errors += 1;
                tracing::debug!(pid = ep.pid, conn = %ep.conn_id, %error, "payload is not JSON-RPC");
                return;
            }
        };
        if flow == Flow::ServerToClient {
            let answer_id = decoded.messages.iter().find_map(|m| match m {
                Ok(RpcMessage::Response { id, .. }) => Some(id.clone()),
                Ok(RpcMessage::Error { id: Some(id), .. }) => Some(id.clone()),
                _ => None,
            });
            if let Some(id) = answer_id {
                self.flush_cut_request(ep, http, id, out);
            }
        }
        let sid = self.exchange_session_id(ep, http);
        let (key, era) = self.group_key(ep, http, flow, sid.as_ref(), &decoded.messages);
        if flow == Flow::ClientToServer {
            let request = match decoded.messages.as_slice() {
                [Ok(RpcMessage::Request { id, .. })] if !decoded.batch => Some(id.clone()),
                _ => None,
            };
            self.begin_exchange(ep, &key, era, request);
        }
        for message in decoded.messages {
            match message {
                Ok(message) => {
                    self.counters.messages += 1;
                    self.on_message(
                        ep,
                        http,
                        flow,
                        (&key, era),
                        sid.as_ref(),
                        message,
                        decoded.batch,
                        ts_ns,
                        out,
                    );
                }
                Err(error) => {
                    self.counters.decode_errors += 1;
                    tracing::debug!(pid = ep.pid, conn = %ep.conn_id, %error, "batch element is not JSON-RPC");
                    if flow == Flow::ClientToServer && self.policy.is_some() {
                        let item = malformed(payload, &error);
                        self.to_judge.push(item);
                    }
                }
            }
        }
        self.observe_exchange(ep, http, &key, flow == Flow::ClientToServer, ts_ns);
        if !self.to_judge.is_empty() {
            self.judge_pending(ep, http, payload.len(), ts_ns, out);
        }
    }

    /// A message the capture or a size limit cut ([`crate::http::HttpEvent::Partial`]): it is
    /// reported from what its first bytes say (id, method, error code and message), marked
    /// `truncated`, with `payload_bytes` its real size and `capture_lost_bytes` what the
    /// capture missed. An answer whose id came after the cut takes its HTTP exchange's
    /// request id; a request whose id came after the cut waits for its answer to name it.
    /// A client→server one is judged at once by what its first bytes say (method, tool
    /// name), with a `truncated_request` finding and its arguments unchecked: a deny rule
    /// must not be escaped by a body too large to read.
    #[allow(clippy::too_many_arguments)]
    pub fn on_partial_payload(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        head: &[u8],
        (size, lost): (u64, u64),
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let conn = (ep.pid, ep.conn_id.clone());
        let salvaged = crate::rpc::salvage(head);
        let cut_params = salvaged.as_ref().map(cut_params);
        // Judged before its end already (`on_cut_prefix`): reported now, not judged again.
        let prejudged = flow == Flow::ClientToServer && self.prejudged.remove(&conn);
        if let Some(s) = &salvaged {
            match (&s.method, &s.id) {
                (Some(method), None)
                    if flow == Flow::ClientToServer && !method.starts_with("notifications/") =>
                {
                    let method = method.clone();
                    self.park_cut_request(
                        ep,
                        http,
                        (method.clone(), cut_params.clone()),
                        (size, lost),
                        ts_ns,
                    );
                    // Judged now, not when its answer names it: too late to stop it then.
                    if !prejudged {
                        let params = cut_params.as_ref();
                        self.judge_cut(ep, http, (&method, None), params, size, ts_ns, out);
                    }
                    return;
                }
                (None, Some(id)) if flow == Flow::ServerToClient => {
                    self.flush_cut_request(ep, http, id.clone(), out);
                }
                _ => {}
            }
        }
        let exchange_request = || self.exchanges.get(&conn).and_then(|x| x.request.clone());
        let message = salvaged.and_then(|s| match (s.method, s.id) {
            (Some(method), Some(id)) => Some(RpcMessage::Request {
                id,
                method,
                params: None,
            }),
            // Without an id, a notification (MCP names them all `notifications/…`); a
            // request whose id came after the cut (node writes it last) was parked above.
            (Some(method), None) if method.starts_with("notifications/") => {
                Some(RpcMessage::Notification {
                    method,
                    params: None,
                })
            }
            (None, id) if s.error => Some(RpcMessage::Error {
                id: id.or_else(exchange_request),
                code: s.error_code.unwrap_or_default(),
                message: s.error_message.unwrap_or_default(),
                data: None,
            }),
            (None, id) if s.result => id.or_else(exchange_request).map(|id| RpcMessage::Response {
                id,
                result: Value::Null,
            }),
            _ => None,
        });
        let Some(message) = message else {
            self.counters.partial_unreadable += 1;
            tracing::debug!(pid = ep.pid, conn = %ep.conn_id, size, "a cut message says nothing readable");
            if flow == Flow::ClientToServer && !prejudged {
                self.judge_cut(ep, http, ("", None), None, size, ts_ns, out);
            }
            return;
        };
        self.counters.partial_messages += 1;
        let sid = self.exchange_session_id(ep, http);
        let messages = [Ok(message)];
        let (key, era) = self.group_key(ep, http, flow, sid.as_ref(), &messages);
        let [Ok(message)] = messages else {
            return;
        };
        if flow == Flow::ClientToServer {
            let request = match &message {
                RpcMessage::Request { id, .. } => Some(id.clone()),
                _ => None,
            };
            self.begin_exchange(ep, &key, era, request);
        }
        let from = out.len();
        self.counters.messages += 1;
        self.on_message(
            ep,
            http,
            flow,
            (&key, era),
            sid.as_ref(),
            message,
            false,
            ts_ns,
            out,
        );
        self.observe_exchange(ep, http, &key, flow == Flow::ClientToServer, ts_ns);
        mark_cut(&mut out[from..], flow, ts_ns, (size, lost));
        name_cut_messages(&mut out[from..], ts_ns, cut_params.as_ref());
        if prejudged {
            self.to_judge.clear();
        } else if !self.to_judge.is_empty() {
            for item in &mut self.to_judge {
                item.cut = true;
                item.name = item
                    .name
                    .take()
                    .or_else(|| extract::target_name(&item.method, cut_params.as_ref()));
            }
            self.counters.cut_judged += self.to_judge.len() as u64;
            self.judge_pending(ep, http, size as usize, ts_ns, out);
        }
    }

    /// A request body too large to read whole, before its end
    /// ([`crate::http::HttpEvent::CutPrefix`]: its first 64 KiB, or what a held write
    /// carried): judged now by what its first bytes say, so that a deny can stop it before
    /// its last byte leaves; its `Partial` at the end reports it without judging it again.
    pub fn on_cut_prefix(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        head: &[u8],
        size: u64,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        if self.policy.is_none() {
            return;
        }
        let salvaged = crate::rpc::salvage(head);
        let cut_params = salvaged.as_ref().map(cut_params);
        let (method, id) = salvaged
            .map(|s| (s.method.unwrap_or_default(), s.id))
            .unwrap_or_default();
        let params = cut_params.as_ref();
        self.judge_cut(ep, http, (&method, id), params, size, ts_ns, out);
        if self.prejudged.len() >= self.cfg.max_sessions {
            self.prejudged.clear();
        }
        self.prejudged.insert((ep.pid, ep.conn_id.clone()));
    }

    /// Judges a cut client→server message before it is reported (its id came after the cut,
    /// or its body is still coming) or when it never will be (nothing in its first bytes was
    /// readable): `method` is `""` when even that was not readable.
    #[allow(clippy::too_many_arguments)]
    fn judge_cut(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        (method, id): (&str, Option<RpcId>),
        cut_params: Option<&Value>,
        size: u64,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        if self.policy.is_none() {
            return;
        }
        let sid = self.exchange_session_id(ep, http);
        let probe = [Ok(RpcMessage::Notification {
            method: method.to_string(),
            params: None,
        })];
        let (key, era) = if method.is_empty() {
            (None, Era::Handshake)
        } else {
            let (k, e) = self.group_key(ep, http, Flow::ClientToServer, sid.as_ref(), &probe);
            (Some(k), e)
        };
        let state_before = key
            .as_ref()
            .and_then(|k| self.sessions.get(&(ep.pid, k.clone())))
            .map_or(SessionState::New, |s| s.state);
        self.to_judge.push(ToJudge {
            key,
            era,
            method: method.to_string(),
            id,
            name: extract::target_name(method, cut_params),
            params: None,
            is_request: !method.starts_with("notifications/"),
            state_before,
            findings: Vec::new(),
            // Its size only: bytes that said nothing readable are not shown (they are not
            // JSON the redaction could walk, and may hold a secret).
            evidence: method
                .is_empty()
                .then(|| serde_json::json!({ "body_bytes": size, "truncated": true })),
            cut: true,
        });
        self.counters.cut_judged += 1;
        self.judge_pending(ep, http, size as usize, ts_ns, out);
    }

    /// A cut request without its id waits on its connection for the answer to name it.
    fn park_cut_request(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        (method, cut_params): (String, Option<Value>),
        (size, lost): (u64, u64),
        ts_ns: u64,
    ) {
        let conn = (ep.pid, ep.conn_id.clone());
        let sid = self.exchange_session_id(ep, http);
        let probe = [Ok(RpcMessage::Notification {
            method: method.clone(),
            params: None,
        })];
        let (key, era) = self.group_key(ep, http, Flow::ClientToServer, sid.as_ref(), &probe);
        self.begin_exchange(ep, &key, era, None);
        if self.cut_requests.len() >= self.cfg.max_sessions
            && !self.cut_requests.contains_key(&conn)
        {
            self.counters.partial_unreadable += self.cut_requests.len() as u64;
            self.cut_requests.clear();
        }
        let cut = CutRequest {
            key,
            era,
            method,
            cut_params,
            ts_ns,
            size,
            lost,
        };
        if self.cut_requests.insert(conn, cut).is_some() {
            self.counters.partial_unreadable += 1; // never answered
        }
    }

    /// The answer on a connection named `id`: a cut request waiting there is reported now,
    /// with that id and its own time, before the answer.
    fn flush_cut_request(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        id: RpcId,
        out: &mut Vec<Record>,
    ) {
        let conn = (ep.pid, ep.conn_id.clone());
        let Some(cut) = self.cut_requests.remove(&conn) else {
            return;
        };
        if let Some(ex) = self.exchanges.get_mut(&conn) {
            ex.request.get_or_insert_with(|| id.clone());
        }
        let sid = self.exchange_session_id(ep, http);
        self.counters.partial_messages += 1;
        self.counters.messages += 1;
        let from = out.len();
        let request = RpcMessage::Request {
            id,
            method: cut.method,
            params: None,
        };
        self.on_message(
            ep,
            http,
            Flow::ClientToServer,
            (&cut.key, cut.era),
            sid.as_ref(),
            request,
            false,
            cut.ts_ns,
            out,
        );
        // Judged when it was parked (`judge_cut`), not again now that its answer named it.
        self.to_judge.clear();
        mark_cut(
            &mut out[from..],
            Flow::ClientToServer,
            cut.ts_ns,
            (cut.size, cut.lost),
        );
        name_cut_messages(&mut out[from..], cut.ts_ns, cut.cut_params.as_ref());
    }

    /// An HTTP exchange's response head was seen (even with no body).
    ///
    /// * The session header on the answer to a request that had none (the `initialize`
    ///   exchange) binds the connection's pending session to that id.
    /// * A bodiless request (GET stream, DELETE) of a known session: its connection, identity
    ///   and `MCP-Protocol-Version` are noted.
    /// * `DELETE` answered 2xx ends the request's session (`"delete"`); any request carrying
    ///   a session id answered 404 ends it (`"not_found"`).
    pub fn on_response_head(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let conn = (ep.pid, ep.conn_id.clone());
        if http.method.eq_ignore_ascii_case("POST") {
            if let Some(ex) = self.exchanges.get_mut(&conn) {
                ex.status = http.status;
                if ex.era == Era::Stateless {
                    return; // the revision has no sessions to bind or end
                }
            }
        } else {
            self.exchanges.remove(&conn);
        }
        let Some(sid) = self.request_session_id(ep, http) else {
            if let Some(sid) = self.response_session_id(ep, http) {
                self.note_issuing_server(server_label(ep, http));
                self.bind_connection(ep.pid, &ep.conn_id, &sid);
            }
            return;
        };
        let key = GroupKey::Header(sid.value.into());
        let bodiless = !http.method.eq_ignore_ascii_case("POST");
        self.observe_exchange(ep, http, &key, bodiless, ts_ns);
        let reason = match http.status {
            Some(s) if http.method.eq_ignore_ascii_case("DELETE") && (200..300).contains(&s) => {
                EndReason::Delete
            }
            Some(404) => EndReason::NotFound,
            _ => return,
        };
        if let GroupKey::Header(sid) = &key {
            self.ended_ids.insert(ep.pid, sid, ts_ns);
        }
        self.end(&(ep.pid, key), SessionStatus::Ended, reason, ts_ns, out);
    }

    /// A connection of process `pid` closed: sessions grouped by that connection end; sessions
    /// with an id note it (they end once all their connections stay closed, see
    /// [`McpTracker::on_tick`]).
    ///
    /// A stateless request still unanswered on that connection was cancelled: its response
    /// stream is gone ([`CancelRecord`]).
    /// Connection `conn_id` of `pid` was first seen mid-stream (it predates the agent).
    pub fn on_conn_adopted(&mut self, pid: u32, conn_id: &str) {
        self.adopted_conns.insert((pid, conn_id.to_string()));
    }

    pub fn on_conn_closed(&mut self, pid: u32, conn_id: &str, ts_ns: u64, out: &mut Vec<Record>) {
        let conn = (pid, conn_id.to_string());
        if self.cut_requests.remove(&conn).is_some() {
            self.counters.partial_unreadable += 1; // its answer never named it
        }
        self.prejudged.remove(&conn);
        if let Some(ex) = self.exchanges.remove(&conn) {
            self.cancel_stream(ex, ts_ns, out);
        }
        self.bound_conns.remove(&conn);
        self.adopted_conns.remove(&conn);
        for sid in self.conn_sessions.remove(&conn).unwrap_or_default() {
            if let Some(s) = self.sessions.get_mut(&(pid, GroupKey::Header(sid))) {
                s.remove_conn(conn_id, ts_ns);
            }
        }
        self.end(
            &(pid, GroupKey::Conn(conn_id.to_string())),
            SessionStatus::Ended,
            EndReason::Closed,
            ts_ns,
            out,
        );
    }

    /// Periodic, with the kernel clock's `now`. A session with no live pending request ends
    /// * `"closed"` (at the time its last connection closed) when all its connections have
    ///   been closed for at least the close grace period;
    /// * `"idle"` (at its last message) when it had no message for longer than the idle
    ///   timeout.
    ///
    /// Stateless-era sessions use [`McpConfig::stateless_idle_gap_ns`] as their idle timeout.
    pub fn on_tick(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let idle = self.cfg.idle_timeout_ns;
        let gap = self.cfg.stateless_idle_gap_ns;
        let grace = self.cfg.close_grace_ns;
        self.ended_ids.expire(now_ns, idle);
        self.report_active(now_ns, out);
        let mut ending: Vec<(u64, SessionKey, EndReason, u64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.live_pending() == 0)
            .filter_map(|(k, s)| {
                let timeout = match k.1 {
                    GroupKey::Stateless(_) => gap,
                    _ => idle,
                };
                let closed = s
                    .all_closed_ns
                    .filter(|t| s.conns.is_empty() && now_ns.saturating_sub(*t) >= grace);
                if let Some(t) = closed {
                    Some((EndReason::Closed, t.max(s.last_ns)))
                } else if now_ns.saturating_sub(s.last_ns) > timeout {
                    Some((EndReason::Idle, s.last_ns))
                } else {
                    None
                }
                .map(|(reason, at)| (s.started_ns, k.clone(), reason, at))
            })
            .collect();
        ending.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, key, reason, at) in ending {
            self.end(&key, SessionStatus::Ended, reason, at, out);
        }
    }

    /// The agent is stopping: a summary for every open session (`"shutdown"`, `"active"`).
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let mut open: Vec<(u64, SessionKey, Box<McpSession>)> = self
            .sessions
            .drain()
            .map(|(k, s)| (s.started_ns, k, s))
            .collect();
        open.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, s) in open {
            let mut summary = s.summary(SessionStatus::Active, Some(EndReason::Shutdown), now_ns);
            summary.process = self.identity_of(s.pid, &s.comm);
            self.counters.sessions_joined_mid_stream += u64::from(summary.joined_mid_stream);
            out.push(Record::SessionEnd(summary));
        }
        self.exchanges.clear();
        self.subjects.clear();
        self.conn_sessions.clear();
        self.bound_conns.clear();
    }

    pub fn stats(&self) -> McpStats {
        McpStats {
            sessions: self.sessions.len(),
            pending: self.sessions.values().map(|s| s.pending()).sum(),
            open_rounds: self.sessions.values().map(|s| s.rounds.len()).sum(),
            catalog_servers: self.catalogs.len(),
            catalog_dropped: self.catalogs.dropped,
            ..self.counters
        }
    }

    /// The sessions tracked now, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = &McpSession> {
        self.sessions.values().map(|s| &**s)
    }

    /// What server `"ip:port/path"` was seen to expose (for the policy stage).
    pub fn catalog(&self, server: &str) -> Option<&ToolCatalog> {
        self.catalogs.get(server)
    }

    /// The configured rule for the server end of an exchange.
    fn rule_index(&self, ep: &Endpoint, http: &HttpMeta) -> Option<usize> {
        if self.servers.is_empty() {
            return None;
        }
        let addr = ep.server_addr();
        let path = http.path_only();
        self.servers.iter().position(|r| r.matches(addr, path))
    }

    fn location(&self, ep: &Endpoint, http: &HttpMeta) -> Option<&SessionIdLocation> {
        self.rule_index(ep, http)
            .and_then(|i| self.servers.get(i))
            .and_then(|r| r.session_id.as_ref())
    }

    fn request_session_id(&self, ep: &Endpoint, http: &HttpMeta) -> Option<SessionId> {
        match self.location(ep, http) {
            Some(SessionIdLocation::Query(name)) => {
                query_param(http.path, name).map(|value| SessionId {
                    value,
                    origin: SidOrigin::RequestQuery,
                })
            }
            Some(SessionIdLocation::Header(name)) => {
                header_value(http.request_headers, name).map(|v| SessionId {
                    value: v.to_string(),
                    origin: SidOrigin::RequestHeader,
                })
            }
            None => {
                header_value(http.request_headers, &self.cfg.session_header).map(|v| SessionId {
                    value: v.to_string(),
                    origin: SidOrigin::RequestHeader,
                })
            }
        }
    }

    fn response_session_id(&self, ep: &Endpoint, http: &HttpMeta) -> Option<String> {
        let name = match self.location(ep, http) {
            Some(SessionIdLocation::Query(_)) => return None,
            Some(SessionIdLocation::Header(name)) => name,
            None => &self.cfg.session_header,
        };
        http.response_headers
            .and_then(|h| header_value(h, name))
            .map(str::to_string)
    }

    /// The session id an exchange belongs to (rules 1–3 of the module docs).
    fn exchange_session_id(&self, ep: &Endpoint, http: &HttpMeta) -> Option<SessionId> {
        self.request_session_id(ep, http)
            .or_else(|| {
                self.response_session_id(ep, http).map(|value| SessionId {
                    value,
                    origin: SidOrigin::ResponseHeader,
                })
            })
            .or_else(|| {
                if self.bound_conns.is_empty() {
                    return None;
                }
                self.bound_conns
                    .get(&(ep.pid, ep.conn_id.clone()))
                    .map(|value| SessionId {
                        value: value.clone(),
                        origin: SidOrigin::BoundConn,
                    })
            })
    }

    /// A payload that is not JSON on a server→client stream may be a legacy SSE `endpoint`
    /// event (`/messages?session_id=…`): for a server configured with a query-parameter
    /// session id, it binds this connection (the GET stream that will carry the answers) to
    /// that id. Returns whether it did.
    fn bind_endpoint_event(&mut self, ep: &Endpoint, payload: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(payload) else {
            return false;
        };
        let text = text.trim();
        if !(text.starts_with('/') || text.starts_with("http")) {
            return false;
        }
        let addr = ep.server_addr();
        let sid = self.servers.iter().find_map(|r| match &r.session_id {
            Some(SessionIdLocation::Query(name)) if r.is_at(addr) => query_param(text, name),
            _ => None,
        });
        let Some(sid) = sid else {
            return false;
        };
        if self.bound_conns.len() >= self.cfg.max_sessions {
            // Bounded: connections normally leave through `on_conn_closed`.
            self.bound_conns.clear();
        }
        self.bound_conns.insert((ep.pid, ep.conn_id.clone()), sid);
        true
    }

    /// Which session a payload belongs to (rules in the module docs), and its era.
    fn group_key(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        sid: Option<&SessionId>,
        messages: &[Result<RpcMessage, RpcError>],
    ) -> (GroupKey, Era) {
        let conn = (ep.pid, ep.conn_id.clone());
        if flow == Flow::ServerToClient {
            let exchange = self.exchanges.get(&conn);
            if let Some(ex) = exchange.filter(|ex| matches!(ex.key, GroupKey::Stateless(_))) {
                return (ex.key.clone(), ex.era);
            }
            let era = exchange.map_or(Era::Handshake, |ex| ex.era);
            return (self.handshake_key(ep, sid), era);
        }
        let first = messages.iter().find_map(|m| match m {
            Ok(RpcMessage::Request { method, params, .. })
            | Ok(RpcMessage::Notification { method, params }) => {
                Some((method.as_str(), params.as_ref()))
            }
            _ => None,
        });
        let era = first.map_or(Era::Handshake, |(method, params)| {
            request_era(
                method,
                params,
                http.request_header(PROTOCOL_VERSION_HEADER),
                sid.is_some(),
            )
        });
        if era == Era::Handshake {
            return (self.handshake_key(ep, sid), era);
        }
        let meta = first.and_then(|(_, params)| StatelessMeta::from_params(params));
        let key = match meta {
            Some(meta) => {
                let client = meta.client.unwrap_or_default();
                let subject = self.subject(ep, http);
                GroupKey::Stateless(Box::new(StatelessKey::new(
                    server_label(ep, http),
                    stateless::ip_of(ep.client_addr()).to_string(),
                    client.name.unwrap_or_default(),
                    client.version.unwrap_or_default(),
                    subject,
                )))
            }
            // A stateless request without `_meta` (not conformant): the client of the
            // connection's previous stateless exchange, else an anonymous one.
            None => match self.exchanges.get(&conn) {
                Some(ex) if matches!(ex.key, GroupKey::Stateless(_)) => ex.key.clone(),
                _ => {
                    let subject = self.subject(ep, http);
                    GroupKey::Stateless(Box::new(StatelessKey::new(
                        server_label(ep, http),
                        stateless::ip_of(ep.client_addr()).to_string(),
                        String::new(),
                        String::new(),
                        subject,
                    )))
                }
            },
        };
        (key, era)
    }

    /// Rules 1–3 and 5: the session id's session, else the connection's.
    fn handshake_key(&mut self, ep: &Endpoint, sid: Option<&SessionId>) -> GroupKey {
        match sid {
            Some(sid) => {
                if sid.origin == SidOrigin::ResponseHeader {
                    self.bind_connection(ep.pid, &ep.conn_id, &sid.value);
                }
                GroupKey::Header(sid.value.as_str().into())
            }
            None => GroupKey::Conn(ep.conn_id.clone()),
        }
    }

    /// A client→server payload starts the connection's next exchange.
    fn begin_exchange(&mut self, ep: &Endpoint, key: &GroupKey, era: Era, request: Option<RpcId>) {
        let conn = (ep.pid, ep.conn_id.clone());
        if self.exchanges.len() >= self.cfg.max_sessions && !self.exchanges.contains_key(&conn) {
            // Bounded: connections normally leave through `on_conn_closed`.
            self.counters.dropped_exchanges += self.exchanges.len() as u64;
            self.exchanges.clear();
        }
        self.exchanges.insert(
            conn,
            ConnExchange {
                ep: ep.clone(),
                key: key.clone(),
                era,
                request,
                status: None,
            },
        );
    }

    /// The authenticated subject of a request (the configured user header or JWT claim),
    /// for stateless grouping; remembered per distinct identity headers.
    fn subject(&mut self, ep: &Endpoint, http: &HttpMeta) -> Option<String> {
        let rule = self.rule_index(ep, http);
        let resolver = rule
            .and_then(|i| self.servers.get(i))
            .and_then(|r| r.identity.as_ref())
            .unwrap_or(&self.identity);
        let inputs = resolver.inputs(http.request_headers);
        if inputs.iter().all(Option::is_none) {
            return None;
        }
        let fp = fingerprint(&inputs);
        if let Some(subject) = self.subjects.get(&fp) {
            return subject.clone();
        }
        let subject = resolver
            .resolve(http.request_headers, None)
            .identity
            .and_then(|i| i.user);
        if self.subjects.len() >= MAX_SUBJECTS {
            self.subjects.clear();
        }
        self.subjects.insert(fp, subject.clone());
        subject
    }

    /// The schema the catalogue knows for the tool a `tools/call` names.
    fn tool_schema<'a>(
        &'a self,
        ep: &Endpoint,
        http: &HttpMeta,
        method: &str,
        params: Option<&Value>,
    ) -> ToolSchema<'a> {
        if method != "tools/call" {
            return ToolSchema::Unknown;
        }
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return ToolSchema::Unknown;
        };
        match self
            .catalogs
            .get(&server_label(ep, http))
            .and_then(|c| c.tools.get(name))
        {
            Some(def) => ToolSchema::Known(def.input_schema.as_ref()),
            None => ToolSchema::Unknown,
        }
    }

    /// The connection of exchange `ex` closed: its stateless request, still unanswered, was
    /// cancelled (unless the server had refused it with a non-2xx status).
    fn cancel_stream(&mut self, ex: ConnExchange, ts_ns: u64, out: &mut Vec<Record>) {
        let ConnExchange {
            ep,
            key,
            era: Era::Stateless,
            request: Some(id),
            status,
        } = ex
        else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&(ep.pid, key)) else {
            return;
        };
        // The request travelled client→server; its answer would have come the other way.
        let Some(p) = s.pending.take(Flow::ServerToClient, ep.side, &id) else {
            return;
        };
        if status.is_some_and(|st| !(200..300).contains(&st)) {
            return; // refused at the HTTP level (answer without a JSON-RPC body)
        }
        s.cancelled += 1;
        s.touch(ts_ns);
        self.counters.streams_cancelled += 1;
        out.push(Record::Cancelled(CancelRecord {
            ts_ns,
            pid: ep.pid,
            comm: ep.comm.clone(),
            side: ep.side,
            local: ep.local.clone(),
            remote: ep.remote.clone(),
            conn_id: ep.conn_id.clone(),
            session_id: s.label(),
            era: Era::Stateless,
            reason: CancelReason::StreamClosed,
            id,
            method: p.method,
            name: p.name,
            call_id: p.call.as_ref().map(|c| c.call_id.clone()),
            round: p.call.as_ref().map(|c| c.round),
            requested_ns: p.ts_ns,
            elapsed_ns: ts_ns.saturating_sub(p.ts_ns),
            http_status: status,
            notifications: p.notifications,
            progress: p.progress,
        }));
    }

    /// The session held on connection `conn_id` (its `initialize` exchange) now has id `sid`.
    fn bind_connection(&mut self, pid: u32, conn_id: &str, sid: &str) {
        self.ended_ids.remove(pid, sid);
        let sid: Arc<str> = Arc::from(sid);
        if let Some(ex) = self.exchanges.get_mut(&(pid, conn_id.to_string())) {
            if ex.key == GroupKey::Conn(conn_id.to_string()) {
                ex.key = GroupKey::Header(Arc::clone(&sid));
            }
        }
        let Some(mut held) = self
            .sessions
            .remove(&(pid, GroupKey::Conn(conn_id.to_string())))
        else {
            return;
        };
        let key = (pid, GroupKey::Header(Arc::clone(&sid)));
        held.key = key.1.clone();
        match self.sessions.get_mut(&key) {
            Some(existing) => {
                let displaced = existing.absorb(*held);
                self.count(displaced);
            }
            None => {
                self.sessions.insert(key, held);
            }
        }
        self.track_conn(pid, conn_id, &sid);
    }

    /// Session `sid` used connection `conn_id`. Takes the id as the tracker already holds it,
    /// so the lookup on every exchange allocates nothing.
    fn track_conn(&mut self, pid: u32, conn_id: &str, sid: &Arc<str>) {
        let Some(s) = self
            .sessions
            .get_mut(&(pid, GroupKey::Header(Arc::clone(sid))))
        else {
            return;
        };
        if s.add_conn(conn_id) {
            // The session's own copy of its id, shared.
            let GroupKey::Header(id) = &s.key else {
                return;
            };
            self.conn_sessions
                .entry((pid, conn_id.to_string()))
                .or_default()
                .push(Arc::clone(id));
        }
    }

    /// After an exchange's payload (or bodiless head): the connection it used, and for a
    /// request, the identity and `MCP-Protocol-Version` its headers carry.
    fn observe_exchange(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        key: &GroupKey,
        request: bool,
        ts_ns: u64,
    ) {
        if let GroupKey::Header(sid) = key {
            self.track_conn(ep.pid, &ep.conn_id, sid);
        }
        if !request {
            return;
        }
        let rule = self.rule_index(ep, http);
        let resolver = rule
            .and_then(|i| self.servers.get(i))
            .and_then(|r| r.identity.as_ref())
            .unwrap_or(&self.identity);
        let Some(s) = self.sessions.get_mut(&(ep.pid, key.clone())) else {
            return;
        };
        if let Some(version) = http.request_header(PROTOCOL_VERSION_HEADER) {
            let before = s.protocol_version_mismatches;
            s.check_protocol_version(version);
            self.counters.protocol_version_mismatches += s.protocol_version_mismatches - before;
        }
        let inputs = resolver.inputs(http.request_headers);
        if inputs.iter().all(Option::is_none) {
            return;
        }
        let fingerprint = fingerprint(&inputs);
        if s.identity_inputs.as_deref() == Some(&fingerprint) {
            return;
        }
        s.identity_inputs = Some(Box::new(fingerprint));
        let now_unix_s = self
            .cfg
            .realtime_offset_ns
            .map(|off| ts_ns.saturating_add(off) / 1_000_000_000);
        let res = resolver.resolve(http.request_headers, now_unix_s);
        if let Some(e) = &res.malformed {
            self.counters.jwt_errors += 1;
            tracing::debug!(pid = ep.pid, conn = %ep.conn_id, error = %e, "bearer token is not a JWT");
        }
        if let Some(v) = res.unverified {
            self.counters.jwt_unverified += 1;
            tracing::debug!(pid = ep.pid, conn = %ep.conn_id, verification = ?v, "JWT not verified");
        }
        if let Some(identity) = res.identity {
            s.identity = Some(Box::new(identity));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_message(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        (key, era): (&GroupKey, Era),
        sid: Option<&SessionId>,
        message: RpcMessage,
        batch: bool,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let session_id = match key {
            GroupKey::Stateless(k) => Some(k.id.clone()),
            _ => sid.map(|s| s.value.clone()),
        };
        let mut rec = MessageRecord {
            ts_ns,
            pid: ep.pid,
            comm: ep.comm.clone(),
            side: ep.side,
            local: ep.local.clone(),
            remote: ep.remote.clone(),
            conn_id: ep.conn_id.clone(),
            http_method: http.method.to_string(),
            http_path: http.path.to_string(),
            http_status: http.status,
            session_id,
            era,
            direction: flow,
            kind: Kind::Request,
            id: None,
            method: None,
            name: None,
            latency_ns: None,
            error_code: None,
            error_name: None,
            error_message: None,
            tool_error: false,
            progress_token: None,
            related_id: None,
            cancelled: false,
            mcp_protocol_version: None,
            batch,
            transport: http.transport,
            result_type: None,
            input_requests: None,
            input_responses: None,
            call_id: None,
            round: None,
            subscription_id: None,
            supported_versions: None,
            required_capabilities: None,
            ttl_ms: None,
            cache_scope: None,
            verification: Vec::new(),
            params: None,
            result: None,
            error_data: None,
            truncated: false,
            payload_bytes: None,
            capture_lost_bytes: None,
            traceparent: None,
            headers: None,
            process: ProcessIdentity::default(),
            peer_pid: None,
            peer_comm: None,
        };
        let mut unverified_params = 0;
        if flow == Flow::ClientToServer {
            rec.mcp_protocol_version = http
                .request_header(PROTOCOL_VERSION_HEADER)
                .map(extract::cap_message);
            if let RpcMessage::Request { method, params, .. }
            | RpcMessage::Notification { method, params } = &message
            {
                let tool = self.tool_schema(ep, http, method, params.as_ref());
                let Verification {
                    failures,
                    unverified_params: unverified,
                } = verify::verify(
                    &RequestView {
                        headers: http.request_headers,
                        method,
                        params: params.as_ref(),
                        is_request: matches!(message, RpcMessage::Request { .. }),
                        stateless: era == Era::Stateless,
                    },
                    tool,
                );
                rec.verification = failures;
                unverified_params = unverified;
            }
            rec.traceparent = http
                .request_header(TRACEPARENT_HEADER)
                .map(extract::cap_message)
                .or_else(|| meta_traceparent(&message));
            rec.headers = self.cfg.content.headers(http.request_headers).map(|h| {
                let mut map: BTreeMap<String, String> = BTreeMap::new();
                for (n, v) in h {
                    map.entry(n)
                        .and_modify(|e| {
                            e.push_str(", ");
                            e.push_str(&v);
                        })
                        .or_insert(v);
                }
                map
            });
        }
        rec.process = self.identity_of(ep.pid, &ep.comm);
        let judge_input = match &message {
            RpcMessage::Request { method, params, id } if self.policy.is_some() => {
                Some((method.clone(), Some(id.clone()), params.clone(), true))
            }
            RpcMessage::Notification { method, params } if self.policy.is_some() => {
                Some((method.clone(), None, params.clone(), false))
            }
            _ => None,
        }
        .filter(|_| flow == Flow::ClientToServer);
        let request_sid_missing = judge_input.is_some()
            && era == Era::Handshake
            && self.request_session_id(ep, http).is_none()
            && self.issuing_servers.contains(&server_label(ep, http));
        // The request of this connection's exchange: the one a stateless response stream
        // (and an error with a null id) answers.
        let exchange_request = match flow {
            Flow::ServerToClient => self
                .exchanges
                .get(&(ep.pid, ep.conn_id.clone()))
                .and_then(|ex| ex.request.clone()),
            Flow::ClientToServer => None,
        };
        let max_items = self.cfg.max_catalog_items;
        let mut displaced = Displaced::default();
        let mut paired = None;
        let mut effects = Effects::default();
        let in_query = sid.is_some_and(SessionId::in_query);
        let session = self.session(ep, http, key, in_query, ts_ns, out);
        let (state_before, negotiated) = session.as_ref().map_or((SessionState::New, None), |s| {
            (s.state, s.negotiated_protocol_version.clone())
        });
        // The message's `params`, `result` or `error.data`, moved into the record once the
        // message has been looked at (not copied).
        let content;
        match message {
            RpcMessage::Request { id, method, params } => {
                rec.name = extract::target_name(&method, params.as_ref());
                rec.progress_token = extract::progress_token(&method, params.as_ref(), true);
                rec.input_responses = stateless::input_response_keys(params.as_ref());
                if let Some(s) = session {
                    s.on_call(&method, params.as_ref(), true);
                    let mut pending = Pending::new(method.clone(), rec.name.clone(), ts_ns);
                    pending.era = era;
                    pending.progress_token =
                        rec.progress_token.as_ref().and_then(RpcId::from_value);
                    if ListKind::from_method(&method).is_some() {
                        pending.cursor = params
                            .as_ref()
                            .and_then(|p| p.get("cursor"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                    }
                    if MRTR_METHODS.contains(&method.as_str()) {
                        let args = stateless::args_digest(params.as_ref());
                        pending.args = Some(args);
                        let state = stateless::state_digest(
                            params.as_ref().and_then(|p| p.get("requestState")),
                        );
                        if rec.input_responses.is_some() || state.is_some() {
                            match s
                                .rounds
                                .take(flow, &method, rec.name.as_deref(), state, args)
                            {
                                Some(open) => {
                                    let call = CallRound {
                                        call_id: open.call.call_id,
                                        round: open.call.round.saturating_add(1),
                                    };
                                    rec.call_id = Some(call.call_id.clone());
                                    rec.round = Some(call.round);
                                    pending.call = Some(call);
                                    effects.retry_matched = true;
                                }
                                None => effects.retry_unmatched = true,
                            }
                        }
                    }
                    s.on_verification(&rec.verification, &method, Some(&id));
                    displaced = s.pending.insert(flow, ep.side, id.clone(), pending);
                }
                rec.id = Some(id);
                rec.method = Some(method);
                content = params;
            }
            RpcMessage::Notification { method, params } => {
                rec.kind = Kind::Notification;
                rec.progress_token = extract::progress_token(&method, params.as_ref(), false);
                rec.subscription_id = stateless::subscription_id(params.as_ref());
                if method == "notifications/cancelled" {
                    rec.related_id = params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(RpcId::from_value);
                }
                effects.list_changed = ListKind::from_list_changed(&method);
                if let Some(s) = session {
                    s.on_call(&method, params.as_ref(), false);
                    if let Some(token) = rec.progress_token.as_ref().and_then(RpcId::from_value) {
                        // Progress flows opposite to the request that asked for it.
                        rec.related_id = s
                            .pending
                            .request_for_token(flow.opposite(), ep.side, &token)
                            .cloned();
                    }
                    if let Some(id) = rec
                        .related_id
                        .as_ref()
                        .filter(|_| method == "notifications/cancelled")
                    {
                        // The cancelled request was sent in the same direction.
                        if s.pending.cancel(flow, ep.side, id) {
                            s.on_cancelled();
                            effects.cancelled = true;
                        }
                    }
                    if rec.related_id.is_none() {
                        // A subscription's notification: the listen request, while open.
                        rec.related_id = rec
                            .subscription_id
                            .clone()
                            .filter(|sub| s.pending.contains(flow.opposite(), ep.side, sub));
                    }
                    // A stateless response stream carries only its own request's
                    // notifications.
                    let stream_request = exchange_request.clone().filter(|_| era == Era::Stateless);
                    if rec.related_id.is_none() {
                        // Handshake era too: what a POST's SSE stream carries before its
                        // answer relates to that POST's request (the transport's rule).
                        // A progress notification names its request by token only.
                        rec.related_id = exchange_request.filter(|_| {
                            era == Era::Stateless
                                || (http.transport == super::Transport::Sse
                                    && rec.progress_token.is_none())
                        });
                    }
                    let counted = stream_request.or_else(|| {
                        rec.progress_token
                            .as_ref()
                            .and(rec.related_id.clone())
                            .filter(|_| flow == Flow::ServerToClient)
                    });
                    if let Some(p) =
                        counted.and_then(|id| s.pending.get_mut(flow.opposite(), ep.side, &id))
                    {
                        p.notifications += 1;
                        if method == "notifications/progress" {
                            if let Some(progress) = stateless::progress_of(params.as_ref()) {
                                p.progress = Some(progress);
                            }
                        }
                    }
                    s.on_verification(&rec.verification, &method, None);
                }
                rec.method = Some(method);
                content = params;
            }
            RpcMessage::Response { id, result } => {
                rec.kind = Kind::Response;
                rec.result_type = stateless::result_type(&result);
                rec.ttl_ms = stateless::ttl_ms(&result);
                rec.cache_scope = stateless::cache_scope(&result);
                rec.subscription_id = stateless::subscription_id(Some(&result));
                if let Some(s) = session {
                    paired = s.pending.take(flow, ep.side, &id);
                    s.on_result(paired.as_ref().map(|p| p.method.as_str()), &result);
                    if let Some(p) = paired.as_ref() {
                        if p.method == "server/discover" && flow == Flow::ServerToClient {
                            rec.supported_versions = stateless::discover_versions(&result);
                            effects.discover = Some(DiscoverInfo {
                                supported_versions: rec
                                    .supported_versions
                                    .clone()
                                    .unwrap_or_default(),
                                capabilities: result.get("capabilities").cloned(),
                                instructions: result
                                    .get("instructions")
                                    .and_then(Value::as_str)
                                    .map(extract::cap_message),
                                ttl_ms: rec.ttl_ms,
                                cache_scope: rec.cache_scope.clone(),
                                seen_ns: ts_ns,
                            });
                        }
                        if flow == Flow::ServerToClient {
                            if let Some(kind) = ListKind::from_method(&p.method) {
                                effects.list = s
                                    .pages
                                    .page(kind, p.cursor.as_deref(), &result, max_items)
                                    .map(|list| (kind, list));
                            }
                        }
                        let call = if rec.result_type.as_deref() == Some(stateless::INPUT_REQUIRED)
                        {
                            rec.input_requests = stateless::input_requests(&result);
                            let call = p.call.clone().unwrap_or(CallRound {
                                call_id: id.clone(),
                                round: 1,
                            });
                            effects.evicted_rounds += s.rounds.push(OpenRound {
                                flow: flow.opposite(),
                                method: p.method.clone(),
                                name: p.name.clone(),
                                args: p.args.unwrap_or_else(|| stateless::args_digest(None)),
                                state: stateless::state_digest(result.get("requestState")),
                                call: call.clone(),
                            });
                            Some(call)
                        } else {
                            p.call.clone()
                        };
                        if let Some(call) = call {
                            rec.call_id = Some(call.call_id);
                            rec.round = Some(call.round);
                        }
                    }
                }
                if let Some(text) = extract::tool_error(&result) {
                    rec.tool_error = true;
                    rec.error_message = text;
                }
                if paired.is_some() {
                    effects.answered = Some(id.clone());
                }
                rec.id = Some(id);
                content = Some(result);
            }
            RpcMessage::Error {
                id,
                code,
                message,
                data,
            } => {
                rec.kind = Kind::Error;
                rec.error_name = stateless::error_name(code);
                rec.supported_versions = stateless::error_supported_versions(code, data.as_ref());
                rec.required_capabilities =
                    stateless::error_required_capabilities(code, data.as_ref());
                if let Some(s) = session {
                    let answered = match (&id, batch) {
                        (Some(id), _) => Some(id.clone()),
                        // An error with a null id on a single-request POST answers that
                        // request (e.g. a transport-level refusal of a discover probe).
                        (None, false) => exchange_request,
                        (None, true) => None,
                    };
                    paired = answered
                        .as_ref()
                        .and_then(|a| s.pending.take(flow, ep.side, a));
                    if paired.is_some() {
                        if id.is_none() {
                            rec.related_id = answered.clone();
                        }
                        effects.answered = answered;
                    }
                    s.on_error();
                    if let Some(versions) = &rec.supported_versions {
                        s.supported_versions = Some(versions.clone());
                    }
                    if let Some(call) = paired.as_ref().and_then(|p| p.call.clone()) {
                        rec.call_id = Some(call.call_id);
                        rec.round = Some(call.round);
                    }
                }
                rec.error_code = Some(code);
                rec.error_message = Some(extract::cap_message(&message));
                rec.id = id;
                content = data;
            }
        }
        self.fill_content(&mut rec, content);
        if matches!(rec.kind, Kind::Response | Kind::Error) {
            match paired {
                Some(p) => {
                    rec.latency_ns = Some(ts_ns.saturating_sub(p.ts_ns));
                    rec.method = Some(p.method);
                    rec.name = p.name;
                    rec.cancelled = p.cancelled;
                    if rec.era == Era::Handshake {
                        rec.era = p.era;
                    }
                }
                None => self.counters.unpaired_answers += 1,
            }
        }
        self.count(displaced);
        if effects.cancelled {
            self.counters.cancelled += 1;
        }
        self.counters.verification_failures += rec.verification.len() as u64;
        self.counters.unverified_param_headers += u64::from(unverified_params);
        self.counters.input_required_retries += u64::from(effects.retry_matched);
        self.counters.unmatched_retries += u64::from(effects.retry_unmatched);
        self.counters.evicted_rounds += effects.evicted_rounds;
        if let Some(answered) = effects.answered.take() {
            if let Some(ex) = self.exchanges.get_mut(&(ep.pid, ep.conn_id.clone())) {
                if flow == Flow::ServerToClient && ex.request.as_ref() == Some(&answered) {
                    ex.request = None;
                }
            }
        }
        if !rec.verification.is_empty() {
            tracing::info!(pid = ep.pid, conn = %ep.conn_id, method = ?rec.method, failures = ?rec.verification, "request header verification failed");
        }
        if let Some((method, id, params, is_request)) = judge_input {
            let findings = request_findings(
                &rec,
                &method,
                era,
                state_before,
                negotiated.as_deref(),
                request_sid_missing,
            );
            self.to_judge.push(ToJudge {
                key: Some(key.clone()),
                era,
                name: rec.name.clone(),
                method,
                id,
                params,
                is_request,
                state_before,
                findings,
                evidence: None,
                cut: false,
            });
        }
        out.push(Record::Message(rec));
        self.apply(ep, http, key, effects, ts_ns, out);
    }

    /// Catalogue effects of one message: list snapshots (and drift), list_changed.
    fn apply(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        key: &GroupKey,
        effects: Effects,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        if effects.list.is_none() && effects.list_changed.is_none() && effects.discover.is_none() {
            return;
        }
        let full_key = (ep.pid, key.clone());
        let server = match self.sessions.get(&full_key) {
            Some(s) => s.server.to_string(),
            None => server_label(ep, http),
        };
        if let Some(info) = effects.discover {
            self.catalogs.note_discover(&server, info);
        }
        if let Some(kind) = effects.list_changed {
            self.catalogs.note_list_changed(&server, kind, ts_ns);
        }
        let Some((kind, list)) = effects.list else {
            return;
        };
        let before = self.catalogs.get(&server).map(|c| list_digest(c, kind));
        let drifts = self.catalogs.commit(&server, kind, list, ts_ns);
        if let Some(cat) = self.catalogs.get(&server) {
            if kind == ListKind::Tools {
                if let Some(policy) = self.policy.as_deref_mut() {
                    policy.observe_catalog(&server, cat);
                }
            }
            if before.as_ref() != Some(&list_digest(cat, kind)) {
                let session = self.sessions.get(&full_key).map(|s| &**s);
                out.push(Record::Catalog(catalog_record(
                    cat, kind, ep, session, ts_ns,
                )));
                self.counters.catalog_records += 1;
            }
        }
        if drifts.is_empty() {
            return;
        }
        self.counters.tool_drifts += drifts.len() as u64;
        let Some(s) = self.sessions.get_mut(&full_key) else {
            return;
        };
        let label = s.label();
        for drift in drifts {
            s.on_drift(&drift);
            tracing::info!(server = %server, tool = %drift.tool, fields = ?drift.fields, "tool definition drift");
            out.push(Record::Drift(DriftRecord {
                ts_ns,
                pid: ep.pid,
                comm: ep.comm.clone(),
                side: ep.side,
                server: server.clone(),
                session_id: label.clone(),
                tool: drift.tool,
                fields: drift.fields,
                old_hash: drift.old_hash,
                new_hash: drift.new_hash,
            }));
        }
    }

    /// The session for `key`, created on first sight; `None` for an id ended by DELETE/404.
    fn session(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        key: &GroupKey,
        id_in_query: bool,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) -> Option<&mut McpSession> {
        if let GroupKey::Header(sid) = key {
            if self.ended_ids.contains(ep.pid, sid) {
                return None;
            }
        }
        let full_key = (ep.pid, key.clone());
        if !self.sessions.contains_key(&full_key) {
            if self.sessions.len() >= self.cfg.max_sessions {
                self.evict_least_recent(out);
            }
            let mut session = McpSession::new(
                key.clone(),
                ep.pid,
                &ep.comm,
                ep.side,
                server_label(ep, http),
                ts_ns,
                self.cfg.max_pending_per_session,
            );
            session.id_in_query = id_in_query;
            session.joined_mid_stream = self.adopted_conns.contains(&(ep.pid, ep.conn_id.clone()));
            self.sessions.insert(full_key.clone(), Box::new(session));
        }
        let session = self.sessions.get_mut(&full_key)?;
        session.touch(ts_ns);
        Some(session)
    }

    fn evict_least_recent(&mut self, out: &mut Vec<Record>) {
        let victim = self
            .sessions
            .iter()
            .min_by(|a, b| (a.1.last_ns, a.0).cmp(&(b.1.last_ns, b.0)))
            .map(|(k, s)| (k.clone(), s.last_ns));
        if let Some((key, last_ns)) = victim {
            self.counters.evicted_sessions += 1;
            self.end(
                &key,
                SessionStatus::Active,
                EndReason::Evicted,
                last_ns,
                out,
            );
        }
    }

    fn end(
        &mut self,
        key: &SessionKey,
        status: SessionStatus,
        reason: EndReason,
        ended_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let Some(s) = self.sessions.remove(key) else {
            return;
        };
        if let GroupKey::Header(sid) = &key.1 {
            for conn in s.open_conns() {
                let ck = (key.0, conn.to_string());
                if let Some(sids) = self.conn_sessions.get_mut(&ck) {
                    sids.retain(|x| x != sid);
                    if sids.is_empty() {
                        self.conn_sessions.remove(&ck);
                    }
                }
            }
        }
        let mut summary = s.summary(status, Some(reason), ended_ns);
        summary.process = self.identity_of(s.pid, &s.comm);
        self.counters.sessions_joined_mid_stream += u64::from(summary.joined_mid_stream);
        out.push(Record::SessionEnd(summary));
    }

    /// `session_start` for sessions not yet announced, `session_update` for announced ones
    /// that changed since their last report at least the update interval ago.
    fn report_active(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let interval = self.cfg.session_update_interval_ns;
        if interval == 0 {
            return;
        }
        let mut due: Vec<(u64, SessionKey)> = self
            .sessions
            .iter()
            .filter(|(k, s)| {
                if s.announced {
                    s.activity() != s.reported_activity
                        && now_ns.saturating_sub(s.reported_ns) >= interval
                } else {
                    !awaits_session_id(&k.1, s)
                }
            })
            .map(|(k, s)| (s.started_ns, k.clone()))
            .collect();
        due.sort();
        for (_, key) in due {
            let Some((pid, comm)) = self.sessions.get(&key).map(|s| (s.pid, s.comm.clone())) else {
                continue;
            };
            let process = self.identity_of(pid, &comm);
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            let mut summary = s.summary(SessionStatus::Active, None, s.last_ns);
            summary.process = process;
            out.push(if s.announced {
                Record::SessionUpdate(summary)
            } else {
                Record::SessionStart(summary)
            });
            s.announced = true;
            s.reported_ns = now_ns;
            s.reported_activity = s.activity();
            self.counters.session_reports += 1;
        }
    }

    /// Who process `pid` is, for records (empty unless `process_identity` is configured).
    fn identity_of(&mut self, pid: u32, comm: &str) -> ProcessIdentity {
        if self.cfg.process_identity {
            self.processes.identity(pid, comm).clone()
        } else {
            ProcessIdentity::default()
        }
    }

    fn note_issuing_server(&mut self, server: String) {
        if self.issuing_servers.contains(&server) {
            return;
        }
        if self.issuing_servers.len() >= MAX_ISSUING_SERVERS {
            self.issuing_servers.clear();
        }
        self.issuing_servers.insert(server);
    }

    /// The `params`, `result` or `error.data` (by `rec.kind`) of the message into `rec`,
    /// bounded and redacted.
    fn fill_content(&self, rec: &mut MessageRecord, value: Option<Value>) {
        let slot = match rec.kind {
            Kind::Request | Kind::Notification => &mut rec.params,
            Kind::Response => &mut rec.result,
            Kind::Error => &mut rec.error_data,
        };
        if let Some(c) = value.and_then(|v| self.cfg.content.render_owned(v)) {
            *slot = Some(c.value);
            rec.truncated = c.truncated;
            rec.payload_bytes = Some(c.original_bytes);
        }
    }

    /// A client→server body that is not JSON-RPC, judged when a policy is configured.
    fn judge_malformed(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        payload: &[u8],
        error: &RpcError,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        if self.policy.is_none() {
            return;
        }
        let item = malformed(payload, error);
        self.to_judge.push(item);
        self.judge_pending(ep, http, payload.len(), ts_ns, out);
    }

    /// Judges the client→server messages of the payload just processed: a verdict record
    /// (and an attack on the session) for each that is not a plain allow.
    fn judge_pending(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        body_bytes: usize,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let items = std::mem::take(&mut self.to_judge);
        let Some(mut policy) = self.policy.take() else {
            return;
        };
        let process = self.processes.get(ep.pid, &ep.comm).clone();
        let server = server_label(ep, http);
        let host = http.request_header("host");
        for item in items {
            let session = item
                .key
                .as_ref()
                .and_then(|k| self.sessions.get(&(ep.pid, k.clone())));
            let identity = session.and_then(|s| s.identity.as_ref());
            let facts = RequestFacts {
                server: &server,
                host,
                client_name: session.and_then(|s| s.client.name.as_deref()),
                client_version: session.and_then(|s| s.client.version.as_deref()),
                process: &process,
                side: ep.side,
                user: identity.and_then(|i| i.user.as_deref()),
                role: identity.and_then(|i| i.role.as_deref()),
                identity_verified: identity.is_some_and(|i| i.verified),
                era: item.era,
                method: &item.method,
                name: item.name.as_deref(),
                params: item.params.as_ref(),
                is_request: item.is_request,
                session_state: item.state_before,
                body_bytes,
                findings: item.findings.clone(),
                cut: item.cut,
            };
            let started = std::time::Instant::now();
            let judgement = policy.judge(&facts, self.catalogs.get(&server));
            let decision_ns = started.elapsed().as_nanos() as u64;
            self.counters.judged += 1;
            if judgement.is_plain_allow() && !policy.record_allows() {
                continue;
            }
            let (user, role) = (
                facts.user.map(str::to_string),
                facts.role.map(str::to_string),
            );
            let session_label = session.map(|s| s.label());
            let request = item.evidence.clone().or_else(|| {
                (judgement.action != Action::Allow).then(|| {
                    let mut req = serde_json::Map::new();
                    req.insert("method".into(), Value::String(item.method.clone()));
                    if let Some(p) = &item.params {
                        req.insert("params".into(), self.cfg.content.render_always(p).value);
                    }
                    Value::Object(req)
                })
            });
            self.emit_verdict(
                ep,
                &server,
                &item,
                judgement,
                (user, role, session_label, request),
                (decision_ns, ts_ns),
                out,
            );
        }
        self.policy = Some(policy);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_verdict(
        &mut self,
        ep: &Endpoint,
        server: &str,
        item: &ToJudge,
        j: Judgement,
        (user, role, session_id, request): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<Value>,
        ),
        (decision_ns, ts_ns): (u64, u64),
        out: &mut Vec<Record>,
    ) {
        if let Some(kind) = attack_kind(&j) {
            if let Some(s) = item
                .key
                .as_ref()
                .and_then(|k| self.sessions.get_mut(&(ep.pid, k.clone())))
            {
                s.push_attack(serde_json::json!({
                    "kind": kind,
                    "ts_ns": ts_ns,
                    "action": j.action,
                    "rule_id": j.rule_id,
                    "method": item.method,
                    "name": item.name,
                    "id": item.id,
                    "reasons": j.reasons,
                    "request": request,
                }));
            }
        }
        let enforcement = match j.action {
            Action::Allow => Enforcement::None,
            Action::Audit => Enforcement::AuditOnly,
            Action::Deny | Action::Approve => Enforcement::Reset,
        };
        tracing::info!(pid = ep.pid, conn = %ep.conn_id, method = %item.method, action = ?j.action, rule = ?j.rule_id, "verdict");
        self.counters.verdicts += 1;
        out.push(Record::Verdict(VerdictRecord {
            ts_ns,
            session_id,
            pid: ep.pid,
            comm: ep.comm.clone(),
            side: ep.side,
            local: ep.local.clone(),
            remote: ep.remote.clone(),
            conn_id: ep.conn_id.clone(),
            server: server.to_string(),
            era: item.era,
            id: item.id.clone(),
            method: item.method.clone(),
            name: item.name.clone(),
            user,
            role,
            action: j.action,
            rule_id: j.rule_id,
            reasons: j.reasons,
            enforcement,
            hold_id: None,
            decision_ns,
            enforced_after_ns: None,
            request,
            process: self.identity_of(ep.pid, &ep.comm),
            fail_closed: j.fail_closed,
            approve_timeout_ms: j.approve_timeout_ms,
            block_connect: j.block_connect,
            peer_pid: None,
        }));
    }

    fn count(&mut self, displaced: Displaced) {
        self.counters.evicted_pending += displaced.evicted;
        self.counters.replaced_pending += displaced.replaced;
    }
}

/// A client→server body (or batch element) that is not JSON-RPC, as an item to judge.
/// The message records of a cut message (`flow`, kernel time `ts_ns`): `truncated`, with
/// their real size and the bytes the capture lost; no content (what there was is cut).
fn mark_cut(records: &mut [Record], flow: Flow, ts_ns: u64, (size, lost): (u64, u64)) {
    for r in records {
        if let Record::Message(m) = r {
            if m.direction == flow && m.ts_ns == ts_ns {
                m.truncated = true;
                m.payload_bytes = Some(size);
                m.capture_lost_bytes = (lost > 0).then_some(lost);
                m.params = None;
                m.result = None;
            }
        }
    }
}

/// `params.name` and `params.uri` of a cut message, as far as its first bytes said them.
fn cut_params(s: &crate::rpc::Salvaged) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(n) = &s.params_name {
        m.insert("name".into(), Value::String(n.clone()));
    }
    if let Some(u) = &s.params_uri {
        m.insert("uri".into(), Value::String(u.clone()));
    }
    Value::Object(m)
}

/// Gives the cut client→server message records of `ts_ns` the target name their first bytes
/// said (`params` itself is not reported for a cut message).
fn name_cut_messages(records: &mut [Record], ts_ns: u64, cut_params: Option<&Value>) {
    for r in records {
        if let Record::Message(m) = r {
            if m.direction == Flow::ClientToServer && m.ts_ns == ts_ns && m.name.is_none() {
                let method = m.method.as_deref().unwrap_or_default();
                m.name = extract::target_name(method, cut_params);
            }
        }
    }
}

fn malformed(payload: &[u8], error: &RpcError) -> ToJudge {
    let kind = match error {
        RpcError::NotJsonRpc { reason } if reason.contains("`jsonrpc`") => {
            ReasonKind::WrongJsonrpcVersion
        }
        RpcError::TooDeep { .. } => ReasonKind::JsonTooDeep,
        RpcError::TooLarge { .. } => ReasonKind::BodyTooLarge,
        _ => ReasonKind::MalformedJsonrpc,
    };
    let shown = &payload[..payload.len().min(1024)];
    ToJudge {
        key: None,
        era: Era::Handshake,
        method: String::new(),
        id: None,
        name: None,
        params: None,
        is_request: true,
        state_before: SessionState::New,
        findings: vec![Reason {
            kind,
            detail: error.to_string(),
        }],
        evidence: Some(serde_json::json!({
            "body": String::from_utf8_lossy(shown),
            "body_bytes": payload.len(),
        })),
        cut: false,
    }
}

/// `params._meta.traceparent` of a request or notification.
fn meta_traceparent(message: &RpcMessage) -> Option<String> {
    let (RpcMessage::Request { params, .. } | RpcMessage::Notification { params, .. }) = message
    else {
        return None;
    };
    params
        .as_ref()?
        .get("_meta")?
        .get("traceparent")?
        .as_str()
        .map(extract::cap_message)
}

/// What the tracker alone knows about a client→server message, as policy findings.
fn request_findings(
    rec: &MessageRecord,
    method: &str,
    era: Era,
    state_before: SessionState,
    negotiated: Option<&str>,
    sid_missing: bool,
) -> Vec<Reason> {
    let mut out: Vec<Reason> = rec
        .verification
        .iter()
        .map(|f| Reason {
            kind: ReasonKind::HeaderMismatch,
            detail: format!(
                "{}: {} (header {}, body {} = {})",
                f.header,
                serde_json::to_value(f.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                f.header_value.as_deref().unwrap_or("absent"),
                f.body_field,
                f.body_value
                    .as_ref()
                    .map_or_else(|| "absent".to_string(), Value::to_string),
            ),
        })
        .collect();
    if era != Era::Handshake || method == "initialize" {
        return out;
    }
    if sid_missing {
        out.push(Reason {
            kind: ReasonKind::MissingSessionId,
            detail: "the server issued a session id; this request carries none".into(),
        });
    }
    if let (Some(header), Some(negotiated)) = (rec.mcp_protocol_version.as_deref(), negotiated) {
        if header != negotiated {
            out.push(Reason {
                kind: ReasonKind::ProtocolVersionMismatch,
                detail: format!("MCP-Protocol-Version {header}, negotiated {negotiated}"),
            });
        }
    }
    if state_before == SessionState::Initializing && rec.kind == Kind::Request && method != "ping" {
        out.push(Reason {
            kind: ReasonKind::BeforeInitialize,
            detail: format!("{method} before the initialize request was answered"),
        });
    }
    out
}

/// Which attack a judgement records on its session, if any.
fn attack_kind(j: &Judgement) -> Option<&'static str> {
    let has = |k: ReasonKind| j.reasons.iter().any(|r| r.kind == k);
    match j.action {
        Action::Allow => return None,
        Action::Audit if j.reasons.is_empty() => return None,
        _ => {}
    }
    Some(if has(ReasonKind::SchemaViolation) {
        "invalid_tool_call"
    } else if j.rule_id.is_some() || j.reasons.is_empty() {
        "acl_violation"
    } else if has(ReasonKind::ToolDefinitionDrift) {
        "tool_definition_drift"
    } else {
        "request_verification"
    })
}

/// A comparable digest of one list of a catalogue.
fn list_digest(cat: &ToolCatalog, kind: ListKind) -> Vec<(String, String)> {
    match kind {
        ListKind::Tools => cat
            .tools
            .iter()
            .map(|(k, d)| (k.clone(), d.hash.clone()))
            .collect(),
        ListKind::Resources => entries_digest(&cat.resources),
        ListKind::ResourceTemplates => entries_digest(&cat.resource_templates),
        ListKind::Prompts => entries_digest(&cat.prompts),
    }
}

fn entries_digest(m: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    m.iter()
        .map(|(k, v)| (k.clone(), super::canonical_json(v)))
        .collect()
}

/// The catalogue record of `cat` after its `kind` list changed.
fn catalog_record(
    cat: &ToolCatalog,
    kind: ListKind,
    ep: &Endpoint,
    session: Option<&McpSession>,
    ts_ns: u64,
) -> CatalogRecord {
    let listed = |n: u64| n > 0;
    let values = |m: &BTreeMap<String, Value>| m.values().cloned().collect::<Vec<_>>();
    CatalogRecord {
        ts_ns,
        pid: ep.pid,
        comm: ep.comm.clone(),
        side: ep.side,
        server: cat.server.clone(),
        server_name: session.and_then(|s| s.server_info.name.clone()),
        server_version: session.and_then(|s| s.server_info.version.clone()),
        session_id: session.map(McpSession::label).unwrap_or_default(),
        changed: kind.record_name().to_string(),
        tools: listed(cat.snapshots.tools).then(|| {
            cat.tools
                .values()
                .map(super::catalog::ToolDef::to_value)
                .collect()
        }),
        resources: listed(cat.snapshots.resources).then(|| values(&cat.resources)),
        resource_templates: listed(cat.snapshots.resource_templates)
            .then(|| values(&cat.resource_templates)),
        prompts: listed(cat.snapshots.prompts).then(|| values(&cat.prompts)),
    }
}

/// SHA-256 over the identity-deciding header values (presence and content).
fn fingerprint(inputs: &[Option<&str>]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for input in inputs {
        match input {
            Some(v) => {
                ctx.update(&[1]);
                ctx.update(&(v.len() as u64).to_le_bytes());
                ctx.update(v.as_bytes());
            }
            None => ctx.update(&[0]),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The first non-empty value of query parameter `name` in a path or URL (percent-decoded).
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if percent_decode(k)? != name {
            return None;
        }
        let v = percent_decode(v)?;
        (!v.is_empty() && v.len() <= MAX_QUERY_SESSION_ID).then_some(v)
    })
}

/// `%XX` decoding; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `"ip:port/path"` of the server end of an exchange.
fn server_label(ep: &Endpoint, http: &HttpMeta) -> String {
    format!("{}{}", ep.server_addr(), http.path_only())
}

/// Session ids recently ended by DELETE or 404, bounded in count and age.
#[derive(Debug)]
struct Tombstones {
    at: HashMap<(u32, String), u64>,
    order: VecDeque<(u64, (u32, String))>,
    max: usize,
}

impl Tombstones {
    fn new(max: usize) -> Self {
        Tombstones {
            at: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    fn contains(&self, pid: u32, sid: &str) -> bool {
        self.at.contains_key(&(pid, sid.to_string()))
    }

    fn insert(&mut self, pid: u32, sid: &str, ts_ns: u64) {
        let key = (pid, sid.to_string());
        self.at.insert(key.clone(), ts_ns);
        self.order.push_back((ts_ns, key));
        while self.order.len() > self.max {
            self.pop_front();
        }
    }

    fn remove(&mut self, pid: u32, sid: &str) {
        self.at.remove(&(pid, sid.to_string()));
    }

    fn expire(&mut self, now_ns: u64, ttl_ns: u64) {
        while let Some((ts, _)) = self.order.front() {
            if now_ns.saturating_sub(*ts) <= ttl_ns {
                break;
            }
            self.pop_front();
        }
    }

    /// Drops the oldest entry (a stale one, superseded by a later insert, leaves `at` alone).
    fn pop_front(&mut self) {
        if let Some((ts, key)) = self.order.pop_front() {
            if self.at.get(&key) == Some(&ts) {
                self.at.remove(&key);
            }
        }
    }
}

/// A session still keyed by its connection whose `initialize` is unanswered: the answer may
/// name it by an `Mcp-Session-Id`, so announcing it now would report it under a key the
/// collector would never see end. It is announced once answered (or at its end).
fn awaits_session_id(key: &GroupKey, s: &McpSession) -> bool {
    matches!(key, GroupKey::Conn(_)) && s.state == SessionState::Initializing
}
