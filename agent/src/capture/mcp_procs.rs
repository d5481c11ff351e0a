//! The userspace half of load shedding (`mcpwarden_common::conn::SHED_GRACE_BYTES`): the
//! processes seen taking part in MCP, client or server, are marked in the kernel's
//! `MCP_PROCS` map, so that while the ring runs more than half full their chunks keep its
//! room and the chunks of other processes (a bulk HTTPS download, say) are dropped and
//! counted instead.
//!
//! A process is marked at the first captured chunk of it that holds `"jsonrpc"`: every
//! JSON-RPC message has that member, in a body or an SSE `data:` line. Compressed bodies do
//! not show it; such a process is marked at its first uncompressed message, and until then
//! only its streams' first `SHED_GRACE_BYTES` are safe from shedding.

use std::collections::HashSet;

use aya::maps::{HashMap, MapData};

use super::events::KernelEvent;

/// Marks remembered here before the set is cleared (the kernel map is an LRU of the same
/// size, so a forgotten mark is at worst written again).
pub const MAX_MARKED: usize = 16384;

/// The member every JSON-RPC message has.
const JSONRPC: &[u8] = b"\"jsonrpc\"";

/// What the marking did, for the health record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct McpProcStats {
    /// Processes marked.
    pub marked: u64,
    /// Times the remembered set was full and cleared.
    pub forgets: u64,
    /// Map writes that failed (the process stays unmarked; tried again at its next chunk).
    pub map_errors: u64,
}

/// Where marks go: the kernel map, or (tests) nowhere.
pub trait MarkSink {
    fn mark(&mut self, pid: u32) -> Result<(), String>;
}

impl MarkSink for HashMap<MapData, u32, u8> {
    fn mark(&mut self, pid: u32) -> Result<(), String> {
        self.insert(pid, 1, 0).map_err(|e| e.to_string())
    }
}

/// The marked processes and the map they are written to.
pub struct McpProcs<S: MarkSink> {
    sink: S,
    marked: HashSet<u32>,
    pub stats: McpProcStats,
}

/// True when `bytes` hold a JSON-RPC member name.
pub fn carries_jsonrpc(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, JSONRPC).is_some()
}

impl<S: MarkSink> McpProcs<S> {
    pub fn new(sink: S) -> Self {
        McpProcs {
            sink,
            marked: HashSet::new(),
            stats: McpProcStats::default(),
        }
    }

    /// Looks at one captured event; marks its process when it shows JSON-RPC.
    pub fn observe(&mut self, ev: &KernelEvent) {
        let KernelEvent::Data { conn, bytes, .. } = ev else {
            return;
        };
        if self.marked.contains(&conn.pid) || !carries_jsonrpc(bytes) {
            return;
        }
        if let Err(e) = self.sink.mark(conn.pid) {
            self.stats.map_errors += 1;
            tracing::debug!(pid = conn.pid, "MCP_PROCS: {e}");
            return;
        }
        if self.marked.len() >= MAX_MARKED {
            self.marked.clear();
            self.stats.forgets += 1;
        }
        self.marked.insert(conn.pid);
        self.stats.marked += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::events::{ConnIdent, Direction};

    #[derive(Default)]
    struct Recorded(Vec<u32>, bool);

    impl MarkSink for Recorded {
        fn mark(&mut self, pid: u32) -> Result<(), String> {
            if self.1 {
                return Err("map full".into());
            }
            self.0.push(pid);
            Ok(())
        }
    }

    fn data(pid: u32, bytes: &[u8]) -> KernelEvent {
        KernelEvent::Data {
            conn: ConnIdent {
                pid,
                fd: 7,
                start_ns: 1,
            },
            tid: pid,
            ts_ns: 2,
            direction: Direction::Egress,
            pos: 0,
            syscall_len: bytes.len() as u32,
            truncated: false,
            sock_fd: Some(7),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_process_is_marked_once_at_its_first_json_rpc_bytes() {
        let mut m = McpProcs::new(Recorded::default());
        m.observe(&data(10, b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n"));
        m.observe(&data(
            11,
            b"POST /mcp HTTP/1.1\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1}",
        ));
        m.observe(&data(
            11,
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        ));
        m.observe(&data(
            12,
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
        ));
        assert_eq!(m.sink.0, vec![11, 12]);
        assert_eq!(m.stats.marked, 2);
    }

    #[test]
    fn a_failed_map_write_is_counted_and_tried_again() {
        let mut m = McpProcs::new(Recorded(Vec::new(), true));
        m.observe(&data(5, b"{\"jsonrpc\":\"2.0\"}"));
        assert_eq!(m.stats.map_errors, 1);
        m.sink.1 = false;
        m.observe(&data(5, b"{\"jsonrpc\":\"2.0\"}"));
        assert_eq!((m.sink.0.clone(), m.stats.marked), (vec![5], 1));
    }

    #[test]
    fn the_remembered_set_is_bounded() {
        let mut m = McpProcs::new(Recorded::default());
        for pid in 0..(MAX_MARKED as u32 + 3) {
            m.observe(&data(pid, b"{\"jsonrpc\":\"2.0\"}"));
        }
        assert!(m.marked.len() <= MAX_MARKED);
        assert_eq!(m.stats.forgets, 1);
        assert_eq!(m.stats.marked, MAX_MARKED as u64 + 3);
    }
}
