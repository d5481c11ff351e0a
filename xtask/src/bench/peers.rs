//! The MCP servers every latency mode talks to (the official Python SDK server,
//! `tests/peers/python/policy_server.py`, over TLS and plaintext) and their throwaway
//! certificate, and the Python clients (`tests/bench/raw_client.py`, `policy_client.py`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::procs::{free_port, wait_listening, Guard};
use crate::util::workspace_root;

/// A self-signed certificate for 127.0.0.1 (openssl CLI), in `dir`.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    pub fn generate(dir: &Path) -> Result<Cert> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("bench: running openssl (apt-get install openssl)")?;
        if !out.status.success() {
            bail!(
                "bench: openssl could not make a certificate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Cert { cert, key })
    }
}

/// The venv's Python (`cargo xtask setup` creates it).
pub fn python() -> Result<PathBuf> {
    let p = workspace_root().join(".venv/bin/python");
    if !p.is_file() {
        bail!("bench: {} is missing: run `cargo xtask setup`", p.display());
    }
    Ok(p)
}

/// A script under the workspace.
pub fn script(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

/// The SDK server on a free port, TLS when `cert` is given.
pub struct SdkServer {
    _guard: Guard,
    pub port: u16,
}

impl SdkServer {
    pub fn start(cert: Option<&Cert>) -> Result<SdkServer> {
        let port = free_port()?;
        let mut cmd = Command::new(python()?);
        cmd.arg(script("tests/peers/python/policy_server.py"))
            .arg(port.to_string());
        if let Some(c) = cert {
            cmd.arg("--tls").arg(&c.cert).arg(&c.key);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("bench: starting the SDK server")?;
        let guard = Guard::term(child);
        wait_listening("the SDK server listening", port)?;
        Ok(SdkServer {
            _guard: guard,
            port,
        })
    }
}

/// One raw keep-alive client run: per-call microseconds.
pub fn raw_client(url: &str, calls: usize, cafile: Option<&Path>) -> Result<Vec<f64>> {
    let mut cmd = Command::new(python()?);
    cmd.arg(script("tests/bench/raw_client.py"))
        .arg(url)
        .arg(calls.to_string());
    if let Some(ca) = cafile {
        cmd.arg("--cafile").arg(ca);
    }
    let out = cmd.output().context("bench: running the raw client")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench: the raw client's summary ({url}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let us: Vec<f64> = v["us"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    if v["ok"].as_u64() != Some(calls as u64) || us.len() != calls {
        bail!(
            "bench: raw client ({url}): {} of {calls} calls answered",
            v["ok"]
        );
    }
    Ok(us)
}

/// One official-SDK client session (`policy_client.py`): tools/list, then `calls` calls of
/// `add`; per-call microseconds.
pub fn sdk_client(url: &str, calls: usize, cafile: Option<&Path>) -> Result<Vec<f64>> {
    let mut ops = vec![serde_json::json!({"op": "list"})];
    for i in 0..calls {
        ops.push(serde_json::json!({"op": "call", "tool": "add", "args": {"a": i, "b": 1}}));
    }
    let script_arg = serde_json::Value::Array(vec![serde_json::Value::Array(ops)]);
    let mut cmd = Command::new(python()?);
    cmd.arg(script("tests/peers/python/policy_client.py"))
        .arg(url)
        .arg("--script")
        .arg(script_arg.to_string());
    if let Some(ca) = cafile {
        cmd.arg("--cafile").arg(ca);
    }
    let out = cmd.output().context("bench: running the SDK client")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench: the SDK client's summary: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let us: Vec<f64> = v["sessions"][0]
        .as_array()
        .map(|ops| {
            ops.iter()
                .filter(|o| o["op"] == "call" && o["outcome"] == "ok")
                .filter_map(|o| o["ms"].as_f64())
                .map(|ms| ms * 1000.0)
                .collect()
        })
        .unwrap_or_default();
    if us.len() != calls {
        bail!(
            "bench: SDK client ({url}): {} of {calls} calls succeeded: {v}",
            us.len()
        );
    }
    Ok(us)
}
