//! Requests awaiting their answer, within one session.
//!
//! Keyed by (direction the request travelled, id): a client's request `1` and a server's
//! request `1` are different calls. No time-to-live: a call may take minutes. The table is
//! bounded by count instead; when full, the oldest request is evicted and the caller counts it.

use std::collections::{BTreeMap, HashMap};

use super::Flow;
use crate::rpc::RpcId;

/// A request awaiting its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub method: String,
    pub name: Option<String>,
    /// Kernel time the request was seen.
    pub ts_ns: u64,
}

type Key = (Flow, RpcId);

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

/// Bounded pending-request table.
#[derive(Debug)]
pub struct PendingTable {
    entries: HashMap<Key, (u64, Pending)>,
    /// Insertion sequence → key: the first entry is the oldest.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    max: usize,
}

impl PendingTable {
    pub fn new(max: usize) -> Self {
        PendingTable {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a request that travelled in `flow`.
    pub fn insert(&mut self, flow: Flow, id: RpcId, pending: Pending) -> Displaced {
        let mut displaced = Displaced::default();
        let key = (flow, id);
        if let Some((seq, _)) = self.entries.remove(&key) {
            self.order.remove(&seq);
            displaced.replaced += 1;
        }
        while self.entries.len() >= self.max {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            displaced.evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (seq, pending));
        displaced
    }

    /// Takes the request an answer travelling in `answer_flow` with `id` belongs to.
    pub fn take(&mut self, answer_flow: Flow, id: &RpcId) -> Option<Pending> {
        let key = (answer_flow.opposite(), id.clone());
        let (seq, pending) = self.entries.remove(&key)?;
        self.order.remove(&seq);
        Some(pending)
    }

    /// Moves every entry of `other` in (oldest first), keeping the bound.
    pub fn absorb(&mut self, other: PendingTable) -> Displaced {
        let mut displaced = Displaced::default();
        let PendingTable {
            mut entries, order, ..
        } = other;
        for (_, key) in order {
            if let Some((_, pending)) = entries.remove(&key) {
                displaced += self.insert(key.0, key.1, pending);
            }
        }
        displaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, ts_ns: u64) -> Pending {
        Pending {
            method: method.into(),
            name: None,
            ts_ns,
        }
    }

    #[test]
    fn an_answer_takes_the_request_of_the_opposite_direction() {
        let mut t = PendingTable::new(8);
        t.insert(Flow::ClientToServer, RpcId::Num(1), p("tools/list", 10));
        t.insert(
            Flow::ServerToClient,
            RpcId::Num(1),
            p("sampling/createMessage", 20),
        );
        assert_eq!(
            t.take(Flow::ClientToServer, &RpcId::Num(1)),
            Some(p("sampling/createMessage", 20))
        );
        assert_eq!(
            t.take(Flow::ServerToClient, &RpcId::Num(1)),
            Some(p("tools/list", 10))
        );
        assert_eq!(t.take(Flow::ServerToClient, &RpcId::Num(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn numeric_and_string_ids_do_not_match_each_other() {
        let mut t = PendingTable::new(8);
        t.insert(Flow::ClientToServer, RpcId::Str("1".into()), p("ping", 1));
        assert_eq!(t.take(Flow::ServerToClient, &RpcId::Num(1)), None);
        assert_eq!(
            t.take(Flow::ServerToClient, &RpcId::Str("1".into())),
            Some(p("ping", 1))
        );
    }

    #[test]
    fn the_oldest_is_evicted_when_full_and_reported() {
        let mut t = PendingTable::new(2);
        let d1 = t.insert(Flow::ClientToServer, RpcId::Num(1), p("a", 1));
        let d2 = t.insert(Flow::ClientToServer, RpcId::Num(2), p("b", 2));
        let d3 = t.insert(Flow::ClientToServer, RpcId::Num(3), p("c", 3));
        assert_eq!((d1.evicted, d2.evicted, d3.evicted), (0, 0, 1));
        assert_eq!(t.take(Flow::ServerToClient, &RpcId::Num(1)), None);
        assert_eq!(
            t.take(Flow::ServerToClient, &RpcId::Num(2)),
            Some(p("b", 2))
        );
        assert_eq!(
            t.take(Flow::ServerToClient, &RpcId::Num(3)),
            Some(p("c", 3))
        );
    }

    #[test]
    fn a_reused_id_replaces_the_older_request() {
        let mut t = PendingTable::new(4);
        t.insert(Flow::ClientToServer, RpcId::Num(1), p("a", 1));
        let d = t.insert(Flow::ClientToServer, RpcId::Num(1), p("b", 2));
        assert_eq!(
            d,
            Displaced {
                evicted: 0,
                replaced: 1
            }
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.take(Flow::ServerToClient, &RpcId::Num(1)),
            Some(p("b", 2))
        );
    }

    #[test]
    fn absorb_keeps_age_order_and_the_bound() {
        let mut a = PendingTable::new(2);
        a.insert(Flow::ClientToServer, RpcId::Num(10), p("x", 5));
        let mut b = PendingTable::new(2);
        b.insert(Flow::ClientToServer, RpcId::Num(1), p("old", 1));
        b.insert(Flow::ClientToServer, RpcId::Num(2), p("new", 2));
        let d = a.absorb(b);
        assert_eq!(d.evicted, 1);
        assert_eq!(a.len(), 2);
        assert_eq!(a.take(Flow::ServerToClient, &RpcId::Num(10)), None);
        assert!(a.take(Flow::ServerToClient, &RpcId::Num(2)).is_some());
    }
}
