//! `"type": "health"` records: the agent's own counters, written periodically
//! (`--health-interval`) and once more when it stops, so that loss reaches the same place as
//! the traffic it concerns (JSON lines, the collector), not only stderr and `/metrics`.
//!
//! Every counter is a cumulative total since the agent started, named exactly as on the
//! metrics endpoint: `kernel` ↔ `mcpwarden_kernel_events_total{counter}`, `hooks` ↔
//! `mcpwarden_hook_events_total{counter}`, `conn` ↔ `mcpwarden_conn_events_total{counter}`,
//! `mcp` ↔ `mcpwarden_mcp_events_total{counter}`, `tracked` ↔ `mcpwarden_mcp_tracked{what}`,
//! `export.<sink>` ↔ `mcpwarden_export_events_total{sink,counter}`, `programs[].recursion_misses`
//! ↔ `mcpwarden_program_recursion_misses_total{program,id}`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::capture::progstats::ProgramStats;
use crate::export::SinkStats;
use crate::metrics::{numeric_fields, GAUGE_FIELDS};

/// Counters by name.
pub type CounterMap = BTreeMap<String, u64>;

/// Why a health record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthReason {
    /// The `--health-interval` elapsed.
    Interval,
    /// The agent is stopping: the last record, after the final drain.
    Stop,
}

/// One health record (JSON `"type": "health"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthRecord {
    /// Kernel monotonic time (ns) the counters were read, the clock of every record's `ts_ns`.
    pub ts_ns: u64,
    /// `"interval"` or `"stop"`.
    pub reason: HealthReason,
    /// The agent's process id.
    pub pid: u32,
    /// Time since the agent started, ns.
    pub uptime_ns: u64,
    /// The agent's resident set size, bytes (`/proc/self/statm`).
    pub rss_bytes: u64,
    /// Kernel-side counters, summed over CPUs.
    pub kernel: CounterMap,
    /// Per-hook counters (`<hook>_<counter>`), hooks that saw nothing left out.
    pub hooks: CounterMap,
    /// Connection stage.
    pub conn: CounterMap,
    /// MCP stage (running counts).
    pub mcp: CounterMap,
    /// MCP stage levels: what it holds now (`sessions`, `pending`, …).
    pub tracked: CounterMap,
    /// Enforcement stage (without its latency percentiles).
    pub enforce: CounterMap,
    /// Export sinks that are on (`grpc`, `otlp`), each with its counters.
    pub export: BTreeMap<String, CounterMap>,
    /// Every eBPF program the agent has loaded, by kernel program id.
    pub programs: Vec<ProgramStats>,
}

impl HealthRecord {
    /// A record with no counters yet.
    pub fn new(ts_ns: u64, reason: HealthReason, uptime_ns: u64, rss_bytes: u64) -> Self {
        HealthRecord {
            ts_ns,
            reason,
            pid: std::process::id(),
            uptime_ns,
            rss_bytes,
            kernel: CounterMap::new(),
            hooks: CounterMap::new(),
            conn: CounterMap::new(),
            mcp: CounterMap::new(),
            tracked: CounterMap::new(),
            enforce: CounterMap::new(),
            export: BTreeMap::new(),
            programs: Vec::new(),
        }
    }

    /// The kernel's global and per-hook counters.
    pub fn with_kernel(mut self, kernel: &[(&'static str, u64)], hooks: &[(String, u64)]) -> Self {
        self.kernel = kernel.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        self.hooks = hooks.iter().cloned().collect();
        self
    }

    /// The userspace stages' counters (every unsigned integer field of their stats structs).
    pub fn with_stages<C: Serialize, M: Serialize, E: Serialize>(
        mut self,
        conn: &C,
        mcp: &M,
        enforce: &E,
    ) -> Self {
        self.conn = numeric_fields(conn).into_iter().collect();
        let (levels, counts): (Vec<_>, Vec<_>) = numeric_fields(mcp)
            .into_iter()
            .partition(|(k, _)| GAUGE_FIELDS.contains(&k.as_str()));
        self.mcp = counts.into_iter().collect();
        self.tracked = levels.into_iter().collect();
        // Latency percentiles are not counters (they stay on the stderr line and in the
        // `mcpwarden_enforcement_latency_seconds` histogram).
        self.enforce = numeric_fields(enforce)
            .into_iter()
            .filter(|(k, _)| !k.ends_with("_p50_ns") && !k.ends_with("_p99_ns"))
            .collect();
        self
    }

    /// The export sinks' counters.
    pub fn with_export(mut self, export: &SinkStats) -> Self {
        if let Some(g) = &export.grpc {
            self.export
                .insert("grpc".into(), numeric_fields(g).into_iter().collect());
        }
        if let Some(o) = &export.otlp {
            self.export
                .insert("otlp".into(), numeric_fields(o).into_iter().collect());
        }
        self
    }

    /// The loaded programs' run statistics.
    pub fn with_programs(mut self, programs: Vec<ProgramStats>) -> Self {
        self.programs = programs;
        self
    }
}

/// This process's resident set size in bytes (0 when `/proc` cannot tell).
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportStats;
    use crate::mcp::{McpStats, Record};
    use serde_json::json;

    #[derive(Serialize)]
    struct Conn {
        gaps: u64,
        gap_bytes: u64,
    }

    #[derive(Serialize)]
    struct Enforce {
        resets: u64,
        reset_latency_p50_ns: Option<u64>,
    }

    fn record() -> HealthRecord {
        let mcp = McpStats {
            sessions: 2,
            messages: 9,
            ..McpStats::default()
        };
        HealthRecord::new(5_000, HealthReason::Stop, 1_000, 4096)
            .with_kernel(
                &[("ring_full_chunks", 0), ("chunks_emitted", 12)],
                &[("sock_send_chunks".into(), 7)],
            )
            .with_stages(
                &Conn {
                    gaps: 1,
                    gap_bytes: 30,
                },
                &mcp,
                &Enforce {
                    resets: 3,
                    reset_latency_p50_ns: Some(40_000),
                },
            )
            .with_export(&SinkStats {
                grpc: Some(ExportStats {
                    queued: 4,
                    acked: 4,
                    ..ExportStats::default()
                }),
                otlp: None,
            })
            .with_programs(vec![ProgramStats {
                name: "sock_send_capture".into(),
                id: 41,
                run_count: 0,
                run_time_ns: 0,
                recursion_misses: 2,
            }])
    }

    #[test]
    fn a_health_record_is_one_json_object_of_cumulative_counters_by_metric_name() {
        let mut rec = record();
        rec.pid = 77;
        let got = serde_json::to_value(Record::Health(rec)).unwrap_or_default();
        let mut mcp = serde_json::to_value(McpStats::default()).unwrap_or_default();
        let mut tracked = serde_json::Map::new();
        if let Some(m) = mcp.as_object_mut() {
            m.insert("messages".into(), json!(9));
            for g in GAUGE_FIELDS {
                if let Some(v) = m.remove(*g) {
                    tracked.insert((*g).into(), v);
                }
            }
        }
        tracked.insert("sessions".into(), json!(2));
        assert_eq!(
            got,
            json!({
                "type": "health",
                "ts_ns": 5000,
                "reason": "stop",
                "pid": 77,
                "uptime_ns": 1000,
                "rss_bytes": 4096,
                "kernel": {"chunks_emitted": 12, "ring_full_chunks": 0},
                "hooks": {"sock_send_chunks": 7},
                "conn": {"gap_bytes": 30, "gaps": 1},
                "mcp": mcp,
                "tracked": tracked,
                "enforce": {"resets": 3},
                "export": {"grpc": {
                    "queued": 4, "dropped_overflow": 0, "dropped_full": 0, "spooled": 0,
                    "spool_corrupt": 0, "spool_bytes": 0, "sent": 0, "acked": 4,
                    "reconnects": 0, "lost_at_shutdown": 0
                }},
                "programs": [{
                    "name": "sock_send_capture", "id": 41, "run_count": 0,
                    "run_time_ns": 0, "recursion_misses": 2
                }]
            })
        );
    }

    #[test]
    fn the_serialised_keys_come_in_a_fixed_order() {
        let mut rec = record();
        rec.pid = 1;
        rec.mcp.clear();
        rec.tracked.clear();
        rec.export.clear();
        rec.programs.clear();
        let text = serde_json::to_string(&Record::Health(rec)).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"type":"health","ts_ns":5000,"reason":"stop","pid":1,"uptime_ns":1000,"rss_bytes":4096,"kernel":{"chunks_emitted":12,"ring_full_chunks":0},"hooks":{"sock_send_chunks":7},"conn":{"gap_bytes":30,"gaps":1},"mcp":{},"tracked":{},"enforce":{"resets":3},"export":{},"programs":[]}"#
        );
    }

    #[test]
    fn every_mcp_level_is_tracked_and_every_running_count_is_a_counter() {
        let rec = record();
        for g in GAUGE_FIELDS {
            assert!(rec.tracked.contains_key(*g), "{g}");
            assert!(!rec.mcp.contains_key(*g), "{g}");
        }
        assert_eq!(rec.mcp.get("messages"), Some(&9));
    }

    #[test]
    fn the_agent_has_a_resident_set() {
        assert!(rss_bytes() > 0);
    }
}
