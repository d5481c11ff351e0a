//! HTTP/1.x stream decoding: one direction of one TCP connection in, typed events out.
//!
//! [`HttpParser`] is fed the bytes of a stream in arbitrary pieces (each with the kernel
//! timestamp of its capture), told about capture gaps and about the end of the stream,
//! and emits [`HttpEvent`]s: request/response heads, whole decoded bodies, SSE events as
//! they complete, message ends, and errors carrying their evidence. It is pure (no I/O,
//! no clock) and bounded by [`Limits`].
//!
//! Modules, in the order bytes flow through them:
//! - `resync`: where the next message starts after a gap or garbage;
//! - `head`: request/status line and header fields (`httparse`), [`Headers`];
//! - `framing`: how long the body is (RFC 9112 §6.3) and how it is coded;
//! - `chunked`: the chunked transfer coding, incrementally;
//! - `decode`: gzip/deflate removal, streaming and bounded;
//! - `sse`: `text/event-stream` events;
//! - `parser`: the state machine tying them together;
//! - `message`, `error`: what comes out ([`HttpEvent`], [`HttpError`]) and [`Limits`].
//!
//! Every test script in `tests` is replayed whole, split at every offset and byte by byte,
//! and a property test checks that arbitrary streams give the same events however cut.

mod chunked;
mod decode;
mod error;
mod framing;
mod head;
mod headers;
mod message;
mod parser;
mod resync;
mod sse;
mod utf8;

#[cfg(test)]
mod tests;

pub use error::{HttpError, MessagePart};
pub use headers::Headers;
pub use message::{
    HttpEvent, Limits, MessageKind, RequestHead, ResponseHead, SseEvent, PARTIAL_HEAD_BYTES,
};
pub use parser::HttpParser;
