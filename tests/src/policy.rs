//! Peers for the enforcement and content tests: `tests/peers/python/policy_server.py` (which
//! logs every tool it runs) and the scripted clients `policy_client.py` / `policy_client.mjs`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::agent::parse_json_lines;
use crate::env::test_env;
use crate::peers::{finish_client, wait_listening};
use crate::process::ChildGuard;
use crate::tls::SelfSignedCert;

/// The policy test server on 127.0.0.1:`port`.
pub struct PolicyServer {
    process: ChildGuard,
    port: u16,
    tls: bool,
    exec_log: PathBuf,
    // Declared last: dropped after `process`.
    dir: TempDir,
}

impl PolicyServer {
    /// Starts the server (HTTPS with `tls`; `stateless`: no session ids, JSON answers) and
    /// waits until it listens.
    pub fn start(port: u16, tls: Option<&SelfSignedCert>, stateless: bool) -> PolicyServer {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-policyserver-")
            .tempdir()
            .expect("cannot create a temporary directory for the server");
        let exec_log = dir.path().join("exec.jsonl");
        let mut cmd = Command::new(&env.python);
        cmd.arg(env.peers_dir.join("python/policy_server.py"))
            .arg(port.to_string())
            .arg("--exec-log")
            .arg(&exec_log);
        if let Some(t) = tls {
            cmd.arg("--tls").arg(&t.cert).arg(&t.key);
        }
        if stateless {
            cmd.arg("--stateless");
        }
        let mut process = ChildGuard::spawn("policy server", &mut cmd, dir.path());
        wait_listening(&mut process, port, &format!("{cmd:?}"));
        PolicyServer {
            process,
            port,
            tls: tls.is_some(),
            exec_log,
            dir,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/mcp", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every tool the server ran so far, in order: `{"tool", "args"}`.
    pub fn executions(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.exec_log).unwrap_or_default();
        parse_json_lines(&text, &self.exec_log.display().to_string())
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Which SDK runs the scripted client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    Python,
    Node,
}

/// A scripted client (see `policy_client.py`), started now.
pub struct PolicyClient {
    process: ChildGuard,
    cmd: String,
    _dir: TempDir,
}

impl PolicyClient {
    /// Starts the `sdk` client on `script` (a JSON list of sessions) against `url`, trusting
    /// `cafile` for HTTPS.
    pub fn spawn(sdk: Sdk, url: &str, script: &Value, cafile: Option<&PathBuf>) -> PolicyClient {
        let env = test_env();
        let dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-policyclient-")
            .tempdir()
            .expect("cannot create a temporary directory for the client");
        let mut cmd = match sdk {
            Sdk::Python => {
                let mut c = Command::new(&env.python);
                c.arg(env.peers_dir.join("python/policy_client.py"))
                    .arg(url)
                    .arg("--script")
                    .arg(script.to_string());
                if let Some(ca) = cafile {
                    c.arg("--cafile").arg(ca);
                }
                c
            }
            Sdk::Node => {
                let mut c = Command::new("node");
                c.arg(env.peers_dir.join("node/policy_client.mjs"))
                    .arg(url)
                    .arg(script.to_string())
                    .env("NODE_PATH", &env.node_modules);
                if let Some(ca) = cafile {
                    c.env("NODE_EXTRA_CA_CERTS", ca);
                }
                c
            }
        };
        let shown = format!("{cmd:?}");
        let process = ChildGuard::spawn("policy client", &mut cmd, dir.path());
        PolicyClient {
            process,
            cmd: shown,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits for the script to end; returns `{"pid", "sessions": [[{op, tool, outcome, …}]]}`.
    pub fn finish(mut self) -> Value {
        let pid = self.process.pid();
        finish_client(&mut self.process, &self.cmd, pid)
    }
}

/// Runs a scripted client to completion.
pub fn run_policy_client(sdk: Sdk, url: &str, script: &Value, cafile: Option<&PathBuf>) -> Value {
    PolicyClient::spawn(sdk, url, script, cafile).finish()
}

/// The outcomes of every operation, session by session: `[["ok", "connection_error"], …]`.
pub fn outcomes(summary: &Value) -> Vec<Vec<String>> {
    summary["sessions"]
        .as_array()
        .map(|sessions| {
            sessions
                .iter()
                .map(|ops| {
                    ops.as_array()
                        .map(|ops| {
                            ops.iter()
                                .map(|op| op["outcome"].as_str().unwrap_or("?").to_string())
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}
