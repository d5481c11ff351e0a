//! `cargo xtask test [--unit | --e2e]`: format and lint checks, setup, build, unit tests, a
//! fuzz smoke, then the privileged end-to-end tests against real MCP SDK peers and a bench
//! smoke (`cargo xtask bench --quick`).

use std::process::Command;

use anyhow::{anyhow, bail, Result};

use crate::build::{self, with_ebpf_object};
use crate::setup::{self, Scope};
use crate::util::{self, run, target_dir, workspace_root};

/// The crate with the privileged end-to-end tests.
const E2E_PACKAGE: &str = "mcpwarden-tests";

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SMOKE_SECONDS: u64 = 5;

pub struct Selection {
    pub unit: bool,
    pub e2e: bool,
}

pub fn test(selection: Selection) -> Result<()> {
    if selection.e2e && !util::is_root() {
        bail!(
            "the end-to-end tests load eBPF programs and need root: run `sudo -E cargo xtask \
             test` (or as root), or `cargo xtask test --unit` for the unit tests alone"
        );
    }

    check(
        "format",
        "run `cargo fmt --all` to fix it",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;

    // The agent's build script tolerates a missing eBPF object, so clippy needs no setup.
    let object = build::ebpf_object();
    check(
        "clippy",
        "fix the warnings above",
        with_ebpf_object(
            cargo().args([
                "clippy",
                "--workspace",
                "--exclude",
                build::EBPF_PACKAGE,
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            &object,
        ),
    )?;

    // Step failures name themselves.
    setup::setup(if selection.e2e {
        Scope::All
    } else {
        Scope::Toolchain
    })?;

    build::build()?;

    if selection.unit {
        check(
            "unit tests",
            "see the failures above",
            with_ebpf_object(
                cargo().args([
                    "test",
                    "--workspace",
                    "--exclude",
                    build::EBPF_PACKAGE,
                    "--exclude",
                    E2E_PACKAGE,
                ]),
                &object,
            ),
        )?;
    }

    if selection.unit {
        // A short fuzz run of every target from the recorded seeds: a crash fails the test
        // and leaves its input in fuzz/artifacts/ (`cargo xtask fuzz` runs them longer).
        println!("test: fuzz smoke ({FUZZ_SMOKE_SECONDS} s per target) …");
        crate::fuzz::fuzz(FUZZ_SMOKE_SECONDS, Vec::new())
            .map_err(|e| anyhow!("test: fuzz smoke failed: {e:#}"))?;
    }

    if selection.e2e {
        let python = setup::venv_python();
        let node_modules = setup::node_modules();
        let mut cmd = cargo();
        // Every binary runs even after a failure, so one red test does not hide the next.
        cmd.args([
            "test",
            "--no-fail-fast",
            "--package",
            E2E_PACKAGE,
            "--",
            "--test-threads=1",
        ])
        .env("MCPWARDEN_BIN", build::agent_binary())
        .env("MCPWARDEN_PYTHON", &python)
        .env("MCPWARDEN_NODE_MODULES", &node_modules);
        check(
            "end-to-end tests",
            "see the failures above",
            with_ebpf_object(&mut cmd, &object),
        )?;
    }
    if selection.e2e {
        // The bench's short mode: proves every part of `cargo xtask bench` runs here (its
        // figures are too short to compare, and it never fails on timing).
        println!("test: bench smoke (`cargo xtask bench --quick`) …");
        let out = tempfile::Builder::new()
            .prefix("mcpwarden-bench-smoke-")
            .tempdir()?;
        crate::bench::bench(crate::bench::BenchOptions {
            quick: true,
            seconds: None,
            parts: Vec::new(),
            output: Some(out.path().join("results.json")),
            budget_minutes: None,
        })
        .map_err(|e| anyhow!("test: bench smoke failed: {e:#}"))?;
    }
    println!("test: all passed");
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    crate::util::scrub_run_env(&mut cmd);
    // The same target directory as `build`, whatever the caller's environment says.
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Runs one check; a failure names the check, the command with its exit status, and what
/// to do about it.
fn check(name: &str, hint: &str, cmd: &mut Command) -> Result<()> {
    println!("test: {name} …");
    run(cmd).map_err(|e| anyhow!("test: {name} failed: {e:#} ({hint})"))
}
