//! `cargo xtask build-ebpf` and `cargo xtask build`.
//!
//! The eBPF object is built explicitly with nightly (`-Z build-std=core`, target
//! `bpfel-unknown-none`, bpf-linker); the agent's `build.rs` embeds the object named by
//! `MCPWARDEN_EBPF_OBJECT`. This is the one build mechanism; nothing else builds the object.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
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

/// Where `build_ebpf` leaves the object the agent embeds: release (debug BPF code does not
/// verify), without DWARF ([`strip_debug`]).
pub fn ebpf_object() -> PathBuf {
    ebpf_linked().with_extension("o")
}

/// Where cargo leaves the linked eBPF object, DWARF included.
fn ebpf_linked() -> PathBuf {
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
    let linked = ebpf_linked();
    anyhow::ensure!(
        linked.is_file(),
        "the eBPF build succeeded but {} does not exist",
        linked.display()
    );
    let object = ebpf_object();
    strip_debug(&linked, &object)?;
    println!("build-ebpf: {}", object.display());
    Ok(object)
}

/// Writes `object` from `linked` without its DWARF sections (2.1 of 2.8 MB): bpf-linker
/// needs the debug info to write BTF, aya needs only the BTF (`.BTF`, `.BTF.ext`, kept), and
/// the agent embeds the object, so every copy of the binary and its resident pages carried
/// them. Rewritten only when cargo linked a newer object, so the agent's build script (which
/// watches `object`) sees a change only when there is one. Without llvm-objcopy the object
/// is copied whole.
fn strip_debug(linked: &Path, object: &Path) -> Result<()> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(made), Some(from)) = (mtime(object), mtime(linked)) {
        if made >= from {
            return Ok(());
        }
    }
    let tmp = object.with_extension("o.tmp");
    let objcopy = Path::new(crate::setup::LLVM_PREFIX).join("bin/llvm-objcopy");
    if objcopy.is_file() {
        run(Command::new(&objcopy)
            .arg("--strip-debug")
            .arg(linked)
            .arg(&tmp))
        .context("stripping the eBPF object's debug sections failed")?;
    } else {
        eprintln!(
            "build-ebpf: {} not found; the object keeps its debug sections (run `cargo xtask setup`)",
            objcopy.display()
        );
        std::fs::copy(linked, &tmp)
            .with_context(|| format!("could not copy {}", linked.display()))?;
    }
    std::fs::rename(&tmp, object).with_context(|| format!("could not write {}", object.display()))
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
    util::scrub_run_env(&mut cmd);
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
