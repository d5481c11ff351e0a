//! The run's time budget (`--budget-minutes`, default 14 for the full run). On a fresh
//! machine installing and building take most of the quarter hour the issue allows, so the
//! parts measured in rounds (latency, host tax, hooks) run as many of their planned rounds
//! as fit their share of what is left; every part always runs at least one. The rounds run
//! are in results.json beside the rounds planned. A warm machine runs the whole plan.

use std::time::{Duration, Instant};

/// Seconds kept for the parts that do not run in rounds (loss and idle sessions: about
/// 40 and 20 s in the full run).
pub const FIXED_PARTS_S: f64 = 60.0;

/// The parts measured in rounds, with their weights: their durations in a full run on the
/// development VM (seconds), by which what is left is shared.
pub const ROUND_PARTS: &[(&str, f64)] =
    &[("latency", 290.0), ("host-tax", 150.0), ("hooks", 130.0)];

/// When `cargo xtask bench` was typed: this process's start. `cargo run` (the alias) and
/// rustup's proxy both exec what they run, so the process that began as `cargo` when the
/// command was typed is this one, and its start time counts compiling xtask itself (a
/// minute on a fresh machine). Now, if it cannot be read.
pub fn run_started() -> Instant {
    let now = Instant::now();
    let age = (|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        age_from(&stat, &uptime, clock_ticks()?)
    })();
    age.and_then(|a| now.checked_sub(a)).unwrap_or(now)
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

/// A process's age from its `/proc/PID/stat` (field 22: start time in clock ticks after
/// boot) and `/proc/uptime` (seconds since boot).
fn age_from(stat: &str, uptime: &str, ticks: f64) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let up: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let age = up - start_ticks / ticks;
    (age >= 0.0).then(|| Duration::from_secs_f64(age))
}

/// When the run must be over (none: no budget, every planned round runs).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Option<Instant>,
}

impl Budget {
    pub fn new(started: Instant, minutes: Option<f64>) -> Self {
        Budget {
            deadline: minutes.map(|m| started + Duration::from_secs_f64(m.max(0.0) * 60.0)),
        }
    }

    /// Time until the deadline (none: no budget).
    pub fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the parts not run in rounds (loss, idle sessions) still fit at full size.
    pub fn fixed_parts_fit(&self) -> bool {
        self.left().is_none_or(|l| l.as_secs_f64() >= FIXED_PARTS_S)
    }

    /// The share of the time left for `part`, when `later` (the round parts still to run
    /// after it) and `fixed_later` (whether loss or idle runs later) are still to come.
    pub fn share(&self, part: &str, later: &[&str], fixed_later: bool) -> Option<Duration> {
        let deadline = self.deadline?;
        let weight = |p: &str| {
            ROUND_PARTS
                .iter()
                .find(|(name, _)| *name == p)
                .map_or(0.0, |(_, w)| *w)
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            - if fixed_later { FIXED_PARTS_S } else { 0.0 };
        let total: f64 = weight(part) + later.iter().map(|p| weight(p)).sum::<f64>();
        let share = if total > 0.0 {
            left * weight(part) / total
        } else {
            left
        };
        Some(Duration::from_secs_f64(share.max(0.0)))
    }
}

/// Whether one full round of `part` (planned in `planned` rounds) fits in `share`, by its
/// usual length ([`ROUND_PARTS`]); when it does not, the part runs the short plan once.
pub fn full_round_fits(part: &str, planned: usize, share: Option<Duration>) -> bool {
    let Some(share) = share else { return true };
    let full = ROUND_PARTS
        .iter()
        .find(|(name, _)| *name == part)
        .map_or(0.0, |(_, w)| *w);
    share.as_secs_f64() >= full / planned.max(1) as f64
}

/// Counts a part's rounds against its share of the budget.
#[derive(Debug)]
pub struct Rounds {
    planned: usize,
    budget: Option<Duration>,
    started: Instant,
    done: usize,
}

impl Rounds {
    pub fn new(planned: usize, budget: Option<Duration>) -> Self {
        Rounds {
            planned,
            budget,
            started: Instant::now(),
            done: 0,
        }
    }

    /// The index of the next round, if one is planned and fits: the first always does; a
    /// later one when the rounds so far, at their mean pace, leave room for it.
    pub fn next(&mut self) -> Option<usize> {
        self.next_after(self.started.elapsed())
    }

    /// [`Self::next`] when `spent` has gone by since the part began.
    fn next_after(&mut self, spent: Duration) -> Option<usize> {
        if self.done >= self.planned {
            return None;
        }
        if let (Some(budget), true) = (self.budget, self.done > 0) {
            let spent = spent.as_secs_f64();
            let pace = spent / self.done as f64;
            if spent + pace > budget.as_secs_f64() {
                return None;
            }
        }
        self.done += 1;
        Some(self.done - 1)
    }

    /// Rounds started so far (all finished once `next` said no).
    pub fn done(&self) -> usize {
        self.done
    }

    pub fn planned(&self) -> usize {
        self.planned
    }

    /// Says, when the budget cut the plan short, how many rounds `part` ran.
    pub fn say_if_cut(&self, part: &str) {
        if self.done < self.planned {
            eprintln!(
                "bench: {part}: {} of {} planned rounds fit the time budget",
                self.done, self.planned
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_age_comes_from_its_start_ticks_and_the_uptime() {
        // Fields 3.. of a stat line; the 22nd field overall (start time) is 12,000 ticks.
        let stat = "4242 (cargo (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 12000 1000 10";
        let age = age_from(stat, "150.50 300.00\n", 100.0).unwrap();
        assert_eq!(age, Duration::from_secs_f64(30.5));
        assert_eq!(age_from(stat, "100.00 1.0\n", 100.0), None);
        assert_eq!(age_from("garbage", "1 1", 100.0), None);
    }

    #[test]
    fn a_share_shorter_than_one_full_round_calls_for_the_short_plan() {
        // Latency: 290 s over 5 planned rounds, 58 s a round.
        assert!(full_round_fits("latency", 5, None));
        assert!(full_round_fits("latency", 5, Some(Duration::from_secs(58))));
        assert!(!full_round_fits(
            "latency",
            5,
            Some(Duration::from_secs(57))
        ));
        assert!(!full_round_fits("hooks", 3, Some(Duration::ZERO)));
    }

    #[test]
    fn without_a_budget_every_planned_round_runs() {
        let mut r = Rounds::new(3, None);
        let got: Vec<usize> = std::iter::from_fn(|| r.next()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(r.done(), 3);
    }

    #[test]
    fn a_spent_budget_still_runs_one_round_then_stops() {
        let mut r = Rounds::new(5, Some(Duration::ZERO));
        assert_eq!(r.next_after(Duration::ZERO), Some(0));
        assert_eq!(r.next_after(Duration::from_millis(1)), None);
        assert_eq!(r.done(), 1);
    }

    #[test]
    fn rounds_stop_when_the_next_would_not_fit() {
        let mut r = Rounds::new(10, Some(Duration::from_secs(25)));
        let ms = Duration::from_millis;
        assert_eq!(r.next_after(ms(0)), Some(0));
        // 10 s a round: a second ends at 20 s, inside 25; a third would end at 30.
        assert_eq!(r.next_after(ms(10_000)), Some(1));
        assert_eq!(r.next_after(ms(20_000)), None);
        assert_eq!(r.done(), 2);
        // Quicker rounds than the budget: the plan caps them.
        let mut r = Rounds::new(2, Some(Duration::from_secs(100)));
        assert_eq!(r.next_after(ms(0)), Some(0));
        assert_eq!(r.next_after(ms(1_000)), Some(1));
        assert_eq!(r.next_after(ms(2_000)), None);
    }

    #[test]
    fn shares_follow_the_weights_of_the_parts_still_to_run() {
        let b = Budget::new(Instant::now(), Some(10.0));
        let all = b.share("latency", &["host-tax", "hooks"], true).unwrap();
        let left = 600.0 - FIXED_PARTS_S;
        let want = left * 290.0 / 570.0;
        assert!((all.as_secs_f64() - want).abs() < 1.0, "{all:?} vs {want}");
        let last = b.share("hooks", &[], false).unwrap();
        assert!((last.as_secs_f64() - 600.0).abs() < 1.0, "{last:?}");
        assert!(Budget::new(Instant::now(), None)
            .share("hooks", &[], false)
            .is_none());
    }
}
