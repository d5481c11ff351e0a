//! The offline benches (`cargo bench`, release, one thread, no root): the decoder's
//! throughput on the recorded fixtures (`agent/benches/decode.rs`, parsed into figures), the
//! policy's decision time (`agent/benches/policy.rs`) and the collector's ingest rate
//! (`collector/benches/ingest.rs`), whose lines are kept as printed.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::build::{ebpf_object, with_ebpf_object, AGENT_PACKAGE};
use crate::util::{display, target_dir, workspace_root};

/// The collector's package (its `ingest` bench).
const COLLECTOR_PACKAGE: &str = "mcpwarden-collector";

/// Runs `cargo bench -p AGENT -p COLLECTOR --bench NAME -- --seconds S`, echoes and returns
/// its stdout. Every bench is built with both packages selected, so all of them resolve the
/// same features as the release agent (`cargo xtask build`) and share its dependencies: the
/// collector selected alone resolves fewer features (tonic, serde, mio, …) and recompiled
/// about a minute of crates for its bench.
fn cargo_bench(name: &str, seconds: f64) -> Result<String> {
    let mut cmd = Command::new("cargo");
    crate::util::scrub_run_env(&mut cmd);
    cmd.args([
        "bench",
        "--package",
        AGENT_PACKAGE,
        "--package",
        COLLECTOR_PACKAGE,
    ])
    .args(["--bench", name])
    .arg("--target-dir")
    .arg(target_dir())
    .current_dir(workspace_root())
    .args(["--", "--seconds", &seconds.to_string()]);
    // The same build-script input as every other build of the agent (no needless rebuilds).
    with_ebpf_object(&mut cmd, &ebpf_object());
    eprintln!("+ {}", display(&cmd));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("bench: could not start `{}`", display(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    anyhow::ensure!(
        out.status.success(),
        "bench: `{}` failed with {}",
        display(&cmd),
        out.status
    );
    Ok(text)
}

/// One figure line of the decode bench:
/// `pipeline  NAME  X MB/s  Y messages/s ...` (also `http`, `rpc`).
pub fn parse_decode_line(line: &str) -> Option<Value> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let stage = *f.first()?;
    if !["pipeline", "http", "rpc"].contains(&stage) || f.get(3) != Some(&"MB/s") {
        return None;
    }
    let mb_s: f64 = f.get(2)?.parse().ok()?;
    let per_s: f64 = f.get(4)?.parse().ok()?;
    Some(json!({
        "stage": stage,
        "fixture": f.get(1)?,
        "mb_per_s": mb_s,
        "messages_per_s": per_s,
        "unit": if stage == "http" { "HTTP messages/s" } else { "JSON-RPC messages/s" },
    }))
}

/// Runs the three offline benches; returns the `decoder`, `policy` and `collector` parts.
pub fn run(seconds: f64) -> Result<(Value, Value, Value)> {
    let decode = cargo_bench("decode", seconds)?;
    let figures: Vec<Value> = decode.lines().filter_map(parse_decode_line).collect();
    let policy = cargo_bench("policy", seconds)?;
    let ingest = cargo_bench("ingest", seconds)?;
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok((
        json!({ "seconds_per_figure": seconds, "figures": figures }),
        json!({ "lines": lines(&policy) }),
        json!({ "lines": lines(&ingest) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_figure_lines_are_parsed_and_others_ignored() {
        let v = parse_decode_line(
            "pipeline  python_sdk              31.2 MB/s       52000 messages/s   (12 events, ...)",
        )
        .expect("a figure");
        assert_eq!(v["stage"], "pipeline");
        assert_eq!(v["fixture"], "python_sdk");
        assert_eq!(v["mb_per_s"], 31.2);
        assert_eq!(v["messages_per_s"], 52000.0);
        assert!(parse_decode_line("mcpwarden decoder throughput, one thread").is_none());
    }
}
