//! `cargo xtask setup`: installs what a fresh machine lacks, idempotently.
//!
//! Every step first checks, then prints either `setup: <step>: already done` or
//! `setup: <step>: installing …`. A failure names the step and the command that failed,
//! with its exit status.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::util::{self, run, stdout_of, workspace_root};

/// LLVM major version bpf-linker is built against (see PLATFORM.md: bpf-linker 0.13's
/// default feature wants LLVM 23, which Debian does not ship; `llvm-22` is the one that links).
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_PACKAGE: &str = "llvm-22-dev";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Which steps to run: what building and running the agent needs, or that plus test peers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// nightly + rust-src, LLVM 22, bpf-linker.
    Toolchain,
    /// Toolchain, plus what `cargo xtask bench` runs: PostgreSQL, the Python peers, nginx.
    Bench,
    /// Toolchain, plus the Python and Node test peers and the tracefs note.
    All,
}

enum Check {
    Done,
    /// Why the step has to install something (shown after "installing …").
    Missing(String),
}

struct Step {
    name: &'static str,
    /// Said after "already done" when the step has nothing to install by design.
    note: &'static str,
    check: fn() -> Result<Check>,
    install: fn() -> Result<()>,
}

pub fn setup(scope: Scope) -> Result<()> {
    let mut steps = vec![
        Step {
            name: "nightly toolchain",
            note: "",
            check: check_nightly,
            install: install_nightly,
        },
        Step {
            name: "rust-src for nightly",
            note: "",
            check: check_rust_src,
            install: install_rust_src,
        },
        Step {
            name: "LLVM 22",
            note: "",
            check: check_llvm,
            install: install_llvm,
        },
        Step {
            name: "bpf-linker 0.13 (LLVM 22)",
            note: "",
            check: check_bpf_linker,
            install: install_bpf_linker,
        },
    ];
    if scope != Scope::Toolchain {
        steps.extend([
            Step {
                name: "PostgreSQL (collector storage tests)",
                note: "",
                check: check_postgres,
                install: install_postgres,
            },
            Step {
                name: "python test peers (.venv)",
                note: "",
                check: check_python_peers,
                install: install_python_peers,
            },
        ]);
    }
    if scope == Scope::All {
        steps.extend([
            Step {
                name: "node test peers (tests/peers/node)",
                note: "",
                check: check_node_peers,
                install: install_node_peers,
            },
            Step {
                name: "tracefs",
                note: " (nothing to install: the agent mounts /sys/kernel/tracing itself when it is missing)",
                check: || Ok(Check::Done),
                install: || Ok(()),
            },
        ]);
        steps.push(docker_step());
        steps.push(chromium_step());
    }
    if scope != Scope::Toolchain {
        steps.push(nginx_step());
    }
    for step in steps {
        run_step(&step).map_err(|e| anyhow!("setup: {}: failed: {e:#}", step.name))?;
    }
    Ok(())
}

fn run_step(step: &Step) -> Result<()> {
    match (step.check)()? {
        Check::Done => {
            println!("setup: {}: already done{}", step.name, step.note);
            Ok(())
        }
        Check::Missing(why) => {
            println!("setup: {}: installing … ({why})", step.name);
            (step.install)()?;
            match (step.check)()? {
                Check::Done => {
                    println!("setup: {}: installed", step.name);
                    Ok(())
                }
                Check::Missing(why) => bail!("still missing after installing: {why}"),
            }
        }
    }
}

// ---- 1. nightly toolchain and rust-src -------------------------------------------------------

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    // rustup's proxy exports the outer toolchain; it must not bias these queries.
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn check_nightly() -> Result<Check> {
    let list = stdout_of(rustup().args(["toolchain", "list"]))?;
    if list.lines().any(|l| l.trim_start().starts_with("nightly")) {
        Ok(Check::Done)
    } else {
        Ok(Check::Missing(
            "`rustup toolchain list` has no nightly".into(),
        ))
    }
}

fn install_nightly() -> Result<()> {
    run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

fn check_rust_src() -> Result<Check> {
    let installed =
        stdout_of(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        Ok(Check::Done)
    } else {
        Ok(Check::Missing("nightly has no rust-src component".into()))
    }
}

fn install_rust_src() -> Result<()> {
    run(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

// ---- 2. LLVM 22 -------------------------------------------------------------------------------

fn libllvm() -> Option<PathBuf> {
    let lib = Path::new(LLVM_PREFIX).join("lib");
    let preferred = lib.join("libLLVM.so.22.1");
    if preferred.is_file() {
        return Some(preferred);
    }
    fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
}

fn check_llvm() -> Result<Check> {
    match libllvm() {
        Some(_) => Ok(Check::Done),
        None => Ok(Check::Missing(format!(
            "no libLLVM*.so in {LLVM_PREFIX}/lib"
        ))),
    }
}

fn install_llvm() -> Result<()> {
    if !util::is_root() {
        bail!(
            "installing {LLVM_PACKAGE} with apt-get needs root: run `sudo apt-get install -y \
             {LLVM_PACKAGE}` or run this command as root"
        );
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", LLVM_PACKAGE])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

// ---- PostgreSQL (the collector's storage suite, e2e replicas, bench) ----------------------------

fn check_postgres() -> Result<Check> {
    let found = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().join("bin/initdb").exists())
        })
        .unwrap_or(false);
    Ok(if found {
        Check::Done
    } else {
        Check::Missing("no /usr/lib/postgresql/*/bin/initdb".into())
    })
}

fn install_postgres() -> Result<()> {
    if !util::is_root() {
        bail!(
            "installing postgresql with apt-get needs root: run `sudo apt-get install -y \
             postgresql` or run this command as root"
        );
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

// ---- 3. bpf-linker ------------------------------------------------------------------------------

fn bpf_linker() -> PathBuf {
    if util::on_path("bpf-linker") {
        return PathBuf::from("bpf-linker");
    }
    cargo_home().join("bin/bpf-linker")
}

pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn check_bpf_linker() -> Result<Check> {
    let out = match util::capture(Command::new(bpf_linker()).arg("--version")) {
        Ok(out) => out,
        Err(_) => return Ok(Check::Missing("bpf-linker is not installed".into())),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Typically: libLLVM.so.22.1 went away, so the dynamic loader refuses to start it.
        return Ok(Check::Missing(format!(
            "`bpf-linker --version` failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let wanted = format!("bpf-linker {}", &BPF_LINKER_VERSION[..4]);
    if stdout.trim().starts_with(&wanted) {
        Ok(Check::Done)
    } else {
        Ok(Check::Missing(format!(
            "`bpf-linker --version` says {:?}, want {wanted}.x",
            stdout.trim()
        )))
    }
}

fn install_bpf_linker() -> Result<()> {
    let install = |locked: bool| {
        let mut cmd = Command::new("cargo");
        util::scrub_cargo_env(&mut cmd);
        cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION]);
        if locked {
            cmd.arg("--locked");
        }
        cmd.args(["--no-default-features", "--features", "llvm-22", "--force"])
            .env("LLVM_PREFIX", LLVM_PREFIX);
        run(&mut cmd)
    };
    install(true).or_else(|locked_err| {
        eprintln!("setup: bpf-linker: `--locked` install failed ({locked_err:#}); retrying without `--locked`");
        install(false)
    })
}

// ---- 4. Python peers ----------------------------------------------------------------------------

fn venv_dir() -> PathBuf {
    workspace_root().join(".venv")
}

fn requirements() -> PathBuf {
    workspace_root().join("tests/peers/python/requirements.txt")
}

fn python_stamp() -> PathBuf {
    venv_dir().join(".mcpwarden-requirements.sha256")
}

/// The interpreter the end-to-end tests run the Python peers with.
pub fn venv_python() -> PathBuf {
    venv_dir().join("bin/python")
}

fn check_python_peers() -> Result<Check> {
    if !venv_python().is_file() {
        return Ok(Check::Missing(format!(
            "{} does not exist",
            venv_dir().display()
        )));
    }
    let want = util::sha256_file(&requirements())?;
    match fs::read_to_string(python_stamp()) {
        Ok(have) if have.trim() == want => {}
        _ => {
            return Ok(Check::Missing(
                "requirements.txt changed since the last install".into(),
            ))
        }
    }
    // A stamp is not proof: the venv's interpreter may have been removed under it.
    let imports = util::capture(Command::new(venv_python()).args([
        "-c",
        "import mcp.server.mcpserver, mcp.client.streamable_http, uvicorn, httpx2",
    ]));
    match imports {
        Ok(out) if out.status.success() => Ok(Check::Done),
        _ => Ok(Check::Missing(
            "the venv cannot import mcp, uvicorn, httpx2".into(),
        )),
    }
}

fn install_python_peers() -> Result<()> {
    if !venv_python().is_file() {
        create_venv()?;
    }
    // A failed install must not leave an old stamp claiming success.
    let _ = fs::remove_file(python_stamp());
    run(Command::new(venv_python())
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(requirements()))?;
    let hash = util::sha256_file(&requirements())?;
    fs::write(python_stamp(), format!("{hash}\n"))
        .with_context(|| format!("cannot write {}", python_stamp().display()))
}

fn create_venv() -> Result<()> {
    if !util::on_path("python3") {
        bail!("python3 is not on PATH: install Python 3.10+ (Debian: `apt-get install -y python3 python3-venv`)");
    }
    let venv = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv", "--clear"]).arg(venv_dir());
        cmd
    };
    match run(&mut venv()) {
        Ok(()) => Ok(()),
        // Debian's python3 lacks ensurepip until python3-venv is installed.
        Err(e) if util::is_root() && util::on_path("apt-get") => {
            eprintln!("setup: python venv: {e:#}; installing python3-venv and retrying");
            run(Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "python3-venv"])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            run(&mut venv())
        }
        Err(e) => Err(e.context(
            "creating the venv failed; on Debian install python3-venv (`apt-get install -y python3-venv`)",
        )),
    }
}

// ---- 5. Node peers ------------------------------------------------------------------------------

fn node_dir() -> PathBuf {
    workspace_root().join("tests/peers/node")
}

/// The `node_modules` directory the end-to-end tests load the Node peers from.
pub fn node_modules() -> PathBuf {
    node_dir().join("node_modules")
}

fn node_stamp() -> PathBuf {
    node_modules().join(".mcpwarden-lock.sha256")
}

fn check_node_peers() -> Result<Check> {
    let want = util::sha256_file(&node_dir().join("package-lock.json"))?;
    match fs::read_to_string(node_stamp()) {
        Ok(have) if have.trim() == want => Ok(Check::Done),
        Ok(_) => Ok(Check::Missing(
            "package-lock.json changed since the last install".into(),
        )),
        Err(_) => Ok(Check::Missing(format!(
            "{} is not installed",
            node_modules().display()
        ))),
    }
}

fn install_node_peers() -> Result<()> {
    for tool in ["node", "npm"] {
        if !util::on_path(tool) {
            bail!(
                "`{tool}` is not on PATH: the Node test peers need Node.js 20 or newer with npm \
                 (install them, then run `cargo xtask setup` again)"
            );
        }
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(node_dir()))?;
    let hash = util::sha256_file(&node_dir().join("package-lock.json"))?;
    fs::write(node_stamp(), format!("{hash}\n"))
        .with_context(|| format!("cannot write {}", node_stamp().display()))
}

// ---- 6. Docker (the container image and its end-to-end test) ----------------------------------

/// Debian's `docker.io` (engine 20.10 and its client): `cargo xtask image` builds the agent's
/// image into it and the deploy end-to-end test runs that image. Nothing can be pulled here,
/// so the image is made `FROM scratch` (see image.rs).
fn docker_step() -> Step {
    fn check() -> Result<Check> {
        let missing: Vec<&str> = ["/usr/sbin/dockerd", "/usr/bin/docker"]
            .into_iter()
            .filter(|p| !Path::new(p).is_file())
            .collect();
        if missing.is_empty() {
            Ok(Check::Done)
        } else {
            Ok(Check::Missing(format!(
                "{} not installed",
                missing.join(" and ")
            )))
        }
    }
    fn install() -> Result<()> {
        if !util::is_root() {
            bail!(
                "installing docker.io with apt-get needs root: run `sudo apt-get install -y \
                 docker.io` or run this command as root"
            );
        }
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "docker.io"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }
    Step {
        name: "docker.io (container image)",
        note: "",
        check,
        install,
    }
}

/// Runs the docker.io step alone (for `cargo xtask image`).
pub fn ensure_docker() -> Result<()> {
    let step = docker_step();
    run_step(&step).map_err(|e| anyhow!("setup: {}: failed: {e:#}", step.name))
}
// ---- headless browser for the web page tests --------------------------------------------------

/// Debian `chromium` and `chromium-driver` (tests/tests/pages.rs drives headless Chromium).
fn chromium_step() -> Step {
    const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];
    Step {
        name: "chromium (web page tests)",
        note: "",
        check: || {
            let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
                .into_iter()
                .filter(|p| !Path::new(p).exists())
                .collect();
            Ok(if missing.is_empty() {
                Check::Done
            } else {
                Check::Missing(format!("missing {}", missing.join(", ")))
            })
        },
        install: || {
            if !util::is_root() {
                bail!(
                    "installing chromium with apt-get needs root: run `sudo apt-get install -y \
                     chromium chromium-driver` or run this command as root"
                );
            }
            run(Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(PACKAGES)
                .env("DEBIAN_FRONTEND", "noninteractive"))
        },
    }
}

// ---- TLS reverse proxy for the proxy capture test ---------------------------------------------

/// Debian `nginx` (tests/tests/tls_proxy.rs puts it between an SDK client and server;
/// `cargo xtask bench` measures its proxy hop). The
/// test starts its own instance on free ports; an instance the package's scripts may have
/// started is stopped again.
fn nginx_step() -> Step {
    Step {
        name: "nginx (TLS reverse-proxy test)",
        note: "",
        check: || {
            Ok(if Path::new("/usr/sbin/nginx").exists() {
                Check::Done
            } else {
                Check::Missing("missing /usr/sbin/nginx".into())
            })
        },
        install: || {
            if !util::is_root() {
                bail!(
                    "installing nginx with apt-get needs root: run `sudo apt-get install -y \
                     --no-install-recommends nginx` or run this command as root"
                );
            }
            run(Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "nginx"])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
            // Best effort: the package may have started the system instance (port 80).
            let _ = Command::new("/usr/sbin/nginx")
                .args(["-s", "quit"])
                .output();
            Ok(())
        },
    }
}
