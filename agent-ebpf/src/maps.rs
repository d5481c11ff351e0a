//! Every map of the kernel side, with its bound and why.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use mcpwarden_common::{
    conn::{
        BodySkipKey, BodySkipRange, ConnKey, ConnState, SockTuple, TlsConnState, TlsKey,
        BODY_SKIP_SLOTS,
    },
    counters::{Counter, HookCounter, COUNTER_SLOTS, HOOK_COUNTERS_PER_SOURCE, HOOK_COUNTER_SLOTS},
    enforce::{BlockKey, HoldEntry, HoldKey, CFG_SLOTS, PREFILTER_SCAN_BYTES},
    event::DataEvent,
};

/// Payload chunks and connection events to userspace. The agent always sizes it at load
/// (`--ring-bytes`, default 8 MiB: `DEFAULT_RING_BYTES` in `agent/src/capture/attach.rs`);
/// the size here holds only for a loader that keeps the object's own.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Arguments of an in-flight syscall, keyed by pid_tgid (thread), saved at sys_enter and
/// consumed at sys_exit. Bounded by the number of threads inside a traced syscall at once.
#[map]
pub static ARGS: HashMap<u64, SyscallArgs> = HashMap::with_max_entries(16384, 0);

/// Socket fds seen carrying data. LRU: processes that exit without close(2) leave entries
/// behind; the LRU evicts those first.
#[map]
pub static CONNS: LruHashMap<ConnKey, ConnState> = LruHashMap::with_max_entries(65536, 0);

/// `struct sock *` → 4-tuple, from `sock:inet_sock_set_state`.
#[map]
pub static SOCKS: LruHashMap<u64, SockTuple> = LruHashMap::with_max_entries(65536, 0);

/// Arguments of an in-flight `SSL_read`/`SSL_write` (and `_ex`), keyed by pid_tgid. An entry
/// means "this thread is inside an SSL call": a thread that dies inside a blocking call never
/// runs the uretprobe, so `sched_process_exit` removes its entry (a later thread with the same
/// id must not look in-call); LRU so that, should anything still leak, the map cannot fill.
#[map]
pub static TLS_ARGS: LruHashMap<u64, TlsArgs> = LruHashMap::with_max_entries(16384, 0);

/// TLS connections by (tgid, `SSL *`). LRU for the same reason as `CONNS`.
#[map]
pub static TLS_CONNS: LruHashMap<TlsKey, TlsConnState> = LruHashMap::with_max_entries(65536, 0);

/// Processes that called into a TLS library (their sockets get the tie heuristics).
#[map]
pub static TLS_PIDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Memory-BIO TLS (asyncio, node): the socket fd a thread read last, for its next
/// `SSL_read` whose `SSL *` is not tied yet.
#[map]
pub static LAST_READ_FD: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// Memory-BIO TLS: an `SSL *` whose `SSL_write` made no syscall; the thread's next socket
/// write carries its ciphertext and names the socket.
#[map]
pub static PENDING_WRITE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsArgs {
    pub ssl: u64,
    pub buf: u64,
    /// `size_t *` out-parameter of the `_ex` variants (0 for the plain ones).
    pub out_len: u64,
    /// Socket fd of a syscall made inside the call (`NO_FD` if none).
    pub fd: u32,
    /// `DataSource::SslWrite` or `SslRead`.
    pub source: u8,
    /// 1 when the entry probe held this write and already emitted its bytes.
    pub held: u8,
    pub _pad: [u8; 2],
    /// Held writes: stream position and length of the bytes emitted at entry.
    pub held_pos: u64,
    pub held_len: u64,
}

/// Most fds (of any processes) remembered per socket: a socket shared across `fork` or
/// `SCM_RIGHTS` is streamed by each process that does I/O on it.
pub const SK_OWNERS: usize = 4;

/// The (tgid, fd)s using one socket (`tgid == 0`: a free slot).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SkOwners {
    pub keys: [ConnKey; SK_OWNERS],
}

/// `struct sock *` → the (tgid, fd)s using it, so a TCP state change (which may run in
/// softirq context) can find every connection to close.
#[map]
pub static SK_OWNER: LruHashMap<u64, SkOwners> = LruHashMap::with_max_entries(65536, 0);

/// Remembers that `key` uses socket `sk`. With every slot taken the first is replaced
/// (counted): that fd's connection then ends only when its fd is reused or its process exits.
#[inline(always)]
pub fn add_owner(sk: u64, key: &ConnKey) {
    if sk == 0 {
        return;
    }
    let Some(o) = SK_OWNER.get_ptr_mut(&sk) else {
        let mut o = SkOwners {
            keys: [ConnKey { tgid: 0, fd: 0 }; SK_OWNERS],
        };
        o.keys[0] = *key;
        let _ = SK_OWNER.insert(&sk, &o, 0);
        return;
    };
    // SAFETY: map value valid for this run.
    let o = unsafe { &mut *o };
    let mut free = SK_OWNERS;
    for i in 0..SK_OWNERS {
        let k = o.keys[i];
        if k.tgid == key.tgid && k.fd == key.fd {
            return;
        }
        if k.tgid == 0 && free == SK_OWNERS {
            free = i;
        }
    }
    if free == SK_OWNERS {
        count(Counter::SkOwnersFull, 1);
        free = 0;
    }
    o.keys[free] = *key;
}

/// Forgets that `key` uses socket `sk` (its connection ended).
#[inline(always)]
pub fn remove_owner(sk: u64, key: &ConnKey) {
    let Some(o) = SK_OWNER.get_ptr_mut(&sk) else {
        return;
    };
    // SAFETY: map value valid for this run.
    let o = unsafe { &mut *o };
    let mut left = 0;
    for i in 0..SK_OWNERS {
        let k = o.keys[i];
        if k.tgid == key.tgid && k.fd == key.fd {
            o.keys[i].tgid = 0;
        } else if k.tgid != 0 {
            left += 1;
        }
    }
    if left == 0 {
        let _ = SK_OWNER.remove(&sk);
    }
}

/// Per-CPU scratch record a chunk is assembled in (too large for the 512-byte stack).
#[map]
pub static SCRATCH: PerCpuArray<DataEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU state of the chunk walk in `emit_payload` (see there why it lives in a map).
#[map]
pub static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkState {
    pub done: u64,
    pub chunks: u64,
    pub seg_base: u64,
    pub seg_left: u64,
    pub iov_idx: u64,
    /// The payload being walked (set once before the loop).
    pub buf: u64,
    pub total: u64,
    pub iov_count: u64,
    pub pos: u64,
    pub vectored: u64,
    pub source: u64,
}

/// Loss/error counters (`Counter` slots).
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Per-hook counters (`HookCounter` slots per `DataSource`).
#[map]
pub static HOOK_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HOOK_COUNTER_SLOTS, 0);

#[inline(always)]
pub fn count_hook(source: u8, c: HookCounter, n: u64) {
    let slot = (source as u32 & 15) * HOOK_COUNTERS_PER_SOURCE + c as u32;
    if let Some(p) = HOOK_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *p += n };
    }
}

#[inline(always)]
pub fn count(c: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *p += n };
    }
}

/// What sys_enter saw, for sys_exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallArgs {
    /// User buffer, or the `struct iovec *` array when `vectored` is 1.
    pub buf: u64,
    /// Buffer size, or the iovec count.
    pub count: u64,
    /// `struct sock *` reported by sock:sock_{send,recv}_length inside this syscall.
    pub sk: u64,
    pub fd: u32,
    /// `DataSource` value (or `SOURCE_CONNECT`).
    pub source: u8,
    pub vectored: u8,
    /// From sock_{send,recv}_length: `AF_*` and `IPPROTO_*`.
    pub sk_family: u16,
    pub sk_protocol: u16,
    pub _pad: [u8; 6],
}

/// `source` tag of a pending connect(2).
pub const SOURCE_CONNECT: u8 = 100;

/// Runtime switches (`CFG_*` slots), written by userspace.
#[map]
pub static ENFORCE_CONFIG: Array<u32> = Array::with_max_entries(CFG_SLOTS, 0);

/// Processes seen taking part in MCP as clients (filled by userspace): only their writes are
/// scanned by the hold prefilter.
#[map]
pub static MCP_PIDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Processes seen taking part in MCP, client or server (filled by userspace from the
/// first JSON-RPC bytes it reads of them): their chunks are never shed when the ring runs
/// more than half full (see `mcpwarden_common::conn::SHED_GRACE_BYTES`).
#[map]
pub static MCP_PROCS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Body skipping (`mcpwarden_common::conn::BodySkipKey`): stream ranges userspace does not
/// need carried. Written and removed by userspace only; bounded by `BODY_SKIP_SLOTS`.
#[map]
pub static BODY_SKIPS: HashMap<BodySkipKey, BodySkipRange> =
    HashMap::with_max_entries(BODY_SKIP_SLOTS, 0);

/// Slot 0: how many `BODY_SKIPS` entries userspace keeps (0: no call looks the map up).
#[map]
pub static BODY_SKIPS_LIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Outstanding holds. Inserted by the probe that stops the process; removed by userspace
/// when it releases the hold (the process resumes when none of its holds is left).
#[map]
pub static HELD: HashMap<HoldKey, HoldEntry> = HashMap::with_max_entries(4096, 0);

/// Per-CPU buffer the prefilter scans (twice the scan size, so the verifier can see that a
/// bounded read at a bounded offset stays inside).
#[map]
pub static PREFILTER: PerCpuArray<[u8; 2 * PREFILTER_SCAN_BYTES]> =
    PerCpuArray::with_max_entries(1, 0);

/// Per-CPU state of the head scan of exchange skipping (`exchange.rs`): the bytes read into
/// `PREFILTER`, and the verdict.
#[map]
pub static HEAD_SCAN: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU fill level of `PREFILTER` while a vectored write's segments are copied in.
#[map]
pub static PREFILTER_FILL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Connect-time block list: (tgid, destination) pairs refused by the connect programs.
#[map]
pub static BLOCKED: HashMap<BlockKey, u8> = HashMap::with_max_entries(4096, 0);

/// Reads a runtime switch.
#[inline(always)]
pub fn config(slot: u32) -> u32 {
    ENFORCE_CONFIG.get(slot).copied().unwrap_or(0)
}

/// Plaintext hold: the bytes a thread's held libc write was emitted with at entry, so the
/// socket path skips exactly them. Keyed by pid_tgid (thread).
#[map]
pub static PLAIN_HELD: LruHashMap<u64, PlainHeld> = LruHashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PlainHeld {
    pub pos: u64,
    pub len: u64,
    pub fd: u32,
    pub _pad: u32,
}

/// Hold mode: a denied TLS write was held before its socket was known (a fresh memory-BIO
/// `SSL *`). Userspace puts the thread here with `NO_FD` and resumes it; the thread's next
/// libc send names the socket (the fd is stored) and is stopped before the syscall, so
/// userspace can destroy that socket before the ciphertext leaves. Keyed by pid_tgid.
#[map]
pub static SEND_TIE: LruHashMap<u64, u32> = LruHashMap::with_max_entries(1024, 0);
