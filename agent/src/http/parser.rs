//! The per-direction state machine: bytes in, [`HttpEvent`]s out.
//!
//! Buffering policy: only an incomplete head (at most `max_head_bytes`) or an undecided
//! resynchronisation candidate stays in `buf`; body bytes go straight to the chunked
//! decoder, the content decoder and the sink (a bounded whole-body buffer or the SSE
//! parser). Timestamps of the pieces still in `buf` are kept so every event carries the
//! kernel time of the byte it is about.
//!
//! Gap policy: bytes lost inside a body whose framing survives (a Content-Length body,
//! the data of one chunk, a body delimited by close) keep the framing: a non-SSE message
//! is dropped (`Error(Gap)`, no `Body`, no `End`) and parsing resumes right after it; an
//! SSE stream reports `Error(Gap)`, skips the damaged event and goes on (long-lived
//! streams would otherwise be lost for good). Anywhere else the message is dropped and
//! the parser discards bytes until something looks like the start of a message.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunked::{ChunkStep, ChunkedDecoder};
use super::decode::{BodyDecoder, DecodeError};
use super::error::{HttpError, MessagePart};
use super::framing::{request_plan, response_plan, BodyLength, BodyPlan};
use super::head::{check_field_line, check_first_line, parse_head, Head, HeadParse};
use super::message::{HttpEvent, Limits, MessageKind, PARTIAL_HEAD_BYTES};
use super::resync::{find_message_start, Scan};
use super::sse::SseParser;

/// Most request methods remembered for responses not seen yet (pipelining depth).
const MAX_EXPECTED_RESPONSES: usize = 1024;

/// Capacity the held-back input keeps between messages; beyond it, the buffer is shrunk to
/// what it holds once it holds at most a quarter of this.
pub(crate) const KEEP_BUF_CAPACITY: usize = 4096;

/// Incremental HTTP/1.x parser for one direction of one connection.
#[derive(Debug)]
pub struct HttpParser {
    kind: MessageKind,
    limits: Limits,
    state: State,
    /// Unconsumed bytes: an incomplete head or a resynchronisation candidate.
    buf: Vec<u8>,
    /// Stream offset (bytes pushed since creation, gaps not counted) of `buf[0]`.
    buf_start: u64,
    /// `(stream offset of the first byte, ts_ns)` of the pieces that overlap `buf`.
    pieces: VecDeque<(u64, u64)>,
    /// Response parsers: methods of the requests not answered yet, oldest first.
    expected: VecDeque<String>,
}

#[derive(Debug)]
enum State {
    /// Reading a head that starts at the first unconsumed byte.
    Head(HeadScan),
    Body(Box<Body>),
    /// Discarding bytes until something looks like the start of a message.
    Resync,
    /// The connection no longer carries HTTP (after 101 or CONNECT): ignore it.
    Tunnel,
}

/// How far the head in progress has been examined (so nothing is scanned twice).
/// Offsets are from the start of the head.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// Bytes searched for a line end.
    scanned: usize,
    /// Start of the first line not checked yet.
    next_line: usize,
    /// Start of the first line (leading blank lines are skipped), once complete.
    content_start: Option<usize>,
}

#[derive(Debug)]
struct Body {
    framing: Framing,
    content: BodyContent,
}

#[derive(Debug)]
enum Framing {
    Length { remaining: u64, declared: u64 },
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// Where the body bytes go once de-framed.
#[derive(Debug)]
struct BodyContent {
    decoder: Option<BodyDecoder>,
    /// A coding we cannot remove, reported when the first body byte arrives.
    decode_error: Option<DecodeError>,
    sink: Sink,
    /// Body bytes as framed on the wire (before decoding).
    received: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    /// A gap damaged the message: no `Body`, no `End`.
    dropped: bool,
    /// A body delimited by close outgrew the limit: report its full size at its end.
    too_large_at_end: bool,
    /// Bytes of this body the capture lost (gaps a kept head survived).
    lost: u64,
    /// A request body: announced by a [`HttpEvent::CutPrefix`] if it goes over the limit.
    announce: bool,
    /// Its [`HttpEvent::CutPrefix`] went out.
    announced: bool,
    /// Its declared size, once known to be over the limit (Content-Length, or the chunk
    /// sizes so far).
    declared: Option<u64>,
}

#[derive(Debug)]
enum Sink {
    Whole(Vec<u8>),
    Sse(Box<SseParser>),
    /// A body too large to keep whole: its first [`PARTIAL_HEAD_BYTES`] decoded bytes, for a
    /// [`HttpEvent::Partial`] at its end.
    Head(Vec<u8>),
    /// The decoded bytes before a capture gap (at most [`PARTIAL_HEAD_BYTES`]); what follows
    /// the gap does not continue them and is not kept.
    Cut(Vec<u8>),
    Discard,
}

impl HttpParser {
    pub fn new(kind: MessageKind, limits: Limits) -> Self {
        Self {
            kind,
            limits,
            state: State::Head(HeadScan::default()),
            buf: Vec::new(),
            buf_start: 0,
            pieces: VecDeque::new(),
            expected: VecDeque::new(),
        }
    }

    /// Which direction this parser reads.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Bytes currently held back (an incomplete head or resynchronisation candidate).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next bytes of the stream; appends events to `out`.
    pub fn push(&mut self, data: &[u8], ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if data.is_empty() {
            return;
        }
        self.pieces
            .push_back((self.buf_start + self.buf.len() as u64, ts_ns));
        let consumed = if self.buf.is_empty() {
            let consumed = self.process(data, out);
            self.buf.extend_from_slice(&data[consumed..]);
            consumed
        } else {
            let mut input = std::mem::take(&mut self.buf);
            input.extend_from_slice(data);
            let consumed = self.process(&input, out);
            input.drain(..consumed);
            self.buf = input;
            consumed
        };
        self.buf_start += consumed as u64;
        while self.pieces.len() >= 2 && self.pieces[1].0 <= self.buf_start {
            self.pieces.pop_front();
        }
        // A large head, resynchronisation candidate or piece of data went through: do not
        // keep its capacity for the connection's lifetime (most connections sit idle).
        if self.buf.capacity() > KEEP_BUF_CAPACITY && self.buf.len() <= KEEP_BUF_CAPACITY / 4 {
            self.buf.shrink_to(self.buf.len());
        }
        if self.pieces.capacity() > 64 && self.pieces.len() <= 16 {
            self.pieces.shrink_to(self.pieces.len());
        }
    }

    /// Emits the [`HttpEvent::CutPrefix`] of the request body in progress now, with the
    /// bytes held so far, when it is over the limit and was not announced: a held write (the
    /// process stopped before the rest of the body can come) is judged by what it carries.
    /// (Otherwise it goes out by itself once [`PARTIAL_HEAD_BYTES`] are held, at the same
    /// byte however the stream was cut.)
    pub fn announce_cut(&mut self, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if let State::Body(body) = &mut self.state {
            body.content.announce(ts_ns, out);
        }
    }

    /// Bytes allocated for held-back input (tests).
    #[cfg(test)]
    pub(crate) fn buf_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// A Content-Length body the parser will not look at any more (over the body limit with
    /// its first [`PARTIAL_HEAD_BYTES`] kept, or discarded): the bytes left of it. They may be
    /// left out of the stream on purpose ([`Self::skip`]).
    pub fn skippable_body(&self) -> Option<u64> {
        let State::Body(body) = &self.state else {
            return None;
        };
        let Framing::Length { remaining, .. } = body.framing else {
            return None;
        };
        let done = match &body.content.sink {
            Sink::Head(head) => head.len() >= PARTIAL_HEAD_BYTES,
            Sink::Cut(_) | Sink::Discard => true,
            Sink::Whole(_) | Sink::Sse(_) => false,
        };
        (done && remaining > 0 && self.buf.is_empty()).then_some(remaining)
    }

    /// `n` bytes of a body [`Self::skippable_body`] named were left out of the stream on
    /// purpose: they count as received, and the body ends as if they had been read. False,
    /// with nothing done, when the parser is not in such a body or it has fewer bytes left.
    pub fn skip(&mut self, n: u64, ts_ns: u64, out: &mut Vec<HttpEvent>) -> bool {
        if self.skippable_body().is_none_or(|left| n > left) {
            return false;
        }
        let limits = self.limits;
        let State::Body(body) = &mut self.state else {
            return false;
        };
        let Framing::Length { remaining, .. } = &mut body.framing else {
            return false;
        };
        *remaining -= n;
        let done = *remaining == 0;
        let content = &mut body.content;
        if let Some(e) = content.decode_error.take() {
            out.push(HttpEvent::Error(HttpError::Decompress {
                encoding: e.encoding,
                reason: e.reason,
            }));
        }
        content.first_ts.get_or_insert(ts_ns);
        content.last_ts = ts_ns;
        content.received += n;
        // Its output is not wanted any more, and it could not continue across the hole.
        content.decoder = None;
        if done {
            content.finish(ts_ns, &limits, out);
            self.state = State::Head(HeadScan::default());
        }
        true
    }

    /// `lost` bytes of the stream are missing (capture loss). Drops the current message
    /// (reporting [`HttpError::Gap`] if one was in progress) and resynchronises; see the
    /// module documentation for bodies whose framing survives the gap.
    pub fn gap(&mut self, lost: u64, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if lost == 0 {
            return;
        }
        match &mut self.state {
            State::Head(_) => {
                if has_content(&self.buf) {
                    out.push(HttpEvent::Error(HttpError::Gap { lost }));
                }
                self.resync_after_gap();
            }
            State::Resync => self.resync_after_gap(),
            State::Tunnel => {}
            State::Body(body) => {
                out.push(HttpEvent::Error(HttpError::Gap { lost }));
                let survives = match &mut body.framing {
                    Framing::Length { remaining, .. } if lost <= *remaining => {
                        *remaining -= lost;
                        true
                    }
                    Framing::Length { .. } => false,
                    Framing::Chunked(dec) => dec.skip_lost(lost),
                    Framing::UntilClose => true,
                };
                if !survives {
                    self.resync_after_gap();
                    return;
                }
                body.content.damage(lost);
                if matches!(body.framing, Framing::Length { remaining: 0, .. }) {
                    body.content.finish(ts_ns, &self.limits, out);
                    self.state = State::Head(HeadScan::default());
                }
            }
        }
    }

    /// The stream ended in this direction: finishes a body delimited by close, ends an
    /// open SSE stream, reports a message cut short as [`HttpError::Truncated`]. The parser
    /// is then as new.
    pub fn close(&mut self, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        match &mut self.state {
            State::Head(_) => {
                let start = self.buf.iter().position(|&b| b != b'\r' && b != b'\n');
                if let Some(start) = start {
                    out.push(HttpEvent::Error(HttpError::Truncated {
                        part: MessagePart::Head,
                        received: self.buf.len().saturating_sub(start) as u64,
                        expected: None,
                    }));
                }
            }
            State::Body(body) => {
                let expected = match &body.framing {
                    Framing::UntilClose => None,
                    Framing::Length { declared, .. } => Some(Some(*declared)),
                    Framing::Chunked(_) => Some(None),
                };
                match expected {
                    None => body.content.finish(ts_ns, &self.limits, out),
                    Some(_) if matches!(body.content.sink, Sink::Sse(_)) => {
                        // An SSE stream is ended by closing the connection.
                        body.content.decoder = None;
                        body.content.finish(ts_ns, &self.limits, out);
                    }
                    Some(expected) => {
                        let size = expected.unwrap_or(body.content.received + body.content.lost);
                        body.content.emit_partial(size, ts_ns, out);
                        if !body.content.dropped {
                            out.push(HttpEvent::Error(HttpError::Truncated {
                                part: MessagePart::Body,
                                received: body.content.received,
                                expected,
                            }));
                        }
                    }
                }
            }
            State::Resync | State::Tunnel => {}
        }
        self.state = State::Head(HeadScan::default());
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        self.pieces.clear();
        self.expected.clear();
    }

    /// Response parsers only: the method of the next request on this connection, in
    /// order (call once per request head seen on the other direction). Lets the parser
    /// know a HEAD response has no body and a successful CONNECT starts a tunnel.
    pub fn expect_response_to(&mut self, method: &str) {
        if self.kind != MessageKind::Response {
            return;
        }
        if self.expected.len() >= MAX_EXPECTED_RESPONSES {
            self.expected.pop_front();
        }
        self.expected.push_back(method.to_owned());
    }

    fn resync_after_gap(&mut self) {
        self.state = State::Resync;
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        self.pieces.clear();
        // The lost bytes may have held whole responses: the queue no longer lines up.
        self.expected.clear();
    }

    /// Kernel time of the piece holding stream offset `pos`.
    fn ts_at(&self, pos: u64) -> u64 {
        ts_in(&self.pieces, pos)
    }

    /// Consumes what it can of `input` (which starts at `buf_start`); returns how much.
    fn process(&mut self, input: &[u8], out: &mut Vec<HttpEvent>) -> usize {
        let mut cur = 0;
        loop {
            let more = match self.state {
                State::Head(_) => self.step_head(input, &mut cur, out),
                State::Body(_) => self.step_body(input, &mut cur, out),
                State::Resync => self.step_resync(input, &mut cur),
                State::Tunnel => {
                    cur = input.len();
                    false
                }
            };
            if !more {
                return cur;
            }
        }
    }

    fn step_resync(&mut self, input: &[u8], cur: &mut usize) -> bool {
        match find_message_start(self.kind, &input[*cur..], self.limits.max_head_bytes) {
            Scan::Found(p) => {
                *cur += p;
                self.state = State::Head(HeadScan::default());
                true
            }
            Scan::NeedMore(p) => {
                *cur += p;
                false
            }
            Scan::NotFound => {
                *cur = input.len();
                false
            }
        }
    }

    /// Drops the head that starts at `cur` and resynchronises from the byte after it.
    fn fail_head(&mut self, error: HttpError, cur: &mut usize, out: &mut Vec<HttpEvent>) -> bool {
        out.push(HttpEvent::Error(error));
        *cur += 1;
        self.state = State::Resync;
        true
    }

    fn step_head(&mut self, input: &[u8], cur: &mut usize, out: &mut Vec<HttpEvent>) -> bool {
        let kind = self.kind;
        let max = self.limits.max_head_bytes;
        let State::Head(scan) = &mut self.state else {
            return false;
        };
        let head = &input[*cur..];
        if head.len() <= scan.scanned {
            return false;
        }
        // Only complete lines inside the limit are looked at, one at a time, so the
        // verdict on a head does not depend on how its bytes were split into pieces.
        let window = &head[..head.len().min(max)];
        if scan.scanned == 0 {
            // Fast path: the whole head is here and valid (the usual case). Every line of a
            // head httparse accepts whole passes the line checks below, so the verdict is
            // the same; anything else (incomplete, invalid) takes the line-by-line path.
            if let HeadParse::Complete { len, head } = parse_head(kind, window) {
                let content_start = leading_blank_lines(window);
                return self.emit_head(len, content_start, head, cur, out);
            }
        }
        let mut complete = None;
        let mut failure = None;
        loop {
            let from = scan.scanned.max(scan.next_line).min(window.len());
            let Some(k) = window[from..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let start = scan.next_line;
            let end = from + k + 1;
            scan.next_line = end;
            scan.scanned = end;
            let line = &window[start..end];
            let blank = line == b"\n" || line == b"\r\n";
            match scan.content_start {
                // Blank lines before a message are ignored (RFC 9112 §2.2).
                None if blank => {}
                None => {
                    scan.content_start = Some(start);
                    if let Err(reason) = check_first_line(kind, line) {
                        failure = Some(HttpError::MalformedHead { reason });
                        break;
                    }
                }
                Some(_) if blank => {
                    complete = Some(parse_head(kind, &window[..end]));
                    break;
                }
                Some(_) => {
                    if let Err(reason) = check_field_line(kind, line, window) {
                        failure = Some(HttpError::MalformedHead { reason });
                        break;
                    }
                }
            }
        }
        let content_start = scan.content_start.unwrap_or(0);
        if complete.is_none() && failure.is_none() {
            scan.scanned = head.len();
            if head.len() < max {
                return false;
            }
            failure = Some(HttpError::HeadTooLarge { limit: max });
        }
        let (len, head) = match complete {
            Some(HeadParse::Complete { len, head }) => (len, head),
            Some(HeadParse::Invalid(reason)) => {
                return self.fail_head(HttpError::MalformedHead { reason }, cur, out)
            }
            Some(HeadParse::Partial) => {
                let reason =
                    "the head parser wanted more bytes after the blank line ending the head"
                        .to_string();
                return self.fail_head(HttpError::MalformedHead { reason }, cur, out);
            }
            None => {
                let error = failure.unwrap_or(HttpError::HeadTooLarge { limit: max });
                return self.fail_head(error, cur, out);
            }
        };
        self.emit_head(len, content_start, head, cur, out)
    }

    /// The head of `len` bytes (its first line at `content_start`) that starts at `cur` is
    /// complete: its event, then its body.
    fn emit_head(
        &mut self,
        len: usize,
        content_start: usize,
        head: Head,
        cur: &mut usize,
        out: &mut Vec<HttpEvent>,
    ) -> bool {
        let start_ts = self.ts_at(self.buf_start + (*cur + content_start) as u64);
        let end_ts = self.ts_at(self.buf_start + (*cur + len).saturating_sub(1) as u64);
        let (plan, event) = match head {
            Head::Request(mut r) => {
                r.ts_ns = start_ts;
                (request_plan(&r.method, &r.headers), HttpEvent::Request(r))
            }
            Head::Response(mut r) => {
                r.ts_ns = start_ts;
                let method = if r.status >= 200 || r.status == 101 {
                    self.expected.pop_front()
                } else {
                    None
                };
                (
                    response_plan(r.status, method.as_deref(), &r.headers),
                    HttpEvent::Response(r),
                )
            }
        };
        *cur += len;
        match plan {
            Ok(plan) => {
                out.push(event);
                self.start_body(plan, end_ts, out);
            }
            Err(reason) => {
                // The body length cannot be known: skip to the next message.
                out.push(HttpEvent::Error(HttpError::MalformedHead { reason }));
                self.state = State::Resync;
            }
        }
        true
    }

    fn start_body(&mut self, plan: BodyPlan, head_end_ts: u64, out: &mut Vec<HttpEvent>) {
        let framing = match plan.length {
            BodyLength::Empty | BodyLength::Length(0) => {
                out.push(HttpEvent::End { ts_ns: head_end_ts });
                self.state = State::Head(HeadScan::default());
                return;
            }
            BodyLength::Interim => {
                self.state = State::Head(HeadScan::default());
                return;
            }
            BodyLength::Tunnel => {
                out.push(HttpEvent::End { ts_ns: head_end_ts });
                self.state = State::Tunnel;
                return;
            }
            BodyLength::Length(n) => Framing::Length {
                remaining: n,
                declared: n,
            },
            BodyLength::Chunked => {
                Framing::Chunked(ChunkedDecoder::new(self.limits.max_head_bytes))
            }
            BodyLength::UntilClose => Framing::UntilClose,
        };
        let mut content = BodyContent {
            decoder: None,
            decode_error: None,
            sink: if plan.is_sse {
                Sink::Sse(Box::new(SseParser::new(self.limits.max_sse_event_bytes)))
            } else {
                Sink::Whole(Vec::new())
            },
            received: 0,
            first_ts: None,
            last_ts: head_end_ts,
            dropped: false,
            too_large_at_end: false,
            lost: 0,
            announce: self.kind == MessageKind::Request,
            announced: false,
            declared: None,
        };
        if let Framing::Length { declared, .. } = framing {
            if !plan.is_sse && declared > self.limits.max_body_bytes as u64 {
                out.push(HttpEvent::Error(HttpError::BodyTooLarge {
                    declared,
                    limit: self.limits.max_body_bytes,
                }));
                content.sink = Sink::Head(Vec::new());
                content.declared = Some(declared);
            }
        }
        if !matches!(content.sink, Sink::Discard) {
            let codings: Vec<&str> = plan.codings.iter().map(String::as_str).collect();
            match BodyDecoder::for_codings(&codings) {
                Ok(decoder) => content.decoder = decoder,
                Err(e) => {
                    content.decode_error = Some(e);
                    content.sink = Sink::Discard;
                }
            }
        }
        self.state = State::Body(Box::new(Body { framing, content }));
    }

    fn step_body(&mut self, input: &[u8], cur: &mut usize, out: &mut Vec<HttpEvent>) -> bool {
        if *cur >= input.len() {
            return false;
        }
        let base = self.buf_start;
        let limits = self.limits;
        let pieces = &self.pieces;
        let ts_at = |offset: usize| ts_in(pieces, base + offset as u64);
        let State::Body(body) = &mut self.state else {
            return false;
        };
        let end_ts = match &mut body.framing {
            Framing::UntilClose => {
                let ts = ts_at(input.len().saturating_sub(1));
                body.content.take(&input[*cur..], ts, &limits, out);
                *cur = input.len();
                return false;
            }
            Framing::Length { remaining, .. } => {
                let available = (input.len() - *cur) as u64;
                let n = (*remaining).min(available);
                *remaining -= n;
                // n <= available, which came from a usize.
                let end = *cur + n as usize;
                let ts = ts_at(end.saturating_sub(1));
                body.content.take(&input[*cur..end], ts, &limits, out);
                *cur = end;
                if *remaining > 0 {
                    return false;
                }
                ts
            }
            Framing::Chunked(dec) => loop {
                match dec.next(&input[*cur..]) {
                    Ok(ChunkStep::Data(r)) => {
                        let (start, end) = (*cur + r.start, *cur + r.end);
                        if matches!(body.content.sink, Sink::Whole(_))
                            && dec.declared() > limits.max_body_bytes as u64
                        {
                            out.push(HttpEvent::Error(HttpError::BodyTooLarge {
                                declared: dec.declared(),
                                limit: limits.max_body_bytes,
                            }));
                            body.content.keep_head();
                            body.content.declared = Some(dec.declared());
                        }
                        body.content.take(
                            &input[start..end],
                            ts_at(end.saturating_sub(1)),
                            &limits,
                            out,
                        );
                        *cur = end;
                    }
                    Ok(ChunkStep::NeedMore { consumed }) => {
                        *cur += consumed;
                        return false;
                    }
                    Ok(ChunkStep::Done { consumed }) => {
                        *cur += consumed;
                        break ts_at(cur.saturating_sub(1));
                    }
                    Err(e) => {
                        *cur += e.at;
                        out.push(HttpEvent::Error(HttpError::BadChunk { reason: e.reason }));
                        self.state = State::Resync;
                        return true;
                    }
                }
            },
        };
        body.content.finish(end_ts, &limits, out);
        self.state = State::Head(HeadScan::default());
        true
    }
}

impl BodyContent {
    /// Takes body bytes as de-framed from the wire.
    fn take(&mut self, raw: &[u8], ts: u64, limits: &Limits, out: &mut Vec<HttpEvent>) {
        self.take_bytes(raw, ts, limits, out);
        if matches!(&self.sink, Sink::Head(h) if h.len() >= PARTIAL_HEAD_BYTES) {
            self.announce(ts, out);
        }
    }

    /// A request body over the limit, not announced yet: its [`HttpEvent::CutPrefix`] with
    /// the head held so far.
    fn announce(&mut self, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        let Sink::Head(head) = &self.sink else {
            return;
        };
        if !self.announce || self.announced || head.is_empty() {
            return;
        }
        self.announced = true;
        out.push(HttpEvent::CutPrefix {
            data: Bytes::copy_from_slice(head),
            size: self.declared.unwrap_or(self.received + self.lost),
            ts_ns,
        });
    }

    fn take_bytes(&mut self, raw: &[u8], ts: u64, limits: &Limits, out: &mut Vec<HttpEvent>) {
        if raw.is_empty() {
            return;
        }
        self.first_ts.get_or_insert(ts);
        self.last_ts = ts;
        self.received += raw.len() as u64;
        if let Some(e) = self.decode_error.take() {
            out.push(HttpEvent::Error(HttpError::Decompress {
                encoding: e.encoding,
                reason: e.reason,
            }));
        }
        let before = self.received - raw.len() as u64;
        let room = (limits.max_body_bytes as u64).saturating_sub(before);
        if matches!(self.sink, Sink::Whole(_)) && raw.len() as u64 > room {
            // Only a body delimited by close gets here (the others were checked against
            // their announced size). The decoder still sees exactly the bytes up to the
            // limit, so what it reports does not depend on how the stream was cut.
            // room < raw.len(), a usize.
            let (fits, rest) = raw.split_at(room as usize);
            self.decode(Some(fits), ts, limits, out);
            if !matches!(self.sink, Sink::Discard) {
                self.too_large_at_end = true;
                self.keep_head();
                // The head goes on to `PARTIAL_HEAD_BYTES` whatever the pieces.
                self.decode(Some(rest), ts, limits, out);
            }
            return;
        }
        self.decode(Some(raw), ts, limits, out);
    }

    /// Runs bytes (or, with `None`, the end of the body) through the decoder to the sink.
    fn decode(&mut self, raw: Option<&[u8]>, ts: u64, limits: &Limits, out: &mut Vec<HttpEvent>) {
        if matches!(self.sink, Sink::Discard) {
            return;
        }
        let Some(decoder) = &mut self.decoder else {
            if let Some(raw) = raw {
                if !accept(&mut self.sink, raw, ts, limits, out) {
                    self.discard();
                }
            }
            return;
        };
        let mut overflow = false;
        let sink = &mut self.sink;
        let mut to_sink = |decoded: &[u8]| {
            let ok = accept(sink, decoded, ts, limits, out);
            overflow |= !ok;
            ok
        };
        let result = match raw {
            Some(raw) => decoder.feed(raw, &mut to_sink),
            None => decoder.finish(&mut to_sink),
        };
        let error = match result {
            Err(e) => Some(e),
            Ok(()) if overflow => Some(DecodeError {
                encoding: decoder.encoding().to_owned(),
                reason: format!(
                    "the decoded body is larger than the {}-byte limit (Limits::max_body_bytes)",
                    limits.max_body_bytes
                ),
            }),
            Ok(()) => None,
        };
        if let Some(e) = error {
            out.push(HttpEvent::Error(HttpError::Decompress {
                encoding: e.encoding,
                reason: e.reason,
            }));
            self.discard();
        }
    }

    fn discard(&mut self) {
        self.sink = Sink::Discard;
        self.decoder = None;
    }

    /// From now on only the first [`PARTIAL_HEAD_BYTES`] of the body are kept.
    fn keep_head(&mut self) {
        if let Sink::Whole(buf) = &mut self.sink {
            let mut head = std::mem::take(buf);
            head.truncate(PARTIAL_HEAD_BYTES);
            self.sink = Sink::Head(head);
        }
    }

    /// `lost` bytes inside the body were lost. What was decoded before them is kept (a
    /// `Partial` at the end: the message is still reported, as truncated); a body with
    /// nothing decoded yet is dropped.
    fn damage(&mut self, lost: u64) {
        self.lost += lost;
        match &mut self.sink {
            Sink::Sse(sse) if self.decoder.is_none() => sse.after_gap(lost),
            Sink::Whole(buf) | Sink::Head(buf) if !buf.is_empty() => {
                let mut head = std::mem::take(buf);
                head.truncate(PARTIAL_HEAD_BYTES);
                self.sink = Sink::Cut(head);
                // Bytes after the gap cannot be decoded without those before it.
                self.decoder = None;
                self.decode_error = None;
            }
            Sink::Cut(_) => {}
            _ => {
                self.discard();
                self.dropped = true;
                self.too_large_at_end = false;
                self.decode_error = None;
            }
        }
    }

    /// A kept head (body too large, or cut by a gap) as a `Partial` of `size` bytes.
    fn emit_partial(&mut self, size: u64, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if let Sink::Head(head) | Sink::Cut(head) = &mut self.sink {
            if !head.is_empty() {
                out.push(HttpEvent::Partial {
                    data: Bytes::from(std::mem::take(head)),
                    size,
                    lost: self.lost,
                    sse: false,
                    ts_ns,
                });
            }
            self.sink = Sink::Discard;
        }
    }

    /// The body is complete (or the stream closed): emits what it holds, then `End`.
    fn finish(&mut self, end_ts: u64, limits: &Limits, out: &mut Vec<HttpEvent>) {
        if self.received > 0 {
            self.decode(None, end_ts, limits, out);
        }
        self.emit_partial(self.received + self.lost, end_ts, out);
        if self.too_large_at_end && !self.dropped {
            out.push(HttpEvent::Error(HttpError::BodyTooLarge {
                declared: self.received,
                limit: limits.max_body_bytes,
            }));
        }
        match std::mem::replace(&mut self.sink, Sink::Discard) {
            Sink::Whole(data) if !data.is_empty() => out.push(HttpEvent::Body {
                data: Bytes::from(data),
                first_ts_ns: self.first_ts.unwrap_or(end_ts),
                last_ts_ns: self.last_ts,
            }),
            Sink::Sse(mut sse) => {
                if let Some(p) = sse.take_cut(end_ts) {
                    out.push(p);
                }
                if let Some(received) = sse.finish() {
                    out.push(HttpEvent::Error(HttpError::Truncated {
                        part: MessagePart::SseEvent,
                        received,
                        expected: None,
                    }));
                }
            }
            _ => {}
        }
        if !self.dropped {
            out.push(HttpEvent::End { ts_ns: end_ts });
        }
    }
}

/// Hands decoded bytes to the sink; `false` when a whole body outgrew the limit.
fn accept(
    sink: &mut Sink,
    data: &[u8],
    ts: u64,
    limits: &Limits,
    out: &mut Vec<HttpEvent>,
) -> bool {
    match sink {
        Sink::Whole(buf) => {
            if buf.len() + data.len() > limits.max_body_bytes {
                return false;
            }
            buf.extend_from_slice(data);
            true
        }
        Sink::Sse(sse) => {
            sse.feed(data, ts, out);
            true
        }
        Sink::Head(buf) => {
            let room = PARTIAL_HEAD_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
            true
        }
        Sink::Cut(_) => true,
        Sink::Discard => false,
    }
}

/// Kernel time of the piece holding stream offset `pos`.
fn ts_in(pieces: &VecDeque<(u64, u64)>, pos: u64) -> u64 {
    pieces
        .iter()
        .rev()
        .find(|(start, _)| *start <= pos)
        .or(pieces.front())
        .map_or(0, |(_, ts)| *ts)
}

/// Length of the blank lines (`\n`, `\r\n`) before a message's first line.
fn leading_blank_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match buf.get(at..) {
            Some([b'\n', ..]) => at += 1,
            Some([b'\r', b'\n', ..]) => at += 2,
            _ => return at,
        }
    }
}

fn has_content(buf: &[u8]) -> bool {
    buf.iter().any(|&b| b != b'\r' && b != b'\n')
}
