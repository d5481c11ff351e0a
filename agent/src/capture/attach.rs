//! The attach table and the loaded object's lifetime. Dropping [`Capture`] detaches every
//! program and frees every map (aya owns the links).

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use mcpwarden_common::config::{GLOBAL_SELF_TGID, GLOBAL_TARGET_TGID};

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

/// Every program, all required on this kernel (syscall and sock tracepoints exist on every
/// supported kernel; see the README's kernel requirements).
pub const PROGRAMS: &[ProgramSpec] = &[
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
        why: "marks a send syscall as touching a socket (family, protocol, sock)",
    },
    ProgramSpec {
        program: "sock_recv_length",
        category: "sock",
        event: "sock_recv_length",
        why: "marks a recv syscall as touching a socket (family, protocol, sock)",
    },
    ProgramSpec {
        program: "sched_process_exec",
        category: "sched",
        event: "sched_process_exec",
        why: "new processes: look for TLS symbols in their executable",
    },
    ProgramSpec {
        program: "inet_sock_set_state",
        category: "sock",
        event: "inet_sock_set_state",
        why: "TCP 4-tuples of sockets",
    },
];

/// Options for loading.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Trace only this process (0: all).
    pub target_pid: u32,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
}

/// The loaded and attached object.
pub struct Capture {
    ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub attached: usize,
    pub tls: super::tls::TlsAttacher,
}

impl Capture {
    pub fn start(opts: &CaptureOptions) -> Result<Self, CaptureError> {
        preflight::check()?;
        if EBPF_OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let me = std::process::id();
        let ring = if opts.ring_bytes == 0 {
            16 * 1024 * 1024
        } else {
            opts.ring_bytes
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_SELF_TGID, &me, true)
            .override_global(GLOBAL_TARGET_TGID, &opts.target_pid, true)
            .map_max_entries("EVENTS", ring)
            .load(EBPF_OBJECT)
            .map_err(Box::new)?;
        let mut attached = 0;
        for p in PROGRAMS {
            let prog: &mut TracePoint = ebpf
                .program_mut(p.program)
                .ok_or(CaptureError::MissingProgram { program: p.program })?
                .try_into()
                .map_err(|source| CaptureError::Program {
                    program: p.program,
                    category: p.category,
                    event: p.event,
                    source: Box::new(source),
                })?;
            let wrap = |source| CaptureError::Program {
                program: p.program,
                category: p.category,
                event: p.event,
                source: Box::new(source),
            };
            prog.load().map_err(wrap)?;
            prog.attach(p.category, p.event).map_err(wrap)?;
            tracing::debug!(program = p.program, why = p.why, "attached");
            attached += 1;
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or(CaptureError::MissingMap { map: "EVENTS" })?,
        )
        .map_err(|source| CaptureError::Map {
            map: "EVENTS",
            source: Box::new(source),
        })?;
        super::tls::load_programs(&mut ebpf)?;
        let mut tls = super::tls::TlsAttacher::default();
        tls.scan_system(&mut ebpf);
        tls.scan_all(&mut ebpf);
        Ok(Self {
            ebpf,
            ring,
            attached,
            tls,
        })
    }

    /// Looks for TLS libraries in one process (after its exec).
    pub fn scan_tls_pid(&mut self, pid: u32) {
        self.tls.scan_pid(&mut self.ebpf, pid);
    }

    /// Looks for TLS libraries in every process.
    pub fn scan_tls_all(&mut self) {
        self.tls.scan_all(&mut self.ebpf);
    }

    /// Kernel counters summed over CPUs, by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let Some(map) = self.ebpf.map("COUNTERS") else {
            return Vec::new();
        };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        super::counters::read(&arr)
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
