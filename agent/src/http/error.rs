//! What can go wrong while decoding an HTTP/1.x byte stream, with the evidence for it.

use std::fmt;

/// The part of a message that a [`HttpError::Truncated`] cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePart {
    /// The request or status line and header fields.
    Head,
    /// The body (counted in bytes as framed on the wire, before decoding).
    Body,
    /// An SSE event that had started but had not been ended by a blank line.
    SseEvent,
}

impl fmt::Display for MessagePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Head => "head",
            Self::Body => "body",
            Self::SseEvent => "SSE event",
        })
    }
}

/// A problem found in the stream. The parser has dropped what it names and resynchronised
/// (or will, at the next thing that looks like the start of a message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The capture lost `lost` bytes while a message was in progress.
    #[error(
        "the capture lost {lost} bytes of the stream in the middle of a message; \
         that message was dropped"
    )]
    Gap { lost: u64 },

    /// The request/status line or a header field is not valid HTTP/1.x.
    #[error(
        "malformed HTTP message head ({reason}); skipping to the next thing that looks \
         like the start of a message"
    )]
    MalformedHead { reason: String },

    /// The head did not end within `limit` bytes.
    #[error(
        "HTTP message head did not end within {limit} bytes (Limits::max_head_bytes); \
         it was dropped and the parser skips to the next message"
    )]
    HeadTooLarge { limit: usize },

    /// A body larger than `limit` bytes was skipped. `declared` is the Content-Length, the
    /// sum of the chunk sizes announced when the limit was crossed, or (body delimited by
    /// close) the number of bytes received.
    #[error(
        "HTTP body of {declared} bytes is larger than the {limit}-byte limit \
         (Limits::max_body_bytes); it was skipped"
    )]
    BodyTooLarge { declared: u64, limit: usize },

    /// The chunked framing is broken; the message was dropped.
    #[error("bad chunked transfer coding: {reason}; the message was dropped")]
    BadChunk { reason: String },

    /// The body could not be decoded (unsupported coding, corrupt or truncated compressed
    /// data, or decoded output over the body limit); the body was dropped.
    #[error("could not decode the body (coding {encoding}): {reason}; the body was dropped")]
    Decompress { encoding: String, reason: String },

    /// The stream ended (close) inside a message.
    #[error(
        "the stream ended inside a message: its {part} stopped after {received} bytes{}",
        expected_suffix(expected)
    )]
    Truncated {
        part: MessagePart,
        received: u64,
        /// The announced size of the part, when it was known (Content-Length).
        expected: Option<u64>,
    },

    /// An SSE event grew beyond `limit` bytes before its end; it was skipped.
    #[error(
        "an SSE event grew beyond {limit} bytes (Limits::max_sse_event_bytes) before its \
         end; it was skipped"
    )]
    SseEventTooLarge { limit: usize },
}

fn expected_suffix(expected: &Option<u64>) -> String {
    match expected {
        Some(n) => format!(" of the {n} announced"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_names_the_part_and_the_announced_size() {
        let e = HttpError::Truncated {
            part: MessagePart::Body,
            received: 3,
            expected: Some(10),
        };
        assert_eq!(
            e.to_string(),
            "the stream ended inside a message: its body stopped after 3 bytes of the 10 announced"
        );
        let e = HttpError::Truncated {
            part: MessagePart::Head,
            received: 7,
            expected: None,
        };
        assert_eq!(
            e.to_string(),
            "the stream ended inside a message: its head stopped after 7 bytes"
        );
    }

    #[test]
    fn gap_says_how_much_was_lost() {
        assert!(HttpError::Gap { lost: 42 }
            .to_string()
            .contains("lost 42 bytes"));
    }
}
