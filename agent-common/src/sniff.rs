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

/// What the first 8 bytes of a call in a connection's request direction say about the
/// exchange it may begin (see `conn::EXCH_SKIPPING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStart {
    /// `POST ` or `DELETE `: the methods MCP sends its messages and session ends with.
    MayBeMcp,
    /// Another method: MCP only if it is a `GET` for an event stream, which its head says.
    Judge,
    /// Not a request line (a body's continuation).
    NotAStart,
}

/// See [`RequestStart`].
#[inline(always)]
pub fn request_start(b: &[u8; 8]) -> RequestStart {
    let w4 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let w = u64::from_le_bytes(*b);
    const fn tag(s: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*s)
    }
    const fn word(s: &[u8; 8]) -> u64 {
        u64::from_le_bytes(*s)
    }
    // The method and its space: `mask(k)` keeps the first k bytes.
    const fn mask(k: u32) -> u64 {
        (1u64 << (8 * k)) - 1
    }
    if w & mask(5) == word(b"POST \0\0\0") || w & mask(7) == word(b"DELETE \0") {
        return RequestStart::MayBeMcp;
    }
    if w4 == tag(b"GET ")
        || w4 == tag(b"PUT ")
        || w & mask(5) == word(b"HEAD \0\0\0")
        || w & mask(6) == word(b"PATCH \0\0")
        || w == word(b"OPTIONS ")
        || w == word(b"CONNECT ")
        || w & mask(6) == word(b"TRACE \0\0")
    {
        return RequestStart::Judge;
    }
    RequestStart::NotAStart
}

/// True when the first bytes are an HTTP/1.x status line's.
#[inline(always)]
pub fn is_status_line(b: &[u8; 8]) -> bool {
    b[..7] == *b"HTTP/1."
}

/// `\r\n\r\n`, the end of an HTTP head, as a little-endian word.
pub const HEAD_END: u32 = u32::from_le_bytes(*b"\r\n\r\n");

/// True when the 12 bytes `a` (8, little-endian) then `b` (4) spell `event-stream` in any
/// ASCII case (`text/event-stream`, the media type of every MCP `GET`). Folding is `| 0x20`
/// on every byte: exact for letters and `-`; a few other bytes fold onto them (`\r` onto
/// `-`), which can only make a request look like MCP, never the reverse.
#[inline(always)]
pub fn is_event_stream(a: u64, b: u32) -> bool {
    a | 0x2020_2020_2020_2020 == u64::from_le_bytes(*b"event-st")
        && b | 0x2020_2020 == u32::from_le_bytes(*b"ream")
}

/// The judgement the kernel makes on the first bytes of a request whose method is not one
/// MCP sends with (`RequestStart::Judge`), written over a slice for the host's tests; the
/// kernel's loop (agent-ebpf `exchange.rs`) makes the same tests at each offset: true (skip
/// the exchange) when the head ends within `head` and no `event-stream` comes before its end.
pub fn head_cannot_be_mcp(head: &[u8]) -> bool {
    let word4 = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut i = 0;
    while i + 4 <= head.len() {
        if word4(i) == HEAD_END {
            return true;
        }
        if i + 12 <= head.len() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&head[i..i + 8]);
            if is_event_stream(u64::from_le_bytes(a), word4(i + 8)) {
                return false;
            }
        }
        i += 1;
    }
    false
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

    fn start(s: &[u8]) -> RequestStart {
        let mut b = [0u8; 8];
        let n = s.len().min(8);
        b[..n].copy_from_slice(&s[..n]);
        request_start(&b)
    }

    #[test]
    fn requests_mcp_sends_with_are_told_from_those_it_never_does() {
        assert_eq!(start(b"POST /mcp HTTP/1.1"), RequestStart::MayBeMcp);
        assert_eq!(start(b"DELETE /mcp HTTP/1.1"), RequestStart::MayBeMcp);
        for s in [
            &b"GET / HTTP/1.1"[..],
            b"HEAD / HTTP/1.1",
            b"PUT /x HTTP/1.1",
            b"PATCH /x HTTP/1.1",
            b"OPTIONS * HTTP/1.1",
            b"CONNECT h:443 HTTP/1.1",
            b"TRACE / HTTP/1.1",
        ] {
            assert_eq!(
                start(s),
                RequestStart::Judge,
                "{:?}",
                core::str::from_utf8(s)
            );
        }
        for s in [
            &b"{\"jsonrpc\":\"2.0\"}"[..],
            b"HTTP/1.1 200 OK",
            b"POSTER /",
            b"get / HTTP/1.1",
            b"GETX / H",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(start(s), RequestStart::NotAStart, "{s:?}");
        }
        assert!(is_status_line(b"HTTP/1.1"));
        assert!(!is_status_line(b"HTTP/2 2"));
    }

    #[test]
    fn a_head_is_skippable_only_when_it_ends_with_no_event_stream_in_it() {
        assert!(head_cannot_be_mcp(
            b"GET / HTTP/1.1\r\nHost: h\r\nAccept: text/plain\r\n\r\n"
        ));
        // The MCP GET (either era's stream), in any case and anywhere in the head.
        assert!(!head_cannot_be_mcp(
            b"GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"
        ));
        assert!(!head_cannot_be_mcp(
            b"GET /sse HTTP/1.1\r\naccept: application/json, Text/Event-Stream\r\n\r\n"
        ));
        // A head that does not end here is not judged (kept).
        assert!(!head_cannot_be_mcp(b"GET / HTTP/1.1\r\nHost: h\r\n"));
        // `event-stream` after the head (in a body) does not make it MCP.
        assert!(head_cannot_be_mcp(b"PUT /x HTTP/1.1\r\n\r\nevent-stream"));
        assert!(!head_cannot_be_mcp(b""));
        assert!(is_event_stream(
            u64::from_le_bytes(*b"EVENT-ST"),
            u32::from_le_bytes(*b"REAM")
        ));
        assert!(!is_event_stream(
            u64::from_le_bytes(*b"event_st"),
            u32::from_le_bytes(*b"ream")
        ));
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
