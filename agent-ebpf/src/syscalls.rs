//! Payload syscalls: sys_enter saves the arguments by thread, the sock tracepoints tag the
//! pending syscall with its socket, sys_exit decides (TCP? HTTP?) and streams the bytes.
//!
//! Cost: every enter/exit pair below runs for every such syscall on the host. The enter side
//! is kept to a tgid check, one lookup (skip connections already judged not-HTTP) and one
//! insert; everything else happens only at exit of syscalls that touched a TCP socket.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use mcpwarden_common::{
    conn::{
        ConnKey, ConnState, CONN_HTTP, CONN_HTTP_QUIET, CONN_IGNORED, CONN_SNIFFING, CONN_TLS,
        SNIFF_MAX_MISSES,
    },
    counters::Counter,
    enforce::CFG_HOLD_ENABLED,
    event::{DataSource, DIR_EGRESS, ROLE_UNKNOWN},
};

use crate::{
    conn::{close_conn, emit_close},
    ctx::{field, skip_tgid},
    emit::{
        emit_conn_open, emit_head, emit_payload, prioritise_if_post, reserve, sniff_after,
        take_head, Payload, Sniff,
    },
    exchange::skips_call,
    maps::{add_owner, config, count, SyscallArgs, ARGS, CONNS, PLAIN_HELD, SOCKS},
    sock::is_tcp,
    tls::{in_ssl_call, tie_ssl_to_fd, uses_tls},
};

// Formats (syscalls/sys_enter_*): fd @16 (8 bytes), then:
//   write/read:         buf @24, count @32
//   sendto/recvfrom:    buf @24, len @32 (flags @40, addr @48)
//   writev/readv:       vec @24, vlen @32
//   sendmsg/recvmsg:    struct user_msghdr *msg @24 (flags @32)
// syscalls/sys_exit_*: long ret @16.
const OFF_FD: usize = 16;
const OFF_ARG1: usize = 24;
const OFF_ARG2: usize = 32;
const OFF_RET: usize = 16;

macro_rules! data_syscall {
    ($enter:ident, $exit:ident, $source:expr, $kind:ident) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_enter(&ctx, $source, ArgKind::$kind);
            0
        }
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_exit(&ctx);
            0
        }
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    /// (buf, len)
    Buffer,
    /// (iovec *, count)
    Iovec,
    /// struct user_msghdr *
    MsgHdr,
}

data_syscall!(sys_enter_write, sys_exit_write, DataSource::Write, Buffer);
data_syscall!(sys_enter_read, sys_exit_read, DataSource::Read, Buffer);
data_syscall!(
    sys_enter_sendto,
    sys_exit_sendto,
    DataSource::SendTo,
    Buffer
);
data_syscall!(
    sys_enter_recvfrom,
    sys_exit_recvfrom,
    DataSource::RecvFrom,
    Buffer
);
data_syscall!(sys_enter_writev, sys_exit_writev, DataSource::Writev, Iovec);
data_syscall!(sys_enter_readv, sys_exit_readv, DataSource::Readv, Iovec);
data_syscall!(
    sys_enter_sendmsg,
    sys_exit_sendmsg,
    DataSource::SendMsg,
    MsgHdr
);
data_syscall!(
    sys_enter_recvmsg,
    sys_exit_recvmsg,
    DataSource::RecvMsg,
    MsgHdr
);

#[inline(always)]
fn on_enter(ctx: &TracePointContext, source: DataSource, kind: ArgKind) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if skip_tgid(tgid) {
        return;
    }
    let fd: u64 = field(ctx, OFF_FD);
    let key = ConnKey {
        tgid,
        fd: fd as u32,
    };
    // SAFETY: read-only peek at the map value.
    if let Some(c) = unsafe { CONNS.get(&key) } {
        // Ignored and TLS sockets are skipped, except inside an SSL call (the syscall made
        // there ties the `SSL *` to this fd).
        if (c.state == CONN_IGNORED || c.state == CONN_TLS) && !in_ssl_call(id) && !uses_tls(tgid) {
            return;
        }
    }
    let a1: u64 = field(ctx, OFF_ARG1);
    let (buf, cnt, vectored) = match kind {
        ArgKind::Buffer => (a1, field::<u64>(ctx, OFF_ARG2), 0u8),
        ArgKind::Iovec => (a1, field::<u64>(ctx, OFF_ARG2), 1u8),
        ArgKind::MsgHdr => {
            // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov @16;
            //                      __kernel_size_t msg_iovlen @24; ... }
            // SAFETY: user pointer read through the fault-tolerant helper.
            let iov = unsafe { aya_ebpf::helpers::bpf_probe_read_user((a1 + 16) as *const u64) };
            let len = unsafe { aya_ebpf::helpers::bpf_probe_read_user((a1 + 24) as *const u64) };
            match (iov, len) {
                (Ok(i), Ok(l)) => (i, l, 1u8),
                _ => {
                    count(Counter::ReadUserFailed, 1);
                    return;
                }
            }
        }
    };
    let args = SyscallArgs {
        buf,
        count: cnt,
        sk: 0,
        fd: fd as u32,
        source: source as u8,
        vectored,
        sk_family: 0,
        sk_protocol: 0,
        _pad: [0; 6],
    };
    if ARGS.insert(&id, &args, 0).is_err() {
        count(Counter::ArgsMapFull, 1);
    }
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copy out, then delete.
    let args = match unsafe { ARGS.get(&id) } {
        Some(a) => *a,
        None => return,
    };
    let _ = ARGS.remove(&id);
    if args.sk == 0 {
        return; // not a socket (file, pipe, ...)
    }
    on_socket_io(&SocketIo {
        id,
        fd: args.fd,
        buf: args.buf,
        count: args.count,
        vectored: args.vectored != 0,
        source: args.source,
        sk: args.sk,
        family: args.sk_family,
        protocol: args.sk_protocol,
        ret: field(ctx, OFF_RET),
        from_syscall_exit: true,
    });
}

/// One completed payload syscall on a socket, however it was observed.
pub struct SocketIo {
    /// pid_tgid of the thread.
    pub id: u64,
    pub fd: u32,
    /// Buffer, or `struct iovec *` when `vectored`.
    pub buf: u64,
    /// Buffer size, or iovec count.
    pub count: u64,
    pub vectored: bool,
    /// `DataSource` value.
    pub source: u8,
    /// `struct sock *`, `AF_*`, `IPPROTO_*`.
    pub sk: u64,
    pub family: u16,
    pub protocol: u16,
    /// The syscall's result (bytes moved, or a negative errno).
    pub ret: i64,
    /// Observed by the syscall capture mode's sys_exit program.
    pub from_syscall_exit: bool,
}

/// The shared decision path: TCP? TLS ciphertext? which connection? HTTP? stream it.
#[inline(always)]
pub fn on_socket_io(io: &SocketIo) {
    let id = io.id;
    let tgid = (id >> 32) as u32;
    let key = ConnKey { tgid, fd: io.fd };
    if !is_tcp(io.family, io.protocol) {
        if io.from_syscall_exit {
            // Remember it so the syscall-mode enter side returns early next time (the sock
            // mode knows the family from the tracepoint itself and needs no entry).
            let st = new_conn(ROLE_UNKNOWN, CONN_IGNORED, io.sk);
            let _ = CONNS.insert(&key, &st, 0);
        }
        return;
    }
    // Monitor and reset modes pay one compare and one array load here, on sends only.
    if source_direction(io.source) == DIR_EGRESS
        && config(CFG_HOLD_ENABLED) != 0
        && held_plain_write(id, &key, io)
    {
        return; // emitted already by the libc probe that held it
    }
    if tie_ssl_to_fd(
        id,
        tgid,
        io.fd,
        io.sk,
        io.source,
        io.ret,
        io.buf,
        io.vectored,
    ) {
        return; // ciphertext: the plaintext goes out from the TLS uprobes
    }
    if io.ret <= 0 {
        return;
    }
    let len = io.ret as u64;
    let conn = match CONNS.get_ptr_mut(&key) {
        Some(c) => c,
        None => {
            let st = new_conn(role_of(io.sk), CONN_SNIFFING, io.sk);
            if CONNS.insert(&key, &st, 0).is_err() {
                count(Counter::ConnMapFull, 1);
                return;
            }
            add_owner(io.sk, &key);
            match CONNS.get_ptr_mut(&key) {
                Some(c) => c,
                None => return,
            }
        }
    };
    // SAFETY: the value pointer stays valid for this program run; entries of one fd are
    // written by the threads using that fd.
    let c = unsafe { &mut *conn };
    if c.sk == 0 {
        c.sk = io.sk;
        add_owner(io.sk, &key);
    } else if c.sk != io.sk {
        // The fd now names another socket (a close not seen yet, e.g. a TCP_CLOSE still to
        // come after FIN_WAIT2, or dup2): the old connection ends here, a new one starts.
        emit_close(&key, id as u32, c);
        *c = new_conn(role_of(io.sk), CONN_SNIFFING, io.sk);
        add_owner(io.sk, &key);
    }
    let source = io.source;
    let egress = source_direction(source) == DIR_EGRESS;
    let payload = Payload {
        buf: io.buf,
        count: io.count,
        vectored: io.vectored,
        len,
    };
    if skips_call(
        &mut c.state,
        c.head_len,
        &mut c.exchange,
        source_direction(source),
        &payload,
    ) {
        return;
    }
    let pos = reserve(
        if egress {
            &mut c.egress_pos
        } else {
            &mut c.ingress_pos
        },
        len,
    );
    match c.state {
        CONN_HTTP => {}
        CONN_HTTP_QUIET => {
            // The first call carried of a connection whose exchanges were all skipped.
            c.state = CONN_HTTP;
            count(Counter::ConnsHttp, 1);
            if c.role == ROLE_UNKNOWN {
                c.role = role_of(io.sk);
            }
            emit_conn_open(tgid, id as u32, io.fd, c);
        }
        CONN_TLS => return,
        CONN_SNIFFING => {
            let dir = source_direction(source);
            let head = take_head(&mut c.head_len, c.head_dir, c.head, dir);
            match sniff_after(&payload, head) {
                (Sniff::Http, _) => {
                    prioritise_if_post(tgid, &payload);
                    if c.role == ROLE_UNKNOWN {
                        c.role = role_of(io.sk);
                    }
                    c.state = CONN_HTTP;
                    count(Counter::ConnsHttp, 1);
                    emit_conn_open(tgid, id as u32, io.fd, c);
                    emit_head(tgid, id as u32, io.fd, c.start_ns, pos, source, io.fd, head);
                }
                (Sniff::Undecided, kept) => {
                    c.head = kept.word;
                    c.head_len = kept.len;
                    c.head_dir = dir;
                    return;
                }
                (Sniff::NotHttp, _) => {
                    count(Counter::SniffShortBytes, u64::from(head.len));
                    c.misses += 1;
                    if c.misses >= SNIFF_MAX_MISSES {
                        c.state = CONN_IGNORED;
                        count(Counter::ConnsIgnored, 1);
                    }
                    return;
                }
            }
        }
        _ => return,
    }
    emit_payload(
        tgid, id as u32, io.fd, c.start_ns, pos, source, io.fd, 0, &payload,
    );
}

/// A send whose bytes the libc hold probe already emitted: skip exactly them (and pull the
/// position back if the send moved fewer).
#[inline(always)]
fn held_plain_write(id: u64, key: &ConnKey, io: &SocketIo) -> bool {
    // SAFETY: copy out.
    let Some(h) = (unsafe { PLAIN_HELD.get(&id) }).copied() else {
        return false;
    };
    if h.fd != io.fd {
        return false;
    }
    let _ = PLAIN_HELD.remove(&id);
    if connection_gone(io.ret) {
        // The held write failed because its connection is gone (the agent reset it after a
        // deny, or the peer did). A connection the hold opened had no socket yet when that
        // socket closed, so no TCP_CLOSE found it; the next socket on this fd can get the
        // freed socket's address and would pass for this connection, its bytes taken as
        // repeats. End the stream here.
        count(Counter::HoldShortWrite, 1);
        // SAFETY: copy out.
        if let Some(c) = unsafe { CONNS.get(key) }.copied() {
            if c.sk == 0 || c.sk == io.sk {
                close_conn(key, id as u32, &c);
            }
        }
        return true;
    }
    if let Some(c) = CONNS.get_ptr_mut(key) {
        // SAFETY: map value valid for this run.
        let c = unsafe { &mut *c };
        if c.sk == 0 {
            // A connection the hold opened before its first syscall: now its socket is known.
            c.sk = io.sk;
            if c.role == ROLE_UNKNOWN {
                c.role = role_of(io.sk);
            }
            add_owner(io.sk, key);
        }
    }
    let moved = if io.ret > 0 { io.ret as u64 } else { 0 };
    if moved < h.len {
        count(Counter::HoldShortWrite, 1);
        if let Some(c) = CONNS.get_ptr_mut(key) {
            // SAFETY: map value valid for this run.
            let c = unsafe { &mut *c };
            if c.egress_pos == h.pos + h.len {
                c.egress_pos = h.pos + moved;
            }
        }
    }
    true
}

/// A send's result that means its TCP connection is over: `EPIPE`, `ECONNABORTED` (what a
/// `SOCK_DESTROY` leaves), `ECONNRESET`, `ENOTCONN`.
#[inline(always)]
fn connection_gone(ret: i64) -> bool {
    matches!(ret, -32 | -103 | -104 | -107)
}

/// The role the TCP handshake gave a socket, if the kernel saw it.
#[inline(always)]
pub fn role_of(sk: u64) -> u8 {
    // SAFETY: read-only peek.
    match unsafe { SOCKS.get(&sk) } {
        Some(t) => t.role,
        None => ROLE_UNKNOWN,
    }
}

#[inline(always)]
fn source_direction(source: u8) -> u8 {
    match DataSource::from_u8(source) {
        Some(s) => s.direction(),
        None => DIR_EGRESS,
    }
}

#[inline(always)]
pub fn new_conn(role: u8, state: u8, sk: u64) -> ConnState {
    ConnState {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        sk,
        egress_pos: 0,
        ingress_pos: 0,
        state,
        role,
        misses: 0,
        head_len: 0,
        head_dir: 0,
        exchange: 0,
        _pad: [0; 2],
        ssl: 0,
        head: 0,
    }
}
