//! Small helpers shared by the subcommands: where the workspace is, running commands with
//! errors that quote the command line, root checks and file hashes.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The `target` directory every build of ours uses (passed explicitly, so a
/// `CARGO_TARGET_DIR` in the caller's environment cannot move the artefacts).
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Renders a command the way a person would type it (bash quoting), with the environment
/// variables we set (except `PATH`, which is only ever extended).
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if key == "PATH" {
            continue;
        }
        if let Some(value) = value {
            let _ = write!(out, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if s.is_empty() {
        return "''".to_string();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c))
    {
        s.into_owned()
    } else if s.chars().any(|c| c.is_ascii_control()) {
        // bash's $'…' form, e.g. the \x1f separators of CARGO_ENCODED_RUSTFLAGS.
        let escaped: String = s
            .chars()
            .map(|c| match c {
                '\\' => "\\\\".to_string(),
                '\'' => "\\'".to_string(),
                c if c.is_ascii_control() => format!("\\x{:02x}", c as u32),
                c => c.to_string(),
            })
            .collect();
        format!("$'{escaped}'")
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio; an error names the command and its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    eprintln!("+ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` and captures its output; `Err` only when it cannot be started at all.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    let shown = display(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))
}

/// Runs `cmd`, captures its stdout, and fails (quoting stderr) unless it exits with 0.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = capture(cmd)?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` can be found on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}

/// Removes from `cmd` every variable of this process's environment that `drop` names.
fn remove_env_where(cmd: &mut Command, drop: impl Fn(&str) -> bool) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if drop(&key) {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// Removes what `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …)
/// from a host cargo command, keeping the caller's configuration (`CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_BUILD_*`, …). Some build scripts watch these variables
/// (ring's `rerun-if-env-changed=CARGO_MANIFEST_DIR`): left in, every build through xtask
/// would differ from the same build typed in a shell, and each would recompile a chain of
/// crates (ring, rustls, tonic, the collector, the agent: about 2 minutes here) for the other.
pub fn scrub_run_env(cmd: &mut Command) -> &mut Command {
    remove_env_where(cmd, |key| {
        matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
        ) || key.starts_with("CARGO_PKG_")
    })
}

/// Environment variables the outer `cargo run` (and rustup's proxy) set for xtask that must
/// not leak into a nested cargo of another toolchain: with them the nested build would use
/// the outer compiler, flags or toolchain.
pub fn scrub_cargo_env(cmd: &mut Command) -> &mut Command {
    remove_env_where(cmd, |key| {
        matches!(
            key,
            "CARGO"
                | "RUSTC"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTDOC"
                | "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "RUSTUP_TOOLCHAIN"
                | "RUSTUP_TOOLCHAIN_SOURCE"
        ) || (key.starts_with("CARGO_") && key != "CARGO_HOME")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_quoting() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--features", "a b"]).env("X", "1");
        assert_eq!(display(&cmd), "X=1 cargo build --features 'a b'");
    }

    #[test]
    fn display_spells_control_characters_for_bash() {
        let mut cmd = Command::new("cargo");
        cmd.env("CARGO_ENCODED_RUSTFLAGS", "-C\x1fdebuginfo=2")
            .env("PATH", "/bin");
        assert_eq!(
            display(&cmd),
            "CARGO_ENCODED_RUSTFLAGS=$'-C\\x1fdebuginfo=2' cargo"
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
