//! Monitor mode: the event loop's priority follows its backlog (`--catch-up-nice`).
//!
//! A monitoring agent that keeps up needs no precedence over the processes it watches, and
//! should not take any: at the inherited priority it does not preempt them to decode. But on
//! a host whose cores the MCP traffic itself saturates, a loop at the same priority as the
//! client and server gets too little of a core to keep up, and the ring fills: measured at
//! 20,000 messages/s on the 2-core development VM, the agent got 43–45 % of a core and lost
//! 17–34 % of the chunks to a full ring; at nice -10 it took 59 % and lost none. So the loop
//! raises its priority while it is behind (a turn that left records on the ring, or ring
//! loss counted since the last look) and returns to the inherited one once it has kept up
//! for [`CALM_TURNS`] turns in a row.

/// Turns in a row without a backlog before the loop gives its raised priority back.
pub const CALM_TURNS: u32 = 64;

/// What the loop's priority should become after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raise,
    Lower,
}

/// The backlog-driven state of the loop's priority.
#[derive(Debug)]
pub struct CatchUp {
    /// The nice value while behind (negative; 0 turns the mechanism off).
    nice: i32,
    /// The nice value the loop started with.
    inherited: i32,
    raised: bool,
    calm_turns: u32,
    /// Times the priority was raised (health and the stop line).
    pub raises: u64,
    /// Raising failed (no `CAP_SYS_NICE`): not tried again.
    unavailable: bool,
}

impl CatchUp {
    /// `nice`: the value while behind; 0 or a value not below the inherited one: off.
    pub fn new(nice: i32) -> Self {
        CatchUp {
            nice,
            inherited: current_nice(),
            raised: false,
            calm_turns: 0,
            raises: 0,
            unavailable: false,
        }
    }

    fn enabled(&self) -> bool {
        self.nice != 0 && self.nice < self.inherited && !self.unavailable
    }

    /// After a turn: `behind` when it left records on the ring or loss was counted.
    pub fn after_turn(&mut self, behind: bool) {
        if !self.enabled() {
            return;
        }
        match self.decide(behind) {
            Some(Change::Raise) => {
                if set_nice(self.nice) {
                    self.raised = true;
                    self.raises += 1;
                    tracing::debug!(
                        nice = self.nice,
                        "behind the ring: event loop priority raised"
                    );
                } else {
                    self.unavailable = true;
                    tracing::warn!(
                        "could not raise the event loop's priority while behind the ring (no CAP_SYS_NICE?): {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
            Some(Change::Lower) => {
                // Giving priority back needs no capability.
                set_nice(self.inherited);
                self.raised = false;
                tracing::debug!("caught up: event loop back at its inherited priority");
            }
            None => {}
        }
    }

    /// The state change a turn calls for (no system call: the pure part).
    fn decide(&mut self, behind: bool) -> Option<Change> {
        if behind {
            self.calm_turns = 0;
            return (!self.raised).then_some(Change::Raise);
        }
        if !self.raised {
            return None;
        }
        self.calm_turns += 1;
        (self.calm_turns >= CALM_TURNS).then(|| {
            self.calm_turns = 0;
            Change::Lower
        })
    }
}

/// The calling thread's nice value (0 when it cannot be read).
fn current_nice() -> i32 {
    // SAFETY: getpriority on the calling thread (who = 0); errno is cleared first because
    // -1 is also a valid answer.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, 0);
        if n == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            n
        }
    }
}

/// Sets the calling thread's nice value (Linux keeps it per thread).
fn set_nice(nice: i32) -> bool {
    // SAFETY: setpriority on the calling thread (who = 0), no pointers.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CatchUp {
        CatchUp {
            nice: -10,
            inherited: 0,
            raised: false,
            calm_turns: 0,
            raises: 0,
            unavailable: false,
        }
    }

    #[test]
    fn a_backlog_raises_once_and_calm_turns_lower_it() {
        let mut c = state();
        assert_eq!(c.decide(false), None, "keeping up: nothing to do");
        assert_eq!(c.decide(true), Some(Change::Raise));
        c.raised = true;
        assert_eq!(c.decide(true), None, "already raised");
        for _ in 1..CALM_TURNS {
            assert_eq!(c.decide(false), None);
        }
        assert_eq!(c.decide(false), Some(Change::Lower));
    }

    #[test]
    fn a_backlog_among_calm_turns_starts_the_count_again() {
        let mut c = state();
        c.raised = true;
        for _ in 1..CALM_TURNS {
            assert_eq!(c.decide(false), None);
        }
        assert_eq!(c.decide(true), None);
        for _ in 1..CALM_TURNS {
            assert_eq!(c.decide(false), None);
        }
        assert_eq!(c.decide(false), Some(Change::Lower));
    }

    #[test]
    fn zero_or_a_nice_not_below_the_inherited_one_is_off() {
        let mut c = state();
        c.nice = 0;
        assert!(!c.enabled());
        c.nice = 5;
        assert!(!c.enabled());
        c.nice = -10;
        assert!(c.enabled());
        c.unavailable = true;
        assert!(!c.enabled());
    }
}
