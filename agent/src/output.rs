//! Output sinks. For now: JSON lines, one [`Record`] per line. [`JsonLinesWriter::write`]
//! flushes each line; [`JsonLinesWriter::push`] gathers lines and
//! [`JsonLinesWriter::flush`] writes them with one call, so a batch of records costs one
//! `write(2)` and a reader (`tail -f`, a test harness) still sees every record at the end of
//! the batch that produced it.

use std::io::{self, Write};

use crate::mcp::Record;

/// Writes records as JSON lines.
#[derive(Debug)]
pub struct JsonLinesWriter<W: Write> {
    inner: W,
    /// Whole lines not yet handed to `inner`.
    line: Vec<u8>,
}

/// Pushed lines are handed to the inner writer once they reach this size (without a flush).
const PUSH_CHUNK_BYTES: usize = 64 * 1024;

impl<W: Write> JsonLinesWriter<W> {
    pub fn new(inner: W) -> Self {
        JsonLinesWriter {
            inner,
            line: Vec::with_capacity(512),
        }
    }

    /// Writes one record as one line (`\n`-terminated) and flushes.
    ///
    /// The line is serialised fully before anything is written, so a serialisation error
    /// never leaves half a line behind.
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        self.append(rec)?;
        self.flush()
    }

    /// Adds one record as one line to the batch; nothing is flushed (lines are handed to the
    /// inner writer whole, in chunks of about [`PUSH_CHUNK_BYTES`]). Call
    /// [`JsonLinesWriter::flush`] at the end of the batch.
    pub fn push(&mut self, rec: &Record) -> io::Result<()> {
        self.append(rec)?;
        if self.line.len() >= PUSH_CHUNK_BYTES {
            self.inner.write_all(&self.line)?;
            self.line.clear();
        }
        Ok(())
    }

    /// Writes the lines pushed so far and flushes the inner writer.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            let written = self.inner.write_all(&self.line);
            self.line.clear();
            written?;
        }
        self.inner.flush()
    }

    /// Serialises `rec` and its `\n` after the lines held; on error nothing of it stays.
    fn append(&mut self, rec: &Record) -> io::Result<()> {
        let start = self.line.len();
        if let Err(e) = serde_json::to_writer(&mut self.line, rec) {
            self.line.truncate(start);
            return Err(io::Error::other(e));
        }
        self.line.push(b'\n');
        Ok(())
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably (lines pushed and not flushed are not in it yet).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives the underlying writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::{EndReason, Era, Grouping, SessionState, SessionStatus, SessionSummary, Side};
    use serde_json::json;

    fn summary() -> Record {
        Record::SessionEnd(SessionSummary {
            session_id: "abc".into(),
            grouping: Grouping::SessionHeader,
            era: Era::Handshake,
            pid: 7,
            comm: "python3".into(),
            side: Side::Client,
            server: "127.0.0.1:8000/mcp".into(),
            client_name: Some("mcp".into()),
            client_version: Some("0.1.0".into()),
            server_name: None,
            server_version: None,
            protocol_version: Some("2025-11-25".into()),
            started_ns: 10,
            ended_ns: 30,
            duration_ns: 20,
            requests: 1,
            notifications: 0,
            responses: 1,
            errors: 0,
            status: SessionStatus::Ended,
            end_reason: Some(EndReason::Delete),
            methods: vec!["initialize".into()],
            tools: vec![],
            primitives: vec![],
            state: SessionState::Initializing,
            user: None,
            role: None,
            identity_source: None,
            identity_verified: false,
            client_capabilities: None,
            server_capabilities: None,
            cancelled: 0,
            protocol_version_mismatches: 0,
            first_mismatched_protocol_version: None,
            supported_versions: None,
            verification_failures: 0,
            attacks: vec![],
            joined_mid_stream: false,
            process: Default::default(),
        })
    }

    /// Counts flushes so the test can assert one per line.
    struct Recorder {
        bytes: Vec<u8>,
        flushes: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn each_record_is_one_flushed_json_line() {
        let mut w = JsonLinesWriter::new(Recorder {
            bytes: Vec::new(),
            flushes: 0,
        });
        let rec = summary();
        assert!(w.write(&rec).is_ok());
        assert!(w.write(&rec).is_ok());
        let out = w.into_inner();
        assert_eq!(out.flushes, 2);
        let text = String::from_utf8(out.bytes).unwrap_or_default();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        assert_eq!(
            first,
            json!({
                "type": "session_end", "session_id": "abc", "grouping": "session_header",
                "era": "handshake", "pid": 7, "comm": "python3", "side": "client", "server": "127.0.0.1:8000/mcp",
                "client_name": "mcp", "client_version": "0.1.0", "server_name": null,
                "server_version": null, "protocol_version": "2025-11-25", "started_ns": 10,
                "ended_ns": 30, "duration_ns": 20, "requests": 1, "notifications": 0,
                "responses": 1, "errors": 0, "status": "ended", "end_reason": "delete",
                "methods": ["initialize"], "tools": [], "primitives": [],
                "state": "initializing", "user": null, "role": null, "identity_source": null,
                "identity_verified": false, "client_capabilities": null,
                "server_capabilities": null, "cancelled": 0, "protocol_version_mismatches": 0,
                "first_mismatched_protocol_version": null, "supported_versions": null,
                "verification_failures": 0, "attacks": []
            })
        );
    }

    #[test]
    fn pushed_records_are_written_whole_with_one_flush_per_batch() {
        let mut w = JsonLinesWriter::new(Recorder {
            bytes: Vec::new(),
            flushes: 0,
        });
        let rec = summary();
        for _ in 0..3 {
            assert!(w.push(&rec).is_ok());
        }
        assert!(
            w.get_ref().bytes.is_empty(),
            "nothing written before the flush"
        );
        assert!(w.flush().is_ok());
        let mut one = JsonLinesWriter::new(Vec::new());
        assert!(one.write(&rec).is_ok());
        let line = one.into_inner();
        let out = w.into_inner();
        assert_eq!(out.flushes, 1);
        assert_eq!(out.bytes, [line.clone(), line.clone(), line].concat());
    }

    #[test]
    fn a_large_batch_reaches_the_writer_in_whole_lines_before_the_flush() {
        let mut w = JsonLinesWriter::new(Recorder {
            bytes: Vec::new(),
            flushes: 0,
        });
        let rec = summary();
        while w.get_ref().bytes.is_empty() {
            assert!(w.push(&rec).is_ok());
        }
        assert_eq!(w.get_ref().bytes.last(), Some(&b'\n'));
        assert_eq!(w.get_ref().flushes, 0);
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "reader went away",
            ))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_reach_the_caller() {
        let mut w = JsonLinesWriter::new(Broken);
        let err = w.write(&summary()).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::BrokenPipe));
    }
}
