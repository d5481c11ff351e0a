//! Parsing a complete (or growing) message head with `httparse`.

use super::headers::Headers;
use super::message::{MessageKind, RequestHead, ResponseHead};

/// Header fields accepted in one head.
const MAX_HEADERS: usize = 256;
/// How much of the first line an error quotes as evidence.
const EXCERPT_BYTES: usize = 64;

/// A parsed head, without its timestamp (the caller knows where the message started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadParse {
    /// The head is the first `len` bytes.
    Complete { len: usize, head: Head },
    /// Valid so far; more bytes are needed.
    Partial,
    /// Not a valid head; the reason quotes the first line.
    Invalid(String),
}

/// Stands in for the first line when one header field line is checked on its own.
const SYNTHETIC_REQUEST_LINE: &[u8] = b"GET / HTTP/1.1\r\n";
const SYNTHETIC_STATUS_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// Parses the head at the start of `buf`.
pub(crate) fn parse_head(kind: MessageKind, buf: &[u8]) -> HeadParse {
    match run(kind, buf) {
        Ok(Some((len, head))) => HeadParse::Complete { len, head },
        Ok(None) => HeadParse::Partial,
        Err(e) => HeadParse::Invalid(invalid(e, buf)),
    }
}

/// Checks the first line of a head (request or status line, with its line end) as soon
/// as it is complete, so garbage is recognised without waiting for the end of the head.
pub(crate) fn check_first_line(kind: MessageKind, line: &[u8]) -> Result<(), String> {
    match run(kind, line) {
        Ok(_) => Ok(()),
        Err(e) => Err(invalid(e, line)),
    }
}

/// Checks one header field line (with its line end) on its own, as soon as it is
/// complete; `head` is the head so far, quoted as evidence. Looking at complete lines
/// only makes the verdict independent of how the bytes were split into pieces.
pub(crate) fn check_field_line(kind: MessageKind, line: &[u8], head: &[u8]) -> Result<(), String> {
    let first = match kind {
        MessageKind::Request => SYNTHETIC_REQUEST_LINE,
        MessageKind::Response if line.starts_with(b" ") || line.starts_with(b"\t") => {
            // An obsolete line folding, accepted in responses: only the whole head tells.
            return Ok(());
        }
        MessageKind::Response => SYNTHETIC_STATUS_LINE,
    };
    // The synthetic head is built on the stack for the usual short line (this runs once per
    // header line of every message).
    let mut stack = [0u8; SYNTHETIC_STACK_BYTES];
    let heap;
    let synthetic: &[u8] = match stack.get_mut(..first.len() + line.len()) {
        Some(buf) => {
            let (a, b) = buf.split_at_mut(first.len());
            a.copy_from_slice(first);
            b.copy_from_slice(line);
            buf
        }
        None => {
            heap = [first, line].concat();
            &heap
        }
    };
    match run(kind, synthetic) {
        Ok(_) => Ok(()),
        Err(e) => Err(invalid(e, head)),
    }
}

/// Longest synthetic head (first line + one field line) checked without an allocation.
const SYNTHETIC_STACK_BYTES: usize = 1024;

/// `Ok(None)`: valid so far, incomplete.
fn run(kind: MessageKind, buf: &[u8]) -> Result<Option<(usize, Head)>, httparse::Error> {
    // Uninitialised slots: httparse writes the ones it fills (zeroing 256 slots, 8 KiB, on
    // every call was the parser's largest cost: it runs once per head line).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    match kind {
        MessageKind::Request => {
            let mut req = httparse::Request::new(&mut []);
            Ok(match req.parse_with_uninit_headers(buf, &mut slots)? {
                httparse::Status::Complete(len) => Some((
                    len,
                    Head::Request(RequestHead {
                        method: req.method.unwrap_or_default().to_owned(),
                        path: req.path.unwrap_or_default().to_owned(),
                        version_minor: req.version.unwrap_or(1),
                        headers: headers(req.headers),
                        ts_ns: 0,
                    }),
                )),
                httparse::Status::Partial => None,
            })
        }
        MessageKind::Response => {
            let mut resp = httparse::Response::new(&mut []);
            // Lenient where servers are known to be sloppy: we observe, we do not judge.
            let status = httparse::ParserConfig::default()
                .allow_spaces_after_header_name_in_responses(true)
                .allow_obsolete_multiline_headers_in_responses(true)
                .allow_multiple_spaces_in_response_status_delimiters(true)
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)?;
            Ok(match status {
                httparse::Status::Complete(len) => Some((
                    len,
                    Head::Response(ResponseHead {
                        status: resp.code.unwrap_or_default(),
                        reason: resp.reason.unwrap_or_default().to_owned(),
                        version_minor: resp.version.unwrap_or(1),
                        headers: headers(resp.headers),
                        ts_ns: 0,
                    }),
                )),
                httparse::Status::Partial => None,
            })
        }
    }
}

fn headers(parsed: &[httparse::Header<'_>]) -> Headers {
    // Built as a plain vector and shared once (a push to `Headers` checks its sharing).
    let mut out = Vec::with_capacity(parsed.len());
    for h in parsed {
        // One allocation per name and per value (the trimmed text, borrowed until then).
        let value = super::utf8::lossy(h.value);
        // Looked for in the bytes (the lossy text has a line end only where they do).
        let value = if memchr::memchr2(b'\r', b'\n', h.value).is_some() {
            // An obsolete line folding: the folds become spaces (RFC 9112 §5.2).
            value.replace(['\r', '\n'], " ").trim().to_owned()
        } else {
            value.trim().to_owned()
        };
        out.push((h.name.to_owned(), value));
    }
    Headers::from(out)
}

fn invalid(e: httparse::Error, buf: &[u8]) -> String {
    let reason = match e {
        httparse::Error::TooManyHeaders => format!("more than {MAX_HEADERS} header fields"),
        other => other.to_string(),
    };
    format!("{reason}; first line {}", first_line_excerpt(buf))
}

/// The first non-empty line (at most [`EXCERPT_BYTES`]), escaped, as evidence.
pub(crate) fn first_line_excerpt(buf: &[u8]) -> String {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len())
        .min(EXCERPT_BYTES);
    format!("\"{}\"", line[..end].escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_head_with_its_length() {
        let buf = b"POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nMcp-Session-Id:  s1 \r\n\r\n{}";
        let HeadParse::Complete {
            len,
            head: Head::Request(r),
        } = parse_head(MessageKind::Request, buf)
        else {
            panic!("expected a complete request head");
        };
        assert_eq!(len, buf.len() - 2);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/mcp?x=1");
        assert_eq!(r.version_minor, 1);
        assert_eq!(r.headers.get("mcp-session-id"), Some("s1"));
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert_eq!(
            parse_head(MessageKind::Request, b"GET / HTTP/1.1\r\nHo"),
            HeadParse::Partial
        );
        assert_eq!(
            parse_head(MessageKind::Response, b"HTTP/1.1 200 OK\r\n"),
            HeadParse::Partial
        );
    }

    #[test]
    fn invalid_heads_quote_the_first_line() {
        assert_eq!(
            parse_head(MessageKind::Request, b"\r\nGE\x01T / HTTP/1.1\r\n\r\n"),
            HeadParse::Invalid("invalid token; first line \"GE\\x01T / HTTP/1.1\"".into())
        );
    }

    #[test]
    fn lines_are_checked_one_at_a_time() {
        use MessageKind::{Request, Response};
        assert_eq!(check_first_line(Request, b"POST /mcp HTTP/1.1\r\n"), Ok(()));
        assert!(check_first_line(Request, b"hello there\r\n").is_err());
        assert!(check_first_line(Response, b"HTTP/1.1 2x0 OK\r\n").is_err());
        let head = b"GET / HTTP/1.1\r\n";
        assert_eq!(check_field_line(Request, b"Host: a\r\n", head), Ok(()));
        assert_eq!(
            check_field_line(Request, b"Bad Header\n", head),
            Err("invalid header name; first line \"GET / HTTP/1.1\"".into())
        );
        assert_eq!(check_field_line(Response, b"X-A : b\r\n", head), Ok(()));
        assert_eq!(check_field_line(Response, b" folded\r\n", head), Ok(()));
    }

    #[test]
    fn responses_tolerate_obsolete_folding() {
        let buf = b"HTTP/1.1 404 Not Found\r\nX-A: one\r\n two\r\n\r\n";
        let HeadParse::Complete {
            head: Head::Response(r),
            ..
        } = parse_head(MessageKind::Response, buf)
        else {
            panic!("expected a complete response head");
        };
        assert_eq!(r.status, 404);
        assert_eq!(r.reason, "Not Found");
        assert_eq!(r.headers.get("x-a"), Some("one   two"));
    }
}
