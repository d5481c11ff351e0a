//! A throw-away PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries,
//! `initdb` in a temporary directory as an unprivileged user (`nobody` when run as root),
//! listening on 127.0.0.1 on a free port, stopped when the guard is dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PgHarnessError {
    /// No `initdb`/`pg_ctl` under `/usr/lib/postgresql/*/bin` (install Debian's `postgresql`).
    #[error(
        "PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install -y postgresql)"
    )]
    NotInstalled,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Its output or error.
        detail: String,
    },
}

/// A running PostgreSQL; stopped (immediately) on drop.
pub struct TestPostgres {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
    uid: Option<u32>,
}

fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn free_port() -> Result<u16, PgHarnessError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PgHarnessError::Step {
            step: "finding a free port",
            detail: e.to_string(),
        })
}

fn run(step: &'static str, mut cmd: Command, uid: Option<u32>) -> Result<(), PgHarnessError> {
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PgHarnessError::Step {
            step,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PgHarnessError::Step {
            step,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

fn chown(path: &Path, uid: u32) -> Result<(), PgHarnessError> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(|e| PgHarnessError::Step {
        step: "chown",
        detail: e.to_string(),
    })
}

impl TestPostgres {
    /// Initialises and starts a server.
    pub fn start() -> Result<TestPostgres, PgHarnessError> {
        let bin = find_bin().ok_or(PgHarnessError::NotInstalled)?;
        // SAFETY: getuid has no preconditions.
        let uid = (unsafe { libc::getuid() } == 0).then_some(65534u32);
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-pg")
            .tempdir()
            .map_err(|e| PgHarnessError::Step {
                step: "temp dir",
                detail: e.to_string(),
            })?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| PgHarnessError::Step {
            step: "data dir",
            detail: e.to_string(),
        })?;
        if let Some(u) = uid {
            chown(dir.path(), u)?;
            chown(&data, u)?;
        }
        let mut init = Command::new(bin.join("initdb"));
        init.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run("initdb", init, uid)?;
        let port = free_port()?;
        let mut ctl = Command::new(bin.join("pg_ctl"));
        ctl.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"]);
        run("pg_ctl start", ctl, uid)?;
        Ok(TestPostgres {
            bin,
            data,
            _dir: dir,
            port,
            uid,
        })
    }

    /// `postgres://…` URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh, empty database on the server; its URL.
    pub fn fresh_database(&self, name: &str) -> Result<String, PgHarnessError> {
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).map_err(|e| {
            PgHarnessError::Step {
                step: "connect",
                detail: e.to_string(),
            }
        })?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.batch_execute(&sql).map_err(|e| PgHarnessError::Step {
                step: "create database",
                detail: format!("{e:?}"),
            })?;
        }
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let mut ctl = Command::new(self.bin.join("pg_ctl"));
        ctl.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = run("pg_ctl stop", ctl, self.uid);
    }
}
