//! `mcpwarden run`: capture → conn table → MCP records → JSON lines, until SIGINT/SIGTERM.
//! The capture loop runs on one blocking thread; the tokio runtime waits for signals.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcpwarden::capture::attach::{CaptureMode, CaptureOptions, DEFAULT_RING_BYTES};
use mcpwarden::capture::discovery::{Discovery, Request};
use mcpwarden::capture::drain::{drain_bounded, DRAIN_BUDGET};
use mcpwarden::capture::{events, Capture};
use mcpwarden::conn::ConnTable;
use mcpwarden::control::{CatalogAcceptor, ControlRequest, ControlServer, DEFAULT_CONTROL_SOCKET};
use mcpwarden::enforce::{EnforceMode, Enforcer, KernelActuator, VerdictHints};
use mcpwarden::health::{HealthReason, HealthRecord};
use mcpwarden::http::Limits;
use mcpwarden::mcp::content::{JsonPath, PayloadMode};
use mcpwarden::mcp::{McpConfig, McpTracker, Record};
use mcpwarden::metrics::Metrics;
use mcpwarden::output::JsonLinesWriter;
use mcpwarden::policy::{Judge, PolicySource};
use mcpwarden::replay::EventRecorder;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Write JSON lines here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Create this file once every program is attached (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// How payload syscalls are observed: `sock` (only socket I/O pays; needs
    /// bpf_task_pt_regs in tracepoints), `syscalls` (sys_enter/sys_exit on every
    /// read/write-family syscall), or `auto` (sock when the kernel allows it).
    #[arg(long, default_value = "auto")]
    capture_mode: CaptureMode,
    /// Trace only this process id. Its TLS uprobes are then attached to it alone (see
    /// `--tls-processes`).
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Ring buffer size in bytes (power of two). The kernel maps its pages twice into the
    /// agent, so it counts twice in the agent's RSS; raise it on hosts whose MCP traffic
    /// comes in bursts longer than the agent can decode (losses are counted in the health
    /// record's `kernel.ring_full_*`).
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Carry every HTTP exchange of a streamed connection to userspace. By default the kernel
    /// skips the exchanges whose request cannot be MCP (any method but POST and DELETE, unless
    /// its head asks for an event stream), counted in `kernel.exchanges_skipped`.
    #[arg(long)]
    no_exchange_skip: bool,
    /// Attach the TLS uprobes only inside these programs (executable file name or `comm`,
    /// exactly; repeat the flag or separate with commas), each process on its own, so that
    /// other processes using the same TLS library never trap. Default: every process that
    /// maps a TLS library (one attachment per library file). A process forked without
    /// `exec` is found by the periodic sweep, within about 2 s.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    tls_processes: Vec<String>,
    /// Carry every byte of message bodies too large to decode. By default, once the agent
    /// has read such a body's head and first 64 KiB, the kernel leaves the rest of it out
    /// (Content-Length bodies of at least 256 KiB more), counted in
    /// `kernel.body_skipped_bytes` and `conn.body_skipped_bytes`.
    #[arg(long)]
    no_body_skip: bool,
    /// Configuration file (YAML): per-server session-id location, identity (JWT claims and
    /// verification keys, or gateway headers), timeouts. See the README.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Header that carries the MCP session id (overrides the configuration file).
    #[arg(long)]
    session_header: Option<String>,
    /// End sessions idle this long, in seconds (overrides the configuration file).
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// Most connections tracked at once (least recently active evicted, counted).
    #[arg(long, default_value_t = 65536)]
    max_conns: usize,
    /// Also write every decoded kernel event to FILE (JSON lines; see `mcpwarden replay`).
    /// Credentials in the recorded bytes are masked (see the README) unless
    /// `--record-unredacted` is given.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Record payload bytes exactly as captured, bearer tokens and cookies included.
    #[arg(long, requires = "record")]
    record_unredacted: bool,
    /// Message content in records (`params`, `result`, `error.data`): `redacted` replaces
    /// secret-named keys and `--redact-path`s by "[REDACTED]"; overrides the configuration file.
    #[arg(long)]
    payloads: Option<PayloadMode>,
    /// Longest content kept per field, in bytes (longer is cut, `truncated: true`).
    #[arg(long, value_name = "BYTES")]
    payload_bytes: Option<usize>,
    /// A JSON path to redact in content, e.g. `$.arguments.pin` (repeatable).
    #[arg(long = "redact-path", value_name = "PATH")]
    redact_paths: Vec<String>,
    /// A request header to copy into message records (repeatable; secrets stay redacted).
    #[arg(long = "output-header", value_name = "NAME")]
    output_headers: Vec<String>,
    /// Policy file (YAML): judge every client→server MCP message (see the README's Policy
    /// section). Re-read on SIGHUP and when the file changes.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, with /healthz and /readyz.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Keep every capability after attach (debugging; by default the agent drops all but
    /// the ones it still needs, see the README).
    #[arg(long)]
    keep_capabilities: bool,
    /// What to do about denied calls: `monitor` (record only), `reset` (reset the
    /// connection), `hold` (also stop a client's `tools/call` write before it leaves and
    /// decide first; needed for `approve` rules). See the README, "Enforcement".
    #[arg(long, default_value = "reset")]
    enforce: EnforceMode,
    /// Hold mode: release a held write after this long without a decision (fail-open
    /// unless the rule says fail-closed). Default: the policy's `hold_timeout_ms`, else 50.
    #[arg(long)]
    hold_timeout_ms: Option<u64>,
    /// Nice value of the event loop thread when enforcing (`reset`, `hold`): a denied call's
    /// reset races the server's answer, and a loaded host should not make the agent lose it
    /// by scheduling. 0 keeps the inherited priority; ignored in `monitor`.
    #[arg(long, value_name = "NICE", default_value_t = -10, allow_hyphen_values = true)]
    enforce_nice: i32,
    /// Monitor mode: nice value of the event loop thread while it is behind the ring (a
    /// turn left records on it, or ring loss was counted); back at the inherited priority
    /// once it keeps up. A host whose cores the MCP traffic saturates would otherwise give
    /// the loop too little CPU to keep up, and lose records. 0: never raise.
    #[arg(long, value_name = "NICE", default_value_t = -10, allow_hyphen_values = true)]
    catch_up_nice: i32,
    /// Monitor mode: after a turn that found records, let the next ones gather this long
    /// before looking at the ring again, so a busy host wakes the agent about once per
    /// period instead of once per request (each turn is a context switch on a core the
    /// traced programs want, and cold caches). Records are reported up to this much later.
    /// A burst ends the window early (the kernel wakes the agent once the ring is a quarter
    /// full), and so do discovery and control requests. 0: look again at once. Ignored when
    /// enforcing (`reset`, `hold`): a decision must not wait.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    batch_ms: u64,
    /// Local control socket for `mcpwarden approve|reject|pending|catalog accept`.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// Write a `"type": "health"` record (the agent's counters) every SECS seconds; 0: only
    /// the one written when the agent stops.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    health_interval: u64,
    /// Export to a collector (gRPC) and/or OTLP (see the README, "Export and collector").
    #[command(flatten)]
    export: mcpwarden::export::ExportArgs,
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's clock for event timestamps (`bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let started_ns = monotonic_ns();
    // Configuration first: a bad file fails before anything is loaded into the kernel.
    let mut mcp_config = match &args.config {
        Some(p) => mcpwarden::config::load(p)?,
        None => McpConfig::default(),
    };
    if let Some(h) = &args.session_header {
        mcp_config.session_header = h.to_ascii_lowercase();
    }
    if let Some(s) = args.idle_timeout {
        mcp_config.idle_timeout_ns = s.saturating_mul(1_000_000_000);
    }
    if let Some(m) = args.payloads {
        mcp_config.content.mode = m;
    }
    if let Some(n) = args.payload_bytes {
        mcp_config.content.max_bytes = n;
    }
    for p in &args.redact_paths {
        mcp_config
            .content
            .redact_paths
            .push(JsonPath::parse(p).context("--redact-path")?);
    }
    mcp_config
        .content
        .output_headers
        .extend(args.output_headers.iter().map(|h| h.to_ascii_lowercase()));
    mcp_config.process_identity = true;
    // Kernel timestamps are CLOCK_MONOTONIC; JWT exp/nbf need Unix time.
    mcp_config.realtime_offset_ns =
        Some(clock_ns(libc::CLOCK_REALTIME).saturating_sub(monotonic_ns()));
    let realtime_offset_ns = mcp_config.realtime_offset_ns.unwrap_or(0);
    let mut tracker = McpTracker::try_new(mcp_config).context("configuration")?;
    let mut policy_source = match &args.policy {
        Some(p) => {
            let policy = mcpwarden::policy::load(p)?;
            tracker.set_policy(Box::new(Judge::new(policy)));
            let mut source = PolicySource::new(p);
            // Take the file's current stamp as the loaded one.
            let _ = source.poll(false);
            Some(source)
        }
        None => None,
    };
    // Without a policy nothing is judged: no hold, no resets, no raised priority.
    let enforce = if args.policy.is_some() {
        args.enforce
    } else {
        EnforceMode::Monitor
    };
    let tls_scope =
        mcpwarden::capture::tls_scope::TlsScope::new(args.tls_processes.clone()).with_pid(args.pid);
    let mut capture = Capture::start(&CaptureOptions {
        target_pid: args.pid,
        mode: args.capture_mode,
        ring_bytes: args.ring_bytes,
        skip_exchanges: !args.no_exchange_skip,
        hold: enforce == EnforceMode::Hold,
        tls_scope: tls_scope.clone(),
    })?;
    // Attached: from here on only what the running features need (before any thread starts,
    // as capabilities are per thread and inherited).
    if !args.keep_capabilities {
        // Enforcing, the event loop raises its own priority once the other threads run;
        // monitoring, while it is behind the ring (`--catch-up-nice`).
        let wants_nice = if enforce == EnforceMode::Monitor {
            args.catch_up_nice < 0
        } else {
            args.enforce_nice < 0
        };
        let nice = wants_nice.then_some(caps::Capability::CAP_SYS_NICE);
        let d = mcpwarden::privileges::drop_after_attach(nice.as_slice())
            .context("dropping capabilities")?;
        tracing::info!(kept = ?d.kept, dropped = ?d.dropped, "capabilities dropped after attach");
    }
    // TLS discovery (reading /proc, parsing ELF symbols) runs on its own thread; the attaching
    // stays on this one, which owns the eBPF object.
    let discovery = Discovery::start(capture.take_scanner().unwrap_or_default())
        .context("starting the TLS discovery thread")?;
    // Exports start once the capabilities are dropped (their threads inherit the reduced
    // sets); a bad URL or certificate still fails before the agent says it is ready.
    let exporter = args.export.start(realtime_offset_ns).context("export")?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_addr {
        let bound = mcpwarden::metrics::serve(addr, metrics.clone())?;
        eprintln!("mcpwarden: metrics on http://{bound}/metrics");
    }
    let sink: Box<dyn Write + Send> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout()),
    };
    let mut writer = JsonLinesWriter::new(sink);
    let mut recorder = match &args.record {
        Some(p) => Some(EventRecorder::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut record_mask = (args.record.is_some() && !args.record_unredacted)
        .then(mcpwarden::record_mask::RecordMask::default);
    let mut table = ConnTable::new(tracker, Limits::default(), args.max_conns);
    if !args.no_body_skip {
        table.request_body_skips();
    }
    let kernel = capture
        .take_enforce()
        .context("the eBPF object has no enforcement maps")?;
    let connect_block = kernel.connect_block;
    if enforce == EnforceMode::Hold {
        if let Err(e) = capture.prepare_libc_hold() {
            tracing::warn!("plaintext hold unavailable (TLS hold and resets still work): {e}");
        }
    }
    let mut enforcer = Enforcer::new(enforce, KernelActuator::new(kernel));
    if let Some(ms) = args.hold_timeout_ms.or_else(|| policy_timeout(&mut table)) {
        enforcer.set_hold_timeout_ms(ms);
    }
    // What the judgement says beyond the verdict record (fail-closed, approval timeout,
    // connect block), carried on the record for the enforcer.
    let hold_mode = enforce == EnforceMode::Hold;
    let hints = |v: &mcpwarden::mcp::VerdictRecord| VerdictHints {
        fail_closed: v.fail_closed,
        approve_timeout_ms: v.approve_timeout_ms,
        block_connect: v.block_connect,
        decided_by_peer: hold_mode
            && v.side == mcpwarden::mcp::Side::Server
            && v.peer_pid.is_some(),
    };
    let control = match ControlServer::bind(&args.control_socket) {
        Ok(c) => Some(c),
        Err(e) if enforce != EnforceMode::Hold => {
            tracing::warn!("no control socket: {e}");
            None
        }
        Err(e) => return Err(e).context("hold mode needs the control socket"),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let reload_sig = reload.clone();
    rt.spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot watch SIGHUP: the policy reloads on file change only");
            return;
        };
        while hup.recv().await.is_some() {
            reload_sig.store(true, Ordering::SeqCst);
        }
    });
    let stop_sig = stop.clone();
    let stopped = Arc::new(tokio::sync::Notify::new());
    let stopped_sig = stopped.clone();
    rt.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        stop_sig.store(true, Ordering::SeqCst);
        stopped_sig.notify_one();
    });
    // Let the signal task register its handlers before we announce readiness.
    rt.block_on(tokio::task::yield_now());
    // The runtime's thread drives the signal tasks until the stop signal (woken by it, not
    // by a timer: an idle agent should not wake for nothing).
    let handle = std::thread::spawn(move || rt.block_on(stopped.notified()));

    eprintln!(
        "mcpwarden: {} programs attached ({} capture mode), TLS uprobes on {} files{}, loader probes on {}, enforce {} (connect block {}); printing MCP traffic as JSON lines",
        capture.attached,
        capture.mode,
        capture.tls.count(mcpwarden::capture::tls::TargetKind::Ssl),
        if tls_scope.per_process() {
            format!(" (only in {})", tls_scope.describe())
        } else {
            String::new()
        },
        capture.tls.count(mcpwarden::capture::tls::TargetKind::Loader),
        enforce,
        if connect_block { "on" } else { "unavailable" },
    );
    metrics.health().beat(monotonic_ns());
    metrics.health().ready.store(true, Ordering::SeqCst);
    crate::release_freed_memory();
    if let Some(p) = &args.ready_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }

    if enforce != EnforceMode::Monitor && args.enforce_nice != 0 {
        raise_loop_priority(args.enforce_nice);
    }
    // Monitor mode: raised only while behind the ring (enforcing runs raised throughout).
    let mut catch_up = crate::catch_up::CatchUp::new(if enforce == EnforceMode::Monitor {
        args.catch_up_nice
    } else {
        0
    });
    let mut program_stats = mcpwarden::capture::progstats::Reader::default();
    let mut ring_full_seen = 0u64;
    let mut ring_loss_new = false;
    let fd = capture.ring.as_raw_fd();
    let batch_ns = batch_ns_of(enforce, args.batch_ms);
    let mut gather = if batch_ns > 0 {
        let others = [
            control.as_ref().map_or(-1, |c| c.wake_fd()),
            discovery.wake_fd(),
        ];
        match crate::gather::Gather::new(fd, &others) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("no epoll for the gathering window ({e}); sleeping it instead");
                None
            }
        }
    } else {
        None
    };
    let mut records: Vec<Record> = Vec::new();
    let mut last_tick = monotonic_ns();
    let mut last_health = last_tick;
    let per_process_tls = tls_scope.per_process();
    let mut last_reap = last_tick;
    let health_every_ns = args.health_interval.saturating_mul(1_000_000_000);
    // Records were left on the ring last turn: look again without waiting.
    let mut more = false;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut pfds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control.as_ref().map_or(-1, |c| c.wake_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: discovery.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if !stopping {
            let now = monotonic_ns();
            let wait_ms = if more {
                0
            } else {
                capture
                    .tls
                    .next_retry_ns()
                    .map(|due| due.saturating_sub(now) / 1_000_000)
                    .into_iter()
                    .chain(enforcer.next_deadline_ms())
                    .min()
                    .map_or(200, |ms| ms.min(200) as i32)
            };
            // SAFETY: three valid pollfds (a negative fd is ignored by poll).
            unsafe { libc::poll(pfds.as_mut_ptr(), 3, wait_ms) };
        }
        // At most DRAIN_BUDGET records per turn (all of them when stopping): ticks, control
        // requests, attachments and the stop flag get their turn on a busy host.
        let budget = if stopping { usize::MAX } else { DRAIN_BUDGET };
        let drained = drain_bounded(&mut capture.ring, budget, |item| {
            let held = events::hold_of(item);
            let decoded = events::decode(item).map(|mut ev| {
                // Capture time: the fd still names the socket the kernel saw.
                ev.resolve_from_proc();
                ev
            });
            // Data of a connection whose open record was lost: name it from /proc now.
            let orphan_open = decoded
                .as_ref()
                .ok()
                .and_then(|ev| ev.open_for_orphan(|c| table.contains(c)));
            for ev in orphan_open.iter().chain(decoded.as_ref().ok()) {
                if let Some(r) = recorder.as_mut() {
                    record(r, &mut record_mask, ev)?;
                }
            }
            match decoded {
                Ok(events::KernelEvent::Exec { pid, .. }) => discovery.request(Request::Exec(pid)),
                Ok(events::KernelEvent::LinkMapChange { pid, .. }) => {
                    discovery.request(Request::LinkMap(pid))
                }
                Ok(ev) => {
                    for ev in orphan_open.into_iter().chain(std::iter::once(ev)) {
                        let from = records.len();
                        enforcer.observe(&ev);
                        capture.mcp_procs.observe(&ev);
                        let is_open = matches!(ev, events::KernelEvent::Open { .. });
                        let held = if is_open { None } else { held };
                        if held.is_some() {
                            table.on_held_event(ev, &mut records);
                        } else {
                            table.on_event(ev, &mut records);
                        }
                        capture.body_skips.apply(table.take_body_skips());
                        enforcer.after_event(held, &mut records, from, &hints);
                    }
                }
                Err(e) => {
                    table.stats.bad_records += 1;
                    tracing::warn!("{e}");
                }
            }
            if records.len() > 256 {
                write_all(&mut writer, &exporter, &mut records, &metrics)?;
            }
            Ok::<(), anyhow::Error>(())
        })?;
        more = drained.more;
        catch_up.after_turn(more || std::mem::take(&mut ring_loss_new));
        if batch_ns > 0 && drained.records > 0 && !more && !stop.load(Ordering::SeqCst) {
            // Let records gather (see `gather.rs`): the next turn takes them all at once.
            // Only after a busy turn: the first look at a new burst is not delayed, and a
            // burst ends the window (a large body's skip range must reach the kernel before
            // the body fills the ring).
            match gather.as_mut() {
                Some(g) => g.wait(Duration::from_nanos(batch_ns)),
                None => std::thread::sleep(Duration::from_nanos(batch_ns)),
            }
        }
        let now = monotonic_ns();
        // The discovery thread signals its finds on the eventfd: read it only when set.
        let found = if pfds[2].revents & libc::POLLIN != 0 {
            discovery.take_found()
        } else {
            Vec::new()
        };
        capture.note_discovery_dropped(discovery.dropped());
        if !found.is_empty() {
            capture.attach_tls(&found, now);
        }
        capture.retry_tls(now);
        if per_process_tls && now.saturating_sub(last_reap) >= REAP_EVERY_NS {
            capture.reap_tls();
            last_reap = now;
        }
        metrics.health().beat(now);
        if health_every_ns > 0 && now.saturating_sub(last_health) >= health_every_ns {
            let health = Health {
                capture: &capture,
                table: &table,
                enforce: enforcer.stats(),
                export: exporter.stats(),
            };
            records.push(health.record(HealthReason::Interval, started_ns));
            last_health = now;
        }
        let hup = reload.swap(false, Ordering::SeqCst);
        if hup || now.saturating_sub(last_tick) >= 1_000_000_000 {
            if let Some(source) = policy_source.as_mut() {
                reload_policy(source, &mut table, hup);
            }
        }
        if now.saturating_sub(last_tick) >= 1_000_000_000 {
            let from = records.len();
            table.on_tick(now, &mut records);
            enforcer.after_event(None, &mut records, from, &hints);
            last_tick = now;
            crate::release_freed_memory();
            metrics.observe_programs(&program_stats.read());
            metrics.observe_exports(&exporter.stats());
            let counters = capture.counters();
            let ring_full = counters
                .iter()
                .find(|(name, _)| *name == "ring_full_chunks")
                .map_or(0, |(_, n)| *n);
            ring_loss_new = ring_full > ring_full_seen;
            ring_full_seen = ring_full;
            metrics.observe_stages(
                &counters,
                &capture.hook_counters(),
                &table.stats,
                &table.tracker().stats(),
            );
        }
        enforcer.on_tick(&mut records);
        for pid in enforcer.take_new_participants() {
            capture.attach_libc_hold(pid);
        }
        if let Some(c) = control
            .as_ref()
            .filter(|_| pfds[1].revents & libc::POLLIN != 0)
        {
            c.drain(&mut |req| match req {
                ControlRequest::Sessions => sessions_answer(&table),
                req => {
                    let mut accept = |server: &str, tool: &str| {
                        judge_of(&mut table).is_some_and(|j| j.accept(server, tool))
                    };
                    control_answer(req, &mut enforcer, &mut accept, &mut records)
                }
            });
        }
        write_all(&mut writer, &exporter, &mut records, &metrics)?;
        if let Some(r) = recorder.as_mut() {
            r.flush()?;
        }
        if stopping {
            break;
        }
    }
    let from = records.len();
    table.finish(monotonic_ns(), &mut records);
    enforcer.after_event(None, &mut records, from, &hints);
    enforcer.shutdown(&mut records);
    write_all(&mut writer, &exporter, &mut records, &metrics)?;
    drop(control);
    drop(discovery);
    let enforce_stats = enforcer.stats();
    // The last record: the counters after the final drain (export counters before its
    // shutdown; the stderr line below has those after).
    let health = Health {
        capture: &capture,
        table: &table,
        enforce: enforce_stats.clone(),
        export: exporter.stats(),
    };
    records.push(health.record(HealthReason::Stop, started_ns));
    write_all(&mut writer, &exporter, &mut records, &metrics)?;
    if let Some(g) = gather.as_ref().filter(|g| g.windows > 0) {
        eprintln!(
            "mcpwarden: records gathered in {} windows of {} ms after busy turns; a burst or a request ended {} of them early",
            g.windows, args.batch_ms, g.ended_early
        );
    }
    if catch_up.raises > 0 {
        eprintln!(
            "mcpwarden: the event loop was behind the ring {} times and ran at nice {} until it caught up",
            catch_up.raises, args.catch_up_nice
        );
    }
    eprintln!(
        "mcpwarden: request-seen-to-reset latency over {} resets: p50 {} µs, p99 {} µs",
        enforce_stats.reset_latency_count,
        enforce_stats
            .reset_latency_p50_ns
            .map_or("-".into(), |n| format!("{:.1}", n as f64 / 1e3)),
        enforce_stats
            .reset_latency_p99_ns
            .map_or("-".into(), |n| format!("{:.1}", n as f64 / 1e3)),
    );
    let kernel = capture.counters();
    let hooks = capture.hook_counters();
    drop(capture); // detaches every program, frees every map
    let _ = handle.join();
    let export = exporter.shutdown();
    let stats = serde_json::json!({
        "kernel": kernel.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "hooks": hooks.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "conn": format!("{:?}", table.stats),
        "mcp": format!("{:?}", table.tracker().stats()),
        "enforce": enforce_stats,
        "export": export,
    });
    eprintln!("mcpwarden: stopped; counters {stats}");
    Ok(())
}

/// Appends one event to the recording, credentials masked unless `--record-unredacted`.
fn record<W: Write>(
    r: &mut EventRecorder<W>,
    mask: &mut Option<mcpwarden::record_mask::RecordMask>,
    ev: &events::KernelEvent,
) -> anyhow::Result<()> {
    match (mask, ev) {
        (
            Some(mask),
            events::KernelEvent::Data {
                conn, direction, ..
            },
        ) => {
            let mut masked = ev.clone();
            if let events::KernelEvent::Data { bytes, .. } = &mut masked {
                mask.mask(conn, *direction, bytes);
            }
            r.record(&masked)?;
        }
        (Some(mask), events::KernelEvent::Close { conn, .. }) => {
            mask.forget(conn);
            r.record(ev)?;
        }
        _ => r.record(ev)?,
    }
    Ok(())
}

/// What a `health` record is read from.
struct Health<'a> {
    capture: &'a Capture,
    table: &'a ConnTable,
    enforce: mcpwarden::enforce::EnforceStats,
    export: mcpwarden::export::SinkStats,
}

impl Health<'_> {
    fn record(&self, reason: HealthReason, started_ns: u64) -> Record {
        let now = monotonic_ns();
        Record::Health(
            HealthRecord::new(
                now,
                reason,
                now.saturating_sub(started_ns),
                mcpwarden::health::rss_bytes(),
            )
            .with_kernel(&self.capture.counters(), &self.capture.hook_counters())
            .with_stages(
                &self.table.stats,
                &self.table.tracker().stats(),
                &self.enforce,
            )
            .with_export(&self.export)
            .with_programs(mcpwarden::capture::progstats::read()),
        )
    }
}

/// `mcpwarden top`'s snapshot: every active session and the message counter.
fn sessions_answer(table: &ConnTable) -> serde_json::Value {
    let tracker = table.tracker();
    let mut sessions: Vec<mcpwarden::mcp::SessionSummary> = tracker
        .sessions()
        .map(|s| s.summary(mcpwarden::mcp::SessionStatus::Active, None, s.last_ns))
        .collect();
    sessions.sort_by_key(|s| s.started_ns);
    serde_json::json!({
        "ok": true,
        "messages": tracker.stats().messages,
        "sessions": sessions,
    })
}

/// The policy behind the tracker, when `--policy` was given.
fn judge_of(table: &mut ConnTable) -> Option<&mut Judge> {
    table
        .tracker_mut()
        .policy_mut()
        .and_then(|p| p.as_any_mut().downcast_mut::<Judge>())
}

/// Give the calling thread (the event loop: decode, judge, reset) the nice value `nice`.
/// Linux keeps nice per thread, so the export and metrics threads keep theirs.
fn raise_loop_priority(nice: i32) {
    // SAFETY: setpriority on the calling thread (who = 0), no pointers.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        eprintln!("mcpwarden: enforcing; event loop at nice {nice}");
    } else {
        tracing::warn!(
            "could not set the event loop's nice to {nice} (enforcement goes on at the inherited priority): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The policy file's `hold_timeout_ms`.
fn policy_timeout(table: &mut ConnTable) -> Option<u64> {
    judge_of(table).map(|j| j.policy().hold_timeout_ms())
}

/// Re-reads the policy file when it changed (or on SIGHUP); a file that fails to load keeps
/// the policy in force and says why.
fn reload_policy(source: &mut PolicySource, table: &mut ConnTable, force: bool) {
    match source.poll(force) {
        None => {}
        Some(Ok(policy)) => {
            if let Some(judge) = judge_of(table) {
                judge.set_policy(policy);
                eprintln!("mcpwarden: policy {} reloaded", source.path().display());
            }
        }
        Some(Err(e)) => {
            eprintln!("mcpwarden: policy not reloaded, the previous one stays in force: {e}");
        }
    }
}

/// Answers one control command (on the capture loop, which owns the enforcer).
fn control_answer<A: mcpwarden::enforce::Actuator>(
    req: ControlRequest,
    enforcer: &mut Enforcer<A>,
    catalog: &mut dyn CatalogAcceptor,
    records: &mut Vec<Record>,
) -> serde_json::Value {
    use serde_json::json;
    let done = |r: Result<(), mcpwarden::enforce::ControlError>| match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    match req {
        ControlRequest::Pending => json!({"ok": true, "pending": enforcer.pending()}),
        ControlRequest::Approve { id } => done(enforcer.approve(id, records)),
        ControlRequest::Reject { id } => done(enforcer.reject(id, records)),
        ControlRequest::Sessions => json!({"ok": false, "error": "answered by the capture loop"}),
        ControlRequest::CatalogAccept { server, tool } => {
            if catalog.accept(&server, &tool) {
                json!({"ok": true})
            } else {
                json!({"ok": false, "error": format!("no pinned tool {tool:?} of server {server:?} to accept")})
            }
        }
    }
}

/// Per-process TLS scope: how often the uprobes of exited processes are looked for.
const REAP_EVERY_NS: u64 = 5_000_000_000;

/// The gathering window after a busy turn: monitor mode only (a decision must not wait).
fn batch_ns_of(enforce: EnforceMode, batch_ms: u64) -> u64 {
    if enforce == EnforceMode::Monitor {
        batch_ms.saturating_mul(1_000_000)
    } else {
        0
    }
}

fn write_all<W: Write>(
    w: &mut JsonLinesWriter<W>,
    exporter: &mcpwarden::export::ExportSinks,
    recs: &mut Vec<Record>,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    // One write and one flush per batch (a turn of the loop, or 256 records).
    for r in recs.drain(..) {
        metrics.observe_record(&r);
        exporter.submit(&r);
        w.push(&r).context("writing output")?;
    }
    w.flush().context("writing output")
}
