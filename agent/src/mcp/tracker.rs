//! The tracker: payloads and HTTP heads in, [`Record`]s out.
//!
//! Which session a payload belongs to, in order (always within the observed process):
//! 1. the request carries the session header → that session;
//! 2. only the response carries it (the `initialize` answer) → the session held on the
//!    connection is re-keyed to that id, and so is everything after;
//! 3. a request whose `params._meta` names a protocol version (2026-07-28+), or whose
//!    `MCP-Protocol-Version` header does → the stateless session of (server address + path,
//!    client name); answers on that connection follow it;
//! 4. otherwise → the connection (servers that issue no session id, `initialize` not yet
//!    answered).
//!
//! Sessions end on DELETE answered 2xx, on 404 to a request carrying their id, when their
//! connection closes (connection grouping only), after the idle timeout, or at shutdown.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::extract::{self, StatelessMeta};
use super::pairing::{Displaced, Pending};
use super::record::{EndReason, Kind, MessageRecord, Record, SessionStatus};
use super::session::{GroupKey, McpSession};
use super::{header_value, Endpoint, Flow, HttpMeta, McpConfig};
use crate::rpc::{decode_with, DecodeLimits, RpcError, RpcMessage};

/// Request header naming the protocol revision (2025-06-18+).
const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

type SessionKey = (u32, GroupKey);

/// Counters, for metrics and the shutdown line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct McpStats {
    /// Sessions tracked now.
    pub sessions: usize,
    /// Requests awaiting an answer now, over all sessions.
    pub pending: usize,
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
}

/// Tracks MCP sessions across the payloads of every observed connection.
#[derive(Debug)]
pub struct McpTracker {
    cfg: McpConfig,
    limits: DecodeLimits,
    sessions: HashMap<SessionKey, McpSession>,
    /// Connections whose last session-less request went to a stateless session: their
    /// answers (which carry no `_meta` version) follow it there.
    stateless_conns: HashMap<(u32, String), GroupKey>,
    /// Session ids ended by DELETE or 404: late messages carrying them are still reported
    /// but do not resurrect the session.
    ended_ids: Tombstones,
    counters: McpStats,
}

impl McpTracker {
    pub fn new(cfg: McpConfig) -> Self {
        let limits = DecodeLimits {
            max_body_bytes: cfg.max_payload_bytes,
            ..DecodeLimits::default()
        };
        let ended_ids = Tombstones::new(cfg.max_sessions);
        McpTracker {
            cfg,
            limits,
            sessions: HashMap::new(),
            stateless_conns: HashMap::new(),
            ended_ids,
            counters: McpStats::default(),
        }
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
                self.counters.decode_errors += 1;
                tracing::debug!(pid = ep.pid, conn = %ep.conn_id, %error, "payload is not JSON-RPC");
                return;
            }
        };
        let session_id = self
            .request_session_id(http)
            .or_else(|| self.response_session_id(http));
        let key = self.group_key(ep, http, flow, &decoded.messages);
        for message in decoded.messages {
            match message {
                Ok(message) => {
                    self.counters.messages += 1;
                    let rec = self.on_message(
                        ep,
                        http,
                        flow,
                        &key,
                        session_id,
                        message,
                        decoded.batch,
                        ts_ns,
                        out,
                    );
                    out.push(Record::Message(rec));
                }
                Err(error) => {
                    self.counters.decode_errors += 1;
                    tracing::debug!(pid = ep.pid, conn = %ep.conn_id, %error, "batch element is not JSON-RPC");
                }
            }
        }
    }

    /// An HTTP exchange's response head was seen (even with no body).
    ///
    /// * The session header on the answer to a request that had none (the `initialize`
    ///   exchange) binds the connection's pending session to that id.
    /// * `DELETE` answered 2xx ends the request's session (`"delete"`); any request carrying
    ///   a session id answered 404 ends it (`"not_found"`).
    pub fn on_response_head(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        let Some(sid) = self.request_session_id(http) else {
            if let Some(sid) = self.response_session_id(http) {
                self.bind_connection(ep.pid, &ep.conn_id, sid);
            }
            return;
        };
        let reason = match http.status {
            Some(s) if http.method.eq_ignore_ascii_case("DELETE") && (200..300).contains(&s) => {
                EndReason::Delete
            }
            Some(404) => EndReason::NotFound,
            _ => return,
        };
        self.ended_ids.insert(ep.pid, sid, ts_ns);
        self.end(
            &(ep.pid, GroupKey::Header(sid.to_string())),
            SessionStatus::Ended,
            reason,
            ts_ns,
            out,
        );
    }

    /// A connection of process `pid` closed: sessions grouped by that connection end.
    pub fn on_conn_closed(&mut self, pid: u32, conn_id: &str, ts_ns: u64, out: &mut Vec<Record>) {
        self.stateless_conns.remove(&(pid, conn_id.to_string()));
        self.end(
            &(pid, GroupKey::Conn(conn_id.to_string())),
            SessionStatus::Ended,
            EndReason::Closed,
            ts_ns,
            out,
        );
    }

    /// Periodic: sessions with no message for longer than the idle timeout end (`"idle"`,
    /// `ended_ns` = their last message).
    pub fn on_tick(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let timeout = self.cfg.idle_timeout_ns;
        self.ended_ids.expire(now_ns, timeout);
        let mut idle: Vec<(u64, SessionKey, u64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ns.saturating_sub(s.last_ns) > timeout)
            .map(|(k, s)| (s.started_ns, k.clone(), s.last_ns))
            .collect();
        idle.sort();
        for (_, key, last_ns) in idle {
            self.end(&key, SessionStatus::Ended, EndReason::Idle, last_ns, out);
        }
    }

    /// The agent is stopping: a summary for every open session (`"shutdown"`, `"active"`).
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let mut open: Vec<(u64, SessionKey, McpSession)> = self
            .sessions
            .drain()
            .map(|(k, s)| (s.started_ns, k, s))
            .collect();
        open.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, s) in open {
            out.push(Record::SessionEnd(s.summary(
                SessionStatus::Active,
                EndReason::Shutdown,
                now_ns,
            )));
        }
        self.stateless_conns.clear();
    }

    pub fn stats(&self) -> McpStats {
        McpStats {
            sessions: self.sessions.len(),
            pending: self.sessions.values().map(McpSession::pending).sum(),
            ..self.counters
        }
    }

    /// The sessions tracked now, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = &McpSession> {
        self.sessions.values()
    }

    fn request_session_id<'h>(&self, http: &HttpMeta<'h>) -> Option<&'h str> {
        header_value(http.request_headers, &self.cfg.session_header)
    }

    fn response_session_id<'h>(&self, http: &HttpMeta<'h>) -> Option<&'h str> {
        http.response_headers
            .and_then(|h| header_value(h, &self.cfg.session_header))
    }

    /// Which session a payload belongs to (rules in the module docs).
    fn group_key(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        messages: &[Result<RpcMessage, RpcError>],
    ) -> GroupKey {
        if let Some(sid) = self.request_session_id(http) {
            return GroupKey::Header(sid.to_string());
        }
        if let Some(sid) = self.response_session_id(http) {
            self.bind_connection(ep.pid, &ep.conn_id, sid);
            return GroupKey::Header(sid.to_string());
        }
        let conn = (ep.pid, ep.conn_id.clone());
        if flow == Flow::ServerToClient {
            return self
                .stateless_conns
                .get(&conn)
                .cloned()
                .unwrap_or_else(|| GroupKey::Conn(ep.conn_id.clone()));
        }
        let meta = messages.iter().find_map(|m| match m {
            Ok(RpcMessage::Request { params, .. } | RpcMessage::Notification { params, .. }) => {
                StatelessMeta::from_params(params.as_ref())
            }
            _ => None,
        });
        let server = server_label(ep, http);
        let key = if let Some(meta) = meta {
            let client = meta.client.and_then(|c| c.name).unwrap_or_default();
            GroupKey::Stateless { server, client }
        } else if http
            .request_header(PROTOCOL_VERSION_HEADER)
            .is_some_and(extract::is_stateless_revision)
        {
            match self.stateless_conns.get(&conn) {
                Some(k @ GroupKey::Stateless { .. }) => k.clone(),
                _ => GroupKey::Stateless {
                    server,
                    client: String::new(),
                },
            }
        } else {
            self.stateless_conns.remove(&conn);
            return GroupKey::Conn(ep.conn_id.clone());
        };
        if self.stateless_conns.len() >= self.cfg.max_sessions
            && !self.stateless_conns.contains_key(&conn)
        {
            // Bounded: connections normally leave through `on_conn_closed`.
            self.stateless_conns.clear();
        }
        self.stateless_conns.insert(conn, key.clone());
        key
    }

    /// The session held on connection `conn_id` (its `initialize` exchange) now has id `sid`.
    fn bind_connection(&mut self, pid: u32, conn_id: &str, sid: &str) {
        self.ended_ids.remove(pid, sid);
        self.stateless_conns.remove(&(pid, conn_id.to_string()));
        let Some(mut held) = self
            .sessions
            .remove(&(pid, GroupKey::Conn(conn_id.to_string())))
        else {
            return;
        };
        let key = (pid, GroupKey::Header(sid.to_string()));
        held.key = key.1.clone();
        match self.sessions.get_mut(&key) {
            Some(existing) => {
                let displaced = existing.absorb(held);
                self.count(displaced);
            }
            None => {
                self.sessions.insert(key, held);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_message(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        flow: Flow,
        key: &GroupKey,
        session_id: Option<&str>,
        message: RpcMessage,
        batch: bool,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) -> MessageRecord {
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
            session_id: session_id.map(str::to_string),
            era: key.era(),
            direction: flow,
            kind: Kind::Request,
            id: None,
            method: None,
            name: None,
            latency_ns: None,
            error_code: None,
            error_message: None,
            tool_error: false,
            progress_token: None,
            batch,
            transport: http.transport,
        };
        let mut displaced = Displaced::default();
        let mut paired = None;
        let session = self.session(ep, http, key, ts_ns, out);
        match message {
            RpcMessage::Request { id, method, params } => {
                rec.name = extract::target_name(&method, params.as_ref());
                rec.progress_token = extract::progress_token(&method, params.as_ref(), true);
                if let Some(s) = session {
                    s.on_call(&method, params.as_ref(), true);
                    let pending = Pending {
                        method: method.clone(),
                        name: rec.name.clone(),
                        ts_ns,
                    };
                    displaced = s.pending.insert(flow, id.clone(), pending);
                }
                rec.id = Some(id);
                rec.method = Some(method);
            }
            RpcMessage::Notification { method, params } => {
                rec.kind = Kind::Notification;
                rec.progress_token = extract::progress_token(&method, params.as_ref(), false);
                if let Some(s) = session {
                    s.on_call(&method, params.as_ref(), false);
                }
                rec.method = Some(method);
            }
            RpcMessage::Response { id, result } => {
                rec.kind = Kind::Response;
                if let Some(s) = session {
                    paired = s.pending.take(flow, &id);
                    s.on_result(paired.as_ref().map(|p| p.method.as_str()), &result);
                }
                if let Some(text) = extract::tool_error(&result) {
                    rec.tool_error = true;
                    rec.error_message = text;
                }
                rec.id = Some(id);
            }
            RpcMessage::Error {
                id, code, message, ..
            } => {
                rec.kind = Kind::Error;
                if let Some(s) = session {
                    paired = id.as_ref().and_then(|id| s.pending.take(flow, id));
                    s.on_error();
                }
                rec.error_code = Some(code);
                rec.error_message = Some(extract::cap_message(&message));
                rec.id = id;
            }
        }
        if matches!(rec.kind, Kind::Response | Kind::Error) {
            match paired {
                Some(p) => {
                    rec.latency_ns = Some(ts_ns.saturating_sub(p.ts_ns));
                    rec.method = Some(p.method);
                    rec.name = p.name;
                }
                None => self.counters.unpaired_answers += 1,
            }
        }
        self.count(displaced);
        rec
    }

    /// The session for `key`, created on first sight; `None` for an id ended by DELETE/404.
    fn session(
        &mut self,
        ep: &Endpoint,
        http: &HttpMeta,
        key: &GroupKey,
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
            let session = McpSession::new(
                key.clone(),
                ep.pid,
                &ep.comm,
                ep.side,
                server_label(ep, http),
                ts_ns,
                self.cfg.max_pending_per_session,
            );
            self.sessions.insert(full_key.clone(), session);
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
        if let Some(s) = self.sessions.remove(key) {
            out.push(Record::SessionEnd(s.summary(status, reason, ended_ns)));
        }
    }

    fn count(&mut self, displaced: Displaced) {
        self.counters.evicted_pending += displaced.evicted;
        self.counters.replaced_pending += displaced.replaced;
    }
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
