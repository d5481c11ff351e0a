//! Request-seen-to-enforcement latencies: a bounded sample ring (the most recent
//! [`MAX_SAMPLES`]; older samples are overwritten and counted) with exact percentiles.

/// Samples kept.
pub const MAX_SAMPLES: usize = 65536;

#[derive(Debug, Default, Clone)]
pub struct LatencyRecorder {
    samples: Vec<u64>,
    next: usize,
    /// Samples recorded in total.
    pub count: u64,
    /// Samples overwritten because the ring was full.
    pub overwritten: u64,
}

impl LatencyRecorder {
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(ns);
        } else {
            self.samples[self.next] = ns;
            self.next = (self.next + 1) % MAX_SAMPLES;
            self.overwritten += 1;
        }
    }

    /// The `q` quantile (0.0..=1.0) of the kept samples (nearest rank), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize).clamp(1, s.len());
        Some(s[rank - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut l = LatencyRecorder::default();
        assert_eq!(l.quantile(0.5), None);
        for v in 1..=100 {
            l.record(v);
        }
        assert_eq!(l.quantile(0.5), Some(50));
        assert_eq!(l.quantile(0.99), Some(99));
        assert_eq!(l.quantile(1.0), Some(100));
    }

    #[test]
    fn the_ring_is_bounded_and_counts_overwrites() {
        let mut l = LatencyRecorder::default();
        for v in 0..(MAX_SAMPLES as u64 + 10) {
            l.record(v);
        }
        assert_eq!(l.count, MAX_SAMPLES as u64 + 10);
        assert_eq!(l.overwritten, 10);
        assert_eq!(l.quantile(0.0), Some(10));
    }
}
