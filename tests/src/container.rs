//! Containers for the deploy tests: a private docker engine started (and stopped) by the
//! test, the agent's image built into it by `cargo xtask image`, and the agent container.
//!
//! The engine is Debian's `docker.io` (installed by `cargo xtask setup`). It gets its own
//! socket, exec root and data root, no bridge and no iptables rules, so it never meets a
//! docker engine someone else runs on the machine, and the test can stop it afterwards.
//! Nothing can be pulled here: the image is made `FROM scratch` (see xtask/src/image.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::{parse_json_lines, READY_TIMEOUT, STOP_TIMEOUT};
use crate::env::workspace_root;
use crate::process::ChildGuard;

/// Debian's engine and its matching client.
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const DOCKER: &str = "/usr/bin/docker";
/// The private engine's run directory (socket, exec root, pid file) and data root.
const RUN_DIR: &str = "/run/mcpwarden-e2e-docker";
const DATA_ROOT: &str = "/var/lib/mcpwarden-e2e-docker";
/// How long the engine may take to answer, and to stop.
const DOCKERD_START_TIMEOUT: Duration = Duration::from_secs(60);
const DOCKERD_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long building the image (including compiling xtask) may take.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// A `dockerd` this test started; dropping it removes its containers, stops it (SIGTERM,
/// then SIGKILL), and unmounts what it left mounted.
pub struct Dockerd {
    process: ChildGuard,
    host: String,
    log_dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts the private engine and waits until it answers. Panics (the test fails, it is
    /// not skipped) when docker.io is missing or the engine does not come up.
    pub fn start() -> Dockerd {
        for tool in [DOCKERD, DOCKER] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} does not exist: the image test needs Debian's docker.io \
                 (`cargo xtask setup` installs it; or `apt-get install -y docker.io`)"
            );
        }
        std::fs::create_dir_all(RUN_DIR).unwrap_or_else(|e| panic!("cannot create {RUN_DIR}: {e}"));
        let socket = format!("{RUN_DIR}/docker.sock");
        let _ = std::fs::remove_file(&socket);
        let log_dir = tempfile::Builder::new()
            .prefix("mcpwarden-e2e-dockerd-")
            .tempdir()
            .expect("cannot create a temporary directory for dockerd's log");
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--host")
            .arg(format!("unix://{socket}"))
            .arg("--exec-root")
            .arg(format!("{RUN_DIR}/exec"))
            .arg("--pidfile")
            .arg(format!("{RUN_DIR}/docker.pid"))
            .arg("--data-root")
            .arg(DATA_ROOT)
            // Containers of this engine use the host's network (like the DaemonSet's
            // hostNetwork): no bridge, no iptables rules to clean up.
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"]);
        let process = ChildGuard::spawn("dockerd", &mut cmd, log_dir.path());
        let mut dockerd = Dockerd {
            process,
            host: format!("unix://{socket}"),
            log_dir,
        };
        dockerd.wait_answering(&format!("{cmd:?}"));
        dockerd
    }

    fn answers(&self) -> bool {
        self.docker()
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn wait_answering(&mut self, cmd: &str) {
        let started = Instant::now();
        while !self.answers() {
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "dockerd ({cmd}) exited with {status} while starting: the image test \
                     cannot run without a docker engine\n--- dockerd stderr ---\n{}",
                    self.process.stderr()
                );
            }
            assert!(
                started.elapsed() < DOCKERD_START_TIMEOUT,
                "dockerd ({cmd}) did not answer within {DOCKERD_START_TIMEOUT:?}\n\
                 --- dockerd stderr ---\n{}",
                self.process.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `DOCKER_HOST` of this engine (`unix:///run/mcpwarden-e2e-docker/docker.sock`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A docker client command talking to this engine.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_HOST", &self.host);
        cmd
    }

    /// Runs a docker client command to completion; panics with its output unless it exits 0.
    /// Returns its trimmed stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .docker()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot start `docker {}`: {e}", args.join(" ")));
        assert!(
            out.status.success(),
            "`docker {}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- dockerd stderr ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.process.stderr()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Builds the agent's image into this engine with `cargo xtask image --agent AGENT --tag
    /// TAG` (the same code users run), so the test image is the shipped recipe.
    pub fn build_agent_image(&self, agent: &Path, tag: &str) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // What `cargo test` exported for this test binary must not steer the nested build.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
                cmd.env_remove(&key);
            }
        }
        cmd.current_dir(workspace_root())
            .args(["run", "--quiet", "--package", "xtask", "--", "image"])
            .arg("--agent")
            .arg(agent)
            .args(["--tag", tag])
            .env("DOCKER_HOST", &self.host);
        let shown = format!("{cmd:?}");
        let mut build = ChildGuard::spawn("xtask image", &mut cmd, self.log_dir.path());
        let Some(status) = build.wait_timeout(IMAGE_TIMEOUT) else {
            panic!(
                "`{shown}` did not finish within {IMAGE_TIMEOUT:?}\n--- stderr ---\n{}",
                build.stderr()
            );
        };
        assert!(
            status.success(),
            "`{shown}` failed with {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            build.stdout(),
            build.stderr()
        );
        let config = self.run(&["image", "inspect", "--format", "{{json .Config}}", tag]);
        let config: Value = serde_json::from_str(&config)
            .unwrap_or_else(|e| panic!("image config of {tag} is not JSON ({e}): {config}"));
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(["/usr/local/bin/mcpwarden"]),
            "entrypoint of {tag}: {config}"
        );
        assert_eq!(
            config["Cmd"],
            serde_json::json!(["run"]),
            "command of {tag}: {config}"
        );
    }

    fn stop(&mut self) {
        if self.process.try_wait().is_none() {
            let ids = self
                .docker()
                .args(["ps", "--all", "--quiet"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = self.docker().args(["rm", "--force", id]).output();
            }
            // Images replaced by this run's build (the data root persists between runs).
            let _ = self.docker().args(["image", "prune", "--force"]).output();
            self.process.signal(libc::SIGTERM);
            if self.process.wait_timeout(DOCKERD_STOP_TIMEOUT).is_none() {
                eprintln!("dockerd did not stop within {DOCKERD_STOP_TIMEOUT:?}: killing it");
            }
        }
        self.process.kill();
        unmount_under(&[RUN_DIR, DATA_ROOT]);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lazily unmounts every mount point below these directories (dockerd leaves its network
/// namespace file mounted under its exec root), deepest first.
fn unmount_under(dirs: &[&str]) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|p| dirs.iter().any(|d| p.starts_with(&format!("{d}/"))))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let Ok(c) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: umount2 with a valid NUL-terminated path; failure is harmless here.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A detached container; dropping it removes it (`docker rm --force`).
pub struct Container<'a> {
    dockerd: &'a Dockerd,
    id: String,
    name: String,
}

impl<'a> Container<'a> {
    /// `docker run --detach --name NAME FLAGS IMAGE ARGS`.
    pub fn run(
        dockerd: &'a Dockerd,
        name: &str,
        flags: &[&str],
        image: &str,
        args: &[&str],
    ) -> Container<'a> {
        let _ = dockerd.docker().args(["rm", "--force", name]).output();
        let mut all = vec!["run", "--detach", "--name", name];
        all.extend_from_slice(flags);
        all.push(image);
        all.extend_from_slice(args);
        let id = dockerd.run(&all);
        Container {
            dockerd,
            id,
            name: name.to_string(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `docker logs` (stdout and stderr together).
    pub fn logs(&self) -> String {
        self.dockerd
            .docker()
            .args(["logs", &self.id])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Whether the container is still running.
    pub fn running(&self) -> bool {
        self.dockerd
            .run(&["inspect", "--format", "{{.State.Running}}", &self.id])
            == "true"
    }

    /// Waits until `file` (on the host) exists, as the agent's ready file; panics with the
    /// container's logs if it stops first or takes longer than [`READY_TIMEOUT`].
    pub fn wait_for_file(&self, file: &Path) {
        let started = Instant::now();
        while !file.exists() {
            assert!(
                self.running(),
                "container {} stopped before creating {}\n--- logs ---\n{}",
                self.name,
                file.display(),
                self.logs()
            );
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "container {} did not create {} within {READY_TIMEOUT:?}\n--- logs ---\n{}",
                self.name,
                file.display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker stop` (SIGTERM, the agent drains and flushes), then asserts it exited with 0.
    pub fn stop(&self) {
        let timeout = STOP_TIMEOUT.as_secs().to_string();
        self.dockerd.run(&["stop", "--time", &timeout, &self.id]);
        let code = self
            .dockerd
            .run(&["inspect", "--format", "{{.State.ExitCode}}", &self.id]);
        assert_eq!(
            code,
            "0",
            "container {} exited with {code} after SIGTERM (want 0)\n--- logs ---\n{}",
            self.name,
            self.logs()
        );
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .dockerd
            .docker()
            .args(["rm", "--force", &self.id])
            .output();
    }
}

/// The JSON lines in `file` (written by the agent inside a container to a bind mount).
pub fn read_records(file: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    parse_json_lines(&text, &file.display().to_string())
}
