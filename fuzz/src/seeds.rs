//! Seeds for every target cut out of the recorded fixtures (`tests/fixtures/*.events.jsonl`)
//! and the fixed JWT material: written as the libFuzzer corpus by `examples/seeds.rs`
//! (`cargo xtask fuzz`), and fed straight to the targets by the agent's unit tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::http::{HttpEvent, HttpParser, Limits, MessageKind};
use mcpwarden::replay::{read_events, ReplayError};

use super::encode_program;

/// One seed input of one target.
#[derive(Debug, Clone)]
pub struct Seed {
    pub target: &'static str,
    /// `seed-<fixture>-<n>`.
    pub name: String,
    pub data: Vec<u8>,
}

struct Seeds {
    fixture: String,
    seeds: Vec<Seed>,
}

impl Seeds {
    fn write(&mut self, target: &'static str, n: usize, data: &[u8]) {
        self.seeds.push(Seed {
            target,
            name: format!("seed-{}-{n}", self.fixture),
            data: data.to_vec(),
        });
    }
}

/// The fixtures of a directory, sorted.
pub fn fixtures(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".events.jsonl"))
        .collect();
    names.sort();
    Ok(names)
}

fn with_header(header: [u8; 4], stream: &[u8]) -> Vec<u8> {
    let mut v = header.to_vec();
    v.extend_from_slice(stream);
    v
}

/// The `jwt` target: each fixed token (mode 0) and each key document (mode 1).
pub fn jwt_seeds() -> Vec<Seed> {
    use super::jwt_material::{JWKS, PEM, TOKENS};
    let mut seeds = Seeds {
        fixture: "material".into(),
        seeds: Vec::new(),
    };
    for (i, token) in TOKENS.iter().enumerate() {
        seeds.write("jwt", i, &[&[0u8][..], token.as_bytes()].concat());
    }
    seeds.write("jwt", 3, &[&[1u8][..], JWKS.as_bytes()].concat());
    seeds.write("jwt", 4, &[&[1u8][..], PEM.as_bytes()].concat());
    seeds.seeds
}

/// The seeds of every target cut out of one recorded fixture (`*.events.jsonl`).
pub fn fixture_seeds(path: &Path) -> Result<Vec<Seed>, ReplayError> {
    let events = read_events(path)?;
    let fixture = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".events.jsonl"))
        .unwrap_or("fixture")
        .to_string();
    let mut seeds = Seeds {
        fixture,
        seeds: Vec::new(),
    };

    // record_formats: the recording's own first lines.
    if let Ok(text) = std::fs::read(path) {
        seeds.write("record_formats", 0, &text[..text.len().min(16 * 1024)]);
    }

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
    Ok(seeds.seeds)
}
