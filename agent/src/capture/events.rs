//! Ring-buffer records → typed events. Pure: unit-tested with hand-built records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mcpwarden_common::conn::NO_FD;
use mcpwarden_common::event::{
    ConnCloseEvent, ConnOpenEvent, DataEventHeader, EventHeader, EventKind, DATA_EVENT_HEADER_LEN,
    DIR_EGRESS,
};
use thiserror::Error;

/// One connection of one process: (tgid, fd, kernel creation time). The creation time is the
/// generation, so a reused fd is another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnIdent {
    pub pid: u32,
    pub fd: u32,
    pub start_ns: u64,
}

impl ConnIdent {
    /// TLS connections are named by (pid, generation): their socket may be learned later.
    pub fn is_tls(&self) -> bool {
        self.fd == NO_FD
    }
}

impl std::fmt::Display for ConnIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_tls() {
            write!(f, "{}:tls:{}", self.pid, self.start_ns)
        } else {
            write!(f, "{}:{}:{}", self.pid, self.fd, self.start_ns)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written/sent by the observed process.
    Egress,
    /// Read/received by it.
    Ingress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Data {
        conn: ConnIdent,
        tid: u32,
        ts_ns: u64,
        direction: Direction,
        /// Stream offset of `bytes[0]` in this direction.
        pos: u64,
        /// Bytes the whole syscall moved.
        syscall_len: u32,
        truncated: bool,
        /// Socket fd, when known (TLS connections may learn it later).
        sock_fd: Option<u32>,
        bytes: Vec<u8>,
    },
    Open {
        conn: ConnIdent,
        ts_ns: u64,
        /// Kernel-seen 4-tuple (None when the connection predates the agent).
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        /// `Some(true)`: the process called connect(2); `Some(false)`: accept(2).
        connector: Option<bool>,
        comm: String,
        /// TLS plaintext captured in the TLS library.
        tls: bool,
        /// Socket fd, when known.
        sock_fd: Option<u32>,
    },
    /// The socket of a TLS connection became known.
    TlsTie {
        conn: ConnIdent,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        connector: Option<bool>,
        sock_fd: u32,
    },
    Close {
        conn: ConnIdent,
        ts_ns: u64,
        egress_bytes: u64,
        ingress_bytes: u64,
    },
    /// A process exec'd (userspace looks for TLS symbols in it).
    Exec { pid: u32, ts_ns: u64 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("ring record of {len} bytes is shorter than its {need}-byte header")]
    Short { len: usize, need: usize },
    #[error("ring record has unknown kind {kind}")]
    UnknownKind { kind: u32 },
    #[error("data record says {claimed} payload bytes but carries {carried}")]
    LengthMismatch { claimed: usize, carried: usize },
}

fn read_struct<T: Copy>(b: &[u8]) -> Result<T, EventDecodeError> {
    let need = std::mem::size_of::<T>();
    if b.len() < need {
        return Err(EventDecodeError::Short { len: b.len(), need });
    }
    // SAFETY: length checked; T is a repr(C) plain-old-data ABI type; unaligned read.
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

fn ident(h: &EventHeader) -> ConnIdent {
    ConnIdent {
        pid: h.tgid,
        fd: h.fd,
        start_ns: h.conn_start_ns,
    }
}

fn addr(family: u16, a: &[u8; 16], port: u16) -> Option<SocketAddr> {
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        10 => {
            let v6 = Ipv6Addr::from(*a);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn role(r: u8) -> Option<bool> {
    match r {
        mcpwarden_common::event::ROLE_CONNECTOR => Some(true),
        mcpwarden_common::event::ROLE_ACCEPTOR => Some(false),
        _ => None,
    }
}

pub fn comm_str(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

/// Decodes one ring-buffer record.
/// The hold a data record belongs to (hold mode): the writing process was stopped before
/// these bytes left. `None` for every other record.
pub fn hold_of(rec: &[u8]) -> Option<HeldChunk> {
    let h: EventHeader = read_struct(rec).ok()?;
    if EventKind::from_u32(h.kind) != Some(EventKind::SocketData) {
        return None;
    }
    let d: DataEventHeader = read_struct(rec).ok()?;
    (d.hold_id != 0).then_some(HeldChunk {
        hold_id: d.hold_id,
        pid: h.tgid,
        tid: h.tid,
        ts_ns: h.ts_ns,
        pos: d.pos,
        len: d.len,
        syscall_len: d.syscall_len,
        truncated: d.flags & mcpwarden_common::event::FLAG_TRUNCATED != 0,
        sock_fd: (d.sock_fd != NO_FD).then_some(d.sock_fd),
    })
}

/// One chunk of a held write (see [`hold_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldChunk {
    pub hold_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ts_ns: u64,
    /// Stream position of this chunk, its length, and the whole write's length.
    pub pos: u64,
    pub len: u32,
    pub syscall_len: u32,
    pub truncated: bool,
    /// The socket fd the held write is on, when the kernel knew it.
    pub sock_fd: Option<u32>,
}

pub fn decode(rec: &[u8]) -> Result<KernelEvent, EventDecodeError> {
    let h: EventHeader = read_struct(rec)?;
    match EventKind::from_u32(h.kind) {
        Some(EventKind::SocketData) => {
            let d: DataEventHeader = read_struct(rec)?;
            let carried = rec.len() - DATA_EVENT_HEADER_LEN;
            let claimed = d.len as usize;
            // The ring rounds records up to 8 bytes: carried may exceed claimed by padding.
            if claimed > carried {
                return Err(EventDecodeError::LengthMismatch { claimed, carried });
            }
            Ok(KernelEvent::Data {
                conn: ident(&h),
                tid: h.tid,
                ts_ns: h.ts_ns,
                direction: if d.direction == DIR_EGRESS {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                pos: d.pos,
                syscall_len: d.syscall_len,
                truncated: d.flags & mcpwarden_common::event::FLAG_TRUNCATED != 0,
                sock_fd: (d.sock_fd != NO_FD).then_some(d.sock_fd),
                bytes: rec[DATA_EVENT_HEADER_LEN..DATA_EVENT_HEADER_LEN + claimed].to_vec(),
            })
        }
        Some(EventKind::ConnOpen) => {
            let o: ConnOpenEvent = read_struct(rec)?;
            Ok(KernelEvent::Open {
                conn: ident(&h),
                ts_ns: h.ts_ns,
                local: addr(o.family, &o.laddr, o.lport),
                remote: addr(o.family, &o.raddr, o.rport),
                connector: role(o.role),
                comm: comm_str(&o.comm),
                tls: o.tls != 0,
                sock_fd: (o.sock_fd != NO_FD).then_some(o.sock_fd),
            })
        }
        Some(EventKind::TlsTie) => {
            let o: ConnOpenEvent = read_struct(rec)?;
            Ok(KernelEvent::TlsTie {
                conn: ident(&h),
                local: addr(o.family, &o.laddr, o.lport),
                remote: addr(o.family, &o.raddr, o.rport),
                connector: role(o.role),
                sock_fd: o.sock_fd,
            })
        }
        Some(EventKind::ConnClose) => {
            let c: ConnCloseEvent = read_struct(rec)?;
            Ok(KernelEvent::Close {
                conn: ident(&h),
                ts_ns: h.ts_ns,
                egress_bytes: c.egress_bytes,
                ingress_bytes: c.ingress_bytes,
            })
        }
        Some(EventKind::ProcessExec) => Ok(KernelEvent::Exec {
            pid: h.tgid,
            ts_ns: h.ts_ns,
        }),
        None => Err(EventDecodeError::UnknownKind { kind: h.kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwarden_common::conn::NO_FD;
    use mcpwarden_common::event::{DataSource, DIR_INGRESS};

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            tgid: 42,
            tid: 43,
            fd: 7,
            ts_ns: 1000,
            conn_start_ns: 900,
        }
    }

    #[test]
    fn a_data_record_yields_its_payload_and_ignores_ring_padding() {
        let d = DataEventHeader {
            header: header(EventKind::SocketData),
            pos: 10,
            syscall_len: 5,
            len: 5,
            direction: DIR_INGRESS,
            source: DataSource::Read as u8,
            flags: 0,
            _pad: 0,
            sock_fd: 7,
            hold_id: 0,
        };
        let mut rec = bytes_of(&d);
        rec.extend_from_slice(b"hello\0\0\0");
        let ev = decode(&rec).unwrap();
        assert_eq!(
            ev,
            KernelEvent::Data {
                conn: ConnIdent {
                    pid: 42,
                    fd: 7,
                    start_ns: 900
                },
                tid: 43,
                ts_ns: 1000,
                direction: Direction::Ingress,
                pos: 10,
                syscall_len: 5,
                truncated: false,
                sock_fd: Some(7),
                bytes: b"hello".to_vec(),
            }
        );
    }

    #[test]
    fn a_data_record_claiming_more_than_it_carries_is_an_error() {
        let d = DataEventHeader {
            header: header(EventKind::SocketData),
            pos: 0,
            syscall_len: 9,
            len: 9,
            direction: DIR_EGRESS,
            source: DataSource::Write as u8,
            flags: 0,
            _pad: 0,
            sock_fd: 7,
            hold_id: 0,
        };
        let mut rec = bytes_of(&d);
        rec.extend_from_slice(b"abc");
        assert_eq!(
            decode(&rec),
            Err(EventDecodeError::LengthMismatch {
                claimed: 9,
                carried: 3
            })
        );
    }

    #[test]
    fn an_open_record_with_an_ipv4_mapped_v6_tuple_reads_as_ipv4() {
        let mut la = [0u8; 16];
        la[10] = 0xff;
        la[11] = 0xff;
        la[12..].copy_from_slice(&[127, 0, 0, 1]);
        let o = ConnOpenEvent {
            header: header(EventKind::ConnOpen),
            sk: 1,
            family: 10,
            lport: 8080,
            rport: 5555,
            role: mcpwarden_common::event::ROLE_ACCEPTOR,
            tls: 1,
            laddr: la,
            raddr: la,
            comm: *b"python3\0\0\0\0\0\0\0\0\0",
            sock_fd: NO_FD,
            _pad2: 0,
        };
        match decode(&bytes_of(&o)).unwrap() {
            KernelEvent::Open {
                local,
                remote,
                connector,
                comm,
                ..
            } => {
                assert_eq!(local, Some("127.0.0.1:8080".parse().unwrap()));
                assert_eq!(remote, Some("127.0.0.1:5555".parse().unwrap()));
                assert_eq!(connector, Some(false));
                assert_eq!(comm, "python3");
            }
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert!(matches!(
            decode(&[1, 0, 0]),
            Err(EventDecodeError::Short { .. })
        ));
        let mut h = header(EventKind::ConnClose);
        h.kind = 77;
        assert_eq!(
            decode(&bytes_of(&h)),
            Err(EventDecodeError::UnknownKind { kind: 77 })
        );
    }
}
