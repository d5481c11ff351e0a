//! TLS library discovery and uprobe attachment.
//!
//! A uprobe is attached to a file (its inode), so it fires in every process that maps that
//! file, now or later: one attachment per distinct (device, inode). Targets are found
//! - at start: the standard system library directories (`libssl.so*`), and every process's
//!   mappings and main executable (`/proc/*/maps`, `/proc/*/exe`);
//! - later: on every exec (sched:sched_process_exec event), on every change of a process's
//!   link map (a uprobe on the dynamic loader's `_dl_debug_state`, which glibc calls on every
//!   `dlopen`/`dlclose`: Python's `import ssl` is seen at once), and by a periodic rescan of
//!   `/proc/*/maps` (whatever the others missed).
//!
//! The scanning (reading `/proc`, parsing ELF symbol tables) is done by a [`Scanner`] on the
//! discovery thread ([`super::discovery`]); it hands [`Candidate`]s to the thread that owns
//! the `Ebpf` object, where [`TlsAttacher`] attaches them (aya needs `&mut Ebpf`). A failed
//! attachment is retried with backoff, a bounded number of times, and counted.
//!
//! Paths are opened through `/proc/PID/root`, so libraries inside other mount namespaces
//! (containers) are the files those processes really map.
//!
//! Supported: OpenSSL 1.1/3.x `libssl.so*`, and executables that export the `SSL_*`
//! symbols (Debian's `node`). Not yet: Go crypto/tls, rustls, BoringSSL linked statically
//! without exported symbols, GnuTLS, NSS.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::num::NonZeroU32;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::programs::{
    uprobe::{UProbeAttachLocation, UProbeScope},
    UProbe,
};

use super::ssl_sites::CoreSites;
use super::tls_scope::{ProcKey, TlsScope, MAX_TLS_PROCESSES};
use aya::programs::uprobe::UProbeLinkId;
use aya::Ebpf;

/// The programs and the symbol each attaches to.
pub struct TlsProbe {
    pub program: &'static str,
    pub symbol: &'static str,
    /// The `_ex` variants exist only in OpenSSL >= 1.1.1: a library without them is a
    /// logged skip, not an error.
    pub optional: bool,
}

pub const TLS_PROBES: &[TlsProbe] = &[
    TlsProbe {
        program: "ssl_write",
        symbol: "SSL_write",
        optional: false,
    },
    TlsProbe {
        program: "ssl_write_ret",
        symbol: "SSL_write",
        optional: false,
    },
    TlsProbe {
        program: "ssl_read",
        symbol: "SSL_read",
        optional: false,
    },
    TlsProbe {
        program: "ssl_read_ret",
        symbol: "SSL_read",
        optional: false,
    },
    TlsProbe {
        program: "ssl_write_ex",
        symbol: "SSL_write_ex",
        optional: true,
    },
    TlsProbe {
        program: "ssl_write_ex_ret",
        symbol: "SSL_write_ex",
        optional: true,
    },
    TlsProbe {
        program: "ssl_read_ex",
        symbol: "SSL_read_ex",
        optional: true,
    },
    TlsProbe {
        program: "ssl_read_ex_ret",
        symbol: "SSL_read_ex",
        optional: true,
    },
    // Ends an `SSL *`'s state before the allocator reuses its address.
    TlsProbe {
        program: "ssl_free",
        symbol: "SSL_free",
        optional: true,
    },
];

/// Where one of [`TLS_PROBES`] goes in a file whose read and write cores were found
/// ([`super::ssl_sites`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// At its symbol.
    Symbol,
    /// At this file offset (a core), named by the label.
    Core(u64, &'static str),
    /// Not attached: the core's probe sees these calls.
    Covered,
}

/// The `_ex` programs go on the cores (their arguments and result are the cores'); the
/// plain `SSL_read`/`SSL_write` programs are not needed there.
pub fn site_of(p: &TlsProbe, cores: Option<CoreSites>) -> Site {
    let Some(c) = cores else {
        return Site::Symbol;
    };
    match p.program {
        "ssl_read_ex" | "ssl_read_ex_ret" => Site::Core(c.read, "ssl_read_internal"),
        "ssl_write_ex" | "ssl_write_ex_ret" => Site::Core(c.write, "ssl_write_internal"),
        "ssl_read" | "ssl_read_ret" | "ssl_write" | "ssl_write_ret" => Site::Covered,
        _ => Site::Symbol,
    }
}

/// The dynamic loader's hook: `void _dl_debug_state(void)` (glibc `elf/dl-debug.c`, every
/// version; musl `ldso/dynlink.c`), the function debuggers break on; called after each
/// change of the link map (`r_state` RT_ADD/RT_DELETE, then RT_CONSISTENT).
pub const LOADER_PROBES: &[TlsProbe] = &[TlsProbe {
    program: "dl_debug_state",
    symbol: "_dl_debug_state",
    optional: false,
}];

const SYSTEM_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// What a file is attached for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// OpenSSL's `SSL_*` functions ([`TLS_PROBES`]).
    Ssl,
    /// The dynamic loader's `_dl_debug_state` ([`LOADER_PROBES`]).
    Loader,
}

impl TargetKind {
    pub fn probes(self) -> &'static [TlsProbe] {
        match self {
            Self::Ssl => TLS_PROBES,
            Self::Loader => LOADER_PROBES,
        }
    }
}

/// A file to attach to, found by a [`Scanner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Openable from the agent (`/proc/PID/root/...` for other mount namespaces).
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub kind: TargetKind,
    /// OpenSSL's read and write cores in this file, when its code has the known shape
    /// ([`super::ssl_sites`]; decoded here, on the discovery thread, not while attaching).
    pub cores: Option<CoreSites>,
    /// The one process to attach in (`--tls-processes`); `None`: every process that maps
    /// the file.
    pub process: Option<ProcKey>,
}

/// One attached file.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub kind: TargetKind,
    /// Symbols attached.
    pub symbols: Vec<&'static str>,
    /// The process the attachment is bound to (`--tls-processes`).
    pub process: Option<ProcKey>,
}

/// Does this ELF file define `symbol` in its dynamic symbol table? Reads only what the
/// lookup needs (ELF header, section headers, `.dynsym`, `.dynstr`), never the whole file:
/// executables such as `node` are 100 MB.
pub fn exports_symbol(path: &Path, symbol: &str) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(file) = File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    let found = elf
        .dynamic_symbols()
        .any(|s| s.is_definition() && s.name() == Ok(symbol));
    found
}

/// Does this ELF file export `SSL_write` in its dynamic symbol table?
pub fn exports_ssl(path: &Path) -> bool {
    exports_symbol(path, "SSL_write")
}

fn file_name(path: &str) -> Option<&str> {
    Path::new(path).file_name().and_then(|n| n.to_str())
}

fn is_libssl(path: &str) -> bool {
    file_name(path).is_some_and(|n| n.starts_with("libssl.so"))
}

/// The dynamic loader: `ld-linux-x86-64.so.2`, `ld-linux-aarch64.so.1`, `ld-2.31.so`,
/// `ld-musl-x86_64.so.1`.
fn is_loader(path: &str) -> bool {
    file_name(path).is_some_and(|n| n.starts_with("ld-") && n.contains(".so"))
}

/// The TLS and loader programs' names.
pub fn program_names() -> impl Iterator<Item = &'static str> {
    TLS_PROBES.iter().chain(LOADER_PROBES).map(|p| p.program)
}

/// Loads the TLS and loader programs (once). A missing loader program (an older object) is
/// a logged skip: `dlopen`ed libraries are then found by the periodic rescan only.
pub fn load_programs(ebpf: &mut Ebpf) -> Result<(), super::CaptureError> {
    for p in TLS_PROBES.iter().chain(LOADER_PROBES) {
        let Some(prog) = ebpf.program_mut(p.program) else {
            if LOADER_PROBES.iter().any(|l| l.program == p.program) {
                tracing::warn!(
                    program = p.program,
                    "no loader program in the eBPF object: dlopen'ed TLS libraries are found by the periodic rescan only"
                );
                continue;
            }
            return Err(super::CaptureError::MissingProgram { program: p.program });
        };
        let prog: &mut UProbe = prog.try_into().map_err(|e| super::CaptureError::Program {
            program: p.program,
            category: "uprobe",
            event: p.symbol,
            source: Box::new(e),
        })?;
        if prog.fd().is_ok() {
            // Verified by the start-up preload, or by the entry of a shared program.
            continue;
        }
        prog.load().map_err(|e| super::CaptureError::Program {
            program: p.program,
            category: "uprobe",
            event: p.symbol,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Finds files to attach to without touching the `Ebpf` object (runs on the discovery
/// thread). Each (device, inode) is handed over once.
#[derive(Debug, Default)]
pub struct Scanner {
    seen: HashSet<SeenKey>,
    /// Processes whose maps were read.
    pub pids_scanned: u64,
    scope: TlsScope,
}

/// A file handed over (device, inode, kind), and the process it is for (per-process scope;
/// `(0, 0)` otherwise).
type SeenKey = (u64, u64, TargetKindKey, ProcKey);

/// `TargetKind` as a hashable key (a file may be both a loader and an SSL exporter).
type TargetKindKey = u8;

fn kind_key(k: TargetKind) -> TargetKindKey {
    match k {
        TargetKind::Ssl => 0,
        TargetKind::Loader => 1,
    }
}

impl Scanner {
    /// A scanner for the processes in `scope`.
    pub fn new(scope: TlsScope) -> Scanner {
        Scanner {
            scope,
            ..Scanner::default()
        }
    }

    /// A candidate for `path` unless its inode was handed over already (for `process`, in
    /// per-process scope); `must_export`: only when its dynamic symbols define the kind's
    /// first symbol.
    fn consider(
        &mut self,
        path: &Path,
        kind: TargetKind,
        must_export: bool,
        process: Option<ProcKey>,
    ) -> Option<Candidate> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        let key = (
            meta.dev(),
            meta.ino(),
            kind_key(kind),
            process.unwrap_or((0, 0)),
        );
        if !self.seen.insert(key) {
            return None;
        }
        let symbol = kind.probes().first()?.symbol;
        if must_export && !exports_symbol(path, symbol) {
            return None;
        }
        let cores = match kind {
            TargetKind::Ssl => super::ssl_sites::core_sites(path),
            TargetKind::Loader => None,
        };
        Some(Candidate {
            path: path.to_path_buf(),
            dev: key.0,
            ino: key.1,
            kind,
            cores,
            process,
        })
    }

    /// The standard library directories of the host (none in per-process scope: only the
    /// named processes' own mappings count).
    pub fn scan_system(&mut self) -> Vec<Candidate> {
        let mut found = Vec::new();
        if self.scope.per_process() {
            return found;
        }
        for dir in SYSTEM_LIB_DIRS {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_str().is_some_and(is_libssl))
                .collect();
            paths.sort();
            for p in paths {
                found.extend(self.consider(&p, TargetKind::Ssl, false, None));
            }
        }
        found
    }

    /// One process: its libssl and loader mappings and its main executable (in per-process
    /// scope, only a named process).
    pub fn scan_pid(&mut self, pid: u32) -> Vec<Candidate> {
        let mut found = Vec::new();
        let process = if self.scope.per_process() {
            let Some(key) = self.scope.admits(pid) else {
                return found;
            };
            self.forget_exited();
            Some(key)
        } else {
            None
        };
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        self.pids_scanned += 1;
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            let mut files: Vec<&str> = maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| p.starts_with('/'))
                .collect();
            files.dedup();
            for f in files {
                let kind = if is_libssl(f) {
                    TargetKind::Ssl
                } else if is_loader(f) {
                    TargetKind::Loader
                } else {
                    continue;
                };
                let must_export = kind == TargetKind::Loader;
                found.extend(self.consider(
                    &root.join(f.trim_start_matches('/')),
                    kind,
                    must_export,
                    process,
                ));
            }
        }
        // The executable (through /proc/PID/exe, valid in any mount namespace).
        found.extend(self.consider(
            Path::new(&format!("/proc/{pid}/exe")),
            TargetKind::Ssl,
            true,
            process,
        ));
        found
    }

    /// Per-process scope: forgets the files handed over for processes that have exited, once
    /// there are many (a long-running host starts and ends many named processes).
    fn forget_exited(&mut self) {
        if self.seen.len() < 4 * MAX_TLS_PROCESSES {
            return;
        }
        self.seen
            .retain(|k| k.3 == (0, 0) || super::tls_scope::alive(k.3));
    }

    /// Every process on the host (skipping our own).
    pub fn scan_all(&mut self) -> Vec<Candidate> {
        let me = std::process::id();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let pids: Vec<u32> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .filter(|&p| p != me)
            .collect();
        pids.into_iter()
            .flat_map(|pid| self.scan_pid(pid))
            .collect()
    }
}

/// Delay before retry number `attempt` (1-based) of a failed attachment: 0.5 s, 1 s, 2 s,
/// 4 s, 8 s; `None` after [`MAX_ATTACH_ATTEMPTS`] tries in all (the first included).
pub fn retry_delay_ns(attempt: u32) -> Option<u64> {
    (attempt < MAX_ATTACH_ATTEMPTS).then(|| 500_000_000u64 << (attempt - 1).min(16))
}

/// Tries per file and probe, the first attachment included.
pub const MAX_ATTACH_ATTEMPTS: u32 = 6;

/// A failed attachment waiting for its next try.
#[derive(Debug, Clone)]
struct Retry {
    cand: Candidate,
    /// Programs of the candidate's kind that did not attach.
    programs: Vec<&'static str>,
    /// Tries so far.
    attempts: u32,
    due_ns: u64,
}

/// Counters of TLS attachment (userspace, exported with the capture counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AttachStats {
    /// Required uprobes that failed to attach (each try counts).
    pub attach_errors: u64,
    /// Retries made.
    pub attach_retries: u64,
    /// Retries that attached what had failed.
    pub attach_recovered: u64,
    /// Files given up on after [`MAX_ATTACH_ATTEMPTS`] tries.
    pub attach_gave_up: u64,
    /// Discovery requests (exec, link-map change) dropped because the discovery thread's
    /// queue was full; the periodic full scan finds what they would have, later.
    pub discovery_dropped: u64,
    /// Per-process scope (`--tls-processes`): processes given their own attachments, those
    /// detached after they exited, and those left unattached at [`MAX_TLS_PROCESSES`].
    pub processes_attached: u64,
    pub processes_detached: u64,
    pub processes_over_limit: u64,
}

/// Most refused processes remembered (for counting each once).
const REFUSED_REMEMBERED: usize = 4 * MAX_TLS_PROCESSES;

/// Attaches candidates; the links live in the `Ebpf` object.
#[derive(Default)]
pub struct TlsAttacher {
    seen: HashSet<SeenKey>,
    pub targets: Vec<TlsTarget>,
    pub stats: AttachStats,
    retries: Vec<Retry>,
    /// Per-process scope: each process's links (program, link), to detach once it exits.
    process_links: HashMap<ProcKey, Vec<(&'static str, UProbeLinkId)>>,
    /// Per-process scope: processes refused at [`MAX_TLS_PROCESSES`], so each is counted
    /// once (each of its files comes back at every sweep).
    refused: HashSet<ProcKey>,
}

impl TlsAttacher {
    /// Attaches a candidate unless its inode is done (for its process, in per-process
    /// scope); failures are queued for a retry.
    pub fn attach(&mut self, ebpf: &mut Ebpf, cand: &Candidate, now_ns: u64) {
        if let Some(p) = cand.process {
            if !self.admit_process(p) {
                return;
            }
        }
        let key = (
            cand.dev,
            cand.ino,
            kind_key(cand.kind),
            cand.process.unwrap_or((0, 0)),
        );
        if !self.seen.insert(key) {
            return;
        }
        let programs: Vec<&'static str> = cand.kind.probes().iter().map(|p| p.program).collect();
        let failed = self.attach_programs(ebpf, cand, &programs);
        self.queue_retry(cand.clone(), failed, 1, now_ns);
    }

    /// Per-process scope: whether `process` may have attachments (it has some, or fewer than
    /// [`MAX_TLS_PROCESSES`] processes do). A process refused is counted once, however many
    /// of its files are offered and however often.
    fn admit_process(&mut self, process: ProcKey) -> bool {
        if self.process_links.contains_key(&process) || self.process_links.len() < MAX_TLS_PROCESSES
        {
            return true;
        }
        if self.refused.contains(&process) {
            return false;
        }
        if self.refused.len() >= REFUSED_REMEMBERED {
            self.refused.retain(|&k| super::tls_scope::alive(k));
        }
        if self.refused.len() < REFUSED_REMEMBERED {
            self.refused.insert(process);
        }
        // Counted even when it cannot be remembered (then again at its next offer).
        self.stats.processes_over_limit += 1;
        false
    }

    /// Attaches `programs` of the candidate's kind; returns the required ones that failed.
    fn attach_programs(
        &mut self,
        ebpf: &mut Ebpf,
        cand: &Candidate,
        programs: &[&'static str],
    ) -> Vec<&'static str> {
        let path = cand.path.as_path();
        let mut symbols = Vec::new();
        let mut failed = Vec::new();
        let cores = cand.cores;
        for p in cand.kind.probes() {
            if !programs.contains(&p.program) {
                continue;
            }
            let Some(prog) = ebpf.program_mut(p.program) else {
                continue;
            };
            let Ok(prog): Result<&mut UProbe, _> = prog.try_into() else {
                continue;
            };
            let (location, label) = match site_of(p, cores) {
                Site::Symbol => (UProbeAttachLocation::Symbol(p.symbol), p.symbol),
                Site::Core(offset, label) => (UProbeAttachLocation::AbsoluteOffset(offset), label),
                Site::Covered => continue,
            };
            let scope = match cand.process.and_then(|(pid, _)| NonZeroU32::new(pid)) {
                Some(pid) => UProbeScope::OneProcess(pid),
                None => UProbeScope::AllProcesses,
            };
            match prog.attach(location, path, scope) {
                Ok(link) => {
                    if let Some(process) = cand.process {
                        let links = self.process_links.entry(process).or_default();
                        if links.is_empty() {
                            self.stats.processes_attached += 1;
                        }
                        links.push((p.program, link));
                    }
                    if !symbols.contains(&label) {
                        symbols.push(label);
                    }
                }
                Err(e) if p.optional => {
                    tracing::info!(path = %path.display(), symbol = p.symbol, "optional TLS symbol not attached: {e}");
                }
                Err(e) => {
                    self.stats.attach_errors += 1;
                    failed.push(p.program);
                    tracing::warn!(path = %path.display(), symbol = p.symbol, "uprobe not attached (will retry): {e}");
                }
            }
        }
        if !symbols.is_empty() {
            match cand.kind {
                TargetKind::Ssl => {
                    tracing::info!(path = %path.display(), ?symbols, "TLS library attached")
                }
                TargetKind::Loader => {
                    tracing::info!(path = %path.display(), "dynamic loader attached")
                }
            }
            match self.targets.iter_mut().find(|t| {
                t.dev == cand.dev
                    && t.ino == cand.ino
                    && t.kind == cand.kind
                    && t.process == cand.process
            }) {
                Some(t) => {
                    for s in symbols {
                        if !t.symbols.contains(&s) {
                            t.symbols.push(s);
                        }
                    }
                }
                None => self.targets.push(TlsTarget {
                    path: path.to_path_buf(),
                    dev: cand.dev,
                    ino: cand.ino,
                    kind: cand.kind,
                    symbols,
                    process: cand.process,
                }),
            }
        }
        failed
    }

    fn queue_retry(
        &mut self,
        cand: Candidate,
        failed: Vec<&'static str>,
        attempts: u32,
        now_ns: u64,
    ) {
        if failed.is_empty() {
            return;
        }
        match retry_delay_ns(attempts) {
            Some(d) => self.retries.push(Retry {
                cand,
                programs: failed,
                attempts,
                due_ns: now_ns.saturating_add(d),
            }),
            None => {
                self.stats.attach_gave_up += 1;
                tracing::warn!(path = %cand.path.display(), attempts, "uprobe attachment given up");
            }
        }
    }

    /// When the next retry is due.
    pub fn next_retry_ns(&self) -> Option<u64> {
        self.retries.iter().map(|r| r.due_ns).min()
    }

    /// Retries the failed attachments that are due.
    pub fn retry_due(&mut self, ebpf: &mut Ebpf, now_ns: u64) {
        let (due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.due_ns <= now_ns);
        self.retries = later;
        for r in due {
            self.stats.attach_retries += 1;
            let failed = self.attach_programs(ebpf, &r.cand, &r.programs);
            if failed.is_empty() {
                self.stats.attach_recovered += 1;
            }
            self.queue_retry(r.cand, failed, r.attempts + 1, now_ns);
        }
    }

    /// Attached files of one kind.
    pub fn count(&self, kind: TargetKind) -> usize {
        self.targets.iter().filter(|t| t.kind == kind).count()
    }

    /// Per-process scope: detaches the links of processes that have exited. The links are
    /// taken from the programs here and closed on a thread of their own: each close waits
    /// for a kernel grace period.
    pub fn reap_exited(&mut self, ebpf: &mut Ebpf) {
        let gone: Vec<ProcKey> = self
            .process_links
            .keys()
            .copied()
            .filter(|&k| !super::tls_scope::alive(k))
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut taken = Vec::new();
        for key in &gone {
            for (program, link) in self.process_links.remove(key).unwrap_or_default() {
                let prog: Option<&mut UProbe> =
                    ebpf.program_mut(program).and_then(|p| p.try_into().ok());
                if let Some(l) = prog.and_then(|p| p.take_link(link).ok()) {
                    taken.push(l);
                }
            }
            self.stats.processes_detached += 1;
        }
        self.seen.retain(|k| !gone.contains(&k.3));
        self.targets
            .retain(|t| !t.process.is_some_and(|p| gone.contains(&p)));
        self.retries
            .retain(|r| !r.cand.process.is_some_and(|p| gone.contains(&p)));
        let closer = std::thread::Builder::new()
            .name("tls-detach".into())
            .spawn(move || drop(taken));
        if let Err(e) = closer {
            tracing::warn!("no thread to detach exited processes' uprobes ({e}): detached here");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_over_the_limit_is_counted_once_however_often_it_is_offered() {
        let mut a = TlsAttacher::default();
        for pid in 1..=MAX_TLS_PROCESSES as u32 {
            a.process_links.insert((pid, 1), Vec::new());
        }
        // A process with attachments, and one more than the limit allows.
        assert!(a.admit_process((1, 1)));
        let late = (u32::MAX, 7);
        for _ in 0..3 {
            // Its libssl, its loader, its executable; and again at the next sweep.
            assert!(!a.admit_process(late));
        }
        assert!(!a.admit_process((u32::MAX - 1, 7)));
        assert_eq!(a.stats.processes_over_limit, 2);
        // Room again: the refused process is admitted.
        a.process_links.remove(&(1, 1));
        assert!(a.admit_process(late));
    }

    #[test]
    fn failed_attachments_are_retried_with_doubling_delays_then_given_up() {
        let delays: Vec<Option<u64>> = (1..=MAX_ATTACH_ATTEMPTS).map(retry_delay_ns).collect();
        assert_eq!(
            delays,
            vec![
                Some(500_000_000),
                Some(1_000_000_000),
                Some(2_000_000_000),
                Some(4_000_000_000),
                Some(8_000_000_000),
                None
            ]
        );
    }

    #[test]
    fn with_cores_found_the_ex_programs_move_to_them_and_the_plain_ones_are_covered() {
        let cores = Some(CoreSites {
            read: 0x35290,
            write: 0x355a0,
        });
        let site = |program: &str| {
            let p = TLS_PROBES
                .iter()
                .find(|p| p.program == program)
                .expect("probe");
            (site_of(p, cores), site_of(p, None))
        };
        assert_eq!(
            site("ssl_read_ex_ret"),
            (Site::Core(0x35290, "ssl_read_internal"), Site::Symbol)
        );
        assert_eq!(
            site("ssl_write_ex"),
            (Site::Core(0x355a0, "ssl_write_internal"), Site::Symbol)
        );
        assert_eq!(site("ssl_write_ret"), (Site::Covered, Site::Symbol));
        assert_eq!(site("ssl_read"), (Site::Covered, Site::Symbol));
        assert_eq!(site("ssl_free"), (Site::Symbol, Site::Symbol));
    }

    #[test]
    fn loaders_and_ssl_libraries_are_told_apart_by_file_name() {
        assert!(is_loader("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        assert!(is_loader("/lib/ld-musl-x86_64.so.1"));
        assert!(is_loader("/lib/x86_64-linux-gnu/ld-2.28.so"));
        assert!(!is_loader("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert!(!is_loader("/usr/bin/ld-wrapper"));
        assert!(is_libssl("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
    }

    #[test]
    fn the_dynamic_symbol_lookup_finds_a_defined_symbol_without_reading_the_whole_file() {
        // The test binary itself links libc dynamically and exports nothing called SSL_write.
        let exe = std::env::current_exe().unwrap();
        assert!(!exports_ssl(&exe));
        let loader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists());
        if let Some(l) = loader {
            assert!(exports_symbol(l, "_dl_debug_state"), "{}", l.display());
        }
    }

    #[test]
    fn a_pid_scan_hands_each_inode_over_once() {
        let mut s = Scanner::default();
        let me = std::process::id();
        let first = s.scan_pid(me);
        assert!(s.scan_pid(me).is_empty(), "second scan: {first:?}");
    }
}
