//! `mcpwarden`: the binary edge. Parses the command line and hands over to `run`.

mod run;

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
    Run(run::RunArgs),
    /// Decode a recording made with `run --record FILE` offline and print JSON lines.
    Replay {
        /// The recorded kernel events (JSON lines).
        file: std::path::PathBuf,
    },
    /// Receive agents' record streams (gRPC), store them (SQLite or PostgreSQL) and serve
    /// sessions over an HTTP JSON API.
    Collector(mcpwarden_collector::CollectorArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCPWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.cmd {
        Cmd::Run(args) => run::run(args),
        Cmd::Replay { file } => mcpwarden::replay::replay_file_to_stdout(&file)
            .map_err(|e| anyhow::Error::new(e).context(format!("replaying {}", file.display()))),
        Cmd::Collector(args) => mcpwarden_collector::run_blocking(args)
            .map_err(|e| anyhow::Error::new(e).context("collector")),
    };
    if let Err(e) = result {
        eprintln!("mcpwarden: {e:#}");
        std::process::exit(1);
    }
}
