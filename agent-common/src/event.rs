//! Ring-buffer records. Every record starts with [`EventHeader`]; `kind` says which
//! record follows. Payload bytes travel as [`DataEventHeader`] + up to [`CHUNK_DATA_MAX`] bytes.

use crate::assert_size;

/// Event kinds, numbered by family; an id is never reused.
/// 1..=99: socket (syscall tracepoints); 100..=199: TLS (uprobes); 200..=299: process.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A chunk of payload bytes on a connection ([`DataEventHeader`] + bytes).
    SocketData = 1,
    /// A connection was recognised as HTTP and is now streamed ([`ConnOpenEvent`]).
    ConnOpen = 2,
    /// A streamed connection's fd was closed ([`ConnCloseEvent`]).
    ConnClose = 3,
    /// The socket behind a TLS connection became known ([`ConnOpenEvent`] layout; the
    /// header names the TLS connection, `sock_fd` and the tuple the socket).
    TlsTie = 100,
    /// A process called exec (an [`EventHeader`] alone): look for TLS symbols in it.
    ProcessExec = 200,
    /// A process's dynamic loader changed its link map (`_dl_debug_state`, called by glibc
    /// on every `dlopen`/`dlclose`; an [`EventHeader`] alone): look at its mappings again.
    LinkMapChange = 201,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::SocketData),
            2 => Some(Self::ConnOpen),
            3 => Some(Self::ConnClose),
            100 => Some(Self::TlsTie),
            200 => Some(Self::ProcessExec),
            201 => Some(Self::LinkMapChange),
            _ => None,
        }
    }
}

/// Direction of bytes relative to the observed process.
pub const DIR_EGRESS: u8 = 0; // the process wrote/sent them
pub const DIR_INGRESS: u8 = 1; // the process read/received them

/// Which hook produced a data chunk (the syscall family).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSource {
    Write = 1,
    Read = 2,
    SendTo = 3,
    RecvFrom = 4,
    Writev = 5,
    Readv = 6,
    SendMsg = 7,
    RecvMsg = 8,
    /// Plaintext handed to OpenSSL `SSL_write`/`SSL_write_ex` (uprobe).
    SslWrite = 9,
    /// Plaintext returned by OpenSSL `SSL_read`/`SSL_read_ex` (uretprobe).
    SslRead = 10,
}

impl DataSource {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Write,
            2 => Self::Read,
            3 => Self::SendTo,
            4 => Self::RecvFrom,
            5 => Self::Writev,
            6 => Self::Readv,
            7 => Self::SendMsg,
            8 => Self::RecvMsg,
            9 => Self::SslWrite,
            10 => Self::SslRead,
            _ => return None,
        })
    }
    pub const ALL: [DataSource; 10] = [
        Self::Write,
        Self::Read,
        Self::SendTo,
        Self::RecvFrom,
        Self::Writev,
        Self::Readv,
        Self::SendMsg,
        Self::RecvMsg,
        Self::SslWrite,
        Self::SslRead,
    ];
    /// The hook's name in counters.
    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
            Self::SendTo => "sendto",
            Self::RecvFrom => "recvfrom",
            Self::Writev => "writev",
            Self::Readv => "readv",
            Self::SendMsg => "sendmsg",
            Self::RecvMsg => "recvmsg",
            Self::SslWrite => "ssl_write",
            Self::SslRead => "ssl_read",
        }
    }
    /// True for plaintext captured inside the TLS library.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::SslWrite | Self::SslRead)
    }
    pub fn direction(self) -> u8 {
        match self {
            Self::Write | Self::SendTo | Self::Writev | Self::SendMsg | Self::SslWrite => {
                DIR_EGRESS
            }
            _ => DIR_INGRESS,
        }
    }
}

/// Bytes carried by one data chunk. 16 KiB: large enough that a typical MCP JSON body
/// (a few hundred bytes to a few KiB) is one record, small enough that the per-CPU scratch
/// buffer and a ring-buffer record stay cheap; bigger syscalls become several chunks.
pub const CHUNK_DATA_MAX: usize = 16 * 1024;
/// Chunks one syscall (or one `SSL_write`/`SSL_read`) may emit: 256 × 16 KiB = 4 MiB, so a
/// large MCP message written in one call (a 2 MB tool result handed to a single `SSL_write`)
/// arrives whole. The walk runs under `bpf_loop`, so this bound costs no verifier
/// instructions; it bounds the time one probe spends copying and the ring space one call
/// takes (half of the default 8 MiB ring). Bytes beyond it are not carried, are counted
/// as truncated, and show up in userspace as a gap in `pos`.
pub const MAX_CHUNKS_PER_SYSCALL: u32 = 256;
/// iovec entries walked per readv/writev/sendmsg/recvmsg.
pub const MAX_IOVECS: u32 = 16;

/// First bytes of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Process id (thread group id) of the process owning the socket.
    pub tgid: u32,
    /// Thread id that made the syscall.
    pub tid: u32,
    /// File descriptor of the socket in `tgid`.
    pub fd: u32,
    /// `bpf_ktime_get_ns()` when the event was produced (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Kernel time the connection entry was created: with (tgid, fd) it names one connection,
    /// so a reused fd is a different connection (the generation).
    pub conn_start_ns: u64,
}
assert_size!(EventHeader, 32);

/// Header of a payload chunk; followed by `len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEventHeader {
    pub header: EventHeader,
    /// Offset of the first carried byte in this direction's byte stream of the connection
    /// (counted from the first byte the kernel saw). A jump means bytes were lost.
    pub pos: u64,
    /// Bytes the syscall moved in total (`ret`), of which this chunk is a part.
    pub syscall_len: u32,
    /// Bytes carried after this header (`<= CHUNK_DATA_MAX`).
    pub len: u32,
    /// [`DIR_EGRESS`] or [`DIR_INGRESS`].
    pub direction: u8,
    /// A [`DataSource`] value.
    pub source: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    pub _pad: u8,
    /// The socket fd the bytes went through, when known (`NO_FD` otherwise). For plain
    /// sockets it equals `header.fd`; TLS connections are named by `header.fd == NO_FD`
    /// and their generation, because the socket may become known only later.
    pub sock_fd: u32,
    /// Hold mode: non-zero when the writing process was stopped before these bytes left
    /// (the key of its entry in the hold map); 0 otherwise.
    pub hold_id: u64,
}
assert_size!(DataEventHeader, 64);

/// Set on the last chunk of a syscall when bytes of it were not carried.
pub const FLAG_TRUNCATED: u8 = 1;

/// The scratch record a data chunk is assembled in (per-CPU map value).
#[repr(C)]
pub struct DataEvent {
    pub hdr: DataEventHeader,
    pub data: [u8; CHUNK_DATA_MAX],
}
pub const DATA_EVENT_HEADER_LEN: usize = core::mem::size_of::<DataEventHeader>();

/// Connection roles as the kernel saw them.
pub const ROLE_UNKNOWN: u8 = 0;
/// The process called `connect(2)` on this socket.
pub const ROLE_CONNECTOR: u8 = 1;
/// The process got this socket from `accept(2)`/`accept4(2)`.
pub const ROLE_ACCEPTOR: u8 = 2;

/// Sent once when a connection starts being streamed (before its first data chunk).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnOpenEvent {
    pub header: EventHeader,
    /// Opaque `struct sock *` (identity only, never dereferenced by userspace).
    pub sk: u64,
    /// `AF_INET` (2), `AF_INET6` (10), or 0 when the 4-tuple is unknown to the kernel
    /// (connection established before the agent started).
    pub family: u16,
    /// Local and remote port, host byte order.
    pub lport: u16,
    pub rport: u16,
    /// A `ROLE_*` value.
    pub role: u8,
    /// 1 when the stream is TLS plaintext captured in the TLS library.
    pub tls: u8,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    /// `comm` of the thread that made the first streamed syscall.
    pub comm: [u8; 16],
    /// Socket fd (`NO_FD` when not known yet: see `TlsTie`).
    pub sock_fd: u32,
    pub _pad2: u32,
}
assert_size!(ConnOpenEvent, 104);

/// Sent when a streamed connection's fd is closed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnCloseEvent {
    pub header: EventHeader,
    /// Stream positions at close: bytes seen in each direction.
    pub egress_bytes: u64,
    pub ingress_bytes: u64,
}
assert_size!(ConnCloseEvent, 48);
