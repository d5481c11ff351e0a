//! The fuzz targets' checks without libFuzzer: every target of `fuzz/` (`cargo xtask fuzz`)
//! runs on every seed cut out of the recorded fixtures, and on deterministic mutations of
//! them (cuts, byte flips, splices), as part of the ordinary unit tests. Long coverage-guided
//! runs stay with `cargo xtask fuzz --seconds N`; this is the smoke that keeps the targets
//! and their harness compiling and passing in every `cargo xtask test`.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod mcpwarden_fuzz;

use std::path::Path;
use std::time::{Duration, Instant};

use mcpwarden_fuzz::seeds::{fixture_seeds, fixtures, jwt_seeds, Seed};
use mcpwarden_fuzz::targets::TARGETS;
use mcpwarden_fuzz::Rng;

/// Time allowed to mutations per target (the seeds themselves always all run).
const MUTATION_BUDGET: Duration = Duration::from_millis(1500);

fn corpus() -> Vec<Seed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut seeds = Vec::new();
    for path in fixtures(&dir).expect("tests/fixtures is listable") {
        seeds.extend(fixture_seeds(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    seeds.extend(jwt_seeds());
    seeds
}

fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    match rng.below(4) {
        0 => v.truncate(rng.below(v.len() as u64 + 1) as usize),
        1 => {
            for _ in 0..1 + rng.below(8) {
                if !v.is_empty() {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let at = rng.below(v.len() as u64 + 1) as usize;
            let from = rng.below(other.len() as u64 + 1) as usize;
            v.truncate(at);
            v.extend_from_slice(&other[from..]);
        }
        _ => {
            let i = rng.below(v.len() as u64 + 1) as usize;
            let n = rng.below(64) as usize;
            v.splice(
                i..i,
                std::iter::repeat_n(b"\r\n:{}\"0"[rng.below(7) as usize], n),
            );
        }
    }
    v.truncate(16 * 1024);
    v
}

#[test]
fn every_fuzz_target_passes_its_seed_corpus_and_mutations_of_it() {
    let seeds = corpus();
    for (name, run) in TARGETS {
        let mine: Vec<&Seed> = seeds.iter().filter(|s| s.target == *name).collect();
        assert!(!mine.is_empty(), "fuzz target {name} has no seeds");
        for s in &mine {
            run(&s.data);
        }
        let mut rng = Rng(0x5eed ^ name.len() as u64);
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < MUTATION_BUDGET {
            let a = mine[rng.below(mine.len() as u64) as usize];
            let b = mine[rng.below(mine.len() as u64) as usize];
            run(&mutate(&mut rng, &a.data, &b.data));
            n += 1;
        }
        eprintln!("fuzz smoke: {name}: {} seeds, {n} mutations", mine.len());
    }
}
