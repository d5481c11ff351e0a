//! The observers a bench mode runs beside the traffic: the agent in its three shapes
//! (monitor, allow-all policy with schema validation, hold) and the floor's empty programs
//! (`mcpwarden floor`). Each start is timed to readiness and its CPU read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::procs::{cpu_seconds, status_bytes, wait_for, Guard};
use crate::build::agent_binary;

/// The README's minimal policy (every call judged; `explode` denied).
pub const MINIMAL_POLICY: &str =
    "default: allow\nrules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";
/// Allow everything, validate every call's arguments against the tool's schema.
pub const ALLOW_ALL_SCHEMA_POLICY: &str =
    "default: allow\nchecks:\n  schema_violation: deny\n  unknown_tool: deny\n";

/// The program `Observer::MonitorScoped` names: none of the bench's workloads.
pub const SCOPED_PROGRAM: &str = "mcp-server";

/// What observes the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observer {
    /// `mcpwarden run` (sock mode, JSON lines to a file).
    Monitor,
    /// `mcpwarden run --no-exchange-skip`: every HTTP exchange carried (the host tax's
    /// measure of exchange skipping).
    MonitorNoSkip,
    /// `mcpwarden run --tls-processes mcp-server`: TLS uprobes only in a program of another
    /// name than the workload's (the host tax's measure of per-process attachment).
    MonitorScoped,
    /// `mcpwarden run --policy` allow-all with schema validation (`--enforce reset`).
    Policy,
    /// `mcpwarden run --enforce hold --policy` (the README's minimal policy).
    Hold,
    /// `mcpwarden floor --hooks own`.
    FloorOwn,
    /// `mcpwarden floor --hooks obvious`.
    FloorObvious,
    /// `mcpwarden floor --hooks SET` for one kind of hook (`ssl-entry`, `sock`, …).
    FloorSet(&'static str),
}

impl Observer {
    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Self::Monitor | Self::MonitorNoSkip | Self::MonitorScoped | Self::Policy | Self::Hold
        )
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::MonitorNoSkip => "monitor-no-skip",
            Self::MonitorScoped => "monitor-scoped",
            Self::Policy => "policy",
            Self::Hold => "hold",
            Self::FloorOwn => "floor-own",
            Self::FloorObvious => "floor-obvious",
            Self::FloorSet(set) => set,
        }
    }
}

/// A started observer.
pub struct Running {
    guard: Guard,
    pub observer: Observer,
    /// From spawn to the ready file.
    pub ready_after: Duration,
    /// CPU seconds used by then (start-up cost).
    pub startup_cpu: f64,
    /// JSON lines of the agent (none for the floor).
    pub output: Option<PathBuf>,
}

/// Starts `observer` with its files in `dir` (`n` tells runs apart) and waits until it is
/// attached. `health_secs`: the agent's `--health-interval`.
pub fn start(dir: &Path, observer: Observer, n: usize, health_secs: u32) -> Result<Running> {
    let tag = format!("{}-{n}", observer.tag());
    let ready = dir.join(format!("ready-{tag}"));
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(agent_binary());
    let mut output = None;
    match observer {
        Observer::FloorOwn | Observer::FloorObvious => {
            let hooks = if observer == Observer::FloorOwn {
                "own"
            } else {
                "obvious"
            };
            cmd.args(["floor", "--hooks", hooks]);
        }
        Observer::FloorSet(set) => {
            cmd.args(["floor", "--hooks", set]);
        }
        _ => {
            let out = dir.join(format!("records-{tag}.jsonl"));
            cmd.arg("run")
                .arg("--output")
                .arg(&out)
                .arg("--control-socket")
                .arg(dir.join(format!("control-{tag}.sock")))
                .arg("--health-interval")
                .arg(health_secs.to_string());
            let policy = match observer {
                Observer::Policy => Some(ALLOW_ALL_SCHEMA_POLICY),
                Observer::Hold => Some(MINIMAL_POLICY),
                _ => None,
            };
            if let Some(text) = policy {
                let path = dir.join(format!("policy-{}.yaml", observer.tag()));
                std::fs::write(&path, text)?;
                cmd.arg("--policy").arg(path);
            }
            if observer == Observer::Hold {
                cmd.args(["--enforce", "hold"]);
            }
            if observer == Observer::MonitorNoSkip {
                cmd.arg("--no-exchange-skip");
            }
            if observer == Observer::MonitorScoped {
                cmd.args(["--tls-processes", SCOPED_PROGRAM]);
            }
            output = Some(out);
        }
    }
    cmd.arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("stderr-{tag}.log")))
                .context("bench: the observer's log file")?,
        ));
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("bench: starting {}", agent_binary().display()))?;
    let mut guard = Guard::int(child);
    let mut died = false;
    wait_for(
        &format!("{} attaching", observer.tag()),
        Duration::from_secs(120),
        || {
            died = guard.exited();
            died || ready.exists()
        },
    )?;
    let ready_after = started.elapsed();
    if died {
        anyhow::bail!(
            "bench: {} exited before it was ready: {}",
            observer.tag(),
            std::fs::read_to_string(dir.join(format!("stderr-{tag}.log"))).unwrap_or_default()
        );
    }
    let startup_cpu = cpu_seconds(guard.pid())?;
    Ok(Running {
        guard,
        observer,
        ready_after,
        startup_cpu,
        output,
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Peak resident set (`VmHWM`).
    pub fn hwm_bytes(&self) -> Result<u64> {
        status_bytes(self.pid(), "VmHWM")
    }

    /// Resident set now (`VmRSS`).
    pub fn rss_bytes(&self) -> Result<u64> {
        status_bytes(self.pid(), "VmRSS")
    }

    /// Stops it (SIGINT) and returns its records (empty for the floor).
    pub fn stop(self) -> Result<Vec<Value>> {
        let Running { guard, output, .. } = self;
        drop(guard);
        match output {
            Some(path) => read_records(&path),
            None => Ok(Vec::new()),
        }
    }
}

/// Every JSON line of an agent's output (lines that do not parse are skipped).
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("bench: reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The `"type": "message"` records.
pub fn message_count(records: &[Value]) -> u64 {
    records.iter().filter(|r| r["type"] == "message").count() as u64
}

/// The last `"type": "health"` record (the final one when the agent stopped cleanly).
pub fn last_health(records: &[Value]) -> Option<&Value> {
    records.iter().rev().find(|r| r["type"] == "health")
}
