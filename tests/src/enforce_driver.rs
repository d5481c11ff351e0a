//! An in-process capture loop with the real enforcer, for testing the enforcement mechanisms
//! (reset, hold, approval, connect block) before the policy is wired in: a tiny judge turns
//! the client's `tools/call` messages into verdicts by tool name. Everything else is the
//! agent's own code: the eBPF object, the connection table and MCP tracker, the enforcer with
//! netlink SOCK_DESTROY and the kernel hold map, the control socket.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mcpwarden::capture::attach::{CaptureMode, CaptureOptions};
use mcpwarden::capture::{events, Capture};
use mcpwarden::conn::ConnTable;
use mcpwarden::control::{ControlRequest, ControlServer};
use mcpwarden::enforce::{EnforceMode, EnforceStats, Enforcer, KernelActuator, VerdictHints};
use mcpwarden::http::Limits;
use mcpwarden::mcp::{
    Enforcement, Flow, Kind, McpConfig, McpTracker, MessageRecord, Record, Side, VerdictRecord,
};
use mcpwarden::policy::Action;
use serde_json::Value;

/// The test judge: the action for a tool name (`None`: a plain allow, no verdict).
pub type Judge = fn(&str) -> Option<Action>;

/// Tools named `explode*` are denied, `approve*` need a person, `audit*` are audited.
pub fn by_name(tool: &str) -> Option<Action> {
    if tool.starts_with("explode") {
        Some(Action::Deny)
    } else if tool.starts_with("approve") {
        Some(Action::Approve)
    } else if tool.starts_with("audit") {
        Some(Action::Audit)
    } else {
        None
    }
}

/// What the loop collected.
#[derive(Default)]
pub struct Collected {
    pub records: Vec<Value>,
    pub stats: Option<EnforceStats>,
    pub kernel: Vec<(&'static str, u64)>,
    /// Processes given the plaintext hold probes, and attach failures.
    pub libc_hold_attached: u64,
    pub libc_hold_failed: u64,
    pub libc_hold_error: Option<String>,
    pub libc_hold_pids: Vec<u32>,
}

pub struct Driver {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub collected: Arc<Mutex<Collected>>,
    pub control_socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn verdict_of(m: &MessageRecord, action: Action) -> VerdictRecord {
    VerdictRecord {
        ts_ns: m.ts_ns,
        session_id: m.session_id.clone(),
        pid: m.pid,
        comm: m.comm.clone(),
        side: m.side,
        local: m.local.clone(),
        remote: m.remote.clone(),
        conn_id: m.conn_id.clone(),
        server: format!("{}{}", m.remote, m.http_path),
        era: m.era,
        id: m.id.clone(),
        method: m.method.clone().unwrap_or_default(),
        name: m.name.clone(),
        user: None,
        role: None,
        action,
        rule_id: Some(format!("test-{action:?}").to_lowercase()),
        reasons: Vec::new(),
        enforcement: match action {
            Action::Allow => Enforcement::None,
            Action::Audit => Enforcement::AuditOnly,
            Action::Deny | Action::Approve => Enforcement::Reset,
        },
        hold_id: None,
        decision_ns: 0,
        enforced_after_ns: None,
        request: Some(serde_json::json!({"method": m.method, "params": m.params})),
        process: Default::default(),
        fail_closed: false,
        approve_timeout_ms: 120_000,
        block_connect: false,
        peer_pid: None,
    }
}

impl Driver {
    /// Starts capture with the enforcer in `mode`; returns once everything is attached.
    /// Only client messages to `server_port` are judged: other processes on the machine
    /// (other test runs) are never reset by this judge.
    pub fn start(mode: EnforceMode, judge: Judge, hints: VerdictHints, server_port: u16) -> Driver {
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-enforce-")
            .tempdir()
            .expect("temporary directory");
        let control_socket = dir.path().join("control.sock");
        let stop = Arc::new(AtomicBool::new(false));
        let collected = Arc::new(Mutex::new(Collected::default()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let handle = {
            let stop = stop.clone();
            let collected = collected.clone();
            let control_socket = control_socket.clone();
            std::thread::spawn(move || {
                run_loop(
                    mode,
                    judge,
                    hints,
                    server_port,
                    &control_socket,
                    &stop,
                    &collected,
                    ready_tx,
                )
            })
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the enforcement loop could not start: {e}"),
            Err(e) => panic!("the enforcement loop did not start: {e}"),
        }
        Driver {
            stop,
            handle: Some(handle),
            collected,
            control_socket,
            _dir: dir,
        }
    }

    /// Sends a control command through the real control socket.
    pub fn control(&self, req: ControlRequest) -> Value {
        mcpwarden::control::request(&self.control_socket, &req)
            .unwrap_or_else(|e| panic!("control request failed: {e}"))
    }

    /// Held calls waiting for a person.
    pub fn pending(&self) -> Vec<Value> {
        self.control(ControlRequest::Pending)["pending"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `n` calls are pending (or the timeout).
    pub fn wait_pending(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let p = self.pending();
            if p.len() >= n || t0.elapsed() > timeout {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the loop (resuming every held process) and returns what it collected.
    pub fn stop(mut self) -> Collected {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.collected.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn judge_records(judge: Judge, port: u16, records: &mut Vec<Record>, from: usize) {
    let suffix = format!(":{port}");
    let mut verdicts = Vec::new();
    for r in &records[from..] {
        if let Record::Message(m) = r {
            if m.direction == Flow::ClientToServer
                && m.side == Side::Client
                && m.kind == Kind::Request
                && m.method.as_deref() == Some("tools/call")
                && m.remote.ends_with(&suffix)
            {
                if let Some(action) = m.name.as_deref().and_then(judge) {
                    verdicts.push(Record::Verdict(verdict_of(m, action)));
                }
            }
        }
    }
    records.extend(verdicts);
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    mode: EnforceMode,
    judge: Judge,
    hints: VerdictHints,
    server_port: u16,
    control_socket: &Path,
    stop: &AtomicBool,
    collected: &Mutex<Collected>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut capture = match Capture::start(&CaptureOptions {
        target_pid: 0,
        mode: CaptureMode::Auto,
        ring_bytes: 16 * 1024 * 1024,
        skip_exchanges: true,
        hold: mode == EnforceMode::Hold,
        tls_scope: Default::default(),
    }) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let Some(kernel) = capture.take_enforce() else {
        let _ = ready.send(Err("no enforcement maps".into()));
        return;
    };
    if mode == EnforceMode::Hold {
        if let Err(e) = capture.prepare_libc_hold() {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut enforcer = Enforcer::new(mode, KernelActuator::new(kernel));
    // Generous for a loaded 2-core test machine (the agent default is 50 ms).
    enforcer.set_hold_timeout_ms(500);
    let control = match ControlServer::bind(control_socket) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let tracker = match McpTracker::try_new(McpConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut table = ConnTable::new(tracker, Limits::default(), 4096);
    let hints = move |_: &VerdictRecord| hints;
    let _ = ready.send(Ok(()));
    let fd = capture.ring.as_raw_fd();
    let mut records: Vec<Record> = Vec::new();
    let mut last_tick = Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut pfds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let wait = enforcer.next_deadline_ms().map_or(50, |ms| ms.min(50)) as i32;
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, wait) };
        // No TLS library scans on exec here: the test peers use the system libssl, attached
        // at start, and scanning other processes' new executables (this debug build, a busy
        // machine) would stall the loop the holds wait on.
        while let Some(item) = capture.ring.next() {
            let held = events::hold_of(&item);
            // As the agent's loop: a 4-tuple the kernel did not give is read from /proc now
            // (the table reads no /proc), and data of a connection whose open record was
            // lost gets the open it would have been first.
            let decoded = events::decode(&item).map(|mut ev| {
                ev.resolve_from_proc();
                ev
            });
            let orphan_open = decoded
                .as_ref()
                .ok()
                .and_then(|ev| ev.open_for_orphan(|c| table.contains(c)));
            match decoded {
                Ok(
                    events::KernelEvent::Exec { .. } | events::KernelEvent::LinkMapChange { .. },
                ) => {}
                Ok(ev) => {
                    for ev in orphan_open.into_iter().chain(std::iter::once(ev)) {
                        let from = records.len();
                        enforcer.observe(&ev);
                        let held = if matches!(ev, events::KernelEvent::Open { .. }) {
                            None
                        } else {
                            held
                        };
                        table.on_event(ev, &mut records);
                        judge_records(judge, server_port, &mut records, from);
                        enforcer.after_event(held, &mut records, from, &hints);
                    }
                }
                Err(_) => {}
            }
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let from = records.len();
            table.on_tick(mcpwarden::enforce::actuator::monotonic_ns(), &mut records);
            judge_records(judge, server_port, &mut records, from);
            enforcer.after_event(None, &mut records, from, &hints);
            last_tick = Instant::now();
        }
        enforcer.on_tick(&mut records);
        for pid in enforcer.take_new_participants() {
            capture.attach_libc_hold(pid);
        }
        control.drain(&mut |req| match req {
            ControlRequest::Pending => {
                serde_json::json!({"ok": true, "pending": enforcer.pending()})
            }
            ControlRequest::Approve { id } => match enforcer.approve(id, &mut records) {
                Ok(()) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            },
            ControlRequest::Reject { id } => match enforcer.reject(id, &mut records) {
                Ok(()) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            },
            ControlRequest::CatalogAccept { .. } | ControlRequest::Sessions => {
                serde_json::json!({"ok": false})
            }
        });
        {
            let mut c = collected.lock().unwrap_or_else(|e| e.into_inner());
            for r in records.drain(..) {
                if let Ok(v) = serde_json::to_value(&r) {
                    c.records.push(v);
                }
            }
        }
        if stopping {
            break;
        }
    }
    table.finish(mcpwarden::enforce::actuator::monotonic_ns(), &mut records);
    enforcer.shutdown(&mut records);
    let mut c = collected.lock().unwrap_or_else(|e| e.into_inner());
    for r in records.drain(..) {
        if let Ok(v) = serde_json::to_value(&r) {
            c.records.push(v);
        }
    }
    c.stats = Some(enforcer.stats());
    c.kernel = capture.counters();
    c.libc_hold_attached = capture.libc_hold.attached;
    c.libc_hold_failed = capture.libc_hold.failed;
    c.libc_hold_error = capture.libc_hold.last_error.clone();
    c.libc_hold_pids = capture.libc_hold.pids();
}
