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
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use mcpwarden_common::{
    conn::{ConnKey, CONN_HTTP},
    counters::Counter,
    event::{DataSource, MAX_IOVECS},
};

use crate::{
    emit::{emit_payload, Payload},
    hold::{begin_hold, hold_candidate, prefilter, stop_process},
    maps::{count, PlainHeld, CONNS, PLAIN_HELD},
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
    // Files, pipes, TLS and not-yet-HTTP sockets leave here.
    let Some(c) = CONNS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: map value valid for this run.
    let c = unsafe { &mut *c };
    if c.state != CONN_HTTP {
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
    // The first segment is what the prefilter scans; vectored writes add up their lengths.
    let (first, first_len, total) = if vectored {
        let mut total = 0u64;
        let mut first = 0u64;
        let mut first_len = 0u64;
        for i in 0..MAX_IOVECS as u64 {
            if i >= cnt {
                break;
            }
            // SAFETY: fault-tolerant user reads of iov[i].
            let base = unsafe { bpf_probe_read_user((buf + i * 16) as *const u64) };
            let len = unsafe { bpf_probe_read_user((buf + i * 16 + 8) as *const u64) };
            match (base, len) {
                (Ok(b), Ok(l)) => {
                    if i == 0 {
                        first = b;
                        first_len = l;
                    }
                    total += l;
                }
                _ => return,
            }
        }
        (first, first_len, total)
    } else {
        (buf, cnt, cnt)
    };
    if total == 0 || !prefilter(first, first_len) {
        return;
    }
    count(Counter::HoldPrefilterHits, 1);
    let Some(hold_id) = begin_hold(id, total) else {
        return;
    };
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
        &Payload {
            buf,
            count: cnt,
            vectored,
            len: total,
        },
    );
    stop_process(tgid, hold_id);
}
