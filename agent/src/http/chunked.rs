//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It reads framing byte by byte (a size line, a chunk-extension, the CRLF after the data,
//! the trailer section) and hands back the data bytes as ranges of the input, so the data
//! is never copied here and a piece may split anywhere. Bare LF is accepted where CRLF is
//! expected (RFC 9112 §2.2 allows a recipient to).

use std::ops::Range;

/// Longest chunk-extension accepted on one size line.
const MAX_EXTENSION_BYTES: usize = 4096;
/// A chunk size is a u64: at most 16 hex digits.
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits of a chunk size.
    Size { value: u64, digits: u8 },
    /// Whitespace after the size, before `;` or the line end.
    SizeSpace { value: u64 },
    /// Inside a chunk-extension, up to the line end.
    Extension { value: u64 },
    /// Saw CR at the end of a size line; expecting LF.
    SizeLf { value: u64 },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// After chunk data: expecting CR (or a bare LF).
    DataCr,
    /// After chunk data and CR: expecting LF.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR on the final empty line; expecting LF.
    FinalLf,
    /// The last chunk and the trailer section are complete.
    Done,
}

/// Broken framing: what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkError {
    /// Offset in the input given to [`ChunkedDecoder::next`] of the offending byte.
    pub at: usize,
    pub reason: String,
}

/// What one call to [`ChunkedDecoder::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkStep {
    /// `input[range]` is chunk data; everything up to `range.end` is consumed.
    Data(Range<usize>),
    /// All of the first `consumed` bytes were framing; more input is needed.
    NeedMore { consumed: usize },
    /// The body ended after `consumed` bytes (last chunk and trailers included).
    Done { consumed: usize },
}

#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Sum of the chunk sizes announced so far.
    declared: u64,
    extension_bytes: usize,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// `max_trailer_bytes` bounds the trailer section (it is a header section).
    pub(crate) fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::SizeStart,
            declared: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            max_trailer_bytes,
        }
    }

    /// Sum of the chunk sizes announced so far (including the chunk being read).
    pub(crate) fn declared(&self) -> u64 {
        self.declared
    }

    /// Whether the decoder is inside chunk data, so bytes lost there keep the framing.
    /// Advances past `lost` data bytes and returns `true` if they all fall inside the
    /// current chunk's data; returns `false` (framing lost) otherwise.
    pub(crate) fn skip_lost(&mut self, lost: u64) -> bool {
        match self.state {
            State::Data { remaining } if lost < remaining => {
                self.state = State::Data {
                    remaining: remaining - lost,
                };
                true
            }
            State::Data { remaining } if lost == remaining => {
                self.state = State::DataCr;
                true
            }
            _ => false,
        }
    }

    /// Decodes from the start of `input` until chunk data is found, input runs out or the
    /// body ends.
    pub(crate) fn next(&mut self, input: &[u8]) -> Result<ChunkStep, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(ChunkStep::Done { consumed: i }),
                State::Data { remaining } => {
                    let available = (input.len() - i) as u64;
                    let n = remaining.min(available);
                    self.state = if n == remaining {
                        State::DataCr
                    } else {
                        State::Data {
                            remaining: remaining - n,
                        }
                    };
                    // n <= available, which came from a usize.
                    let end = i + n as usize;
                    return Ok(ChunkStep::Data(i..end));
                }
                _ => {
                    self.framing_byte(input[i])
                        .map_err(|reason| ChunkError { at: i, reason })?;
                    i += 1;
                    if self.state == State::Done {
                        return Ok(ChunkStep::Done { consumed: i });
                    }
                }
            }
        }
        Ok(ChunkStep::NeedMore { consumed: i })
    }

    fn framing_byte(&mut self, b: u8) -> Result<(), String> {
        self.state = match self.state {
            State::SizeStart => match hex_value(b) {
                Some(v) => State::Size {
                    value: u64::from(v),
                    digits: 1,
                },
                None => return Err(format!("expected a hex chunk size, found {}", show(b))),
            },
            State::Size { value, digits } => match b {
                b';' => self.start_extension(value),
                b' ' | b'\t' => State::SizeSpace { value },
                b'\r' => State::SizeLf { value },
                b'\n' => self.end_size_line(value),
                _ => match hex_value(b) {
                    Some(_) if digits >= MAX_SIZE_DIGITS => {
                        return Err(format!(
                            "chunk size has more than {MAX_SIZE_DIGITS} hex digits"
                        ))
                    }
                    Some(v) => State::Size {
                        value: (value << 4) | u64::from(v),
                        digits: digits + 1,
                    },
                    None => return Err(format!("invalid character {} in chunk size", show(b))),
                },
            },
            State::SizeSpace { value } => match b {
                b' ' | b'\t' => State::SizeSpace { value },
                b';' => self.start_extension(value),
                b'\r' => State::SizeLf { value },
                b'\n' => self.end_size_line(value),
                _ => return Err(format!("invalid character {} after chunk size", show(b))),
            },
            State::Extension { value } => match b {
                b'\r' => State::SizeLf { value },
                b'\n' => self.end_size_line(value),
                _ => {
                    self.extension_bytes += 1;
                    if self.extension_bytes > MAX_EXTENSION_BYTES {
                        return Err(format!(
                            "chunk extension longer than {MAX_EXTENSION_BYTES} bytes"
                        ));
                    }
                    State::Extension { value }
                }
            },
            State::SizeLf { value } => match b {
                b'\n' => self.end_size_line(value),
                _ => {
                    return Err(format!(
                        "expected LF after CR ending a chunk size line, found {}",
                        show(b)
                    ))
                }
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => State::SizeStart,
                _ => return Err(format!("expected CRLF after chunk data, found {}", show(b))),
            },
            State::DataLf => match b {
                b'\n' => State::SizeStart,
                _ => {
                    return Err(format!(
                        "expected LF after chunk data and CR, found {}",
                        show(b)
                    ))
                }
            },
            State::TrailerLineStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => State::Done,
                _ => {
                    self.count_trailer_byte()?;
                    State::TrailerLine
                }
            },
            State::TrailerLine => match b {
                b'\n' => State::TrailerLineStart,
                _ => {
                    self.count_trailer_byte()?;
                    State::TrailerLine
                }
            },
            State::FinalLf => match b {
                b'\n' => State::Done,
                _ => {
                    return Err(format!(
                        "expected LF ending the trailer section, found {}",
                        show(b)
                    ))
                }
            },
            // Handled by `next`; never fed framing bytes.
            s @ (State::Data { .. } | State::Done) => s,
        };
        Ok(())
    }

    fn start_extension(&mut self, value: u64) -> State {
        self.extension_bytes = 0;
        State::Extension { value }
    }

    fn end_size_line(&mut self, value: u64) -> State {
        if value == 0 {
            State::TrailerLineStart
        } else {
            self.declared = self.declared.saturating_add(value);
            State::Data { remaining: value }
        }
    }

    fn count_trailer_byte(&mut self) -> Result<(), String> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(format!(
                "trailer section longer than {} bytes",
                self.max_trailer_bytes
            ));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte as evidence: printable ASCII quoted, anything else in hex.
pub(crate) fn show(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the data and the bytes left
    /// after the body.
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut dec = ChunkedDecoder::new(1024);
        let mut data = Vec::new();
        // Offset in `input` of the first byte not consumed yet.
        let mut pos = 0;
        let mut fed = 0;
        while fed < input.len() {
            fed = (fed + step.max(1)).min(input.len());
            loop {
                match dec.next(&input[pos..fed]).map_err(|e| e.reason)? {
                    ChunkStep::Data(r) => {
                        data.extend_from_slice(&input[pos + r.start..pos + r.end]);
                        pos += r.end;
                    }
                    ChunkStep::NeedMore { consumed } => {
                        pos += consumed;
                        break;
                    }
                    ChunkStep::Done { consumed } => {
                        return Ok((data, input[pos + consumed..].to_vec()));
                    }
                }
            }
        }
        Err("incomplete".into())
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers_split_anywhere() {
        let input = b"4;name=\"va;l\"\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nExpires: never\r\nX-Foo: 1\r\n\r\nNEXT";
        for step in 1..=input.len() {
            let (data, rest) = decode(input, step).expect("valid framing");
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert_eq!(rest, b"NEXT", "step {step}");
        }
    }

    #[test]
    fn accepts_bare_lf_line_ends() {
        let (data, rest) = decode(b"3\nabc\n0\n\nX", 1).expect("valid framing");
        assert_eq!(data, b"abc");
        assert_eq!(rest, b"X");
    }

    #[test]
    fn counts_the_announced_sizes() {
        let mut dec = ChunkedDecoder::new(10);
        let _ = dec.next(b"10\r\n");
        assert_eq!(dec.declared(), 16);
    }

    #[test]
    fn rejects_a_non_hex_size_with_its_position() {
        let mut dec = ChunkedDecoder::new(10);
        let err = dec.next(b"1x\r\n").expect_err("bad size");
        assert_eq!(err.at, 1);
        assert_eq!(err.reason, "invalid character 'x' in chunk size");
    }

    #[test]
    fn rejects_a_missing_crlf_after_data() {
        assert_eq!(
            decode(b"2\r\nabX", 1),
            Err("expected CRLF after chunk data, found 'X'".to_string())
        );
    }

    #[test]
    fn rejects_oversized_sizes_extensions_and_trailers() {
        assert_eq!(
            decode(b"11111111111111111\r\n", 100),
            Err("chunk size has more than 16 hex digits".to_string())
        );
        let long_ext = format!("1;{}\r\n", "a".repeat(MAX_EXTENSION_BYTES + 1));
        assert!(decode(long_ext.as_bytes(), 100).is_err());
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            decode(long_trailer.as_bytes(), 100),
            Err("trailer section longer than 1024 bytes".to_string())
        );
    }

    #[test]
    fn lost_bytes_inside_chunk_data_keep_the_framing() {
        let mut dec = ChunkedDecoder::new(10);
        assert_eq!(dec.next(b"a\r\n0123"), Ok(ChunkStep::Data(3..7)));
        assert!(dec.skip_lost(3));
        assert_eq!(dec.next(b"789\r\n0\r\n\r\n"), Ok(ChunkStep::Data(0..3)));
        assert_eq!(
            dec.next(b"\r\n0\r\n\r\n"),
            Ok(ChunkStep::Done { consumed: 7 })
        );
        let mut dec = ChunkedDecoder::new(10);
        let _ = dec.next(b"a\r\n");
        assert!(!dec.skip_lost(11));
    }
}
