//! The attach table and the loaded object's lifetime. Dropping [`Capture`] detaches every
//! program and frees every map (aya owns the links).

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use mcpwarden_common::config::{GLOBAL_SELF_TGID, GLOBAL_SKIP_EXCHANGES, GLOBAL_TARGET_TGID};

use super::{preflight, CaptureError, EBPF_OBJECT};

/// One program of the object and where it attaches.
pub struct ProgramSpec {
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    /// Why we need it.
    pub why: &'static str,
}

macro_rules! sys {
    ($name:literal, $why:literal) => {
        ProgramSpec {
            program: $name,
            category: "syscalls",
            event: $name,
            why: $why,
        }
    };
}

/// The ring buffer's default size: 8 MiB (two whole 4 MiB writes). The kernel maps the data
/// pages twice into the agent, so the ring is 16 MiB of the agent's RSS (a 16 MiB ring was 32
/// of its 52 MiB at start).
pub const DEFAULT_RING_BYTES: u32 = 8 * 1024 * 1024;

/// Programs of the syscall capture mode: `sys_enter_*` saves a payload syscall's arguments by
/// thread, `sock_*_length` tags it with its socket, `sys_exit_*` streams it. Works on any
/// kernel with these tracepoints, but every read/write-family syscall on the host pays for
/// the enter/exit pair.
pub const SYSCALL_MODE_PROGRAMS: &[ProgramSpec] = &[
    sys!("sys_enter_write", "save write(2) args"),
    sys!("sys_exit_write", "stream written bytes"),
    sys!("sys_enter_read", "save read(2) args"),
    sys!("sys_exit_read", "stream read bytes"),
    sys!("sys_enter_sendto", "save sendto(2) args"),
    sys!("sys_exit_sendto", "stream sent bytes"),
    sys!("sys_enter_recvfrom", "save recvfrom(2) args"),
    sys!("sys_exit_recvfrom", "stream received bytes"),
    sys!("sys_enter_writev", "save writev(2) iovecs"),
    sys!("sys_exit_writev", "stream written iovecs"),
    sys!("sys_enter_readv", "save readv(2) iovecs"),
    sys!("sys_exit_readv", "stream read iovecs"),
    sys!("sys_enter_sendmsg", "save sendmsg(2) iovecs"),
    sys!("sys_exit_sendmsg", "stream sent iovecs"),
    sys!("sys_enter_recvmsg", "save recvmsg(2) iovecs"),
    sys!("sys_exit_recvmsg", "stream received iovecs"),
    sys!("sys_enter_connect", "connect(2): the fd is a client socket"),
    sys!("sys_exit_connect", "connect(2) result"),
    sys!("sys_exit_accept4", "accept4(2): the fd is a server socket"),
    sys!("sys_exit_accept", "accept(2): the fd is a server socket"),
    sys!("sys_enter_close", "close(2): end of a streamed connection"),
    ProgramSpec {
        program: "sock_send_length",
        category: "sock",
        event: "sock_send_length",
        why: "marks a pending send syscall as socket I/O (family, protocol, sock)",
    },
    ProgramSpec {
        program: "sock_recv_length",
        category: "sock",
        event: "sock_recv_length",
        why: "marks a pending recv syscall as socket I/O (family, protocol, sock)",
    },
];

/// Programs of the sock capture mode: the whole payload path inside the socket tracepoints,
/// syscall arguments read from the saved user registers (`bpf_task_pt_regs`). Only socket
/// I/O pays; needs a kernel that allows that helper in tracepoint programs (5.15+).
pub const SOCK_MODE_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        program: "sock_send_capture",
        category: "sock",
        event: "sock_send_length",
        why: "streams bytes sent on TCP sockets",
    },
    ProgramSpec {
        program: "sock_recv_capture",
        category: "sock",
        event: "sock_recv_length",
        why: "streams bytes received on TCP sockets",
    },
];

/// Programs of both modes.
pub const COMMON_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        program: "sched_process_exec",
        category: "sched",
        event: "sched_process_exec",
        why: "new processes: look for TLS symbols in their executable",
    },
    ProgramSpec {
        program: "sched_process_exit",
        category: "sched",
        event: "sched_process_exit",
        why: "thread exits: drop the thread's in-SSL-call and tie state (a thread dying \
              inside a blocking SSL_read must not leave a later thread with its id \
              looking in-call)",
    },
    ProgramSpec {
        program: "inet_sock_set_state",
        category: "sock",
        event: "inet_sock_set_state",
        why: "TCP 4-tuples and roles of sockets; end of connections (sock mode)",
    },
];

/// How payload syscalls are observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureMode {
    /// Sock mode when the kernel accepts it, else syscall mode.
    #[default]
    Auto,
    Sock,
    Syscalls,
}

impl std::str::FromStr for CaptureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "sock" => Ok(Self::Sock),
            "syscalls" => Ok(Self::Syscalls),
            other => Err(format!(
                "unknown capture mode {other:?} (auto, sock, syscalls)"
            )),
        }
    }
}

impl std::fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Sock => "sock",
            Self::Syscalls => "syscalls",
        })
    }
}

/// Checks the record layout of every tracepoint of `specs` against the kernel's format files.
fn check_layouts(specs: &[ProgramSpec]) -> Result<(), CaptureError> {
    let tracefs = std::path::Path::new(preflight::TRACEFS);
    specs
        .iter()
        .try_for_each(|p| super::tpformat::check_event(tracefs, p.category, p.event))
}

/// The sock capture mode's programs hard-code x86_64 syscall numbers and `struct pt_regs`
/// slots (`agent-ebpf/src/sockio.rs`; the BPF target has no `cfg(target_arch)` of the
/// host): elsewhere only the syscall mode is correct.
pub fn sock_mode_supported(arch: &'static str) -> Result<(), CaptureError> {
    if arch == "x86_64" {
        Ok(())
    } else {
        Err(CaptureError::SockModeArch { arch })
    }
}

/// The mode to try first for a request on a host (`None`: the syscall mode, decided).
/// `Sock` on a host that cannot run it is an error; `Auto` there means the syscall mode.
pub fn first_choice(
    requested: CaptureMode,
    arch: &'static str,
) -> Result<CaptureMode, CaptureError> {
    match requested {
        CaptureMode::Syscalls => Ok(CaptureMode::Syscalls),
        CaptureMode::Sock => sock_mode_supported(arch).map(|()| CaptureMode::Sock),
        CaptureMode::Auto => match sock_mode_supported(arch) {
            Ok(()) => Ok(CaptureMode::Auto),
            Err(e) => {
                tracing::info!("{e}; using the syscall capture mode");
                Ok(CaptureMode::Syscalls)
            }
        },
    }
}

fn attach_all(ebpf: &mut Ebpf, specs: &[ProgramSpec]) -> Result<usize, CaptureError> {
    check_layouts(specs)?;
    for p in specs {
        load_one(ebpf, p)?;
    }
    for p in specs {
        let prog: &mut TracePoint = program(ebpf, p)?;
        prog.attach(p.category, p.event).map_err(|e| wrap(p, e))?;
        tracing::debug!(program = p.program, why = p.why, "attached");
    }
    Ok(specs.len())
}

fn wrap(p: &ProgramSpec, source: aya::programs::ProgramError) -> CaptureError {
    CaptureError::Program {
        program: p.program,
        category: p.category,
        event: p.event,
        source: Box::new(source),
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, p: &ProgramSpec) -> Result<&'a mut TracePoint, CaptureError> {
    ebpf.program_mut(p.program)
        .ok_or(CaptureError::MissingProgram { program: p.program })?
        .try_into()
        .map_err(|e| wrap(p, e))
}

/// Loads a program unless it already is (the capability check loads the sock-mode ones).
fn load_one(ebpf: &mut Ebpf, p: &ProgramSpec) -> Result<(), CaptureError> {
    let prog = program(ebpf, p)?;
    if prog.fd().is_ok() {
        return Ok(());
    }
    prog.load().map_err(|e| wrap(p, e))
}

/// Verifies, on every core at once, the programs `opts` will attach (see
/// [`super::preload`]); the capture mode's programs first, as they take longest.
fn preload_for(ebpf: &mut Ebpf, opts: &CaptureOptions) {
    let mode_programs = match first_choice(opts.mode, std::env::consts::ARCH) {
        Ok(CaptureMode::Syscalls) => SYSCALL_MODE_PROGRAMS,
        _ => SOCK_MODE_PROGRAMS,
    };
    let hold: &[(&'static str, &'static str)] = if opts.hold {
        super::libc_hold::LIBC_HOLD_PROBES
    } else {
        &[]
    };
    let names: Vec<&str> = mode_programs
        .iter()
        .map(|p| p.program)
        .chain(hold.iter().map(|(p, _)| *p))
        .chain(super::tls::program_names())
        .chain(COMMON_PROGRAMS.iter().map(|p| p.program))
        .chain(super::kernel_enforce::PROGRAMS.iter().copied())
        .collect();
    let started = std::time::Instant::now();
    let n = super::preload::preload(ebpf, &names);
    tracing::debug!(
        programs = n,
        ms = started.elapsed().as_millis() as u64,
        "programs verified"
    );
}

/// Options for loading.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Trace only this process (0: all).
    pub target_pid: u32,
    pub mode: CaptureMode,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Skip, in the kernel, the HTTP exchanges whose request cannot be MCP (see the
    /// README's "Exchange skipping"); false carries every exchange of a streamed connection.
    pub skip_exchanges: bool,
    /// Hold mode: the plaintext hold programs are verified with the others at start
    /// ([`Capture::prepare_libc_hold`] then finds them loaded).
    pub hold: bool,
    /// The processes that get the TLS uprobes (`--tls-processes`; default: all).
    pub tls_scope: super::tls_scope::TlsScope,
}

/// The loaded and attached object.
pub struct Capture {
    ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub attached: usize,
    /// The mode in use (never `Auto`).
    pub mode: CaptureMode,
    pub tls: super::tls::TlsAttacher,
    /// The scanner of the start-up scan, for the discovery thread ([`Capture::take_scanner`]).
    scanner: Option<super::tls::Scanner>,
    /// The enforcement maps and the connect-time block programs (taken with
    /// [`Capture::take_enforce`]).
    enforce: Option<super::kernel_enforce::KernelEnforce>,
    /// Plaintext hold probes given to MCP client processes.
    pub libc_hold: super::libc_hold::LibcHold,
    /// The processes marked as taking part in MCP (load shedding spares them).
    pub mcp_procs: super::mcp_procs::McpProcs<aya::maps::HashMap<aya::maps::MapData, u32, u8>>,
    /// The bodies the kernel leaves out (body skipping).
    pub body_skips: super::body_skips::BodySkips<super::body_skips::KernelSkipMaps>,
}

impl Capture {
    pub fn start(opts: &CaptureOptions) -> Result<Self, CaptureError> {
        preflight::check()?;
        if EBPF_OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let me = std::process::id();
        let ring = if opts.ring_bytes == 0 {
            DEFAULT_RING_BYTES
        } else {
            opts.ring_bytes
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_SELF_TGID, &me, true)
            .override_global(GLOBAL_TARGET_TGID, &opts.target_pid, true)
            .override_global(GLOBAL_SKIP_EXCHANGES, &u32::from(opts.skip_exchanges), true)
            .map_max_entries("EVENTS", ring)
            .load(EBPF_OBJECT)
            .map_err(Box::new)?;
        preload_for(&mut ebpf, opts);
        let mut attached = attach_all(&mut ebpf, COMMON_PROGRAMS)?;
        let mode = match first_choice(opts.mode, std::env::consts::ARCH)? {
            CaptureMode::Syscalls => CaptureMode::Syscalls,
            CaptureMode::Sock => CaptureMode::Sock,
            CaptureMode::Auto => {
                // Runtime capability check: the kernel must accept bpf_task_pt_regs in a
                // tracepoint program, and lay the sock tracepoints out as the programs read
                // them.
                match check_layouts(SOCK_MODE_PROGRAMS).and_then(|()| {
                    SOCK_MODE_PROGRAMS
                        .iter()
                        .try_for_each(|p| load_one(&mut ebpf, p))
                }) {
                    Ok(()) => CaptureMode::Sock,
                    Err(e) => {
                        tracing::info!("sock capture mode unavailable, using syscall mode: {e}");
                        CaptureMode::Syscalls
                    }
                }
            }
        };
        attached += match mode {
            CaptureMode::Sock => attach_all(&mut ebpf, SOCK_MODE_PROGRAMS)?,
            _ => attach_all(&mut ebpf, SYSCALL_MODE_PROGRAMS)?,
        };
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or(CaptureError::MissingMap { map: "EVENTS" })?,
        )
        .map_err(|source| CaptureError::Map {
            map: "EVENTS",
            source: Box::new(source),
        })?;
        super::tls::load_programs(&mut ebpf)?;
        let enforce = Some(super::kernel_enforce::KernelEnforce::new(&mut ebpf)?);
        let mcp_procs =
            super::mcp_procs::McpProcs::new(super::kernel_enforce::take(&mut ebpf, "MCP_PROCS")?);
        let body_skips = super::body_skips::BodySkips::new(super::body_skips::KernelSkipMaps {
            ranges: super::kernel_enforce::take(&mut ebpf, "BODY_SKIPS")?,
            live: super::kernel_enforce::take(&mut ebpf, "BODY_SKIPS_LIVE")?,
        });
        // The start-up scan runs here, before the agent says it is ready; later scans run on
        // the discovery thread (see `take_scanner`).
        let mut tls = super::tls::TlsAttacher::default();
        let mut scanner = super::tls::Scanner::new(opts.tls_scope.clone());
        let now = super::discovery::monotonic_ns();
        for cand in scanner.scan_system().into_iter().chain(scanner.scan_all()) {
            tls.attach(&mut ebpf, &cand, now);
        }
        Ok(Self {
            ebpf,
            ring,
            attached,
            mode,
            tls,
            scanner: Some(scanner),
            enforce,
            libc_hold: Default::default(),
            mcp_procs,
            body_skips,
        })
    }

    /// The kernel's enforcement state (once; `None` afterwards).
    pub fn take_enforce(&mut self) -> Option<super::kernel_enforce::KernelEnforce> {
        self.enforce.take()
    }

    /// Hold mode: loads the plaintext hold probes now (attached per process later).
    pub fn prepare_libc_hold(&mut self) -> Result<(), String> {
        self.libc_hold.load(&mut self.ebpf)
    }

    /// Hold mode: gives a process that takes part in MCP the libc send-family probes.
    pub fn attach_libc_hold(&mut self, pid: u32) {
        if let Err(e) = self.libc_hold.attach(&mut self.ebpf, pid) {
            tracing::warn!(pid, "plaintext hold unavailable for this process: {e}");
        }
    }

    /// The start-up scan's scanner (once), to hand to the discovery thread.
    pub fn take_scanner(&mut self) -> Option<super::tls::Scanner> {
        self.scanner.take()
    }

    /// Attaches files the discovery thread found.
    pub fn attach_tls(&mut self, found: &[super::tls::Candidate], now_ns: u64) {
        for cand in found {
            self.tls.attach(&mut self.ebpf, cand, now_ns);
        }
    }

    /// Retries failed TLS attachments that are due.
    pub fn retry_tls(&mut self, now_ns: u64) {
        if self.tls.next_retry_ns().is_some_and(|t| t <= now_ns) {
            self.tls.retry_due(&mut self.ebpf, now_ns);
        }
    }

    /// Per-process TLS scope: detaches the uprobes of processes that have exited.
    pub fn reap_tls(&mut self) {
        self.tls.reap_exited(&mut self.ebpf);
    }

    /// Kernel counters summed over CPUs, by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let Some(map) = self.ebpf.map("COUNTERS") else {
            return Vec::new();
        };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        let mut c = super::counters::read(&arr);
        // The capture stage's own (userspace) counters.
        let t = self.tls.stats;
        c.extend([
            ("tls_attach_errors", t.attach_errors),
            ("tls_attach_retries", t.attach_retries),
            ("tls_attach_recovered", t.attach_recovered),
            ("tls_attach_gave_up", t.attach_gave_up),
            ("tls_discovery_dropped", t.discovery_dropped),
            ("tls_processes_attached", t.processes_attached),
            ("tls_processes_detached", t.processes_detached),
            ("tls_processes_over_limit", t.processes_over_limit),
        ]);
        let m = self.mcp_procs.stats;
        c.extend([
            ("mcp_procs_marked", m.marked),
            ("mcp_procs_forgets", m.forgets),
            ("mcp_procs_map_errors", m.map_errors),
        ]);
        let b = self.body_skips.stats;
        c.extend([
            ("body_skips_started", b.started),
            ("body_skip_slots_full", b.slots_full),
            ("body_skip_map_errors", b.map_errors),
        ]);
        c
    }

    /// The discovery thread's dropped requests, for [`Self::counters`].
    pub fn note_discovery_dropped(&mut self, dropped: u64) {
        self.tls.stats.discovery_dropped = dropped;
    }

    /// Per-hook chunk, byte, loss and truncation counters.
    pub fn hook_counters(&self) -> Vec<(String, u64)> {
        let Some(map) = self.ebpf.map("HOOK_COUNTERS") else {
            return Vec::new();
        };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        super::counters::read_hooks(&arr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_mode_is_refused_off_x86_64_and_auto_falls_back_to_the_syscall_mode() {
        assert!(matches!(
            first_choice(CaptureMode::Sock, "aarch64"),
            Err(CaptureError::SockModeArch { arch: "aarch64" })
        ));
        assert_eq!(
            first_choice(CaptureMode::Auto, "aarch64").ok(),
            Some(CaptureMode::Syscalls)
        );
        assert_eq!(
            first_choice(CaptureMode::Auto, "x86_64").ok(),
            Some(CaptureMode::Auto)
        );
        assert_eq!(
            first_choice(CaptureMode::Sock, "x86_64").ok(),
            Some(CaptureMode::Sock)
        );
        let msg = CaptureError::SockModeArch { arch: "aarch64" }.to_string();
        assert!(msg.contains("--capture-mode syscalls"), "{msg}");
    }
}
