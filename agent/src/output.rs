//! Output sinks. For now: JSON lines, one [`Record`] per line, flushed per line so a reader
//! (`tail -f`, a test harness) sees every record as soon as it is produced.

use std::io::{self, Write};

use crate::mcp::Record;

/// Writes records as JSON lines.
#[derive(Debug)]
pub struct JsonLinesWriter<W: Write> {
    inner: W,
    line: Vec<u8>,
}

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
        self.line.clear();
        serde_json::to_writer(&mut self.line, rec).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.inner.write_all(&self.line)?;
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
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
