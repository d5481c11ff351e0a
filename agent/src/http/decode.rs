//! Streaming removal of content codings (and of transfer codings other than chunked).
//!
//! Each write is followed by a flush, so the output for the input seen so far is out at
//! once (SSE events inside a compressed stream are not held back) and does not depend on
//! how the input was cut.
//!
//! Supported: `gzip`/`x-gzip` (multi-member), `deflate` (zlib-wrapped as RFC 9110 says, or
//! raw DEFLATE as some servers send: the first two bytes decide, like browsers do) and
//! `identity`. Output is produced in bounded steps (flate2 writers emit at most ~32 KiB per
//! call, ~64 KiB with the flush), each handed to a sink that can stop the decoding, so a compression bomb never
//! sits in memory.

use std::io::{self, Write};

use flate2::write::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

/// Most codings one body may stack (e.g. `Content-Encoding: gzip, gzip`).
const MAX_CODINGS: usize = 4;

/// Why a body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The codings, as named in the headers, in the order they were applied.
    pub encoding: String,
    pub reason: String,
}

enum Stage {
    Gzip(MultiGzDecoder<Vec<u8>>),
    Zlib(ZlibDecoder<Vec<u8>>),
    Raw(DeflateDecoder<Vec<u8>>),
    /// `deflate` before its first two bytes are known.
    DeflateSniff(Vec<u8>),
}

impl Stage {
    /// Writes some of `input`; returns how much was taken (0: the stream has ended).
    fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        match self {
            Stage::Gzip(d) => d.write(input),
            Stage::Zlib(d) => d.write(input),
            Stage::Raw(d) => d.write(input),
            Stage::DeflateSniff(head) => {
                let need = 2 - head.len();
                if input.len() < need {
                    head.extend_from_slice(input);
                    return Ok(input.len());
                }
                head.extend_from_slice(&input[..need]);
                let first = [head[0], head[1]];
                *self = if looks_like_zlib(first) {
                    Stage::Zlib(ZlibDecoder::new(Vec::new()))
                } else {
                    Stage::Raw(DeflateDecoder::new(Vec::new()))
                };
                let mut rest = &first[..];
                while !rest.is_empty() {
                    match self.write(rest)? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "deflate stream ended in its first two bytes",
                            ))
                        }
                        n => rest = &rest[n..],
                    }
                }
                Ok(need)
            }
        }
    }

    /// Pushes out everything the input so far decodes to (flate2 writers otherwise hold
    /// the last output back until the next write), so SSE events are not delayed.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stage::Gzip(d) => d.flush(),
            Stage::Zlib(d) => d.flush(),
            Stage::Raw(d) => d.flush(),
            Stage::DeflateSniff(_) => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self {
            Stage::Gzip(d) => d.try_finish(),
            Stage::Zlib(d) => d.try_finish(),
            Stage::Raw(d) => d.try_finish(),
            Stage::DeflateSniff(head) if head.is_empty() => Ok(()),
            Stage::DeflateSniff(_) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "deflate stream shorter than two bytes",
            )),
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        match self {
            Stage::Gzip(d) => std::mem::take(d.get_mut()),
            Stage::Zlib(d) => std::mem::take(d.get_mut()),
            Stage::Raw(d) => std::mem::take(d.get_mut()),
            Stage::DeflateSniff(_) => Vec::new(),
        }
    }
}

/// A zlib header: CM = 8 (deflate), CINFO <= 7, and the check bits (RFC 1950 §2.2).
fn looks_like_zlib([cmf, flg]: [u8; 2]) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// The decoders for one body, outermost coding first.
pub(crate) struct BodyDecoder {
    stages: Vec<Stage>,
    encoding: String,
}

impl std::fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDecoder")
            .field("encoding", &self.encoding)
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl BodyDecoder {
    /// Builds the decoder for codings listed in the order they were applied (transfer
    /// codings other than chunked come after the content codings). `Ok(None)`: nothing to
    /// decode.
    pub(crate) fn for_codings(codings: &[&str]) -> Result<Option<Self>, DecodeError> {
        let encoding = codings.join(", ");
        let mut stages = Vec::new();
        for coding in codings.iter().rev() {
            let name = coding.split(';').next().unwrap_or("").trim();
            let stage = if name.eq_ignore_ascii_case("identity") {
                continue;
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                Stage::Gzip(MultiGzDecoder::new(Vec::new()))
            } else if name.eq_ignore_ascii_case("deflate") {
                Stage::DeflateSniff(Vec::with_capacity(2))
            } else {
                return Err(DecodeError {
                    encoding,
                    reason: format!("unsupported coding {name:?}"),
                });
            };
            stages.push(stage);
        }
        if stages.len() > MAX_CODINGS {
            return Err(DecodeError {
                encoding,
                reason: format!("more than {MAX_CODINGS} codings stacked"),
            });
        }
        Ok((!stages.is_empty()).then_some(Self { stages, encoding }))
    }

    /// The codings as named in the headers.
    pub(crate) fn encoding(&self) -> &str {
        &self.encoding
    }

    /// Decodes `input`, handing decoded bytes to `sink` in bounded pieces. `sink` returns
    /// `false` to stop (its own state says why).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), DecodeError> {
        feed_stages(&mut self.stages, input, sink)
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// The body ended: flushes the decoders and checks that every stream was complete.
    pub(crate) fn finish(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), DecodeError> {
        finish_stages(&mut self.stages, sink)
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: io::Error) -> DecodeError {
        DecodeError {
            encoding: self.encoding.clone(),
            reason: e.to_string(),
        }
    }
}

/// Returns `Ok(false)` when the sink asked to stop.
fn feed_stages(
    stages: &mut [Stage],
    mut input: &[u8],
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> io::Result<bool> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        return Ok(sink(input));
    };
    while !input.is_empty() {
        let n = match stage.write(input) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Hand on what was decoded before the damage, as a decoder fed in
                // smaller pieces would have, then report it.
                let _ = stage.flush();
                let produced = stage.take_output();
                if !produced.is_empty() && !feed_stages(rest, &produced, sink)? {
                    // The sink stopped before the damage was reached.
                    return Ok(false);
                }
                return Err(e);
            }
        };
        stage.flush()?;
        let produced = stage.take_output();
        if !produced.is_empty() && !feed_stages(rest, &produced, sink)? {
            return Ok(false);
        }
        if n == 0 {
            // The compressed stream has ended: bytes after it carry nothing.
            break;
        }
        input = &input[n..];
    }
    Ok(true)
}

fn finish_stages(stages: &mut [Stage], sink: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<bool> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        return Ok(true);
    };
    stage.finish()?;
    let produced = stage.take_output();
    if !produced.is_empty() && !feed_stages(rest, &produced, sink)? {
        return Ok(false);
    }
    finish_stages(rest, sink)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    pub(crate) fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    fn decode(codings: &[&str], input: &[u8], step: usize) -> Result<Vec<u8>, DecodeError> {
        let mut d = BodyDecoder::for_codings(codings)?.expect("a decoder");
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            d.feed(piece, &mut |b| {
                out.extend_from_slice(b);
                true
            })?;
        }
        d.finish(&mut |b| {
            out.extend_from_slice(b);
            true
        })?;
        Ok(out)
    }

    const TEXT: &[u8] =
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}} {\"jsonrpc\":\"2.0\"}";

    #[test]
    fn gzip_zlib_and_raw_deflate_decode_in_any_piece_size() {
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(decode(&["gzip"], &gzip(TEXT), step).as_deref(), Ok(TEXT));
            assert_eq!(decode(&["x-gzip"], &gzip(TEXT), step).as_deref(), Ok(TEXT));
            assert_eq!(decode(&["deflate"], &zlib(TEXT), step).as_deref(), Ok(TEXT));
            assert_eq!(
                decode(&["deflate"], &raw_deflate(TEXT), step).as_deref(),
                Ok(TEXT)
            );
        }
    }

    #[test]
    fn stacked_codings_are_removed_in_reverse_order() {
        let twice = zlib(&gzip(TEXT));
        assert_eq!(decode(&["gzip", "deflate"], &twice, 5).as_deref(), Ok(TEXT));
    }

    #[test]
    fn concatenated_gzip_members_decode_to_the_concatenation() {
        let mut two = gzip(b"abc");
        two.extend(gzip(b"def"));
        assert_eq!(decode(&["gzip"], &two, 4).as_deref(), Ok(&b"abcdef"[..]));
    }

    #[test]
    fn identity_needs_no_decoder_and_unknown_codings_are_refused() {
        assert!(matches!(BodyDecoder::for_codings(&["identity"]), Ok(None)));
        let err = BodyDecoder::for_codings(&["br"]).expect_err("unsupported");
        assert_eq!(err.encoding, "br");
        assert_eq!(err.reason, "unsupported coding \"br\"");
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let z = gzip(TEXT);
        assert!(decode(&["gzip"], &z[..z.len() - 4], 3).is_err());
        assert!(decode(&["gzip"], b"not gzip at all", 3).is_err());
        let z = zlib(TEXT);
        assert!(decode(&["deflate"], &z[..z.len() / 2], 3).is_err());
        assert!(decode(&["deflate"], b"x", 3).is_err());
    }

    #[test]
    fn the_sink_can_stop_a_bomb() {
        let big = vec![0u8; 4 << 20];
        let z = gzip(&big);
        let mut d = BodyDecoder::for_codings(&["gzip"])
            .expect("ok")
            .expect("some");
        let mut seen = 0usize;
        let mut biggest = 0usize;
        let r = d.feed(&z, &mut |b| {
            seen += b.len();
            biggest = biggest.max(b.len());
            seen < 100_000
        });
        assert!(r.is_ok());
        assert!(seen < 200_000, "decoding stopped early, saw {seen}");
        assert!(biggest <= 128 * 1024, "bounded steps, biggest {biggest}");
    }
}
