//! Enforcement state shared by the kernel programs and the agent: the runtime switches,
//! the processes that take part in MCP, the pre-execution holds, and the connect-time
//! block list.

use crate::assert_size;

/// Slots of the `ENFORCE_CONFIG` array (u32 each), written by userspace at any time.
/// 1 in this slot: the write-path probes may hold `tools/call` writes (hold mode).
pub const CFG_HOLD_ENABLED: u32 = 0;
/// 1 in this slot: the connect programs consult the block list.
pub const CFG_BLOCK_ENABLED: u32 = 1;
pub const CFG_SLOTS: u32 = 4;

/// Bytes of a write the hold prefilter scans for `tools/call`.
pub const PREFILTER_SCAN_BYTES: usize = 1024;
/// The needle: a JSON-RPC `"method":"tools/call"` body or a stateless
/// `Mcp-Method: tools/call` header both contain it.
pub const PREFILTER_NEEDLE: &[u8; 10] = b"tools/call";

/// Signal the hold stops a process with.
pub const SIGSTOP: u32 = 19;

/// One outstanding hold: the process `tgid` was stopped by the write that carried
/// `hold_id` (also in that write's data records). The process may resume only when it has no
/// outstanding hold left.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HoldKey {
    pub tgid: u32,
    pub _pad: u32,
    pub hold_id: u64,
}
assert_size!(HoldKey, 16);

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HoldEntry {
    /// Kernel time the hold began.
    pub ts_ns: u64,
    /// The thread that was about to write.
    pub tid: u32,
    /// Bytes of the held write.
    pub len: u32,
}
assert_size!(HoldEntry, 16);

/// A (process, destination) pair whose new connections are refused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub tgid: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes (rest zero), or IPv6.
    pub addr: [u8; 16],
}
assert_size!(BlockKey, 24);

#[cfg(feature = "user")]
mod user {
    unsafe impl aya::Pod for super::HoldKey {}
    unsafe impl aya::Pod for super::HoldEntry {}
    unsafe impl aya::Pod for super::BlockKey {}
}
