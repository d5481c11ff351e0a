//! Hostile traffic beside a legitimate SDK session: the crafted-traffic peer
//! (`tests/peers/hostile/hostile.py`, Python standard library only), and the run that puts an
//! official Python SDK conversation next to it and checks that the conversation is still
//! reported exactly and the agent stayed within its memory bound.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::agent::Agent;
use crate::conversation::{assert_both_sides, assert_peers_behaved};
use crate::env::test_env;
use crate::peers::{free_port, wait_listening, ClientOptions, PyServer, SdkClient};
use crate::process::ChildGuard;
use crate::records::u64_field;

/// The agent's resident set must stay under this in every health record (README, "Limits").
pub const RSS_BOUND_BYTES: u64 = 256 << 20;

/// How long one hostile case may take to send.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// `hostile.py sink PORT`: a raw HTTP/1.1 server that answers what it can parse (see the
/// script's docstring) and closes on what it cannot.
pub struct HostileSink {
    process: ChildGuard,
    port: u16,
    _dir: TempDir,
}

impl HostileSink {
    pub fn start() -> HostileSink {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-hostile-sink-")
            .tempdir()
            .expect("cannot create a temporary directory for the hostile sink");
        let port = free_port();
        let mut cmd = Command::new(&env.python);
        cmd.arg(env.peers_dir.join("hostile/hostile.py"))
            .arg("sink")
            .arg(port.to_string());
        let mut process = ChildGuard::spawn("hostile sink", &mut cmd, dir.path());
        wait_listening(&mut process, port, &format!("{cmd:?}"));
        HostileSink {
            process,
            port,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// A running `hostile.py send CASE PORT`.
pub struct HostileSender {
    process: ChildGuard,
    cmd: String,
    _dir: TempDir,
}

impl HostileSender {
    pub fn spawn(case: &str, port: u16) -> HostileSender {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-hostile-send-")
            .tempdir()
            .expect("cannot create a temporary directory for the hostile sender");
        let mut cmd = Command::new(&env.python);
        cmd.arg(env.peers_dir.join("hostile/hostile.py"))
            .arg("send")
            .arg(case)
            .arg(port.to_string());
        let shown = format!("{cmd:?}");
        let process = ChildGuard::spawn("hostile sender", &mut cmd, dir.path());
        HostileSender {
            process,
            cmd: shown,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until the sender's stderr contains `needle` (compared without spaces).
    pub fn wait_for_stderr(&mut self, needle: &str) {
        let started = Instant::now();
        while !self.process.stderr().replace(' ', "").contains(needle) {
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "the hostile sender ({}) exited with {status} before saying {needle}\n\
                     --- stderr ---\n{}",
                    self.cmd,
                    self.process.stderr()
                );
            }
            assert!(
                started.elapsed() < CASE_TIMEOUT,
                "the hostile sender ({}) did not say {needle} within {CASE_TIMEOUT:?}",
                self.cmd
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the sender and reaps it.
    pub fn kill(mut self) {
        assert!(
            self.process.signal(libc::SIGKILL),
            "the hostile sender ({}) had exited before the test killed it\n--- stderr ---\n{}",
            self.cmd,
            self.process.stderr()
        );
        self.process.kill();
    }

    /// Waits for the case to finish; returns the JSON summary it printed (with its `pid`).
    pub fn finish(mut self) -> Value {
        let Some(status) = self.process.wait_timeout(CASE_TIMEOUT) else {
            panic!(
                "the hostile sender ({}) did not finish within {CASE_TIMEOUT:?}\n--- stderr ---\n{}",
                self.cmd,
                self.process.stderr()
            );
        };
        assert!(
            status.success(),
            "the hostile sender ({}) exited with {status}\n--- stderr ---\n{}",
            self.cmd,
            self.process.stderr()
        );
        let out = self.process.stdout();
        let summary: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!(
                "the hostile sender ({}) printed no JSON summary ({e}): {out:?}",
                self.cmd
            )
        });
        assert_eq!(
            summary["pid"].as_u64(),
            Some(u64::from(self.process.pid())),
            "{summary}"
        );
        summary
    }
}

/// Runs one hostile case to completion against `port`; returns its summary.
pub fn send_case(case: &str, port: u16) -> Value {
    HostileSender::spawn(case, port).finish()
}

/// What a hostile run gives the test to check.
pub struct HostileRun {
    /// Everything the main agent (all processes) wrote.
    pub records: Vec<Value>,
    /// Everything the witness agent (`--pid` the sink) wrote: its counters are the sink's
    /// side of the case alone, whatever else runs on the host.
    pub witness: Vec<Value>,
    /// The sender's summary (`pid`, what it sent).
    pub sent: Value,
    pub sink_pid: u32,
}

impl HostileRun {
    /// The witness agent's final health record (`reason: "stop"`, its last line): the sink's
    /// side only.
    pub fn final_health(&self) -> &Value {
        final_health_of(&self.witness)
    }

    /// The main agent's final health record (host-wide counters).
    pub fn main_health(&self) -> &Value {
        final_health_of(&self.records)
    }

    pub fn sender_pid(&self) -> u32 {
        u64_field(&self.sent, "pid") as u32
    }

    /// Records of `type` whose `pid` is `pid`.
    pub fn of(&self, ty: &str, pid: u32) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r["type"] == ty && r["pid"].as_u64() == Some(u64::from(pid)))
            .collect()
    }
}

/// The last record, which must be the final health record.
pub fn final_health_of(records: &[Value]) -> &Value {
    let last = records
        .last()
        .unwrap_or_else(|| panic!("the agent wrote no record"));
    assert!(
        last["type"] == "health" && last["reason"] == "stop",
        "the agent's last record should be its final health record, got {last}"
    );
    last
}

/// A counter of the final health record: `section.name` (e.g. `conn.http_errors`).
pub fn counter(health: &Value, section: &str, name: &str) -> u64 {
    health[section][name]
        .as_u64()
        .unwrap_or_else(|| panic!("health record has no {section}.{name}: {health}"))
}

/// Every health record's `rss_bytes` is under [`RSS_BOUND_BYTES`]; returns the largest.
pub fn assert_rss_bounded(records: &[Value]) -> u64 {
    let health: Vec<&Value> = records.iter().filter(|r| r["type"] == "health").collect();
    assert!(!health.is_empty(), "the agent wrote no health record");
    let max = health
        .iter()
        .map(|h| u64_field(h, "rss_bytes"))
        .max()
        .unwrap_or(0);
    assert!(
        max < RSS_BOUND_BYTES,
        "the agent's RSS reached {max} bytes, over the documented bound of {RSS_BOUND_BYTES}"
    );
    max
}

/// The agent (with `--health-interval 1` and `extra_args`), the official Python SDK server and
/// client, the hostile sink, and a witness agent that traces only the sink (`--pid`), so the
/// case's counters can be checked exactly while other tests use the host. The client initializes and pauses; `case` runs to completion
/// against the sink; the client then finishes its conversation. The agent must still be
/// running (stop() fails otherwise), report the SDK conversation exactly from both sides, and
/// stay under [`RSS_BOUND_BYTES`].
pub fn hostile_beside_legit_session(case: &str, extra_args: &[&str]) -> HostileRun {
    let mut args = vec!["--health-interval", "1"];
    args.extend_from_slice(extra_args);
    let sink = HostileSink::start();
    let sink_pid = sink.pid().to_string();
    let mut witness_args = args.clone();
    witness_args.extend_from_slice(&["--pid", &sink_pid]);
    let witness = Agent::start(&witness_args);
    let agent = Agent::start(&args);
    let server = PyServer::start(free_port());
    let server_comm = server.comm();
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_after_initialize: true,
            ..ClientOptions::default()
        },
    );
    client.wait_initialized();

    let sent = send_case(case, sink.port());

    client.resume();
    let summary = client.finish();
    let session_id = assert_peers_behaved(&summary, &server);
    let records = agent.stop();
    let witness = witness.stop();
    assert_rss_bounded(&witness);
    assert_both_sides(
        &records,
        &summary,
        session_id,
        server.pid(),
        &server_comm,
        server.port(),
    );
    let rss = assert_rss_bounded(&records);
    let run = HostileRun {
        records,
        witness,
        sent,
        sink_pid: sink.pid(),
    };
    eprintln!(
        "hostile case {case}: sent {}; max rss {rss} bytes; witness final health {}",
        run.sent,
        run.final_health()
    );
    run
}
