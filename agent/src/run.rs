//! `mcpwarden run`: capture → conn table → MCP records → JSON lines, until SIGINT/SIGTERM.
//! The capture loop runs on one blocking thread; the tokio runtime waits for signals.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcpwarden::capture::attach::{CaptureMode, CaptureOptions};
use mcpwarden::capture::{events, Capture};
use mcpwarden::conn::ConnTable;
use mcpwarden::http::Limits;
use mcpwarden::mcp::content::{JsonPath, PayloadMode};
use mcpwarden::mcp::{McpConfig, McpTracker, Record};
use mcpwarden::output::JsonLinesWriter;
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
    /// Trace only this process id.
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// Ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    ring_bytes: u32,
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
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
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
    /// Export to a collector (gRPC) and/or OTLP (see the README, "Export and collector").
    #[command(flatten)]
    export: mcpwarden::export::ExportArgs,
}

/// When to look again at a freshly exec'd process for TLS libraries (ms after the exec).
const TLS_RESCAN_AFTER_EXEC_MS: [u64; 4] = [20, 100, 400, 1500];

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
    // Kernel timestamps are CLOCK_MONOTONIC; JWT exp/nbf need Unix time.
    mcp_config.realtime_offset_ns =
        Some(clock_ns(libc::CLOCK_REALTIME).saturating_sub(monotonic_ns()));
    let realtime_offset_ns = mcp_config.realtime_offset_ns.unwrap_or(0);
    let tracker = McpTracker::try_new(mcp_config).context("configuration")?;
    // Exports start before capture: a bad URL or certificate fails early.
    let exporter = args.export.start(realtime_offset_ns).context("export")?;
    let mut capture = Capture::start(&CaptureOptions {
        target_pid: args.pid,
        mode: args.capture_mode,
        ring_bytes: args.ring_bytes,
    })?;
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
    let mut table = ConnTable::new(tracker, Limits::default(), args.max_conns);

    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stop_sig = stop.clone();
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
    });
    // Let the signal task register its handlers before we announce readiness.
    rt.block_on(tokio::task::yield_now());
    let handle = std::thread::spawn({
        let stop = stop.clone();
        move || {
            rt.block_on(async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        }
    });

    eprintln!(
        "mcpwarden: {} programs attached ({} capture mode), TLS uprobes on {} files; printing MCP traffic as JSON lines",
        capture.attached,
        capture.mode,
        capture.tls.targets.len()
    );
    if let Some(p) = &args.ready_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }

    let fd = capture.ring.as_raw_fd();
    let mut records: Vec<Record> = Vec::new();
    let mut last_tick = monotonic_ns();
    let mut last_tls_scan = last_tick;
    // (due time, pid): TLS rescans scheduled after an exec.
    let mut rescans: Vec<(u64, u32)> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        if !stopping {
            let wait_ms = rescans
                .first()
                .map(|(due, _)| due.saturating_sub(monotonic_ns()) / 1_000_000)
                .map_or(200, |ms| ms.min(200) as i32);
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        }
        let mut exec_pids = Vec::new();
        while let Some(item) = capture.ring.next() {
            let decoded = events::decode(&item);
            if let (Some(r), Ok(ev)) = (recorder.as_mut(), &decoded) {
                r.record(ev)?;
            }
            match decoded {
                Ok(events::KernelEvent::Exec { pid, .. }) => exec_pids.push(pid),
                Ok(ev) => table.on_event(ev, &mut records),
                Err(e) => {
                    table.stats.bad_records += 1;
                    tracing::warn!("{e}");
                }
            }
            drop(item);
            if records.len() > 256 {
                write_all(&mut writer, &exporter, &mut records)?;
            }
        }
        let now = monotonic_ns();
        for pid in exec_pids {
            // Libraries are mapped shortly after exec (the loader, then dlopen of e.g.
            // Python's _ssl): look now and a few times more.
            capture.scan_tls_pid(pid);
            for delay_ms in TLS_RESCAN_AFTER_EXEC_MS {
                rescans.push((now + delay_ms * 1_000_000, pid));
            }
        }
        rescans.sort_unstable();
        while rescans.first().is_some_and(|(due, _)| *due <= now) {
            let (_, pid) = rescans.remove(0);
            capture.scan_tls_pid(pid);
        }
        if now.saturating_sub(last_tick) >= 1_000_000_000 {
            table.on_tick(now, &mut records);
            last_tick = now;
        }
        if now.saturating_sub(last_tls_scan) >= 2_000_000_000 {
            capture.scan_tls_all();
            last_tls_scan = now;
        }
        write_all(&mut writer, &exporter, &mut records)?;
        if let Some(r) = recorder.as_mut() {
            r.flush()?;
        }
        if stopping {
            break;
        }
    }
    table.finish(monotonic_ns(), &mut records);
    write_all(&mut writer, &exporter, &mut records)?;
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
        "export": export,
    });
    eprintln!("mcpwarden: stopped; counters {stats}");
    Ok(())
}

fn write_all<W: Write>(
    w: &mut JsonLinesWriter<W>,
    exporter: &mcpwarden::export::ExportSinks,
    recs: &mut Vec<Record>,
) -> anyhow::Result<()> {
    for r in recs.drain(..) {
        exporter.submit(&r);
        w.write(&r).context("writing output")?;
    }
    Ok(())
}
