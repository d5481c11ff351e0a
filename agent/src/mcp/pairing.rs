//! Requests awaiting their answer, within one session.
//!
//! Keyed by (direction the request travelled, id): a client's request `1` and a server's
//! request `1` are different calls. No time-to-live: a call may take minutes. The table is
//! bounded by count instead; when full, the oldest request is evicted and the caller counts it.
//!
//! A request cancelled by `notifications/cancelled` stays in the table (its answer may still
//! come: races are normal) but no longer counts as live, so it does not keep an idle session
//! open. A request carrying `params._meta.progressToken` is findable by that token, so its
//! progress notifications name it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::record::Era;
use super::stateless::CallRound;
use super::{Flow, Side};
use crate::rpc::RpcId;

/// A request awaiting its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub method: String,
    pub name: Option<String>,
    /// Kernel time the request was seen.
    pub ts_ns: u64,
    /// `params.cursor` of a list request (a page after the first).
    pub cursor: Option<String>,
    /// `params._meta.progressToken`, as an id-like value (string or integer).
    pub progress_token: Option<RpcId>,
    /// A `notifications/cancelled` named this request.
    pub cancelled: bool,
    /// The era the request belongs to (its answer inherits it).
    pub era: Era,
    /// Multi round-trip calls: which call and round this request is.
    pub call: Option<CallRound>,
    /// `tools/call`, `prompts/get`, `resources/read`: digest of the params that stay the same
    /// between rounds (see [`args_digest`](super::stateless::args_digest)).
    pub args: Option<[u8; 32]>,
    /// Notifications its response stream carried (stateless era) or that named its
    /// progress token.
    pub notifications: u64,
    /// The last progress notification's `{progress, total?, message?}`.
    pub progress: Option<Value>,
}

impl Pending {
    /// A handshake-era request seen at `ts_ns`, not cancelled, without cursor, progress token
    /// or round.
    pub fn new(method: String, name: Option<String>, ts_ns: u64) -> Self {
        Pending {
            method,
            name,
            ts_ns,
            cursor: None,
            progress_token: None,
            cancelled: false,
            era: Era::Handshake,
            call: None,
            args: None,
            notifications: 0,
            progress: None,
        }
    }
}

/// (direction of the request, the observed process's side on the connection it was seen on,
/// id). The side keeps apart the two conversations a proxy on this host carries in one
/// session: the requests it receives as a server and those it forwards as a client have the
/// same ids.
type Key = (Flow, Side, RpcId);

const SIDES: [Side; 3] = [Side::Client, Side::Server, Side::Unknown];

/// `side` first, then the other sides (a request seen before its connection's side was known).
fn sides_from(side: Side) -> impl Iterator<Item = Side> {
    std::iter::once(side).chain(SIDES.into_iter().filter(move |s| *s != side))
}

/// What an insertion displaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Displaced {
    /// Oldest requests dropped to stay within the bound.
    pub evicted: u64,
    /// A request still pending under the same (direction, id) was overwritten.
    pub replaced: u64,
}

impl std::ops::AddAssign for Displaced {
    fn add_assign(&mut self, rhs: Displaced) {
        self.evicted += rhs.evicted;
        self.replaced += rhs.replaced;
    }
}

/// Bounded pending-request table. Its maps live in one box that exists only while a request
/// is pending: most sessions sit idle with nothing pending, and a session holds the table
/// inline (16 bytes here, 144 with the maps inline).
#[derive(Debug)]
pub struct PendingTable {
    maps: Option<Box<PendingMaps>>,
    max: usize,
}

#[derive(Debug, Default)]
struct PendingMaps {
    entries: HashMap<Key, (u64, Pending)>,
    /// Insertion sequence → key: the first entry is the oldest.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    /// (direction of the request, progress token) → request id.
    tokens: HashMap<Key, RpcId>,
    /// Entries not cancelled.
    live: usize,
}

impl PendingMaps {
    /// The key of the pending request sent in `flow` with `id`: the one seen on `side` first,
    /// else one seen on another side (a side learned only after the request).
    fn find(&self, flow: Flow, side: Side, id: &RpcId) -> Option<Key> {
        sides_from(side)
            .map(|s| (flow, s, id.clone()))
            .find(|k| self.entries.contains_key(k))
    }

    fn remove(&mut self, key: &Key) -> Option<(u64, Pending)> {
        let (seq, pending) = self.entries.remove(key)?;
        self.order.remove(&seq);
        if !pending.cancelled {
            self.live -= 1;
        }
        if let Some(token) = &pending.progress_token {
            let tkey = (key.0, key.1, token.clone());
            if self.tokens.get(&tkey) == Some(&key.2) {
                self.tokens.remove(&tkey);
            }
        }
        Some((seq, pending))
    }
}

impl PendingTable {
    pub fn new(max: usize) -> Self {
        PendingTable {
            maps: None,
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.maps.as_ref().map_or(0, |m| m.entries.len())
    }

    /// Requests awaiting an answer that were not cancelled.
    pub fn live(&self) -> usize {
        self.maps.as_ref().map_or(0, |m| m.live)
    }

    /// Marks the request sent in `flow` with `id` as cancelled; `false` when none is pending.
    pub fn cancel(&mut self, flow: Flow, side: Side, id: &RpcId) -> bool {
        let Some(m) = self.maps.as_deref_mut() else {
            return false;
        };
        let Some(key) = m.find(flow, side, id) else {
            return false;
        };
        match m.entries.get_mut(&key) {
            Some((_, p)) if !p.cancelled => {
                p.cancelled = true;
                m.live -= 1;
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// The id of the pending request that travelled in `request_flow` with progress `token`.
    pub fn request_for_token(
        &self,
        request_flow: Flow,
        side: Side,
        token: &RpcId,
    ) -> Option<&RpcId> {
        let m = self.maps.as_deref()?;
        sides_from(side).find_map(|s| m.tokens.get(&(request_flow, s, token.clone())))
    }

    /// Records a request that travelled in `flow`, seen on `side`.
    pub fn insert(&mut self, flow: Flow, side: Side, id: RpcId, pending: Pending) -> Displaced {
        let max = self.max;
        let m = self.maps.get_or_insert_with(Box::default);
        let mut displaced = Displaced::default();
        let key = (flow, side, id);
        if m.remove(&key).is_some() {
            displaced.replaced += 1;
        }
        while m.entries.len() >= max {
            let Some(oldest) = m.order.first_key_value().map(|(_, k)| k.clone()) else {
                break;
            };
            m.remove(&oldest);
            displaced.evicted += 1;
        }
        let seq = m.next_seq;
        m.next_seq += 1;
        if !pending.cancelled {
            m.live += 1;
        }
        if let Some(token) = &pending.progress_token {
            m.tokens.insert((flow, side, token.clone()), key.2.clone());
        }
        m.order.insert(seq, key.clone());
        m.entries.insert(key, (seq, pending));
        displaced
    }

    /// The pending request that travelled in `request_flow` with `id`.
    pub fn get_mut(&mut self, request_flow: Flow, side: Side, id: &RpcId) -> Option<&mut Pending> {
        let m = self.maps.as_deref_mut()?;
        let key = m.find(request_flow, side, id)?;
        m.entries.get_mut(&key).map(|(_, p)| p)
    }

    /// Whether a request that travelled in `request_flow` with `id` is pending.
    pub fn contains(&self, request_flow: Flow, side: Side, id: &RpcId) -> bool {
        self.maps
            .as_deref()
            .is_some_and(|m| m.find(request_flow, side, id).is_some())
    }

    /// Takes the request an answer travelling in `answer_flow` with `id`, seen on `side`,
    /// belongs to.
    pub fn take(&mut self, answer_flow: Flow, side: Side, id: &RpcId) -> Option<Pending> {
        let m = self.maps.as_deref_mut()?;
        let key = m.find(answer_flow.opposite(), side, id)?;
        let taken = m.remove(&key).map(|(_, pending)| pending);
        // An empty table gives its allocations back (a map or B-tree keeps its capacity, the
        // B-tree its root node, when its last entry goes).
        if m.entries.is_empty() {
            self.maps = None;
        }
        taken
    }

    /// Slots the maps hold allocated, plus the entries in age order (tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.maps.as_ref().map_or(0, |m| {
            m.entries.capacity() + m.tokens.capacity() + m.order.len()
        })
    }

    /// Moves every entry of `other` in (oldest first), keeping the bound.
    pub fn absorb(&mut self, other: PendingTable) -> Displaced {
        let mut displaced = Displaced::default();
        let Some(maps) = other.maps else {
            return displaced;
        };
        let PendingMaps {
            mut entries, order, ..
        } = *maps;
        for (_, key) in order {
            if let Some((_, pending)) = entries.remove(&key) {
                displaced += self.insert(key.0, key.1, key.2, pending);
            }
        }
        displaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, ts_ns: u64) -> Pending {
        Pending::new(method.into(), None, ts_ns)
    }

    #[test]
    fn an_answer_takes_the_request_of_the_opposite_direction() {
        let mut t = PendingTable::new(8);
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(1),
            p("tools/list", 10),
        );
        t.insert(
            Flow::ServerToClient,
            Side::Client,
            RpcId::Num(1),
            p("sampling/createMessage", 20),
        );
        assert_eq!(
            t.take(Flow::ClientToServer, Side::Client, &RpcId::Num(1)),
            Some(p("sampling/createMessage", 20))
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1)),
            Some(p("tools/list", 10))
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1)),
            None
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn numeric_and_string_ids_do_not_match_each_other() {
        let mut t = PendingTable::new(8);
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Str("1".into()),
            p("ping", 1),
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1)),
            None
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Str("1".into())),
            Some(p("ping", 1))
        );
    }

    #[test]
    fn an_emptied_table_holds_no_allocation() {
        let mut t = PendingTable::new(8);
        for i in 0..5 {
            t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(i), p("a", 1));
        }
        assert!(t.capacity() > 0);
        for i in 0..5 {
            assert!(t
                .take(Flow::ServerToClient, Side::Client, &RpcId::Num(i))
                .is_some());
        }
        assert_eq!(t.capacity(), 0);
        assert_eq!((t.len(), t.live()), (0, 0));
    }

    #[test]
    fn the_oldest_is_evicted_when_full_and_reported() {
        let mut t = PendingTable::new(2);
        let d1 = t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(1), p("a", 1));
        let d2 = t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(2), p("b", 2));
        let d3 = t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(3), p("c", 3));
        assert_eq!((d1.evicted, d2.evicted, d3.evicted), (0, 0, 1));
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1)),
            None
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(2)),
            Some(p("b", 2))
        );
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(3)),
            Some(p("c", 3))
        );
    }

    #[test]
    fn a_reused_id_replaces_the_older_request() {
        let mut t = PendingTable::new(4);
        t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(1), p("a", 1));
        let d = t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(1), p("b", 2));
        assert_eq!(
            d,
            Displaced {
                evicted: 0,
                replaced: 1
            }
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1)),
            Some(p("b", 2))
        );
    }

    #[test]
    fn absorb_keeps_age_order_and_the_bound() {
        let mut a = PendingTable::new(2);
        a.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(10),
            p("x", 5),
        );
        let mut b = PendingTable::new(2);
        b.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(1),
            p("old", 1),
        );
        b.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(2),
            p("new", 2),
        );
        let d = a.absorb(b);
        assert_eq!(d.evicted, 1);
        assert_eq!(a.len(), 2);
        assert_eq!(
            a.take(Flow::ServerToClient, Side::Client, &RpcId::Num(10)),
            None
        );
        assert!(a
            .take(Flow::ServerToClient, Side::Client, &RpcId::Num(2))
            .is_some());
    }

    #[test]
    fn cancelled_requests_stay_pairable_but_are_not_live() {
        let mut t = PendingTable::new(4);
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(1),
            p("tools/call", 1),
        );
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(2),
            p("tools/call", 2),
        );
        assert_eq!(t.live(), 2);
        assert!(t.cancel(Flow::ClientToServer, Side::Client, &RpcId::Num(1)));
        assert!(
            t.cancel(Flow::ClientToServer, Side::Client, &RpcId::Num(1)),
            "cancelling twice is fine"
        );
        assert!(
            !t.cancel(Flow::ServerToClient, Side::Client, &RpcId::Num(2)),
            "other direction"
        );
        assert_eq!((t.len(), t.live()), (2, 1));
        let answered = t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(1));
        assert_eq!(answered.map(|p| p.cancelled), Some(true));
        assert_eq!((t.len(), t.live()), (1, 1));
    }

    #[test]
    fn progress_tokens_find_their_request_until_it_is_answered_or_evicted() {
        let mut t = PendingTable::new(1);
        let mut req = p("tools/call", 1);
        req.progress_token = Some(RpcId::Str("tok".into()));
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(7),
            req.clone(),
        );
        let tok = RpcId::Str("tok".into());
        assert_eq!(
            t.request_for_token(Flow::ClientToServer, Side::Client, &tok),
            Some(&RpcId::Num(7))
        );
        assert_eq!(
            t.request_for_token(Flow::ServerToClient, Side::Client, &tok),
            None
        );
        t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(8),
            p("ping", 2),
        );
        assert_eq!(
            t.request_for_token(Flow::ClientToServer, Side::Client, &tok),
            None,
            "evicted"
        );
        t.insert(Flow::ClientToServer, Side::Client, RpcId::Num(9), req);
        t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(9));
        assert_eq!(
            t.request_for_token(Flow::ClientToServer, Side::Client, &tok),
            None,
            "answered"
        );
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn a_proxy_keeps_its_two_sides_apart_and_a_late_side_still_pairs() {
        let mut t = PendingTable::new(8);
        // nginx: the request it receives (server side) and the one it forwards (client side).
        let d1 = t.insert(
            Flow::ClientToServer,
            Side::Server,
            RpcId::Num(3),
            p("down", 1),
        );
        let d2 = t.insert(
            Flow::ClientToServer,
            Side::Client,
            RpcId::Num(3),
            p("up", 2),
        );
        assert_eq!(d1.replaced + d2.replaced, 0);
        let up = t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(3));
        assert_eq!(up.map(|p| p.method), Some("up".to_string()));
        let down = t.take(Flow::ServerToClient, Side::Server, &RpcId::Num(3));
        assert_eq!(down.map(|p| p.method), Some("down".to_string()));
        // A request seen before its connection's side was known still pairs.
        t.insert(
            Flow::ClientToServer,
            Side::Unknown,
            RpcId::Num(4),
            p("late", 3),
        );
        let late = t.take(Flow::ServerToClient, Side::Client, &RpcId::Num(4));
        assert_eq!(late.map(|p| p.method), Some("late".to_string()));
    }
}
