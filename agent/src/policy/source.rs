//! Reload support: notices when the policy file changed on disk (or a reload is forced, on
//! SIGHUP) and loads it again. The caller keeps its current policy when the new one fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::load::{load, Policy, PolicyError};

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

/// A policy file watched by polling its metadata (inode, size, mtime, ctime).
#[derive(Debug)]
pub struct PolicySource {
    path: PathBuf,
    last: Option<Stamp>,
}

impl PolicySource {
    /// Watches `path` from its current state: the first `poll(false)` answers `None` unless
    /// the file changes after this call.
    pub fn new(path: &Path) -> PolicySource {
        PolicySource {
            path: path.to_path_buf(),
            last: stamp(path),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Some` with the newly loaded policy (or why it failed) when the file changed since the
    /// last poll (or `force`); `None` otherwise. A file that disappears is reported once.
    pub fn poll(&mut self, force: bool) -> Option<Result<Policy, PolicyError>> {
        let now = stamp(&self.path);
        if !force && now == self.last {
            return None;
        }
        self.last = now;
        Some(load(&self.path))
    }
}
