//! `sock:*` tracepoints: which syscalls move TCP bytes, and socket 4-tuples.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use mcpwarden_common::{
    conn::SockTuple,
    event::{ROLE_ACCEPTOR, ROLE_CONNECTOR},
};

use crate::{
    conn::close_conn,
    ctx::field,
    maps::{ARGS, CONNS, SK_OWNER, SOCKS},
};

const MSG_PEEK: i32 = 2;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;

// sock:sock_send_length / sock:sock_recv_length (format):
//   void *sk @8; __u16 family @16; __u16 protocol @18; int ret @20; int flags @24
// They fire inside sock_sendmsg/sock_recvmsg, i.e. inside the write/read/send/recv syscall
// whose arguments sys_enter saved: tag that pending syscall with the socket.
#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    tag_pending_syscall(&ctx);
    0
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    // A MSG_PEEK receive leaves the bytes to be read again: leave the syscall untagged (so
    // its exit treats it as no socket I/O) instead of carrying them twice.
    if field::<i32>(&ctx, 24) & MSG_PEEK == 0 {
        tag_pending_syscall(&ctx);
    }
    0
}

#[inline(always)]
fn tag_pending_syscall(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    if let Some(args) = ARGS.get_ptr_mut(&id) {
        let sk: u64 = field(ctx, 8);
        let family: u16 = field(ctx, 16);
        let protocol: u16 = field(ctx, 18);
        // SAFETY: map value of this thread, written only by this thread.
        unsafe {
            (*args).sk = sk;
            (*args).sk_family = family;
            (*args).sk_protocol = protocol;
        }
    }
}

// sock:inet_sock_set_state (format):
//   const void *skaddr @8; int oldstate @16; int newstate @20; __u16 sport @24; __u16 dport @26;
//   __u16 family @28; __u16 protocol @30; __u8 saddr[4] @32; __u8 daddr[4] @36;
//   __u8 saddr_v6[16] @40; __u8 daddr_v6[16] @56
// Ports are in host byte order here (the tracepoint converts them).
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let protocol: u16 = field(&ctx, 30);
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let sk: u64 = field(&ctx, 8);
    let oldstate: i32 = field(&ctx, 16);
    let newstate: i32 = field(&ctx, 20);
    if newstate == TCP_CLOSE {
        // Both directions are finished (or the connection was reset): the connection ends.
        // This may run in softirq context: find the owner by the socket, not the task.
        let _ = SOCKS.remove(&sk);
        // Every fd that uses the socket (shared across fork or SCM_RIGHTS) ends.
        // SAFETY: copy out.
        if let Some(owners) = unsafe { SK_OWNER.get(&sk) }.copied() {
            let _ = SK_OWNER.remove(&sk);
            for key in owners.keys {
                if key.tgid == 0 {
                    continue;
                }
                // SAFETY: copy out.
                if let Some(c) = unsafe { CONNS.get(&key) }.copied() {
                    if c.sk == sk {
                        close_conn(&key, 0, &c);
                    }
                }
            }
        }
        return 0;
    }
    let role = if newstate == TCP_SYN_SENT || oldstate == TCP_SYN_SENT {
        ROLE_CONNECTOR
    } else if oldstate == TCP_SYN_RECV {
        ROLE_ACCEPTOR
    } else {
        return 0;
    };
    if newstate != TCP_ESTABLISHED && newstate != TCP_SYN_SENT {
        return 0;
    }
    let family: u16 = field(&ctx, 28);
    let mut t = SockTuple {
        family,
        lport: field(&ctx, 24),
        rport: field(&ctx, 26),
        role,
        _pad: 0,
        laddr: [0; 16],
        raddr: [0; 16],
    };
    // Address arrays go through the helper: the verifier rejects the derived context
    // pointers a multi-byte copy compiles to. Rare event (TCP state change), so it is cheap.
    // SAFETY: offsets from the tracepoint format above.
    let (s, d) = unsafe {
        if family == AF_INET {
            let s: u32 = field(&ctx, 32);
            let d: u32 = field(&ctx, 36);
            t.laddr[..4].copy_from_slice(&s.to_ne_bytes());
            t.raddr[..4].copy_from_slice(&d.to_ne_bytes());
            (Ok(t.laddr), Ok(t.raddr))
        } else if family == AF_INET6 {
            (ctx.read_at::<[u8; 16]>(40), ctx.read_at::<[u8; 16]>(56))
        } else {
            return 0;
        }
    };
    match (s, d) {
        (Ok(s), Ok(d)) => {
            t.laddr = s;
            t.raddr = d;
        }
        _ => return 0,
    }
    let _ = SOCKS.insert(&sk, &t, 0);
    0
}

/// True for the sockets we follow: TCP over IPv4/IPv6.
#[inline(always)]
pub fn is_tcp(family: u16, protocol: u16) -> bool {
    (family == AF_INET || family == AF_INET6) && protocol == IPPROTO_TCP
}

pub const fn af_inet() -> (u16, u16) {
    (AF_INET, AF_INET6)
}
