//! Bounded draining of the ring buffer: at most [`DRAIN_BUDGET`] records per turn of the
//! capture loop, so a busy host cannot keep the loop from its ticks, control requests,
//! stop flag and TLS attachments; the next turn does not wait in `poll` when records are
//! left (see [`Drained::more`]).

use std::borrow::Borrow;

use aya::maps::{MapData, RingBuf};

/// Records taken off the ring per turn of the capture loop. At ~1-5 µs per record through
/// the pipeline, a turn takes a few ms at most.
pub const DRAIN_BUDGET: usize = 4096;

/// Where records come from (the ring buffer; a queue in tests).
pub trait RecordSource {
    /// Calls `f` with the next record, if any.
    fn next_record<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
}

impl<T: Borrow<MapData>> RecordSource for RingBuf<T> {
    fn next_record<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let item = self.next()?;
        Some(f(&item))
    }
}

impl RecordSource for std::collections::VecDeque<Vec<u8>> {
    fn next_record<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let rec = self.pop_front()?;
        Some(f(&rec))
    }
}

/// What one bounded drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub records: usize,
    /// The budget ran out: records may be left (poll without waiting next turn).
    pub more: bool,
}

/// Hands at most `budget` records to `f`; stops at the first error.
pub fn drain_bounded<S: RecordSource, E>(
    src: &mut S,
    budget: usize,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Drained, E> {
    let mut records = 0;
    while records < budget {
        match src.next_record(&mut f) {
            Some(r) => {
                records += 1;
                r?;
            }
            None => {
                return Ok(Drained {
                    records,
                    more: false,
                })
            }
        }
    }
    Ok(Drained {
        records,
        more: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn queue(n: usize) -> VecDeque<Vec<u8>> {
        (0..n).map(|i| vec![i as u8]).collect()
    }

    #[test]
    fn a_drain_stops_at_its_budget_and_says_records_are_left() {
        let mut q = queue(10);
        let mut seen = Vec::new();
        let d = drain_bounded(&mut q, 4, |r| {
            seen.push(r[0]);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            d,
            Drained {
                records: 4,
                more: true
            }
        );
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert_eq!(q.len(), 6, "the rest waits for the next turn");
    }

    #[test]
    fn a_flooded_ring_is_drained_over_several_turns_in_order() {
        let mut q = queue(250);
        let mut seen = Vec::new();
        let mut turns = 0;
        loop {
            turns += 1;
            let d = drain_bounded(&mut q, 100, |r| {
                seen.push(r[0]);
                Ok::<_, ()>(())
            })
            .unwrap();
            if !d.more {
                assert_eq!(d.records, 50);
                break;
            }
        }
        assert_eq!(turns, 3);
        assert_eq!(seen, (0..250).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_ring_and_an_error_end_the_drain() {
        let mut q = queue(0);
        let d = drain_bounded(&mut q, 8, |_| Ok::<_, ()>(())).unwrap();
        assert_eq!(
            d,
            Drained {
                records: 0,
                more: false
            }
        );
        let mut q = queue(5);
        let r = drain_bounded(&mut q, 8, |r| if r[0] == 2 { Err("bad") } else { Ok(()) });
        assert_eq!(r, Err("bad"));
        assert_eq!(q.len(), 2);
    }
}
