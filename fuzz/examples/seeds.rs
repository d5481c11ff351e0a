//! Writes seed inputs for every fuzz target from the recorded fixtures, so the fuzzers
//! start from real MCP traffic rather than from nothing:
//!
//!     cargo run --example seeds -- ../tests/fixtures corpus
//!
//! (`cargo xtask fuzz` runs it before fuzzing.) The `jwt` target gets the fixed tokens and
//! key documents of `mcpwarden_fuzz::jwt_material`. Files are named `seed-<fixture>-<n>`, so
//! running it again overwrites the same seeds and leaves what the fuzzers found alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::http::{HttpEvent, HttpParser, Limits, MessageKind};
use mcpwarden::replay::read_events;
use mcpwarden_fuzz::encode_program;

struct Seeds {
    corpus: PathBuf,
    fixture: String,
    written: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, n: usize, data: &[u8]) {
        let dir = self.corpus.join(target);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("seed-{}-{n}", self.fixture));
        std::fs::write(&path, data)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self.written += 1;
    }
}

fn with_header(header: [u8; 4], stream: &[u8]) -> Vec<u8> {
    let mut v = header.to_vec();
    v.extend_from_slice(stream);
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, fixtures, corpus] = args.as_slice() else {
        eprintln!("usage: seeds FIXTURES_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures)
        .unwrap_or_else(|e| panic!("cannot list {fixtures}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".events.jsonl"))
        .collect();
    names.sort();
    for path in names {
        seed_fixture(&path, Path::new(corpus));
    }
    seed_jwt(Path::new(corpus));
}

/// The `jwt` target: each fixed token (mode 0) and each key document (mode 1).
fn seed_jwt(corpus: &Path) {
    use mcpwarden_fuzz::jwt_material::{JWKS, PEM, TOKENS};
    let mut seeds = Seeds {
        corpus: corpus.to_path_buf(),
        fixture: "material".into(),
        written: 0,
    };
    for (i, token) in TOKENS.iter().enumerate() {
        seeds.write("jwt", i, &[&[0u8][..], token.as_bytes()].concat());
    }
    seeds.write("jwt", 3, &[&[1u8][..], JWKS.as_bytes()].concat());
    seeds.write("jwt", 4, &[&[1u8][..], PEM.as_bytes()].concat());
    println!(
        "seeds: jwt: {} seeds in {}",
        seeds.written,
        corpus.display()
    );
}

fn seed_fixture(path: &Path, corpus: &Path) {
    let events = read_events(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".events.jsonl"))
        .unwrap_or("fixture")
        .to_string();
    let mut seeds = Seeds {
        corpus: corpus.to_path_buf(),
        fixture,
        written: 0,
    };

    // conn_table: the whole conversation, and its first events.
    seeds.write("conn_table", 0, &encode_program(&events));
    for (i, n) in [12, 40].into_iter().enumerate() {
        seeds.write(
            "conn_table",
            i + 1,
            &encode_program(&events[..n.min(events.len())]),
        );
    }

    // Per connection and direction: the byte stream.
    let mut streams: BTreeMap<(ConnIdent, bool), Vec<u8>> = BTreeMap::new();
    for ev in &events {
        if let KernelEvent::Data {
            conn,
            direction,
            bytes,
            ..
        } = ev
        {
            streams
                .entry((*conn, *direction == Direction::Ingress))
                .or_default()
                .extend_from_slice(bytes);
        }
    }
    let (mut req, mut resp, mut body, mut sse, mut rpc) = (0, 0, 0, 0, 0);
    for stream in streams.values() {
        let kind = if stream.starts_with(b"HTTP/") {
            MessageKind::Response
        } else {
            MessageKind::Request
        };
        let mut parser = HttpParser::new(kind, Limits::default());
        let mut out = Vec::new();
        parser.push(stream, 1, &mut out);
        parser.close(1, &mut out);
        match kind {
            MessageKind::Request => {
                seeds.write("http_request", req, &with_header([0, 0, 0, 0], stream));
                req += 1;
            }
            MessageKind::Response => {
                seeds.write("http_response", resp, &with_header([3, 0, 0, 0], stream));
                resp += 1;
                // The body after the first head: chunked, as sent.
                if let Some(at) = stream.windows(4).position(|w| w == b"\r\n\r\n") {
                    let rest = &stream[at + 4..];
                    let head = u8::from(
                        stream[..at]
                            .windows(17)
                            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream")),
                    );
                    seeds.write("http_chunked", body, &with_header([head, 0, 0, 0], rest));
                    body += 1;
                }
            }
        }
        for ev in out {
            match ev {
                HttpEvent::Body { data, .. } => {
                    seeds.write("rpc_decode", rpc, &data);
                    rpc += 1;
                }
                HttpEvent::Sse(e) => {
                    let mut text = String::new();
                    if let Some(id) = &e.id {
                        text.push_str(&format!("id: {id}\n"));
                    }
                    if let Some(ev) = &e.event {
                        text.push_str(&format!("event: {ev}\n"));
                    }
                    for line in e.data.split('\n') {
                        text.push_str(&format!("data: {line}\n"));
                    }
                    text.push('\n');
                    seeds.write("sse", sse, &with_header([3, 0, 0, 0], text.as_bytes()));
                    sse += 1;
                    if !e.data.trim().is_empty() {
                        seeds.write("rpc_decode", rpc, e.data.as_bytes());
                        rpc += 1;
                    }
                }
                _ => {}
            }
        }
    }
    println!(
        "seeds: {}: {} seeds in {}",
        seeds.fixture,
        seeds.written,
        corpus.display()
    );
}
