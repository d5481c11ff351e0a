//! OpenSSL plaintext: uprobes at entry of `SSL_write`/`SSL_read` (and `_ex`) save the
//! arguments by thread; the syscall the thread makes inside the call names the socket fd
//! (`tie_ssl_to_fd`, called from the syscall exit path); the uretprobe streams the plaintext
//! as chunks of the TLS connection (tgid, fd, generation), through the same record format and
//! userspace pipeline as plaintext sockets. Keyed by TID: concurrent calls never race.
//!
//! Prototypes (OpenSSL 1.1.1 and 3.x, libssl.so.1.1 / libssl.so.3, and executables that
//! export them such as Debian's `node`):
//!   int SSL_write(SSL *ssl, const void *buf, int num);                       → bytes or <= 0
//!   int SSL_read(SSL *ssl, void *buf, int num);                              → bytes or <= 0
//!   int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written);  → 1 on success
//!   int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes);     → 1 on success

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use mcpwarden_common::{
    conn::{
        ConnKey, TlsConnState, TlsKey, CONN_HTTP, CONN_HTTP_QUIET, CONN_IGNORED, CONN_SNIFFING,
        CONN_TLS, NO_FD, SNIFF_MAX_MISSES,
    },
    counters::Counter,
    event::{DataSource, EventKind, DIR_EGRESS, DIR_INGRESS, ROLE_UNKNOWN},
    sniff::begins_tls_record as is_tls_record,
};

use crate::{
    conn::emit_tls_close,
    ctx::skip_tgid,
    emit::{
        emit_head, emit_open, emit_payload, prioritise_if_post, reserve, sniff_after, take_head,
        Payload, Sniff, SniffHead,
    },
    exchange::skips_call,
    hold::{hold_candidate, maybe_hold_tls_write},
    maps::{
        add_owner, count, TlsArgs, CONNS, LAST_READ_FD, PENDING_WRITE, TLS_ARGS, TLS_CONNS,
        TLS_PIDS,
    },
    syscalls::{new_conn, role_of},
};

#[inline(always)]
fn on_entry(ctx: &ProbeContext, source: DataSource, ex: bool) {
    let id = bpf_get_current_pid_tgid();
    if skip_tgid((id >> 32) as u32) {
        return;
    }
    let ssl: u64 = ctx.arg(0).unwrap_or(0);
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let out_len: u64 = if ex { ctx.arg(3).unwrap_or(0) } else { 0 };
    let tgid = (id >> 32) as u32;
    let num: u64 = if ex {
        ctx.arg(2).unwrap_or(0)
    } else {
        // `int num`: only the low 32 bits are the argument.
        ctx.arg::<u64>(2).unwrap_or(0) as u32 as i32 as i64 as u64
    };
    // SAFETY: read-only peek, then a rare insert (first SSL call of the process).
    if unsafe { TLS_PIDS.get(&tgid) }.is_none() {
        let _ = TLS_PIDS.insert(&tgid, &1, 0);
    }
    let mut a = TlsArgs {
        ssl,
        buf,
        out_len,
        fd: NO_FD,
        source: source as u8,
        held: 0,
        _pad: [0; 2],
        held_pos: 0,
        held_len: 0,
    };
    if source == DataSource::SslWrite && (num as i64) > 0 && hold_candidate(tgid) {
        maybe_hold_tls_write(id, &mut a, num);
    }
    if TLS_ARGS.insert(&id, &a, 0).is_err() {
        count(Counter::TlsArgsMapFull, 1);
    }
}

// uprobe: SSL_write(SSL *ssl, const void *buf, int num)
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    on_entry(&ctx, DataSource::SslWrite, false);
    0
}

// uprobe: SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    on_entry(&ctx, DataSource::SslWrite, true);
    0
}

// uprobe: SSL_read(SSL *ssl, void *buf, int num)
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    on_entry(&ctx, DataSource::SslRead, false);
    0
}

// uprobe: SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    on_entry(&ctx, DataSource::SslRead, true);
    0
}

// uprobe: void SSL_free(SSL *ssl). The allocator hands the same address to the next `SSL *`
// soon after: without this, a new connection would inherit the old one's state (its socket,
// its positions, its "HTTP" verdict) until a syscall inside an SSL call re-tied it, which
// never happens on the memory-BIO path.
#[uprobe]
pub fn ssl_free(ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let key = TlsKey {
        tgid,
        _pad: 0,
        ssl: ctx.arg(0).unwrap_or(0),
    };
    // SAFETY: copy out, then delete.
    if let Some(t) = unsafe { TLS_CONNS.get(&key) }.copied() {
        let _ = TLS_CONNS.remove(&key);
        count(Counter::TlsFreed, 1);
        if t.state == CONN_HTTP {
            emit_tls_close(tgid, id as u32, &t);
        }
    }
    0
}

// uretprobes of the four: int return value.
#[uretprobe]
pub fn ssl_write_ret(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, false);
    0
}

#[uretprobe]
pub fn ssl_write_ex_ret(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, true);
    0
}

#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, false);
    0
}

#[uretprobe]
pub fn ssl_read_ex_ret(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, true);
    0
}

/// True while this thread is inside an SSL call we follow.
#[inline(always)]
pub fn in_ssl_call(id: u64) -> bool {
    // SAFETY: read-only peek.
    unsafe { TLS_ARGS.get(&id) }.is_some()
}

/// True when the process uses a TLS library we follow.
#[inline(always)]
pub fn uses_tls(tgid: u32) -> bool {
    // SAFETY: read-only peek.
    unsafe { TLS_PIDS.get(&tgid) }.is_some()
}

/// Called at the exit of every payload syscall on a TCP socket. Returns true when the bytes
/// are TLS ciphertext that must not be streamed.
/// - Inside an SSL call (socket BIO): the syscall names the call's socket.
/// - Outside, in a process using TLS (memory BIO: asyncio, node): a read is remembered for
///   the thread's next `SSL_read`; a write completes a pending `SSL_write` tie.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn tie_ssl_to_fd(
    id: u64,
    tgid: u32,
    fd: u32,
    sk: u64,
    source: u8,
    ret: i64,
    buf: u64,
    vectored: bool,
) -> bool {
    if let Some(a) = TLS_ARGS.get_ptr_mut(&id) {
        // SAFETY: this thread's own entry.
        let ssl = unsafe {
            (*a).fd = fd;
            (*a).ssl
        };
        mark_socket_tls(tgid, fd, sk, ssl);
        return true;
    }
    if !uses_tls(tgid) {
        return false;
    }
    let key = ConnKey { tgid, fd };
    // SAFETY: read-only peek. (A plain u8, no `Option`: LLVM compared an `Option<u8>` with
    // two values by reading its payload even when `None`, which the verifier refuses.)
    let state = match unsafe { CONNS.get(&key) } {
        Some(c) => c.state,
        None => NO_STATE,
    };
    if state == CONN_HTTP || state == CONN_HTTP_QUIET {
        return false; // plaintext HTTP in a process that also uses TLS
    }
    let egress = DataSource::from_u8(source).is_some_and(|s| s.direction() == DIR_EGRESS);
    if !egress {
        if ret > 0 {
            let _ = LAST_READ_FD.insert(&id, &fd, 0);
        }
    } else if let Some(ssl) = unsafe { PENDING_WRITE.get(&id) }.copied() {
        if ret > 0 && !begins_tls_record(buf, vectored) && writes_http(buf, vectored, ret) {
            // Plaintext HTTP (a request on another socket of this process): the pending tie
            // waits for the thread's next write, these bytes take the plaintext path. Only
            // bytes that look like HTTP are kept from the tie: node's vectored ciphertext
            // writes do not always begin a TLS record in their first segment.
            count(Counter::TlsTieNotRecord, 1);
            return state == CONN_TLS;
        }
        let _ = PENDING_WRITE.remove(&id);
        let tk = TlsKey { tgid, _pad: 0, ssl };
        if let Some(c) = TLS_CONNS.get_ptr_mut(&tk) {
            // SAFETY: map value valid for this run.
            let c = unsafe { &mut *c };
            if c.fd == NO_FD {
                count(Counter::TlsTieNextWrite, 1);
                set_tls_fd(tgid, id as u32, c, fd, ssl);
            }
        }
        return true;
    }
    state == CONN_TLS
}

/// `tie_ssl_to_fd`'s state of a socket the connection map does not hold.
const NO_STATE: u8 = u8::MAX;

/// True when a write's first bytes begin a TLS record (see `sniff::begins_tls_record`).
#[inline(always)]
fn begins_tls_record(buf: u64, vectored: bool) -> bool {
    let base = if vectored {
        // SAFETY: fault-tolerant user read of iov[0].iov_base.
        match unsafe { bpf_probe_read_user(buf as *const u64) } {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        buf
    };
    // SAFETY: fault-tolerant user read.
    match unsafe { bpf_probe_read_user(base as *const [u8; 2]) } {
        Ok(b) => is_tls_record(b),
        Err(_) => false,
    }
}

/// True when a write's bytes begin (or may begin) an HTTP/1.x message.
#[inline(always)]
fn writes_http(buf: u64, vectored: bool, ret: i64) -> bool {
    let p = Payload {
        buf,
        count: 1,
        vectored,
        len: ret as u64,
    };
    sniff_after(&p, SniffHead { word: 0, len: 0 }).0 != Sniff::NotHttp
}

/// Marks a socket as carrying TLS for `ssl`: its syscall bytes are no longer streamed.
#[inline(always)]
fn mark_socket_tls(tgid: u32, fd: u32, sk: u64, ssl: u64) {
    let key = ConnKey { tgid, fd };
    match CONNS.get_ptr_mut(&key) {
        Some(c) => {
            // SAFETY: map value valid for this run.
            let c = unsafe { &mut *c };
            if sk != 0 && c.sk != sk {
                // The fd names another socket than the entry remembers (a close not seen,
                // or an entry made before the socket was known): the socket's own state
                // from now on. A stale `sk` would give this connection the 4-tuple of
                // whatever socket reuses that address next (on loopback: the peer's).
                *c = new_conn(role_of(sk), CONN_TLS, sk);
                add_owner(sk, &key);
            }
            c.state = CONN_TLS;
            c.ssl = ssl;
        }
        None => {
            let mut c = new_conn(role_of(sk), CONN_TLS, sk);
            c.ssl = ssl;
            let _ = CONNS.insert(&key, &c, 0);
            if sk != 0 {
                add_owner(sk, &key);
            }
        }
    }
}

/// Gives a TLS connection its socket; if it is already streamed, tells userspace (TlsTie).
#[inline(always)]
fn set_tls_fd(tgid: u32, tid: u32, c: &mut TlsConnState, fd: u32, ssl: u64) {
    c.fd = fd;
    mark_socket_tls(tgid, fd, 0, ssl);
    if c.state == CONN_HTTP {
        let (sk, role) = socket_of(tgid, fd);
        emit_open(
            EventKind::TlsTie,
            tgid,
            tid,
            NO_FD,
            c.start_ns,
            sk,
            role,
            1,
            fd,
        );
    }
}

#[inline(always)]
fn socket_of(tgid: u32, fd: u32) -> (u64, u8) {
    let sock = ConnKey { tgid, fd };
    // SAFETY: read-only peek.
    match unsafe { CONNS.get(&sock) } {
        Some(s) => (s.sk, s.role),
        None => (0, ROLE_UNKNOWN),
    }
}

#[inline(always)]
fn on_return(ctx: &RetProbeContext, ex: bool) {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copy out, then delete.
    let a = match unsafe { TLS_ARGS.get(&id) } {
        Some(a) => *a,
        None => return,
    };
    let _ = TLS_ARGS.remove(&id);
    let ret: i32 = ctx.ret();
    if a.held != 0 {
        held_return(id, &a, ret, ex);
    }
    let len: u64 = if ex {
        if ret != 1 || a.out_len == 0 {
            return;
        }
        // SAFETY: fault-tolerant user read of the size_t out-parameter.
        match unsafe { bpf_probe_read_user(a.out_len as *const u64) } {
            Ok(n) => n,
            Err(_) => {
                count(Counter::ReadUserFailed, 1);
                return;
            }
        }
    } else {
        if ret <= 0 {
            return;
        }
        ret as u64
    };
    if len == 0 {
        return;
    }
    let tgid = (id >> 32) as u32;
    let tid = id as u32;
    let egress = a.source == DataSource::SslWrite as u8;
    let key = TlsKey {
        tgid,
        _pad: 0,
        ssl: a.ssl,
    };
    let Some(conn) = tls_conn(&key) else {
        return;
    };
    // SAFETY: map value valid for this run.
    let c = unsafe { &mut *conn };
    if a.fd != NO_FD {
        // Authoritative: the call itself used this socket.
        if c.fd != a.fd {
            if c.fd != NO_FD {
                // The SSL* now drives another socket: a new connection.
                *c = new_tls_conn();
            }
            count(Counter::TlsTieInCall, 1);
            set_tls_fd(tgid, tid, c, a.fd, a.ssl);
        }
    } else if c.fd == NO_FD {
        if egress {
            let _ = PENDING_WRITE.insert(&id, &a.ssl, 0);
        } else if let Some(fd) = unsafe { LAST_READ_FD.get(&id) }.copied() {
            count(Counter::TlsTieLastRead, 1);
            set_tls_fd(tgid, tid, c, fd, a.ssl);
        } else {
            count(Counter::TlsNoFd, 1);
        }
    }
    if a.held != 0 {
        return; // the bytes went out at entry (position advanced there); held_return fixed it
    }
    let payload = Payload {
        buf: a.buf,
        count: len,
        vectored: false,
        len,
    };
    let dir = if egress { DIR_EGRESS } else { DIR_INGRESS };
    if skips_call(&mut c.state, c.head_len, &mut c.exchange, dir, &payload) {
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
        // The first call carried of a connection whose exchanges were all skipped.
        CONN_HTTP_QUIET => open_tls_stream(tgid, tid, c),
        CONN_SNIFFING => {
            let head = take_head(&mut c.head_len, c.head_dir, c.head, dir);
            match sniff_after(&payload, head) {
                (Sniff::Http, _) => {
                    prioritise_if_post(tgid, &payload);
                    open_tls_stream(tgid, tid, c);
                    emit_head(tgid, tid, NO_FD, c.start_ns, pos, a.source, c.fd, head);
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
        tgid, tid, NO_FD, c.start_ns, pos, a.source, c.fd, 0, &payload,
    );
}

/// The plaintext of `c` is HTTP: stream it from now on and announce it.
#[inline(always)]
pub fn open_tls_stream(tgid: u32, tid: u32, c: &mut TlsConnState) {
    c.state = CONN_HTTP;
    count(Counter::ConnsHttp, 1);
    let (sk, role) = if c.fd == NO_FD {
        (0, ROLE_UNKNOWN)
    } else {
        socket_of(tgid, c.fd)
    };
    emit_open(
        EventKind::ConnOpen,
        tgid,
        tid,
        NO_FD,
        c.start_ns,
        sk,
        role,
        1,
        c.fd,
    );
}

/// The state of `SSL *` `key`, created (sniffing) when the process has not used it yet.
#[inline(always)]
pub fn tls_conn(key: &TlsKey) -> Option<*mut TlsConnState> {
    if let Some(c) = TLS_CONNS.get_ptr_mut(key) {
        return Some(c);
    }
    if TLS_CONNS.insert(key, &new_tls_conn(), 0).is_err() {
        count(Counter::ConnMapFull, 1);
        return None;
    }
    TLS_CONNS.get_ptr_mut(key)
}

#[inline(always)]
fn new_tls_conn() -> TlsConnState {
    TlsConnState {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        egress_pos: 0,
        ingress_pos: 0,
        fd: NO_FD,
        state: CONN_SNIFFING,
        misses: 0,
        head_len: 0,
        head_dir: 0,
        head: 0,
        exchange: 0,
        _pad: [0; 7],
    }
}

/// The return of a write whose bytes were emitted at entry (held): if it moved fewer bytes
/// than it offered, pull the stream position back so the retry's bytes line up.
#[inline(always)]
fn held_return(id: u64, a: &TlsArgs, ret: i32, ex: bool) {
    let moved: u64 = if ex {
        if ret != 1 || a.out_len == 0 {
            0
        } else {
            // SAFETY: fault-tolerant user read of the size_t out-parameter.
            unsafe { bpf_probe_read_user(a.out_len as *const u64) }.unwrap_or(0)
        }
    } else if ret > 0 {
        ret as u64
    } else {
        0
    };
    if moved >= a.held_len {
        return;
    }
    count(Counter::HoldShortWrite, 1);
    let key = TlsKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: a.ssl,
    };
    if let Some(c) = TLS_CONNS.get_ptr_mut(&key) {
        // SAFETY: map value valid for this run.
        let c = unsafe { &mut *c };
        if c.egress_pos == a.held_pos + a.held_len {
            c.egress_pos = a.held_pos + moved;
        }
    }
}
