//! Enforcement: what the agent does about the policy's verdicts.
//!
//! Modes (`mcpwarden run --enforce`):
//! - `monitor`: never acts; a deny is recorded as `monitor_only`.
//! - `reset` (default): a deny resets the connection (SOCK_DESTROY on its 4-tuple, from the
//!   end the agent saw). The server may already have run the call; the client never gets the
//!   answer. `approve` cannot wait without a hold, so it fails closed: reset.
//! - `hold`: as `reset`, and in addition the TLS write probes stop a process that is about
//!   to send a `tools/call` (kernel prefilter) before its bytes leave; the agent judges the
//!   call and then resets (deny) and resumes the process, or resumes it at once (allow,
//!   audit, nothing to judge), or keeps it stopped until a person decides (approve).
//!
//! How the run loop drives it (see `run.rs`):
//! 1. for every kernel event: `let from = records.len(); let held = events::hold_of(&raw);`
//!    `table.on_event(ev, &mut records);` then
//!    `enforcer.after_event(held, &mut records, from, &hints)`, where `hints` gives the
//!    judgement's `fail_closed`, `approve_timeout_ms` and `block_connect` for a verdict;
//! 2. every loop turn: `enforcer.on_tick(&mut records)` (hold timeouts, approval timeouts,
//!    orphan holds), and poll no longer than `enforcer.next_deadline_ms()`;
//! 3. control commands: `pending()`, `approve(id, &mut records)`, `reject(id, &mut records)`;
//! 4. at stop: `shutdown(&mut records)` resumes every held process.
//!
//! Verdict records of approvals are taken out of `records` while the call waits and put
//! back when it is resolved.

pub mod actuator;
pub mod latency;
pub mod sock_destroy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::capture::events::HeldChunk;
use crate::mcp::{Enforcement, Flow, Record, Side, VerdictRecord};
use crate::policy::Action;

pub use actuator::{Actuator, KernelActuator};
pub use latency::LatencyRecorder;

/// Default fail-open hold timeout (the policy's `hold_timeout_ms`).
pub const DEFAULT_HOLD_TIMEOUT_MS: u64 = 50;
/// Default time a person has to approve a held call.
pub const DEFAULT_APPROVE_TIMEOUT_MS: u64 = 120_000;
/// MCP participants remembered in userspace (the kernel map is LRU, 16384 entries).
const MAX_MCP_PIDS: usize = 16384;
/// Bytes of a `POST` the participant check looks at for `"jsonrpc"`.
const OBSERVE_SCAN_BYTES: usize = 4096;
/// Held calls awaiting a person at once; beyond this an approve fails closed (reset).
pub const MAX_PENDING_APPROVALS: usize = 1024;

/// What the agent does about verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnforceMode {
    Monitor,
    #[default]
    Reset,
    Hold,
}

impl std::str::FromStr for EnforceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "monitor" => Ok(Self::Monitor),
            "reset" => Ok(Self::Reset),
            "hold" => Ok(Self::Hold),
            o => Err(format!("unknown enforce mode {o:?} (monitor, reset, hold)")),
        }
    }
}

impl std::fmt::Display for EnforceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Monitor => "monitor",
            Self::Reset => "reset",
            Self::Hold => "hold",
        })
    }
}

/// What the judgement says beyond the verdict record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictHints {
    /// Hold mode: reset instead of releasing when no decision comes in time.
    pub fail_closed: bool,
    /// `approve`: how long a person has to decide.
    pub approve_timeout_ms: u64,
    /// Deny: also refuse new connections from this process to this server.
    pub block_connect: bool,
    /// Hold mode, a server's view of a call whose client is a process on this host: the
    /// client's hold decides it (an `approve` must not be reset here while a person looks).
    pub decided_by_peer: bool,
}

impl Default for VerdictHints {
    fn default() -> Self {
        Self {
            fail_closed: false,
            approve_timeout_ms: DEFAULT_APPROVE_TIMEOUT_MS,
            block_connect: false,
            decided_by_peer: false,
        }
    }
}

/// Counters of the enforcement stage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EnforceStats {
    /// Verdict records seen.
    pub verdicts: u64,
    /// Denies recorded as `monitor_only`.
    pub monitor_only: u64,
    /// Sockets destroyed (reactive and held).
    pub resets: u64,
    /// Resets that failed (no such socket, no 4-tuple, …).
    pub reset_failed: u64,
    /// ... of which the verdict had no 4-tuple.
    pub reset_no_socket: u64,
    /// Held writes whose verdict named another socket than the one the stopped write is on
    /// (an fd reused before the old socket's close was seen); the write's own was reset.
    pub held_socket_corrected: u64,
    /// Held TLS writes with no known socket reset at their thread's next send.
    pub send_tie_resets: u64,
    /// ... that could not be (no send in time, not a TCP socket, another hold outstanding).
    pub send_tie_failed: u64,
    /// Held writes the agent read.
    pub holds_seen: u64,
    /// Holds released (the process resumed, or another hold kept it stopped).
    pub holds_released: u64,
    /// Held writes whose connection was reset before they left.
    pub holds_reset: u64,
    /// Holds released by the fail-open timeout.
    pub hold_timeouts: u64,
    /// Verdicts of fail-closed rules that came only after their hold had timed out (the call
    /// had left; the connection was then reset).
    pub hold_fail_closed_timeouts: u64,
    /// Held processes that were gone when released.
    pub holds_died: u64,
    /// Kernel holds whose data the agent never read (lost records), released after the
    /// hold timeout.
    pub orphan_holds: u64,
    /// A hold began while another was being released: the process was stopped again.
    pub restops: u64,
    /// Held chunks whose kernel hold was already gone (the stop signal failed): judged as
    /// unheld writes.
    pub holds_lost: u64,
    /// Releases that did not see the process's group stop complete within 5 ms.
    pub stop_wait_timeouts: u64,
    /// SIGCONT sent.
    pub resumes: u64,
    /// Calls held for a person right now.
    pub approvals_pending: u64,
    pub approved: u64,
    pub rejected: u64,
    pub approval_timeouts: u64,
    /// Approvals that could not wait (no hold, or too many pending): reset.
    pub approvals_fail_closed: u64,
    /// Connect-time blocks installed, and blocks asked for while unavailable.
    pub blocks: u64,
    pub block_unavailable: u64,
    /// Processes marked as MCP participants, and userspace forgets of that set.
    pub mcp_pids: u64,
    pub mcp_pid_forgets: u64,
    /// Request-seen-to-reset latency over the kept samples.
    pub reset_latency_count: u64,
    pub reset_latency_p50_ns: Option<u64>,
    pub reset_latency_p99_ns: Option<u64>,
}

/// A control-command failure.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("no held call with id {0}")]
    UnknownId(u64),
}

/// A held call waiting for a person, as `mcpwarden pending` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingInfo {
    pub id: u64,
    pub pid: u32,
    pub comm: String,
    pub server: String,
    pub session_id: Option<String>,
    pub user: Option<String>,
    pub tool: Option<String>,
    pub method: String,
    /// `params.arguments` of the call, redacted as the verdict record is.
    pub arguments: Option<Value>,
    pub rule_id: Option<String>,
    pub age_ms: u64,
    pub timeout_ms: u64,
}

struct Hold {
    /// Kernel time of the held write.
    started_ns: u64,
    /// Stream position one past the held write's last byte.
    end_pos: u64,
    deadline_ns: u64,
}

struct Pending {
    pid: u32,
    verdicts: Vec<VerdictRecord>,
    since_ns: u64,
    deadline_ns: u64,
}

/// The enforcer (see the module docs).
pub struct Enforcer<A: Actuator> {
    mode: EnforceMode,
    act: A,
    hold_timeout_ns: u64,
    /// Live holds by (pid, hold id).
    holds: HashMap<(u32, u64), Hold>,
    /// Holds resolved already: later chunks of the same write are ignored (bounded).
    resolved: HashSet<(u32, u64)>,
    /// Calls held for a person, by hold id.
    pending: BTreeMap<u64, Pending>,
    /// Holds released by the fail-open timeout: (pid, kernel time the hold began).
    timed_out: VecDeque<(u32, u64)>,
    mcp_pids: HashSet<u32>,
    /// Participants given the libc hold probes, and those not yet handed to the capture
    /// side for the libc hold probes.
    plain_pids: HashSet<u32>,
    new_plain_pids: Vec<u32>,
    stats: EnforceStats,
    latency: LatencyRecorder,
}

const MAX_RESOLVED: usize = 4096;
/// Holds released by the timeout remembered for their late verdict.
const MAX_TIMED_OUT: usize = 1024;
/// How long a late verdict is matched to a timed-out hold.
const TIMED_OUT_MEMORY_NS: u64 = 10_000_000_000;

impl<A: Actuator> Enforcer<A> {
    /// A new enforcer; in hold mode the kernel's write-path hold is switched on.
    pub fn new(mode: EnforceMode, mut act: A) -> Self {
        if mode == EnforceMode::Hold && !act.set_hold_enabled(true) {
            tracing::warn!("could not switch the kernel hold on");
        }
        Self {
            mode,
            act,
            hold_timeout_ns: DEFAULT_HOLD_TIMEOUT_MS * 1_000_000,
            holds: HashMap::new(),
            resolved: HashSet::new(),
            pending: BTreeMap::new(),
            timed_out: VecDeque::new(),
            mcp_pids: HashSet::new(),
            plain_pids: HashSet::new(),
            new_plain_pids: Vec::new(),
            stats: EnforceStats::default(),
            latency: LatencyRecorder::default(),
        }
    }

    pub fn mode(&self) -> EnforceMode {
        self.mode
    }

    /// Fail-open hold timeout (the policy's `hold_timeout_ms`).
    pub fn set_hold_timeout_ms(&mut self, ms: u64) {
        self.hold_timeout_ns = ms.saturating_mul(1_000_000);
    }

    pub fn actuator(&self) -> &A {
        &self.act
    }

    /// Counters, with the latency percentiles filled in.
    pub fn stats(&self) -> EnforceStats {
        let mut s = self.stats.clone();
        s.approvals_pending = self.pending.len() as u64;
        s.reset_latency_count = self.latency.count;
        s.reset_latency_p50_ns = self.latency.quantile(0.5);
        s.reset_latency_p99_ns = self.latency.quantile(0.99);
        s
    }

    /// Milliseconds until the next hold or approval deadline (for the poll timeout).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let now = self.act.now_ns();
        self.holds
            .values()
            .map(|h| h.deadline_ns)
            .chain(self.pending.values().map(|p| p.deadline_ns))
            .min()
            .map(|d| d.saturating_sub(now).div_ceil(1_000_000))
    }

    /// Consumes the records one kernel event produced (`records[from..]`): learns MCP
    /// participants, resolves the event's hold, and acts on its verdicts.
    pub fn after_event(
        &mut self,
        held: Option<HeldChunk>,
        records: &mut Vec<Record>,
        from: usize,
        hints: &dyn Fn(&VerdictRecord) -> VerdictHints,
    ) {
        let from = from.min(records.len());
        if self.mode == EnforceMode::Hold {
            self.learn_participants(&records[from..]);
        }
        let live = held.and_then(|h| self.track_hold(h));
        let now = self.act.now_ns();
        // Verdicts of the held process in this event decide its hold.
        let hold_idx: Vec<usize> = match live {
            Some((pid, _)) => (from..records.len())
                .filter(|&i| matches!(&records[i], Record::Verdict(v) if v.pid == pid))
                .collect(),
            None => Vec::new(),
        };
        for (i, r) in records.iter_mut().enumerate().skip(from) {
            if let Record::Verdict(v) = r {
                self.stats.verdicts += 1;
                if !hold_idx.contains(&i) {
                    let h = hints(v);
                    self.reactive(v, h, now);
                }
            }
        }
        let Some((pid, hold_id)) = live else {
            return;
        };
        let deny = hold_idx
            .iter()
            .any(|&i| matches!(&records[i], Record::Verdict(v) if v.action == Action::Deny));
        let approve = hold_idx
            .iter()
            .any(|&i| matches!(&records[i], Record::Verdict(v) if v.action == Action::Approve));
        if self.mode == EnforceMode::Monitor {
            // Holds never begin in monitor mode; a stray one is released.
            self.release(pid, hold_id);
            return;
        }
        if deny || (approve && self.pending.len() >= MAX_PENDING_APPROVALS) {
            if !deny {
                self.stats.approvals_fail_closed += 1;
            }
            // Blocks first: the client reconnects as soon as it sees the reset.
            for &i in &hold_idx {
                if let Record::Verdict(v) = &records[i] {
                    if v.action == Action::Deny {
                        let h = hints(v);
                        self.maybe_block(v, h);
                    }
                }
            }
            // The socket the stopped write is on, as the process sees it now: the
            // connection's recorded tuple can be a previous socket's when the fd was reused
            // before the kernel saw the old socket close.
            if let Some((local, remote)) = held
                .and_then(|h| h.sock_fd)
                .and_then(|fd| self.act.socket_tuple(pid, fd))
            {
                for &i in &hold_idx {
                    if let Record::Verdict(v) = &mut records[i] {
                        if v.local != local.to_string() || v.remote != remote.to_string() {
                            self.stats.held_socket_corrected += 1;
                        }
                        v.local = local.to_string();
                        v.remote = remote.to_string();
                    }
                }
            }
            let result = self.reset_first(records, &hold_idx, pid, hold_id);
            for &i in &hold_idx {
                if let Record::Verdict(v) = &mut records[i] {
                    v.hold_id = Some(hold_id);
                    if matches!(v.action, Action::Deny | Action::Approve) {
                        v.enforcement = result;
                        v.enforced_after_ns = Some(now.saturating_sub(v.ts_ns));
                    }
                }
            }
            if result == Enforcement::HeldThenReset {
                self.stats.holds_reset += 1;
            }
            self.release(pid, hold_id);
        } else if approve {
            let mut timeout_ms = DEFAULT_APPROVE_TIMEOUT_MS;
            let mut verdicts = Vec::new();
            for &i in hold_idx.iter().rev() {
                if let Record::Verdict(mut v) = records.remove(i) {
                    if v.action == Action::Approve {
                        timeout_ms = hints(&v).approve_timeout_ms;
                    }
                    v.hold_id = Some(hold_id);
                    verdicts.push(v);
                }
            }
            verdicts.reverse();
            // The person now decides: no fail-open timeout.
            self.holds.remove(&(pid, hold_id));
            self.pending.insert(
                hold_id,
                Pending {
                    pid,
                    verdicts,
                    since_ns: now,
                    deadline_ns: now.saturating_add(timeout_ms.saturating_mul(1_000_000)),
                },
            );
        } else if !hold_idx.is_empty() {
            for &i in &hold_idx {
                if let Record::Verdict(v) = &mut records[i] {
                    v.hold_id = Some(hold_id);
                    v.enforced_after_ns = Some(now.saturating_sub(v.ts_ns));
                }
            }
            self.release(pid, hold_id);
        } else if let (Some(h), Some(hold)) = (held, self.holds.get(&(pid, hold_id))) {
            // Nothing to judge in this write (or not yet complete): release once all of it
            // was read.
            let chunk_end = h.pos + u64::from(h.len);
            if chunk_end >= hold.end_pos || h.truncated {
                self.release(pid, hold_id);
            }
        }
    }

    /// Hold mode: looks at a kernel event before the connection table takes it. A process
    /// that writes an HTTP `POST` whose body is JSON-RPC is an MCP client: it becomes a
    /// participant at once (the message records may come later than its next write).
    pub fn observe(&mut self, ev: &crate::capture::KernelEvent) {
        if self.mode != EnforceMode::Hold {
            return;
        }
        let crate::capture::KernelEvent::Data {
            conn,
            direction: crate::capture::events::Direction::Egress,
            bytes,
            ..
        } = ev
        else {
            return;
        };
        if !bytes.starts_with(b"POST ") {
            return;
        }
        let head = &bytes[..bytes.len().min(OBSERVE_SCAN_BYTES)];
        if !head.windows(9).any(|w| w == b"\"jsonrpc\"") {
            return;
        }
        self.participant(conn.pid);
    }

    /// Marks `pid` as an MCP participant, due for the libc probes: they hold its plaintext
    /// requests and name the socket of a denied TLS write whose socket was unknown.
    fn participant(&mut self, pid: u32) {
        if !self.plain_pids.contains(&pid) {
            if self.plain_pids.len() >= MAX_MCP_PIDS {
                self.plain_pids.clear();
                self.stats.mcp_pid_forgets += 1;
            }
            self.plain_pids.insert(pid);
            self.new_plain_pids.push(pid);
        }
        if !self.mcp_pids.contains(&pid) {
            if self.mcp_pids.len() >= MAX_MCP_PIDS {
                self.mcp_pids.clear();
                self.stats.mcp_pid_forgets += 1;
            }
            self.mcp_pids.insert(pid);
            if self.act.add_mcp_pid(pid) {
                self.stats.mcp_pids += 1;
            }
        }
    }

    /// Registers a held chunk; returns (pid, hold id) while the hold is live.
    fn track_hold(&mut self, h: HeldChunk) -> Option<(u32, u64)> {
        let key = (h.pid, h.hold_id);
        if self.resolved.contains(&key) || self.pending.contains_key(&h.hold_id) {
            return None;
        }
        if !self.holds.contains_key(&key) {
            if !self.act.has_hold(h.pid, h.hold_id) {
                // The kernel dropped the hold (the stop signal failed): the write went on.
                self.stats.holds_lost += 1;
                self.resolved.insert(key);
                return None;
            }
            self.stats.holds_seen += 1;
            self.holds.insert(
                key,
                Hold {
                    started_ns: h.ts_ns,
                    end_pos: h.pos + u64::from(h.syscall_len),
                    deadline_ns: h.ts_ns.saturating_add(self.hold_timeout_ns),
                },
            );
        }
        Some(key)
    }

    fn learn_participants(&mut self, recs: &[Record]) {
        for r in recs {
            if let Record::Message(m) = r {
                if m.direction == Flow::ClientToServer && m.side == Side::Client {
                    self.participant(m.pid);
                }
            }
        }
    }

    /// Hold mode: processes newly seen sending MCP, for the libc hold probes
    /// (`Capture::attach_libc_hold`).
    pub fn take_new_participants(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.new_plain_pids)
    }

    /// A verdict whose bytes were not held.
    fn reactive(&mut self, v: &mut VerdictRecord, h: VerdictHints, now: u64) {
        if h.decided_by_peer && v.action == Action::Approve {
            // The client end's hold waits for the person; its verdict says what was done.
            v.enforcement = Enforcement::None;
            return;
        }
        match v.action {
            Action::Deny | Action::Approve => {
                if self.mode == EnforceMode::Monitor {
                    v.enforcement = Enforcement::MonitorOnly;
                    self.stats.monitor_only += 1;
                    return;
                }
                if v.action == Action::Approve {
                    // Nothing holds the call: a person cannot decide before it runs.
                    self.stats.approvals_fail_closed += 1;
                }
                if v.action == Action::Deny {
                    // Before the reset: the client reconnects as soon as it sees it.
                    self.maybe_block(v, h);
                }
                let ok = self.reset(&v.local, &v.remote, v.ts_ns);
                let late = self.take_timed_out(v.pid, v.ts_ns, now);
                if late && h.fail_closed {
                    // The rule wanted fail-closed, but no decision came in time.
                    self.stats.hold_fail_closed_timeouts += 1;
                    tracing::warn!(
                        pid = v.pid,
                        "fail-closed rule decided after the hold timed out: the call left"
                    );
                }
                v.enforcement = match (ok, late) {
                    (false, _) => Enforcement::ResetFailed,
                    (true, true) => Enforcement::FailOpenTimeout,
                    (true, false) => Enforcement::Reset,
                };
                v.enforced_after_ns = Some(now.saturating_sub(v.ts_ns));
            }
            Action::Allow | Action::Audit => {}
        }
    }

    /// Was a hold of `pid` that began before `ts_ns` released by the timeout? (Consumed.)
    fn take_timed_out(&mut self, pid: u32, ts_ns: u64, now: u64) -> bool {
        self.timed_out
            .retain(|(_, started)| now.saturating_sub(*started) < TIMED_OUT_MEMORY_NS);
        match self
            .timed_out
            .iter()
            .position(|(p, started)| *p == pid && *started <= ts_ns)
        {
            Some(i) => {
                self.timed_out.remove(i);
                true
            }
            None => false,
        }
    }

    /// Resets the connection of the first verdict of a hold that names one. A held TLS
    /// write with no known socket (a fresh memory-BIO `SSL *`) is reset at its thread's next
    /// send, when it is the process's only hold (resuming it then lets no other held write
    /// go); the verdicts then name the socket that was destroyed.
    fn reset_first(
        &mut self,
        records: &mut [Record],
        idx: &[usize],
        pid: u32,
        hold_id: u64,
    ) -> Enforcement {
        let target = idx.iter().find_map(|&i| match &records[i] {
            Record::Verdict(v) if !v.local.is_empty() => {
                Some((v.local.clone(), v.remote.clone(), v.ts_ns))
            }
            _ => None,
        });
        if let Some((l, r, ts)) = target {
            return if self.reset(&l, &r, ts) {
                Enforcement::HeldThenReset
            } else {
                Enforcement::ResetFailed
            };
        }
        let seen = idx
            .iter()
            .find_map(|&i| match &records[i] {
                Record::Verdict(v) => Some(v.ts_ns),
                _ => None,
            })
            .unwrap_or_default();
        if self.act.holds_of(pid) != 1 {
            return self.reset_failed_no_socket();
        }
        match self.act.reset_at_next_send(pid, hold_id) {
            Ok((local, remote)) => {
                self.stats.resets += 1;
                self.stats.send_tie_resets += 1;
                self.latency.record(self.act.now_ns().saturating_sub(seen));
                for &i in idx {
                    if let Record::Verdict(v) = &mut records[i] {
                        v.local = local.to_string();
                        v.remote = remote.to_string();
                    }
                }
                Enforcement::HeldThenReset
            }
            Err(e) => {
                tracing::warn!(pid, "reset of a held write at its send failed: {e}");
                self.stats.send_tie_failed += 1;
                self.reset_failed_no_socket()
            }
        }
    }

    fn reset_failed_no_socket(&mut self) -> Enforcement {
        self.stats.reset_failed += 1;
        self.stats.reset_no_socket += 1;
        Enforcement::ResetFailed
    }

    /// SOCK_DESTROY; records the latency of a success.
    fn reset(&mut self, local: &str, remote: &str, seen_ns: u64) -> bool {
        if local.is_empty() || remote.is_empty() {
            self.stats.reset_failed += 1;
            self.stats.reset_no_socket += 1;
            tracing::warn!("reset impossible: the connection's 4-tuple is unknown");
            return false;
        }
        match self.act.destroy(local, remote) {
            Ok(()) => {
                self.stats.resets += 1;
                self.latency
                    .record(self.act.now_ns().saturating_sub(seen_ns));
                true
            }
            Err(e) => {
                self.stats.reset_failed += 1;
                tracing::warn!("reset of {local} -> {remote} failed: {e}");
                false
            }
        }
    }

    fn maybe_block(&mut self, v: &VerdictRecord, h: VerdictHints) {
        if !h.block_connect || v.side != Side::Client {
            return;
        }
        let Ok(dest) = v.remote.parse::<SocketAddr>() else {
            return;
        };
        if self.act.block(v.pid, dest) {
            self.stats.blocks += 1;
        } else {
            self.stats.block_unavailable += 1;
        }
    }

    /// Drops one hold; the process resumes when it has no other outstanding hold.
    fn release(&mut self, pid: u32, hold_id: u64) {
        self.holds.remove(&(pid, hold_id));
        if self.resolved.len() >= MAX_RESOLVED {
            self.resolved.clear();
        }
        self.resolved.insert((pid, hold_id));
        self.act.remove_hold(pid, hold_id);
        self.stats.holds_released += 1;
        self.resume_if_free(pid);
    }

    fn resume_if_free(&mut self, pid: u32) {
        // A thread that entered a hold probe while the process was being stopped records its
        // hold before it stops: once every thread is stopped, the hold map is complete, and
        // a SIGCONT now cannot discard a stop that a new hold still needs.
        if !self.act.wait_stopped(pid) {
            self.stats.stop_wait_timeouts += 1;
        }
        if self.act.holds_of(pid) > 0 {
            return;
        }
        match self.act.signal(pid, libc::SIGCONT) {
            Ok(()) => self.stats.resumes += 1,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                self.stats.holds_died += 1;
                return;
            }
            Err(e) => tracing::warn!(pid, "SIGCONT failed: {e}"),
        }
        // Second line of defence (a group stop that did not complete in time): a thread that
        // began a hold while we looked had its pending stop discarded by SIGCONT: stop the
        // process again; that hold's own release resumes it.
        if self.act.holds_of(pid) > 0 {
            let _ = self.act.signal(pid, libc::SIGSTOP);
            self.stats.restops += 1;
        }
    }

    /// Timeouts: fail-open (or fail-closed) holds, approvals nobody answered, kernel holds
    /// whose data never arrived, processes that died while held.
    pub fn on_tick(&mut self, records: &mut Vec<Record>) {
        let now = self.act.now_ns();
        let overdue: Vec<(u32, u64)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.deadline_ns <= now)
            .map(|(k, _)| *k)
            .collect();
        for (pid, id) in overdue {
            // No verdict came (yet): nothing said fail-closed, so the call goes on. A verdict
            // that comes later for this process is marked `fail_open_timeout`.
            self.stats.hold_timeouts += 1;
            if let Some(h) = self.holds.get(&(pid, id)) {
                if self.timed_out.len() >= MAX_TIMED_OUT {
                    self.timed_out.pop_front();
                }
                self.timed_out.push_back((pid, h.started_ns));
            }
            tracing::info!(pid, hold_id = id, "hold timed out: released (fail-open)");
            self.release(pid, id);
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ns <= now)
            .map(|(k, _)| *k)
            .collect();
        for id in expired {
            self.stats.approval_timeouts += 1;
            self.resolve(id, false, records);
        }
        if self.mode == EnforceMode::Hold {
            self.sweep_orphans(now);
        }
    }

    /// Kernel holds the agent does not know of (their records were lost) are released after
    /// the hold timeout.
    fn sweep_orphans(&mut self, now: u64) {
        let holds = self.act.holds();
        for (pid, id, ts) in holds {
            let known = self.holds.contains_key(&(pid, id)) || self.pending.contains_key(&id);
            if !known && now.saturating_sub(ts) >= self.hold_timeout_ns.max(1_000_000) {
                self.stats.orphan_holds += 1;
                self.act.remove_hold(pid, id);
                self.resume_if_free(pid);
            }
        }
    }

    /// Held calls waiting for a person.
    pub fn pending(&self) -> Vec<PendingInfo> {
        let now = self.act.now_ns();
        self.pending
            .iter()
            .map(|(id, p)| {
                let v = p
                    .verdicts
                    .iter()
                    .find(|v| v.action == Action::Approve)
                    .or(p.verdicts.first());
                PendingInfo {
                    id: *id,
                    pid: p.pid,
                    comm: v.map(|v| v.comm.clone()).unwrap_or_default(),
                    server: v.map(|v| v.server.clone()).unwrap_or_default(),
                    session_id: v.and_then(|v| v.session_id.clone()),
                    user: v.and_then(|v| v.user.clone()),
                    tool: v.and_then(|v| v.name.clone()),
                    method: v.map(|v| v.method.clone()).unwrap_or_default(),
                    arguments: v.and_then(|v| {
                        v.request
                            .as_ref()
                            .and_then(|r| r.pointer("/params/arguments"))
                            .cloned()
                    }),
                    rule_id: v.and_then(|v| v.rule_id.clone()),
                    age_ms: now.saturating_sub(p.since_ns) / 1_000_000,
                    timeout_ms: p.deadline_ns.saturating_sub(p.since_ns) / 1_000_000,
                }
            })
            .collect()
    }

    /// A person approved the held call `id`: it goes on.
    pub fn approve(&mut self, id: u64, records: &mut Vec<Record>) -> Result<(), ControlError> {
        if !self.pending.contains_key(&id) {
            return Err(ControlError::UnknownId(id));
        }
        self.stats.approved += 1;
        self.resolve(id, true, records);
        Ok(())
    }

    /// A person rejected the held call `id`: its connection is reset.
    pub fn reject(&mut self, id: u64, records: &mut Vec<Record>) -> Result<(), ControlError> {
        if !self.pending.contains_key(&id) {
            return Err(ControlError::UnknownId(id));
        }
        self.stats.rejected += 1;
        self.resolve(id, false, records);
        Ok(())
    }

    fn resolve(&mut self, id: u64, approved: bool, records: &mut Vec<Record>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let now = self.act.now_ns();
        let enforcement = if approved {
            Enforcement::HeldThenReleased
        } else {
            let target = p
                .verdicts
                .iter()
                .find(|v| !v.local.is_empty())
                .map(|v| (v.local.clone(), v.remote.clone(), v.ts_ns));
            let (l, r, ts) = target.unwrap_or_default();
            if self.reset(&l, &r, ts) {
                self.stats.holds_reset += 1;
                Enforcement::HeldThenReset
            } else {
                Enforcement::ResetFailed
            }
        };
        for mut v in p.verdicts {
            if matches!(v.action, Action::Approve | Action::Deny) {
                v.enforcement = enforcement;
                v.enforced_after_ns = Some(now.saturating_sub(v.ts_ns));
            }
            records.push(Record::Verdict(v));
        }
        self.release(p.pid, id);
    }

    /// At stop: the hold is switched off, calls waiting for a person are reset (fail
    /// closed), every other held process resumes.
    pub fn shutdown(&mut self, records: &mut Vec<Record>) {
        if self.mode == EnforceMode::Hold {
            self.act.set_hold_enabled(false);
        }
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            self.resolve(id, false, records);
        }
        let live: Vec<(u32, u64)> = self.holds.keys().copied().collect();
        for (pid, id) in live {
            self.release(pid, id);
        }
        for (pid, id, _) in self.act.holds() {
            self.act.remove_hold(pid, id);
            self.resume_if_free(pid);
        }
    }

    /// Holds being judged right now (not waiting for a person).
    pub fn live_holds(&self) -> usize {
        self.holds.len()
    }

    /// Kernel time the oldest live hold began.
    pub fn oldest_hold_ns(&self) -> Option<u64> {
        self.holds.values().map(|h| h.started_ns).min()
    }
}
