//! Connect-time block: cgroup `connect4`/`connect6` programs (attached at the cgroup v2
//! root) refuse a new connection from a process to a destination on the block list with
//! EPERM. The list is filled by userspace when a verdict asks to block.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use mcpwarden_common::{counters::Counter, enforce::BlockKey, enforce::CFG_BLOCK_ENABLED};

use crate::maps::{config, count, BLOCKED};

/// Return values of cgroup sock_addr programs.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn connect4_block(ctx: SockAddrContext) -> i32 {
    if config(CFG_BLOCK_ENABLED) == 0 {
        return ALLOW;
    }
    // SAFETY: the context is a valid bpf_sock_addr for this program type.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let mut addr = [0u8; 16];
    let b = ip.to_ne_bytes(); // network order in memory
    addr[0] = b[0];
    addr[1] = b[1];
    addr[2] = b[2];
    addr[3] = b[3];
    verdict(2, port, addr)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6_block(ctx: SockAddrContext) -> i32 {
    if config(CFG_BLOCK_ENABLED) == 0 {
        return ALLOW;
    }
    // SAFETY: as above; the ip6 words are loaded one at a time (4-byte context loads).
    let (w0, w1, w2, w3, port) = unsafe {
        let s = ctx.sock_addr;
        (
            core::ptr::read_volatile(&(*s).user_ip6[0]),
            core::ptr::read_volatile(&(*s).user_ip6[1]),
            core::ptr::read_volatile(&(*s).user_ip6[2]),
            core::ptr::read_volatile(&(*s).user_ip6[3]),
            (*s).user_port,
        )
    };
    let mut addr = [0u8; 16];
    let words = [w0, w1, w2, w3];
    for (i, w) in words.iter().enumerate() {
        let b = w.to_ne_bytes();
        addr[i * 4] = b[0];
        addr[i * 4 + 1] = b[1];
        addr[i * 4 + 2] = b[2];
        addr[i * 4 + 3] = b[3];
    }
    verdict(10, port, addr)
}

#[inline(always)]
fn verdict(family: u16, port_be: u32, addr: [u8; 16]) -> i32 {
    let key = BlockKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        family,
        port: u16::from_be(port_be as u16),
        addr,
    };
    // SAFETY: read-only peek.
    if unsafe { BLOCKED.get(&key) }.is_some() {
        count(Counter::ConnectBlocked, 1);
        return REFUSE;
    }
    ALLOW
}
