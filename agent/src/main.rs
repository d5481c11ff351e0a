//! `mcpwarden`: the binary edge. Parses the command line and hands over to `run`.

mod catch_up;
mod gather;
mod run;

/// mimalloc: the pipeline allocates per message, and glibc's malloc/free were ~30 % of its
/// profile (the decode bench uses it too, so its figures are the agent's).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's option setter and collector (`libmimalloc-sys` only declares them behind a
// feature that does not name these options).
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_collect(force: bool);
}

/// `mi_option_arena_eager_commit` in `mi_option_t` (`mimalloc.h`; the same number in the v2
/// and v3 headers `libmimalloc-sys` 0.1.49 vendors: check again on an upgrade).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
/// `mi_option_purge_delay` in `mi_option_t` (same in v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Gives memory back instead of holding it: freed pages are purged after 1 ms instead of
/// mimalloc's default 10 ms (which an idle agent, making few allocator calls, reaches late
/// or never; 0 purged a little more but costs a syscall on every freed page), and arenas
/// are committed as used. Overrides `MIMALLOC_PURGE_DELAY`/`MIMALLOC_ARENA_EAGER_COMMIT`.
/// Measured with `cargo xtask bench --parts idle` (10,000 sessions, one run each): 76 MB at
/// start and 172 MB after, against 83 / 229 MB untuned (glibc: 53 / 174 MB).
fn tune_allocator() {
    // SAFETY: sets two integer options; mimalloc reads them on later calls.
    unsafe {
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(MI_OPTION_PURGE_DELAY, 1);
    }
    // No transparent huge pages: mimalloc asks for them on its arenas (`MADV_HUGEPAGE`), and
    // a 2 MiB page is resident whole however little of it the agent uses.
    // SAFETY: a process attribute; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Hands the pages freed since the last call back to the kernel. mimalloc purges freed
/// pages only from inside later allocator calls, so an agent that has gone quiet kept what
/// its start-up (ELF and BTF parsing, program loading) and its last burst freed: called once
/// ready and then on the capture loop's one-second tick. Measured on an idle agent: RSS at
/// ready 72 → 52 MB, the same as glibc's malloc.
pub(crate) fn release_freed_memory() {
    // SAFETY: no preconditions; collects the calling thread's heap and purges the arenas.
    unsafe { mi_collect(true) }
}

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mcpwarden",
    version,
    about = "See the MCP traffic on this host, from the kernel"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture MCP traffic on this host and print it as JSON lines (monitor mode).
    Run(Box<run::RunArgs>),
    /// Let a call held for approval go on (talks to the running agent).
    Approve {
        /// The held call's id (`mcpwarden pending`).
        id: u64,
        #[arg(long, default_value = mcpwarden::control::DEFAULT_CONTROL_SOCKET)]
        control_socket: std::path::PathBuf,
    },
    /// Reset a call held for approval.
    Reject {
        id: u64,
        #[arg(long, default_value = mcpwarden::control::DEFAULT_CONTROL_SOCKET)]
        control_socket: std::path::PathBuf,
    },
    /// List calls held for approval (id, session, user, tool, arguments, age).
    Pending {
        #[arg(long, default_value = mcpwarden::control::DEFAULT_CONTROL_SOCKET)]
        control_socket: std::path::PathBuf,
    },
    /// Active sessions and calls per second of the running local agent (q quits, s sorts).
    Top {
        #[arg(long, default_value = mcpwarden::control::DEFAULT_CONTROL_SOCKET)]
        control_socket: std::path::PathBuf,
        /// Initial sort order.
        #[arg(long, default_value = "calls")]
        sort: mcpwarden::top::SortBy,
        /// Print one frame as text and exit (for scripts).
        #[arg(long)]
        once: bool,
        /// Frame size with --once.
        #[arg(long, default_value_t = 160)]
        width: u16,
        #[arg(long, default_value_t = 30)]
        height: u16,
    },
    /// Tool catalogue commands of the running agent.
    Catalog {
        #[command(subcommand)]
        cmd: CatalogCmd,
    },
    /// Decode a recording made with `run --record FILE` offline and print JSON lines.
    Replay {
        /// The recorded kernel events (JSON lines).
        file: std::path::PathBuf,
    },
    /// Receive agents' record streams (gRPC), store them (SQLite or PostgreSQL) and serve
    /// sessions over an HTTP JSON API.
    Collector(mcpwarden_collector::CollectorArgs),
    /// Policy files (see README, "Policy").
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Empty eBPF programs on a hook set, until SIGINT/SIGTERM (`cargo xtask bench`).
    #[command(hide = true)]
    Floor {
        /// `own` (the agent's sock-mode hooks), `obvious` (SSL probes + syscall tracepoints), or one
        /// kind alone: `ssl-entry`, `ssl-return`, `ssl`, `ssl-exports`, `sock`, `syscalls`.
        #[arg(long)]
        hooks: mcpwarden::floor::FloorHooks,
        #[arg(long)]
        ready_file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy file: print the rules understood, or the errors (exit status 1).
    Check {
        /// The policy file (YAML).
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Accept the current definition of a pinned tool whose definition drifted.
    Accept {
        /// `ip:port/path` of the server, as in catalog records.
        server: String,
        tool: String,
        #[arg(long, default_value = mcpwarden::control::DEFAULT_CONTROL_SOCKET)]
        control_socket: std::path::PathBuf,
    },
}

/// Sends one control command and prints the answer; fails when the agent said no.
fn control(path: &std::path::Path, req: mcpwarden::control::ControlRequest) -> anyhow::Result<()> {
    let answer = mcpwarden::control::request(path, &req)?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if answer.get("ok") == Some(&serde_json::Value::Bool(true)) {
        Ok(())
    } else {
        anyhow::bail!(
            "{}",
            answer
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("the agent refused")
        )
    }
}

/// `mcpwarden top`: one text frame (`frame = Some(size)`) or the interactive view.
fn top(
    path: &std::path::Path,
    sort: mcpwarden::top::SortBy,
    frame: Option<(u16, u16)>,
) -> anyhow::Result<()> {
    use mcpwarden::control::{request, ControlRequest};
    use mcpwarden::top::{draw, render_text, View};
    use ratatui::crossterm::event::{self, Event, KeyCode};
    use std::time::{Duration, Instant};
    let mut view = View::new(sort);
    let fetch = |view: &mut View| -> anyhow::Result<()> {
        let answer = request(path, &ControlRequest::Sessions)?;
        if answer.get("ok") != Some(&serde_json::Value::Bool(true)) {
            anyhow::bail!("the agent refused: {answer}");
        }
        view.update(&answer, Instant::now());
        Ok(())
    };
    if let Some((w, h)) = frame {
        fetch(&mut view)?;
        print!("{}", render_text(&view, w, h));
        return Ok(());
    }
    fetch(&mut view)?;
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let mut last = Instant::now();
        loop {
            terminal.draw(|f| draw(f, &view))?;
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('s') => view.cycle_sort(),
                        _ => {}
                    }
                }
            }
            if last.elapsed() >= Duration::from_secs(1) {
                fetch(&mut view)?;
                last = Instant::now();
            }
        }
    })();
    ratatui::restore();
    result
}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCPWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.cmd {
        Cmd::Run(args) => run::run(*args),
        Cmd::Approve { id, control_socket } => control(
            &control_socket,
            mcpwarden::control::ControlRequest::Approve { id },
        ),
        Cmd::Reject { id, control_socket } => control(
            &control_socket,
            mcpwarden::control::ControlRequest::Reject { id },
        ),
        Cmd::Pending { control_socket } => {
            control(&control_socket, mcpwarden::control::ControlRequest::Pending)
        }
        Cmd::Catalog {
            cmd:
                CatalogCmd::Accept {
                    server,
                    tool,
                    control_socket,
                },
        } => control(
            &control_socket,
            mcpwarden::control::ControlRequest::CatalogAccept { server, tool },
        ),
        Cmd::Top {
            control_socket,
            sort,
            once,
            width,
            height,
        } => top(&control_socket, sort, once.then_some((width, height))),
        Cmd::Replay { file } => mcpwarden::replay::replay_file_to_stdout(&file)
            .map_err(|e| anyhow::Error::new(e).context(format!("replaying {}", file.display()))),
        Cmd::Policy {
            cmd: PolicyCmd::Check { file },
        } => mcpwarden::policy::load(&file)
            .map(|p| print!("{}", p.describe()))
            .map_err(anyhow::Error::new),
        Cmd::Floor { hooks, ready_file } => {
            mcpwarden::floor::run(hooks, ready_file.as_deref()).map_err(anyhow::Error::new)
        }
        Cmd::Collector(args) => mcpwarden_collector::run_blocking(args)
            .map_err(|e| anyhow::Error::new(e).context("collector")),
    };
    if let Err(e) = result {
        eprintln!("mcpwarden: {e:#}");
        std::process::exit(1);
    }
}
