//! `cargo xtask image`: the agent's container image, built here without any registry.
//!
//! Keep in step with the repository's `Dockerfile` (for users, from public base images):
//! both ship `/usr/local/bin/mcpwarden` plus exactly the shared libraries it links and the
//! dynamic loader, with `ENTRYPOINT ["/usr/local/bin/mcpwarden"]` and `CMD ["run"]`.
//!
//! No image registry is reachable on the development and CI machines, so nothing can be
//! pulled: the image root is assembled `FROM scratch` from the release agent and the files
//! `ldd` names, then built into the local docker engine (default tag `mcpwarden:dev`).
//! Docker comes from Debian's `docker.io`; when `dockerd` is not answering this starts it
//! (log in `/var/log/mcpwarden-dockerd.log`) and leaves it running for `docker run`.
//! `DOCKER_HOST` is honoured, so the end-to-end test can point this at its own daemon.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build;
use crate::util::{self, run, stdout_of, target_dir};

/// Where the agent lives inside the image (the Dockerfile copies it to the same place).
pub const AGENT_IN_IMAGE: &str = "/usr/local/bin/mcpwarden";
/// Directories the agent uses, made in the image (the Dockerfile makes the same ones):
/// configuration, control socket, agent id and export spool, a host `/proc` mount point.
pub const AGENT_DIRS: &[&str] = &[
    "etc/mcpwarden",
    "run/mcpwarden",
    "var/lib/mcpwarden",
    "host/proc",
];
/// Default image tag.
pub const DEFAULT_TAG: &str = "mcpwarden:dev";
/// Debian's client, which matches Debian's `dockerd` (another `docker` on PATH may be newer
/// than the 20.10 engine or only a client).
const DEBIAN_DOCKER: &str = "/usr/bin/docker";
const DOCKERD_LOG: &str = "/var/log/mcpwarden-dockerd.log";
/// How long a freshly started `dockerd` may take to answer.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `cargo xtask image` builds.
pub struct ImageOptions {
    /// Image tag (`mcpwarden:dev`).
    pub tag: String,
    /// Use this already built agent instead of running `cargo xtask build`.
    pub agent: Option<PathBuf>,
}

/// Builds the release agent (unless given one), assembles the image root and builds the
/// image into the local engine.
pub fn image(opts: ImageOptions) -> Result<()> {
    if !util::is_root() {
        bail!("image: talking to dockerd (and starting it) needs root: run `sudo -E cargo xtask image`");
    }
    let agent = match opts.agent {
        Some(path) => {
            anyhow::ensure!(
                path.is_file(),
                "image: agent {} does not exist",
                path.display()
            );
            path
        }
        None => build::build()?,
    };
    crate::setup::ensure_docker()?;
    ensure_dockerd()?;

    let context = target_dir().join("image");
    let files = assemble_root(&agent, &context.join("root"))?;
    fs::write(context.join("Dockerfile"), dockerfile())
        .with_context(|| format!("cannot write {}/Dockerfile", context.display()))?;
    for (host, inside) in &files {
        println!("image: {} -> {inside}", host.display());
    }
    let mut cmd = docker();
    cmd.args(["build", "--quiet", "--tag", &opts.tag])
        .arg(&context)
        // The classic builder: FROM scratch needs no registry and no buildx plugin.
        .env("DOCKER_BUILDKIT", "0");
    run(&mut cmd).context("image: `docker build` failed")?;
    println!(
        "image: {} (run it: docker run --pid=host --network=host --cap-add SYS_ADMIN \
         --cap-add NET_ADMIN --cap-add SYS_PTRACE --security-opt seccomp=unconfined \
         --security-opt apparmor=unconfined -v /sys/kernel:/sys/kernel {} run)",
        opts.tag, opts.tag
    );
    Ok(())
}

/// The docker client to use: Debian's when installed, else whatever `docker` is on PATH.
pub fn docker() -> Command {
    if Path::new(DEBIAN_DOCKER).is_file() {
        Command::new(DEBIAN_DOCKER)
    } else {
        Command::new("docker")
    }
}

fn dockerd_answers() -> bool {
    util::capture(docker().args(["info", "--format", "{{.ServerVersion}}"]))
        .is_ok_and(|out| out.status.success())
}

/// Starts `dockerd` in the background unless it already answers, and waits for it.
fn ensure_dockerd() -> Result<()> {
    if dockerd_answers() {
        println!("image: dockerd: already running");
        return Ok(());
    }
    if std::env::var_os("DOCKER_HOST").is_some() {
        bail!(
            "image: no docker engine answers at DOCKER_HOST={:?}; start it first",
            std::env::var("DOCKER_HOST").unwrap_or_default()
        );
    }
    println!("image: dockerd: starting … (log: {DOCKERD_LOG})");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .with_context(|| format!("cannot open {DOCKERD_LOG}"))?;
    let err = log
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let mut child = Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .context("cannot start `dockerd` (install Debian's docker.io: `cargo xtask setup`)")?;
    let started = Instant::now();
    while !dockerd_answers() {
        if let Some(status) = child.try_wait().context("cannot poll dockerd")? {
            bail!("image: dockerd exited with {status} while starting; see {DOCKERD_LOG}");
        }
        if started.elapsed() > DOCKERD_START_TIMEOUT {
            bail!(
                "image: dockerd did not answer within {DOCKERD_START_TIMEOUT:?}; see {DOCKERD_LOG}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "image: dockerd: started (pid {}; it keeps running: stop it with `kill {}`)",
        child.id(),
        child.id()
    );
    Ok(())
}

/// The image definition for the assembled root (the runtime stage of the repository's
/// `Dockerfile`, minus the Debian base: same path, entrypoint and command).
pub fn dockerfile() -> String {
    format!(
        "# Generated by `cargo xtask image` (xtask/src/image.rs). The repository's Dockerfile\n\
         # builds the same image for users from public base images; keep them in step.\n\
         FROM scratch\n\
         COPY root/ /\n\
         ENV PATH=/usr/local/bin:/usr/bin:/bin\n\
         ENTRYPOINT [\"{AGENT_IN_IMAGE}\"]\n\
         CMD [\"run\"]\n"
    )
}

/// Creates `root` afresh with the agent, every library `ldd` names and the dynamic loader
/// (each at the path the loader will look for it), plus the directories the agent mounts
/// or opens. Returns (host file, path in the image) for each file copied.
pub fn assemble_root(agent: &Path, root: &Path) -> Result<Vec<(PathBuf, String)>> {
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    let ldd = stdout_of(Command::new("ldd").arg(agent)).with_context(|| {
        format!(
            "`ldd {}` failed (is it a dynamic executable?)",
            agent.display()
        )
    })?;
    let libs = parse_ldd(&ldd);
    anyhow::ensure!(
        libs.iter().any(|l| l
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))),
        "`ldd {}` names no dynamic loader:\n{ldd}",
        agent.display()
    );
    let mut files = vec![(agent.to_path_buf(), AGENT_IN_IMAGE.to_string())];
    files.extend(libs.into_iter().map(|l| {
        let inside = l.to_string_lossy().into_owned();
        (l, inside)
    }));
    for (host, inside) in &files {
        let dest = root.join(inside.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // fs::copy follows symlinks: the image gets the library itself under the name the
        // loader asks for.
        fs::copy(host, &dest)
            .with_context(|| format!("cannot copy {} to {}", host.display(), dest.display()))?;
    }
    // Mount points and directories the agent uses (a read-only root cannot create them).
    for dir in AGENT_DIRS.iter().chain(&["sys", "proc", "tmp"]) {
        fs::create_dir_all(root.join(dir))
            .with_context(|| format!("cannot create {}/{dir}", root.display()))?;
    }
    Ok(files)
}

/// The files a dynamic executable needs, from `ldd` output: `name => /path (addr)` and
/// `/path (addr)` (the loader); the vDSO (no path) is skipped.
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') && !libs.iter().any(|l: &PathBuf| l == Path::new(path)) {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_library_and_the_loader_but_not_the_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007f523b160000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f523b12f000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f523a81e000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f523b162000)\n";
        assert_eq!(
            parse_ldd(out),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn the_generated_dockerfile_runs_the_agent_like_the_shipped_one() {
        let generated = dockerfile();
        let shipped = fs::read_to_string(crate::util::workspace_root().join("Dockerfile"))
            .expect("the repository's Dockerfile");
        for line in [
            format!("ENTRYPOINT [\"{AGENT_IN_IMAGE}\"]"),
            "CMD [\"run\"]".to_string(),
        ] {
            assert!(
                generated.contains(&line),
                "generated Dockerfile lacks {line}"
            );
            assert!(
                shipped.contains(&line),
                "the repository's Dockerfile lacks {line}"
            );
        }
        assert!(shipped.contains("COPY --from=build /out/ /"));
        assert!(shipped.contains(&format!("/out{AGENT_IN_IMAGE}")));
        let mkdir = shipped
            .lines()
            .find(|l| l.starts_with("RUN mkdir -p "))
            .expect("the Dockerfile makes the agent's directories");
        for dir in AGENT_DIRS {
            assert!(
                mkdir.split_whitespace().any(|d| d == format!("/{dir}")),
                "the Dockerfile does not make /{dir}: {mkdir}"
            );
        }
    }
}
