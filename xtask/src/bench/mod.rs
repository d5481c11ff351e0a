//! `cargo xtask bench [--quick] [--seconds S] [--parts …] [--output FILE]`: the performance
//! figures of issue 19 in one run, printed as tables and written to `bench/results.json`.
//! Figures only: it never fails on timing (it fails only when something cannot run).
//!
//! Parts (see each module):
//! - `offline` ([`decoder`]): decoder throughput on the recorded fixtures, policy decision
//!   time, collector ingest rate (`cargo bench`, no root);
//! - `latency` ([`latency`], root): per-call p50/p99 of a raw TLS, a raw plaintext and the
//!   official SDK client against the SDK server, with no agent (twice: A/A), the agent
//!   (monitor, allow-all policy + schema validation, hold), an nginx hop, and empty programs
//!   on the agent's own and on the obvious hooks, interleaved in rounds; the agent's start-up,
//!   CPU per message and RSS;
//! - `host-tax` ([`host_tax`], root): non-MCP workloads with and without the agent;
//! - `hooks` ([`hooks`], root): the price of each kind of hook alone (empty programs), the
//!   figures behind the hook design;
//! - `loss` ([`loss`], root): loss at a paced message rate, and RSS with many idle sessions;
//! - `idle` (root): only the idle-sessions RSS figure of `loss`.
//!
//! `--quick` runs every part briefly (CI: it proves the harness works, ~2–3 minutes once
//! built); the default is the full run, inside a 14-minute budget that counts the installs
//! and builds too (see [`budget`]): a set-up machine runs the whole plan (about 11 minutes on
//! the 2-core development VM), a fresh one fewer rounds.

mod agent;
mod budget;
mod decoder;
mod hooks;
mod host_tax;
mod latency;
pub mod load;
mod loss;
mod nginx;
mod peers;
mod procs;
mod report;
mod stats;

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::util::{is_root, workspace_root};

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub quick: bool,
    /// Seconds per offline figure (default: 2, quick: 0.2).
    pub seconds: Option<f64>,
    /// Parts to run (default: all).
    pub parts: Vec<String>,
    /// Where to write the results (default: bench/results.json).
    pub output: Option<PathBuf>,
    /// Minutes the whole run may take, setup and builds included (see [`budget`]); `None`:
    /// the default (14 for the full run, none for `--quick`); 0: no budget.
    pub budget_minutes: Option<f64>,
}

/// The full run's default budget: inside the 15 minutes on a fresh machine.
pub const DEFAULT_BUDGET_MINUTES: f64 = 14.0;

pub const PARTS: &[&str] = &["offline", "latency", "host-tax", "hooks", "loss", "idle"];

/// How much of everything: the full run or the quick one.
#[derive(Clone, Copy)]
struct Plan {
    quick: bool,
    offline_seconds: f64,
    latency: latency::LatencyPlan,
    host_tax: host_tax::HostTaxPlan,
    hooks: hooks::HooksPlan,
    loss: loss::LossPlan,
}

fn plan(quick: bool, seconds: Option<f64>) -> Plan {
    if quick {
        Plan {
            quick,
            offline_seconds: seconds.unwrap_or(0.2),
            latency: latency::LatencyPlan {
                rounds: 1,
                raw_calls: 30,
                sdk_calls: 10,
            },
            host_tax: host_tax::HostTaxPlan {
                rounds: 1,
                dd_bytes: 100_000,
                pipe_writes: 50_000,
                tcp_round_trips: 5_000,
                https_requests: 2_000,
                downloads: 20,
            },
            hooks: hooks::HooksPlan {
                rounds: 1,
                ssl_pairs: 10_000,
                tcp_round_trips: 2_000,
                pipe_writes: 20_000,
            },
            loss: loss::LossPlan {
                messages_per_s: 5_000.0,
                seconds: 2.0,
                connections: 4,
                idle_sessions: 1_000,
            },
        }
    } else {
        Plan {
            quick,
            offline_seconds: seconds.unwrap_or(2.0),
            latency: latency::LatencyPlan {
                rounds: 5,
                raw_calls: 300,
                sdk_calls: 150,
            },
            host_tax: host_tax::HostTaxPlan {
                rounds: 5,
                dd_bytes: 1_000_000,
                pipe_writes: 500_000,
                // At ~150 µs a round trip on this VM's loopback, each 10,000 is 1.5 s per
                // arm and round: fewer than before (50,000), the figure is the same within
                // its noise, and the run is shorter.
                tcp_round_trips: 20_000,
                https_requests: 20_000,
                downloads: 300,
            },
            hooks: hooks::HooksPlan {
                rounds: 3,
                ssl_pairs: 100_000,
                tcp_round_trips: 10_000,
                pipe_writes: 300_000,
            },
            loss: loss::LossPlan {
                messages_per_s: 20_000.0,
                seconds: 10.0,
                connections: 4,
                idle_sessions: 10_000,
            },
        }
    }
}

pub fn bench(o: BenchOptions) -> Result<()> {
    for p in &o.parts {
        if !PARTS.contains(&p.as_str()) {
            bail!("bench: unknown part {p:?} (one of {})", PARTS.join(", "));
        }
    }
    let wants = |p: &str| o.parts.is_empty() || o.parts.iter().any(|x| x == p);
    let plan = plan(o.quick, o.seconds);
    // The full run counts from the command (its budget includes compiling xtask); the short
    // one may run inside `cargo xtask test`, whose process started long before.
    let started = if o.quick {
        std::time::Instant::now()
    } else {
        budget::run_started()
    };
    let minutes = match o.budget_minutes {
        Some(m) if m > 0.0 => Some(m),
        Some(_) => None,
        None if o.quick => None,
        None => Some(DEFAULT_BUDGET_MINUTES),
    };
    let budget = budget::Budget::new(started, minutes);
    let mut r = json!({
        "profile": if o.quick { "quick" } else { "full" },
        "budget_minutes": minutes,
        "machine": report::machine(),
        "part_seconds": {},
    });
    let privileged = ["latency", "host-tax", "hooks", "loss", "idle"];
    let privileged_wanted = privileged.iter().any(|p| wants(p));
    if privileged_wanted && is_root() {
        // What a fresh machine lacks (peers, nginx, PostgreSQL, toolchain), then the agent;
        // before the offline benches, so their build finds the eBPF object and shares the
        // agent's compiled library instead of compiling it a second time without it.
        let t = Timer::start();
        crate::setup::setup(crate::setup::Scope::Bench)?;
        t.stop(&mut r, "setup");
        let t = Timer::start();
        crate::build::build()?;
        t.stop(&mut r, "build (eBPF object and agent)");
    }
    if wants("offline") {
        let t = Timer::start();
        let (decoder, policy, collector) = decoder::run(plan.offline_seconds)?;
        r["decoder"] = decoder;
        r["policy_decision"] = policy;
        r["collector_ingest"] = collector;
        t.stop(&mut r, "offline (benches built and run)");
    }
    if privileged_wanted {
        if is_root() {
            run_privileged(&mut r, &plan, &wants, budget)?;
        } else {
            println!("bench: latency, host tax and loss skipped: they need root (the agent loads eBPF programs)");
        }
    }
    r["elapsed_s"] = json!(stats::round1(started.elapsed().as_secs_f64()));
    // Others' work on the host is noise the interleaving can only spread: say how much.
    r["machine"]["loadavg_at_end"] = json!(std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim());
    r["targets"] = report::targets(&r);
    report::print(&r);
    let path = o
        .output
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench/results.json"));
    report::write(&path, &r)
}

/// Wall time of one part of the run, kept in `part_seconds` (where the bench's time goes).
struct Timer(std::time::Instant);

impl Timer {
    fn start() -> Self {
        Timer(std::time::Instant::now())
    }

    fn stop(self, r: &mut Value, part: &str) {
        let s = stats::round1(self.0.elapsed().as_secs_f64());
        eprintln!("bench: {part}: {s} s");
        r["part_seconds"][part] = json!(s);
    }
}

fn run_privileged(
    r: &mut Value,
    plan: &Plan,
    wants: &dyn Fn(&str) -> bool,
    budget: budget::Budget,
) -> Result<()> {
    // What a part runs when the budget has no room for one full round of it (a fresh
    // machine whose installs and builds took the quarter hour): the quick run's sizes,
    // once, marked in results.json (`"plan": "short"`).
    let short = self::plan(true, None);
    let label = |is_short: bool| match (is_short, plan.quick) {
        (true, _) => "short (no room for a full round in the time budget)",
        (false, true) => "quick",
        (false, false) => "full",
    };
    let dir = tempfile::Builder::new()
        .prefix("mcpwarden-bench-")
        .tempdir()?;
    let cert = peers::Cert::generate(dir.path())?;
    let fixed_later = wants("loss") || wants("idle");
    // The share of the time left for `part`, given the round parts wanted after it.
    let share = |part: &str| {
        let names: Vec<&str> = budget::ROUND_PARTS.iter().map(|(p, _)| *p).collect();
        let at = names.iter().position(|p| *p == part).unwrap_or(names.len());
        let later: Vec<&str> = names[at + 1..]
            .iter()
            .copied()
            .filter(|p| wants(p))
            .collect();
        budget.share(part, &later, fixed_later)
    };
    // The full plan of a round part if one round of it fits its share, else the short one.
    let pick = |part: &str, planned: usize| {
        let s = share(part);
        if budget::full_round_fits(part, planned, s) {
            (false, s)
        } else {
            eprintln!("bench: {part}: no room for one full round in the time budget: the short plan, once");
            (true, s)
        }
    };
    if wants("latency") {
        let t = Timer::start();
        let (is_short, s) = pick("latency", plan.latency.rounds);
        let p = if is_short {
            short.latency
        } else {
            plan.latency
        };
        r["latency"] = latency::run(dir.path(), &cert, p, s)?;
        mark(&mut r["latency"], label(is_short));
        t.stop(r, "latency");
    }
    if wants("host-tax") {
        let t = Timer::start();
        let (is_short, s) = pick("host-tax", plan.host_tax.rounds);
        let p = if is_short {
            short.host_tax
        } else {
            plan.host_tax
        };
        r["host_tax"] = host_tax::run(dir.path(), &cert, p, s)?;
        mark(&mut r["host_tax"], label(is_short));
        t.stop(r, "host-tax");
    }
    if wants("hooks") {
        let t = Timer::start();
        let (is_short, s) = pick("hooks", plan.hooks.rounds);
        let p = if is_short { short.hooks } else { plan.hooks };
        r["hooks"] = hooks::run(dir.path(), &cert, p, s)?;
        mark(&mut r["hooks"], label(is_short));
        t.stop(r, "hooks");
    }
    let loss_short = !budget.fixed_parts_fit();
    if loss_short && (wants("loss") || wants("idle")) {
        eprintln!("bench: loss: no room left in the time budget: the short plan");
    }
    let loss_plan = if loss_short { short.loss } else { plan.loss };
    if wants("loss") {
        let t = Timer::start();
        r["loss"] = loss::loss(dir.path(), loss_plan)?;
        mark(&mut r["loss"], label(loss_short));
        t.stop(r, "loss");
    }
    if wants("loss") || wants("idle") {
        let t = Timer::start();
        r["idle_sessions"] = loss::idle(dir.path(), loss_plan)?;
        mark(&mut r["idle_sessions"], label(loss_short));
        t.stop(r, "idle sessions");
    }
    Ok(())
}

/// Says in a part's results which plan it ran.
fn mark(part: &mut Value, label: &str) {
    if part.is_object() {
        part["plan"] = json!(label);
    }
}
