//! Which processes get the TLS uprobes (`--tls-processes`).
//!
//! A uprobe attached to a file fires in every process that maps the file: every `curl`,
//! package manager and monitoring agent on the host that uses the same libssl pays the
//! trap and the agent's sniff on each `SSL_read`/`SSL_write`, MCP or not. By default the
//! agent attaches that way (one attachment per file), because it cannot tell an MCP
//! process from another before its first request is decrypted. An operator who knows which
//! programs speak MCP names them, and each of those processes gets its own attachment
//! (`perf_event_open` bound to the process): the kernel then places the breakpoints only in
//! that process's memory, and no other process traps at all.
//!
//! `--pid` scopes the same way: only that process gets attachments (the programs already
//! ignore every other process; with attachments per file, each of them still trapped).
//!
//! A process is named by its executable's file name (`/proc/PID/exe`) or its `comm`, exactly.
//! Processes are found as in the default mode: at start, on `exec`, on a change of their link
//! map, and by the periodic sweep (every 2 s for processes not seen before: a worker forked
//! without `exec` is found then). The attachments of a process that has exited are detached on a
//! background thread (a uprobe's detach waits for a kernel grace period, ~100 ms each).

use std::path::Path;

/// Most processes with their own TLS attachments at once; more are counted
/// (`tls_processes_over_limit`) and left unattached.
pub const MAX_TLS_PROCESSES: usize = 1024;

/// A process: its pid and its start time (clock ticks after boot, `/proc/PID/stat` field
/// 22), so a reused pid is a different process.
pub type ProcKey = (u32, u64);

/// The processes in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsScope {
    /// Executable file names or `comm`s; empty: any name.
    names: Vec<String>,
    /// `--pid`: only this process.
    pid: Option<u32>,
}

impl TlsScope {
    pub fn new(names: Vec<String>) -> TlsScope {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        TlsScope { names, pid: None }
    }

    /// Only the process `pid` (`--pid`; 0: no such limit).
    pub fn with_pid(mut self, pid: u32) -> TlsScope {
        self.pid = (pid != 0).then_some(pid);
        self
    }

    /// Attachments per process (names or a pid were given), not per file.
    pub fn per_process(&self) -> bool {
        !self.names.is_empty() || self.pid.is_some()
    }

    /// The scope in words, for the start line: `processes named a, b`, `process 42`.
    pub fn describe(&self) -> String {
        let names = self.names.join(", ");
        match (self.pid, names.is_empty()) {
            (None, _) => format!("processes named {names}"),
            (Some(pid), true) => format!("process {pid}"),
            (Some(pid), false) => format!("process {pid} if named {names}"),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `pid` when it is one of the named processes (its key), read from `/proc`.
    pub fn admits(&self, pid: u32) -> Option<ProcKey> {
        if self.pid.is_some_and(|only| only != pid) {
            return None;
        }
        if self.names.is_empty() {
            return Some((pid, start_time(pid)?));
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let exe_name = exe
            .as_deref()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(" (deleted)"));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
        if !self.matches(exe_name, comm.as_deref().map(str::trim_end)) {
            return None;
        }
        Some((pid, start_time(pid)?))
    }

    fn matches(&self, exe_name: Option<&str>, comm: Option<&str>) -> bool {
        self.names
            .iter()
            .any(|n| Some(n.as_str()) == exe_name || Some(n.as_str()) == comm)
    }
}

/// The process's start time (`/proc/PID/stat` field 22); `None` when it is gone.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line (the `comm` in parentheses may hold spaces and
/// parentheses: the fields are counted from the last `)`).
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow the `)`: the start time is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `key` names is still running.
pub fn alive(key: ProcKey) -> bool {
    start_time(key.0) == Some(key.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_executable_or_the_comm_exactly() {
        let s = TlsScope::new(vec!["node".into(), " python3.11 ".into(), "".into()]);
        assert!(s.per_process());
        assert_eq!(s.names(), ["node", "python3.11"]);
        assert!(s.matches(Some("node"), Some("MainThread")));
        assert!(s.matches(Some("python3.11"), None));
        assert!(s.matches(None, Some("node")));
        assert!(!s.matches(Some("nodejs"), Some("nod")));
        assert!(!TlsScope::new(vec![]).per_process());
        assert!(!TlsScope::new(vec![]).with_pid(0).per_process());
        assert_eq!(s.describe(), "processes named node, python3.11");
    }

    #[test]
    fn a_pid_admits_that_process_alone() {
        let me = std::process::id();
        let only_me = TlsScope::new(vec![]).with_pid(me);
        assert!(only_me.per_process());
        assert_eq!(only_me.describe(), format!("process {me}"));
        assert_eq!(only_me.admits(me).map(|k| k.0), Some(me));
        let other = TlsScope::new(vec![]).with_pid(me + 1);
        assert_eq!(other.admits(me), None);
        let misnamed = TlsScope::new(vec!["no-such-program".into()]).with_pid(me);
        assert_eq!(misnamed.admits(me), None);
    }

    #[test]
    fn the_start_time_is_counted_from_the_last_parenthesis() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_admitted_by_its_own_name_and_is_alive() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap().to_string();
        let key = TlsScope::new(vec![name]).admits(me).expect("admitted");
        assert_eq!(key.0, me);
        assert!(alive(key));
        assert!(!alive((me, key.1 + 1)));
        assert_eq!(
            TlsScope::new(vec!["no-such-program".into()]).admits(me),
            None
        );
    }
}
