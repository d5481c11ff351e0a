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
        ConnKey, TlsConnState, TlsKey, CONN_HTTP, CONN_IGNORED, CONN_SNIFFING, CONN_TLS, NO_FD,
        SNIFF_MAX_MISSES,
    },
    counters::Counter,
    event::{DataSource, ROLE_UNKNOWN},
};

use crate::{
    ctx::skip_tgid,
    emit::{emit_open, emit_payload, first_bytes, looks_like_http, Payload},
    maps::{count, TlsArgs, CONNS, TLS_ARGS, TLS_CONNS},
    syscalls::new_conn,
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
    let a = TlsArgs {
        ssl,
        buf,
        out_len,
        fd: NO_FD,
        source: source as u8,
        _pad: [0; 3],
    };
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

/// Called at the exit of a payload syscall on a TCP socket. Inside an SSL call: remember the
/// fd for the call, mark the socket TLS (its bytes are ciphertext), and return true.
#[inline(always)]
pub fn tie_ssl_to_fd(id: u64, tgid: u32, fd: u32, sk: u64) -> bool {
    let Some(a) = TLS_ARGS.get_ptr_mut(&id) else {
        return false;
    };
    // SAFETY: this thread's own entry.
    let ssl = unsafe {
        (*a).fd = fd;
        (*a).ssl
    };
    let key = ConnKey { tgid, fd };
    match CONNS.get_ptr_mut(&key) {
        Some(c) => {
            // SAFETY: map value valid for this run.
            let c = unsafe { &mut *c };
            c.state = CONN_TLS;
            c.ssl = ssl;
            if c.sk == 0 {
                c.sk = sk;
            }
        }
        None => {
            let mut c = new_conn(ROLE_UNKNOWN, CONN_TLS, sk);
            c.ssl = ssl;
            let _ = CONNS.insert(&key, &c, 0);
        }
    }
    true
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
    let key = TlsKey {
        tgid,
        _pad: 0,
        ssl: a.ssl,
    };
    let conn = match TLS_CONNS.get_ptr_mut(&key) {
        Some(c) => c,
        None => {
            if a.fd == NO_FD {
                // No syscall inside this call and the SSL* was never tied: unknown socket.
                count(Counter::TlsNoFd, 1);
                return;
            }
            let st = new_tls_conn(a.fd);
            if TLS_CONNS.insert(&key, &st, 0).is_err() {
                count(Counter::ConnMapFull, 1);
                return;
            }
            match TLS_CONNS.get_ptr_mut(&key) {
                Some(c) => c,
                None => return,
            }
        }
    };
    // SAFETY: map value valid for this run.
    let c = unsafe { &mut *conn };
    if a.fd != NO_FD && a.fd != c.fd {
        // The SSL* now drives another socket: a new connection.
        *c = new_tls_conn(a.fd);
    }
    let fd = c.fd;
    let egress = a.source == DataSource::SslWrite as u8;
    let pos = if egress { c.egress_pos } else { c.ingress_pos };
    if egress {
        c.egress_pos = pos + len;
    } else {
        c.ingress_pos = pos + len;
    }
    let payload = Payload {
        buf: a.buf,
        count: len,
        vectored: false,
        len,
    };
    match c.state {
        CONN_HTTP => {}
        CONN_SNIFFING => {
            if looks_like_http(&first_bytes(&payload)) {
                c.state = CONN_HTTP;
                count(Counter::ConnsHttp, 1);
                let sock = ConnKey { tgid, fd };
                // SAFETY: read-only peek.
                let (sk, role) = match unsafe { CONNS.get(&sock) } {
                    Some(s) => (s.sk, s.role),
                    None => (0, ROLE_UNKNOWN),
                };
                emit_open(tgid, id as u32, fd, c.start_ns, sk, role, 1);
            } else {
                c.misses += 1;
                if c.misses >= SNIFF_MAX_MISSES {
                    c.state = CONN_IGNORED;
                    count(Counter::ConnsIgnored, 1);
                }
                return;
            }
        }
        _ => return,
    }
    emit_payload(tgid, id as u32, fd, c.start_ns, pos, a.source, &payload);
}

#[inline(always)]
fn new_tls_conn(fd: u32) -> TlsConnState {
    TlsConnState {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        egress_pos: 0,
        ingress_pos: 0,
        fd,
        state: CONN_SNIFFING,
        misses: 0,
        _pad: [0; 2],
    }
}
