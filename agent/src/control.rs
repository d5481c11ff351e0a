//! The running agent's local control socket: `mcpwarden approve ID`, `reject ID`, `pending`
//! and `catalog accept SERVER TOOL` talk to it.
//!
//! Protocol: a Unix stream socket (mode 0600, root only), one JSON object per line each way.
//! Requests: `{"cmd":"pending"}`, `{"cmd":"approve","id":N}`, `{"cmd":"reject","id":N}`,
//! `{"cmd":"catalog_accept","server":"127.0.0.1:8000/mcp","tool":"add"}`, `{"cmd":"sessions"}`.
//! Answers:
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! A thread accepts connections and reads requests; each request is handed to the capture
//! loop through a channel and a wake-up pipe in the loop's poll set, so the loop answers
//! promptly and is the only one touching the enforcer.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Default path of the control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/mcpwarden/control.sock";
/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;
/// How long a request waits for the capture loop.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One control command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlRequest {
    /// List held calls waiting for a person.
    Pending,
    /// Let the held call `id` go on.
    Approve { id: u64 },
    /// Reset the held call `id`.
    Reject { id: u64 },
    /// Accept a tool's drifted definition (pinned tools).
    CatalogAccept { server: String, tool: String },
    /// Active sessions (as `session_update` records) and the MCP message counter
    /// (`mcpwarden top`).
    Sessions,
}

/// Who answers `catalog accept` (the policy's `Judge::accept`); any
/// `FnMut(&str, &str) -> bool` is one.
pub trait CatalogAcceptor {
    /// True when `tool` of `server` was known and is now accepted.
    fn accept(&mut self, server: &str, tool: &str) -> bool;
}

impl<F: FnMut(&str, &str) -> bool> CatalogAcceptor for F {
    fn accept(&mut self, server: &str, tool: &str) -> bool {
        self(server, tool)
    }
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {path}: bad answer: {detail}")]
    BadAnswer { path: PathBuf, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

type Job = (ControlRequest, Sender<Value>);

/// The agent's end of the control socket.
pub struct ControlServer {
    path: PathBuf,
    jobs: Receiver<Job>,
    wake_read: OwnedFd,
}

impl ControlServer {
    /// Binds `path` (mode 0600; a stale socket file is replaced) and starts the accept
    /// thread.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(path))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another agent answers on this socket",
                    ),
                });
            }
            std::fs::remove_file(path).map_err(io(path))?;
        }
        // Created 0600 from the start: no window in which others could connect.
        // SAFETY: umask(2) has no preconditions; restored right after bind.
        let old = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = listener.map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io(path)(std::io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptors we own.
        let (wake_read, wake_write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (tx, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mcpwarden-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(s) => serve(s, &tx, &wake_write),
                        Err(e) => tracing::warn!("control socket accept: {e}"),
                    }
                }
            })
            .map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            jobs,
            wake_read,
        })
    }

    /// Put this in the capture loop's poll set (readable when a request waits).
    pub fn wake_fd(&self) -> RawFd {
        self.wake_read.as_raw_fd()
    }

    /// Answers every waiting request with `handler`.
    pub fn drain(&self, handler: &mut dyn FnMut(ControlRequest) -> Value) {
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking read into a valid buffer; emptying the wake-up pipe.
        while unsafe { libc::read(self.wake_read.as_raw_fd(), buf.as_mut_ptr().cast(), 64) } > 0 {}
        while let Ok((req, answer)) = self.jobs.try_recv() {
            let _ = answer.send(handler(req));
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client connection: request lines in, answer lines out.
fn serve(stream: UnixStream, jobs: &Sender<Job>, wake: &OwnedFd) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let answer = match serde_json::from_str::<ControlRequest>(line.trim()) {
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
            Ok(req) => {
                let (tx, rx) = mpsc::channel();
                if jobs.send((req, tx)).is_err() {
                    return; // the agent is stopping
                }
                // SAFETY: one byte from a valid buffer into our pipe.
                unsafe { libc::write(wake.as_raw_fd(), b"!".as_ptr().cast(), 1) };
                rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(
                    |_| serde_json::json!({"ok": false, "error": "the agent did not answer"}),
                )
            }
        };
        let mut text = answer.to_string();
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends one request to the agent at `path` and returns its answer.
pub fn request(path: &Path, req: &ControlRequest) -> Result<Value, ControlError> {
    let mut s = UnixStream::connect(path).map_err(io(path))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT + Duration::from_secs(2)))
        .map_err(io(path))?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::BadAnswer {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io(path))?;
    let mut answer = String::new();
    BufReader::new(s)
        .take(16 << 20)
        .read_line(&mut answer)
        .map_err(io(path))?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::BadAnswer {
        path: path.to_path_buf(),
        detail: format!("{e}: {answer:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_the_socket() {
        let dir = std::env::temp_dir().join(format!("mcpw-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let server = match ControlServer::bind(&path) {
            Ok(s) => s,
            Err(e) => panic!("bind: {e}"),
        };
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let client = {
            let path = path.clone();
            std::thread::spawn(move || {
                request(&path, &ControlRequest::Approve { id: 42 }).map_err(|e| e.to_string())
            })
        };
        // The loop side: wait until the wake fd is readable, then answer.
        let mut pfd = libc::pollfd {
            fd: server.wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(n, 1, "the wake fd never became readable");
        let mut seen = Vec::new();
        server.drain(&mut |req| {
            seen.push(req);
            serde_json::json!({"ok": true})
        });
        assert_eq!(seen, vec![ControlRequest::Approve { id: 42 }]);
        let answer = client.join().ok().and_then(|r| r.ok());
        assert_eq!(answer, Some(serde_json::json!({"ok": true})));
        drop(server);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn request_wire_format() {
        let s = serde_json::to_string(&ControlRequest::CatalogAccept {
            server: "127.0.0.1:8000/mcp".into(),
            tool: "add".into(),
        })
        .ok();
        assert_eq!(
            s.as_deref(),
            Some(r#"{"cmd":"catalog_accept","server":"127.0.0.1:8000/mcp","tool":"add"}"#)
        );
    }
}
