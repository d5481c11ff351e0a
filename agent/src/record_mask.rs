//! Secrets out of `--record` files: the recorder keeps raw payload bytes (so a replay runs
//! the same pipeline), so credentials are masked IN PLACE with `*`, byte for byte, which keeps
//! every stream position and length the replay relies on.
//!
//! * `Authorization`/`Proxy-Authorization`: a bearer JWT keeps its header and claims (the
//!   agent reports user and role from them anyway) and loses its signature, so the recorded
//!   token can never be replayed as a credential; any other credential is masked whole.
//! * `Cookie`, `Set-Cookie`, `X-Api-Key`, `X-Auth-Token`: the whole value.
//! * JSON string values of secret-named keys (see [`is_secret_key`]) in bodies: the string's
//!   characters (plaintext bodies; compressed bodies are not rewritten).
//!
//! Header lines and values split across two chunks of one direction of one connection are
//! followed with a small per-stream carry. Bounded: at most [`MAX_STREAMS`] streams are
//! followed (then the table is cleared, which can only miss the tail of a split value).

use std::collections::HashMap;

use crate::capture::events::{ConnIdent, Direction};
use crate::mcp::content::is_secret_key;

/// Streams followed at once.
pub const MAX_STREAMS: usize = 16_384;
/// Longest header-name prefix carried from one chunk to the next.
const MAX_LINE_CARRY: usize = 32;

const MASKED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

#[derive(Debug, Default, Clone)]
struct Carry {
    /// The previous chunk ended inside a masked header value: mask up to the end of line.
    in_value: bool,
    /// Inside a bearer JWT value: dots seen so far (the signature follows the second).
    jwt_dots: Option<u8>,
    /// The start of the last (unfinished) line, when it could still become a header name.
    line: Vec<u8>,
    /// The previous chunk ended with a line break (the next byte starts a line).
    at_line_start: bool,
}

/// Masks secrets in recorded payload chunks.
#[derive(Debug, Default)]
pub struct RecordMask {
    /// By connection and direction (`true`: egress).
    streams: HashMap<(ConnIdent, bool), Carry>,
    /// Bytes masked so far.
    pub masked_bytes: u64,
}

impl RecordMask {
    /// Masks `bytes`, the next chunk of `conn`'s `dir` stream, in place.
    pub fn mask(&mut self, conn: &ConnIdent, dir: Direction, bytes: &mut [u8]) {
        let key = (*conn, dir == Direction::Egress);
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&key) {
            self.streams.clear();
        }
        let carry = self.streams.entry(key).or_insert(Carry {
            at_line_start: true,
            ..Carry::default()
        });
        let mut masked = mask_headers(carry, bytes);
        masked += mask_json_secrets(bytes);
        self.masked_bytes += masked as u64;
    }

    /// The connection ended: forget its streams.
    pub fn forget(&mut self, conn: &ConnIdent) {
        self.streams.retain(|(c, _), _| c != conn);
    }
}

fn is_masked_header(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    MASKED_HEADERS.contains(&name.as_str())
}

/// Masks header values; returns how many bytes it masked.
fn mask_headers(carry: &mut Carry, bytes: &mut [u8]) -> usize {
    let mut masked = 0;
    let mut i = 0;
    if carry.in_value {
        let (n, done) = mask_value(bytes, 0, &mut carry.jwt_dots);
        masked += n;
        i = n;
        if !done {
            return masked;
        }
        carry.in_value = false;
        carry.jwt_dots = None;
    }
    // Walk line starts.
    let mut line_start = if carry.at_line_start || !carry.line.is_empty() {
        Some(i)
    } else {
        None
    };
    let mut prefix = std::mem::take(&mut carry.line);
    while i < bytes.len() {
        let Some(start) = line_start else {
            match bytes[i..].iter().position(|b| *b == b'\n') {
                Some(p) => {
                    i += p + 1;
                    line_start = Some(i);
                    prefix.clear();
                    continue;
                }
                None => break,
            }
        };
        // Look for the colon of a header line starting at `start` (with `prefix` before it).
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b':' || *b == b'\n')
            .map(|p| start + p);
        match end {
            Some(c) if bytes[c] == b':' => {
                let mut name = prefix.clone();
                name.extend_from_slice(&bytes[start..c]);
                if is_masked_header(&name) {
                    let is_auth = name.to_ascii_lowercase().ends_with(b"authorization");
                    let value_start = skip_scheme(bytes, c + 1, is_auth);
                    // A bearer JWT (`eyJ…`) keeps header and claims; anything else goes whole.
                    let bearer = is_auth
                        && value_start >= 7
                        && bytes[..value_start]
                            .to_ascii_lowercase()
                            .ends_with(b"bearer ")
                        && bytes[value_start..].starts_with(b"eyJ");
                    let mut dots = if bearer { Some(0) } else { None };
                    let (n, done) = mask_value(bytes, value_start, &mut dots);
                    masked += n;
                    if !done {
                        carry.in_value = true;
                        carry.jwt_dots = dots;
                        carry.at_line_start = false;
                        return masked;
                    }
                }
                prefix.clear();
                line_start = None;
                i = c + 1;
            }
            Some(nl) => {
                // A line without a colon (request line, blank line, body).
                prefix.clear();
                i = nl + 1;
                line_start = Some(i);
            }
            None => {
                // The line continues in the next chunk.
                let mut rest = prefix.clone();
                rest.extend_from_slice(&bytes[start..]);
                carry.line = if rest.len() <= MAX_LINE_CARRY {
                    rest
                } else {
                    Vec::new()
                };
                carry.at_line_start = false;
                return masked;
            }
        }
    }
    carry.at_line_start = bytes.last() == Some(&b'\n');
    masked
}

/// Index after `: ` and, for an authorization value, after its scheme word (`Bearer `).
fn skip_scheme(bytes: &[u8], mut i: usize, is_auth: bool) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    if is_auth {
        let word_end = bytes[i..]
            .iter()
            .position(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
            .map(|p| i + p);
        if let Some(e) = word_end.filter(|e| bytes[*e] == b' ') {
            return e + 1;
        }
    }
    i
}

/// Masks from `from` to the end of the line; with `jwt_dots`, keeps a JWT's first two
/// segments. Returns (bytes advanced, whether the line ended in this chunk).
fn mask_value(bytes: &mut [u8], from: usize, jwt_dots: &mut Option<u8>) -> (usize, bool) {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' | b'\n' => return (i, true),
            b'.' if jwt_dots.is_some_and(|d| d < 2) => {
                *jwt_dots = jwt_dots.map(|d| d + 1);
            }
            _ if jwt_dots.is_some_and(|d| d < 2) => {}
            _ => bytes[i] = b'*',
        }
        i += 1;
    }
    (i, false)
}

/// Masks the characters of JSON string values whose key names a secret; returns how many.
fn mask_json_secrets(bytes: &mut [u8]) -> usize {
    let mut masked = 0;
    let mut i = 0;
    while let Some(q) = bytes[i..].iter().position(|b| *b == b'"').map(|p| i + p) {
        let Some(close) = string_end(bytes, q + 1) else {
            break;
        };
        let key = &bytes[q + 1..close];
        let mut j = close + 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b':' && is_secret_key(&String::from_utf8_lossy(key)) {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'"' {
                let end = string_end(bytes, j + 1).unwrap_or(bytes.len());
                for b in &mut bytes[j + 1..end] {
                    *b = b'*';
                }
                masked += end - (j + 1);
                i = end.min(bytes.len().saturating_sub(1)) + 1;
                continue;
            }
        }
        i = close + 1;
    }
    masked
}

/// Index of the closing quote of a JSON string whose content starts at `from`.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnIdent {
        ConnIdent {
            pid: 1,
            fd: 3,
            start_ns: 1,
        }
    }

    fn masked(chunks: &[&str]) -> String {
        let mut m = RecordMask::default();
        let mut out = String::new();
        for c in chunks {
            let mut b = c.as_bytes().to_vec();
            m.mask(&conn(), Direction::Egress, &mut b);
            assert_eq!(b.len(), c.len(), "lengths are kept");
            out.push_str(&String::from_utf8_lossy(&b));
        }
        out
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl";

    #[test]
    fn a_bearer_jwt_keeps_its_claims_and_loses_its_signature() {
        let req = format!("POST /mcp HTTP/1.1\r\nAuthorization: Bearer {JWT}\r\nCookie: sid=abc\r\n\r\n{{\"a\":1}}");
        let out = masked(&[&req]);
        assert!(
            out.contains(
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.************\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("Cookie: *******\r\n"), "{out}");
        assert!(out.starts_with("POST /mcp HTTP/1.1\r\n"));
    }

    #[test]
    fn other_credentials_are_masked_whole_and_split_chunks_are_followed() {
        let req = "GET / HTTP/1.1\r\nAuthori";
        let rest = "zation: Basic dXNlcjpwYXNz\r\nX-Api-Key: k-123";
        let tail = "456\r\nHost: h\r\n\r\n";
        let out = masked(&[req, rest, tail]);
        assert!(
            out.contains("Authorization: Basic ************\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Api-Key: ********\r\nHost: h\r\n"), "{out}");
    }

    #[test]
    fn secret_named_json_strings_are_masked_in_bodies() {
        let body = r#"{"name":"login","arguments":{"user":"ann","password":"hunter2","progressToken":"p1","api_key" : "k\"q"}}"#;
        let out = masked(&[body]);
        assert_eq!(
            out,
            r#"{"name":"login","arguments":{"user":"ann","password":"*******","progressToken":"p1","api_key" : "****"}}"#
        );
    }

    #[test]
    fn ordinary_traffic_is_untouched() {
        let req = "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n{\"method\":\"tools/call\"}";
        assert_eq!(masked(&[req]), req);
    }
}
