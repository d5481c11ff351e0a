//! The values the parser hands to the next stage, and its configuration.

use bytes::Bytes;

use super::error::HttpError;
use super::headers::Headers;

/// Which side of the exchange a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Client → server: requests.
    Request,
    /// Server → client: responses.
    Response,
}

/// Bounds on what the parser buffers. Whatever exceeds them is dropped and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request/status line plus header fields (and chunked trailer section).
    pub max_head_bytes: usize,
    /// Largest non-SSE body (on the wire and once decoded). A larger body is skipped and
    /// reported as [`HttpError::BodyTooLarge`]; parsing continues after it.
    pub max_body_bytes: usize,
    /// Largest single SSE event (its field lines, comments excluded). SSE streams as a
    /// whole are not bounded.
    pub max_sse_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_body_bytes: 8 * 1024 * 1024,
            max_sse_event_bytes: 1024 * 1024,
        }
    }
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request-target as sent, including the query.
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version_minor: u8,
    pub headers: Headers,
    /// Kernel time of the piece holding the first byte of the message.
    pub ts_ns: u64,
}

/// A complete response head (final or 1xx interim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version_minor: u8,
    pub headers: Headers,
    /// Kernel time of the piece holding the first byte of the message.
    pub ts_ns: u64,
}

/// One dispatched Server-Sent Event (WHATWG HTML §9.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `None` when absent or empty (the type is then "message").
    pub event: Option<String>,
    /// The `id:` field given in this event, if any (it is not carried over from earlier
    /// events the way a browser's `lastEventId` is).
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `retry:` field, when it was all ASCII digits.
    pub retry_ms: Option<u64>,
    /// Kernel time of the piece that completed the event.
    pub ts_ns: u64,
}

/// Most bytes kept of a message that cannot be decoded whole ([`HttpEvent::Partial`]): enough
/// for the members that come before its payload.
pub const PARTIAL_HEAD_BYTES: usize = 64 * 1024;

/// What the parser found, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpEvent {
    /// A request head is complete.
    Request(RequestHead),
    /// A response head is complete. 1xx interim responses (other than 101) are emitted
    /// too, without an `End`: the final response of the same exchange follows.
    Response(ResponseHead),
    /// The whole decoded body (de-chunked, Content-Encoding removed) of a non-SSE
    /// message, once complete. Not emitted for empty bodies.
    Body {
        data: Bytes,
        /// Kernel time of the piece holding the first body byte.
        first_ts_ns: u64,
        /// Kernel time of the piece holding the last body byte.
        last_ts_ns: u64,
    },
    /// One complete event of a `text/event-stream` body, as soon as it is complete.
    Sse(SseEvent),
    /// A message the capture or a size limit cut (bytes lost inside its body, a body or SSE
    /// event over the size limit): its first decoded bytes, so that its identity (id,
    /// method, status) is still reported. Comes instead of its `Body` or `Sse`.
    Partial {
        /// The first decoded bytes (at most [`PARTIAL_HEAD_BYTES`]).
        data: Bytes,
        /// Its size in bytes on the wire as far as known (declared, or seen plus lost).
        size: u64,
        /// Bytes of it the capture lost (0 when only a size limit cut it).
        lost: u64,
        /// It was one event of a `text/event-stream` body.
        sse: bool,
        /// Kernel time of the piece that completed (or cut) it.
        ts_ns: u64,
    },
    /// A request body too large to keep whole: its first decoded bytes, as soon as
    /// [`PARTIAL_HEAD_BYTES`] of them are held (or when asked:
    /// [`crate::http::HttpParser::announce_cut`]), once per body and before its `Partial`.
    /// For the policy, which must judge the request before its last byte leaves.
    CutPrefix {
        data: Bytes,
        /// The body's declared size (the bytes received so far for a chunked one).
        size: u64,
        /// Kernel time of the latest piece.
        ts_ns: u64,
    },
    /// The current message is complete (after its `Body` or last `Sse`).
    End {
        /// Kernel time of the piece (or close) that completed the message.
        ts_ns: u64,
    },
    /// Something was wrong; the parser has resynchronised or will.
    Error(HttpError),
}
