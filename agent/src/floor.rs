//! `mcpwarden floor --hooks own|obvious` (hidden; for `cargo xtask bench`): the cost floor.
//! Loads the embedded object, attaches only its empty `floor_*` programs
//! (`agent-ebpf/src/floor.rs`) and waits for SIGINT or SIGTERM. What a request pays while
//! they are attached is the price of the traps alone, with no work in them and no agent
//! reading anything: the agent's own cost is compared with it.
//!
//! Hook sets:
//! - `own`: the agent's sock-mode hooks: uprobe + uretprobe on `SSL_read`, `SSL_write`,
//!   `SSL_read_ex`, `SSL_write_ex` (or on OpenSSL's read and write cores, where the agent
//!   finds them: see [`crate::capture::ssl_sites`]) and a uprobe on `SSL_free` in every
//!   libssl the agent's start-up scan finds and in `node`, a uprobe on the dynamic loaders' `_dl_debug_state`,
//!   and the tracepoints `sock:sock_send_length`, `sock:sock_recv_length`,
//!   `sock:inet_sock_set_state`, `sched:sched_process_exec`, `sched:sched_process_exit`;
//! - `obvious`: the same SSL probes and `syscalls:sys_{enter,exit}_{read,write,sendto,recvfrom}`,
//!   the hook set a first design would pick.
//!
//! One kind of hook at a time, for the price of each (`cargo xtask bench --parts hooks`):
//! - `ssl-entry`: the entry uprobes on the four SSL symbols only;
//! - `ssl-return`: their return probes only;
//! - `ssl`: both (the SSL part of `own`, without `SSL_free` and the loaders);
//! - `ssl-exports`: both, on the exported symbols even where the agent uses the cores (the
//!   placement before [`crate::capture::ssl_sites`]);
//! - `sock`: the tracepoints of `own` only;
//! - `syscalls`: the tracepoints of `obvious` only.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aya::programs::{
    uprobe::{UProbeAttachLocation, UProbeScope},
    TracePoint, UProbe,
};
use aya::{Ebpf, EbpfLoader};
use thiserror::Error;

use crate::capture::ssl_sites;
use crate::capture::tls::{exports_ssl, Scanner, TargetKind};
use crate::capture::{preflight, CaptureError, EBPF_OBJECT};

/// Which hook set to attach empty programs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorHooks {
    Own,
    Obvious,
    SslEntry,
    SslReturn,
    Ssl,
    SslExports,
    Sock,
    Syscalls,
}

impl FloorHooks {
    /// Entry uprobes on [`SSL_SYMBOLS`].
    fn ssl_entry(self) -> bool {
        !matches!(self, Self::SslReturn | Self::Sock | Self::Syscalls)
    }

    /// Return probes on [`SSL_SYMBOLS`].
    fn ssl_return(self) -> bool {
        !matches!(self, Self::SslEntry | Self::Sock | Self::Syscalls)
    }

    fn tracepoints(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Own | Self::Sock => OWN_TRACEPOINTS,
            Self::Obvious | Self::Syscalls => OBVIOUS_TRACEPOINTS,
            Self::SslEntry | Self::SslReturn | Self::Ssl | Self::SslExports => &[],
        }
    }
}

impl std::str::FromStr for FloorHooks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "own" => Ok(Self::Own),
            "obvious" => Ok(Self::Obvious),
            "ssl-entry" => Ok(Self::SslEntry),
            "ssl-return" => Ok(Self::SslReturn),
            "ssl" => Ok(Self::Ssl),
            "ssl-exports" => Ok(Self::SslExports),
            "sock" => Ok(Self::Sock),
            "syscalls" => Ok(Self::Syscalls),
            other => Err(format!(
                "unknown hook set {other:?} (own, obvious, ssl-entry, ssl-return, ssl, ssl-exports, sock, syscalls)"
            )),
        }
    }
}

/// The OpenSSL symbols that get an entry and a return probe in both sets.
const SSL_SYMBOLS: &[&str] = &["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"];

/// The agent's entry-only uprobes (own set): `SSL_free` in each OpenSSL file, and the
/// loaders' `_dl_debug_state`.
const OWN_ENTRY_ONLY_SSL: &[&str] = &["SSL_free"];
const OWN_LOADER_SYMBOL: &str = "_dl_debug_state";

/// The agent's own sock-mode tracepoints.
const OWN_TRACEPOINTS: &[(&str, &str)] = &[
    ("sock", "sock_send_length"),
    ("sock", "sock_recv_length"),
    ("sock", "inet_sock_set_state"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
];

/// The syscall tracepoints of the obvious design.
const OBVIOUS_TRACEPOINTS: &[(&str, &str)] = &[
    ("syscalls", "sys_enter_read"),
    ("syscalls", "sys_exit_read"),
    ("syscalls", "sys_enter_write"),
    ("syscalls", "sys_exit_write"),
    ("syscalls", "sys_enter_sendto"),
    ("syscalls", "sys_exit_sendto"),
    ("syscalls", "sys_enter_recvfrom"),
    ("syscalls", "sys_exit_recvfrom"),
];

/// Where node lives on Debian: it exports OpenSSL's `SSL_*` from the executable.
const NODE: &str = "/usr/bin/node";

/// Why the floor could not start.
#[derive(Debug, Error)]
pub enum FloorError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("no OpenSSL library (libssl.so*) exporting SSL_write was found to attach to")]
    NoSslTarget,
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for SIGINT/SIGTERM failed: {0}")]
    Signal(std::io::Error),
}

/// What was attached.
#[derive(Debug, Default)]
pub struct FloorAttached {
    pub files: Vec<PathBuf>,
    pub uprobes: usize,
    pub tracepoints: usize,
}

/// Loads the object and attaches the empty programs of `hooks`. Dropping the returned
/// `Ebpf` detaches them.
pub fn attach(hooks: FloorHooks) -> Result<(Ebpf, FloorAttached), FloorError> {
    preflight::check()?;
    if EBPF_OBJECT.is_empty() {
        return Err(CaptureError::NoObject.into());
    }
    // Loading the object creates its maps; no program is loaded until asked, so only the
    // floor's run. The ring buffer is not used: the smallest size.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .load(EBPF_OBJECT)
        .map_err(|e| CaptureError::Load(Box::new(e)))?;
    let mut attached = FloorAttached::default();
    let (files, loaders) = ssl_files();
    if files.is_empty() {
        return Err(FloorError::NoSslTarget);
    }
    let ssl_programs = [("floor_uprobe", false), ("floor_uretprobe", true)]
        .into_iter()
        .filter(|(_, ret)| {
            if *ret {
                hooks.ssl_return()
            } else {
                hooks.ssl_entry()
            }
        });
    for (program, ret) in ssl_programs {
        let prog: &mut UProbe = program_mut(&mut ebpf, program, "uprobe", "SSL_*")?;
        prog.load()
            .map_err(|e| prog_err(program, "uprobe", "SSL_*", e))?;
        for file in &files {
            // Where the agent puts them: on the read and write cores when found.
            let cores = match hooks {
                FloorHooks::SslExports => None,
                _ => ssl_sites::core_sites(file),
            };
            for symbol in SSL_SYMBOLS {
                let location = match (cores, *symbol) {
                    (None, s) => UProbeAttachLocation::Symbol(s),
                    (Some(c), "SSL_read_ex") => UProbeAttachLocation::AbsoluteOffset(c.read),
                    (Some(c), "SSL_write_ex") => UProbeAttachLocation::AbsoluteOffset(c.write),
                    (Some(_), _) => continue,
                };
                match prog.attach(location, file, UProbeScope::AllProcesses) {
                    Ok(_) => attached.uprobes += 1,
                    // The `_ex` pair exists only in OpenSSL >= 1.1.1: as in the agent, a skip.
                    Err(e) => tracing::info!(
                        file = %file.display(),
                        symbol,
                        ret,
                        "floor: not attached: {e}"
                    ),
                }
            }
        }
    }
    if hooks == FloorHooks::Own {
        let program = "floor_uprobe";
        let prog: &mut UProbe = program_mut(&mut ebpf, program, "uprobe", "SSL_free")?;
        let entry_only = files
            .iter()
            .flat_map(|f| OWN_ENTRY_ONLY_SSL.iter().map(move |s| (f, *s)))
            .chain(loaders.iter().map(|f| (f, OWN_LOADER_SYMBOL)));
        for (file, symbol) in entry_only {
            match prog.attach(symbol, file, UProbeScope::AllProcesses) {
                Ok(_) => attached.uprobes += 1,
                Err(e) => {
                    tracing::info!(file = %file.display(), symbol, "floor: not attached: {e}")
                }
            }
        }
    }
    let tracepoints = hooks.tracepoints();
    if tracepoints.is_empty() {
        attached.files = files;
        return Ok((ebpf, attached));
    }
    let program = "floor_tracepoint";
    let prog: &mut TracePoint = program_mut(&mut ebpf, program, "tracepoint", "*")?;
    prog.load()
        .map_err(|e| prog_err(program, "tracepoint", "*", e))?;
    for (category, event) in tracepoints {
        prog.attach(category, event)
            .map_err(|e| prog_err(program, category, event, e))?;
        attached.tracepoints += 1;
    }
    attached.files = files;
    Ok((ebpf, attached))
}

/// Attaches, writes `ready_file` (when given), prints what was attached, and waits for
/// SIGINT or SIGTERM.
pub fn run(hooks: FloorHooks, ready_file: Option<&Path>) -> Result<(), FloorError> {
    let mask = block_stop_signals().map_err(FloorError::Signal)?;
    let (ebpf, attached) = attach(hooks)?;
    eprintln!(
        "mcpwarden floor: {hooks:?}: {} uprobes on {} files, {} tracepoints, all empty",
        attached.uprobes,
        attached.files.len(),
        attached.tracepoints
    );
    if let Some(path) = ready_file {
        std::fs::write(path, b"ready\n").map_err(|source| FloorError::ReadyFile {
            path: path.to_path_buf(),
            source,
        })?;
    }
    wait_for_signal(&mask).map_err(FloorError::Signal)?;
    drop(ebpf);
    Ok(())
}

/// The OpenSSL files the agent's start-up scan attaches to (system libssl, executables
/// of running processes that export `SSL_write`), and node's executable; then the dynamic
/// loaders it finds. One path per (device, inode).
fn ssl_files() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut scanner = Scanner::default();
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    let mut loaders = Vec::new();
    let found = scanner.scan_system().into_iter().chain(scanner.scan_all());
    for cand in found {
        if seen.insert((cand.dev, cand.ino)) {
            match cand.kind {
                TargetKind::Ssl => files.push(cand.path),
                TargetKind::Loader => loaders.push(cand.path),
            }
        }
    }
    let node = Path::new(NODE);
    if let Ok(meta) = std::fs::metadata(node) {
        use std::os::unix::fs::MetadataExt as _;
        if seen.insert((meta.dev(), meta.ino())) && exports_ssl(node) {
            files.push(node.to_path_buf());
        }
    }
    (files, loaders)
}

fn program_mut<'a, T>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
    category: &'static str,
    event: &'static str,
) -> Result<&'a mut T, FloorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(program)
        .ok_or(CaptureError::MissingProgram { program })?;
    prog.try_into()
        .map_err(|e| prog_err(program, category, event, e))
}

fn prog_err(
    program: &'static str,
    category: &'static str,
    event: &'static str,
    source: aya::programs::ProgramError,
) -> FloorError {
    CaptureError::Program {
        program,
        category,
        event,
        source: Box::new(source),
    }
    .into()
}

/// Blocks SIGINT and SIGTERM in this thread (before any other thread exists, so every
/// thread inherits the mask) and returns the set for [`wait_for_signal`].
fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; the libc calls get valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> std::io::Result<()> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set, `sig` a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_sets_are_named_own_and_obvious() {
        assert_eq!("own".parse::<FloorHooks>(), Ok(FloorHooks::Own));
        assert_eq!("obvious".parse::<FloorHooks>(), Ok(FloorHooks::Obvious));
        assert!("all".parse::<FloorHooks>().is_err());
    }

    #[test]
    fn the_obvious_set_pairs_every_syscall_enter_with_its_exit() {
        for (_, event) in OBVIOUS_TRACEPOINTS {
            let twin = match event.strip_prefix("sys_enter_") {
                Some(call) => format!("sys_exit_{call}"),
                None => format!("sys_enter_{}", event.trim_start_matches("sys_exit_")),
            };
            assert!(
                OBVIOUS_TRACEPOINTS.iter().any(|(_, e)| *e == twin),
                "{event} has no {twin}"
            );
        }
    }
}
