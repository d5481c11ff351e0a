//! What the exporter holds: records waiting to be sent (memory, then the spool) and records
//! sent but not yet acknowledged. Pure bookkeeping, no I/O besides the spool.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mcpwarden_proto::v1::Envelope;

use super::spool::{Pushed, Spool};
use super::stats::ExportCounters;

/// Records waiting and in flight, bounded to `cap` in memory plus the spool's byte bound.
#[derive(Debug)]
pub struct Outbox {
    cap: usize,
    pending: VecDeque<Envelope>,
    inflight: VecDeque<Envelope>,
    spool: Option<Spool>,
    counters: Arc<ExportCounters>,
}

impl Outbox {
    /// An outbox holding at most `cap` records in memory, overflowing into `spool`.
    pub fn new(cap: usize, spool: Option<Spool>, counters: Arc<ExportCounters>) -> Outbox {
        let o = Outbox {
            cap: cap.max(1),
            pending: VecDeque::new(),
            inflight: VecDeque::new(),
            spool,
            counters,
        };
        o.publish_spool();
        o
    }

    fn mem_len(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }

    fn publish_spool(&self) {
        let bytes = self.spool.as_ref().map_or(0, Spool::bytes);
        self.counters.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Memory is full (the worker stops taking records off the hand-off channel when this is
    /// true and there is no spool).
    pub fn memory_full(&self) -> bool {
        self.mem_len() >= self.cap
    }

    /// Whether a spool is configured.
    pub fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    fn to_spool(&mut self, env: Envelope) -> Option<Envelope> {
        let Some(spool) = self.spool.as_mut() else {
            return Some(env);
        };
        match spool.push(&env) {
            Ok(Pushed::Stored) => {
                self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                self.publish_spool();
                None
            }
            Ok(Pushed::Full) => Some(env),
            Err(e) => {
                tracing::warn!("export spool: {e}");
                Some(env)
            }
        }
    }

    /// A new record. Kept in order: while older records wait on disk, new ones join them there.
    pub fn accept(&mut self, env: Envelope) {
        let spool_waiting = self.spool.as_ref().is_some_and(|s| !s.is_empty());
        let env = if spool_waiting || self.memory_full() {
            match self.to_spool(env) {
                None => return,
                Some(env) => env,
            }
        } else {
            env
        };
        if self.memory_full() {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.push_back(env);
        }
    }

    /// The next record to send (moved to in-flight), refilling memory from the spool.
    pub fn next_to_send(&mut self) -> Option<Envelope> {
        if self.pending.is_empty() {
            if let Some(spool) = self.spool.as_mut() {
                match spool.pop_segment() {
                    Ok(batch) => self.pending.extend(batch),
                    Err(e) => tracing::warn!("export spool: {e}"),
                }
                self.counters
                    .spool_corrupt
                    .store(spool.corrupt, Ordering::Relaxed);
                self.publish_spool();
            }
        }
        let env = self.pending.pop_front()?;
        self.inflight.push_back(env.clone());
        Some(env)
    }

    /// Records sent on the current stream and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Something waits to be sent.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// The collector stored every record sent on this stream up to the one with `seq`.
    /// Returns how many records that acknowledged (0 for an unknown seq).
    pub fn ack(&mut self, seq: u64) -> usize {
        let Some(pos) = self.inflight.iter().position(|e| e.seq == seq) else {
            return 0;
        };
        self.inflight.drain(..=pos);
        self.counters
            .acked
            .fetch_add(pos as u64 + 1, Ordering::Relaxed);
        pos + 1
    }

    /// The stream broke: everything unacknowledged is sent again first.
    pub fn disconnected(&mut self) {
        while let Some(env) = self.inflight.pop_back() {
            self.pending.push_front(env);
        }
    }

    /// The agent stops: unacknowledged and unsent records go to the spool (counted as lost
    /// when there is none or it is full).
    pub fn shutdown(&mut self) {
        self.disconnected();
        while let Some(env) = self.pending.pop_front() {
            if self.to_spool(env).is_some() {
                self.counters
                    .lost_at_shutdown
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64) -> Envelope {
        Envelope {
            seq,
            ..Default::default()
        }
    }

    fn counters() -> Arc<ExportCounters> {
        Arc::new(ExportCounters::default())
    }

    #[test]
    fn unacked_records_are_resent_after_a_disconnect_in_order() {
        let c = counters();
        let mut o = Outbox::new(100, None, c.clone());
        for s in 1..=5 {
            o.accept(env(s));
        }
        let sent: Vec<u64> = std::iter::from_fn(|| o.next_to_send().map(|e| e.seq)).collect();
        assert_eq!(sent, vec![1, 2, 3, 4, 5]);
        assert_eq!(o.ack(2), 2);
        assert_eq!(o.ack(99), 0, "unknown seq acknowledges nothing");
        o.disconnected();
        let resent: Vec<u64> = std::iter::from_fn(|| o.next_to_send().map(|e| e.seq)).collect();
        assert_eq!(resent, vec![3, 4, 5]);
        assert_eq!(o.ack(5), 3);
        assert_eq!(o.inflight(), 0);
        assert_eq!(c.acked.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn memory_overflow_is_counted_without_spool() {
        let c = counters();
        let mut o = Outbox::new(3, None, c.clone());
        for s in 0..10 {
            o.accept(env(s));
        }
        assert_eq!(c.dropped_full.load(Ordering::Relaxed), 7);
        let sent: Vec<u64> = std::iter::from_fn(|| o.next_to_send().map(|e| e.seq)).collect();
        assert_eq!(sent, vec![0, 1, 2]);
    }

    #[test]
    fn overflow_goes_to_the_spool_and_comes_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = counters();
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let mut o = Outbox::new(3, Some(spool), c.clone());
        for s in 0..50 {
            o.accept(env(s));
        }
        assert_eq!(c.dropped_full.load(Ordering::Relaxed), 0);
        assert_eq!(c.spooled.load(Ordering::Relaxed), 47);
        let mut sent = Vec::new();
        while let Some(e) = o.next_to_send() {
            sent.push(e.seq);
            o.ack(e.seq);
        }
        assert_eq!(sent, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn shutdown_spools_unacked_records_for_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = counters();
        let mut o = Outbox::new(
            10,
            Some(Spool::open(dir.path(), 1 << 20).expect("spool")),
            c,
        );
        for s in 0..6 {
            o.accept(env(s));
        }
        o.next_to_send();
        o.next_to_send();
        o.ack(0);
        o.shutdown();
        drop(o);
        let c = counters();
        let mut o = Outbox::new(
            10,
            Some(Spool::open(dir.path(), 1 << 20).expect("spool")),
            c,
        );
        let sent: Vec<u64> = std::iter::from_fn(|| o.next_to_send().map(|e| e.seq)).collect();
        assert_eq!(sent, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn shutdown_without_spool_counts_losses() {
        let c = counters();
        let mut o = Outbox::new(10, None, c.clone());
        for s in 0..4 {
            o.accept(env(s));
        }
        o.next_to_send();
        o.shutdown();
        assert_eq!(c.lost_at_shutdown.load(Ordering::Relaxed), 4);
    }
}
