//! Export counters, shared between the capture thread, the export worker and whoever prints.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters (atomics).
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Records handed to the exporter.
    pub queued: AtomicU64,
    /// Records dropped because the hand-off channel was full (the worker could not keep up).
    pub dropped_overflow: AtomicU64,
    /// Records dropped because memory was full and no spool (or a full spool) could take them.
    pub dropped_full: AtomicU64,
    /// Records written to the spool.
    pub spooled: AtomicU64,
    /// Spooled records found corrupt and skipped.
    pub spool_corrupt: AtomicU64,
    /// Bytes currently in the spool.
    pub spool_bytes: AtomicU64,
    /// Records written on a stream (resends included).
    pub sent: AtomicU64,
    /// Records acknowledged by the collector.
    pub acked: AtomicU64,
    /// Streams that broke (or failed to open) and were retried.
    pub reconnects: AtomicU64,
    /// Records neither acknowledged nor spooled when the agent stopped.
    pub lost_at_shutdown: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportStats {
    pub queued: u64,
    pub dropped_overflow: u64,
    pub dropped_full: u64,
    pub spooled: u64,
    pub spool_corrupt: u64,
    pub spool_bytes: u64,
    pub sent: u64,
    pub acked: u64,
    pub reconnects: u64,
    pub lost_at_shutdown: u64,
}

impl ExportStats {
    /// Records handed over and not yet acknowledged, dropped or lost (in memory or spooled).
    pub fn waiting(&self) -> u64 {
        self.queued.saturating_sub(
            self.acked + self.dropped_overflow + self.dropped_full + self.lost_at_shutdown,
        )
    }
}

impl ExportCounters {
    /// The current values.
    pub fn snapshot(&self) -> ExportStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExportStats {
            queued: g(&self.queued),
            dropped_overflow: g(&self.dropped_overflow),
            dropped_full: g(&self.dropped_full),
            spooled: g(&self.spooled),
            spool_corrupt: g(&self.spool_corrupt),
            spool_bytes: g(&self.spool_bytes),
            sent: g(&self.sent),
            acked: g(&self.acked),
            reconnects: g(&self.reconnects),
            lost_at_shutdown: g(&self.lost_at_shutdown),
        }
    }
}
