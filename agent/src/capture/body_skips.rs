//! The userspace half of body skipping (`mcpwarden_common::conn::BodySkipKey`): the
//! connection table names the stream ranges of bodies it will not look at
//! ([`crate::conn::BodySkipChange`]); they are written to the kernel's `BODY_SKIPS` map,
//! and `BODY_SKIPS_LIVE` says how many there are so that, while none is, no call looks the
//! map up.

use std::collections::HashSet;

use aya::maps::{Array, HashMap, MapData};
use mcpwarden_common::{
    conn::{BodySkipKey, BodySkipRange, BODY_SKIP_SLOTS},
    event::{DIR_EGRESS, DIR_INGRESS},
};

use super::events::Direction;
use crate::conn::BodySkipChange;

/// What body skipping did, for the health record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodySkipStats {
    /// Ranges handed to the kernel.
    pub started: u64,
    /// Ranges not handed over because `BODY_SKIP_SLOTS` were in use (the body is carried).
    pub slots_full: u64,
    /// Map writes that failed (the body is carried).
    pub map_errors: u64,
}

/// Where ranges go: the kernel maps, or (tests) a record of them.
pub trait SkipSink {
    fn insert(&mut self, key: BodySkipKey, range: BodySkipRange) -> Result<(), String>;
    fn remove(&mut self, key: &BodySkipKey);
    fn set_live(&mut self, n: u32) -> Result<(), String>;
}

/// The kernel's two maps.
pub struct KernelSkipMaps {
    pub ranges: HashMap<MapData, BodySkipKey, BodySkipRange>,
    pub live: Array<MapData, u32>,
}

impl SkipSink for KernelSkipMaps {
    fn insert(&mut self, key: BodySkipKey, range: BodySkipRange) -> Result<(), String> {
        self.ranges.insert(key, range, 0).map_err(|e| e.to_string())
    }

    fn remove(&mut self, key: &BodySkipKey) {
        // Absent already is fine: the entry is gone either way.
        let _ = self.ranges.remove(key);
    }

    fn set_live(&mut self, n: u32) -> Result<(), String> {
        self.live.set(0, n, 0).map_err(|e| e.to_string())
    }
}

/// The ranges the kernel holds.
pub struct BodySkips<S: SkipSink> {
    sink: S,
    live: HashSet<BodySkipKey>,
    pub stats: BodySkipStats,
}

fn key_of(change: &BodySkipChange) -> BodySkipKey {
    let (conn, dir) = match change {
        BodySkipChange::Start { conn, dir, .. } | BodySkipChange::End { conn, dir } => (conn, dir),
    };
    BodySkipKey {
        tgid: conn.pid,
        fd: conn.fd,
        start_ns: conn.start_ns,
        dir: match dir {
            Direction::Egress => DIR_EGRESS,
            Direction::Ingress => DIR_INGRESS,
        },
        _pad: [0; 7],
    }
}

impl<S: SkipSink> BodySkips<S> {
    pub fn new(sink: S) -> Self {
        BodySkips {
            sink,
            live: HashSet::new(),
            stats: BodySkipStats::default(),
        }
    }

    /// Ranges the kernel holds now.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Hands the table's changes to the kernel.
    pub fn apply(&mut self, changes: Vec<BodySkipChange>) {
        if changes.is_empty() {
            return;
        }
        let before = self.live.len();
        for change in changes {
            let key = key_of(&change);
            match change {
                BodySkipChange::Start { from, until, .. } => {
                    if self.live.contains(&key) {
                        // A newer body of the same stream: its range replaces the old one.
                        self.sink.remove(&key);
                        self.live.remove(&key);
                    }
                    if self.live.len() >= BODY_SKIP_SLOTS as usize {
                        self.stats.slots_full += 1;
                        continue;
                    }
                    match self.sink.insert(key, BodySkipRange { from, until }) {
                        Ok(()) => {
                            self.live.insert(key);
                            self.stats.started += 1;
                        }
                        Err(e) => {
                            self.stats.map_errors += 1;
                            tracing::debug!(pid = key.tgid, "BODY_SKIPS: {e}");
                        }
                    }
                }
                BodySkipChange::End { .. } => {
                    if self.live.remove(&key) {
                        self.sink.remove(&key);
                    }
                }
            }
        }
        if self.live.len() != before {
            let n = u32::try_from(self.live.len()).unwrap_or(u32::MAX);
            if let Err(e) = self.sink.set_live(n) {
                self.stats.map_errors += 1;
                tracing::debug!("BODY_SKIPS_LIVE: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ConnIdent;

    #[derive(Default)]
    struct Recorded {
        ranges: std::collections::HashMap<BodySkipKey, BodySkipRange>,
        live: Vec<u32>,
        fail: bool,
    }

    impl SkipSink for Recorded {
        fn insert(&mut self, key: BodySkipKey, range: BodySkipRange) -> Result<(), String> {
            if self.fail {
                return Err("full".into());
            }
            self.ranges.insert(key, range);
            Ok(())
        }
        fn remove(&mut self, key: &BodySkipKey) {
            self.ranges.remove(key);
        }
        fn set_live(&mut self, n: u32) -> Result<(), String> {
            self.live.push(n);
            Ok(())
        }
    }

    const CONN: ConnIdent = ConnIdent {
        pid: 7,
        fd: 5,
        start_ns: 99,
    };

    fn start(dir: Direction, from: u64, until: u64) -> BodySkipChange {
        BodySkipChange::Start {
            conn: CONN,
            dir,
            from,
            until,
        }
    }

    #[test]
    fn ranges_reach_the_map_keyed_by_stream_and_leave_it_at_their_end() {
        let mut s = BodySkips::new(Recorded::default());
        s.apply(vec![
            start(Direction::Ingress, 100, 1000),
            start(Direction::Egress, 5, 50),
        ]);
        let key = BodySkipKey {
            tgid: 7,
            fd: 5,
            start_ns: 99,
            dir: DIR_INGRESS,
            _pad: [0; 7],
        };
        assert_eq!(
            s.sink.ranges.get(&key),
            Some(&BodySkipRange {
                from: 100,
                until: 1000
            })
        );
        assert_eq!((s.live(), s.sink.live.clone()), (2, vec![2]));
        s.apply(vec![BodySkipChange::End {
            conn: CONN,
            dir: Direction::Ingress,
        }]);
        assert!(!s.sink.ranges.contains_key(&key));
        // Ending a range the kernel never got changes nothing.
        s.apply(vec![BodySkipChange::End {
            conn: CONN,
            dir: Direction::Ingress,
        }]);
        assert_eq!((s.live(), s.sink.live.clone()), (1, vec![2, 1]));
        assert_eq!(s.stats.started, 2);
    }

    #[test]
    fn a_failed_write_is_counted_and_the_body_is_carried() {
        let mut s = BodySkips::new(Recorded {
            fail: true,
            ..Recorded::default()
        });
        s.apply(vec![start(Direction::Ingress, 1, 2)]);
        assert_eq!((s.live(), s.stats.map_errors, s.stats.started), (0, 1, 0));
        assert!(s.sink.live.is_empty());
    }
}
