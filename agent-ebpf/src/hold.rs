//! Pre-execution hold (hold mode): at the entry of a TLS write, before the plaintext is
//! encrypted, a cheap prefilter looks for `tools/call` in the first bytes of the buffer of a
//! process that takes part in MCP. On a hit the bytes go to userspace now (the process is
//! about to stop, so the return probe cannot carry them in time), the hold is recorded in
//! `HELD`, and the process is stopped with SIGSTOP (thread-directed). Userspace judges the call and then
//! resets the connection (deny) and/or resumes the process.
//!
//! Order of the checks (cheapest first): hold mode on (one array load), the process is an
//! MCP participant (one hash lookup), then the bounded scan.

use aya_ebpf::helpers::{
    bpf_ktime_get_ns, bpf_probe_read_user, generated::bpf_probe_read_user as raw_probe_read_user,
    generated::bpf_send_signal_thread,
};
use mcpwarden_common::{
    conn::{TlsKey, CONN_HTTP, CONN_HTTP_QUIET, CONN_SNIFFING},
    counters::Counter,
    enforce::{
        HoldEntry, HoldKey, CFG_HOLD_ENABLED, PREFILTER_NEEDLE, PREFILTER_SCAN_BYTES, SIGSTOP,
    },
    event::DataSource,
};

use crate::{
    emit::{emit_payload, first_bytes, looks_like_http, Payload},
    exchange::carried_request,
    maps::{config, count, TlsArgs, HELD, MCP_PIDS, PREFILTER, PREFILTER_FILL},
    tls::{open_tls_stream, tls_conn},
};

/// True when hold mode is on and `tgid` takes part in MCP.
#[inline(always)]
pub fn hold_candidate(tgid: u32) -> bool {
    if config(CFG_HOLD_ENABLED) == 0 {
        return false;
    }
    // SAFETY: read-only peek.
    unsafe { MCP_PIDS.get(&tgid) }.is_some()
}

/// Does the start of the user buffer `buf` (`len` bytes) contain `tools/call`?
#[inline(always)]
pub fn prefilter(buf: u64, len: u64) -> bool {
    let Some(scratch) = PREFILTER.get_ptr_mut(0) else {
        return false;
    };
    let p = scratch.cast::<u8>();
    let n = read_into(p, 0, buf, len);
    n > 0 && scan(p, n)
}

/// Does the start of a vectored write (its first `SCANNED_SEGMENTS` segments, concatenated,
/// up to `PREFILTER_SCAN_BYTES`) contain `tools/call`? A client that corks its head and body
/// writes them as separate segments of one writev.
#[inline(always)]
pub fn prefilter_iov(iov: u64, cnt: u64) -> bool {
    let Some(scratch) = PREFILTER.get_ptr_mut(0) else {
        return false;
    };
    let p = scratch.cast::<u8>();
    let Some(fill) = PREFILTER_FILL.get_ptr_mut(0) else {
        return false;
    };
    // The fill level lives in map memory, read and written through volatile accesses (as the
    // chunk walk's state in `emit.rs`): the verifier does not track it, so the states of each
    // turn converge and the scan below is verified once, not once per path through the loop.
    // SAFETY: per-CPU slot owned by this program run.
    unsafe { core::ptr::write_volatile(fill, 0) };
    for i in 0..SCANNED_SEGMENTS {
        // SAFETY: as above.
        let off = unsafe { core::ptr::read_volatile(fill) } as usize;
        if i >= cnt || off >= PREFILTER_SCAN_BYTES {
            break;
        }
        // SAFETY: fault-tolerant user reads of iov[i] = { void *base; size_t len; }.
        let base = unsafe { bpf_probe_read_user((iov + i * 16) as *const u64) };
        let len = unsafe { bpf_probe_read_user((iov + i * 16 + 8) as *const u64) };
        let (Ok(base), Ok(len)) = (base, len) else {
            break;
        };
        let room = (PREFILTER_SCAN_BYTES - off) as u64;
        let n = read_into(p, off, base, if len < room { len } else { room });
        if n == 0 {
            break;
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(fill, (off + n) as u64) };
    }
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(fill) } as usize;
    off > 0 && scan(p, off)
}

/// Segments of a vectored write the prefilter reads.
const SCANNED_SEGMENTS: u64 = 4;

/// Copies up to `PREFILTER_SCAN_BYTES` of user memory at `buf` to `p + off`
/// (`off < PREFILTER_SCAN_BYTES`); the bytes copied (0 when unreadable).
#[inline(always)]
pub fn read_into(p: *mut u8, off: usize, buf: u64, len: u64) -> usize {
    let n = if len > PREFILTER_SCAN_BYTES as u64 {
        PREFILTER_SCAN_BYTES as u64
    } else {
        len
    };
    // Give the verifier bounds it can see on the offset and the helper's size argument.
    let n = (unsafe { core::ptr::read_volatile(&n) } as usize) & (2 * PREFILTER_SCAN_BYTES - 1);
    let off = off & (PREFILTER_SCAN_BYTES - 1);
    if n == 0 || n > PREFILTER_SCAN_BYTES {
        return 0;
    }
    // SAFETY: off < SCAN and n <= SCAN: inside the 2 * SCAN scratch buffer; fault-tolerant
    // read.
    let rc = unsafe { raw_probe_read_user(p.add(off).cast(), n as u32, buf as *const _) };
    if rc != 0 {
        count(Counter::ReadUserFailed, 1);
        return 0;
    }
    n
}

/// Does `p[..n]` (`n <= PREFILTER_SCAN_BYTES`) contain the needle?
#[inline(always)]
fn scan(p: *const u8, n: usize) -> bool {
    if n < PREFILTER_NEEDLE.len() || n > PREFILTER_SCAN_BYTES {
        return false;
    }
    count(Counter::HoldScans, 1);
    let head = u64::from_le_bytes([b't', b'o', b'o', b'l', b's', b'/', b'c', b'a']);
    let tail = u16::from_le_bytes([b'l', b'l']);
    let last = n - PREFILTER_NEEDLE.len();
    for i in 0..=(PREFILTER_SCAN_BYTES - PREFILTER_NEEDLE.len()) {
        if i > last {
            break;
        }
        // SAFETY: i + 10 <= PREFILTER_SCAN_BYTES: both loads stay inside the buffer.
        let w = unsafe { core::ptr::read_unaligned(p.add(i).cast::<u64>()) };
        if w == head {
            let t = unsafe { core::ptr::read_unaligned(p.add(i + 8).cast::<u16>()) };
            if t == tail {
                return true;
            }
        }
    }
    false
}

/// At the entry of `SSL_write`/`SSL_write_ex` of an MCP process in hold mode: hold the
/// write if it carries `tools/call`. Fills `a.held*` when it did.
#[inline(always)]
pub fn maybe_hold_tls_write(id: u64, a: &mut TlsArgs, num: u64) {
    let tgid = (id >> 32) as u32;
    if num == 0 || !prefilter(a.buf, num) {
        return;
    }
    count(Counter::HoldPrefilterHits, 1);
    let key = TlsKey {
        tgid,
        _pad: 0,
        ssl: a.ssl,
    };
    // A fresh `SSL *` (its first write is this request) has no state yet: it gets one now.
    let Some(c) = tls_conn(&key) else {
        return;
    };
    // SAFETY: map value valid for this run.
    let c = unsafe { &mut *c };
    let payload = Payload {
        buf: a.buf,
        count: num,
        vectored: false,
        len: num,
    };
    let fresh = match c.state {
        CONN_HTTP => false,
        // Announced now: its earlier exchanges were all skipped.
        CONN_HTTP_QUIET => true,
        CONN_SNIFFING if looks_like_http(&first_bytes(&payload)) => true,
        _ => {
            count(Counter::HoldSkipNotHttp, 1);
            return;
        }
    };
    let Some(hold_id) = begin_hold(id, num) else {
        return;
    };
    if fresh {
        count(Counter::HoldFreshConn, 1);
        open_tls_stream(tgid, id as u32, c);
    }
    carried_request(&mut c.exchange);
    let pos = c.egress_pos;
    c.egress_pos = pos + num;
    a.held = 1;
    a.held_pos = pos;
    a.held_len = num;
    emit_payload(
        tgid,
        id as u32,
        mcpwarden_common::conn::NO_FD,
        c.start_ns,
        pos,
        DataSource::SslWrite as u8,
        c.fd,
        hold_id,
        &payload,
    );
    stop_process(tgid, hold_id);
}

/// Records a hold of the calling thread's write of `len` bytes; its id, or `None` when the
/// hold map is full.
#[inline(always)]
pub fn begin_hold(id: u64, len: u64) -> Option<u64> {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let hold_id = now | 1; // never 0 (0 means "not held" in data records)
    let hk = HoldKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        hold_id,
    };
    let entry = HoldEntry {
        ts_ns: now,
        tid: id as u32,
        len: len as u32,
    };
    if HELD.insert(&hk, &entry, 0).is_err() {
        count(Counter::HoldMapFull, 1);
        return None;
    }
    Some(hold_id)
}

/// Stops the calling process: SIGSTOP directed at this thread, so this thread itself
/// dequeues it on its way back to user mode and begins the group stop before the write
/// goes on. (A process-directed SIGSTOP let a second thread's held write through now and
/// then in the multi-threaded test: measured 1 leak in 6 runs, none in 18 with this.)
/// On failure the hold is dropped and the write goes on.
#[inline(always)]
pub fn stop_process(tgid: u32, hold_id: u64) {
    // SAFETY: helper without preconditions.
    if unsafe { bpf_send_signal_thread(SIGSTOP) } != 0 {
        count(Counter::HoldSignalFailed, 1);
        let _ = HELD.remove(&HoldKey {
            tgid,
            _pad: 0,
            hold_id,
        });
        return;
    }
    count(Counter::Holds, 1);
}
