//! Exchange skipping (see `mcpwarden_common::conn::EXCH_SKIPPING`): on a connection streamed
//! as HTTP, or about to be, an exchange whose request cannot be MCP is neither copied to the
//! ring nor parsed. The judgement is made on the request's first call, in the kernel, before a
//! byte of it is reserved:
//! - `POST` and `DELETE` (every MCP message and session end, both eras) are carried;
//! - any other method is carried only when its head, read from the first call (up to the
//!   prefilter's 1 KiB), does not end there or names `event-stream` (the `GET` that opens
//!   an MCP server's stream, or the old HTTP+SSE transport's);
//! - the answer direction follows its request: skipped while the exchange is.
//!
//! Skipped bytes do not advance the stream positions, so userspace sees the exchanges on
//! either side of a skipped one as one unbroken stream (the stream is cut only between a
//! whole answer and the next request: HTTP/1.1 clients do not pipeline). A connection whose
//! first exchange is skipped is not even announced (`CONN_HTTP_QUIET`) until a call of it is
//! carried, if one ever is: a one-request connection that cannot be MCP costs userspace
//! nothing.

use mcpwarden_common::{
    conn::{
        CONN_HTTP, CONN_HTTP_QUIET, CONN_SNIFFING, EXCH_REQ_EGRESS, EXCH_REQ_INGRESS,
        EXCH_REQ_MASK, EXCH_SKIPPING,
    },
    counters::Counter,
    enforce::PREFILTER_SCAN_BYTES,
    event::DIR_EGRESS,
    sniff::{is_event_stream, is_status_line, request_start, RequestStart, HEAD_END},
};

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_user, generated::bpf_loop};

use crate::{
    emit::{first_bytes, Payload},
    hold::read_into,
    maps::{count, HEAD_SCAN, PREFILTER},
};

/// 1: exchanges that cannot be MCP are skipped (the default); 0: every exchange is carried
/// (`mcpwarden run --no-exchange-skip`). Set at load.
#[unsafe(no_mangle)]
static MCPW_SKIP_EXCHANGES: u32 = 1;

#[inline(always)]
fn request_bits(dir: u8) -> u8 {
    if dir == DIR_EGRESS {
        EXCH_REQ_EGRESS
    } else {
        EXCH_REQ_INGRESS
    }
}

#[inline(always)]
fn enabled() -> bool {
    // SAFETY: plain read of a 'static global; volatile so the loader's value is used.
    let on = unsafe { core::ptr::read_volatile(&MCPW_SKIP_EXCHANGES) };
    on != 0
}

/// The judgement of one call of a connection in `state` (the socket's or the TLS
/// connection's, with its kept sniff bytes `head_len` and its `exchange` byte `x`), made once
/// per call before its position is reserved: on a streamed connection, and on a fresh one's
/// first call (no bytes kept), which opens it quietly when skipped. True: the call's bytes
/// are skipped (counted) and must be neither carried nor given a position.
#[inline(always)]
pub fn skips_call(state: &mut u8, head_len: u8, x: &mut u8, dir: u8, p: &Payload) -> bool {
    let fresh = *state == CONN_SNIFFING && head_len == 0;
    if !(fresh || *state == CONN_HTTP || *state == CONN_HTTP_QUIET) || !skips(x, dir, p) {
        return false;
    }
    if fresh {
        *state = CONN_HTTP_QUIET;
    }
    true
}

/// For a call of direction `dir` on a connection streamed as HTTP, or a fresh connection's
/// first call (`x`: its `exchange` byte), before its position is reserved: true when the
/// call belongs to an exchange that cannot be MCP. Its bytes are then counted as skipped
/// and must not be carried, nor their position reserved; a fresh connection stays quiet
/// (`CONN_HTTP_QUIET`). A fresh connection's first call that is carried has set `x` when it
/// begins a request or an answer.
#[inline(always)]
fn skips(x: &mut u8, dir: u8, p: &Payload) -> bool {
    if !enabled() {
        return false;
    }
    let req = *x & EXCH_REQ_MASK;
    if req != 0 && req != request_bits(dir) {
        // The answer direction follows its request.
        return skipping(*x, p.len);
    }
    let b = first_bytes(p);
    let start = request_start(&b);
    if req == 0 {
        if start == RequestStart::NotAStart {
            if is_status_line(&b) {
                // An answer: the requests go the other way.
                *x |= request_bits(dir ^ 1);
            }
            return false;
        }
        *x |= request_bits(dir);
    }
    match start {
        RequestStart::NotAStart => skipping(*x, p.len),
        RequestStart::MayBeMcp => {
            *x &= !EXCH_SKIPPING;
            false
        }
        RequestStart::Judge => {
            if head_cannot_be_mcp(p) {
                *x |= EXCH_SKIPPING;
                count(Counter::ExchangesSkipped, 1);
                count(Counter::BytesSkipped, p.len);
                true
            } else {
                *x &= !EXCH_SKIPPING;
                false
            }
        }
    }
}

/// A write the hold path carries at entry (a request with `tools/call` in it): it begins an
/// exchange that is carried, answer included.
#[inline(always)]
pub fn carried_request(x: &mut u8) {
    *x = (*x & !(EXCH_SKIPPING | EXCH_REQ_MASK)) | EXCH_REQ_EGRESS;
}

#[inline(always)]
fn skipping(x: u8, len: u64) -> bool {
    if x & EXCH_SKIPPING == 0 {
        return false;
    }
    count(Counter::BytesSkipped, len);
    true
}

/// Does the call's first segment hold a whole HTTP head with no `event-stream` in it? (See
/// `mcpwarden_common::sniff::head_cannot_be_mcp`, the same tests over a slice.) Not inlined:
/// inlined, the read and the scan were verified once per path into the judgement, and the
/// programs that judge took 2.5× as long to load (sock_send_capture 0.2 → 0.7 s here); as a
/// subprogram they take about 1.5× (the agent's 22 programs: 0.9–1.2 s → 1.4–1.8 s).
#[inline(never)]
fn head_cannot_be_mcp(p: &Payload) -> bool {
    let (base, len) = if p.vectored {
        // SAFETY: fault-tolerant user reads of iov[0] = { void *base; size_t len; }.
        let base = unsafe { bpf_probe_read_user(p.buf as *const u64) };
        let len = unsafe { bpf_probe_read_user((p.buf + 8) as *const u64) };
        match (base, len) {
            (Ok(b), Ok(l)) => (b, if l < p.len { l } else { p.len }),
            _ => return false,
        }
    } else {
        (p.buf, p.len)
    };
    let Some(scratch) = PREFILTER.get_ptr_mut(0) else {
        return false;
    };
    let n = read_into(scratch.cast::<u8>(), 0, base, len);
    n > 0 && scan_head(n)
}

/// The scan of `head_cannot_be_mcp` over `p[..n]` (`n <= PREFILTER_SCAN_BYTES`): one turn of
/// `head_turn` per offset under `bpf_loop`, its state in `HEAD_SCAN` (as the chunk walk in
/// `emit.rs`), so the verifier checks one turn, not a thousand unrolled ones.
#[inline(always)]
fn scan_head(n: usize) -> bool {
    if n < 4 || n > PREFILTER_SCAN_BYTES {
        return false;
    }
    let Some(st) = HEAD_SCAN.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot owned by this program run; volatile: the callback reads it.
    unsafe {
        core::ptr::write_volatile(&mut (*st)[0], n as u64);
        core::ptr::write_volatile(&mut (*st)[1], SCAN_OPEN);
    }
    // SAFETY: `head_turn` is a static callback with the `bpf_loop` signature; no context.
    unsafe {
        bpf_loop(
            (n - 3) as u32,
            head_turn as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&(*st)[1]) == SCAN_SKIP }
}

/// `HEAD_SCAN[1]`: no verdict yet (the head does not end in the bytes read: carried).
const SCAN_OPEN: u64 = 0;
/// The head ends, with no `event-stream` before its end: the exchange is skipped.
const SCAN_SKIP: u64 = 1;
/// `event-stream` comes first: carried.
const SCAN_MCP: u64 = 2;

/// One offset of the head scan (`bpf_loop` callback): 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn head_turn(index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(st), Some(buf)) = (HEAD_SCAN.get_ptr_mut(0), PREFILTER.get_ptr(0)) else {
        return 1;
    };
    // SAFETY: per-CPU slot owned by this program run.
    let n = unsafe { core::ptr::read_volatile(&(*st)[0]) } as usize;
    // A bound the verifier sees: the 12-byte window stays inside the 2 KiB buffer.
    let i = (index as usize) & (PREFILTER_SCAN_BYTES - 1);
    if i + 4 > n {
        return 1;
    }
    let p = buf.cast::<u8>();
    // SAFETY: i + 12 <= PREFILTER_SCAN_BYTES + 12 <= the buffer's size.
    let w = unsafe { core::ptr::read_unaligned(p.add(i).cast::<u32>()) };
    let verdict = if w == HEAD_END {
        SCAN_SKIP
    } else if i + 12 <= n && {
        // SAFETY: as above.
        let (a, b) = unsafe {
            (
                core::ptr::read_unaligned(p.add(i).cast::<u64>()),
                core::ptr::read_unaligned(p.add(i + 8).cast::<u32>()),
            )
        };
        is_event_stream(a, b)
    } {
        SCAN_MCP
    } else {
        return 0;
    };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(&mut (*st)[1], verdict) };
    1
}
