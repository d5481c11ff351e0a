//! Turning a syscall's bytes into ring-buffer records: the HTTP sniff, the connection-open
//! record, and payload chunks (one syscall → up to `MAX_CHUNKS_PER_SYSCALL` chunks, each
//! sized to what it carries, never to a worst case).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{
        bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::{bpf_loop, bpf_probe_read_user as raw_probe_read_user},
    },
};
use mcpwarden_common::{
    conn::{BodySkipKey, ConnState, SHED_GRACE_BYTES},
    counters::{Counter, HookCounter},
    event::{
        ConnOpenEvent, DataEventHeader, DataSource, EventHeader, EventKind, CHUNK_DATA_MAX,
        DATA_EVENT_HEADER_LEN, DIR_EGRESS, FLAG_TRUNCATED, MAX_CHUNKS_PER_SYSCALL, MAX_IOVECS,
    },
    sniff::is_http_prefix,
};

use crate::maps::{
    count, count_hook, WalkState, BODY_SKIPS, BODY_SKIPS_LIVE, EVENTS, MCP_PROCS, SCRATCH, SOCKS,
    WALK,
};

/// Load shedding: a stream that begins with a `POST` (the first request of every MCP
/// conversation, in both protocol eras) gives its process priority at once, from the
/// kernel, before userspace has read a byte of it (`MCP_PROCS`; userspace adds the
/// processes it sees JSON-RPC from). Called once per stream, when the sniff says HTTP.
#[inline(always)]
pub fn prioritise_if_post(tgid: u32, p: &Payload) {
    if p.len >= 8 && first_bytes(p).starts_with(b"POST ") {
        let _ = MCP_PROCS.insert(&tgid, &1, 0);
    }
}

/// Load shedding (see `SHED_GRACE_BYTES`): true when this call's bytes must be dropped (counted)
/// to keep the ring's room for MCP traffic. Two ring queries and, only under pressure, one
/// map lookup.
#[inline(always)]
fn shed(tgid: u32, pos: u64, len: u64) -> bool {
    if pos.saturating_add(len) <= SHED_GRACE_BYTES {
        return false;
    }
    // With this call's bytes the ring would be more than half full (a call can carry many
    // chunks: judged whole, so one large write cannot take the half kept for MCP).
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if unread.saturating_add(len) <= EVENTS.query(BPF_RB_RING_SIZE as u64) / 2 {
        return false;
    }
    // SAFETY: read-only peek.
    if unsafe { MCP_PROCS.get(&tgid) }.is_some() {
        return false;
    }
    count(Counter::ShedChunks, 1);
    count(Counter::BytesShed, len);
    true
}

/// Commit flags of a payload chunk: wake the agent at once when the ring is more than a
/// quarter full. The ring wakes its reader only for a record written into an empty ring, and
/// in monitor mode the agent lets records gather for a while after a busy turn (one turn
/// per window, not one per request); a burst (a large body) must not wait for the end of
/// that window, or the ring fills before the agent has read the body's head and asked for
/// the rest to be skipped. Two ring queries per chunk.
#[inline(always)]
fn wake_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > EVENTS.query(BPF_RB_RING_SIZE as u64) / 4 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        0
    }
}

/// Body skipping (see `BodySkipKey`): true when this call's bytes lie wholly inside a range
/// userspace asked not to carry (counted). One array read while no body is skipped.
#[inline(always)]
fn body_skipped(tgid: u32, fd: u32, start_ns: u64, dir: u8, pos: u64, len: u64) -> bool {
    match BODY_SKIPS_LIVE.get(0) {
        Some(n) if *n != 0 => {}
        _ => return false,
    }
    let key = BodySkipKey {
        tgid,
        fd,
        start_ns,
        dir,
        _pad: [0; 7],
    };
    // SAFETY: read-only peek at the map value.
    let Some(r) = (unsafe { BODY_SKIPS.get(&key) }) else {
        return false;
    };
    if pos < r.from || pos.saturating_add(len) > r.until {
        return false;
    }
    count(Counter::BodySkippedCalls, 1);
    count(Counter::BodySkippedBytes, len);
    true
}

/// Where a syscall's bytes are in user memory.
pub struct Payload {
    /// Buffer, or `struct iovec *` when `vectored`.
    pub buf: u64,
    /// Buffer size, or iovec count.
    pub count: u64,
    pub vectored: bool,
    /// Bytes the syscall moved (its return value).
    pub len: u64,
}

/// The first 8 bytes of the payload (zeros where unreadable).
#[inline(always)]
pub fn first_bytes(p: &Payload) -> [u8; 8] {
    if p.len < 8 {
        return [0; 8];
    }
    let base = if p.vectored {
        // struct iovec { void *iov_base; size_t iov_len; }
        // SAFETY: fault-tolerant user read.
        match unsafe { bpf_probe_read_user(p.buf as *const u64) } {
            Ok(b) => b,
            Err(_) => return [0; 8],
        }
    } else {
        p.buf
    };
    // SAFETY: fault-tolerant user read.
    unsafe { bpf_probe_read_user(base as *const [u8; 8]) }.unwrap_or([0; 8])
}

/// HTTP/1.x request line or status line at the start of a payload.
#[inline(always)]
pub fn looks_like_http(b: &[u8; 8]) -> bool {
    let w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    const fn tag(s: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*s)
    }
    if w == tag(b"HTTP") {
        return b[4] == b'/' && b[5] == b'1' && b[6] == b'.';
    }
    w == tag(b"GET ")
        || w == tag(b"POST")
        || w == tag(b"PUT ")
        || w == tag(b"DELE")
        || w == tag(b"HEAD")
        || w == tag(b"OPTI")
        || w == tag(b"PATC")
}

/// What a sniffed connection's bytes say about it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// An HTTP/1.x request or status line begins here.
    Http,
    /// Fewer than 8 bytes so far that could begin one (`PO`, `GET /`, `HTTP/`): no verdict,
    /// no miss; the bytes are kept (see [`SniffHead`]) for the next piece to complete.
    Undecided,
    NotHttp,
}

/// The bytes of a sniffing connection's short first pieces (one direction), kept until the
/// next piece of that direction decides: up to 7 bytes, little-endian in `word`.
#[derive(Clone, Copy)]
pub struct SniffHead {
    pub word: u64,
    pub len: u8,
}

/// The kept head if it is of direction `dir`; a head of the other direction is dropped
/// (counted in `SniffShortBytes`). Clears the connection's head length either way: the
/// caller stores a new head if the verdict is still undecided.
#[inline(always)]
pub fn take_head(head_len: &mut u8, head_dir: u8, word: u64, dir: u8) -> SniffHead {
    let len = *head_len & 7;
    *head_len = 0;
    if len == 0 {
        return SniffHead { word: 0, len: 0 };
    }
    if head_dir != dir {
        count(Counter::SniffShortBytes, u64::from(len));
        return SniffHead { word: 0, len: 0 };
    }
    SniffHead { word, len }
}

/// Sniffs `head` followed by the payload: the verdict on their first 8 bytes, and (when
/// still undecided) the head to keep, the payload's bytes appended.
#[inline(always)]
pub fn sniff_after(p: &Payload, head: SniffHead) -> (Sniff, SniffHead) {
    let none = SniffHead { word: 0, len: 0 };
    if head.len == 0 && p.len >= 8 {
        let verdict = if looks_like_http(&first_bytes(p)) {
            Sniff::Http
        } else {
            Sniff::NotHttp
        };
        return (verdict, none);
    }
    let have = u64::from(head.len & 7);
    let want = 8 - have;
    let take = if p.len < want { p.len } else { want };
    let base = if p.vectored {
        // SAFETY: fault-tolerant user read of iov[0].iov_base.
        match unsafe { bpf_probe_read_user(p.buf as *const u64) } {
            Ok(b) => b,
            Err(_) => return (Sniff::NotHttp, none),
        }
    } else {
        p.buf
    };
    // Give the verifier a bound it can see on the helper's size argument (the compiler
    // would otherwise drop the mask, knowing `take <= 8`, and pass an unbounded copy).
    let n = unsafe { core::ptr::read_volatile(&(take as u32)) } & 15;
    if n == 0 || n > 8 {
        return (Sniff::NotHttp, none);
    }
    let mut b = [0u8; 8];
    // SAFETY: `n <= 8 == b.len()`; fault-tolerant user read.
    let rc = unsafe { raw_probe_read_user(b.as_mut_ptr().cast(), n, base as *const c_void) };
    if rc != 0 {
        return (Sniff::NotHttp, none);
    }
    let word = head.word | (u64::from_le_bytes(b) << (8 * have));
    let total = have + u64::from(n);
    if total >= 8 {
        let verdict = if looks_like_http(&word.to_le_bytes()) {
            Sniff::Http
        } else {
            Sniff::NotHttp
        };
        return (verdict, none);
    }
    if is_http_prefix(word, total as u32) {
        (
            Sniff::Undecided,
            SniffHead {
                word,
                len: total as u8,
            },
        )
    } else {
        (Sniff::NotHttp, none)
    }
}

/// A data record of the kept head bytes (they end where the deciding payload, at `pos`,
/// begins). Nothing when `head` is empty.
#[repr(C)]
struct HeadRecord {
    hdr: DataEventHeader,
    data: [u8; 8],
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn emit_head(
    tgid: u32,
    tid: u32,
    ident_fd: u32,
    conn_start_ns: u64,
    pos: u64,
    source: u8,
    sock_fd: u32,
    head: SniffHead,
) {
    let len = head.len & 7;
    if len == 0 {
        return;
    }
    let direction = match DataSource::from_u8(source) {
        Some(s) => s.direction(),
        None => DIR_EGRESS,
    };
    let rec = HeadRecord {
        hdr: DataEventHeader {
            header: EventHeader {
                kind: EventKind::SocketData as u32,
                tgid,
                tid,
                fd: ident_fd,
                // SAFETY: helper without preconditions.
                ts_ns: unsafe { bpf_ktime_get_ns() },
                conn_start_ns,
            },
            pos: pos.saturating_sub(u64::from(len)),
            syscall_len: u32::from(len),
            len: u32::from(len),
            direction,
            source,
            flags: 0,
            _pad: 0,
            sock_fd,
            hold_id: 0,
        },
        data: head.word.to_le_bytes(),
    };
    if EVENTS.output::<HeadRecord>(&rec, 0).is_err() {
        count(Counter::RingFull, 1);
        count(Counter::BytesRingFull, u64::from(len));
    } else {
        count(Counter::ChunksEmitted, 1);
        count(Counter::BytesEmitted, u64::from(len));
    }
}

/// Reserves `n` bytes of a connection direction's stream: returns the position they start
/// at. An atomic fetch-add on the map value, so two threads writing one fd at once get
/// disjoint ranges (a plain read-modify-write could hand both the same position, and a real
/// loss would then look like a duplicate).
#[inline(always)]
pub fn reserve(next_pos: *mut u64, n: u64) -> u64 {
    // SAFETY: `next_pos` points at an 8-aligned u64 inside a map value that stays valid for
    // this program run.
    unsafe { fetch_add(next_pos, n) }
}

/// BPF atomic add with fetch (`BPF_ATOMIC | BPF_FETCH`, CPU v3: see xtask's
/// `EBPF_RUSTFLAGS`). `AtomicU64::fetch_add` is not offered on the BPF target, whose spec has
/// no compare-and-swap, so this is the intrinsic. Sequentially consistent on purpose: LLVM 22
/// lowers a *relaxed* fetch-add to the plain `lock +=` (no fetch) and then uses the source
/// register as if it held the old value (checked with llc -mcpu=v3); BPF atomics are fully
/// ordered in the kernel anyway, so this costs nothing.
#[inline(always)]
unsafe fn fetch_add(p: *mut u64, n: u64) -> u64 {
    // SAFETY: the caller's pointer.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(
            p, n,
        )
    }
}

/// Announces a connection that will be streamed, with its 4-tuple when the kernel saw it
/// being established (`family == 0` otherwise: userspace resolves it from /proc).
#[inline(always)]
pub fn emit_conn_open(tgid: u32, tid: u32, fd: u32, c: &ConnState) {
    emit_open(
        EventKind::ConnOpen,
        tgid,
        tid,
        fd,
        c.start_ns,
        c.sk,
        c.role,
        0,
        fd,
    );
}

/// An open (or TLS tie) record: `ident_fd` + `start_ns` name the connection, `sock_fd`
/// and `sk` the socket (`tls`: 1 for TLS plaintext streams).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn emit_open(
    kind: EventKind,
    tgid: u32,
    tid: u32,
    ident_fd: u32,
    start_ns: u64,
    sk: u64,
    role: u8,
    tls: u8,
    sock_fd: u32,
) {
    let mut ev = ConnOpenEvent {
        header: EventHeader {
            kind: kind as u32,
            tgid,
            tid,
            fd: ident_fd,
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            conn_start_ns: start_ns,
        },
        sk,
        family: 0,
        lport: 0,
        rport: 0,
        role,
        tls,
        laddr: [0; 16],
        raddr: [0; 16],
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        sock_fd,
        _pad2: 0,
    };
    // SAFETY: read-only peek at the map value.
    if let Some(t) = unsafe { SOCKS.get(&sk) } {
        ev.family = t.family;
        ev.lport = t.lport;
        ev.rport = t.rport;
        ev.laddr = t.laddr;
        ev.raddr = t.raddr;
    }
    if EVENTS.output::<ConnOpenEvent>(&ev, 0).is_err() {
        count(Counter::RingFull, 1);
    }
}

/// Streams the payload as chunks. Walks iovecs for vectored syscalls. Bytes beyond the chunk
/// cap, or unreadable, are not carried: they are counted and show as a gap in `pos`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn emit_payload(
    tgid: u32,
    tid: u32,
    ident_fd: u32,
    conn_start_ns: u64,
    pos: u64,
    source: u8,
    sock_fd: u32,
    hold_id: u64,
    p: &Payload,
) {
    let direction = match DataSource::from_u8(source) {
        Some(s) => s.direction(),
        None => DIR_EGRESS,
    };
    // A held write is always carried: its verdict waits for it.
    if hold_id == 0
        && (body_skipped(tgid, ident_fd, conn_start_ns, direction, pos, p.len)
            || shed(tgid, pos, p.len))
    {
        return;
    }
    let ev = match SCRATCH.get_ptr_mut(0) {
        Some(e) => e,
        None => return,
    };
    // SAFETY: per-CPU scratch; this program owns it until it returns.
    let ev = unsafe { &mut *ev };
    ev.hdr = DataEventHeader {
        header: EventHeader {
            kind: EventKind::SocketData as u32,
            tgid,
            tid,
            fd: ident_fd,
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            conn_start_ns,
        },
        pos,
        syscall_len: p.len as u32,
        len: 0,
        direction,
        source,
        flags: 0,
        _pad: 0,
        sock_fd,
        hold_id,
    };
    // The walk's state lives in a per-CPU map, read and written through volatile accesses,
    // and each turn is one run of `walk_turn` under `bpf_loop`: the verifier checks the
    // callback until its states converge (the map memory it does not track makes that one or
    // two passes), so the cost of verifying the walk does not grow with the number of turns
    // and a call can carry `MAX_CHUNKS_PER_SYSCALL` chunks.
    let st = match WALK.get_ptr_mut(0) {
        Some(s) => s,
        None => return,
    };
    let total = p.len;
    let iov_count = if p.count < MAX_IOVECS as u64 {
        p.count
    } else {
        MAX_IOVECS as u64
    };
    // SAFETY: per-CPU scratch owned by this program run.
    unsafe {
        core::ptr::write_volatile(
            st,
            WalkState {
                done: 0,
                chunks: 0,
                seg_base: if p.vectored { 0 } else { p.buf },
                seg_left: if p.vectored { 0 } else { total },
                iov_idx: 0,
                buf: p.buf,
                total,
                iov_count,
                pos,
                vectored: p.vectored as u64,
                source: source as u64,
            },
        )
    };
    // One flat bounded loop: each turn either loads the next iovec or emits one chunk.
    // SAFETY: `walk_turn` is a static callback with the `bpf_loop` signature; no context.
    unsafe {
        bpf_loop(
            MAX_CHUNKS_PER_SYSCALL + MAX_IOVECS,
            walk_turn as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: as above.
    let done = unsafe { core::ptr::read_volatile(st) }.done;
    if done < total {
        count(Counter::BytesTruncated, total - done);
        count_hook(source, HookCounter::TruncatedBytes, total - done);
    }
}

/// One turn of the chunk walk (`bpf_loop` callback): 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn walk_turn(_index: u64, _ctx: *mut c_void) -> i64 {
    if walk_step() {
        0
    } else {
        1
    }
}

/// Reads one field of the walk's state (map memory, volatile: see `emit_payload`).
macro_rules! walk_get {
    ($st:expr, $field:ident) => {
        // SAFETY: `$st` is this run's per-CPU `WALK` slot.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$st).$field)) }
    };
}

/// Writes one field of the walk's state.
macro_rules! walk_set {
    ($st:expr, $field:ident, $value:expr) => {
        // SAFETY: `$st` is this run's per-CPU `WALK` slot.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*$st).$field), $value) }
    };
}

/// One turn of the walk. The state is read and written field by field, never copied whole:
/// a copy of `WalkState` on the callback's stack made its frame 168 bytes, and a call chain's
/// frames together must stay within the verifier's 512 bytes (the payload programs' own
/// frames are about 350).
#[inline(always)]
fn walk_step() -> bool {
    let Some(st) = WALK.get_ptr_mut(0) else {
        return false;
    };
    let Some(ev) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU scratch; this program owns it until it returns.
    let ev = unsafe { &mut *ev };
    let total = walk_get!(st, total);
    let done = walk_get!(st, done);
    let chunks = walk_get!(st, chunks);
    if done >= total || chunks >= MAX_CHUNKS_PER_SYSCALL as u64 {
        return false;
    }
    let seg_left = walk_get!(st, seg_left);
    if seg_left == 0 {
        let iov_idx = walk_get!(st, iov_idx);
        if walk_get!(st, vectored) == 0 || iov_idx >= walk_get!(st, iov_count) {
            return false;
        }
        let iov = walk_get!(st, buf) + iov_idx * 16;
        // SAFETY: fault-tolerant user reads of iovec[iov_idx].
        let base = unsafe { bpf_probe_read_user(iov as *const u64) };
        let ilen = unsafe { bpf_probe_read_user((iov + 8) as *const u64) };
        match (base, ilen) {
            (Ok(b), Ok(l)) => {
                let left = total - done;
                walk_set!(st, seg_base, b);
                walk_set!(st, seg_left, if l < left { l } else { left });
            }
            _ => {
                count(Counter::ReadUserFailed, 1);
                return false;
            }
        }
        walk_set!(st, iov_idx, iov_idx + 1);
        return true;
    }
    let source = walk_get!(st, source) as u8;
    let seg_base = walk_get!(st, seg_base);
    let mut n = seg_left;
    if n > CHUNK_DATA_MAX as u64 {
        n = CHUNK_DATA_MAX as u64;
    }
    // Give the verifier a bound it can see on the helper's size argument.
    let n = (unsafe { core::ptr::read_volatile(&n) } as usize) & (2 * CHUNK_DATA_MAX - 1);
    if n > CHUNK_DATA_MAX || n == 0 {
        return false;
    }
    // SAFETY: `n <= CHUNK_DATA_MAX == ev.data.len()`; fault-tolerant user read.
    let rc = unsafe {
        raw_probe_read_user(
            ev.data.as_mut_ptr().cast(),
            n as u32,
            seg_base as *const core::ffi::c_void,
        )
    };
    if rc == 0 {
        ev.hdr.pos = walk_get!(st, pos) + done;
        ev.hdr.len = n as u32;
        let last_turn = chunks + 1 == MAX_CHUNKS_PER_SYSCALL as u64;
        ev.hdr.flags = if last_turn && done + (n as u64) < total {
            FLAG_TRUNCATED
        } else {
            0
        };
        // SAFETY: the record is the header followed by the `n` bytes just written.
        let rec = unsafe {
            core::slice::from_raw_parts(
                (ev as *const mcpwarden_common::event::DataEvent).cast::<u8>(),
                DATA_EVENT_HEADER_LEN + n,
            )
        };
        if EVENTS.output::<[u8]>(rec, wake_flags()).is_err() {
            count(Counter::RingFull, 1);
            count(Counter::BytesRingFull, n as u64);
            count_hook(source, HookCounter::RingFullBytes, n as u64);
        } else {
            count_hook(source, HookCounter::Chunks, 1);
            count_hook(source, HookCounter::Bytes, n as u64);
            count(Counter::ChunksEmitted, 1);
            if source >= DataSource::SslWrite as u8 {
                count(Counter::TlsChunksEmitted, 1);
            }
            count(Counter::BytesEmitted, n as u64);
        }
    } else {
        // The stream position moves past these bytes (userspace sees a gap): say why.
        count(Counter::ReadUserFailed, 1);
        count(Counter::BytesUnreadable, n as u64);
        count_hook(source, HookCounter::TruncatedBytes, n as u64);
    }
    walk_set!(st, seg_base, seg_base + n as u64);
    walk_set!(st, seg_left, seg_left - n as u64);
    walk_set!(st, done, done + n as u64);
    walk_set!(st, chunks, chunks + 1);
    true
}
