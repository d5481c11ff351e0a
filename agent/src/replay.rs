//! Recorded kernel events: the file format `mcpwarden run --record FILE` writes, and an
//! offline replay of such a file through the whole pure pipeline (conn → http → rpc → mcp).
//!
//! # Format (version 1)
//!
//! JSON lines, one [`KernelEvent`] per line, in the order the agent decoded them from the
//! ring buffer. Every line is an object whose `"kind"` says which event it is; connection
//! events name their connection with `pid`, `fd` and `start_ns` ([`ConnIdent`]):
//!
//! ```text
//! {"kind":"open","pid":7,"fd":5,"start_ns":90,"ts_ns":100,"local":"127.0.0.1:8000","remote":"127.0.0.1:50312","connector":false,"comm":"python3","tls":false}
//! {"kind":"data","pid":7,"fd":5,"start_ns":90,"tid":7,"ts_ns":120,"dir":"ingress","pos":0,"syscall_len":4,"truncated":false,"b64":"UE9TVA=="}
//! {"kind":"tls_tie","pid":7,"fd":4294967295,"start_ns":95,"local":"127.0.0.1:8443","remote":"127.0.0.1:50313","connector":false,"sock_fd":6}
//! {"kind":"close","pid":7,"fd":5,"start_ns":90,"ts_ns":300,"egress_bytes":0,"ingress_bytes":4}
//! {"kind":"exec","pid":8,"ts_ns":400}
//! {"kind":"link_map_change","pid":8,"ts_ns":450}
//! {"kind":"open","pid":9,"fd":4,"start_ns":500,"ts_ns":510,"local":null,"remote":null,"connector":null,"comm":"node","tls":false,"sock_fd":4,"proc_local":"127.0.0.1:9000","proc_remote":"127.0.0.1:41000"}
//! ```
//!
//! * `local`, `remote`: `"ip:port"` (`"[v6]:port"`), or `null` when the kernel did not see
//!   the connection being established.
//! * `connector`: `true` when the process called `connect(2)`, `false` for `accept(2)`,
//!   `null` when unknown.
//! * `dir`: `"egress"` (written by the process) or `"ingress"` (read by it).
//! * `pos`: stream offset of the first payload byte in that direction; `syscall_len`: bytes
//!   the whole syscall moved; `truncated`: the kernel carried fewer bytes than that.
//! * `sock_fd` (`open`, `data`; omitted when unknown): the socket fd the bytes went through.
//!   TLS connections are named by `fd` 4294967295 and their generation; `tls_tie` says
//!   which socket (and 4-tuple) such a connection turned out to use.
//! * `proc_local`, `proc_remote` (`open`, `tls_tie`; omitted when not resolved; added in
//!   0.2, older readers ignore them): the 4-tuple the live agent read from `/proc` when the
//!   kernel gave none (a connection established before the agent started), at the moment
//!   the event came off the ring. A replay uses them and never reads `/proc` itself.
//! * `link_map_change`: a process's dynamic loader mapped or unmapped a library (`dlopen`);
//!   the live agent looked at its mappings for TLS libraries. The pipeline ignores it.
//! * `b64`: the payload bytes, standard base64 (RFC 4648 §4, `+/`, `=`-padded, no line
//!   breaks). Base64 rather than hex keeps fixtures a third larger than the raw bytes
//!   instead of twice as large.
//!
//! Empty lines are skipped. Unknown fields are ignored, so a later version may add some.
//!
//! # Replay
//!
//! [`replay`] runs events through a fresh [`ConnTable`] with the kernel timestamps they
//! carry: housekeeping ticks are emulated from those timestamps (every
//! [`ReplayConfig::tick_ns`] of event time, as the live agent ticks once a second), and the
//! end of the run is the latest timestamp seen. Nothing reads the clock, so a replay gives
//! the same records every time, on any host: the pipeline reads neither the clock nor
//! `/proc` (a connection whose `open` is missing starts without a 4-tuple or `comm`).

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::capture::events::{ConnIdent, Direction, KernelEvent};
use crate::conn::ConnTable;
use crate::http::Limits;
use crate::mcp::{McpConfig, McpTracker, Record};

/// One line of a recording (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Open {
        pid: u32,
        fd: u32,
        start_ns: u64,
        ts_ns: u64,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        connector: Option<bool>,
        comm: String,
        tls: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sock_fd: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proc_local: Option<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proc_remote: Option<SocketAddr>,
    },
    TlsTie {
        pid: u32,
        fd: u32,
        start_ns: u64,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        connector: Option<bool>,
        sock_fd: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proc_local: Option<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proc_remote: Option<SocketAddr>,
    },
    Data {
        pid: u32,
        fd: u32,
        start_ns: u64,
        tid: u32,
        ts_ns: u64,
        dir: Dir,
        pos: u64,
        syscall_len: u32,
        truncated: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sock_fd: Option<u32>,
        b64: String,
    },
    Close {
        pid: u32,
        fd: u32,
        start_ns: u64,
        ts_ns: u64,
        egress_bytes: u64,
        ingress_bytes: u64,
    },
    Exec {
        pid: u32,
        ts_ns: u64,
    },
    LinkMapChange {
        pid: u32,
        ts_ns: u64,
    },
}

/// Both halves of a resolved tuple, or none.
fn both(l: Option<SocketAddr>, r: Option<SocketAddr>) -> Option<(SocketAddr, SocketAddr)> {
    l.zip(r)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Dir {
    Egress,
    Ingress,
}

/// Why a recording could not be read or written.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the event recording")]
    Write(#[source] io::Error),
    #[error("line {line}: not a recorded kernel event")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: field `b64` is not valid base64")]
    Base64 {
        line: usize,
        #[source]
        source: base64::DecodeError,
    },
}

/// The line of a recording for `ev`.
pub fn event_to_line(ev: &KernelEvent) -> String {
    let line = match ev {
        KernelEvent::Open {
            conn,
            ts_ns,
            local,
            remote,
            connector,
            comm,
            tls,
            sock_fd,
            proc_tuple,
        } => Line::Open {
            pid: conn.pid,
            fd: conn.fd,
            start_ns: conn.start_ns,
            ts_ns: *ts_ns,
            local: *local,
            remote: *remote,
            connector: *connector,
            comm: comm.clone(),
            tls: *tls,
            sock_fd: *sock_fd,
            proc_local: proc_tuple.map(|t| t.0),
            proc_remote: proc_tuple.map(|t| t.1),
        },
        KernelEvent::TlsTie {
            conn,
            local,
            remote,
            connector,
            sock_fd,
            proc_tuple,
        } => Line::TlsTie {
            pid: conn.pid,
            fd: conn.fd,
            start_ns: conn.start_ns,
            local: *local,
            remote: *remote,
            connector: *connector,
            sock_fd: *sock_fd,
            proc_local: proc_tuple.map(|t| t.0),
            proc_remote: proc_tuple.map(|t| t.1),
        },
        KernelEvent::Data {
            conn,
            tid,
            ts_ns,
            direction,
            pos,
            syscall_len,
            truncated,
            sock_fd,
            bytes,
        } => Line::Data {
            pid: conn.pid,
            fd: conn.fd,
            start_ns: conn.start_ns,
            tid: *tid,
            ts_ns: *ts_ns,
            dir: match direction {
                Direction::Egress => Dir::Egress,
                Direction::Ingress => Dir::Ingress,
            },
            pos: *pos,
            syscall_len: *syscall_len,
            truncated: *truncated,
            sock_fd: *sock_fd,
            b64: B64.encode(bytes),
        },
        KernelEvent::Close {
            conn,
            ts_ns,
            egress_bytes,
            ingress_bytes,
        } => Line::Close {
            pid: conn.pid,
            fd: conn.fd,
            start_ns: conn.start_ns,
            ts_ns: *ts_ns,
            egress_bytes: *egress_bytes,
            ingress_bytes: *ingress_bytes,
        },
        KernelEvent::Exec { pid, ts_ns } => Line::Exec {
            pid: *pid,
            ts_ns: *ts_ns,
        },
        KernelEvent::LinkMapChange { pid, ts_ns } => Line::LinkMapChange {
            pid: *pid,
            ts_ns: *ts_ns,
        },
    };
    // Plain data: serialising it cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// Parses one non-empty line of a recording; `line_no` (1-based) goes into errors.
pub fn event_from_line(text: &str, line_no: usize) -> Result<KernelEvent, ReplayError> {
    let line: Line = serde_json::from_str(text).map_err(|source| ReplayError::Json {
        line: line_no,
        source,
    })?;
    let ident = |pid, fd, start_ns| ConnIdent { pid, fd, start_ns };
    Ok(match line {
        Line::Open {
            pid,
            fd,
            start_ns,
            ts_ns,
            local,
            remote,
            connector,
            comm,
            tls,
            sock_fd,
            proc_local,
            proc_remote,
        } => KernelEvent::Open {
            conn: ident(pid, fd, start_ns),
            ts_ns,
            local,
            remote,
            connector,
            comm,
            tls,
            sock_fd,
            proc_tuple: both(proc_local, proc_remote),
        },
        Line::TlsTie {
            pid,
            fd,
            start_ns,
            local,
            remote,
            connector,
            sock_fd,
            proc_local,
            proc_remote,
        } => KernelEvent::TlsTie {
            conn: ident(pid, fd, start_ns),
            local,
            remote,
            connector,
            sock_fd,
            proc_tuple: both(proc_local, proc_remote),
        },
        Line::Data {
            pid,
            fd,
            start_ns,
            tid,
            ts_ns,
            dir,
            pos,
            syscall_len,
            truncated,
            sock_fd,
            b64,
        } => KernelEvent::Data {
            conn: ident(pid, fd, start_ns),
            tid,
            ts_ns,
            direction: match dir {
                Dir::Egress => Direction::Egress,
                Dir::Ingress => Direction::Ingress,
            },
            pos,
            syscall_len,
            truncated,
            sock_fd,
            bytes: B64.decode(&b64).map_err(|source| ReplayError::Base64 {
                line: line_no,
                source,
            })?,
        },
        Line::Close {
            pid,
            fd,
            start_ns,
            ts_ns,
            egress_bytes,
            ingress_bytes,
        } => KernelEvent::Close {
            conn: ident(pid, fd, start_ns),
            ts_ns,
            egress_bytes,
            ingress_bytes,
        },
        Line::Exec { pid, ts_ns } => KernelEvent::Exec { pid, ts_ns },
        Line::LinkMapChange { pid, ts_ns } => KernelEvent::LinkMapChange { pid, ts_ns },
    })
}

/// Every event of a recording held in memory.
pub fn parse_events(text: &str) -> Result<Vec<KernelEvent>, ReplayError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| event_from_line(l, i + 1))
        .collect()
}

/// Every event of the recording at `path`.
pub fn read_events(path: &Path) -> Result<Vec<KernelEvent>, ReplayError> {
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut events = Vec::new();
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReplayError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !line.trim().is_empty() {
            events.push(event_from_line(&line, i + 1)?);
        }
    }
    Ok(events)
}

/// Appends events to a recording (buffered: call [`EventRecorder::flush`] now and then).
#[derive(Debug)]
pub struct EventRecorder<W: Write> {
    out: io::BufWriter<W>,
}

impl<W: Write> EventRecorder<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: io::BufWriter::with_capacity(256 * 1024, out),
        }
    }

    pub fn record(&mut self, ev: &KernelEvent) -> Result<(), ReplayError> {
        let mut line = event_to_line(ev);
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .map_err(ReplayError::Write)
    }

    pub fn flush(&mut self) -> Result<(), ReplayError> {
        self.out.flush().map_err(ReplayError::Write)
    }
}

/// How a replay configures the pipeline.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub mcp: McpConfig,
    pub limits: Limits,
    pub max_conns: usize,
    /// Event time between two emulated housekeeping ticks (`ConnTable::on_tick`).
    pub tick_ns: u64,
}

impl Default for ReplayConfig {
    /// What `mcpwarden run` uses by default.
    fn default() -> Self {
        Self {
            mcp: McpConfig::default(),
            limits: Limits::default(),
            max_conns: 65_536,
            tick_ns: 1_000_000_000,
        }
    }
}

/// Runs `events` through a fresh connection table, then ends the run at the latest event
/// time: every record the pipeline produces, in order.
pub fn replay(events: impl IntoIterator<Item = KernelEvent>, cfg: &ReplayConfig) -> Vec<Record> {
    let mut table = ConnTable::new(McpTracker::new(cfg.mcp.clone()), cfg.limits, cfg.max_conns);
    let mut out = Vec::new();
    let mut last_tick: Option<u64> = None;
    let mut latest = 0u64;
    for ev in events {
        latest = latest.max(event_ts(&ev).unwrap_or(0));
        table.on_event(ev, &mut out);
        let since = *last_tick.get_or_insert(latest);
        if cfg.tick_ns > 0 && latest.saturating_sub(since) >= cfg.tick_ns {
            table.on_tick(latest, &mut out);
            last_tick = Some(latest);
        }
    }
    table.finish(latest, &mut out);
    out
}

/// The kernel time of an event (`None` for a TLS tie, which carries none).
pub fn event_ts(ev: &KernelEvent) -> Option<u64> {
    match ev {
        KernelEvent::Data { ts_ns, .. }
        | KernelEvent::Open { ts_ns, .. }
        | KernelEvent::Close { ts_ns, .. }
        | KernelEvent::Exec { ts_ns, .. }
        | KernelEvent::LinkMapChange { ts_ns, .. } => Some(*ts_ns),
        KernelEvent::TlsTie { .. } => None,
    }
}

/// The pid an event belongs to.
pub fn event_pid(ev: &KernelEvent) -> u32 {
    match ev {
        KernelEvent::Data { conn, .. }
        | KernelEvent::Open { conn, .. }
        | KernelEvent::TlsTie { conn, .. }
        | KernelEvent::Close { conn, .. } => conn.pid,
        KernelEvent::Exec { pid, .. } | KernelEvent::LinkMapChange { pid, .. } => *pid,
    }
}

/// `ev` cut into several `Data` events at the payload offsets `cuts` (ascending; offsets
/// outside `1..len` are ignored): consecutive `pos`, the same connection, thread, time,
/// syscall length and truncation flag. Other events come back unchanged.
pub fn split_data(ev: KernelEvent, cuts: &[usize]) -> Vec<KernelEvent> {
    let KernelEvent::Data {
        conn,
        tid,
        ts_ns,
        direction,
        pos,
        syscall_len,
        truncated,
        sock_fd,
        bytes,
    } = ev
    else {
        return vec![ev];
    };
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0usize;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if cut <= start || cut > bytes.len() {
            continue;
        }
        pieces.push(KernelEvent::Data {
            conn,
            tid,
            ts_ns,
            direction,
            pos: pos + start as u64,
            syscall_len,
            truncated,
            sock_fd,
            bytes: bytes[start..cut].to_vec(),
        });
        start = cut;
    }
    if pieces.is_empty() {
        // An empty payload stays one (empty) event.
        pieces.push(KernelEvent::Data {
            conn,
            tid,
            ts_ns,
            direction,
            pos,
            syscall_len,
            truncated,
            sock_fd,
            bytes,
        });
    }
    pieces
}

/// Records as JSON lines (the `mcpwarden run` output format), one `\n`-terminated line each.
pub fn records_to_json_lines(records: &[Record]) -> String {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).unwrap_or_default());
        s.push('\n');
    }
    s
}

/// `mcpwarden replay FILE`: replays a recording with the default configuration and prints
/// the records as JSON lines on stdout.
pub fn replay_file_to_stdout(path: &Path) -> Result<(), ReplayError> {
    let events = read_events(path)?;
    let records = replay(events, &ReplayConfig::default());
    let mut out = io::stdout().lock();
    out.write_all(records_to_json_lines(&records).as_bytes())
        .and_then(|()| out.flush())
        .map_err(ReplayError::Write)
}

/// Standard base64 (RFC 4648 §4) with padding, as the format says. Padding is required on
/// reading; bits left over in the last symbol are ignored, as this reader always did.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

#[cfg(test)]
mod tests;
