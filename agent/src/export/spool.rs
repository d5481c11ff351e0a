//! A bounded on-disk spool of envelopes: records that do not fit in memory, or are still
//! unacknowledged when the agent stops, wait here and are sent later (also by the next run).
//!
//! Layout: segment files `<20-digit counter>.spool` in one directory, each a sequence of
//! `u32` little-endian length + protobuf `Envelope`. The oldest segment is read whole and
//! deleted; a crash after that may resend its records (the collector de-duplicates).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mcpwarden_proto::v1::Envelope;
use prost::Message;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Reading, writing or listing the spool directory failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// What [`Spool::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written.
    Stored,
    /// The byte bound would be exceeded: not written.
    Full,
}

/// A bounded FIFO of envelopes on disk.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segments, oldest first, with their sizes.
    segments: VecDeque<(u64, u64)>,
    next_segment: u64,
    writer: Option<(u64, File)>,
    total_bytes: u64,
    /// Records found corrupt (unreadable lengths or protobuf) and skipped.
    pub corrupt: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    /// Opens (creating) `dir`, bounded to `max_bytes` of segment data; existing segments from
    /// an earlier run are kept and read first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".spool"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io_err(dir))?.len();
            segments.push((n, len));
        }
        segments.sort_unstable();
        let total_bytes = segments.iter().map(|s| s.1).sum();
        let next_segment = segments.last().map_or(0, |s| s.0 + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 * 1024, 1024 * 1024),
            segments: segments.into(),
            next_segment,
            writer: None,
            total_bytes,
            corrupt: 0,
        })
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.spool"))
    }

    /// Bytes currently spooled.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Nothing spooled.
    pub fn is_empty(&self) -> bool {
        self.total_bytes == 0
    }

    /// Appends one envelope, unless that would exceed the bound.
    pub fn push(&mut self, env: &Envelope) -> Result<Pushed, SpoolError> {
        let body = env.encode_to_vec();
        let len = body.len() as u64 + 4;
        if self.total_bytes + len > self.max_bytes {
            return Ok(Pushed::Full);
        }
        let rotate = match (&self.writer, self.segments.back()) {
            (Some((n, _)), Some((last, size))) => *n != *last || *size >= self.segment_bytes,
            _ => true,
        };
        if rotate {
            let n = self.next_segment;
            self.next_segment += 1;
            let path = self.path(n);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            self.writer = Some((n, f));
            self.segments.push_back((n, 0));
        }
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        if let Some((n, f)) = self.writer.as_mut() {
            let n = *n;
            f.write_all(&frame).map_err(|source| SpoolError::Io {
                path: self.dir.join(format!("{n:020}.spool")),
                source,
            })?;
        }
        if let Some(last) = self.segments.back_mut() {
            last.1 += len;
        }
        self.total_bytes += len;
        Ok(Pushed::Stored)
    }

    /// Removes and returns the oldest segment's envelopes (empty when nothing is spooled).
    pub fn pop_segment(&mut self) -> Result<Vec<Envelope>, SpoolError> {
        let Some((n, size)) = self.segments.pop_front() else {
            return Ok(Vec::new());
        };
        if self.writer.as_ref().is_some_and(|(w, _)| *w == n) {
            self.writer = None;
        }
        let path = self.path(n);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        self.total_bytes = self.total_bytes.saturating_sub(size);
        let mut out = Vec::new();
        let mut at = 0usize;
        while at + 4 <= data.len() {
            let mut len4 = [0u8; 4];
            len4.copy_from_slice(&data[at..at + 4]);
            let len = u32::from_le_bytes(len4) as usize;
            at += 4;
            let Some(body) = data.get(at..at + len) else {
                self.corrupt += 1;
                break;
            };
            at += len;
            match Envelope::decode(body) {
                Ok(env) => out.push(env),
                Err(_) => self.corrupt += 1,
            }
        }
        if at < data.len() && at + 4 > data.len() {
            self.corrupt += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64, pad: usize) -> Envelope {
        Envelope {
            seq,
            realtime_offset_ns: pad as u64,
            agent: Some(mcpwarden_proto::v1::AgentIdentity {
                agent_id: "x".repeat(pad),
                ..Default::default()
            }),
            record: None,
        }
    }

    #[test]
    fn fifo_across_segments_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 2 * 1024 * 1024).expect("open");
        for seq in 0..3000 {
            assert_eq!(s.push(&env(seq, 100)).expect("push"), Pushed::Stored);
        }
        assert!(s.segments.len() > 1, "several segments");
        let first = s.pop_segment().expect("pop");
        assert_eq!(first[0].seq, 0);
        let mut seqs: Vec<u64> = first.iter().map(|e| e.seq).collect();
        drop(s);
        // A new run finds the rest, in order.
        let mut s = Spool::open(dir.path(), 2 * 1024 * 1024).expect("reopen");
        loop {
            let batch = s.pop_segment().expect("pop");
            if batch.is_empty() {
                break;
            }
            seqs.extend(batch.iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (0..3000).collect::<Vec<_>>());
        assert!(s.is_empty());
        assert_eq!(s.corrupt, 0);
    }

    #[test]
    fn byte_bound_is_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 10_000).expect("open");
        let mut stored = 0;
        for seq in 0..200 {
            if s.push(&env(seq, 200)).expect("push") == Pushed::Stored {
                stored += 1;
            }
        }
        assert!(s.bytes() <= 10_000);
        assert!(stored > 10 && stored < 200, "{stored}");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert_eq!(on_disk, s.bytes());
    }

    #[test]
    fn a_torn_tail_is_counted_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        s.push(&env(1, 10)).expect("push");
        s.push(&env(2, 10)).expect("push");
        drop(s);
        let path = dir.path().join(format!("{:020}.spool", 0));
        let mut data = std::fs::read(&path).expect("read");
        data.truncate(data.len() - 3);
        std::fs::write(&path, data).expect("write");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        let got = s.pop_segment().expect("pop");
        assert_eq!(got.len(), 1);
        assert_eq!(s.corrupt, 1);
    }
}
