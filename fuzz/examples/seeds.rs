//! Writes the seed corpus (`fuzz/corpus/<target>/seed-*`) from the recorded fixtures:
//! `cargo run --example seeds -- FIXTURES_DIR CORPUS_DIR` (run by `cargo xtask fuzz`).

use std::path::Path;

use mcpwarden_fuzz::seeds::{fixture_seeds, fixtures, jwt_seeds, Seed};

fn write(corpus: &Path, seeds: &[Seed]) {
    for s in seeds {
        let dir = corpus.join(s.target);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(&s.name);
        std::fs::write(&path, &s.data)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, fixtures_dir, corpus] = args.as_slice() else {
        eprintln!("usage: seeds FIXTURES_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let corpus = Path::new(corpus);
    let names = fixtures(Path::new(fixtures_dir))
        .unwrap_or_else(|e| panic!("cannot list {fixtures_dir}: {e}"));
    for path in names {
        let seeds = fixture_seeds(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        write(corpus, &seeds);
        println!("seeds: {}: {} seeds in {}", path.display(), seeds.len(), corpus.display());
    }
    let seeds = jwt_seeds();
    write(corpus, &seeds);
    println!("seeds: jwt: {} seeds in {}", seeds.len(), corpus.display());
}
