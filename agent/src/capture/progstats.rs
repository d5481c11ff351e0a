//! Run statistics of the agent's own loaded eBPF programs, from the kernel's `bpf_prog_info`.
//!
//! aya's `ProgramInfo` does not expose `recursion_misses` (the number of times a program was
//! skipped because it was already running on that CPU — e.g. a tracepoint firing inside
//! another BPF program's helper), so the info is read here with `BPF_OBJ_GET_INFO_BY_FD`.
//! The programs are found as this process's `bpf-prog` file descriptors (`/proc/self/fd`), so
//! every program the agent holds is covered — capture, TLS uprobes, enforcement, hold probes —
//! without reaching into the loader.
//!
//! `run_count` and `run_time_ns` only move while BPF run-time statistics are enabled on the
//! host (`sysctl kernel.bpf_stats_enabled=1`); `recursion_misses` always moves (Linux 5.12+).

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::OnceLock;

use serde::Serialize;

use super::EBPF_OBJECT;

/// One loaded program's kernel-side run statistics (cumulative since it was loaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    /// The program's name in the eBPF object (the kernel keeps only 15 characters; the full
    /// name is restored when the object has exactly one function with that prefix).
    pub name: String,
    /// The kernel's program id (`bpftool prog show id N`).
    pub id: u32,
    /// Runs (only while `kernel.bpf_stats_enabled=1`).
    pub run_count: u64,
    /// Time spent running, ns (only while `kernel.bpf_stats_enabled=1`).
    pub run_time_ns: u64,
    /// Runs skipped because the program was already running on that CPU.
    pub recursion_misses: u64,
}

/// Every eBPF program this process holds a file descriptor of, by program id (each once).
pub fn read() -> Vec<ProgramStats> {
    stats_of(&program_fds())
}

/// [`read`] for a caller that asks every second: the walk of `/proc/self/fd` (a `readlink`
/// per descriptor: hundreds, with the uprobes' perf events) is made every
/// [`Reader::WALK_EVERY`] reads; the reads between ask only the programs found then.
/// Programs are loaded at start and when the hold probes first attach, so a late one is
/// reported at most that many reads late.
#[derive(Debug, Default)]
pub struct Reader {
    fds: Vec<RawFd>,
    reads: u32,
}

impl Reader {
    pub const WALK_EVERY: u32 = 10;

    pub fn read(&mut self) -> Vec<ProgramStats> {
        if self.reads.is_multiple_of(Self::WALK_EVERY) {
            self.fds = program_fds();
        }
        self.reads = self.reads.wrapping_add(1);
        stats_of(&self.fds)
    }
}

/// This process's `bpf-prog` file descriptors.
fn program_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse::<RawFd>().ok()?;
            // The directory's own fd is gone by now; anything but a program is skipped.
            match std::fs::read_link(entry.path()) {
                Ok(target) if target.as_os_str() == "anon_inode:bpf-prog" => Some(fd),
                _ => None,
            }
        })
        .collect()
}

/// Statistics of the programs behind `fds`, by program id (each once). A descriptor closed
/// since it was found is skipped (the kernel refuses it, or names another program: each
/// program is reported by its own id all the same).
fn stats_of(fds: &[RawFd]) -> Vec<ProgramStats> {
    let mut by_id: BTreeMap<u32, ProgramStats> = BTreeMap::new();
    for &fd in fds {
        if let Some(info) = prog_info(fd) {
            let stats = ProgramStats {
                name: full_name(&kernel_name(&info.name)),
                id: info.id,
                run_count: info.run_cnt,
                run_time_ns: info.run_time_ns,
                recursion_misses: info.recursion_misses,
            };
            by_id.entry(stats.id).or_insert(stats);
        }
    }
    by_id.into_values().collect()
}

/// `bpf_prog_info` of a program fd; `None` when the kernel refuses (the fd was closed and
/// reused in between, or the kernel predates the call).
fn prog_info(fd: RawFd) -> Option<aya_obj::generated::bpf_prog_info> {
    /// The `BPF_OBJ_GET_INFO_BY_FD` member of `union bpf_attr` (the kernel accepts an attr
    /// shorter than the union; the rest counts as zero).
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: `bpf_prog_info` is plain integers and arrays of integers; all-zero is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd).ok()?,
        info_len: std::mem::size_of_val(&info) as u32,
        info: std::ptr::addr_of_mut!(info) as u64,
    };
    // SAFETY: `attr` points at `info`, which is writable for `info_len` bytes; the kernel
    // writes at most that many and never keeps the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            aya_obj::generated::bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::addr_of_mut!(attr),
            std::mem::size_of::<InfoAttr>(),
        )
    };
    // The kernel writes back how much it filled: another kind of object (a map whose fd
    // took a closed program's number) fills a shorter info, and is not a program.
    let filled = attr.info_len as usize;
    let needed = std::mem::offset_of!(aya_obj::generated::bpf_prog_info, recursion_misses) + 8;
    (rc == 0 && filled >= needed).then_some(info)
}

/// The NUL-terminated name the kernel keeps (at most 15 bytes).
fn kernel_name(raw: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The kernel keeps `BPF_OBJ_NAME_LEN - 1` bytes of a program's name.
const KERNEL_NAME_MAX: usize = 15;

/// The object's function name that the kernel's (possibly truncated) `name` stands for.
fn full_name(name: &str) -> String {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| object_functions(EBPF_OBJECT));
    resolve(name, names)
}

fn resolve(name: &str, names: &[String]) -> String {
    if name.len() < KERNEL_NAME_MAX {
        return name.to_owned();
    }
    let mut found = names.iter().filter(|n| n.starts_with(name));
    match (found.next(), found.next()) {
        (Some(only), None) => only.clone(),
        _ => name.to_owned(),
    }
}

/// Names of the function symbols of an ELF object (the eBPF programs among them).
fn object_functions(data: &[u8]) -> Vec<String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    file.symbols()
        .filter(|s| s.kind() == SymbolKind::Text)
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_kernel_name_becomes_the_one_function_it_prefixes() {
        let names: Vec<String> = [
            "sock_send_capture",
            "sock_recv_capture",
            "ssl_write_ex_ret",
            "ssl_write_ex_reb",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(resolve("sock_send_captu", &names), "sock_send_capture");
        // Short names are whole already.
        assert_eq!(resolve("sys_enter_read", &names), "sys_enter_read");
        // Two candidates: the kernel's name stays.
        assert_eq!(resolve("ssl_write_ex_re", &names), "ssl_write_ex_re");
        // No candidate: the kernel's name stays.
        assert_eq!(resolve("something_else_", &names), "something_else_");
    }

    #[test]
    fn the_kernel_name_stops_at_its_nul() {
        let mut raw = [0 as libc::c_char; 16];
        for (d, s) in raw.iter_mut().zip(b"abc") {
            *d = *s as libc::c_char;
        }
        assert_eq!(kernel_name(&raw), "abc");
    }

    #[test]
    fn a_process_without_programs_reports_none() {
        // Unit tests load no eBPF program.
        assert!(read().is_empty());
    }

    #[test]
    fn the_info_layout_has_recursion_misses_where_the_kernel_writes_it() {
        // include/uapi/linux/bpf.h: run_time_ns, run_cnt, recursion_misses follow prog_tags.
        assert_eq!(
            std::mem::offset_of!(aya_obj::generated::bpf_prog_info, recursion_misses),
            208
        );
        assert_eq!(
            std::mem::offset_of!(aya_obj::generated::bpf_prog_info, run_cnt),
            200
        );
    }
}
