//! Project entry points. `cargo xtask <command>` (alias in `.cargo/config.toml`).

mod bench;
mod build;
mod fixtures;
mod fuzz;
mod image;
mod run;
mod setup;
mod test;
mod util;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "mcpwarden: set up, build, run and test")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (nightly + rust-src, LLVM 22, bpf-linker 0.13,
    /// Python and Node test peers). Idempotent.
    Setup,
    /// Build the eBPF object with nightly (release, bpfel-unknown-none) and print its path.
    BuildEbpf,
    /// Build the eBPF object, then the release agent that embeds it.
    Build,
    /// Set up, build and run `mcpwarden run ARGS` as root (sudo when not root).
    Run {
        /// Arguments for `mcpwarden run` (after `--`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// fmt + clippy, setup, build, unit tests, then the privileged end-to-end tests (root).
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit: bool,
        /// Only the end-to-end tests (root).
        #[arg(long)]
        e2e: bool,
    },
    /// Build the container image `mcpwarden:dev` into the local docker engine: the release
    /// agent plus the libraries `ldd` names, FROM scratch (no registry needed; installs
    /// docker.io and starts dockerd when missing). The repository's Dockerfile is its twin.
    Image {
        /// Image tag.
        #[arg(long, default_value = image::DEFAULT_TAG)]
        tag: String,
        /// Package this already built agent instead of running `cargo xtask build`.
        #[arg(long, value_name = "PATH")]
        agent: Option<std::path::PathBuf>,
    },
    /// Record the replay fixtures in tests/fixtures/ from real SDK traffic (root).
    RecordFixtures,
    /// Run every cargo-fuzz target in fuzz/ (or those named) N seconds each (nightly;
    /// installs cargo-fuzz when missing). `--seconds 600`: the 10-minute run per target.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// The performance figures (issue 19): decoder throughput, per-call latency with and
    /// without the agent beside an nginx hop and empty eBPF programs, host tax, loss and
    /// memory. Prints tables, writes bench/results.json; never fails on timing. Root for all
    /// but the offline part.
    Bench {
        /// A short run of every part (CI: proves the harness works).
        #[arg(long)]
        quick: bool,
        /// Seconds of measurement per offline figure (default 2; 0.2 with --quick).
        #[arg(long)]
        seconds: Option<f64>,
        /// Only these parts (comma-separated): offline, latency, host-tax, loss.
        #[arg(long, value_delimiter = ',')]
        parts: Vec<String>,
        /// Where to write the results.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Minutes the whole run may take, installs and builds included (default 14 for the
        /// full run; 0: none). The latency, host-tax and hooks parts run as many of their
        /// planned rounds as fit (at least one each).
        #[arg(long, value_name = "MINUTES")]
        budget_minutes: Option<f64>,
    },
    /// The bench's load server (a child of `cargo xtask bench`): prints its port, serves.
    #[command(hide = true)]
    BenchLoadServer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::setup(setup::Scope::All),
        Cmd::BuildEbpf => build::build_ebpf().map(drop),
        Cmd::Build => build::build().map(drop),
        Cmd::Run { args } => run::run(args),
        Cmd::Image { tag, agent } => image::image(image::ImageOptions { tag, agent }),
        Cmd::RecordFixtures => fixtures::record_fixtures(),
        Cmd::Fuzz { seconds, targets } => fuzz::fuzz(seconds, targets),
        Cmd::Bench {
            quick,
            seconds,
            parts,
            output,
            budget_minutes,
        } => bench::bench(bench::BenchOptions {
            quick,
            seconds,
            parts,
            output,
            budget_minutes,
        }),
        Cmd::BenchLoadServer => bench::load::serve_forever(),
        Cmd::Test { unit, e2e } => {
            let both = !unit && !e2e;
            test::test(test::Selection {
                unit: unit || both,
                e2e: e2e || both,
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
