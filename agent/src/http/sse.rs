//! Incremental `text/event-stream` parser (WHATWG HTML §9.2.6 "Parsing an event stream").
//!
//! Fed the decoded body bytes as they arrive; dispatches each event at its blank line.
//! Lines end in LF, CRLF or CR (a CRLF split across pieces counts once). One leading
//! UTF-8 BOM is skipped. Comment lines (`:`) are never buffered. An event whose lines
//! exceed the size limit is reported and skipped up to its blank line.

use super::error::HttpError;
use super::message::{HttpEvent, SseEvent, PARTIAL_HEAD_BYTES};

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

#[derive(Debug, Clone)]
pub(crate) struct SseParser {
    max_event_bytes: usize,
    /// How many BOM bytes matched at the start of the stream; 3 once past the check.
    bom_matched: usize,
    bom_done: bool,
    /// The current line, unless it is a comment or the event is being skipped.
    line: Vec<u8>,
    /// The current line has at least one byte (so its end is not a blank line).
    line_started: bool,
    line_is_comment: bool,
    /// The last byte seen was CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// Skipping an oversized (or gap-damaged) event up to its blank line.
    skipping: bool,
    /// Bytes of field lines in the current event (the bound on its size).
    event_bytes: usize,
    event: Option<String>,
    id: Option<String>,
    retry_ms: Option<u64>,
    data: String,
    data_lines: usize,
    /// The event being skipped was cut (a capture gap, or over the size limit): its data
    /// so far, reported as a `Partial` at its blank line.
    cut: Option<CutEvent>,
}

#[derive(Debug, Clone)]
struct CutEvent {
    /// The `data:` so far (at most [`PARTIAL_HEAD_BYTES`]).
    data: String,
    /// Bytes of the event seen or lost so far.
    size: u64,
    /// Bytes of it the capture lost.
    lost: u64,
}

impl SseParser {
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            bom_matched: 0,
            bom_done: false,
            line: Vec::new(),
            line_started: false,
            line_is_comment: false,
            after_cr: false,
            skipping: false,
            event_bytes: 0,
            event: None,
            id: None,
            retry_ms: None,
            data: String::new(),
            data_lines: 0,
            cut: None,
        }
    }

    /// Parses `input`; `ts_ns` stamps the events it completes.
    pub(crate) fn feed(&mut self, mut input: &[u8], ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if !self.bom_done {
            input = self.strip_bom(input, ts_ns, out);
        }
        let mut i = 0;
        while i < input.len() {
            if self.after_cr {
                self.after_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            let rest = &input[i..];
            match memchr::memchr2(b'\n', b'\r', rest) {
                None => {
                    self.append(rest, out);
                    break;
                }
                Some(k) => {
                    self.append(&rest[..k], out);
                    self.after_cr = rest[k] == b'\r';
                    i += k + 1;
                    self.end_line(ts_ns, out);
                }
            }
        }
    }

    /// Bytes of the stream were lost: whatever event was in progress is damaged. Drop it
    /// and skip up to the next blank line.
    pub(crate) fn after_gap(&mut self, lost: u64) {
        let size = self.event_bytes as u64 + lost;
        self.cut_here(size, lost);
        self.line.clear();
        self.line_is_comment = false;
        self.after_cr = false;
        self.bom_done = true;
        // The gap may have ended mid-line: the next line end is not a blank line.
        self.line_started = true;
        self.skipping = true;
    }

    /// The stream ended. Returns the size of an event that had started but was never
    /// dispatched (it is discarded, as the spec says), if any.
    pub(crate) fn finish(&mut self) -> Option<u64> {
        let pending_line = self.line_started && !self.line_is_comment && !self.skipping;
        let pending_fields = self.data_lines > 0
            || self.event.is_some()
            || self.id.is_some()
            || self.retry_ms.is_some();
        let size = self.event_bytes as u64;
        self.reset_event();
        self.line.clear();
        self.line_started = false;
        (pending_line || pending_fields).then_some(size)
    }

    /// The event in progress is cut here: keeps its data so far (with the current line's, if
    /// a `data:` line) for a `Partial`; `size` and `lost` add to a cut already pending.
    fn cut_here(&mut self, size: u64, lost: u64) {
        if let Some(c) = &mut self.cut {
            c.size += lost;
            c.lost += lost;
        } else {
            let mut data = std::mem::take(&mut self.data);
            if let Some(v) = data_value(&self.line).filter(|_| !self.line_is_comment) {
                if self.data_lines > 0 {
                    data.push('\n');
                }
                data.push_str(&v);
            }
            if !data.is_empty() {
                let mut end = data.len().min(PARTIAL_HEAD_BYTES);
                while !data.is_char_boundary(end) {
                    end -= 1;
                }
                data.truncate(end);
                self.cut = Some(CutEvent { data, size, lost });
            }
        }
        self.reset_event();
    }

    /// A cut event's `Partial`, once (at its blank line, or when the stream ends).
    pub(crate) fn take_cut(&mut self, ts_ns: u64) -> Option<HttpEvent> {
        self.cut.take().map(|c| HttpEvent::Partial {
            data: c.data.into_bytes().into(),
            size: c.size,
            lost: c.lost,
            sse: true,
            ts_ns,
        })
    }

    fn strip_bom<'a>(&mut self, input: &'a [u8], ts_ns: u64, out: &mut Vec<HttpEvent>) -> &'a [u8] {
        let mut i = 0;
        while self.bom_matched < BOM.len() && i < input.len() {
            if input[i] == BOM[self.bom_matched] {
                self.bom_matched += 1;
                i += 1;
            } else {
                // Not a BOM: the bytes that looked like one are content.
                self.bom_done = true;
                let matched = self.bom_matched;
                self.feed(&BOM[..matched], ts_ns, out);
                return &input[i..];
            }
        }
        if self.bom_matched == BOM.len() {
            self.bom_done = true;
        }
        &input[i..]
    }

    fn append(&mut self, bytes: &[u8], out: &mut Vec<HttpEvent>) {
        if bytes.is_empty() {
            return;
        }
        if !self.line_started && bytes[0] == b':' {
            self.line_is_comment = true;
        }
        self.line_started = true;
        if self.skipping {
            if let Some(c) = &mut self.cut {
                c.size += bytes.len() as u64;
            }
            return;
        }
        if self.line_is_comment {
            return;
        }
        self.event_bytes += bytes.len();
        if self.event_bytes > self.max_event_bytes {
            out.push(HttpEvent::Error(HttpError::SseEventTooLarge {
                limit: self.max_event_bytes,
            }));
            // Keep exactly the event's first `max_event_bytes` (the same whatever the pieces).
            let fit = bytes.len() - (self.event_bytes - self.max_event_bytes).min(bytes.len());
            let room = PARTIAL_HEAD_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&bytes[..fit.min(room)]);
            self.cut_here(self.event_bytes as u64, 0);
            self.line.clear();
            self.skipping = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        let blank = !self.line_started;
        if self.skipping {
            if blank {
                self.skipping = false;
                if let Some(p) = self.take_cut(ts_ns) {
                    out.push(p);
                }
            }
        } else if blank {
            self.dispatch(ts_ns, out);
        } else if !self.line_is_comment {
            let line = std::mem::take(&mut self.line);
            self.field(&line);
            self.line = line;
        }
        self.line.clear();
        self.line_started = false;
        self.line_is_comment = false;
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        let value = super::utf8::lossy(value);
        match name {
            b"event" => self.event = Some(value.into_owned()),
            b"data" => {
                if self.data_lines > 0 {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.data_lines += 1;
            }
            // An id holding NUL is ignored (the spec's rule).
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            // Only ASCII digits count; a value too large for u64 is ignored too.
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, ts_ns: u64, out: &mut Vec<HttpEvent>) {
        if self.data_lines > 0 || self.id.is_some() || self.retry_ms.is_some() {
            out.push(HttpEvent::Sse(SseEvent {
                event: self.event.take().filter(|e| !e.is_empty()),
                id: self.id.take(),
                data: std::mem::take(&mut self.data),
                retry_ms: self.retry_ms.take(),
                ts_ns,
            }));
        }
        self.reset_event();
    }

    fn reset_event(&mut self) {
        self.event = None;
        self.id = None;
        self.retry_ms = None;
        self.data.clear();
        self.data_lines = 0;
        self.event_bytes = 0;
    }
}

/// The value of a `data:` field line (`data` alone is an empty value), lossy UTF-8.
fn data_value(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"data")?;
    let value = match rest.first() {
        None => &[][..],
        Some(b':') => rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..]),
        Some(_) => return None,
    };
    Some(super::utf8::lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, id: Option<&str>, data: &str, retry_ms: Option<u64>) -> HttpEvent {
        HttpEvent::Sse(SseEvent {
            event: event.map(str::to_owned),
            id: id.map(str::to_owned),
            data: data.to_owned(),
            retry_ms,
            ts_ns: 0,
        })
    }

    fn partial(data: &str, size: u64, lost: u64) -> HttpEvent {
        HttpEvent::Partial {
            data: data.as_bytes().to_vec().into(),
            size,
            lost,
            sse: true,
            ts_ns: 0,
        }
    }

    /// Parses `input` whole, split at every offset, and byte by byte; all must agree.
    fn parse(input: &[u8], max: usize) -> Vec<HttpEvent> {
        let run = |pieces: &[&[u8]]| {
            let mut p = SseParser::new(max);
            let mut out = Vec::new();
            for piece in pieces {
                p.feed(piece, 0, &mut out);
            }
            out
        };
        let whole = run(&[input]);
        for i in 0..=input.len() {
            assert_eq!(run(&[&input[..i], &input[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn dispatches_mcp_message_events_at_the_blank_line() {
        let input = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        assert_eq!(
            parse(input, 1024),
            vec![ev(
                Some("message"),
                None,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
                None
            )]
        );
    }

    #[test]
    fn joins_multi_line_data_with_lf() {
        let input = b"data: first\ndata:second\ndata:  third\ndata\n\n";
        assert_eq!(
            parse(input, 1024),
            vec![ev(None, None, "first\nsecond\n third\n", None)]
        );
    }

    #[test]
    fn accepts_crlf_cr_and_lf_line_ends() {
        let crlf = parse(b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n", 1024);
        let cr = parse(b"event: a\rdata: 1\r\rdata: 2\r\r", 1024);
        let lf = parse(b"event: a\ndata: 1\n\ndata: 2\n\n", 1024);
        let expected = vec![ev(Some("a"), None, "1", None), ev(None, None, "2", None)];
        assert_eq!(crlf, expected);
        assert_eq!(cr, expected);
        assert_eq!(lf, expected);
    }

    #[test]
    fn emits_the_priming_event_with_id_retry_and_empty_data() {
        assert_eq!(
            parse(b"id: x\nretry: 100\ndata: \n\n", 1024),
            vec![ev(None, Some("x"), "", Some(100))]
        );
    }

    #[test]
    fn emits_an_event_with_only_an_id_but_not_one_with_only_a_type() {
        assert_eq!(
            parse(b"id: 7\n\nevent: lonely\n\n", 1024),
            vec![ev(None, Some("7"), "", None)]
        );
    }

    #[test]
    fn ignores_comments_unknown_fields_and_bad_retry() {
        let input = b": keep-alive\n:\nfoo: bar\nretry: 10x\ndata: ok\n\n";
        assert_eq!(parse(input, 1024), vec![ev(None, None, "ok", None)]);
    }

    #[test]
    fn skips_one_leading_bom() {
        let input = b"\xEF\xBB\xBFdata: a\n\n";
        assert_eq!(parse(input, 1024), vec![ev(None, None, "a", None)]);
        // Not a BOM: "\xEF" is kept as (lossy) content of the line.
        assert_eq!(parse(b"\xEFdata: a\n\n", 1024), vec![]);
    }

    #[test]
    fn comments_do_not_count_against_the_event_limit() {
        let mut input = b":".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend_from_slice(b"\ndata: a\n\n");
        assert_eq!(parse(&input, 20), vec![ev(None, None, "a", None)]);
    }

    #[test]
    fn an_oversized_event_is_reported_and_skipped_to_its_blank_line() {
        let input = b"data: 0123456789\ndata: 0123456789\n\ndata: next\n\n";
        assert_eq!(
            parse(input, 20),
            vec![
                HttpEvent::Error(HttpError::SseEventTooLarge { limit: 20 }),
                // Still reported, from its first 20 bytes, with its real size.
                partial("0123456789\n", 32, 0),
                ev(None, None, "next", None)
            ]
        );
    }

    #[test]
    fn after_a_gap_the_damaged_event_is_skipped() {
        let mut p = SseParser::new(100);
        let mut out = Vec::new();
        p.feed(b"data: par", 0, &mut out);
        p.after_gap(5);
        p.feed(b"tial\n\ndata: whole\n\n", 0, &mut out);
        // "data: par" (9), 5 lost, "tial" (4): reported as cut, from what came before.
        assert_eq!(
            out,
            vec![partial("par", 18, 5), ev(None, None, "whole", None)]
        );
    }

    #[test]
    fn finish_reports_an_undispatched_event() {
        let mut p = SseParser::new(100);
        let mut out = Vec::new();
        p.feed(b"data: a\n\ndata: b", 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.finish(), Some(7));
        let mut p = SseParser::new(100);
        p.feed(b"data: a\n\n: bye", 0, &mut out);
        assert_eq!(p.finish(), None);
    }
}
