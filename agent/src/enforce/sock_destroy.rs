//! Resetting one TCP connection from outside its process: `SOCK_DESTROY` through netlink
//! `sock_diag` (what `ss -K` does; needs `CONFIG_INET_DIAG_DESTROY` and `CAP_NET_ADMIN`).
//! The destroyed socket's owner gets `ECONNABORTED` on its next call; the peer gets a TCP RST.
//!
//! The socket is named by its exact 4-tuple as seen from the process that owns it (local
//! address and port, remote address and port). The kernel's lookup of a tuple falls back to
//! a LISTENING socket on the local port when the connection itself is gone (e.g. the other
//! end was reset first): so the socket is first looked up (`SOCK_DIAG_BY_FAMILY`), a listener
//! or a different socket is refused as not found, and the destroy names the found socket's
//! cookie, so it can only ever hit that one connection. An IPv4 tuple is tried as `AF_INET` first,
//! then as the IPv4-mapped `AF_INET6` form a dual-stack socket uses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

/// `NETLINK_SOCK_DIAG` (linux/netlink.h).
const NETLINK_SOCK_DIAG: libc::c_int = 4;
/// `SOCK_DESTROY` (linux/sock_diag.h).
const SOCK_DESTROY: u16 = 21;
/// `SOCK_DIAG_BY_FAMILY`: look one socket up (its state and cookie).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCP_LISTEN` (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 10;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLMSG_ERROR: u16 = 0x02;
/// Every TCP state (`idiag_states` bit mask).
const ALL_STATES: u32 = 0xffff_ffff;
/// `INET_DIAG_NOCOOKIE`.
const NO_COOKIE: u32 = 0xffff_ffff;

/// Why a socket could not be destroyed.
#[derive(Debug, Error)]
pub enum DestroyError {
    #[error("address {0:?} is not \"ip:port\"")]
    BadAddress(String),
    #[error("local {local} and remote {remote} are of different address families")]
    MixedFamilies {
        local: SocketAddr,
        remote: SocketAddr,
    },
    #[error("no TCP socket {local} -> {remote} on this host")]
    NotFound {
        local: SocketAddr,
        remote: SocketAddr,
    },
    #[error("the kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY is off)")]
    Unsupported,
    #[error("not permitted to destroy sockets (needs CAP_NET_ADMIN)")]
    NotPermitted,
    #[error("netlink sock_diag: {0}")]
    Io(#[from] std::io::Error),
    #[error("netlink sock_diag: unexpected answer ({0} bytes)")]
    BadAnswer(usize),
}

/// A netlink `sock_diag` socket, reusable for many destroys.
pub struct SockDestroyer {
    fd: OwnedFd,
    seq: u32,
}

impl SockDestroyer {
    /// Opens the netlink socket.
    pub fn new() -> Result<Self, DestroyError> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Answers must not block forever if the kernel never answers.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid option pointer and length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Self { fd, seq: 0 })
    }

    /// Destroys the TCP socket whose local end is `local` and remote end `remote`
    /// (`"ip:port"` strings as in message and verdict records).
    pub fn destroy_str(&mut self, local: &str, remote: &str) -> Result<(), DestroyError> {
        let l = parse(local)?;
        let r = parse(remote)?;
        self.destroy(l, r)
    }

    /// Destroys the TCP socket `local` → `remote`.
    pub fn destroy(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<(), DestroyError> {
        match (local.ip(), remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                let mut la = [0u8; 16];
                let mut ra = [0u8; 16];
                la[..4].copy_from_slice(&l.octets());
                ra[..4].copy_from_slice(&r.octets());
                match self.send(libc::AF_INET as u8, local.port(), remote.port(), la, ra) {
                    Err(DestroyError::NotFound { .. }) => {}
                    other => return other.map_err(|e| name(e, local, remote)),
                }
                // A dual-stack socket holds IPv4 peers as ::ffff:a.b.c.d.
                let la = l.to_ipv6_mapped().octets();
                let ra = r.to_ipv6_mapped().octets();
                self.send(libc::AF_INET6 as u8, local.port(), remote.port(), la, ra)
                    .map_err(|e| name(e, local, remote))
            }
            (IpAddr::V6(l), IpAddr::V6(r)) => self
                .send(
                    libc::AF_INET6 as u8,
                    local.port(),
                    remote.port(),
                    l.octets(),
                    r.octets(),
                )
                .map_err(|e| name(e, local, remote)),
            _ => Err(DestroyError::MixedFamilies { local, remote }),
        }
    }

    fn send(
        &mut self,
        family: u8,
        sport: u16,
        dport: u16,
        src: [u8; 16],
        dst: [u8; 16],
    ) -> Result<(), DestroyError> {
        let cookie = self.lookup(family, sport, dport, src, dst)?;
        self.seq = self.seq.wrapping_add(1);
        let msg = request(
            self.seq,
            SOCK_DESTROY,
            family,
            sport,
            dport,
            src,
            dst,
            cookie,
        );
        self.transmit(&msg)?;
        self.answer(|_, _| None)
    }

    /// The cookie of the connected (not listening) TCP socket with this exact tuple.
    fn lookup(
        &mut self,
        family: u8,
        sport: u16,
        dport: u16,
        src: [u8; 16],
        dst: [u8; 16],
    ) -> Result<[u32; 2], DestroyError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = request(
            self.seq,
            SOCK_DIAG_BY_FAMILY,
            family,
            sport,
            dport,
            src,
            dst,
            [NO_COOKIE, NO_COOKIE],
        );
        self.transmit(&msg)?;
        let not_found = DestroyError::NotFound {
            local: unspecified(),
            remote: unspecified(),
        };
        let mut found: Option<[u32; 2]> = None;
        let mut listener = false;
        let r = self.answer(|ty, m| {
            // inet_diag_msg after the 16-byte header: family, state, timer, retrans, id.
            if ty != SOCK_DIAG_BY_FAMILY || m.len() < 68 {
                return Some(Err(DestroyError::BadAnswer(m.len())));
            }
            let state = m[17];
            let same = m[20..22] == sport.to_be_bytes()
                && m[22..24] == dport.to_be_bytes()
                && m[24..40] == src
                && m[40..56] == dst;
            listener = state == TCP_LISTEN;
            if same && !listener {
                found = Some([
                    u32::from_ne_bytes([m[60], m[61], m[62], m[63]]),
                    u32::from_ne_bytes([m[64], m[65], m[66], m[67]]),
                ]);
            }
            Some(Ok(()))
        });
        r?;
        found.ok_or(not_found)
    }

    fn transmit(&mut self, msg: &[u8]) -> Result<(), DestroyError> {
        // SAFETY: valid buffer and length; the kernel is the destination (nl_pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Reads the answer to the last request: an `NLMSG_ERROR` (ack or error), or a message
    /// of another type handed to `other` (which returns the outcome).
    fn answer(
        &mut self,
        mut other: impl FnMut(u16, &[u8]) -> Option<Result<(), DestroyError>>,
    ) -> Result<(), DestroyError> {
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: valid buffer and length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            let n = n as usize;
            if n < 20 {
                return Err(DestroyError::BadAnswer(n));
            }
            let ty = u16::from_ne_bytes([buf[4], buf[5]]);
            let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if seq != self.seq {
                continue; // a late answer to an earlier request (after a timeout)
            }
            if ty != NLMSG_ERROR {
                return match other(ty, &buf[..n]) {
                    Some(r) => r,
                    None => Err(DestroyError::BadAnswer(n)),
                };
            }
            let errno = -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            return match errno {
                0 => Ok(()),
                libc::ENOENT => Err(DestroyError::NotFound {
                    local: unspecified(),
                    remote: unspecified(),
                }),
                libc::EOPNOTSUPP => Err(DestroyError::Unsupported),
                libc::EPERM | libc::EACCES => Err(DestroyError::NotPermitted),
                e => Err(std::io::Error::from_raw_os_error(e).into()),
            };
        }
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
}

/// Puts the real tuple into a `NotFound`.
fn name(e: DestroyError, local: SocketAddr, remote: SocketAddr) -> DestroyError {
    match e {
        DestroyError::NotFound { .. } => DestroyError::NotFound { local, remote },
        other => other,
    }
}

fn parse(s: &str) -> Result<SocketAddr, DestroyError> {
    s.parse()
        .map_err(|_| DestroyError::BadAddress(s.to_string()))
}

/// `nlmsghdr` + `inet_diag_req_v2` for `SOCK_DESTROY` (72 bytes, native byte order except
/// the ports and addresses, which are network order).
#[allow(clippy::too_many_arguments)]
fn request(
    seq: u32,
    ty: u16,
    family: u8,
    sport: u16,
    dport: u16,
    src: [u8; 16],
    dst: [u8; 16],
    cookie: [u32; 2],
) -> Vec<u8> {
    let flags = if ty == SOCK_DESTROY {
        NLM_F_REQUEST | NLM_F_ACK
    } else {
        NLM_F_REQUEST
    };
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&ty.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&flags.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&seq.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.push(family); // sdiag_family
    m.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    m.push(0); // idiag_ext
    m.push(0); // pad
    m.extend_from_slice(&ALL_STATES.to_ne_bytes()); // idiag_states
    m.extend_from_slice(&sport.to_be_bytes()); // id.idiag_sport
    m.extend_from_slice(&dport.to_be_bytes()); // id.idiag_dport
    m.extend_from_slice(&src); // id.idiag_src
    m.extend_from_slice(&dst); // id.idiag_dst
    m.extend_from_slice(&0u32.to_ne_bytes()); // id.idiag_if
    m.extend_from_slice(&cookie[0].to_ne_bytes()); // id.idiag_cookie[0]
    m.extend_from_slice(&cookie[1].to_ne_bytes()); // id.idiag_cookie[1]
    debug_assert_eq!(m.len(), 72);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernel_layout() {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[127, 0, 0, 1]);
        let m = request(
            7,
            SOCK_DESTROY,
            libc::AF_INET as u8,
            8000,
            50312,
            src,
            src,
            [NO_COOKIE, NO_COOKIE],
        );
        assert_eq!(m.len(), 72);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 21);
        assert_eq!(m[16], 2); // AF_INET
        assert_eq!(m[17], 6); // TCP
        assert_eq!(&m[24..26], &8000u16.to_be_bytes());
        assert_eq!(&m[26..28], &50312u16.to_be_bytes());
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
    }

    #[test]
    fn bad_addresses_are_typed_errors() {
        let mut d = match SockDestroyer::new() {
            Ok(d) => d,
            Err(e) => panic!("netlink socket: {e}"),
        };
        assert!(matches!(
            d.destroy_str("nonsense", "127.0.0.1:1"),
            Err(DestroyError::BadAddress(_))
        ));
        assert!(matches!(
            d.destroy_str("127.0.0.1:1", "[::1]:2"),
            Err(DestroyError::MixedFamilies { .. })
        ));
    }
}
