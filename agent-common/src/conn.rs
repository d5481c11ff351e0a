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
    pub _pad: [u8; 5],
}
assert_size!(ConnState, 40);

/// 4-tuple of a TCP socket, learned from `sock:inet_sock_set_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockTuple {
    pub family: u16,
    pub lport: u16,
    pub rport: u16,
    pub _pad: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}
assert_size!(SockTuple, 40);

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ConnState {}
    unsafe impl aya::Pod for super::SockTuple {}
}
