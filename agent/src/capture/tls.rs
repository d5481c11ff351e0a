//! TLS library discovery and uprobe attachment.
//!
//! A uprobe is attached to a file (its inode), so it fires in every process that maps that
//! file, now or later: one attachment per distinct (device, inode). Targets are found
//! - at start: the standard system library directories (`libssl.so*`), and every process's
//!   mappings and main executable (`/proc/*/maps`, `/proc/*/exe`);
//! - later: on every exec (sched:sched_process_exec event) and by a periodic rescan of
//!   `/proc/*/maps` (libraries loaded after exec, e.g. Python's `import ssl`).
//!
//! Paths are opened through `/proc/PID/root`, so libraries inside other mount namespaces
//! (containers) are the files those processes really map.
//!
//! Supported: OpenSSL 1.1/3.x `libssl.so*`, and executables that export the `SSL_*`
//! symbols (Debian's `node`). Not yet: Go crypto/tls, rustls, BoringSSL linked statically
//! without exported symbols, GnuTLS, NSS.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::programs::{uprobe::UProbeScope, UProbe};
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

const SYSTEM_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// One attached file.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Symbols attached.
    pub symbols: Vec<&'static str>,
}

/// Keeps track of what is attached; the links live in the `Ebpf` object.
#[derive(Default)]
pub struct TlsAttacher {
    seen: HashSet<(u64, u64)>,
    pub targets: Vec<TlsTarget>,
    pub attach_errors: u64,
}

/// Does this ELF file export `SSL_write` in its dynamic symbol table?
pub fn exports_ssl(path: &Path) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let Ok(file) = object::File::parse(&*data) else {
        return false;
    };
    file.dynamic_symbols()
        .any(|s| s.is_definition() && s.name() == Ok("SSL_write"))
}

fn is_libssl(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libssl.so"))
}

/// Loads the TLS programs (once).
pub fn load_programs(ebpf: &mut Ebpf) -> Result<(), super::CaptureError> {
    for p in TLS_PROBES {
        let prog: &mut UProbe = ebpf
            .program_mut(p.program)
            .ok_or(super::CaptureError::MissingProgram { program: p.program })?
            .try_into()
            .map_err(|e| super::CaptureError::Program {
                program: p.program,
                category: "uprobe",
                event: p.symbol,
                source: Box::new(e),
            })?;
        prog.load().map_err(|e| super::CaptureError::Program {
            program: p.program,
            category: "uprobe",
            event: p.symbol,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

impl TlsAttacher {
    /// Attaches to `path` unless its inode is already done. `path` must be openable from the
    /// agent (use `/proc/PID/root/...` for other mount namespaces).
    pub fn attach_file(&mut self, ebpf: &mut Ebpf, path: &Path, must_export: bool) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if !meta.is_file() {
            return;
        }
        let key = (meta.dev(), meta.ino());
        if self.seen.contains(&key) {
            return;
        }
        self.seen.insert(key);
        if must_export && !exports_ssl(path) {
            return;
        }
        let mut symbols = Vec::new();
        for p in TLS_PROBES {
            let Some(prog) = ebpf.program_mut(p.program) else {
                continue;
            };
            let Ok(prog): Result<&mut UProbe, _> = prog.try_into() else {
                continue;
            };
            match prog.attach(p.symbol, path, UProbeScope::AllProcesses) {
                Ok(_) => {
                    if !symbols.contains(&p.symbol) {
                        symbols.push(p.symbol);
                    }
                }
                Err(e) if p.optional => {
                    tracing::info!(path = %path.display(), symbol = p.symbol, "optional TLS symbol not attached: {e}");
                }
                Err(e) => {
                    self.attach_errors += 1;
                    tracing::warn!(path = %path.display(), symbol = p.symbol, "TLS uprobe not attached: {e}");
                }
            }
        }
        if !symbols.is_empty() {
            tracing::info!(path = %path.display(), ?symbols, "TLS library attached");
            self.targets.push(TlsTarget {
                path: path.to_path_buf(),
                dev: key.0,
                ino: key.1,
                symbols,
            });
        }
    }

    /// The standard library directories of the host.
    pub fn scan_system(&mut self, ebpf: &mut Ebpf) {
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
                self.attach_file(ebpf, &p, false);
            }
        }
    }

    /// One process: its libssl mappings and its main executable.
    pub fn scan_pid(&mut self, ebpf: &mut Ebpf, pid: u32) {
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            let mut libs: Vec<&str> = maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| p.starts_with('/') && is_libssl(p))
                .collect();
            libs.dedup();
            for lib in libs {
                self.attach_file(ebpf, &root.join(lib.trim_start_matches('/')), false);
            }
        }
        // The executable (through /proc/PID/exe, valid in any mount namespace).
        self.attach_file(ebpf, Path::new(&format!("/proc/{pid}/exe")), true);
    }

    /// Every process on the host (skipping our own).
    pub fn scan_all(&mut self, ebpf: &mut Ebpf) {
        let me = std::process::id();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        let pids: Vec<u32> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .filter(|&p| p != me)
            .collect();
        for pid in pids {
            self.scan_pid(ebpf, pid);
        }
    }
}
