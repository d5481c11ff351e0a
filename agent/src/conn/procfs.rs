//! Fallback identity from /proc for connections the kernel did not see being established
//! (they predate the agent): the socket inode behind /proc/PID/fd/FD, looked up in the
//! process's own network namespace tables (/proc/PID/net/tcp{,6}).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// (local, remote) of a TCP socket fd of a process, if it still exists.
pub fn socket_tuple(pid: u32, fd: u32) -> Option<(SocketAddr, SocketAddr)> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let inode = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .to_string();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        if let Some(t) = find_inode(&text, &inode) {
            return Some(t);
        }
    }
    None
}

/// `comm` of a process.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Finds the row with `inode` in a /proc/net/tcp{,6} table.
pub fn find_inode(table: &str, inode: &str) -> Option<(SocketAddr, SocketAddr)> {
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 9 && cols[9] == inode {
            return Some((parse_addr(cols[1])?, parse_addr(cols[2])?));
        }
    }
    None
}

/// "0100007F:1F90" (IPv4) or 32 hex digits + port (IPv6), in the kernel's per-u32 host order.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1\n";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n";

    #[test]
    fn finds_an_ipv4_row_by_inode() {
        let (l, r) = find_inode(TCP, "123456").unwrap();
        assert_eq!(l, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r, "127.0.0.1:41668".parse().unwrap());
        assert_eq!(find_inode(TCP, "1"), None);
    }

    #[test]
    fn reads_v4_mapped_ipv6_rows_as_ipv4() {
        let (l, _) = find_inode(TCP6, "777").unwrap();
        assert_eq!(l, "127.0.0.1:8080".parse().unwrap());
    }
}
