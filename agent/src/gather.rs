//! Monitor mode: after a turn that found records, the event loop lets the next ones gather
//! (`--batch-ms`) instead of waking for each request.
//!
//! Every turn of the loop costs far more than its share of decoding: the wake-up, `poll`,
//! the output `write`, and caches the traced client and server have since filled. Measured
//! on the 2-core development VM with the official Python SDK client over TLS (500
//! `tools/call`s, 4 message records each): 420 µs of agent CPU per call with a 2 ms window,
//! 200–280 µs with 20 ms, 480–520 µs with none.
//!
//! The window is waited in `epoll_wait` on the ring with `EPOLLET`, so it can end early:
//! the ring wakes its reader only for a record written into an empty ring (the first one
//! after the turn: one wake-up, the window goes on), and the kernel programs force a
//! wake-up for every payload chunk committed while the ring is more than a quarter full
//! (`wake_flags` in `agent-ebpf/src/emit.rs`): a second wake-up in one window means a burst
//! is arriving, and the loop goes back to draining at once (a large body's skip range must
//! reach the kernel before the body fills the ring). The discovery and control wake-up
//! descriptors end the window too: a process to attach, or an operator's request, does not
//! wait for it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The epoll set the window is waited on.
#[derive(Debug)]
pub struct Gather {
    epoll: OwnedFd,
    ring: RawFd,
    /// Windows waited, and those a burst or another descriptor ended early (health).
    pub windows: u64,
    pub ended_early: u64,
}

impl Gather {
    /// `ring`: the ring buffer map's descriptor (edge-triggered); `others`: descriptors
    /// whose readiness ends a window (negative ones are skipped).
    pub fn new(ring: RawFd, others: &[RawFd]) -> std::io::Result<Gather> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor no one else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        add(&epoll, ring, (libc::EPOLLIN | libc::EPOLLET) as u32)?;
        for &fd in others.iter().filter(|&&fd| fd >= 0) {
            add(&epoll, fd, libc::EPOLLIN as u32)?;
        }
        Ok(Gather {
            epoll,
            ring,
            windows: 0,
            ended_early: 0,
        })
    }

    /// Waits out one window of `window` (the ring was just drained).
    pub fn wait(&mut self, window: Duration) {
        self.windows += 1;
        let deadline = Instant::now() + window;
        // A ring wake-up left from before the turn is reported once: take it now.
        if let Woken::Other = self.wait_once(0) {
            self.ended_early += 1;
            return;
        }
        let mut ring_wakeups = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // Rounded up: epoll's timeout is in milliseconds.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            match self.wait_once(ms) {
                Woken::Timeout => return,
                Woken::Ring => {
                    ring_wakeups += 1;
                    if ring_wakeups >= 2 {
                        self.ended_early += 1;
                        return;
                    }
                }
                Woken::Other | Woken::Error => {
                    self.ended_early += 1;
                    return;
                }
            }
        }
    }

    fn wait_once(&self, timeout_ms: i32) -> Woken {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `events` is valid for 4 entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            return Woken::Error;
        }
        let woken = &events[..n as usize];
        if n == 0 {
            Woken::Timeout
        } else if woken.iter().any(|e| e.u64 != self.ring as u64) {
            Woken::Other
        } else {
            Woken::Ring
        }
    }
}

enum Woken {
    Timeout,
    Ring,
    Other,
    /// `EINTR` (a signal: the stop flag may be set) or a failure: end the window.
    Error,
}

fn add(epoll: &OwnedFd, fd: RawFd, events: u32) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: valid descriptors and event.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventfd() -> OwnedFd {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn signal(fd: &OwnedFd) {
        let one = 1u64;
        // SAFETY: 8 valid bytes.
        let rc = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(rc, 8);
    }

    #[test]
    fn a_quiet_window_lasts_its_length() {
        let ring = eventfd();
        let mut g = Gather::new(ring.as_raw_fd(), &[]).unwrap();
        let t = Instant::now();
        g.wait(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!((g.windows, g.ended_early), (1, 0));
    }

    #[test]
    fn one_ring_wake_up_does_not_end_the_window_a_second_does() {
        let ring = eventfd();
        let mut g = Gather::new(ring.as_raw_fd(), &[]).unwrap();
        // An edge before the window is left over from the turn: it does not count.
        signal(&ring);
        let t = Instant::now();
        let r2 = ring.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            signal(&r2);
            std::thread::sleep(Duration::from_millis(5));
            signal(&r2);
        });
        g.wait(Duration::from_secs(10));
        writer.join().unwrap();
        let spent = t.elapsed();
        assert!(spent >= Duration::from_millis(10), "{spent:?}");
        assert!(spent < Duration::from_secs(5), "{spent:?}");
        assert_eq!((g.windows, g.ended_early), (1, 1));
    }

    #[test]
    fn another_descriptor_ends_the_window_at_once() {
        let ring = eventfd();
        let other = eventfd();
        let mut g = Gather::new(ring.as_raw_fd(), &[other.as_raw_fd(), -1]).unwrap();
        signal(&other);
        let t = Instant::now();
        g.wait(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(g.ended_early, 1);
    }
}
