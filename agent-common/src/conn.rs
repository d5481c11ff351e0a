//! Connection-tracking map types (kernel-owned state, readable by userspace).

use crate::assert_size;

/// Key of the connection map: a socket fd of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub tgid: u32,
    pub fd: u32,
}
assert_size!(ConnKey, 8);

/// Kernel-side state of one socket fd.
pub const CONN_SNIFFING: u8 = 0; // looking at first bytes for an HTTP/1.x prefix
pub const CONN_HTTP: u8 = 1; // streamed to userspace
pub const CONN_IGNORED: u8 = 2; // not HTTP (or not TCP): every later syscall returns early
/// The socket carries TLS seen in the TLS library: its syscall bytes are ciphertext and are
/// never streamed; the plaintext goes out from the uprobes under the TLS connection.
pub const CONN_TLS: u8 = 3;
/// HTTP whose every exchange so far was skipped (see `EXCH_SKIPPING`), its first included:
/// not announced to userspace yet. Its first carried call announces it (`CONN_HTTP`).
pub const CONN_HTTP_QUIET: u8 = 4;

/// Non-matching payload syscalls tolerated before a connection is ignored.
pub const SNIFF_MAX_MISSES: u8 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnState {
    /// Kernel time of creation: the connection's generation.
    pub start_ns: u64,
    /// `struct sock *` once seen (0 before).
    pub sk: u64,
    /// Next stream position per direction.
    pub egress_pos: u64,
    pub ingress_pos: u64,
    /// `CONN_*`.
    pub state: u8,
    /// `ROLE_*` from event.rs.
    pub role: u8,
    /// Sniff misses so far.
    pub misses: u8,
    /// Bytes in `head` (0..8).
    pub head_len: u8,
    /// Direction (`DIR_*`) of the bytes in `head`.
    pub head_dir: u8,
    /// Exchange skipping (`EXCH_*`): which direction carries requests, and whether the
    /// exchange in progress is skipped.
    pub exchange: u8,
    pub _pad: [u8; 2],
    /// `SSL *` last seen using this socket (`CONN_TLS`), 0 otherwise.
    pub ssl: u64,
    /// While sniffing: the first bytes of writes too short to decide on alone (fewer than the
    /// 8-byte sniff window, a possible start of HTTP), little-endian; carried once decided.
    pub head: u64,
}
assert_size!(ConnState, 56);

/// Key of the TLS connection map: an `SSL *` of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlsKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}
assert_size!(TlsKey, 16);

/// Kernel-side state of one TLS connection (plaintext streams).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsConnState {
    /// Generation of the plaintext connection (with tgid and fd it names it).
    pub start_ns: u64,
    pub egress_pos: u64,
    pub ingress_pos: u64,
    /// Socket fd the `SSL *` was last seen using (learned from the syscall it made inside
    /// `SSL_read`/`SSL_write`); `NO_FD` until then.
    pub fd: u32,
    /// `CONN_SNIFFING`, `CONN_HTTP` or `CONN_IGNORED`.
    pub state: u8,
    pub misses: u8,
    /// As [`ConnState`]'s: short first pieces kept for the sniff.
    pub head_len: u8,
    pub head_dir: u8,
    pub head: u64,
    /// As [`ConnState`]'s.
    pub exchange: u8,
    pub _pad: [u8; 7],
}
assert_size!(TlsConnState, 48);

pub const NO_FD: u32 = u32::MAX;

/// 4-tuple of a TCP socket, learned from `sock:inet_sock_set_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockTuple {
    pub family: u16,
    pub lport: u16,
    pub rport: u16,
    /// `ROLE_*` from the TCP handshake: SYN_SENT = connector, SYN_RECV = acceptor.
    pub role: u8,
    pub _pad: u8,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}
assert_size!(SockTuple, 40);

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ConnState {}
    unsafe impl aya::Pod for super::SockTuple {}
    unsafe impl aya::Pod for super::TlsKey {}
    unsafe impl aya::Pod for super::TlsConnState {}
    unsafe impl aya::Pod for super::BodySkipKey {}
    unsafe impl aya::Pod for super::BodySkipRange {}
}

/// Body skipping: the rest of a message body the agent will not look at (over its body limit,
/// with the first bytes it reports already read) is not carried. Userspace names the body's
/// stream range once it has read its head (`BODY_SKIPS`); each later call whose bytes lie
/// wholly inside the range is dropped and counted (`body_skipped_calls`,
/// `body_skipped_bytes`). Its bytes still advance the stream position: userspace sees a gap
/// inside the range it asked for, and accounts it as skipped, not lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodySkipKey {
    pub tgid: u32,
    /// The connection's fd as its records name it (`NO_FD` for TLS plaintext).
    pub fd: u32,
    /// The connection's generation (`conn_start_ns` of its records).
    pub start_ns: u64,
    /// `DIR_*` from event.rs.
    pub dir: u8,
    pub _pad: [u8; 7],
}
assert_size!(BodySkipKey, 24);

/// Stream positions `[from, until)` of one direction that need not be carried.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodySkipRange {
    pub from: u64,
    pub until: u64,
}
assert_size!(BodySkipRange, 16);

/// Bodies skipped at once (the `BODY_SKIPS` map's size): a body that finds it full is carried.
pub const BODY_SKIP_SLOTS: u32 = 1024;

/// Load shedding: when a call's bytes would leave the ring more than half full of records the
/// agent has not read yet, and its process has not been seen taking part in MCP (the
/// `MCP_PROCS` map, filled by userspace), they are dropped and counted (`shed_chunks`,
/// `shed_bytes`) instead of taking the room MCP traffic needs, unless they lie within the
/// first `SHED_GRACE_BYTES` of their stream direction: a new connection's first messages (an `initialize`, a first request of
/// a process not marked yet) are always carried while the ring has room.
pub const SHED_GRACE_BYTES: u64 = 64 * 1024;

/// Exchange skipping: an HTTP exchange whose request cannot be MCP (a `GET` without
/// `text/event-stream` in its head, a `HEAD`, `PUT`, `PATCH`, `OPTIONS`, …) is not carried
/// to userspace, request and answer alike, and its bytes do not advance the stream
/// positions: userspace sees the exchanges before and after it as one unbroken stream. The
/// `exchange` byte of a connection: its requests go out (`EXCH_REQ_EGRESS`) or come in
/// (`EXCH_REQ_INGRESS`), unknown until a call begins with a request line or a status line;
/// `EXCH_SKIPPING` while the exchange in progress is skipped.
pub const EXCH_REQ_EGRESS: u8 = 1;
pub const EXCH_REQ_INGRESS: u8 = 2;
pub const EXCH_REQ_MASK: u8 = 3;
pub const EXCH_SKIPPING: u8 = 4;
