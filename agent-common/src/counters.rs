//! Loss and error counters, one slot each in a per-CPU array; userspace sums the CPUs and
//! exports them. A slot index is never reused for another meaning.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `bpf_ringbuf_output` failed (ring full): the chunk's bytes are lost.
    RingFull = 0,
    /// Bytes of a syscall not carried because of the per-syscall chunk cap.
    BytesTruncated = 1,
    /// Syscall argument map full: a syscall could not be followed.
    ArgsMapFull = 2,
    /// Connection map insert failed.
    ConnMapFull = 3,
    /// `bpf_probe_read_user` of a payload or iovec failed.
    ReadUserFailed = 4,
    /// Chunks emitted.
    ChunksEmitted = 5,
    /// Bytes emitted.
    BytesEmitted = 6,
    /// Connections recognised as HTTP.
    ConnsHttp = 7,
    /// Connections given up on (not HTTP, or not TCP).
    ConnsIgnored = 8,
    /// Bytes lost on a ring-buffer failure.
    BytesRingFull = 9,
    /// TLS reads/writes whose socket fd was not known yet (plaintext not carried).
    TlsNoFd = 10,
    /// TLS argument map full: an SSL call could not be followed.
    TlsArgsMapFull = 11,
    /// TLS plaintext chunks emitted.
    TlsChunksEmitted = 12,
    /// TLS connections tied to their socket by the syscall inside the SSL call.
    TlsTieInCall = 13,
    /// ... by the thread's last socket read before `SSL_read` (memory BIO, e.g. asyncio).
    TlsTieLastRead = 14,
    /// ... by the thread's next socket write after `SSL_write` (memory BIO).
    TlsTieNextWrite = 15,
    /// Socket I/O by a syscall the sock capture mode does not follow (sendmmsg, sendfile,
    /// io_uring, kernel sockets).
    UnsupportedSyscall = 16,
    /// Hold mode: writes of MCP processes the prefilter scanned.
    HoldScans = 17,
    /// ... that contained `tools/call`.
    HoldPrefilterHits = 18,
    /// Holds begun (the process was sent SIGSTOP).
    Holds = 19,
    /// Prefilter hits not held: the TLS connection was not streamed as HTTP yet.
    HoldSkipNotHttp = 20,
    /// Prefilter hits not held: the hold map was full.
    HoldMapFull = 21,
    /// `bpf_send_signal` failed: the write went on unheld.
    HoldSignalFailed = 22,
    /// A held write moved fewer bytes than it offered (its stream position was corrected).
    HoldShortWrite = 23,
    /// New connections refused by the connect-time block list.
    ConnectBlocked = 24,
    /// Hold mode: a held write opened its connection's stream (the first HTTP write of a
    /// fresh connection or `SSL *`, promoted at the write's entry).
    HoldFreshConn = 25,
    /// Hold mode: a denied TLS write whose socket was unknown named it at the thread's next
    /// libc send, which was stopped before the ciphertext left.
    HoldSendTie = 26,
    /// `SSL *` states dropped at `SSL_free` (the address may be reused by a new connection).
    TlsFreed = 27,
    /// Payload bytes `bpf_probe_read_user` could not read (the stream position moved past
    /// them: userspace sees them as a gap).
    BytesUnreadable = 28,
    /// Bytes of first writes shorter than the 8-byte sniff window that could begin an HTTP
    /// message (a method or `HTTP/1.` prefix), kept for the sniff and then dropped: the next
    /// piece came the other way, or with it they were not HTTP (kept pieces that turn out to
    /// be HTTP are carried, and not counted).
    SniffShortBytes = 29,
    /// In-SSL-call entries of threads that exited inside the call (uretprobe never ran),
    /// removed at thread exit.
    TlsArgsExited = 30,
    /// A pending memory-BIO `SSL_write` tie skipped a socket write that did not begin a TLS
    /// record (plaintext in a process that also uses TLS): the write took the plaintext path.
    TlsTieNotRecord = 31,
    /// A socket used by more fds than remembered (shared across fork or `SCM_RIGHTS`): the
    /// oldest one's connection no longer ends with the socket's TCP_CLOSE.
    SkOwnersFull = 32,
    /// Chunks not carried because the ring was more than half full and their process has
    /// not been seen taking part in MCP (load shedding; see `shed`): their bytes are lost.
    ShedChunks = 33,
    /// Bytes of those chunks.
    BytesShed = 34,
    /// HTTP exchanges not carried because their request cannot be MCP (see
    /// `conn::EXCH_SKIPPING`): not lost, left out on purpose.
    ExchangesSkipped = 35,
    /// Bytes of those exchanges (request and answer).
    BytesSkipped = 36,
    /// Calls whose bytes lay inside a body userspace asked not to carry (see
    /// `conn::BodySkipKey`): not lost, left out on purpose.
    BodySkippedCalls = 37,
    /// Bytes of those calls.
    BodySkippedBytes = 38,
}

pub const COUNTER_SLOTS: u32 = 48;

impl Counter {
    pub const ALL: [Counter; 39] = [
        Counter::RingFull,
        Counter::BytesTruncated,
        Counter::ArgsMapFull,
        Counter::ConnMapFull,
        Counter::ReadUserFailed,
        Counter::ChunksEmitted,
        Counter::BytesEmitted,
        Counter::ConnsHttp,
        Counter::ConnsIgnored,
        Counter::BytesRingFull,
        Counter::TlsNoFd,
        Counter::TlsArgsMapFull,
        Counter::TlsChunksEmitted,
        Counter::TlsTieInCall,
        Counter::TlsTieLastRead,
        Counter::TlsTieNextWrite,
        Counter::UnsupportedSyscall,
        Counter::HoldScans,
        Counter::HoldPrefilterHits,
        Counter::Holds,
        Counter::HoldSkipNotHttp,
        Counter::HoldMapFull,
        Counter::HoldSignalFailed,
        Counter::HoldShortWrite,
        Counter::ConnectBlocked,
        Counter::HoldFreshConn,
        Counter::HoldSendTie,
        Counter::TlsFreed,
        Counter::BytesUnreadable,
        Counter::SniffShortBytes,
        Counter::TlsArgsExited,
        Counter::TlsTieNotRecord,
        Counter::SkOwnersFull,
        Counter::ShedChunks,
        Counter::BytesShed,
        Counter::ExchangesSkipped,
        Counter::BytesSkipped,
        Counter::BodySkippedCalls,
        Counter::BodySkippedBytes,
    ];
    /// Metric-style name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::RingFull => "ring_full_chunks",
            Counter::BytesTruncated => "truncated_bytes",
            Counter::ArgsMapFull => "args_map_full",
            Counter::ConnMapFull => "conn_map_full",
            Counter::ReadUserFailed => "read_user_failed",
            Counter::ChunksEmitted => "chunks_emitted",
            Counter::BytesEmitted => "bytes_emitted",
            Counter::ConnsHttp => "conns_http",
            Counter::ConnsIgnored => "conns_ignored",
            Counter::BytesRingFull => "ring_full_bytes",
            Counter::TlsNoFd => "tls_no_fd",
            Counter::TlsArgsMapFull => "tls_args_map_full",
            Counter::TlsChunksEmitted => "tls_chunks_emitted",
            Counter::TlsTieInCall => "tls_tie_in_call",
            Counter::TlsTieLastRead => "tls_tie_last_read",
            Counter::TlsTieNextWrite => "tls_tie_next_write",
            Counter::UnsupportedSyscall => "unsupported_syscall",
            Counter::HoldScans => "hold_scans",
            Counter::HoldPrefilterHits => "hold_prefilter_hits",
            Counter::Holds => "holds",
            Counter::HoldSkipNotHttp => "hold_skip_not_http",
            Counter::HoldMapFull => "hold_map_full",
            Counter::HoldSignalFailed => "hold_signal_failed",
            Counter::HoldShortWrite => "hold_short_write",
            Counter::ConnectBlocked => "connect_blocked",
            Counter::HoldFreshConn => "hold_fresh_conn",
            Counter::HoldSendTie => "hold_send_tie",
            Counter::TlsFreed => "tls_freed",
            Counter::BytesUnreadable => "unreadable_bytes",
            Counter::SniffShortBytes => "sniff_short_bytes",
            Counter::TlsArgsExited => "tls_args_exited",
            Counter::TlsTieNotRecord => "tls_tie_not_record",
            Counter::SkOwnersFull => "sk_owners_full",
            Counter::ShedChunks => "shed_chunks",
            Counter::BytesShed => "shed_bytes",
            Counter::ExchangesSkipped => "exchanges_skipped",
            Counter::BytesSkipped => "skipped_bytes",
            Counter::BodySkippedCalls => "body_skipped_calls",
            Counter::BodySkippedBytes => "body_skipped_bytes",
        }
    }
}

/// Per-hook counters: slot `source * HOOK_COUNTERS_PER_SOURCE + HookCounter`, where `source`
/// is a `DataSource` value (1..=10).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookCounter {
    /// Chunks emitted by this hook.
    Chunks = 0,
    /// Payload bytes emitted.
    Bytes = 1,
    /// Bytes lost because the ring buffer was full.
    RingFullBytes = 2,
    /// Bytes not carried (per-syscall chunk cap, unreadable user memory).
    TruncatedBytes = 3,
}

pub const HOOK_COUNTERS_PER_SOURCE: u32 = 4;
/// Slots of the per-hook counter array (sources 0..=15).
pub const HOOK_COUNTER_SLOTS: u32 = 16 * HOOK_COUNTERS_PER_SOURCE;

impl HookCounter {
    pub const ALL: [HookCounter; 4] = [
        HookCounter::Chunks,
        HookCounter::Bytes,
        HookCounter::RingFullBytes,
        HookCounter::TruncatedBytes,
    ];
    pub fn name(self) -> &'static str {
        match self {
            HookCounter::Chunks => "chunks",
            HookCounter::Bytes => "bytes",
            HookCounter::RingFullBytes => "ring_full_bytes",
            HookCounter::TruncatedBytes => "truncated_bytes",
        }
    }
}
