//! Connection table: kernel events → per-direction HTTP streams → MCP tracker.
//!
//! Gap policy: each direction of a connection is a byte stream addressed by kernel position.
//! A chunk that starts after the expected position means bytes were lost (ring full,
//! truncation): the lost count is recorded, the HTTP parser drops the message in progress and
//! resynchronises at the next message start. A chunk that starts before it (a duplicate) is
//! trimmed. Nothing here reads the clock: timestamps come from the kernel, and nothing here
//! reads `/proc`: a 4-tuple the kernel did not see is resolved when the event is taken off
//! the ring ([`KernelEvent::resolve_from_proc`]) and travels in the event (and the recording).
//!
//! The table is bounded: when it is full, the least recently active connection is evicted
//! (counted). An ordered index by (last activity, connection) makes that O(log n).

mod dup;
pub mod procfs;

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::capture::events::{Direction, KernelEvent};
use crate::capture::ConnIdent;
use crate::http::{HttpEvent, HttpParser, Limits, MessageKind, RequestHead, ResponseHead};
use crate::mcp::{Endpoint, Flow, HttpMeta, McpTracker, Record, Side, Transport};

/// Counters of this stage (exported with the kernel's).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ConnStats {
    pub conns_opened: u64,
    pub conns_closed: u64,
    /// Connections dropped from the table because it was full (least recently active first).
    pub conns_evicted: u64,
    /// Stream gaps detected and bytes they lost.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Bytes received twice and trimmed.
    pub duplicate_bytes: u64,
    /// HTTP parse errors (the parser resynchronised after each).
    pub http_errors: u64,
    /// Responses that arrived with no request to pair them with.
    pub unmatched_responses: u64,
    /// Ring records that did not decode.
    pub bad_records: u64,
    /// TLS connections tied to their socket after they started streaming.
    pub tls_ties: u64,
    /// TLS connections whose socket never became known (released without a 4-tuple).
    pub tls_untied: u64,
    /// TLS connections judged before their socket was known because a write was held
    /// (hold mode; the tie fills the 4-tuple of later records).
    pub tls_judged_untied: u64,
    /// Plaintext connections first seen mid-stream: the kernel had not seen them established
    /// (they predate the agent, e.g. after a restart); what they carried before is not seen.
    pub conns_adopted: u64,
    /// Duplicate fds of a connection's socket (`dup`, `try_clone`) whose stream joined it.
    pub dup_fds_joined: u64,
    /// Bytes of a joined duplicate fd in a direction another fd of the socket already
    /// carries: dropped (the two fds' positions cannot be ordered), counted per event.
    pub dup_stream_conflicts: u64,
    /// Bytes of bodies too large to look at that the kernel was asked to leave out, and did
    /// (body skipping: not lost, no gap).
    pub body_skipped_bytes: u64,
}

struct DirStream {
    next_pos: Option<u64>,
    parser: Option<HttpParser>,
    /// Body skipping: the stream range `[from, until)` of the body in progress that need not
    /// be carried (see [`BodySkipChange`]).
    skip: Option<(u64, u64)>,
}

impl DirStream {
    fn new() -> Self {
        Self {
            next_pos: None,
            parser: None,
            skip: None,
        }
    }
}

/// Body skipping (`mcpwarden_common::conn::BodySkipKey`): a body the parser will not look at
/// any more (too large, its first bytes kept) need not cross the ring. The table names each
/// such body's stream range once its parser is done with it; the live agent hands these
/// changes to the kernel ([`ConnTable::take_body_skips`]). A gap inside a named range is then
/// the kernel leaving bytes out on purpose: counted as skipped, never as loss. Replay sees the
/// same gaps and treats them the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySkipChange {
    Start {
        conn: ConnIdent,
        dir: Direction,
        from: u64,
        until: u64,
    },
    End {
        conn: ConnIdent,
        dir: Direction,
    },
}

/// Bodies with fewer bytes left than this are read through: not worth a map write.
pub const MIN_BODY_SKIP_BYTES: u64 = 256 * 1024;

struct Conn {
    ep: Endpoint,
    egress: DirStream,
    ingress: DirStream,
    /// Which direction carries requests (decided by the first HTTP message seen).
    request_dir: Option<Direction>,
    /// Request heads waiting for their response, in order (HTTP/1.1 pipelining).
    awaiting_response: VecDeque<RequestHead>,
    /// The request whose body is being read.
    cur_request: Option<RequestHead>,
    /// The exchange whose response body is being read.
    cur_response: Option<(RequestHead, ResponseHead)>,
    last_ts: u64,
    /// First bytes too short to tell a request from a response (direction, stream position,
    /// bytes; at most 4).
    sniff: Option<(Direction, u64, Vec<u8>)>,
    /// TLS connection whose socket is not known yet: its data waits here (bounded) so the
    /// records carry the right 4-tuple; released by the tie, or by `on_tick` after
    /// `TIE_WAIT_NS` with the tuple left unknown.
    awaiting_tie: Option<HeldData>,
    /// Which fd carries each direction once a duplicate fd joined (see `dup`).
    dup_owners: dup::DirOwners,
    /// Body skips begun (`Some((from, until))`) or ended (`None`) since the table last looked.
    skip_changes: Vec<(Direction, Option<(u64, u64)>)>,
}

struct HeldData {
    since_ns: u64,
    bytes: usize,
    events: Vec<(Direction, u64, Vec<u8>, u64)>,
}

/// How long TLS data may wait for its socket.
const TIE_WAIT_NS: u64 = 1_000_000_000;
/// How much TLS data may wait for its socket.
const TIE_WAIT_MAX_BYTES: usize = 4 << 20;

/// A map keyed by connection id. The ids are the kernel's (pid, fd, start time), not text a
/// peer chooses, so a fast seeded hash serves where SipHash was a tenth of the decoder's time.
pub(crate) type IdMap<V> = HashMap<ConnIdent, V, foldhash::fast::RandomState>;

pub struct ConnTable {
    conns: IdMap<Conn>,
    tracker: McpTracker,
    limits: Limits,
    max_conns: usize,
    pub stats: ConnStats,
    /// `(local, remote)` → connection, to name each record's peer process when both ends of
    /// a connection are on this host. Entries of closed connections are checked on lookup
    /// and swept when the index outgrows the table.
    /// Keyed by [`Self::tuple_key`]; a lookup checks the addresses of what it finds.
    tuples: HashMap<u64, ConnIdent, foldhash::fast::RandomState>,
    /// The seeded hash of the `tuples` keys.
    tuple_hasher: foldhash::fast::RandomState,
    /// Every connection by (last activity, id): the first is the next to evict.
    by_activity: BTreeSet<(u64, ConnIdent)>,
    /// Duplicate fds joined to the connection of their socket.
    dups: dup::Duplicates,
    /// Body skip changes for the kernel, when asked for ([`Self::request_body_skips`]).
    body_skips: Option<Vec<BodySkipChange>>,
}

fn other(d: Direction) -> Direction {
    match d {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    }
}

impl ConnTable {
    pub fn new(tracker: McpTracker, limits: Limits, max_conns: usize) -> Self {
        Self {
            conns: IdMap::default(),
            tracker,
            limits,
            max_conns: max_conns.max(1),
            stats: ConnStats::default(),
            tuples: HashMap::default(),
            tuple_hasher: foldhash::fast::RandomState::default(),
            by_activity: BTreeSet::new(),
            dups: dup::Duplicates::default(),
            body_skips: None,
        }
    }

    /// The live agent: collect body skip changes for the kernel ([`Self::take_body_skips`]).
    pub fn request_body_skips(&mut self) {
        self.body_skips.get_or_insert_with(Vec::new);
    }

    /// Body skip changes since the last call (none unless [`Self::request_body_skips`]).
    pub fn take_body_skips(&mut self) -> Vec<BodySkipChange> {
        self.body_skips
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Moves a connection's body skip changes to the table's list (or drops them).
    fn collect_skips(&mut self, id: ConnIdent) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.skip_changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut c.skip_changes);
        push_skip_changes(&mut self.body_skips, id, changes);
    }

    /// A connection leaves the table: the kernel forgets its body skips.
    fn end_skips(&mut self, id: ConnIdent, c: &mut Conn) {
        let mut changes = std::mem::take(&mut c.skip_changes);
        for dir in [Direction::Egress, Direction::Ingress] {
            // Kept: the close's tail may still end inside it.
            if stream(c, dir).skip.is_some() {
                changes.push((dir, None));
            }
        }
        push_skip_changes(&mut self.body_skips, id, changes);
    }

    /// Is this connection in the table?
    /// The connection is known: open, or a duplicate fd joined to an open one.
    pub fn contains(&self, id: &ConnIdent) -> bool {
        self.conns.contains_key(id) || self.dups.is_joined(id)
    }

    /// Removes a connection and its activity index entry.
    fn remove(&mut self, id: &ConnIdent) -> Option<Conn> {
        let mut c = self.conns.remove(id)?;
        self.by_activity.remove(&(c.last_ts, *id));
        self.end_skips(*id, &mut c);
        Some(c)
    }

    /// Connections in eviction order (least recently active first).
    pub fn eviction_order(&self) -> Vec<ConnIdent> {
        self.by_activity.iter().map(|(_, id)| *id).collect()
    }

    fn index_tuple(&mut self, id: ConnIdent) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.ep.local.is_empty() || c.ep.remote.is_empty() {
            return;
        }
        if self.tuples.len() >= 2 * self.max_conns {
            let conns = &self.conns;
            self.tuples.retain(|_, id| conns.contains_key(id));
        }
        let key = self.tuple_key(&c.ep.local, &c.ep.remote);
        self.tuples.insert(key, id);
    }

    /// The `tuples` key of `(local, remote)`: a seeded 64-bit hash, so a lookup allocates
    /// nothing (two strings per record before). A collision can only hide a peer: every
    /// lookup compares the addresses of the connection it finds.
    fn tuple_key(&self, local: &str, remote: &str) -> u64 {
        use std::hash::BuildHasher;
        self.tuple_hasher.hash_one((local, remote))
    }

    /// The live connection of another fd or process whose addresses are exactly `(local,
    /// remote)`.
    fn by_tuple(&self, local: &str, remote: &str) -> Option<(ConnIdent, &Conn)> {
        let id = *self.tuples.get(&self.tuple_key(local, remote))?;
        self.conns
            .get(&id)
            .filter(|c| c.ep.local == local && c.ep.remote == remote)
            .map(|c| (id, c))
    }

    /// Names the peer process on message records `out[start..]` whose other end is a live
    /// connection of another process on this host.
    fn link_peers(&self, out: &mut [Record]) {
        if self.tuples.is_empty() {
            return;
        }
        for r in out {
            if let Record::Verdict(v) = r {
                v.peer_pid = self
                    .by_tuple(&v.remote, &v.local)
                    .map(|(_, p)| p.ep.pid)
                    .filter(|&pid| pid != v.pid);
                continue;
            }
            let Record::Message(m) = r else {
                continue;
            };
            if m.peer_pid.is_some() || m.local.is_empty() {
                continue;
            }
            let Some((_, peer)) = self.by_tuple(&m.remote, &m.local) else {
                continue;
            };
            if peer.ep.pid != m.pid {
                m.peer_pid = Some(peer.ep.pid);
                m.peer_comm = Some(peer.ep.comm.clone());
            }
        }
    }

    pub fn tracker(&self) -> &McpTracker {
        &self.tracker
    }

    pub fn tracker_mut(&mut self) -> &mut McpTracker {
        &mut self.tracker
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Feeds one kernel event; MCP records it produces are appended to `out`.
    pub fn on_event(&mut self, ev: KernelEvent, out: &mut Vec<Record>) {
        let start = out.len();
        let indexed = match &ev {
            KernelEvent::Open { conn, .. } | KernelEvent::TlsTie { conn, .. } => Some(*conn),
            _ => None,
        };
        self.dispatch(ev, out);
        if let Some(id) = indexed {
            self.index_tuple(id);
        }
        if let Some(new) = out.get_mut(start..) {
            self.link_peers(new);
        }
    }

    fn dispatch(&mut self, ev: KernelEvent, out: &mut Vec<Record>) {
        match ev {
            KernelEvent::Open {
                conn,
                ts_ns,
                local,
                remote,
                connector,
                comm,
                proc_tuple,
                ..
            } => {
                if self.conns.contains_key(&conn) {
                    return;
                }
                // A plaintext connection whose establishment the kernel did not see predates
                // the agent: it is adopted mid-stream.
                let adopted = !conn.is_tls() && local.is_none();
                let (local, remote) = match (local, remote) {
                    (Some(l), Some(r)) => (Some(l), Some(r)),
                    _ => proc_tuple.unzip(),
                };
                let (local, remote) = (fmt_addr(local), fmt_addr(remote));
                if self.join_duplicate(conn, &local, &remote) {
                    return;
                }
                let no_local = local.is_empty();
                self.insert(conn, comm, (local, remote), side_of(connector), ts_ns, out);
                if adopted {
                    self.stats.conns_adopted += 1;
                    self.tracker.on_conn_adopted(conn.pid, &conn.to_string());
                }
                if conn.is_tls() && no_local {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.awaiting_tie = Some(HeldData {
                            since_ns: ts_ns,
                            bytes: 0,
                            events: Vec::new(),
                        });
                    }
                }
            }
            KernelEvent::TlsTie {
                conn,
                local,
                remote,
                connector,
                proc_tuple,
                ..
            } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.ep.local.is_empty() {
                    let (l, r) = match (local, remote) {
                        (Some(l), Some(r)) => (Some(l), Some(r)),
                        _ => proc_tuple.unzip(),
                    };
                    c.ep.local = fmt_addr(l);
                    c.ep.remote = fmt_addr(r);
                    if c.request_dir.is_none() {
                        c.ep.side = side_of(connector);
                    }
                }
                self.stats.tls_ties += 1;
                self.release(conn, out);
            }
            KernelEvent::Data {
                conn,
                ts_ns,
                direction,
                pos,
                bytes,
                ..
            } => {
                let Some((conn, pos)) = self.route(conn, direction, pos) else {
                    return;
                };
                if !self.conns.contains_key(&conn) {
                    // Its open record was lost (the live agent puts an `Open` resolved from
                    // /proc before such data, see `run`): the connection starts unnamed.
                    let none = (String::new(), String::new());
                    self.insert(conn, String::new(), none, Side::Unknown, ts_ns, out);
                }
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.last_ts != ts_ns {
                    self.by_activity.remove(&(c.last_ts, conn));
                    c.last_ts = ts_ns;
                    self.by_activity.insert((ts_ns, conn));
                }
                if let Some(held) = c.awaiting_tie.as_mut() {
                    held.bytes += bytes.len();
                    held.events.push((direction, pos, bytes, ts_ns));
                    if held.bytes > TIE_WAIT_MAX_BYTES {
                        self.stats.tls_untied += 1;
                        self.release(conn, out);
                    }
                    return;
                }
                feed(
                    c,
                    &mut self.tracker,
                    &mut self.stats,
                    &self.limits,
                    direction,
                    pos,
                    &bytes,
                    ts_ns,
                    out,
                );
                self.collect_skips(conn);
            }
            KernelEvent::Exec { .. } | KernelEvent::LinkMapChange { .. } => {}
            KernelEvent::Close {
                conn,
                ts_ns,
                egress_bytes,
                ingress_bytes,
            } => {
                if self.close_duplicate(conn) {
                    return;
                }
                self.release(conn, out);
                if let Some(mut c) = self.remove(&conn) {
                    self.stats.conns_closed += 1;
                    for (dir, total) in [
                        (Direction::Egress, egress_bytes),
                        (Direction::Ingress, ingress_bytes),
                    ] {
                        tail_gap(
                            &mut c,
                            &mut self.tracker,
                            &mut self.stats,
                            dir,
                            total,
                            ts_ns,
                            out,
                        );
                    }
                    close(&mut c, &mut self.tracker, &mut self.stats, ts_ns, out);
                }
            }
        }
    }

    /// Like [`ConnTable::on_event`]; a data event whose write is held (its process stopped
    /// until the agent decides) is judged now even on a TLS connection whose socket is not
    /// known yet: waiting for the tie would wait for the write to leave. Its records then
    /// name no 4-tuple (the tie fills it for the records after).
    pub fn on_held_event(&mut self, ev: KernelEvent, out: &mut Vec<Record>) {
        let held = match &ev {
            KernelEvent::Data {
                conn,
                direction,
                ts_ns,
                ..
            } => Some((*conn, *direction, *ts_ns)),
            _ => None,
        };
        let start = out.len();
        self.on_event(ev, out);
        let Some((id, dir, ts_ns)) = held else {
            return;
        };
        let untied = self
            .conns
            .get(&id)
            .is_some_and(|c| c.awaiting_tie.is_some());
        if untied {
            self.stats.tls_judged_untied += 1;
            self.release(id, out);
        }
        // A request body too large to read whole, stopped at this write: the policy judges
        // it now by the bytes the write carries; the rest cannot come before the decision.
        if let Some(c) = self.conns.get_mut(&id) {
            let mut events = Vec::new();
            if let Some(p) = stream(c, dir).parser.as_mut() {
                p.announce_cut(ts_ns, &mut events);
            }
            if !events.is_empty() {
                handle(c, &mut self.tracker, &mut self.stats, dir, events, out);
            }
        }
        if untied {
            if let Some(new) = out.get_mut(start..) {
                self.link_peers(new);
            }
        }
    }

    /// Periodic housekeeping with the kernel clock's `now`.
    pub fn on_tick(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        let mut overdue: Vec<ConnIdent> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.awaiting_tie
                    .as_ref()
                    .is_some_and(|h| now_ns.saturating_sub(h.since_ns) >= TIE_WAIT_NS)
            })
            .map(|(k, _)| *k)
            .collect();
        overdue.sort_unstable();
        for id in overdue {
            self.stats.tls_untied += 1;
            self.release(id, out);
        }
        self.tracker.on_tick(now_ns, out);
    }

    /// Feeds a TLS connection's held data now that its socket is known (or given up on).
    fn release(&mut self, id: ConnIdent, out: &mut Vec<Record>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(held) = c.awaiting_tie.take() else {
            return;
        };
        for (dir, pos, bytes, ts) in held.events {
            feed(
                c,
                &mut self.tracker,
                &mut self.stats,
                &self.limits,
                dir,
                pos,
                &bytes,
                ts,
                out,
            );
        }
        self.collect_skips(id);
    }

    /// End of run: flush every connection and session.
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Record>) {
        // In a stable order (by connection), so a replay gives the same records every time.
        let mut conns: Vec<ConnIdent> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for id in conns {
            self.release(id, out);
            if let Some(mut c) = self.remove(&id) {
                flush_parsers(&mut c, &mut self.tracker, &mut self.stats, now_ns, out);
            }
        }
        self.tracker.finish(now_ns, out);
    }

    fn insert(
        &mut self,
        id: ConnIdent,
        comm: String,
        (local, remote): (String, String),
        side: Side,
        ts_ns: u64,
        out: &mut Vec<Record>,
    ) {
        while self.conns.len() >= self.max_conns {
            // The least recently active connection (ties: the smallest id).
            let Some(&(_, victim)) = self.by_activity.first() else {
                break;
            };
            let Some(mut c) = self.remove(&victim) else {
                // Cannot happen (the index mirrors the table); never loop on it.
                self.by_activity.pop_first();
                continue;
            };
            self.stats.conns_evicted += 1;
            let ts = c.last_ts;
            close(&mut c, &mut self.tracker, &mut self.stats, ts, out);
        }
        self.stats.conns_opened += 1;
        self.by_activity.insert((ts_ns, id));
        self.conns.insert(
            id,
            Conn {
                ep: Endpoint {
                    pid: id.pid,
                    comm,
                    side,
                    local,
                    remote,
                    conn_id: id.to_string(),
                },
                egress: DirStream::new(),
                ingress: DirStream::new(),
                request_dir: None,
                awaiting_response: VecDeque::new(),
                cur_request: None,
                cur_response: None,
                last_ts: ts_ns,
                awaiting_tie: None,
                dup_owners: dup::DirOwners::default(),
                sniff: None,
                skip_changes: Vec::new(),
            },
        );
    }
}

/// `ip:port` (`[ip]:port` for IPv6), or empty when unknown. IPv4 is written by hand: `std`'s
/// `Display` for addresses (padding support, a formatter per octet) was a twentieth of the
/// decoder's instructions, twice per connection.
fn fmt_addr(a: Option<std::net::SocketAddr>) -> String {
    match a {
        Some(std::net::SocketAddr::V4(v4)) => {
            let mut digits = itoa::Buffer::new();
            let mut s = String::with_capacity(21);
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(digits.format(octet));
            }
            s.push(':');
            s.push_str(digits.format(v4.port()));
            s
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn side_of(connector: Option<bool>) -> Side {
    match connector {
        Some(true) => Side::Client,
        Some(false) => Side::Server,
        None => Side::Unknown,
    }
}

fn stream(c: &mut Conn, d: Direction) -> &mut DirStream {
    match d {
        Direction::Egress => &mut c.egress,
        Direction::Ingress => &mut c.ingress,
    }
}

#[allow(clippy::too_many_arguments)]
fn feed(
    c: &mut Conn,
    tracker: &mut McpTracker,
    stats: &mut ConnStats,
    limits: &Limits,
    dir: Direction,
    pos: u64,
    bytes: &[u8],
    ts_ns: u64,
    out: &mut Vec<Record>,
) {
    let joined;
    let (pos, bytes) = if c.request_dir.is_none() {
        // Which side sends requests is decided from the first 5 bytes ("HTTP/" or not): a
        // shorter first piece waits (bounded) for the next piece of the same direction.
        let mut buf = match c.sniff.take() {
            Some((d, p, held)) if d == dir && p + held.len() as u64 == pos => (p, held),
            Some((d, p, held)) if d == dir => {
                stats.gaps += 1; // the held bytes do not continue: drop them
                stats.gap_bytes += held.len() as u64;
                let _ = p;
                (pos, Vec::new())
            }
            other => {
                c.sniff = other; // held bytes of the other direction wait for the decision
                (pos, Vec::new())
            }
        };
        buf.1.extend_from_slice(bytes);
        if buf.1.len() < 5 && b"HTTP/".starts_with(&buf.1) && c.sniff.is_none() {
            c.sniff = Some((dir, buf.0, buf.1));
            return;
        }
        joined = buf.1;
        (buf.0, joined.as_slice())
    } else {
        (pos, bytes)
    };
    if c.request_dir.is_none() {
        let req_dir = if bytes.starts_with(b"HTTP/") {
            other(dir)
        } else {
            dir
        };
        c.request_dir = Some(req_dir);
        c.ep.side = if req_dir == Direction::Egress {
            Side::Client
        } else {
            Side::Server
        };
        stream(c, req_dir).parser = Some(HttpParser::new(MessageKind::Request, *limits));
        stream(c, other(req_dir)).parser = Some(HttpParser::new(MessageKind::Response, *limits));
    }
    let mut events = Vec::new();
    {
        let s = stream(c, dir);
        let mut data = bytes;
        let next = *s.next_pos.get_or_insert(pos);
        let Some(parser) = s.parser.as_mut() else {
            return;
        };
        let skipped = s
            .skip
            .is_some_and(|(from, until)| from <= next && pos <= until);
        if pos > next && skipped && parser.skip(pos - next, ts_ns, &mut events) {
            stats.body_skipped_bytes += pos - next;
        } else if pos > next {
            stats.gaps += 1;
            stats.gap_bytes += pos - next;
            parser.gap(pos - next, ts_ns, &mut events);
        } else if pos < next {
            let dup = (next - pos).min(data.len() as u64);
            stats.duplicate_bytes += dup;
            data = &data[dup as usize..];
        }
        let next = pos.max(next) + data.len() as u64;
        s.next_pos = Some(next);
        if !data.is_empty() {
            parser.push(data, ts_ns, &mut events);
        }
        if let Some(change) = skip_change(s, next) {
            c.skip_changes.push((dir, change));
        }
    }
    handle(c, tracker, stats, dir, events, out);
    if let Some((d, p, held)) = c.sniff.take() {
        // Bytes held while the request side was undecided (now decided): feed them.
        feed(c, tracker, stats, limits, d, p, &held, ts_ns, out);
    }
}

/// Body skipping after a stream moved to `next`: ends a range the stream has passed, names the
/// body its parser has just finished with.
fn skip_change(s: &mut DirStream, next: u64) -> Option<Option<(u64, u64)>> {
    if let Some((_, until)) = s.skip {
        if next < until {
            return None;
        }
        s.skip = None;
        return Some(None);
    }
    let left = s.parser.as_ref()?.skippable_body()?;
    if left < MIN_BODY_SKIP_BYTES {
        return None;
    }
    let range = (next, next + left);
    s.skip = Some(range);
    Some(Some(range))
}

fn push_skip_changes(
    to: &mut Option<Vec<BodySkipChange>>,
    conn: ConnIdent,
    changes: Vec<(Direction, Option<(u64, u64)>)>,
) {
    let Some(to) = to.as_mut() else {
        return;
    };
    to.extend(changes.into_iter().map(|(dir, range)| match range {
        Some((from, until)) => BodySkipChange::Start {
            conn,
            dir,
            from,
            until,
        },
        None => BodySkipChange::End { conn, dir },
    }));
}

/// At close: bytes the kernel counted in direction `dir` (`total`) beyond the last byte
/// userspace received were lost at the end of the stream (the tail of a write above the
/// capture limit, ring overflow): a gap, so that the message they cut is reported as cut.
#[allow(clippy::too_many_arguments)]
fn tail_gap(
    c: &mut Conn,
    tracker: &mut McpTracker,
    stats: &mut ConnStats,
    dir: Direction,
    total: u64,
    ts_ns: u64,
    out: &mut Vec<Record>,
) {
    let mut events = Vec::new();
    {
        let s = stream(c, dir);
        let Some(next) = s.next_pos.filter(|&n| total > n) else {
            return;
        };
        let Some(parser) = s.parser.as_mut() else {
            return;
        };
        let skipped = s
            .skip
            .is_some_and(|(from, until)| from <= next && total <= until);
        if skipped && parser.skip(total - next, ts_ns, &mut events) {
            stats.body_skipped_bytes += total - next;
        } else {
            stats.gaps += 1;
            stats.gap_bytes += total - next;
            parser.gap(total - next, ts_ns, &mut events);
        }
        s.next_pos = Some(total);
    }
    handle(c, tracker, stats, dir, events, out);
}

fn handle(
    c: &mut Conn,
    tracker: &mut McpTracker,
    stats: &mut ConnStats,
    dir: Direction,
    events: Vec<HttpEvent>,
    out: &mut Vec<Record>,
) {
    let is_request_dir = c.request_dir == Some(dir);
    for ev in events {
        match ev {
            HttpEvent::Request(head) => {
                if let Some(p) = stream(c, other(dir)).parser.as_mut() {
                    p.expect_response_to(&head.method);
                }
                c.awaiting_response.push_back(head.clone());
                c.cur_request = Some(head);
            }
            HttpEvent::Response(head) => {
                if (100..200).contains(&head.status) {
                    continue; // interim (100 Continue): the final response follows
                }
                let Some(req) = c.awaiting_response.pop_front() else {
                    stats.unmatched_responses += 1;
                    continue;
                };
                let meta = meta(&req, Some(&head), Transport::Json);
                tracker.on_response_head(&c.ep, &meta, head.ts_ns, out);
                c.cur_response = Some((req, head));
            }
            HttpEvent::Body {
                data, last_ts_ns, ..
            } => {
                if is_request_dir {
                    if let Some(req) = &c.cur_request {
                        let m = meta(req, None, Transport::Json);
                        tracker.on_payload(&c.ep, &m, Flow::ClientToServer, &data, req.ts_ns, out);
                    }
                } else if let Some((req, resp)) = &c.cur_response {
                    let m = meta(req, Some(resp), Transport::Json);
                    tracker.on_payload(&c.ep, &m, Flow::ServerToClient, &data, last_ts_ns, out);
                }
            }
            HttpEvent::Sse(ev) => {
                if ev.data.trim().is_empty() {
                    continue; // priming/keep-alive events carry no message
                }
                let (req, resp) = match (&c.cur_response, &c.cur_request) {
                    (Some((req, resp)), _) if !is_request_dir => (req, Some(resp)),
                    (_, Some(req)) if is_request_dir => (req, None),
                    _ => continue,
                };
                let flow = if is_request_dir {
                    Flow::ClientToServer
                } else {
                    Flow::ServerToClient
                };
                let m = meta(req, resp, Transport::Sse);
                tracker.on_payload(&c.ep, &m, flow, ev.data.as_bytes(), ev.ts_ns, out);
            }
            HttpEvent::Partial {
                data,
                size,
                lost,
                sse,
                ts_ns,
            } => {
                let req = if is_request_dir {
                    c.cur_request.as_ref()
                } else {
                    c.cur_response.as_ref().map(|(req, _)| req)
                };
                let Some(req) = req else {
                    continue;
                };
                let resp = c
                    .cur_response
                    .as_ref()
                    .map(|(_, r)| r)
                    .filter(|_| !is_request_dir);
                let flow = if is_request_dir {
                    Flow::ClientToServer
                } else {
                    Flow::ServerToClient
                };
                let transport = if sse { Transport::Sse } else { Transport::Json };
                let m = meta(req, resp, transport);
                tracker.on_partial_payload(&c.ep, &m, flow, &data, (size, lost), ts_ns, out);
            }
            HttpEvent::CutPrefix { data, size, ts_ns } => {
                if let Some(req) = c.cur_request.as_ref().filter(|_| is_request_dir) {
                    let m = meta(req, None, Transport::Json);
                    tracker.on_cut_prefix(&c.ep, &m, &data, size, ts_ns, out);
                }
            }
            HttpEvent::End { .. } => {
                if is_request_dir {
                    c.cur_request = None;
                } else {
                    c.cur_response = None;
                }
            }
            HttpEvent::Error(e) => {
                stats.http_errors += 1;
                tracing::debug!(conn = %c.ep.conn_id, error = %e, "http stream error");
            }
        }
    }
}

fn meta<'a>(
    req: &'a RequestHead,
    resp: Option<&'a ResponseHead>,
    transport: Transport,
) -> HttpMeta<'a> {
    HttpMeta {
        method: &req.method,
        path: &req.path,
        status: resp.map(|r| r.status),
        request_headers: req.headers.as_slice(),
        response_headers: resp.map(|r| r.headers.as_slice()),
        transport,
    }
}

fn flush_parsers(
    c: &mut Conn,
    tracker: &mut McpTracker,
    stats: &mut ConnStats,
    ts_ns: u64,
    out: &mut Vec<Record>,
) {
    for d in [Direction::Egress, Direction::Ingress] {
        let mut events = Vec::new();
        if let Some(p) = stream(c, d).parser.as_mut() {
            p.close(ts_ns, &mut events);
        }
        handle(c, tracker, stats, d, events, out);
    }
}

fn close(
    c: &mut Conn,
    tracker: &mut McpTracker,
    stats: &mut ConnStats,
    ts_ns: u64,
    out: &mut Vec<Record>,
) {
    flush_parsers(c, tracker, stats, ts_ns, out);
    tracker.on_conn_closed(c.ep.pid, &c.ep.conn_id, ts_ns, out);
}

#[cfg(test)]
mod tests;
