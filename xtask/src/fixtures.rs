//! `cargo xtask record-fixtures`: records the replay fixtures under `tests/fixtures/` from
//! real traffic (root: it runs the real agent).
//!
//! For each conversation: start `mcpwarden run --record`, start the server peer, run the
//! client peer to completion, stop the server, stop the agent, and keep only the events of
//! the two peer processes (nothing else is normalised). Then the golden records have to be
//! regenerated and reviewed: `UPDATE_GOLDEN=1 cargo test -p mcpwarden replay`.
//!
//! | fixture | server | client |
//! |---|---|---|
//! | `python_sdk` | `tests/peers/python/server.py` (`mcp` MCPServer, uvicorn) | `tests/peers/python/client.py` |
//! | `server_everything` | `@modelcontextprotocol/server-everything streamableHttp` | `tests/peers/node/client.mjs` (TypeScript SDK) |

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup::{self, Scope};
use crate::util::{self, workspace_root};

/// Kills (SIGKILL) and reaps a child that is still running when dropped.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Guard> {
        let log = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {name}: `{}`", util::display(cmd)))?;
        Ok(Guard { name, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, then waits up to `grace` before SIGKILL.
    fn interrupt(&mut self, grace: Duration) -> Result<()> {
        // SAFETY: plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let started = Instant::now();
        while started.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("record-fixtures: {} ignored SIGINT; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            bail!("{what} did not happen within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Conversation {
    name: &'static str,
    server: Command,
    client: Command,
}

pub fn record_fixtures() -> Result<()> {
    if !util::is_root() {
        bail!("recording runs the agent, which loads eBPF programs: run `sudo -E cargo xtask record-fixtures` (or as root)");
    }
    setup::setup(Scope::All)?;
    let agent = crate::build::build()?;
    let root = workspace_root();
    let peers = root.join("tests/peers");
    let python = setup::venv_python();

    let py_port = free_port()?;
    let mut py_server = Command::new(&python);
    py_server
        .arg(peers.join("python/server.py"))
        .arg(py_port.to_string());
    let mut py_client = Command::new(&python);
    py_client
        .arg(peers.join("python/client.py"))
        .arg(format!("http://127.0.0.1:{py_port}/mcp"));

    let node_port = free_port()?;
    let mut node_server = Command::new("node");
    node_server
        .arg(setup::node_modules().join("@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", node_port.to_string());
    let mut node_client = Command::new("node");
    node_client
        .current_dir(peers.join("node"))
        .arg(peers.join("node/client.mjs"))
        .arg(format!("http://127.0.0.1:{node_port}/mcp"));

    let conversations = [
        (
            Conversation {
                name: "python_sdk",
                server: py_server,
                client: py_client,
            },
            py_port,
        ),
        (
            Conversation {
                name: "server_everything",
                server: node_server,
                client: node_client,
            },
            node_port,
        ),
    ];
    let out_dir = root.join("tests/fixtures");
    fs::create_dir_all(&out_dir)?;
    for (conv, port) in conversations {
        let path = record_one(&agent, conv, port, &out_dir)?;
        let size = fs::metadata(&path)?.len();
        println!(
            "record-fixtures: wrote {} ({} KiB)",
            path.display(),
            size / 1024
        );
    }
    println!(
        "record-fixtures: now regenerate the golden records and review them:\n  \
         UPDATE_GOLDEN=1 cargo test -p mcpwarden replay && git diff tests/fixtures"
    );
    Ok(())
}

fn record_one(agent: &Path, mut conv: Conversation, port: u16, out_dir: &Path) -> Result<PathBuf> {
    let work = util::target_dir().join("record-fixtures").join(conv.name);
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let events = work.join("events.jsonl");
    let ready = work.join("ready");

    println!("record-fixtures: {}: starting the agent", conv.name);
    let mut agent_cmd = Command::new(agent);
    agent_cmd
        .arg("run")
        .arg("--record")
        .arg(&events)
        .arg("--output")
        .arg(work.join("records.jsonl"))
        .arg("--ready-file")
        .arg(&ready);
    let mut agent = Guard::spawn("the agent", &mut agent_cmd, &work.join("agent.stderr"))?;
    wait_for("the agent's ready file", Duration::from_secs(60), || {
        ready.exists()
    })?;

    let mut server = Guard::spawn("the server", &mut conv.server, &work.join("server.stderr"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_for(
        &format!("the server listening on {addr}"),
        Duration::from_secs(30),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    )?;
    // Let the readiness probe's connection close before the conversation starts.
    std::thread::sleep(Duration::from_millis(300));

    println!("record-fixtures: {}: running the client", conv.name);
    let mut client = Guard::spawn("the client", &mut conv.client, &work.join("client.stderr"))?;
    let client_pid = client.pid();
    let mut summary = String::new();
    if let Some(out) = client.child.stdout.take() {
        BufReader::new(out).read_line(&mut summary)?;
    }
    let status = client.child.wait()?;
    if !status.success() {
        bail!(
            "the client failed with {status}; see {}",
            work.join("client.stderr").display()
        );
    }
    fs::write(work.join("client.json"), &summary)?;
    let server_pid = server.pid();
    server.interrupt(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(500));
    agent.interrupt(Duration::from_secs(30))?;

    let text = fs::read_to_string(&events)
        .with_context(|| format!("reading the recording {}", events.display()))?;
    let path = out_dir.join(format!("{}.events.jsonl", conv.name));
    let mut out = fs::File::create(&path)?;
    let mut kept = 0usize;
    for line in text.lines() {
        if let Some(pid) = line_pid(line) {
            if pid == client_pid || pid == server_pid {
                writeln!(out, "{line}")?;
                kept += 1;
            }
        }
    }
    if kept == 0 {
        bail!(
            "the recording {} holds no event of the client (pid {client_pid}) or the server (pid {server_pid})",
            events.display()
        );
    }
    println!(
        "record-fixtures: {}: kept {kept} of {} events (client pid {client_pid}, server pid {server_pid})",
        conv.name,
        text.lines().count()
    );
    Ok(path)
}

/// The `"pid"` of a recorded event line (the first `"pid":` field of the object).
fn line_pid(line: &str) -> Option<u32> {
    let rest = &line[line.find("\"pid\":")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::line_pid;

    #[test]
    fn line_pid_reads_the_pid_field() {
        assert_eq!(
            line_pid(r#"{"kind":"exec","pid":4242,"ts_ns":1}"#),
            Some(4242)
        );
        assert_eq!(line_pid(r#"{"kind":"exec"}"#), None);
    }
}
