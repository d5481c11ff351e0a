//! Where the agent binary and the test peers are, checked once per test.

use std::path::{Path, PathBuf};

/// Paths the end-to-end tests run things from.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// The agent binary (`MCPWARDEN_BIN`, default `target/release/mcpwarden`).
    pub agent_bin: PathBuf,
    /// Python with the pinned `mcp` SDK (`MCPWARDEN_PYTHON`, default `.venv/bin/python`).
    pub python: PathBuf,
    /// The pinned Node peers (`MCPWARDEN_NODE_MODULES`, default `tests/peers/node/node_modules`).
    pub node_modules: PathBuf,
    /// `tests/peers`: the peer scripts.
    pub peers_dir: PathBuf,
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// Checks that the test can run at all: root, the agent binary, the Python peers.
/// Panics with what is missing and how to get it.
pub fn test_env() -> TestEnv {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "end-to-end tests need root (the agent loads eBPF programs), but this test runs with \
         euid {euid}: run `sudo -E cargo xtask test`"
    );
    let root = workspace_root();
    let env = TestEnv {
        agent_bin: path_from_env("MCPWARDEN_BIN", root.join("target/release/mcpwarden")),
        python: path_from_env("MCPWARDEN_PYTHON", root.join(".venv/bin/python")),
        node_modules: path_from_env(
            "MCPWARDEN_NODE_MODULES",
            root.join("tests/peers/node/node_modules"),
        ),
        peers_dir: root.join("tests/peers"),
    };
    assert!(
        env.agent_bin.is_file(),
        "agent binary {} does not exist (MCPWARDEN_BIN): build it with `cargo xtask build`, \
         or run everything with `cargo xtask test`",
        env.agent_bin.display()
    );
    assert!(
        env.python.is_file(),
        "Python for the SDK peers {} does not exist (MCPWARDEN_PYTHON): install the peers with \
         `cargo xtask setup`",
        env.python.display()
    );
    env
}

fn path_from_env(var: &str, default: PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => default,
    }
}
