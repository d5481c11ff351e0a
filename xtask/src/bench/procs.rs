//! Processes the bench starts: a guard that stops them, waiting for readiness, free ports,
//! and what `/proc/PID` says about a process (CPU time, resident memory).

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Stops a child on drop: SIGINT (SIGTERM with [`Guard::term`]), then SIGKILL after 10 s.
pub struct Guard {
    pub child: Child,
    signal: i32,
}

impl Guard {
    /// Stopped with SIGINT (the agent's and the floor's orderly stop).
    pub fn int(child: Child) -> Guard {
        Guard {
            child,
            signal: libc::SIGINT,
        }
    }

    /// Stopped with SIGTERM (nginx's master stops its worker, uvicorn shuts down).
    pub fn term(child: Child) -> Guard {
        Guard {
            child,
            signal: libc::SIGTERM,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child already exited (it should not have).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        // SAFETY: signalling our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as i32, self.signal) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `f` every 5 ms until it holds; an error after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > limit {
            bail!("bench: {what} did not happen within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(what: &str, port: u16) -> Result<()> {
    wait_for(what, Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a process so far (`/proc/PID/stat` utime + stime; the
/// kernel's resolution is one clock tick, 10 ms).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let num = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|s| s.parse::<f64>().ok())
            .context("malformed /proc/PID/stat")
    };
    Ok((num(14)? + num(15)?) / clock_ticks_per_s())
}

/// A `/proc/PID/status` field in kB (`VmHWM`, `VmRSS`), as bytes.
pub fn status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// CPU seconds (user + system) of the children this process has waited for.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data; getrusage writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cpu_time_and_memory_are_readable() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_ok_and(|s| s >= 0.0));
        assert!(status_bytes(me, "VmHWM").is_ok_and(|b| b > 0));
        assert!(status_bytes(me, "NoSuchField").is_err());
    }
}
