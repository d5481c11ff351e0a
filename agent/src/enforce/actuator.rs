//! What the enforcer does to the world, behind a trait so its decisions are unit-tested
//! without a kernel: reset a socket, remove a hold, signal a process, fill the kernel maps.

use std::net::SocketAddr;

use crate::capture::kernel_enforce::KernelEnforce;

use super::sock_destroy::{DestroyError, SockDestroyer};

/// The enforcer's hands.
pub trait Actuator {
    /// SOCK_DESTROY of the TCP socket `local` → `remote` ("ip:port").
    fn destroy(&mut self, local: &str, remote: &str) -> Result<(), DestroyError>;
    /// Removes one hold from the kernel's hold map; false when it was not there.
    fn remove_hold(&mut self, pid: u32, hold_id: u64) -> bool;
    /// Is this hold in the kernel's hold map?
    fn has_hold(&self, pid: u32, hold_id: u64) -> bool;
    /// Outstanding holds of `pid` in the kernel's hold map.
    fn holds_of(&self, pid: u32) -> usize;
    /// Every outstanding hold: (pid, hold id, kernel time it began).
    fn holds(&self) -> Vec<(u32, u64, u64)>;
    /// Sends `sig` to the process `pid`; `Err(ESRCH)` when it is gone.
    fn signal(&mut self, pid: u32, sig: i32) -> std::io::Result<()>;
    /// Marks `pid` as an MCP participant (hold prefilter scope).
    fn add_mcp_pid(&mut self, pid: u32) -> bool;
    /// Turns the write-path hold on or off.
    fn set_hold_enabled(&mut self, on: bool) -> bool;
    /// Refuses new connections from `pid` to `dest`; false when unavailable.
    fn block(&mut self, pid: u32, dest: SocketAddr) -> bool;
    /// Kernel time (CLOCK_MONOTONIC, the clock of event timestamps).
    fn now_ns(&self) -> u64;
    /// Waits (briefly) until every thread of `pid` is stopped, so that every thread that
    /// entered a hold probe before the stop has recorded its hold; false on timeout.
    fn wait_stopped(&mut self, pid: u32) -> bool;
    /// A denied held TLS write whose socket is unknown (the first write of a fresh
    /// memory-BIO `SSL *`): resumes `pid` until the holding thread's next send names the
    /// socket (the kernel stops it again before the syscall), then destroys that socket.
    /// The process is left stopped (the hold's release resumes it). Returns the destroyed
    /// socket's (local, remote).
    fn reset_at_next_send(
        &mut self,
        pid: u32,
        hold_id: u64,
    ) -> Result<(SocketAddr, SocketAddr), String> {
        let _ = (pid, hold_id);
        Err("not supported by this actuator".into())
    }
    /// (local, remote) of socket fd `fd` of `pid` now (a held process is stopped, so the fd
    /// still names the socket its write is on).
    fn socket_tuple(&self, pid: u32, fd: u32) -> Option<(SocketAddr, SocketAddr)> {
        let _ = (pid, fd);
        None
    }
}

/// How long [`Actuator::reset_at_next_send`] waits for the resumed thread's send.
pub const SEND_TIE_WAIT_NS: u64 = 200_000_000;

/// How long [`Actuator::wait_stopped`] waits for a group stop to complete.
pub const GROUP_STOP_WAIT_NS: u64 = 5_000_000;

/// True when every thread of `pid` is stopped (or gone).
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true; // the process is gone
    };
    for t in dir.filter_map(|e| e.ok()) {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue; // the thread exited
        };
        // "tid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if !matches!(state, Some('T' | 't' | 'Z' | 'X') | None) {
            return false;
        }
    }
    true
}

/// The real hands: netlink sock_diag, the kernel maps, kill(2).
pub struct KernelActuator {
    pub kernel: KernelEnforce,
    destroyer: Option<SockDestroyer>,
}

impl KernelActuator {
    pub fn new(kernel: KernelEnforce) -> Self {
        let destroyer = match SockDestroyer::new() {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("netlink sock_diag unavailable: resets will fail: {e}");
                None
            }
        };
        Self { kernel, destroyer }
    }
}

impl KernelActuator {
    /// Resumes the armed process and waits for the kernel to record the fd of its send.
    fn await_send_tie(&mut self, pid: u32, tid: u32) -> Result<u32, String> {
        self.signal(pid, libc::SIGCONT)
            .map_err(|e| format!("SIGCONT: {e}"))?;
        let t0 = monotonic_ns();
        loop {
            if let Some(fd) = self.kernel.send_tie_fd(pid, tid) {
                return Ok(fd);
            }
            if monotonic_ns().saturating_sub(t0) > SEND_TIE_WAIT_NS {
                return Err("the thread made no send in time".into());
            }
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    }
}

/// CLOCK_MONOTONIC in ns (what `bpf_ktime_get_ns` reads).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl KernelActuator {
    /// Waits up to `wait_ns` until every thread of `pid` is stopped; false on timeout.
    fn stopped_within(&self, pid: u32, wait_ns: u64) -> bool {
        let t0 = monotonic_ns();
        loop {
            if all_threads_stopped(pid) {
                return true;
            }
            if monotonic_ns().saturating_sub(t0) > wait_ns {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

impl Actuator for KernelActuator {
    fn destroy(&mut self, local: &str, remote: &str) -> Result<(), DestroyError> {
        if self.destroyer.is_none() {
            self.destroyer = Some(SockDestroyer::new()?);
        }
        match self.destroyer.as_mut() {
            Some(d) => d.destroy_str(local, remote),
            None => Err(DestroyError::Unsupported),
        }
    }
    fn remove_hold(&mut self, pid: u32, hold_id: u64) -> bool {
        self.kernel.remove_hold(pid, hold_id)
    }
    fn has_hold(&self, pid: u32, hold_id: u64) -> bool {
        self.kernel.has_hold(pid, hold_id)
    }
    fn holds_of(&self, pid: u32) -> usize {
        self.kernel.holds_of(pid)
    }
    fn holds(&self) -> Vec<(u32, u64, u64)> {
        self.kernel
            .holds()
            .into_iter()
            .map(|(p, id, e)| (p, id, e.ts_ns))
            .collect()
    }
    fn signal(&mut self, pid: u32, sig: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) with a positive pid signals exactly that process.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    fn add_mcp_pid(&mut self, pid: u32) -> bool {
        self.kernel.add_mcp_pid(pid).is_ok()
    }
    fn set_hold_enabled(&mut self, on: bool) -> bool {
        self.kernel.set_hold_enabled(on).is_ok()
    }
    fn block(&mut self, pid: u32, dest: SocketAddr) -> bool {
        self.kernel.connect_block && self.kernel.block(pid, dest).is_ok()
    }
    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }
    fn reset_at_next_send(
        &mut self,
        pid: u32,
        hold_id: u64,
    ) -> Result<(SocketAddr, SocketAddr), String> {
        let tid = self
            .kernel
            .hold_tid(pid, hold_id)
            .ok_or("the hold is gone")?;
        self.kernel
            .arm_send_tie(pid, tid)
            .map_err(|e| e.to_string())?;
        let fd = self.await_send_tie(pid, tid);
        self.kernel.clear_send_tie(pid, tid);
        // A stop that raced the disarm is undone by the hold's release (SIGCONT).
        let fd = fd?;
        // The holding thread cannot make its send: the kernel signalled it in the probe and
        // the stop is taken on its way back to user mode, before the syscall. The process's
        // other threads stop at the scheduler's pace, which on a loaded host can take longer
        // than `GROUP_STOP_WAIT_NS` (node, under two busy loops on two cores): wait for them
        // up to `SEND_TIE_WAIT_NS`, so none can close and reuse the fd while it is looked up,
        // and destroy the socket even if they have not all stopped by then.
        if !self.stopped_within(pid, SEND_TIE_WAIT_NS) {
            tracing::debug!(
                pid,
                fd,
                "group stop incomplete at a send tie: destroying anyway"
            );
        }
        let (local, remote) = crate::conn::procfs::socket_tuple(pid, fd)
            .ok_or_else(|| format!("fd {fd} of {pid} is not a TCP socket"))?;
        self.destroy(&local.to_string(), &remote.to_string())
            .map_err(|e| e.to_string())?;
        Ok((local, remote))
    }
    fn socket_tuple(&self, pid: u32, fd: u32) -> Option<(SocketAddr, SocketAddr)> {
        crate::conn::procfs::socket_tuple(pid, fd)
    }
    fn wait_stopped(&mut self, pid: u32) -> bool {
        self.stopped_within(pid, GROUP_STOP_WAIT_NS)
    }
}
