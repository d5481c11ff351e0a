//! Reconnect delays: exponential, capped, with jitter so a fleet does not reconnect in step.

use std::time::Duration;

/// Exponential backoff between `base` and `cap`; each delay is drawn uniformly from
/// `[d/2, d]` where `d` doubles after every failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`; `seed` drives the jitter.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            current: base,
            rng: seed | 1,
        }
    }

    /// After a successful connection: start again from `base`.
    pub fn reset(&mut self) {
        self.current = self.base;
    }

    /// The delay before the next attempt (and doubles the next one, up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = self.current;
        self.current = (self.current * 2).min(self.cap);
        let half = d / 2;
        let span = (d - half).as_nanos() as u64;
        let jitter = if span == 0 { 0 } else { self.rng % (span + 1) };
        half + Duration::from_nanos(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_in_jitter_window_and_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let mut b = Backoff::new(base, cap, 42);
        let mut nominal = base;
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            assert!(d <= cap);
            distinct.insert(d);
            nominal = (nominal * 2).min(cap);
        }
        assert!(distinct.len() > 5, "jittered: {distinct:?}");
        b.reset();
        assert!(b.next_delay() <= base);
    }
}
