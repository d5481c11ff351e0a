//! One MCP session of one observed process: identity, handshake state, counters.

use std::collections::BTreeSet;

use serde_json::Value;

use super::extract::{self, Implementation, StatelessMeta};
use super::pairing::{Displaced, PendingTable};
use super::record::{EndReason, Era, Grouping, SessionStatus, SessionSummary};
use super::Side;

/// Distinct method / tool names remembered per session (bounded against hostile peers).
pub const MAX_DISTINCT_NAMES: usize = 1024;

/// How the tracker finds a session, within one process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GroupKey {
    /// The session header's value.
    Header(String),
    /// The connection's `conn_id` (no session id issued, or `initialize` not yet answered).
    Conn(String),
    /// Stateless era: server endpoint + path, and the client's name (empty when unknown).
    Stateless { server: String, client: String },
}

impl GroupKey {
    pub(crate) fn grouping(&self) -> Grouping {
        match self {
            GroupKey::Header(_) => Grouping::SessionHeader,
            GroupKey::Conn(_) => Grouping::Connection,
            GroupKey::Stateless { .. } => Grouping::Stateless,
        }
    }

    pub(crate) fn era(&self) -> Era {
        match self {
            GroupKey::Stateless { .. } => Era::Stateless,
            GroupKey::Header(_) | GroupKey::Conn(_) => Era::Handshake,
        }
    }

    /// The text reported as the summary's `session_id`.
    pub(crate) fn label(&self) -> String {
        match self {
            GroupKey::Header(id) | GroupKey::Conn(id) => id.clone(),
            GroupKey::Stateless { server, client } => format!("{client}@{server}"),
        }
    }
}

/// Where a handshake-era session is in its lifecycle (stateless sessions stay `New`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub comm: String,
    pub side: Side,
    /// `"ip:port/path"` of the server end.
    pub server: String,
    pub state: SessionState,
    pub client: Implementation,
    pub client_capabilities: Option<Value>,
    pub server_info: Implementation,
    pub server_capabilities: Option<Value>,
    /// Version the client asked for (`initialize` params or stateless `_meta`).
    pub requested_protocol_version: Option<String>,
    /// Version the server answered in the `initialize` result.
    pub negotiated_protocol_version: Option<String>,
    pub started_ns: u64,
    pub last_ns: u64,
    pub requests: u64,
    pub notifications: u64,
    pub responses: u64,
    pub errors: u64,
    pub methods: BTreeSet<String>,
    pub tools: BTreeSet<String>,
    pub(crate) pending: PendingTable,
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
            comm: comm.to_string(),
            side,
            server,
            state: SessionState::New,
            client: Implementation::default(),
            client_capabilities: None,
            server_info: Implementation::default(),
            server_capabilities: None,
            requested_protocol_version: None,
            negotiated_protocol_version: None,
            started_ns: ts_ns,
            last_ns: ts_ns,
            requests: 0,
            notifications: 0,
            responses: 0,
            errors: 0,
            methods: BTreeSet::new(),
            tools: BTreeSet::new(),
            pending: PendingTable::new(max_pending),
        }
    }

    /// How messages were grouped into this session.
    pub fn grouping(&self) -> Grouping {
        self.key.grouping()
    }

    /// The summary's `session_id`.
    pub fn label(&self) -> String {
        self.key.label()
    }

    /// Requests awaiting an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
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
        match method {
            "initialize" if is_request => {
                self.state = SessionState::Initializing;
                if let Some(p) = params {
                    if let Some(client) = Implementation::from_value(p.get("clientInfo")) {
                        self.client = client;
                    }
                    self.client_capabilities = p.get("capabilities").cloned();
                    self.requested_protocol_version = extract::str_field(p.get("protocolVersion"));
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
            self.requested_protocol_version = Some(meta.protocol_version);
            if let Some(client) = meta.client {
                self.client = client;
            }
            if meta.capabilities.is_some() {
                self.client_capabilities = meta.capabilities;
            }
        }
    }

    /// A result answering `method` (when paired) was seen.
    pub(crate) fn on_result(&mut self, method: Option<&str>, result: &Value) {
        self.responses += 1;
        if method == Some("initialize") {
            if let Some(info) = Implementation::from_value(result.get("serverInfo")) {
                self.server_info = info;
            }
            self.server_capabilities = result.get("capabilities").cloned();
            self.negotiated_protocol_version = extract::str_field(result.get("protocolVersion"));
            if self.state == SessionState::Initializing || self.state == SessionState::New {
                self.state = SessionState::Initialized;
            }
        }
        if let Some(info) = extract::stateless_server_info(result) {
            self.server_info = info;
        }
    }

    /// A JSON-RPC error was seen.
    pub(crate) fn on_error(&mut self) {
        self.errors += 1;
    }

    /// Folds `other` (the same conversation seen under another key) into this session.
    pub(crate) fn absorb(&mut self, other: McpSession) -> Displaced {
        self.touch(other.started_ns);
        self.touch(other.last_ns);
        if self.state == SessionState::New {
            self.state = other.state;
        }
        fill(&mut self.client.name, other.client.name);
        fill(&mut self.client.version, other.client.version);
        fill(&mut self.client_capabilities, other.client_capabilities);
        fill(&mut self.server_info.name, other.server_info.name);
        fill(&mut self.server_info.version, other.server_info.version);
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
        for m in &other.methods {
            insert_bounded(&mut self.methods, m);
        }
        for t in &other.tools {
            insert_bounded(&mut self.tools, t);
        }
        self.pending.absorb(other.pending)
    }

    /// The summary of this session ending at `ended_ns`.
    pub fn summary(
        &self,
        status: SessionStatus,
        end_reason: EndReason,
        ended_ns: u64,
    ) -> SessionSummary {
        let ended_ns = ended_ns.max(self.started_ns);
        SessionSummary {
            session_id: self.label(),
            grouping: self.grouping(),
            pid: self.pid,
            comm: self.comm.clone(),
            side: self.side,
            server: self.server.clone(),
            client_name: self.client.name.clone(),
            client_version: self.client.version.clone(),
            server_name: self.server_info.name.clone(),
            server_version: self.server_info.version.clone(),
            protocol_version: self
                .negotiated_protocol_version
                .clone()
                .or_else(|| self.requested_protocol_version.clone()),
            started_ns: self.started_ns,
            ended_ns,
            duration_ns: ended_ns - self.started_ns,
            requests: self.requests,
            notifications: self.notifications,
            responses: self.responses,
            errors: self.errors,
            status,
            end_reason,
            methods: self.methods.iter().cloned().collect(),
            tools: self.tools.iter().cloned().collect(),
            attacks: Vec::new(),
        }
    }
}

fn insert_bounded(set: &mut BTreeSet<String>, name: &str) {
    if set.len() < MAX_DISTINCT_NAMES && !set.contains(name) {
        set.insert(name.to_string());
    }
}

fn fill<T>(slot: &mut Option<T>, other: Option<T>) {
    if slot.is_none() {
        *slot = other;
    }
}
