//! The agent under test: `mcpwarden run --output FILE --ready-file FILE [extra args]`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::env::test_env;
use crate::process::ChildGuard;

/// How long the agent may take to load and attach its programs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to drain, flush and exit after SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running agent. It writes one JSON object per line to `output`, and creates
/// `ready_file` once its programs are attached (nothing before that moment is captured).
pub struct Agent {
    process: ChildGuard,
    output: PathBuf,
    ready_file: PathBuf,
    // Declared last: dropped after `process`, so the agent dies before its files go.
    dir: TempDir,
}

impl Agent {
    /// Starts the agent and waits until it is ready; panics (with its stderr) if it exits
    /// first or is not ready within [`READY_TIMEOUT`].
    pub fn start(extra_args: &[&str]) -> Agent {
        Self::start_with_env(extra_args, &[])
    }

    /// As [`Agent::start`], with extra environment variables (e.g. `MCPWARDEN_LOG`).
    pub fn start_with_env(extra_args: &[&str], envs: &[(&str, &str)]) -> Agent {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-agent-")
            .tempdir()
            .expect("cannot create a temporary directory for the agent");
        let output = dir.path().join("records.jsonl");
        let ready_file = dir.path().join("ready");
        let mut cmd = Command::new(&env.agent_bin);
        cmd.arg("run")
            .arg("--output")
            .arg(&output)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(extra_args)
            .envs(envs.iter().copied());
        let process = ChildGuard::spawn("agent", &mut cmd, dir.path());
        let mut agent = Agent {
            process,
            output,
            ready_file,
            dir,
        };
        agent.wait_ready(&cmd);
        agent
    }

    fn wait_ready(&mut self, cmd: &Command) {
        let started = Instant::now();
        while !self.ready_file.exists() {
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "the agent ({cmd:?}) exited with {status} before creating its ready file {}\n\
                     --- agent stderr ---\n{}",
                    self.ready_file.display(),
                    self.process.stderr()
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "the agent ({cmd:?}) did not create its ready file {} within {READY_TIMEOUT:?}\n\
                     --- agent stderr ---\n{}",
                    self.ready_file.display(),
                    self.process.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The agent's stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The directory holding the agent's output, ready file and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Sends SIGINT, waits for a clean exit (the agent drains what the kernel still holds,
    /// flushes and writes `session_end` records for open sessions), and returns every JSON
    /// line it wrote. Panics if it does not exit in time, exits unsuccessfully, or wrote a
    /// line that is not a JSON object.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with(libc::SIGINT)
    }

    /// As [`Agent::stop`], with another signal (SIGTERM must behave as SIGINT).
    pub fn stop_with(mut self, signal: i32) -> Vec<Value> {
        if !self.process.signal(signal) {
            let status = self.process.try_wait();
            panic!(
                "the agent exited ({status:?}) before the test stopped it\n--- agent stderr ---\n{}",
                self.process.stderr()
            );
        }
        let Some(status) = self.process.wait_timeout(STOP_TIMEOUT) else {
            panic!(
                "the agent did not exit within {STOP_TIMEOUT:?} of signal {signal}\n--- agent stderr ---\n{}",
                self.process.stderr()
            );
        };
        assert!(
            status.success(),
            "the agent exited with {status} after signal {signal} (want success)\n--- agent stderr ---\n{}",
            self.process.stderr()
        );
        let text = std::fs::read_to_string(&self.output).unwrap_or_else(|e| {
            panic!(
                "cannot read the agent's output {}: {e}\n--- agent stderr ---\n{}",
                self.output.display(),
                self.process.stderr()
            )
        });
        parse_json_lines(&text, &self.output.display().to_string())
    }
}

/// Parses JSON Lines; every non-empty line must be a JSON object.
pub fn parse_json_lines(text: &str, origin: &str) -> Vec<Value> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{origin} line {}: not JSON ({e}): {line}", n + 1));
            assert!(
                value.is_object(),
                "{origin} line {}: want a JSON object, got: {line}",
                n + 1
            );
            value
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_skip_blank_lines_and_keep_order() {
        let got = parse_json_lines("{\"a\":1}\n\n{\"a\":2}\n", "test");
        assert_eq!(
            got,
            vec![serde_json::json!({"a":1}), serde_json::json!({"a":2})]
        );
    }

    #[test]
    #[should_panic(expected = "test line 2: not JSON")]
    fn a_line_that_is_not_json_names_its_number() {
        parse_json_lines("{}\nnope\n", "test");
    }
}
