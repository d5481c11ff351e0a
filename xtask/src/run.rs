//! `cargo xtask run [-- ARGS]`: set up the toolchain, build, and run `mcpwarden run ARGS`
//! as root.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{bail, Result};

use crate::setup::{self, Scope};
use crate::util;

pub fn run(args: Vec<OsString>) -> Result<()> {
    // The test peers are not needed to run the agent.
    setup::setup(Scope::Toolchain)?;
    let bin = crate::build::build()?;

    let mut cmd = if util::is_root() {
        Command::new(&bin)
    } else if util::on_path("sudo") {
        eprintln!("run: loading eBPF programs needs root; re-running the agent with sudo");
        let mut cmd = Command::new("sudo");
        cmd.arg(&bin);
        cmd
    } else {
        bail!(
            "loading eBPF programs needs root and `sudo` is not available: run `{} run` as root",
            bin.display()
        );
    };
    cmd.arg("run").args(&args);
    eprintln!("+ {}", util::display(&cmd));
    // exec: the agent replaces this process, so Ctrl-C and exit codes reach it directly.
    let err = cmd.exec();
    bail!("could not start `{}`: {err}", util::display(&cmd))
}
