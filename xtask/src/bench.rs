//! `cargo xtask bench [--seconds S]`: the decoder's throughput on the recorded fixtures
//! (`agent/benches/decode.rs`, release build, one thread), then the collector's ingest rate
//! over gRPC into SQLite and PostgreSQL (`collector/benches/ingest.rs`), the policy's decision
//! time (`agent/benches/policy.rs`), and what the policy and the hold add to a real SDK call
//! (`bench_hold.rs`, root). Prints figures; never fails on time.

use std::process::Command;

use anyhow::{Context, Result};

use crate::build::{ebpf_object, with_ebpf_object, AGENT_PACKAGE};
use crate::util::{run, target_dir, workspace_root};

pub fn bench(seconds: f64) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.args(["bench", "--package", AGENT_PACKAGE, "--bench", "decode"])
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(workspace_root())
        .args(["--", "--seconds", &seconds.to_string()]);
    // The same build-script input as every other build of the agent (no needless rebuilds).
    with_ebpf_object(&mut cmd, &ebpf_object());
    run(&mut cmd).context("bench: the decoder benchmark failed to build or run")?;
    let mut cmd = Command::new("cargo");
    cmd.args([
        "bench",
        "--package",
        "mcpwarden-collector",
        "--bench",
        "ingest",
    ])
    .arg("--target-dir")
    .arg(target_dir())
    .current_dir(workspace_root())
    .args(["--", "--seconds", &seconds.to_string()]);
    run(&mut cmd).context("bench: the collector ingest benchmark failed to build or run")?;
    let mut cmd = Command::new("cargo");
    cmd.args(["bench", "--package", AGENT_PACKAGE, "--bench", "policy"])
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(workspace_root())
        .args(["--", "--seconds", &seconds.to_string()]);
    with_ebpf_object(&mut cmd, &ebpf_object());
    run(&mut cmd).context("bench: the policy decision benchmark failed to build or run")?;
    // Rounds and calls grow with the time given (a short CI run proves it works).
    let rounds = if seconds < 1.0 { 1 } else { 3 };
    let calls = if seconds < 1.0 { 20 } else { 200 };
    crate::bench_hold::hold_latency(rounds, calls)
}
