//! `cargo xtask build-ebpf` and `cargo xtask build`.
//!
//! The eBPF object is built explicitly with nightly (`-Z build-std=core`, target
//! `bpfel-unknown-none`, bpf-linker); the agent's `build.rs` embeds the object named by
//! `MCPWARDEN_EBPF_OBJECT`. This is the one build mechanism; nothing else builds the object.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{self, run, target_dir, workspace_root};

pub const EBPF_PACKAGE: &str = "mcpwarden-ebpf";
pub const EBPF_TARGET: &str = "bpfel-unknown-none";
pub const AGENT_PACKAGE: &str = "mcpwarden";
/// Tells the agent's build script which eBPF object to embed.
pub const EBPF_OBJECT_ENV: &str = "MCPWARDEN_EBPF_OBJECT";

/// Rust flags for the BPF target only (the host build never sees them): full debug info so
/// bpf-linker can emit BTF (`--btf`), which aya uses for BTF-defined maps and relocations;
/// CPU v3 (32-bit sub-registers and jumps, atomics with fetch: kernel 5.12+), which the
/// stream-position reservation needs (an atomic fetch-add, `emit.rs` `reserve`).
const EBPF_RUSTFLAGS: &[&str] = &[
    "-C",
    "debuginfo=2",
    "-C",
    "link-arg=--btf",
    "-C",
    "target-cpu=v3",
];

/// Where `build_ebpf` leaves the object (always release: debug BPF code does not verify).
pub fn ebpf_object() -> PathBuf {
    target_dir()
        .join(EBPF_TARGET)
        .join("release")
        .join(EBPF_PACKAGE)
}

/// Where `build_agent` leaves the agent binary.
pub fn agent_binary() -> PathBuf {
    target_dir().join("release").join(AGENT_PACKAGE)
}

/// `PATH` with `$CARGO_HOME/bin` appended, so a freshly `cargo install`ed bpf-linker is found
/// even when the caller's shell does not list it.
pub fn path_with_cargo_bin() -> OsString {
    let mut paths: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let cargo_bin = crate::setup::cargo_home().join("bin");
    if !paths.contains(&cargo_bin) {
        paths.push(cargo_bin);
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// Builds the eBPF object with nightly and returns its absolute path.
pub fn build_ebpf() -> Result<PathBuf> {
    let mut cmd = Command::new("rustup");
    // Everything the outer stable `cargo run` exported (toolchain, compiler, flags) goes, so
    // the nested cargo really is nightly's and gets only the BPF flags below.
    util::scrub_cargo_env(&mut cmd);
    cmd.args(["run", "nightly", "cargo", "build"])
        .args(["-Z", "build-std=core"])
        .args([
            "--target",
            EBPF_TARGET,
            "--release",
            "--package",
            EBPF_PACKAGE,
        ])
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(workspace_root())
        .env("CARGO_ENCODED_RUSTFLAGS", EBPF_RUSTFLAGS.join("\x1f"))
        .env("PATH", path_with_cargo_bin());
    run(&mut cmd).context(
        "building the eBPF object failed (run `cargo xtask setup` if nightly, rust-src or \
         bpf-linker are missing)",
    )?;
    let object = ebpf_object();
    anyhow::ensure!(
        object.is_file(),
        "the eBPF build succeeded but {} does not exist",
        object.display()
    );
    println!("build-ebpf: {}", object.display());
    Ok(object)
}

/// Sets the variable that makes the agent's build script embed `object`. Every cargo command
/// that compiles the agent gets it, so they all agree and none forces a rebuild of another's.
pub fn with_ebpf_object<'a>(cmd: &'a mut Command, object: &std::path::Path) -> &'a mut Command {
    cmd.env(EBPF_OBJECT_ENV, object)
}

/// Builds the eBPF object, then the release agent that embeds it; returns the agent's path.
pub fn build() -> Result<PathBuf> {
    let object = build_ebpf()?;
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--package", AGENT_PACKAGE])
        .arg("--target-dir")
        .arg(target_dir())
        .current_dir(workspace_root());
    with_ebpf_object(&mut cmd, &object);
    run(&mut cmd).context("building the agent failed")?;
    let bin = agent_binary();
    anyhow::ensure!(
        bin.is_file(),
        "the agent build succeeded but {} does not exist",
        bin.display()
    );
    println!("build: {}", bin.display());
    Ok(bin)
}
