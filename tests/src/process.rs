//! Owning handles on the processes a test starts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A started process that is killed (SIGKILL) and reaped when the guard drops, unless it
/// has already exited. Its stdout and stderr go to files next to each other in `dir`.
#[derive(Debug)]
pub struct ChildGuard {
    what: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd`, naming it `what` in messages; output goes to `<dir>/<what>.{stdout,stderr}`.
    pub fn spawn(what: &str, cmd: &mut Command, dir: &Path) -> ChildGuard {
        let file_name = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let stdout = dir.join(format!("{file_name}.stdout"));
        let stderr = dir.join(format!("{file_name}.stderr"));
        let out = File::create(&stdout)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stdout.display()));
        let err = File::create(&stderr)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {what} ({cmd:?}): {e}"));
        ChildGuard {
            what: what.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The last 16 KiB the process wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let mut start = text.len().saturating_sub(16 * 1024);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// The exit status if the process has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll the {}: {e}", self.what))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process; `false` if it had already exited.
    pub fn signal(&mut self, signal: libc::c_int) -> bool {
        if self.try_wait().is_some() {
            return false;
        }
        let pid = self.pid() as libc::pid_t;
        // SAFETY: plain kill(2) on a child that `try_wait` just found unreaped, so the pid is
        // still ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert!(
            rc == 0,
            "cannot signal the {} (pid {pid}): {}",
            self.what,
            std::io::Error::last_os_error()
        );
        true
    }

    /// Kills and reaps the process now (idempotent).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
