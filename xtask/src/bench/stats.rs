//! Percentiles and the small summaries every part of the bench reports.

use serde_json::{json, Value};

/// The `p` quantile (0..=1) of sorted samples, nearest rank; 0 for none.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of samples in any order.
pub fn p50_p99(samples: &[f64]) -> (f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (pct(&s, 0.5), pct(&s, 0.99))
}

pub fn mean(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<f64>() / samples.len() as f64
    }
}

/// `a / b`, or null when `b` is not positive (a ratio to nothing means nothing).
pub fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 {
        json!(round3(a / b))
    } else {
        Value::Null
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_on_sorted_samples() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&s, 0.5), 51.0);
        assert_eq!(pct(&s, 0.99), 99.0);
        assert_eq!(pct(&[], 0.5), 0.0);
        assert_eq!(p50_p99(&[3.0, 1.0, 2.0]), (2.0, 3.0));
        assert_eq!(ratio(1.0, 0.0), Value::Null);
        assert_eq!(ratio(3.0, 2.0), json!(1.5));
    }
}
