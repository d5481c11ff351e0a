//! Plaintext hold probes: uprobes on libc's send family (`write`, `send`, `sendto`,
//! `writev`, `sendmsg`), attached per process — only to processes the agent saw sending MCP
//! requests over plaintext HTTP, in hold mode — so no other process pays for them. A uprobe
//! hit costs about 5 µs, and `write` fires for every write of the process (files and pipes
//! leave the program after one map lookup).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use aya::programs::{uprobe::UProbeScope, UProbe};
use aya::Ebpf;

/// (program, libc symbol).
pub const LIBC_HOLD_PROBES: &[(&str, &str)] = &[
    ("libc_write", "write"),
    ("libc_send", "send"),
    ("libc_send", "sendto"),
    ("libc_writev", "writev"),
    ("libc_sendmsg", "sendmsg"),
];

/// Most processes given the probes (each attachment is a perf event per symbol; processes
/// beyond this are counted and keep the reactive reset).
pub const MAX_LIBC_HOLD_PIDS: usize = 1024;

#[derive(Default)]
pub struct LibcHold {
    loaded: bool,
    pids: HashSet<u32>,
    /// Processes given the probes, processes refused (no libc found, attach failure), and
    /// processes over [`MAX_LIBC_HOLD_PIDS`].
    pub attached: u64,
    pub failed: u64,
    pub over_limit: u64,
    /// Why the last attach failed.
    pub last_error: Option<String>,
    /// File offsets of the probed symbols per libc file (device, inode): resolved once, so
    /// attaching to another process is a few perf_event_open calls, not an ELF parse each.
    offsets: HashMap<(u64, u64), Vec<u64>>,
}

/// File offsets of [`LIBC_HOLD_PROBES`]' symbols in the ELF file at `path`.
fn symbol_offsets(path: &std::path::Path) -> Result<Vec<u64>, String> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
    LIBC_HOLD_PROBES
        .iter()
        .map(|(_, sym)| {
            let s = file
                .dynamic_symbols()
                .find(|s| s.is_definition() && s.name() == Ok(*sym))
                .ok_or(format!("{} does not export {sym}", path.display()))?;
            let idx = s.section_index().ok_or(format!("{sym} has no section"))?;
            let sec = file
                .section_by_index(idx)
                .map_err(|e| format!("{sym}: {e}"))?;
            let (file_off, _) = sec
                .file_range()
                .ok_or(format!("{sym}: section without file data"))?;
            Ok(s.address() - sec.address() + file_off)
        })
        .collect()
}

/// The libc a process maps, through its mount namespace.
fn libc_of(pid: u32) -> Result<PathBuf, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            p.starts_with('/')
                && std::path::Path::new(p)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libc.so") || n.starts_with("libc-"))
        })
        .ok_or(format!("process {pid} maps no libc"))?;
    Ok(PathBuf::from(format!("/proc/{pid}/root")).join(path.trim_start_matches('/')))
}

impl LibcHold {
    /// Gives `pid` the plaintext hold probes (once per process).
    pub fn attach(&mut self, ebpf: &mut Ebpf, pid: u32) -> Result<(), String> {
        if self.pids.contains(&pid) {
            return Ok(());
        }
        if self.pids.len() >= MAX_LIBC_HOLD_PIDS {
            self.over_limit += 1;
            return Err(format!(
                "{MAX_LIBC_HOLD_PIDS} processes have the probes already"
            ));
        }
        let r = self.try_attach(ebpf, pid);
        match &r {
            Ok(()) => {
                self.pids.insert(pid);
                self.attached += 1;
            }
            Err(e) => {
                self.failed += 1;
                self.last_error = Some(e.clone());
            }
        }
        r
    }

    /// Processes that have the probes.
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.pids.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Loads the programs (through the verifier) ahead of the first attachment, so a new
    /// MCP client gets its probes within milliseconds.
    pub fn load(&mut self, ebpf: &mut Ebpf) -> Result<(), String> {
        if !self.loaded {
            for (prog, _) in LIBC_HOLD_PROBES {
                let p: &mut UProbe = ebpf
                    .program_mut(prog)
                    .ok_or(format!("program {prog} missing"))?
                    .try_into()
                    .map_err(|e| format!("{prog}: {e}"))?;
                if p.fd().is_err() {
                    p.load().map_err(|e| format!("loading {prog}: {e}"))?;
                }
            }
            self.loaded = true;
        }
        Ok(())
    }

    fn try_attach(&mut self, ebpf: &mut Ebpf, pid: u32) -> Result<(), String> {
        let nz = NonZeroU32::new(pid).ok_or("pid 0")?;
        self.load(ebpf)?;
        let libc = libc_of(pid)?;
        let meta = std::fs::metadata(&libc).map_err(|e| format!("{}: {e}", libc.display()))?;
        let key = (meta.dev(), meta.ino());
        let offsets = match self.offsets.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(symbol_offsets(&libc)?).clone()
            }
        };
        for ((prog, sym), off) in LIBC_HOLD_PROBES.iter().zip(offsets) {
            let p: &mut UProbe = ebpf
                .program_mut(prog)
                .ok_or(format!("program {prog} missing"))?
                .try_into()
                .map_err(|e| format!("{prog}: {e}"))?;
            p.attach(off, &libc, UProbeScope::OneProcess(nz))
                .map_err(|e| format!("{sym} in {}: {e}", libc.display()))?;
        }
        tracing::info!(pid, libc = %libc.display(), "plaintext hold probes attached");
        Ok(())
    }
}
