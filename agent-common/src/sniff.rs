//! Byte tests the kernel makes on the first bytes of a write, kept here (pure, `no_std`) so
//! they are unit-tested on the host and compiled into the eBPF programs unchanged.

/// True when the first `n` (1..=7) bytes of `w` (the bytes in little-endian order, unread
/// bytes zero) could begin an HTTP/1.x message: a prefix of a request method with its space,
/// or of `HTTP/1.` — the tokens the kernel's 8-byte sniff accepts. A first write this short
/// gets no verdict (the connection stays undecided) instead of a sniff miss.
#[inline(always)]
pub fn is_http_prefix(w: u64, n: u32) -> bool {
    const TOKENS: [(&[u8; 8], u32); 8] = [
        (b"GET \0\0\0\0", 4),
        (b"POST \0\0\0", 5),
        (b"PUT \0\0\0\0", 4),
        (b"DELETE \0", 7),
        (b"HEAD \0\0\0", 5),
        (b"OPTIONS ", 8),
        (b"PATCH \0\0", 6),
        (b"HTTP/1.\0", 7),
    ];
    if n == 0 || n >= 8 {
        return false;
    }
    let mut i = 0;
    while i < TOKENS.len() {
        let (tok, len) = TOKENS[i];
        let k = if n < len { n } else { len };
        let mask = (1u64 << (8 * k)) - 1;
        if w & mask == u64::from_le_bytes(*tok) & mask {
            return true;
        }
        i += 1;
    }
    false
}

/// True when a write's first two bytes begin a TLS record: content type 20..=24
/// (change_cipher_spec, alert, handshake, application_data, heartbeat) and major version 3.
#[inline(always)]
pub fn begins_tls_record(b: [u8; 2]) -> bool {
    (0x14..=0x18).contains(&b[0]) && b[1] == 0x03
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &[u8]) -> (u64, u32) {
        let mut b = [0u8; 8];
        b[..s.len()].copy_from_slice(s);
        (u64::from_le_bytes(b), s.len() as u32)
    }

    fn prefix(s: &[u8]) -> bool {
        let (w, n) = word(s);
        is_http_prefix(w, n)
    }

    #[test]
    fn short_starts_of_requests_and_responses_are_undecided() {
        for s in [
            &b"P"[..],
            b"PO",
            b"POS",
            b"POST",
            b"POST ",
            b"POST /m",
            b"G",
            b"GET /",
            b"DELETE ",
            b"OPTION",
            b"PATCH /",
            b"HTTP/1.",
            b"HT",
        ] {
            assert!(
                prefix(s),
                "{:?} may begin an HTTP message",
                core::str::from_utf8(s)
            );
        }
    }

    #[test]
    fn short_writes_that_cannot_begin_http_are_misses() {
        for s in [
            &b"\x16\x03"[..],
            b"X",
            b"GETX",
            b"POSTX",
            b"HTTP/2",
            b"get ",
            b"{\"a\"",
        ] {
            assert!(!prefix(s), "{:?} cannot begin an HTTP message", s);
        }
        // Eight bytes or more are the full sniff's business, zero bytes say nothing.
        let (w, _) = word(b"POST /mc");
        assert!(!is_http_prefix(w, 8));
        assert!(!is_http_prefix(0, 0));
    }

    #[test]
    fn tls_records_are_recognised_by_type_and_version() {
        assert!(begins_tls_record([0x16, 0x03])); // handshake
        assert!(begins_tls_record([0x17, 0x03])); // application data
        assert!(begins_tls_record([0x15, 0x03])); // alert
        assert!(!begins_tls_record(*b"PO"));
        assert!(!begins_tls_record(*b"GE"));
        assert!(!begins_tls_record([0x17, 0x01]));
        assert!(!begins_tls_record([0x19, 0x03]));
    }
}
