//! Self-metrics in the Prometheus text format (`--metrics-addr`), with `/healthz` and
//! `/readyz`.
//!
//! The capture loop owns every counter it reports; it hands [`Metrics`] a snapshot of the
//! stages' counters each housekeeping tick ([`Metrics::observe_stages`]) and every record it
//! writes ([`Metrics::observe_record`]). Cumulative stage counters become Prometheus counters
//! by their increase since the previous snapshot, so a counter never goes down.
//! The HTTP side ([`serve`]) only reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use thiserror::Error;

use crate::capture::progstats::ProgramStats;
use crate::mcp::Record;

type Labels = Vec<(String, String)>;

/// Why the metrics endpoint could not start.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Stage counters whose value is a level, not a running count.
pub(crate) const GAUGE_FIELDS: &[&str] = &["sessions", "pending", "open_rounds", "catalog_servers"];

/// Kinds of [`Record`].
const RECORD_TYPES: usize = 9;

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    kernel: Family<Labels, Counter>,
    hooks: Family<Labels, Counter>,
    conn: Family<Labels, Counter>,
    mcp: Family<Labels, Counter>,
    mcp_levels: Family<Labels, Gauge>,
    records: Family<Labels, Counter>,
    /// `records`' series by record type, once created (a record costs an increment, not a
    /// label set and a lookup).
    record_series: [std::sync::OnceLock<Counter>; RECORD_TYPES],
    verdicts: Family<Labels, Counter>,
    decision_seconds: Histogram,
    enforcement_seconds: Histogram,
    export: Family<Labels, Counter>,
    export_queue: Gauge,
    recursion_misses: Family<Labels, Counter>,
    last: Mutex<HashMap<String, u64>>,
    health: Health,
}

/// What `/healthz` and `/readyz` answer from.
#[derive(Debug, Default)]
pub struct Health {
    /// Every program is attached (the agent printed its ready line).
    pub ready: AtomicBool,
    /// Monotonic ns of the capture loop's last turn.
    pub last_loop_ns: AtomicU64,
}

/// The capture loop is considered stuck after this long without a turn.
const LOOP_STALL_NS: u64 = 10_000_000_000;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcpwarden");
        let kernel = Family::<Labels, Counter>::default();
        registry.register(
            "kernel_events",
            "Kernel-side counters by name (chunks, bytes, ring reserve failures, truncations, map-full and probe errors)",
            kernel.clone(),
        );
        let hooks = Family::<Labels, Counter>::default();
        registry.register(
            "hook_events",
            "Per-hook counters: chunks, bytes, losses and truncations of each capture hook",
            hooks.clone(),
        );
        let conn = Family::<Labels, Counter>::default();
        registry.register(
            "conn_events",
            "Connection stage counters (opened, closed, evicted, gaps, gap bytes, duplicates, HTTP parse errors, unmatched responses, bad records, TLS ties)",
            conn.clone(),
        );
        let mcp = Family::<Labels, Counter>::default();
        registry.register(
            "mcp_events",
            "MCP stage counters (messages, decode errors, evictions, unpaired answers, verification failures, drifts, judged messages, verdicts, …)",
            mcp.clone(),
        );
        let mcp_levels = Family::<Labels, Gauge>::default();
        registry.register(
            "mcp_tracked",
            "What the MCP stage holds now: sessions, pending requests, open multi-round calls, servers with a catalogue",
            mcp_levels.clone(),
        );
        let records = Family::<Labels, Counter>::default();
        registry.register("records", "Records written, by type", records.clone());
        let verdicts = Family::<Labels, Counter>::default();
        registry.register(
            "verdicts",
            "Verdict records by action and what the agent did",
            verdicts.clone(),
        );
        let decision_seconds = Histogram::new([
            1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1,
        ]);
        registry.register(
            "policy_decision_seconds",
            "Time the policy took to judge a message (verdict records)",
            decision_seconds.clone(),
        );
        let enforcement_seconds = Histogram::new([
            1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1, 1.0,
        ]);
        registry.register(
            "enforcement_latency_seconds",
            "Kernel time from a denied request's bytes to its reset (or release)",
            enforcement_seconds.clone(),
        );
        let export = Family::<Labels, Counter>::default();
        registry.register(
            "export_events",
            "Export counters by sink and name (queued, sent, acknowledged, dropped, spooled, reconnects)",
            export.clone(),
        );
        let export_queue = Gauge::default();
        registry.register(
            "export_queue_depth",
            "Records waiting in the export queues",
            export_queue.clone(),
        );
        let recursion_misses = Family::<Labels, Counter>::default();
        registry.register(
            "program_recursion_misses",
            "Runs of each loaded eBPF program the kernel skipped because it was already running on that CPU (bpf_prog_info.recursion_misses)",
            recursion_misses.clone(),
        );
        Metrics {
            registry,
            kernel,
            hooks,
            conn,
            mcp,
            mcp_levels,
            records,
            record_series: Default::default(),
            verdicts,
            decision_seconds,
            enforcement_seconds,
            export,
            export_queue,
            recursion_misses,
            last: Mutex::new(HashMap::new()),
            health: Health::default(),
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Adds the increase of a cumulative counter since its last observation.
    fn advance(&self, family: &Family<Labels, Counter>, key: &str, labels: Labels, value: u64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let prev = last.insert(key.to_string(), value).unwrap_or(0);
        if value > prev {
            family.get_or_create(&labels).inc_by(value - prev);
        } else {
            // Make the series exist from the first scrape on.
            drop(family.get_or_create(&labels));
        }
    }

    /// The cumulative counters of every stage, read at a housekeeping tick.
    pub fn observe_stages<C: Serialize, M: Serialize>(
        &self,
        kernel: &[(&'static str, u64)],
        hooks: &[(String, u64)],
        conn: &C,
        mcp: &M,
    ) {
        for (name, v) in kernel {
            self.advance(
                &self.kernel,
                &format!("k/{name}"),
                vec![("counter".into(), (*name).to_string())],
                *v,
            );
        }
        for (name, v) in hooks {
            self.advance(
                &self.hooks,
                &format!("h/{name}"),
                vec![("counter".into(), name.clone())],
                *v,
            );
        }
        for (name, v) in numeric_fields(conn) {
            self.advance(
                &self.conn,
                &format!("c/{name}"),
                vec![("counter".into(), name)],
                v,
            );
        }
        for (name, v) in numeric_fields(mcp) {
            if GAUGE_FIELDS.contains(&name.as_str()) {
                self.mcp_levels
                    .get_or_create(&vec![("what".into(), name)])
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            } else {
                self.advance(
                    &self.mcp,
                    &format!("m/{name}"),
                    vec![("counter".into(), name)],
                    v,
                );
            }
        }
    }

    /// The loaded eBPF programs' recursion misses (labels: the program's name and its kernel
    /// id, as two programs can share the 15 characters of a name the kernel keeps).
    pub fn observe_programs(&self, programs: &[ProgramStats]) {
        for p in programs {
            self.advance(
                &self.recursion_misses,
                &format!("p/{}/{}", p.name, p.id),
                vec![
                    ("program".into(), p.name.clone()),
                    ("id".into(), p.id.to_string()),
                ],
                p.recursion_misses,
            );
        }
    }

    /// Export counters of the sinks that are on, and the records still waiting in them.
    pub fn observe_exports(&self, sinks: &crate::export::SinkStats) {
        let mut waiting = 0u64;
        if let Some(g) = &sinks.grpc {
            self.observe_sink("grpc", g);
            waiting += g.waiting();
        }
        if let Some(o) = &sinks.otlp {
            self.observe_sink("otlp", o);
            waiting += o.waiting();
        }
        self.export_queue
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    fn observe_sink<S: Serialize>(&self, sink: &str, stats: &S) {
        for (name, v) in numeric_fields(stats) {
            self.advance(
                &self.export,
                &format!("e/{sink}/{name}"),
                vec![("sink".into(), sink.into()), ("counter".into(), name)],
                v,
            );
        }
    }

    /// One record as it is written.
    pub fn observe_record(&self, record: &Record) {
        let (slot, kind) = match record {
            Record::Message(_) => (0, "message"),
            Record::SessionStart(_) => (1, "session_start"),
            Record::SessionUpdate(_) => (2, "session_update"),
            Record::SessionEnd(_) => (3, "session_end"),
            Record::Drift(_) => (4, "tool_drift"),
            Record::Cancelled(_) => (5, "call_cancelled"),
            Record::Verdict(_) => (6, "verdict"),
            Record::Catalog(_) => (7, "catalog"),
            Record::Health(_) => (8, "health"),
        };
        self.record_series[slot]
            .get_or_init(|| {
                self.records
                    .get_or_create(&vec![("type".into(), kind.into())])
                    .clone()
            })
            .inc();
        if let Record::Verdict(v) = record {
            let label = |x: &dyn erased::Named| x.name();
            self.verdicts
                .get_or_create(&vec![
                    ("action".into(), label(&v.action)),
                    ("enforcement".into(), label(&v.enforcement)),
                ])
                .inc();
            self.decision_seconds.observe(v.decision_ns as f64 / 1e9);
            if let Some(ns) = v.enforced_after_ns {
                self.enforcement_seconds.observe(ns as f64 / 1e9);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

mod erased {
    use serde::Serialize;

    /// The snake_case name a unit enum serialises to.
    pub trait Named {
        fn name(&self) -> String;
    }

    impl<T: Serialize> Named for T {
        fn name(&self) -> String {
            serde_json::to_value(self)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into())
        }
    }
}

/// `(field, value)` of every unsigned integer field of a serialisable struct.
pub(crate) fn numeric_fields<T: Serialize>(v: &T) -> Vec<(String, u64)> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| v.as_u64().map(|n| (k, n)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a thread of its own; returns the
/// bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, MetricsError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| MetricsError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("metrics: cannot start a runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("metrics: {e}");
                        return;
                    }
                };
                let app = router(metrics);
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("metrics: server stopped: {e}");
                }
            });
        })
        .map_err(|source| MetricsError::Bind { addr, source })?;
    Ok(local)
}

fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let m1 = metrics.clone();
    let m2 = metrics.clone();
    let m3 = metrics;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let m = m2.clone();
                async move {
                    if m.health.loop_alive(monotonic_ns()) {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "capture loop stalled\n")
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let m = m3.clone();
                async move {
                    if !m.health.ready.load(Ordering::SeqCst) {
                        (StatusCode::SERVICE_UNAVAILABLE, "not attached yet\n")
                    } else if !m.health.loop_alive(monotonic_ns()) {
                        (StatusCode::SERVICE_UNAVAILABLE, "capture loop stalled\n")
                    } else {
                        (StatusCode::OK, "ready\n")
                    }
                }
            }),
        )
}

impl Health {
    fn loop_alive(&self, now_ns: u64) -> bool {
        let last = self.last_loop_ns.load(Ordering::SeqCst);
        last != 0 && now_ns.saturating_sub(last) < LOOP_STALL_NS
    }

    /// The capture loop took a turn at monotonic `now_ns`.
    pub fn beat(&self, now_ns: u64) {
        self.last_loop_ns.store(now_ns, Ordering::SeqCst);
    }
}

/// CLOCK_MONOTONIC in ns (the clock of [`Health::beat`]).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::McpStats;

    #[derive(Serialize)]
    struct Stage {
        gaps: u64,
        http_errors: u64,
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn stage_counters_grow_by_their_increase_and_levels_are_gauges() {
        let m = Metrics::new();
        let mcp = McpStats {
            sessions: 3,
            messages: 10,
            ..McpStats::default()
        };
        m.observe_stages(
            &[("chunks_lost", 2)],
            &[("ssl_write_chunks".into(), 5)],
            &Stage {
                gaps: 1,
                http_errors: 0,
            },
            &mcp,
        );
        let mcp = McpStats {
            sessions: 1,
            messages: 15,
            ..McpStats::default()
        };
        m.observe_stages(
            &[("chunks_lost", 2)],
            &[("ssl_write_chunks".into(), 7)],
            &Stage {
                gaps: 4,
                http_errors: 0,
            },
            &mcp,
        );
        let text = m.render();
        assert_eq!(
            line(
                &text,
                "mcpwarden_kernel_events_total{counter=\"chunks_lost\"}"
            ),
            Some("mcpwarden_kernel_events_total{counter=\"chunks_lost\"} 2")
        );
        assert_eq!(
            line(
                &text,
                "mcpwarden_hook_events_total{counter=\"ssl_write_chunks\"}"
            ),
            Some("mcpwarden_hook_events_total{counter=\"ssl_write_chunks\"} 7")
        );
        assert_eq!(
            line(&text, "mcpwarden_conn_events_total{counter=\"gaps\"}"),
            Some("mcpwarden_conn_events_total{counter=\"gaps\"} 4")
        );
        assert_eq!(
            line(&text, "mcpwarden_mcp_events_total{counter=\"messages\"}"),
            Some("mcpwarden_mcp_events_total{counter=\"messages\"} 15")
        );
        assert_eq!(
            line(&text, "mcpwarden_mcp_tracked{what=\"sessions\"}"),
            Some("mcpwarden_mcp_tracked{what=\"sessions\"} 1")
        );
        // A zero counter exists from the first scrape.
        assert!(line(
            &text,
            "mcpwarden_conn_events_total{counter=\"http_errors\"} 0"
        )
        .is_some());
    }

    #[test]
    fn records_are_counted_by_type_and_only_seen_types_appear() {
        let m = Metrics::new();
        let health = || {
            Record::Health(crate::health::HealthRecord::new(
                1,
                crate::health::HealthReason::Interval,
                1,
                0,
            ))
        };
        for _ in 0..3 {
            m.observe_record(&health());
        }
        let text = m.render();
        assert!(
            text.contains("mcpwarden_records_total{type=\"health\"} 3"),
            "{text}"
        );
        assert!(!text.contains("type=\"message\""), "{text}");
    }

    #[test]
    fn recursion_misses_are_a_counter_per_program_and_id() {
        let m = Metrics::new();
        let prog = |id, misses| ProgramStats {
            name: "sys_enter_write".into(),
            id,
            run_count: 0,
            run_time_ns: 0,
            recursion_misses: misses,
        };
        m.observe_programs(&[prog(10, 0), prog(11, 3)]);
        m.observe_programs(&[prog(10, 0), prog(11, 5)]);
        let text = m.render();
        assert_eq!(
            line(
                &text,
                "mcpwarden_program_recursion_misses_total{program=\"sys_enter_write\",id=\"11\"}"
            ),
            Some(
                "mcpwarden_program_recursion_misses_total{program=\"sys_enter_write\",id=\"11\"} 5"
            )
        );
        assert!(line(
            &text,
            "mcpwarden_program_recursion_misses_total{program=\"sys_enter_write\",id=\"10\"} 0"
        )
        .is_some());
    }

    #[test]
    fn export_counters_and_the_waiting_records_of_both_sinks() {
        let m = Metrics::new();
        let grpc = crate::export::ExportStats {
            queued: 10,
            acked: 6,
            dropped_full: 1,
            ..Default::default()
        };
        let otlp = crate::export::otlp::OtlpStats {
            spans: 4,
            exported: 2,
            failed: 1,
            dropped_queue: 0,
        };
        m.observe_exports(&crate::export::SinkStats {
            grpc: Some(grpc),
            otlp: Some(otlp),
        });
        let text = m.render();
        assert_eq!(
            line(
                &text,
                "mcpwarden_export_events_total{sink=\"grpc\",counter=\"acked\"}"
            ),
            Some("mcpwarden_export_events_total{sink=\"grpc\",counter=\"acked\"} 6")
        );
        assert_eq!(
            line(
                &text,
                "mcpwarden_export_events_total{sink=\"otlp\",counter=\"exported\"}"
            ),
            Some("mcpwarden_export_events_total{sink=\"otlp\",counter=\"exported\"} 2")
        );
        // 10 - 6 - 1 waiting in gRPC, 4 - 2 - 1 in OTLP.
        assert_eq!(
            line(&text, "mcpwarden_export_queue_depth"),
            Some("mcpwarden_export_queue_depth 4")
        );
    }

    #[test]
    fn health_needs_a_recent_loop_turn_and_readiness_the_attach() {
        let h = Health::default();
        assert!(!h.loop_alive(5));
        h.beat(1_000);
        assert!(h.loop_alive(2_000));
        assert!(!h.loop_alive(1_000 + LOOP_STALL_NS));
    }

    #[test]
    fn the_endpoint_serves_metrics_health_and_readiness() {
        let m = Arc::new(Metrics::new());
        let addr = serve(SocketAddr::from(([127, 0, 0, 1], 0)), m.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let get = |path: &str| -> String {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        assert!(get("/readyz").starts_with("HTTP/1.1 503"));
        m.health().ready.store(true, Ordering::SeqCst);
        m.health().beat(monotonic_ns());
        assert!(get("/readyz").starts_with("HTTP/1.1 200"));
        assert!(get("/healthz").starts_with("HTTP/1.1 200"));
        let metrics = get("/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("# TYPE mcpwarden_policy_decision_seconds histogram"),
            "{metrics}"
        );
        assert!(
            metrics.contains("mcpwarden_enforcement_latency_seconds"),
            "{metrics}"
        );
    }
}
