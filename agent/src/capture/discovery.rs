//! The TLS discovery thread: everything expensive about finding TLS libraries (reading
//! `/proc/*/maps`, parsing ELF symbol tables) runs here, off the thread that drains the ring
//! buffer. It hands [`Candidate`]s ("attach this path") back to that thread, which owns the
//! `Ebpf` object and does the attaching, and wakes it through an eventfd.
//!
//! When it looks:
//! - every [`FULL_SCAN_EVERY`]: every process not read before, or whose executable changed
//!   (what the other triggers missed: a lost exec event, a dropped request), and every
//!   process again [`RESCAN_KNOWN_EVERY_MS`] after it was last read (a library mapped
//!   without the loader's notice). Reading every process's maps every period cost an
//!   idle agent about 0.4 % of a core on a host of 70 processes, and grows with the host.
//! - after an exec: at once, then [`RESCAN_AFTER_EXEC_MS`] later (the loader maps the
//!   libraries after the exec event);
//! - after a link-map change (`dlopen`, [`Request::LinkMap`]): [`LINK_MAP_SETTLE_MS`] later
//!   (so the `RT_ADD` and `RT_CONSISTENT` calls of one `dlopen` share one scan, made once the
//!   library is mapped), and never twice within [`LINK_MAP_MIN_INTERVAL_MS`] for one process
//!   (a process that imports a hundred extension modules costs a scan per 100 ms at most).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tls::{Candidate, Scanner};

/// When to look again at a freshly exec'd process (ms after the exec event).
pub const RESCAN_AFTER_EXEC_MS: [u64; 4] = [20, 100, 400, 1500];
/// Period of the sweep over every process (only the new or changed ones are read).
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(2);
/// A process read before is read again after this long (ms).
pub const RESCAN_KNOWN_EVERY_MS: u64 = 30_000;
/// Delay between a link-map change and the scan it causes.
pub const LINK_MAP_SETTLE_MS: u64 = 2;
/// Shortest interval between two link-map scans of one process.
pub const LINK_MAP_MIN_INTERVAL_MS: u64 = 100;

/// CLOCK_MONOTONIC in ns (the kernel's event clock).
pub use crate::enforce::actuator::monotonic_ns;

/// What the capture thread asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A process exec'd.
    Exec(u32),
    /// A process's loader changed its link map.
    LinkMap(u32),
}

/// Per-process scan schedule (pure: the time is passed in, in ms on any monotonic clock).
#[derive(Debug, Default)]
pub struct Schedule {
    /// (due ms, pid), unsorted.
    due: Vec<(u64, u32)>,
    /// Last link-map scan of each pid (ms).
    last_link_map_scan: HashMap<u32, u64>,
    /// Link-map scans that were folded into another one.
    pub coalesced: u64,
}

impl Schedule {
    /// Records a request at `now`: the scans it causes are returned by [`Self::take_due`].
    pub fn request(&mut self, req: Request, now: u64) {
        match req {
            Request::Exec(pid) => {
                self.due.push((now, pid));
                for d in RESCAN_AFTER_EXEC_MS {
                    self.due.push((now + d, pid));
                }
            }
            Request::LinkMap(pid) => {
                let earliest = self
                    .last_link_map_scan
                    .get(&pid)
                    .map_or(0, |last| last + LINK_MAP_MIN_INTERVAL_MS);
                let at = (now + LINK_MAP_SETTLE_MS).max(earliest);
                // One pending link-map scan per pid: a later request folds into it.
                if self
                    .due
                    .iter()
                    .any(|&(d, p)| p == pid && d >= now && d <= at)
                {
                    self.coalesced += 1;
                    return;
                }
                self.due.push((at, pid));
                self.last_link_map_scan.insert(pid, at);
            }
        }
    }

    /// The pids whose scan is due at `now` (each once), removed from the schedule.
    pub fn take_due(&mut self, now: u64) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .due
            .iter()
            .filter(|(d, _)| *d <= now)
            .map(|(_, p)| *p)
            .collect();
        self.due.retain(|(d, _)| *d > now);
        pids.sort_unstable();
        pids.dedup();
        if self.last_link_map_scan.len() > 4096 {
            self.last_link_map_scan
                .retain(|_, last| now.saturating_sub(*last) < LINK_MAP_MIN_INTERVAL_MS);
        }
        pids
    }

    /// When the next scan is due.
    pub fn next_due(&self) -> Option<u64> {
        self.due.iter().map(|(d, _)| *d).min()
    }
}

/// Which processes the periodic sweep reads (pure: the time and the listing are passed in).
#[derive(Debug, Default)]
pub struct Sweep {
    /// pid → (identity of its executable, ms of its last read).
    seen: HashMap<u32, (u64, u64)>,
}

impl Sweep {
    /// The pids of `present` (pid, executable identity) to read at `now`: those not read
    /// before, those whose executable changed (an exec), and those last read
    /// [`RESCAN_KNOWN_EVERY_MS`] ago. Pids no longer present are forgotten.
    pub fn due(&mut self, present: &[(u32, u64)], now: u64) -> Vec<u32> {
        let mut due = Vec::new();
        let mut next = HashMap::with_capacity(present.len());
        for &(pid, exe) in present {
            let read_now = match self.seen.get(&pid) {
                Some(&(e, last)) => e != exe || now.saturating_sub(last) >= RESCAN_KNOWN_EVERY_MS,
                None => true,
            };
            let last = if read_now {
                due.push(pid);
                now
            } else {
                self.seen.get(&pid).map_or(now, |&(_, last)| last)
            };
            next.insert(pid, (exe, last));
        }
        self.seen = next;
        due
    }

    /// A trigger read `pid` at `now`: the sweep need not read it again soon.
    pub fn read(&mut self, pid: u32, now: u64) {
        if let Some(entry) = self.seen.get_mut(&pid) {
            entry.1 = now;
        }
    }
}

/// Identity of `pid`'s executable (device and inode through `/proc/PID/exe`); 0 when it has
/// none (a kernel thread) or is gone.
fn exe_identity(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe")).map_or(0, |m| (m.dev() << 40) ^ m.ino())
}

/// Every process on the host but this one, with its executable's identity.
fn processes() -> Vec<(u32, u64)> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|&p| p != me)
        .map(|p| (p, exe_identity(p)))
        .collect()
}

/// Most requests waiting for the discovery thread. An exec storm beyond it drops requests
/// (counted); the periodic full scan still finds what they would have.
pub const MAX_QUEUED_REQUESTS: usize = 4096;

/// The running discovery thread.
pub struct Discovery {
    tx: Option<SyncSender<Request>>,
    dropped: AtomicU64,
    found: Receiver<Candidate>,
    wake: OwnedFd,
    handle: Option<JoinHandle<()>>,
}

impl Discovery {
    /// Starts the thread with a scanner that already knows what was handed over.
    pub fn start(scanner: Scanner) -> std::io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let wake_raw = wake.as_raw_fd();
        let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_REQUESTS);
        let (found_tx, found) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tls-discovery".into())
            .spawn(move || run(scanner, rx, found_tx, wake_raw))?;
        Ok(Self {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
            found,
            wake,
            handle: Some(handle),
        })
    }

    /// Queues a request; never blocks the capture loop. A full queue drops it (counted in
    /// [`Self::dropped`]).
    pub fn request(&self, req: Request) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(req) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Requests dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Readable when candidates wait (poll it with the ring).
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Every candidate found since the last call.
    pub fn take_found(&self) -> Vec<Candidate> {
        let mut buf = [0u8; 8];
        // SAFETY: valid buffer of 8 bytes (eventfd reads are 8 bytes); non-blocking.
        let _ = unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.found.try_iter().collect()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.tx = None; // the thread ends when the channel closes
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ms_since(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

fn run(mut scanner: Scanner, rx: Receiver<Request>, found: Sender<Candidate>, wake: RawFd) {
    let t0 = Instant::now();
    let mut schedule = Schedule::default();
    let mut sweep = Sweep::default();
    // The start-up scan read every process just before.
    sweep.due(&processes(), 0);
    let mut last_full = 0u64;
    let full_every = FULL_SCAN_EVERY.as_millis() as u64;
    let hand_over = |cands: Vec<Candidate>| {
        if cands.is_empty() {
            return true;
        }
        for c in cands {
            if found.send(c).is_err() {
                return false;
            }
        }
        let one: u64 = 1;
        // SAFETY: 8-byte write to an eventfd that outlives this thread (joined on drop).
        let _ = unsafe { libc::write(wake, (&one as *const u64).cast(), 8) };
        true
    };
    loop {
        let now = ms_since(t0);
        let next = schedule
            .next_due()
            .unwrap_or(u64::MAX)
            .min(last_full + full_every);
        match rx.recv_timeout(Duration::from_millis(next.saturating_sub(now))) {
            Ok(req) => {
                schedule.request(req, ms_since(t0));
                // Take every request already queued before scanning.
                for req in rx.try_iter() {
                    schedule.request(req, ms_since(t0));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = ms_since(t0);
        for pid in schedule.take_due(now) {
            sweep.read(pid, now);
            if !hand_over(scanner.scan_pid(pid)) {
                return;
            }
        }
        if now >= last_full + full_every {
            for pid in sweep.due(&processes(), now) {
                if !hand_over(scanner.scan_pid(pid)) {
                    return;
                }
            }
            last_full = ms_since(t0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_reads_new_and_changed_processes_and_the_others_every_30_s() {
        let mut s = Sweep::default();
        assert_eq!(s.due(&[(1, 10), (2, 20)], 0), vec![1, 2], "first sight");
        assert!(
            s.due(&[(1, 10), (2, 20)], 2_000).is_empty(),
            "nothing changed"
        );
        assert_eq!(
            s.due(&[(1, 10), (2, 21), (3, 30)], 4_000),
            vec![2, 3],
            "an exec (new executable) and a new process"
        );
        s.read(1, 10_000); // a trigger read pid 1
        assert_eq!(
            s.due(&[(1, 10), (2, 21), (3, 30)], 30_000),
            Vec::<u32>::new(),
            "pid 1 was read at 10 s, 2 and 3 at 4 s"
        );
        assert_eq!(s.due(&[(1, 10), (2, 21), (3, 30)], 34_000), vec![2, 3]);
        assert_eq!(s.due(&[(1, 10), (3, 30)], 40_000), vec![1]);
        // Pid 2 left: it is forgotten, and a new process with its pid is new.
        assert_eq!(s.due(&[(1, 10), (2, 21), (3, 30)], 42_000), vec![2]);
    }

    #[test]
    fn an_exec_is_scanned_at_once_and_at_each_rescan_delay() {
        let mut s = Schedule::default();
        s.request(Request::Exec(7), 1000);
        assert_eq!(s.take_due(1000), vec![7]);
        assert_eq!(s.next_due(), Some(1020));
        assert!(s.take_due(1019).is_empty());
        assert_eq!(s.take_due(1020), vec![7]);
        assert_eq!(
            s.take_due(2500),
            vec![7],
            "the remaining three fold into one"
        );
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_dlopen_is_scanned_after_the_settle_delay_and_its_two_loader_calls_share_one_scan() {
        let mut s = Schedule::default();
        s.request(Request::LinkMap(9), 1000); // RT_ADD
        s.request(Request::LinkMap(9), 1001); // RT_CONSISTENT
        assert!(s.take_due(1001).is_empty());
        assert_eq!(s.take_due(1000 + LINK_MAP_SETTLE_MS), vec![9]);
        assert_eq!(s.coalesced, 1);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_process_is_not_rescanned_for_link_map_changes_within_100_ms() {
        let mut s = Schedule::default();
        s.request(Request::LinkMap(9), 1000);
        assert_eq!(s.take_due(1002), vec![9]);
        // A burst of dlopens right after: one scan, 100 ms after the previous one.
        for t in 1003..1050 {
            s.request(Request::LinkMap(9), t);
        }
        assert_eq!(s.next_due(), Some(1002 + LINK_MAP_MIN_INTERVAL_MS));
        assert!(s.take_due(1101).is_empty());
        assert_eq!(s.take_due(1102), vec![9]);
        assert_eq!(s.next_due(), None);
        // Another process is not held back by this one.
        s.request(Request::LinkMap(10), 1103);
        assert_eq!(s.take_due(1105), vec![10]);
    }
}
