//! Finding the start of the next message after bytes were lost or found to be garbage.
//!
//! Requests: a whole request line `METHOD SP target SP HTTP/1.x` ending in CRLF or LF,
//! where METHOD is one of the RFC 9110 methods (or PATCH) and the target starts with
//! `/`, `*` or `http` — requiring a known method lets a candidate begin right after the
//! tail of a body (`}POST /mcp ...`). Responses: `HTTP/1.x NNN` followed by SP, CR or LF.

use super::message::MessageKind;

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Where the next message starts in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A message starts at this offset.
    Found(usize),
    /// Nothing before this offset can start a message; from it on, more bytes are needed
    /// to decide.
    NeedMore(usize),
    /// Nothing in the buffer can start a message.
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
enum Candidate {
    Yes,
    No,
    NeedMore,
}

/// Scans `input` for the first message start. A request line longer than `max_line`
/// bytes is not a candidate.
pub(crate) fn find_message_start(kind: MessageKind, input: &[u8], max_line: usize) -> Scan {
    for p in 0..input.len() {
        let c = match kind {
            MessageKind::Request => request_line_at(&input[p..], max_line),
            MessageKind::Response => status_line_at(&input[p..]),
        };
        match c {
            Candidate::Yes => return Scan::Found(p),
            Candidate::NeedMore => return Scan::NeedMore(p),
            Candidate::No => {}
        }
    }
    Scan::NotFound
}

/// Whether `b` starts with `pat`, or could once more bytes arrive.
fn prefix(b: &[u8], pat: &[u8]) -> Candidate {
    let n = b.len().min(pat.len());
    if b[..n] != pat[..n] {
        Candidate::No
    } else if n < pat.len() {
        Candidate::NeedMore
    } else {
        Candidate::Yes
    }
}

fn request_line_at(b: &[u8], max_line: usize) -> Candidate {
    let mut i = None;
    let mut need_more = false;
    for m in METHODS {
        match prefix(b, m) {
            Candidate::Yes => match b.get(m.len()) {
                Some(b' ') => {
                    i = Some(m.len() + 1);
                    break;
                }
                Some(_) => {}
                None => need_more = true,
            },
            Candidate::NeedMore => need_more = true,
            Candidate::No => {}
        }
    }
    let Some(mut i) = i else {
        return if need_more {
            Candidate::NeedMore
        } else {
            Candidate::No
        };
    };
    // The target: starts with '/', '*' or "http", then visible ASCII up to SP.
    match b.get(i) {
        None => return Candidate::NeedMore,
        Some(b'/' | b'*' | b'h') => {}
        Some(_) => return Candidate::No,
    }
    loop {
        if i > max_line {
            return Candidate::No;
        }
        match b.get(i) {
            None => return Candidate::NeedMore,
            Some(b' ') => break,
            Some(c) if c.is_ascii_graphic() || *c >= 0x80 => i += 1,
            Some(_) => return Candidate::No,
        }
    }
    i += 1;
    match prefix(&b[i..], b"HTTP/1.") {
        Candidate::Yes => i += 7,
        other => return other,
    }
    match b.get(i) {
        None => return Candidate::NeedMore,
        Some(b'0' | b'1') => i += 1,
        Some(_) => return Candidate::No,
    }
    match b.get(i) {
        None => Candidate::NeedMore,
        Some(b'\n') => Candidate::Yes,
        Some(b'\r') => match b.get(i + 1) {
            None => Candidate::NeedMore,
            Some(b'\n') => Candidate::Yes,
            Some(_) => Candidate::No,
        },
        Some(_) => Candidate::No,
    }
}

fn status_line_at(b: &[u8]) -> Candidate {
    match prefix(b, b"HTTP/1.") {
        Candidate::Yes => {}
        other => return other,
    }
    let rest = &b[7..];
    // [01] SP DIGIT DIGIT DIGIT (SP | CR | LF)
    for (k, ok) in [
        (0, &(|c: u8| c == b'0' || c == b'1') as &dyn Fn(u8) -> bool),
        (1, &|c: u8| c == b' '),
        (2, &|c: u8| c.is_ascii_digit()),
        (3, &|c: u8| c.is_ascii_digit()),
        (4, &|c: u8| c.is_ascii_digit()),
        (5, &|c: u8| c == b' ' || c == b'\r' || c == b'\n'),
    ] {
        match rest.get(k) {
            None => return Candidate::NeedMore,
            Some(&c) if ok(c) => {}
            Some(_) => return Candidate::No,
        }
    }
    Candidate::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: MessageKind = MessageKind::Request;
    const RESP: MessageKind = MessageKind::Response;

    #[test]
    fn finds_a_request_line_right_after_a_body_tail() {
        let s = b"1,\"x\":[]}}POST /mcp HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(find_message_start(REQ, s, 100), Scan::Found(10));
    }

    #[test]
    fn needs_the_whole_request_line_to_decide() {
        assert_eq!(find_message_start(REQ, b"xxPO", 100), Scan::NeedMore(2));
        assert_eq!(
            find_message_start(REQ, b"xxPOST /mcp HTTP/1.", 100),
            Scan::NeedMore(2)
        );
        assert_eq!(
            find_message_start(REQ, b"GET /a HTTP/1.1\r", 100),
            Scan::NeedMore(0)
        );
    }

    #[test]
    fn rejects_near_misses() {
        assert_eq!(
            find_message_start(REQ, b"GETX / HTTP/1.1\n", 100),
            Scan::NotFound
        );
        assert_eq!(
            find_message_start(REQ, b"GET mcp HTTP/1.1\n", 100),
            Scan::NotFound
        );
        assert_eq!(
            find_message_start(REQ, b"GET / HTTP/2.0\n", 100),
            Scan::NotFound
        );
        assert_eq!(
            find_message_start(REQ, b"the GET / of it\n", 100),
            Scan::NotFound
        );
        assert_eq!(
            find_message_start(REQ, b"GET /aaaaaaaaaaaaaaaa", 10),
            Scan::NotFound
        );
    }

    #[test]
    fn finds_a_status_line() {
        assert_eq!(
            find_message_start(RESP, b"...\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", 100),
            Scan::Found(10)
        );
        assert_eq!(
            find_message_start(RESP, b"abcHTTP/1.1 20", 100),
            Scan::NeedMore(3)
        );
        assert_eq!(
            find_message_start(RESP, b"HTTP/1.1 2000", 100),
            Scan::NotFound
        );
        assert_eq!(
            find_message_start(RESP, b"HTTP/1.0 404\n", 100),
            Scan::Found(0)
        );
    }
}
