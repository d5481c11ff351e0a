//! Connection lifecycle syscalls: connect(2)/accept(2)/accept4(2) name the role of a socket
//! fd; close(2) ends a streamed connection. All rare next to reads and writes.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use mcpwarden_common::{
    conn::{ConnKey, ConnState, TlsConnState, TlsKey, CONN_HTTP, CONN_SNIFFING, CONN_TLS, NO_FD},
    event::{ConnCloseEvent, EventHeader, EventKind, ROLE_ACCEPTOR, ROLE_CONNECTOR},
};

use crate::{
    ctx::{field, skip_tgid},
    maps::{remove_owner, SyscallArgs, ARGS, CONNS, EVENTS, SOURCE_CONNECT, TLS_CONNS},
    syscalls::new_conn,
};

const EINPROGRESS: i64 = 115;

// syscalls/sys_enter_connect: int fd @16; struct sockaddr *uservaddr @24; int addrlen @32
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if skip_tgid((id >> 32) as u32) {
        return 0;
    }
    let fd: u64 = field(&ctx, 16);
    let addr: u64 = field(&ctx, 24);
    // SAFETY: fault-tolerant user read of sa_family.
    let family = match unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const u16) } {
        Ok(f) => f,
        Err(_) => return 0,
    };
    let (inet, inet6) = crate::sock::af_inet();
    if family != inet && family != inet6 {
        return 0;
    }
    let a = SyscallArgs {
        buf: 0,
        count: 0,
        sk: 0,
        fd: fd as u32,
        source: SOURCE_CONNECT,
        vectored: 0,
        sk_family: family,
        sk_protocol: 0,
        _pad: [0; 6],
    };
    let _ = ARGS.insert(&id, &a, 0);
    0
}

// syscalls/sys_exit_connect: long ret @16
#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copy out, then delete.
    let a = match unsafe { ARGS.get(&id) } {
        Some(a) if a.source == SOURCE_CONNECT => *a,
        _ => return 0,
    };
    let _ = ARGS.remove(&id);
    let ret: i64 = field(&ctx, 16);
    if ret == 0 || ret == -EINPROGRESS {
        let key = ConnKey {
            tgid: (id >> 32) as u32,
            fd: a.fd,
        };
        let _ = CONNS.insert(&key, &new_conn(ROLE_CONNECTOR, CONN_SNIFFING, 0), 0);
    }
    0
}

// syscalls/sys_exit_accept4 and sys_exit_accept: long ret @16 (the new fd)
#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept(&ctx);
    0
}

#[inline(always)]
fn on_accept(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if skip_tgid(tgid) {
        return;
    }
    let ret: i64 = field(ctx, 16);
    if ret < 0 {
        return;
    }
    let key = ConnKey {
        tgid,
        fd: ret as u32,
    };
    let _ = CONNS.insert(&key, &new_conn(ROLE_ACCEPTOR, CONN_SNIFFING, 0), 0);
}

// syscalls/sys_enter_close: unsigned int fd @16 (syscall capture mode only; the sock capture
// mode learns of closes from sock:inet_sock_set_state and costs close(2) nothing).
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let fd: u64 = field(&ctx, 16);
    let key = ConnKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: copy out.
    let c = match unsafe { CONNS.get(&key) } {
        Some(c) => *c,
        None => return 0,
    };
    close_conn(&key, id as u32, &c);
    0
}

/// Forgets a socket fd and, if it was streamed (as plaintext or as TLS plaintext), tells
/// userspace the connection ended.
#[inline(always)]
pub fn close_conn(key: &ConnKey, tid: u32, c: &ConnState) {
    let _ = CONNS.remove(key);
    remove_owner(c.sk, key);
    emit_close(key, tid, c);
}

/// Tells userspace a streamed connection (plaintext, or TLS plaintext over this socket) ended.
#[inline(always)]
pub fn emit_close(key: &ConnKey, tid: u32, c: &ConnState) {
    let mut start_ns = c.start_ns;
    let mut ident_fd = key.fd;
    // The stream's own byte totals: for TLS, the plaintext positions of its `SSL *` (the
    // socket's are ciphertext, handshake included, and would read as a lost tail).
    let mut totals = (c.egress_pos, c.ingress_pos);
    if c.state == CONN_TLS {
        let tk = TlsKey {
            tgid: key.tgid,
            _pad: 0,
            ssl: c.ssl,
        };
        // SAFETY: copy out, then delete.
        let t = match unsafe { TLS_CONNS.get(&tk) } {
            Some(t) => *t,
            None => return,
        };
        if t.fd != key.fd {
            return; // the SSL* moved on to another socket
        }
        let _ = TLS_CONNS.remove(&tk);
        if t.state != CONN_HTTP {
            return;
        }
        start_ns = t.start_ns;
        ident_fd = NO_FD;
        totals = (t.egress_pos, t.ingress_pos);
    } else if c.state != CONN_HTTP {
        return;
    }
    let ev = ConnCloseEvent {
        header: EventHeader {
            kind: EventKind::ConnClose as u32,
            tgid: key.tgid,
            tid,
            fd: ident_fd,
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            conn_start_ns: start_ns,
        },
        egress_bytes: totals.0,
        ingress_bytes: totals.1,
    };
    if EVENTS.output::<ConnCloseEvent>(&ev, 0).is_err() {
        crate::maps::count(mcpwarden_common::counters::Counter::RingFull, 1);
    }
}

/// Tells userspace a TLS plaintext stream ended without its socket closing first (its
/// `SSL *` was freed).
#[inline(always)]
pub fn emit_tls_close(tgid: u32, tid: u32, t: &TlsConnState) {
    let ev = ConnCloseEvent {
        header: EventHeader {
            kind: EventKind::ConnClose as u32,
            tgid,
            tid,
            fd: NO_FD,
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            conn_start_ns: t.start_ns,
        },
        egress_bytes: t.egress_pos,
        ingress_bytes: t.ingress_pos,
    };
    if EVENTS.output::<ConnCloseEvent>(&ev, 0).is_err() {
        crate::maps::count(mcpwarden_common::counters::Counter::RingFull, 1);
    }
}
