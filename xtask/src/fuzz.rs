//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs every cargo-fuzz target in `fuzz/` (or
//! the ones named) for N seconds each, from seeds cut out of the recorded fixtures.
//!
//! Installs what is missing first, idempotently, in the `setup:` style: the nightly
//! toolchain (libFuzzer needs `-Z sanitizer`) and cargo-fuzz. Every target runs even when
//! an earlier one fails; the command fails at the end naming each failed target and where
//! libFuzzer left the crashing input (`fuzz/artifacts/<target>/`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, run, stdout_of, workspace_root};

/// The version `cargo install` fetches when cargo-fuzz is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// `rustup run nightly cargo …` in `fuzz/`, without the outer cargo's environment.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    util::scrub_cargo_env(&mut cmd);
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(fuzz_dir())
        .env("PATH", crate::build::path_with_cargo_bin());
    cmd
}

fn ensure_nightly() -> Result<()> {
    let mut list = Command::new("rustup");
    list.env_remove("RUSTUP_TOOLCHAIN")
        .args(["toolchain", "list"]);
    let have = stdout_of(&mut list)?
        .lines()
        .any(|l| l.trim_start().starts_with("nightly"));
    if have {
        println!("setup: nightly toolchain: already done");
        return Ok(());
    }
    println!("setup: nightly toolchain: installing … (`rustup toolchain list` has no nightly)");
    run(Command::new("rustup").env_remove("RUSTUP_TOOLCHAIN").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))
    .context("setup: nightly toolchain: failed")
}

fn cargo_fuzz_works() -> bool {
    util::capture(nightly_cargo().args(["fuzz", "--version"])).is_ok_and(|out| out.status.success())
}

fn ensure_cargo_fuzz() -> Result<()> {
    if cargo_fuzz_works() {
        println!("setup: cargo-fuzz: already done");
        return Ok(());
    }
    println!("setup: cargo-fuzz: installing … (`cargo fuzz --version` does not run)");
    let mut cmd = Command::new("cargo");
    util::scrub_cargo_env(&mut cmd);
    run(cmd.args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
    .context("setup: cargo-fuzz: failed")?;
    if !cargo_fuzz_works() {
        bail!("setup: cargo-fuzz: still missing after installing: `cargo fuzz --version` does not run");
    }
    println!("setup: cargo-fuzz: installed");
    Ok(())
}

/// The targets `cargo fuzz list` knows.
fn targets() -> Result<Vec<String>> {
    let out = stdout_of(nightly_cargo().args(["fuzz", "list"]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn fuzz(seconds: u64, only: Vec<String>) -> Result<()> {
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let chosen = if only.is_empty() {
        all.clone()
    } else {
        for t in &only {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; the targets are: {}", all.join(", "));
            }
        }
        only
    };

    println!("fuzz: checking the harness (cargo test in fuzz/) …");
    run(nightly_cargo().args(["test", "--quiet"]))
        .context("fuzz: the harness's own tests failed")?;

    println!("fuzz: writing seeds from tests/fixtures into fuzz/corpus …");
    run(nightly_cargo()
        .args(["run", "--quiet", "--example", "seeds", "--"])
        .arg(workspace_root().join("tests/fixtures"))
        .arg(fuzz_dir().join("corpus")))
    .context("fuzz: writing the seed corpus failed")?;

    println!("fuzz: building {} targets …", chosen.len());
    run(nightly_cargo().args(["fuzz", "build"])).context("fuzz: building the targets failed")?;

    let mut failed = Vec::new();
    for target in &chosen {
        println!("fuzz: {target}: {seconds} s …");
        let result = run(nightly_cargo().args(["fuzz", "run", target, "--"]).args([
            format!("-max_total_time={seconds}"),
            "-timeout=10".to_string(),
            "-rss_limit_mb=4096".to_string(),
            // Seeds (whole recorded conversations) are longer: libFuzzer uses their first
            // 16 KiB, which keeps runs fast enough to explore.
            "-max_len=16384".to_string(),
            "-print_final_stats=1".to_string(),
        ]));
        match result {
            Ok(()) => println!("fuzz: {target}: no failure in {seconds} s"),
            Err(e) => {
                eprintln!("fuzz: {target}: FAILED: {e:#}");
                failed.push(target.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz: {} of {} targets failed: {} (crashing inputs in fuzz/artifacts/<target>/; \
             reproduce with `cd fuzz && cargo +nightly fuzz run <target> <input>`)",
            failed.len(),
            chosen.len(),
            failed.join(", ")
        );
    }
    println!(
        "fuzz: all {} targets ran {seconds} s each without failure",
        chosen.len()
    );
    Ok(())
}
