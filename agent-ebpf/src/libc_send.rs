//! Plaintext pre-execution hold: uprobes at the entry of libc's `write`, `send`, `sendto`,
//! `writev` and `sendmsg`, attached by userspace only to processes seen sending MCP requests
//! over plaintext HTTP (hold mode). A write on a streamed HTTP connection whose first bytes
//! contain `tools/call` is emitted now (with its hold id) and the process is stopped before
//! the syscall runs. The socket path later sees the same bytes in `sock_send_length` and
//! skips exactly them (`PLAIN_HELD`), so stream positions stay consistent.
//!
//! Prototypes (glibc, x86_64 SysV: arguments in rdi, rsi, rdx):
//!   ssize_t write(int fd, const void *buf, size_t count);
//!   ssize_t send(int fd, const void *buf, size_t len, int flags);
//!   ssize_t sendto(int fd, const void *buf, size_t len, int flags, ...);
//!   ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
//!   ssize_t sendmsg(int fd, const struct msghdr *msg, int flags);

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_send_signal_thread},
    macros::uprobe,
    programs::ProbeContext,
};
use mcpwarden_common::{
    conn::{ConnKey, CONN_HTTP, CONN_HTTP_QUIET, CONN_SNIFFING, NO_FD},
    counters::Counter,
    enforce::SIGSTOP,
    event::{DataSource, MAX_IOVECS, ROLE_UNKNOWN},
};

use crate::{
    emit::{emit_conn_open, emit_payload, first_bytes, looks_like_http, Payload},
    exchange::carried_request,
    hold::{begin_hold, hold_candidate, prefilter, prefilter_iov, stop_process},
    maps::{count, PlainHeld, CONNS, PLAIN_HELD, SEND_TIE},
    syscalls::{new_conn, role_of},
};

#[uprobe]
pub fn libc_write(ctx: ProbeContext) -> u32 {
    plain(&ctx, DataSource::Write, Shape::Buffer);
    0
}

#[uprobe]
pub fn libc_send(ctx: ProbeContext) -> u32 {
    plain(&ctx, DataSource::SendTo, Shape::Buffer);
    0
}

#[uprobe]
pub fn libc_writev(ctx: ProbeContext) -> u32 {
    plain(&ctx, DataSource::Writev, Shape::Iovec);
    0
}

#[uprobe]
pub fn libc_sendmsg(ctx: ProbeContext) -> u32 {
    plain(&ctx, DataSource::SendMsg, Shape::MsgHdr);
    0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Buffer,
    Iovec,
    MsgHdr,
}

#[inline(always)]
fn plain(ctx: &ProbeContext, source: DataSource, shape: Shape) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if !hold_candidate(tgid) {
        return;
    }
    let fd: u64 = ctx.arg(0).unwrap_or(0);
    let key = ConnKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: read-only peek.
    let known = unsafe { CONNS.get(&key) }.map(|c| c.state);
    if send_tie(id, fd as u32, known) {
        return;
    }
    // TLS sockets and sockets seen carrying something else than HTTP leave here.
    if matches!(known, Some(s) if s != CONN_HTTP && s != CONN_HTTP_QUIET && s != CONN_SNIFFING) {
        return;
    }
    let a1: u64 = ctx.arg(1).unwrap_or(0);
    let a2: u64 = ctx.arg(2).unwrap_or(0);
    let (buf, cnt, vectored) = match shape {
        Shape::Buffer => (a1, a2, false),
        Shape::Iovec => (a1, a2 as u32 as u64, true),
        Shape::MsgHdr => {
            // struct msghdr { void *msg_name; socklen_t msg_namelen; struct iovec *msg_iov @16;
            //                 size_t msg_iovlen @24; ... }
            // SAFETY: fault-tolerant user reads.
            let iov = unsafe { bpf_probe_read_user((a1 + 16) as *const u64) };
            let n = unsafe { bpf_probe_read_user((a1 + 24) as *const u64) };
            match (iov, n) {
                (Ok(i), Ok(n)) => (i, n, true),
                _ => return,
            }
        }
    };
    // The prefilter first, so that every path reaches its scan in one verifier state.
    let hit = if vectored {
        prefilter_iov(buf, cnt)
    } else {
        cnt > 0 && prefilter(buf, cnt)
    };
    if !hit {
        return;
    }
    // Vectored writes add up their lengths.
    let total = if vectored {
        let mut total = 0u64;
        for i in 0..MAX_IOVECS as u64 {
            if i >= cnt {
                break;
            }
            // SAFETY: fault-tolerant user read of iov[i].iov_len.
            match unsafe { bpf_probe_read_user((buf + i * 16 + 8) as *const u64) } {
                Ok(l) => total += l,
                Err(_) => return,
            }
        }
        total
    } else {
        cnt
    };
    if total == 0 {
        return;
    }
    count(Counter::HoldPrefilterHits, 1);
    let payload = Payload {
        buf,
        count: cnt,
        vectored,
        len: total,
    };
    // A request that is the first write on its connection opens the stream here: the socket
    // path only sees it after the syscall, too late to hold.
    if known.is_none() {
        let st = new_conn(ROLE_UNKNOWN, CONN_SNIFFING, 0);
        if CONNS.insert(&key, &st, 0).is_err() {
            count(Counter::ConnMapFull, 1);
            return;
        }
    }
    let Some(c) = CONNS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: map value valid for this run.
    let c = unsafe { &mut *c };
    let fresh = c.state != CONN_HTTP;
    if fresh && !looks_like_http(&first_bytes(&payload)) {
        return;
    }
    // Not held (map full): a fresh connection stays sniffing and the socket path takes it.
    let Some(hold_id) = begin_hold(id, total) else {
        return;
    };
    if fresh {
        c.state = CONN_HTTP;
        if c.role == ROLE_UNKNOWN && c.sk != 0 {
            c.role = role_of(c.sk);
        }
        count(Counter::HoldFreshConn, 1);
        count(Counter::ConnsHttp, 1);
        emit_conn_open(tgid, id as u32, fd as u32, c);
    }
    carried_request(&mut c.exchange);
    let pos = c.egress_pos;
    c.egress_pos = pos + total;
    let _ = PLAIN_HELD.insert(
        &id,
        &PlainHeld {
            pos,
            len: total,
            fd: fd as u32,
            _pad: 0,
        },
        0,
    );
    emit_payload(
        tgid,
        id as u32,
        fd as u32,
        c.start_ns,
        pos,
        source as u8,
        fd as u32,
        hold_id,
        &payload,
    );
    stop_process(tgid, hold_id);
}

/// A thread resumed after a denied hold whose TLS socket was unknown (`SEND_TIE`): this
/// send, on a TCP socket not streamed as plaintext HTTP, carries the denied call's
/// ciphertext. Record its fd and stop the process before the syscall. True when it did.
#[inline(always)]
fn send_tie(id: u64, fd: u32, known: Option<u8>) -> bool {
    let Some(t) = SEND_TIE.get_ptr_mut(&id) else {
        return false;
    };
    // Only a socket the kernel saw carrying bytes that are not plaintext HTTP (the TLS
    // handshake) qualifies; a file, pipe or eventfd write of the event loop does not.
    if !matches!(known, Some(s) if s != CONN_HTTP && s != CONN_HTTP_QUIET) {
        return false;
    }
    // SAFETY: map value valid for this run.
    let t = unsafe { &mut *t };
    if *t != NO_FD {
        return false;
    }
    *t = fd;
    count(Counter::HoldSendTie, 1);
    // SAFETY: helper without preconditions.
    if unsafe { bpf_send_signal_thread(SIGSTOP) } != 0 {
        count(Counter::HoldSignalFailed, 1);
    }
    true
}
