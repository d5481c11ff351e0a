//! One MCP session of one observed process: identity, handshake state, counters.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use super::catalog::{PageBuffers, ToolDrift};
use super::extract::{self, Implementation, StatelessMeta};
use super::identity::Identity;
use super::pairing::{Displaced, PendingTable};
use super::record::{EndReason, Era, Grouping, SessionStatus, SessionSummary};
use super::stateless::{self, RoundTable, StatelessKey};
use super::verify::VerificationFailure;
use super::Side;
use crate::rpc::RpcId;

/// Distinct method / tool names remembered per session (bounded against hostile peers).
pub const MAX_DISTINCT_NAMES: usize = 1024;
/// Open connections remembered per session; beyond it the session no longer ends by
/// `"closed"` (it cannot tell when the last one goes), only by DELETE, 404 or idle.
pub const MAX_CONNS_PER_SESSION: usize = 1024;
/// Attacks kept per session; further ones are counted in `attacks_dropped`.
pub const MAX_ATTACKS: usize = 256;

/// Distinct JSON values and implementations each pool keeps for sharing ([`SharedPool`]).
const MAX_SHARED_VALUES: usize = 64;
/// Distinct strings kept for sharing: process names, server endpoints, protocol versions,
/// method and called tool names.
const MAX_SHARED_STRS: usize = 256;

/// Values most sessions of a host show alike (capability objects, `clientInfo` and
/// `serverInfo`, protocol versions): sessions hold one shared copy instead of their own.
/// The pool remembers up to `max` distinct values that some session still holds. Only
/// memory is at stake: a value not remembered is still kept whole by its session.
struct SharedPool<T: ?Sized> {
    known: Mutex<Vec<Arc<T>>>,
    max: usize,
}

impl<T: ?Sized + PartialEq> SharedPool<T> {
    const fn new(max: usize) -> Self {
        SharedPool {
            known: Mutex::new(Vec::new()),
            max,
        }
    }

    /// The value already held when one equal to `v` was seen, else `make()`, remembered.
    fn share(&self, v: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let Ok(mut known) = self.known.lock() else {
            return make();
        };
        if let Some(hit) = known.iter().find(|k| ***k == *v) {
            return Arc::clone(hit);
        }
        let new = make();
        // Forget the values no session holds any more.
        known.retain(|k| Arc::strong_count(k) > 1);
        if known.len() < self.max {
            known.push(Arc::clone(&new));
        }
        new
    }
}

static SHARED_VALUES: SharedPool<Value> = SharedPool::new(MAX_SHARED_VALUES);
static SHARED_IMPLEMENTATIONS: SharedPool<Implementation> = SharedPool::new(MAX_SHARED_VALUES);
static SHARED_STRS: SharedPool<str> = SharedPool::new(MAX_SHARED_STRS);

/// `v` as a shared value (a JSON object costs hundreds of bytes).
pub(crate) fn shared_value(v: &Value) -> Arc<Value> {
    SHARED_VALUES.share(v, || Arc::new(v.clone()))
}

/// `v` as a shared `clientInfo`/`serverInfo`.
pub(crate) fn shared_implementation(v: Implementation) -> Arc<Implementation> {
    SHARED_IMPLEMENTATIONS.share(&v, || Arc::new(v.clone()))
}

/// `v` as a shared string.
pub(crate) fn shared_str(v: &str) -> Arc<str> {
    SHARED_STRS.share(v, || Arc::from(v))
}

/// The primitive family a method belongs to (for the summary's `primitives`).
pub fn primitive_of(method: &str) -> Option<&'static str> {
    let family = method.strip_prefix("notifications/").unwrap_or(method);
    let head = family.split('/').next().unwrap_or(family);
    Some(match head {
        "tools" => "tools",
        "resources" => "resources",
        "prompts" => "prompts",
        "completion" => "completions",
        "logging" => "logging",
        "message" if method == "notifications/message" => "logging",
        "sampling" => "sampling",
        "elicitation" => "elicitation",
        "roots" => "roots",
        _ => return None,
    })
}

/// How the tracker finds a session, within one process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GroupKey {
    /// The session header's value (shared by the tracker's map, the session and the
    /// connections' lists).
    Header(Arc<str>),
    /// The connection's `conn_id` (no session id issued, or `initialize` not yet answered).
    Conn(String),
    /// Stateless era: server endpoint, client address, `clientInfo`, subject.
    Stateless(Box<StatelessKey>),
}

impl GroupKey {
    pub(crate) fn grouping(&self) -> Grouping {
        match self {
            GroupKey::Header(_) => Grouping::SessionHeader,
            GroupKey::Conn(_) => Grouping::Connection,
            GroupKey::Stateless(_) => Grouping::Stateless,
        }
    }

    pub(crate) fn era(&self) -> Era {
        match self {
            GroupKey::Stateless(_) => Era::Stateless,
            GroupKey::Header(_) | GroupKey::Conn(_) => Era::Handshake,
        }
    }

    /// The text reported as the summary's `session_id`.
    pub(crate) fn label(&self) -> String {
        match self {
            GroupKey::Header(id) => id.to_string(),
            GroupKey::Conn(id) => id.clone(),
            GroupKey::Stateless(k) => k.id.clone(),
        }
    }
}

/// Where a handshake-era session is in its lifecycle (stateless sessions stay `New`).
/// Ending (DELETE, 404, idle, close) removes the session and emits its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Messages seen, but no `initialize` (started before we looked, or stateless).
    New,
    /// `initialize` sent, no result yet.
    Initializing,
    /// `initialize` answered, `notifications/initialized` not yet seen.
    Initialized,
    /// `notifications/initialized` seen.
    Operating,
}

/// One tracked session.
#[derive(Debug)]
pub struct McpSession {
    pub(crate) key: GroupKey,
    pub pid: u32,
    /// Shared with the other sessions of the process ([`shared_str`]).
    pub comm: Arc<str>,
    pub side: Side,
    /// `"ip:port/path"` of the server end, shared with the other sessions of that server.
    pub server: Arc<str>,
    /// First seen on a connection the agent adopted mid-stream (it predates the agent); with
    /// a handshake-era session that never showed `initialize`, reported as `joined_mid_stream`.
    pub joined_mid_stream: bool,
    pub state: SessionState,
    /// Shared with every session that showed the same one ([`shared_implementation`]).
    pub client: Arc<Implementation>,
    /// Shared with every session that showed the same capabilities ([`shared_value`]).
    pub client_capabilities: Option<Arc<Value>>,
    pub server_info: Arc<Implementation>,
    pub server_capabilities: Option<Arc<Value>>,
    /// Version the client asked for (`initialize` params or stateless `_meta`).
    pub requested_protocol_version: Option<Arc<str>>,
    /// Version the server answered in the `initialize` result.
    pub negotiated_protocol_version: Option<Arc<str>>,
    pub started_ns: u64,
    pub last_ns: u64,
    pub requests: u64,
    pub notifications: u64,
    pub responses: u64,
    pub errors: u64,
    pub methods: NameSet,
    pub tools: NameSet,
    pub primitives: BTreeSet<&'static str>,
    /// The session id came from a query parameter (legacy HTTP+SSE style).
    pub id_in_query: bool,
    /// User and role, from the latest request that carried them.
    /// Boxed: most sessions carry none, and a session holds this inline.
    pub identity: Option<Box<Identity>>,
    /// Digest of the headers the identity was read from (re-read only when they change).
    pub(crate) identity_inputs: Option<Box<[u8; 32]>>,
    /// First `MCP-Protocol-Version` header seen (version of last resort for the summary).
    pub header_protocol_version: Option<Arc<str>>,
    pub protocol_version_mismatches: u64,
    pub first_mismatched_protocol_version: Option<String>,
    /// Requests named by `notifications/cancelled`.
    pub cancelled: u64,
    pub attacks: Vec<Value>,
    pub attacks_dropped: u64,
    /// `supportedVersions` from `server/discover` (or a -32022 error).
    pub supported_versions: Option<Vec<String>>,
    /// Header verification failures of this session's requests.
    pub verification_failures: u64,
    /// Multi round-trip calls awaiting their retry.
    pub(crate) rounds: RoundTable,
    /// Open connections this session's exchanges used (session-id sessions only).
    pub(crate) conns: NameSet,
    /// More connections than [`MAX_CONNS_PER_SESSION`] were open at once.
    pub(crate) conns_overflowed: bool,
    /// Kernel time the last open connection closed; `None` while one is open.
    pub(crate) all_closed_ns: Option<u64>,
    /// Paginated lists in progress.
    pub(crate) pages: PageBuffers,
    pub(crate) pending: PendingTable,
    /// A `session_start` record was written.
    pub(crate) announced: bool,
    /// Kernel time of the last `session_start`/`session_update` record.
    pub(crate) reported_ns: u64,
    /// [`McpSession::activity`] when it was last reported.
    pub(crate) reported_activity: u64,
}

impl McpSession {
    pub(crate) fn new(
        key: GroupKey,
        pid: u32,
        comm: &str,
        side: Side,
        server: String,
        ts_ns: u64,
        max_pending: usize,
    ) -> Self {
        McpSession {
            key,
            pid,
            comm: shared_str(comm),
            side,
            server: shared_str(&server),
            joined_mid_stream: false,
            state: SessionState::New,
            client: shared_implementation(Implementation::default()),
            client_capabilities: None,
            server_info: shared_implementation(Implementation::default()),
            server_capabilities: None,
            requested_protocol_version: None,
            negotiated_protocol_version: None,
            started_ns: ts_ns,
            last_ns: ts_ns,
            requests: 0,
            notifications: 0,
            responses: 0,
            errors: 0,
            methods: NameSet::default(),
            tools: NameSet::default(),
            primitives: BTreeSet::new(),
            id_in_query: false,
            identity: None,
            identity_inputs: None,
            header_protocol_version: None,
            protocol_version_mismatches: 0,
            first_mismatched_protocol_version: None,
            cancelled: 0,
            attacks: Vec::new(),
            attacks_dropped: 0,
            supported_versions: None,
            verification_failures: 0,
            rounds: RoundTable::default(),
            conns: NameSet::default(),
            conns_overflowed: false,
            all_closed_ns: None,
            pages: PageBuffers::default(),
            pending: PendingTable::new(max_pending),
            announced: false,
            reported_ns: 0,
            reported_activity: 0,
        }
    }

    /// Grows with every message and attack: a session whose activity did not change since
    /// its last report needs no update.
    pub(crate) fn activity(&self) -> u64 {
        self.requests
            + self.notifications
            + self.responses
            + self.errors
            + self.attacks.len() as u64
            + self.attacks_dropped
    }

    /// How messages were grouped into this session.
    pub fn grouping(&self) -> Grouping {
        match self.key.grouping() {
            Grouping::SessionHeader if self.id_in_query => Grouping::SessionQuery,
            g => g,
        }
    }

    /// The summary's `session_id`.
    pub fn label(&self) -> String {
        self.key.label()
    }

    /// Requests awaiting an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Requests awaiting an answer that were not cancelled: while there is one, the session
    /// neither idles out nor ends by `"closed"`.
    pub fn live_pending(&self) -> usize {
        self.pending.live()
    }

    /// The connections this session is known to have open.
    pub fn open_conns(&self) -> impl Iterator<Item = &str> {
        self.conns.iter()
    }

    /// The exchange on `conn_id` belongs to this session; `true` when newly added.
    pub(crate) fn add_conn(&mut self, conn_id: &str) -> bool {
        self.all_closed_ns = None;
        if self.conns.contains(conn_id) {
            return false;
        }
        if self.conns.len() >= MAX_CONNS_PER_SESSION {
            self.conns_overflowed = true;
            return false;
        }
        self.conns.insert(conn_id);
        true
    }

    /// `conn_id` closed at `ts_ns`.
    pub(crate) fn remove_conn(&mut self, conn_id: &str, ts_ns: u64) {
        if self.conns.remove(conn_id) && self.conns.is_empty() && !self.conns_overflowed {
            self.all_closed_ns = Some(ts_ns);
        }
    }

    /// An `MCP-Protocol-Version` request header, checked against the negotiated version
    /// (handshake era) or the version the request's `_meta` named (stateless era).
    pub(crate) fn check_protocol_version(&mut self, header: &str) {
        if self.header_protocol_version.is_none() {
            self.header_protocol_version = Some(shared_str(header));
        }
        let expected = match self.key.era() {
            Era::Handshake => self.negotiated_protocol_version.as_deref(),
            Era::Stateless => self.requested_protocol_version.as_deref(),
        };
        if expected.is_some_and(|v| v != header) {
            self.protocol_version_mismatches += 1;
            if self.first_mismatched_protocol_version.is_none() {
                self.first_mismatched_protocol_version = Some(extract::cap_message(header));
            }
        }
    }

    /// A tool of this session's server drifted.
    pub(crate) fn on_drift(&mut self, drift: &ToolDrift) {
        self.push_attack(json!({
            "kind": "tool_definition_drift",
            "tool": drift.tool,
            "fields": drift.fields,
        }));
    }

    /// Header verification failures of request `id` (`None`: a notification) calling `method`.
    pub(crate) fn on_verification(
        &mut self,
        failures: &[VerificationFailure],
        method: &str,
        id: Option<&RpcId>,
    ) {
        for f in failures {
            self.verification_failures += 1;
            let mut attack = match serde_json::to_value(f) {
                Ok(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            attack.insert("kind".into(), json!("request_verification"));
            attack.insert("method".into(), json!(method));
            attack.insert("id".into(), json!(id));
            self.push_attack(Value::Object(attack));
        }
    }

    /// Adds an attack (bounded).
    pub fn push_attack(&mut self, attack: Value) {
        if self.attacks.len() < MAX_ATTACKS {
            self.attacks.push(attack);
        } else {
            self.attacks_dropped += 1;
        }
    }

    /// A `notifications/cancelled` named a pending request.
    pub(crate) fn on_cancelled(&mut self) {
        self.cancelled += 1;
    }

    pub(crate) fn touch(&mut self, ts_ns: u64) {
        self.started_ns = self.started_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }

    /// A request or notification `method` with `params` was seen.
    pub(crate) fn on_call(&mut self, method: &str, params: Option<&Value>, is_request: bool) {
        if is_request {
            self.requests += 1;
        } else {
            self.notifications += 1;
        }
        insert_bounded(&mut self.methods, method);
        if let Some(p) = primitive_of(method) {
            self.primitives.insert(p);
        }
        match method {
            "initialize" if is_request => {
                self.state = SessionState::Initializing;
                if let Some(p) = params {
                    if let Some(client) = Implementation::from_value(p.get("clientInfo")) {
                        self.client = shared_implementation(client);
                    }
                    self.client_capabilities = p.get("capabilities").map(shared_value);
                    self.requested_protocol_version = p
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .map(shared_str);
                }
            }
            "notifications/initialized" if !is_request => self.state = SessionState::Operating,
            "tools/call" if is_request => {
                if let Some(name) = extract::target_name(method, params) {
                    insert_bounded(&mut self.tools, &name);
                }
            }
            _ => {}
        }
        if let Some(meta) = StatelessMeta::from_params(params) {
            self.requested_protocol_version = Some(shared_str(&meta.protocol_version));
            if let Some(client) = meta.client {
                self.client = shared_implementation(client);
            }
            if meta.capabilities.is_some() {
                self.client_capabilities = meta.capabilities.as_ref().map(shared_value);
            }
        }
    }

    /// A result answering `method` (when paired) was seen.
    pub(crate) fn on_result(&mut self, method: Option<&str>, result: &Value) {
        self.responses += 1;
        if method == Some("initialize") {
            if let Some(info) = Implementation::from_value(result.get("serverInfo")) {
                self.server_info = shared_implementation(info);
            }
            self.server_capabilities = result.get("capabilities").map(shared_value);
            self.negotiated_protocol_version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .map(shared_str);
            if self.state == SessionState::Initializing || self.state == SessionState::New {
                self.state = SessionState::Initialized;
            }
        }
        if let Some(info) = extract::stateless_server_info(result) {
            self.server_info = shared_implementation(info);
        }
        if method == Some("server/discover") {
            if let Some(versions) = stateless::discover_versions(result) {
                self.supported_versions = Some(versions);
            }
            if let Some(caps) = result.get("capabilities").filter(|c| c.is_object()) {
                self.server_capabilities = Some(shared_value(caps));
            }
        }
        // 2026-07-28 MRTR: sampling/elicitation/roots requests travel inside the result.
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for request in requests.values() {
                if let Some(p) = request
                    .get("method")
                    .and_then(Value::as_str)
                    .and_then(primitive_of)
                {
                    self.primitives.insert(p);
                }
            }
        }
    }

    /// A JSON-RPC error was seen.
    pub(crate) fn on_error(&mut self) {
        self.errors += 1;
    }

    /// Folds `other` (the same conversation seen under another key) into this session.
    pub(crate) fn absorb(&mut self, other: McpSession) -> Displaced {
        self.announced |= other.announced;
        self.touch(other.started_ns);
        self.touch(other.last_ns);
        if self.state == SessionState::New {
            self.state = other.state;
        }
        self.client = merged(&self.client, &other.client);
        fill(&mut self.client_capabilities, other.client_capabilities);
        self.server_info = merged(&self.server_info, &other.server_info);
        fill(&mut self.server_capabilities, other.server_capabilities);
        fill(
            &mut self.requested_protocol_version,
            other.requested_protocol_version,
        );
        fill(
            &mut self.negotiated_protocol_version,
            other.negotiated_protocol_version,
        );
        self.requests += other.requests;
        self.notifications += other.notifications;
        self.responses += other.responses;
        self.errors += other.errors;
        for m in other.methods.iter() {
            insert_bounded(&mut self.methods, m);
        }
        for t in other.tools.iter() {
            insert_bounded(&mut self.tools, t);
        }
        self.primitives.extend(other.primitives);
        self.id_in_query |= other.id_in_query;
        fill(&mut self.identity, other.identity);
        fill(
            &mut self.header_protocol_version,
            other.header_protocol_version,
        );
        self.protocol_version_mismatches += other.protocol_version_mismatches;
        fill(
            &mut self.first_mismatched_protocol_version,
            other.first_mismatched_protocol_version,
        );
        self.cancelled += other.cancelled;
        for attack in other.attacks {
            self.push_attack(attack);
        }
        self.attacks_dropped += other.attacks_dropped;
        fill(&mut self.supported_versions, other.supported_versions);
        self.verification_failures += other.verification_failures;
        self.joined_mid_stream |= other.joined_mid_stream;
        self.rounds.absorb(other.rounds);
        self.pending.absorb(other.pending)
    }

    /// The summary of this session ending at `ended_ns`.
    pub fn summary(
        &self,
        status: SessionStatus,
        end_reason: Option<EndReason>,
        ended_ns: u64,
    ) -> SessionSummary {
        let ended_ns = ended_ns.max(self.started_ns);
        SessionSummary {
            session_id: self.label(),
            grouping: self.grouping(),
            era: self.key.era(),
            pid: self.pid,
            comm: self.comm.to_string(),
            side: self.side,
            server: self.server.to_string(),
            client_name: self.client.name.clone(),
            client_version: self.client.version.clone(),
            server_name: self.server_info.name.clone(),
            server_version: self.server_info.version.clone(),
            protocol_version: self
                .negotiated_protocol_version
                .as_deref()
                .or(self.requested_protocol_version.as_deref())
                .or(self.header_protocol_version.as_deref())
                .map(str::to_owned),
            started_ns: self.started_ns,
            ended_ns,
            duration_ns: ended_ns - self.started_ns,
            requests: self.requests,
            notifications: self.notifications,
            responses: self.responses,
            errors: self.errors,
            status,
            end_reason,
            methods: self.methods.iter().map(str::to_string).collect(),
            tools: self.tools.iter().map(str::to_string).collect(),
            primitives: self.primitives.iter().map(|p| p.to_string()).collect(),
            state: self.state,
            user: self.identity.as_ref().and_then(|i| i.user.clone()),
            role: self.identity.as_ref().and_then(|i| i.role.clone()),
            identity_source: self.identity.as_ref().map(|i| i.source),
            identity_verified: self.identity.as_ref().is_some_and(|i| i.verified),
            process: crate::process::ProcessIdentity::default(),
            client_capabilities: self.client_capabilities.as_deref().cloned(),
            server_capabilities: self.server_capabilities.as_deref().cloned(),
            cancelled: self.cancelled,
            protocol_version_mismatches: self.protocol_version_mismatches,
            first_mismatched_protocol_version: self.first_mismatched_protocol_version.clone(),
            supported_versions: self.supported_versions.clone(),
            verification_failures: self.verification_failures,
            attacks: self.attacks.clone(),
            // A handshake-era session still `new` never showed its `initialize`: the agent
            // joined it late (started or restarted while it was open).
            joined_mid_stream: self.joined_mid_stream
                || (self.key.era() == Era::Handshake && self.state == SessionState::New),
        }
    }
}

/// Method and tool names repeat from session to session: the set holds shared copies.
fn insert_bounded(set: &mut NameSet, name: &str) {
    if set.len() < MAX_DISTINCT_NAMES && !set.contains(name) {
        set.insert_shared(shared_str(name));
    }
}

/// A sorted set of names in one exactly-sized allocation. A session holds a handful of names
/// in each of its sets (methods, tools, connections), and a `BTreeSet<String>` spends ~300
/// bytes on its first node alone; the sets are bounded ([`MAX_DISTINCT_NAMES`],
/// [`MAX_CONNS_PER_SESSION`]), so inserting into the middle stays cheap. Names may be
/// shared with other sessions ([`shared_str`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet(Vec<Arc<str>>);

impl NameSet {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|x| (**x).cmp(name))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Adds `name`; false when it was there already.
    pub fn insert(&mut self, name: &str) -> bool {
        self.insert_shared(Arc::from(name))
    }

    /// Adds `name`, held as given; false when it was there already.
    pub fn insert_shared(&mut self, name: Arc<str>) -> bool {
        match self.find(&name) {
            Ok(_) => false,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, name);
                true
            }
        }
    }

    /// Removes `name`; false when it was not there. An emptied set frees its allocation.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.find(name) {
            Ok(at) => {
                self.0.remove(at);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// Slots allocated (tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

fn fill<T>(slot: &mut Option<T>, other: Option<T>) {
    if slot.is_none() {
        *slot = other;
    }
}

/// `mine`, its missing name or version taken from `other`.
fn merged(mine: &Arc<Implementation>, other: &Implementation) -> Arc<Implementation> {
    if mine.name.is_some() && mine.version.is_some() {
        return Arc::clone(mine);
    }
    shared_implementation(Implementation {
        name: mine.name.clone().or_else(|| other.name.clone()),
        version: mine.version.clone().or_else(|| other.version.clone()),
    })
}

#[cfg(test)]
mod name_set_tests {
    use super::*;

    #[test]
    fn a_name_set_is_sorted_exactly_sized_and_freed_when_emptied() {
        let mut set = NameSet::default();
        for n in ["tools/list", "initialize", "ping", "initialize"] {
            set.insert(n);
        }
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            ["initialize", "ping", "tools/list"]
        );
        assert_eq!(set.capacity(), 3);
        assert!(set.contains("ping") && !set.contains("pong"));
        assert!(!set.remove("pong"));
        for n in ["ping", "initialize", "tools/list"] {
            assert!(set.remove(n));
        }
        assert_eq!((set.len(), set.capacity()), (0, 0));
    }

    #[test]
    fn equal_values_are_shared_and_unequal_ones_kept_apart() {
        let a = shared_value(&json!({"name_set_tests": {"listChanged": true}}));
        let b = shared_value(&json!({"name_set_tests": {"listChanged": true}}));
        let c = shared_value(&json!({"name_set_tests": {"listChanged": false}}));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, json!({"name_set_tests": {"listChanged": false}}));
    }

    #[test]
    fn sessions_that_show_the_same_handshake_share_its_strings() {
        let session = |sid: &str| {
            let mut s = McpSession::new(
                GroupKey::Header(sid.into()),
                7,
                "name-set-tests-comm",
                Side::Client,
                "127.0.0.1:1/name-set-tests".into(),
                1,
                8,
            );
            s.on_call(
                "initialize",
                Some(&json!({"protocolVersion": "2099-01-01", "clientInfo": {"name": "c", "version": "1"}})),
                true,
            );
            s.on_result(
                Some("initialize"),
                &json!({"protocolVersion": "2099-01-01", "serverInfo": {"name": "nst", "version": "2"}}),
            );
            s
        };
        let (a, b) = (session("a"), session("b"));
        assert!(Arc::ptr_eq(&a.client, &b.client));
        assert!(Arc::ptr_eq(&a.server_info, &b.server_info));
        assert!(Arc::ptr_eq(&a.comm, &b.comm) && Arc::ptr_eq(&a.server, &b.server));
        let (va, vb) = (
            a.negotiated_protocol_version.clone().unwrap_or_default(),
            b.requested_protocol_version.clone().unwrap_or_default(),
        );
        assert!(Arc::ptr_eq(&va, &vb));
        assert_eq!(&*va, "2099-01-01");
        assert_eq!(a.server_info.name.as_deref(), Some("nst"));
        assert_eq!(
            a.summary(SessionStatus::Active, None, 2)
                .protocol_version
                .as_deref(),
            Some("2099-01-01")
        );
    }
}
