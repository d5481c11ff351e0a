//! `cargo bench -p mcpwarden --bench idle_mem -- [N]`: the heap each idle session view holds
//! (bytes asked of the allocator, without its overhead), after N handshake-era handshakes
//! (`initialize`, its answer with a fresh `Mcp-Session-Id`, `notifications/initialized`, 202)
//! spread over 20 keep-alive connections; the inline size of a session; and the resident
//! memory each view adds under the agent's allocator (mimalloc, freed pages given back as the
//! agent does each second). The figure the idle-sessions RSS of `cargo xtask bench` is made
//! of, without the kernel, the ring buffer and the agent's other work.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

use mimalloc::MiMalloc;

/// Counts the bytes live on the heap, allocating with the agent's allocator (so the RSS
/// figure is the agent's too).
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
// SAFETY: forwards every call to mimalloc unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::conn::ConnTable;
use mcpwarden::mcp::McpTracker;
use mcpwarden::replay::ReplayConfig;

fn data(conn: ConnIdent, ts: u64, dir: Direction, pos: u64, b: &[u8]) -> KernelEvent {
    KernelEvent::Data {
        conn,
        tid: conn.pid,
        ts_ns: ts,
        direction: dir,
        pos,
        syscall_len: b.len() as u32,
        truncated: false,
        sock_fd: Some(conn.fd),
        bytes: b.to_vec(),
    }
}

fn main() {
    let cfg = ReplayConfig::default();
    let mut table = ConnTable::new(McpTracker::new(cfg.mcp.clone()), cfg.limits, cfg.max_conns);
    let mut out = Vec::new();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let conns: Vec<ConnIdent> = (0..20u32)
        .map(|i| ConnIdent {
            pid: 100 + i % 2,
            fd: 10 + i,
            start_ns: 1 + i as u64,
        })
        .collect();
    let mut pos = vec![(0u64, 0u64); conns.len()];
    for (i, c) in conns.iter().enumerate() {
        table.on_event(
            KernelEvent::Open {
                conn: *c,
                ts_ns: 1,
                local: Some(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    40000 + i as u16 / 2,
                ))),
                remote: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8000))),
                connector: Some(i.is_multiple_of(2)),
                comm: "python3".into(),
                tls: false,
                sock_fd: Some(c.fd),
                proc_tuple: None,
            },
            &mut out,
        );
    }
    let mut ts = 10;
    let mut measure = |table: &mut ConnTable,
                       out: &mut Vec<_>,
                       from: usize,
                       to: usize,
                       pos: &mut Vec<(u64, u64)>| {
        for s in from..to {
            let ci = s % conns.len();
            let c = conns[ci];
            let client = ci.is_multiple_of(2);
            let sid = format!("sess-{s:08}-0123456789abcdef");
            let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{},"roots":{"listChanged":true}},"clientInfo":{"name":"mcp","version":"0.1.0"}}}"#;
            let req = format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}", body.len(), body);
            let rbody = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"experimental":{},"prompts":{"listChanged":false},"resources":{"subscribe":false,"listChanged":false},"tools":{"listChanged":false}},"serverInfo":{"name":"bench-server","version":"1.0.0"}}}"#;
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{}", rbody.len(), rbody);
            let nbody = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
            let note = format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\nMcp-Session-Id: {sid}\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\n\r\n{}", nbody.len(), nbody);
            let acc = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string();
            let (out_dir, in_dir) = if client {
                (Direction::Egress, Direction::Ingress)
            } else {
                (Direction::Ingress, Direction::Egress)
            };
            for (d, b) in [
                (out_dir, req),
                (in_dir, resp),
                (out_dir, note),
                (in_dir, acc),
            ] {
                ts += 1000;
                let p = if d == Direction::Egress {
                    &mut pos[ci].0
                } else {
                    &mut pos[ci].1
                };
                table.on_event(data(c, ts, d, *p, b.as_bytes()), out);
                *p += b.len() as u64;
            }
            out.clear();
        }
    };
    measure(&mut table, &mut out, 0, 100, &mut pos);
    let before = LIVE.load(Ordering::Relaxed);
    let rss_before = rss_after_collect();
    measure(&mut table, &mut out, 100, 100 + n, &mut pos);
    let after = LIVE.load(Ordering::Relaxed);
    let rss_after = rss_after_collect();
    println!(
        "a session is {} bytes inline (boxed in the tracker's map)",
        std::mem::size_of::<mcpwarden::mcp::McpSession>()
    );
    println!(
        "{n} idle session views: {} bytes of heap per view ({} in all; {} sessions tracked)",
        (after - before) / n as isize,
        after - before,
        table.tracker().stats().sessions
    );
    println!(
        "resident memory (mimalloc, freed pages purged as the agent does): {} bytes per view",
        (rss_after - rss_before) / n as i64
    );
}

extern "C" {
    fn mi_collect(force: bool);
}

/// `VmRSS` in bytes once mimalloc has given back what it can (the agent's one-second tick).
fn rss_after_collect() -> i64 {
    // SAFETY: no preconditions.
    unsafe { mi_collect(true) };
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
