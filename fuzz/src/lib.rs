//! Helpers shared by the fuzz targets (`fuzz_targets/`) and the seed writer
//! (`examples/seeds.rs`).
//!
//! HTTP targets read their input as `[cut seed, limits, methods, gap, stream…]`
//! ([`HttpInput`]) and check more than "no panic": the stream parsed whole and the same
//! stream cut into seed-chosen pieces must give identical events (every piece carries the
//! same timestamp), with a capture gap at the same stream offset in both runs.
//!
//! The connection-table target reads its input as a small program of kernel events
//! ([`program`]); [`encode_program`] turns a recorded fixture into such a program so the
//! fuzzer starts from real MCP conversations.

use std::collections::HashMap;

pub mod seeds;
pub mod targets;

use mcpwarden::capture::events::{ConnIdent, Direction, KernelEvent};
use mcpwarden::http::{HttpEvent, HttpParser, Limits, MessageKind};

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `data` cut into pieces whose lengths `seed` chooses (1 byte up to 1/4 of the input).
pub fn cut(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut rng = Rng(u64::from(seed));
    let max = match seed % 4 {
        0 => 1,
        1 => 3,
        2 => 17,
        _ => (data.len() / 4).max(1),
    } as u64;
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(max) as usize).min(rest.len());
        let (head, tail) = rest.split_at(n);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

/// Parser bounds chosen by one input byte: the defaults, small, or tiny (so the limit paths
/// are reached by short inputs too).
pub fn limits(sel: u8) -> Limits {
    match sel % 3 {
        0 => Limits::default(),
        1 => Limits {
            max_head_bytes: 512,
            max_body_bytes: 256,
            max_sse_event_bytes: 128,
        },
        _ => Limits {
            max_head_bytes: 24,
            max_body_bytes: 8,
            max_sse_event_bytes: 8,
        },
    }
}

/// Request methods whose responses a response parser is told to expect: four, two bits
/// each of `sel`.
pub fn methods(sel: u8) -> Vec<&'static str> {
    const METHODS: [&str; 4] = ["POST", "GET", "HEAD", "CONNECT"];
    (0..4)
        .map(|i| METHODS[usize::from((sel >> (2 * i)) & 3)])
        .collect()
}

/// A decoded HTTP target input.
pub struct HttpInput<'a> {
    pub seed: u8,
    pub limits: Limits,
    pub methods: Vec<&'static str>,
    /// `(stream offset, bytes lost)` of one capture gap.
    pub gap: Option<(usize, u64)>,
    pub stream: &'a [u8],
}

/// Bytes before the stream in an HTTP target input.
pub const HTTP_INPUT_HEADER: usize = 4;

impl<'a> HttpInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<HttpInput<'a>> {
        let (&[seed, lim, meth, gap], stream) = data.split_first_chunk::<HTTP_INPUT_HEADER>()?;
        let gap = (gap != 0).then(|| {
            let at = stream.len() * usize::from(gap & 0x0f) / 16;
            (at, u64::from(gap >> 4) * 37 + 1)
        });
        Some(HttpInput {
            seed,
            limits: limits(lim),
            methods: methods(meth),
            gap,
            stream,
        })
    }
}

/// Runs one direction through a fresh parser: `before`, the gap (if any), `after`, close.
/// Every piece has time 1.
pub fn parse_pieces(
    kind: MessageKind,
    input: &HttpInput,
    before: &[&[u8]],
    after: &[&[u8]],
) -> Vec<HttpEvent> {
    let mut p = HttpParser::new(kind, input.limits);
    for m in &input.methods {
        p.expect_response_to(m);
    }
    let mut out = Vec::new();
    for piece in before {
        p.push(piece, 1, &mut out);
    }
    if let Some((_, lost)) = input.gap {
        p.gap(lost, 1, &mut out);
    }
    for piece in after {
        p.push(piece, 1, &mut out);
    }
    p.close(1, &mut out);
    out
}

/// The stream parsed whole and cut at `seed`'s offsets gives the same events.
pub fn check_http(kind: MessageKind, input: &HttpInput) {
    let at = input.gap.map_or(input.stream.len(), |(at, _)| at);
    let (before, after) = input.stream.split_at(at);
    let whole = parse_pieces(kind, input, &[before], &[after]);
    let pieces = parse_pieces(
        kind,
        input,
        &cut(before, input.seed),
        &cut(after, input.seed.wrapping_add(1)),
    );
    assert_eq!(
        whole, pieces,
        "events differ when the stream is cut (seed {})",
        input.seed
    );
}

// ---- connection-table programs -------------------------------------------------------------

/// Thread group ids of the two observed processes. Above the kernel's largest possible pid
/// (2^22), so the connection table's `/proc` fallback never finds a live process.
pub const PIDS: [u32; 2] = [4_200_000, 4_200_001];
/// Connections a program can address: 0–3 belong to `PIDS[0]`, 4–7 to `PIDS[1]`.
pub const CONNS: usize = 8;

/// One step of a connection-table program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Event(KernelEvent),
    /// Housekeeping at this kernel time.
    Tick(u64),
}

fn addr(conn: usize) -> (std::net::SocketAddr, std::net::SocketAddr) {
    // Conn i of the client talks to conn i+4 of the server: same tuple, mirrored.
    let pair = conn % 4;
    let client: std::net::SocketAddr = ([127, 0, 0, 1], 40_000 + pair as u16).into();
    let server: std::net::SocketAddr = ([127, 0, 0, 1], 8000).into();
    if conn < 4 {
        (client, server)
    } else {
        (server, client)
    }
}

/// Decodes a program. Each step starts with an opcode byte (`% 5`):
///
/// * `0` open: conn byte, role byte (`% 3`: connect, accept, unknown). A connection that
///   is open already gets a new generation (as after an fd reuse);
/// * `1` data: conn byte, flags byte (bit 0: ingress; bit 1: a gap of the next byte + 1;
///   bit 2: overlap the previous bytes by the next byte), two length bytes (LE), then
///   that many payload bytes (fewer when the input ends);
/// * `2` close: conn byte;
/// * `3` tick: the clock advances by the next byte × 50 ms;
/// * `4` exec of the process of the next byte's conn.
///
/// Every step advances the clock by 1 µs.
pub fn program(mut data: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut ts = 1_000_000_000u64;
    let mut generation = [0u64; CONNS];
    let mut pos: HashMap<(usize, bool), u64> = HashMap::new();
    let take = |data: &mut &[u8]| -> u8 {
        let (&b, rest) = data.split_first().unwrap_or((&0, &[]));
        *data = rest;
        b
    };
    while !data.is_empty() {
        let op = take(&mut data) % 5;
        ts += 1_000;
        let c = usize::from(take(&mut data)) % CONNS;
        let ident = |generation: &[u64; CONNS]| ConnIdent {
            pid: PIDS[c / 4],
            fd: 3 + c as u32,
            start_ns: generation[c],
        };
        match op {
            0 => {
                generation[c] = ts;
                pos.remove(&(c, false));
                pos.remove(&(c, true));
                let role = take(&mut data) % 3;
                let (local, remote) = addr(c);
                steps.push(Step::Event(KernelEvent::Open {
                    conn: ident(&generation),
                    ts_ns: ts,
                    local: Some(local),
                    remote: Some(remote),
                    connector: [Some(true), Some(false), None][usize::from(role)],
                    comm: format!("peer{}", c / 4),
                    tls: false,
                    sock_fd: Some(3 + c as u32),
                    proc_tuple: None,
                }));
            }
            1 => {
                let flags = take(&mut data);
                let ingress = flags & 1 != 0;
                let at = pos.entry((c, ingress)).or_insert(0);
                if flags & 2 != 0 {
                    *at += u64::from(take(&mut data)) + 1;
                }
                if flags & 4 != 0 {
                    *at = at.saturating_sub(u64::from(take(&mut data)));
                }
                let len = usize::from(u16::from_le_bytes([take(&mut data), take(&mut data)]))
                    .min(data.len());
                let (bytes, rest) = data.split_at(len);
                data = rest;
                steps.push(Step::Event(KernelEvent::Data {
                    conn: ident(&generation),
                    tid: PIDS[c / 4],
                    ts_ns: ts,
                    direction: if ingress {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    pos: *at,
                    syscall_len: len as u32,
                    truncated: false,
                    sock_fd: Some(3 + c as u32),
                    bytes: bytes.to_vec(),
                }));
                *at += len as u64;
            }
            2 => {
                let (e, i) = (pos.remove(&(c, false)), pos.remove(&(c, true)));
                steps.push(Step::Event(KernelEvent::Close {
                    conn: ident(&generation),
                    ts_ns: ts,
                    egress_bytes: e.unwrap_or(0),
                    ingress_bytes: i.unwrap_or(0),
                }));
            }
            3 => {
                ts += (c as u64) * 50_000_000;
                steps.push(Step::Tick(ts));
            }
            _ => steps.push(Step::Event(KernelEvent::Exec {
                pid: PIDS[c / 4],
                ts_ns: ts,
            })),
        }
    }
    steps
}

/// A recorded conversation of two processes as a [`program`]: the first pid seen maps to
/// conns 0–3, the second to 4–7 (a connection's slot is its order of opening, modulo 4).
/// Data positions are taken as consecutive (fixtures have no gaps); timestamps are not kept.
pub fn encode_program(events: &[KernelEvent]) -> Vec<u8> {
    let mut pids: Vec<u32> = Vec::new();
    let mut slots: HashMap<ConnIdent, usize> = HashMap::new();
    let mut opened = [0usize; 2];
    let mut out = Vec::new();
    let mut slot_of = |conn: &ConnIdent, pids: &mut Vec<u32>| -> Option<usize> {
        if let Some(&s) = slots.get(conn) {
            return Some(s);
        }
        let p = match pids.iter().position(|&p| p == conn.pid) {
            Some(p) => p,
            None if pids.len() < 2 => {
                pids.push(conn.pid);
                pids.len() - 1
            }
            None => return None,
        };
        let s = p * 4 + opened[p] % 4;
        opened[p] += 1;
        slots.insert(*conn, s);
        Some(s)
    };
    for ev in events {
        match ev {
            KernelEvent::Open {
                conn, connector, ..
            } => {
                let Some(s) = slot_of(conn, &mut pids) else {
                    continue;
                };
                let role = match connector {
                    Some(true) => 0,
                    Some(false) => 1,
                    None => 2,
                };
                out.extend_from_slice(&[0, s as u8, role]);
            }
            KernelEvent::Data {
                conn,
                direction,
                bytes,
                ..
            } => {
                let Some(s) = slot_of(conn, &mut pids) else {
                    continue;
                };
                for chunk in bytes.chunks(usize::from(u16::MAX)) {
                    let len = (chunk.len() as u16).to_le_bytes();
                    let flags = u8::from(*direction == Direction::Ingress);
                    out.extend_from_slice(&[1, s as u8, flags, len[0], len[1]]);
                    out.extend_from_slice(chunk);
                }
            }
            KernelEvent::Close { conn, .. } => {
                if let Some(s) = slot_of(conn, &mut pids) {
                    out.extend_from_slice(&[2, s as u8]);
                }
            }
            _ => {}
        }
    }
    out
}

// ---- JWT material (throwaway keys generated for fuzzing; no secret of anyone's) -------------

/// Keys and tokens the `jwt` target verifies with; the tokens are valid for these keys
/// until 2100.
pub mod jwt_material {
    /// HS256 secret (also the `oct` key `k1` of [`JWKS`]).
    pub const HS256_SECRET: &[u8] = b"fuzz-secret";
    /// RSA-2048 (`r1`), P-256 (`e1`) and `oct` (`k1`) keys.
    pub const JWKS: &str = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"sZGTEKOPeAXy8bhzL1-uTmn4S-yWAiIVA5rvykTSsmpHFlHqvtDBxvL6I7I-hdwaXpS0UeuvXJp9Ta5P8qQTaEcuQiJXs0DbMwRiPj_S2PHTkpn3vb_34XTHpdoq4D5EGbRre4s21tSe8B3ELu4zmsR8Sf7VQyQWbR8PhpSA4qLKngS5Fg7j54mLJ_BpdKwucDMKf4z76gMlGGh01L6r-nJUO_5SLO0c04F7ien35X_jqZnyjbgSpuB_xnJogiS52U4v_ZJdw5w8a69_onmHmsRzn4LYf2OpdYbtwBz0adS2oSuMPzxkSy4bmdSig6wXpMu3snEBe6X4hsb7vfrc0Q\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\",\"x\":\"Fz_TafBvk9nYn3O7mvot8-O-XPhjfyhFqhIhTKnEsAQ\",\"y\":\"qwR1Y6O2fShijtJQHO1hSVS3ltrc_92aSPnq9MTm7sU\"},{\"kty\":\"oct\",\"kid\":\"k1\",\"k\":\"ZnV6ei1zZWNyZXQ\"}]}";
    /// The same RSA and P-256 public keys as PEM `PUBLIC KEY` blocks.
    pub const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsZGTEKOPeAXy8bhzL1+u\nTmn4S+yWAiIVA5rvykTSsmpHFlHqvtDBxvL6I7I+hdwaXpS0UeuvXJp9Ta5P8qQT\naEcuQiJXs0DbMwRiPj/S2PHTkpn3vb/34XTHpdoq4D5EGbRre4s21tSe8B3ELu4z\nmsR8Sf7VQyQWbR8PhpSA4qLKngS5Fg7j54mLJ/BpdKwucDMKf4z76gMlGGh01L6r\n+nJUO/5SLO0c04F7ien35X/jqZnyjbgSpuB/xnJogiS52U4v/ZJdw5w8a69/onmH\nmsRzn4LYf2OpdYbtwBz0adS2oSuMPzxkSy4bmdSig6wXpMu3snEBe6X4hsb7vfrc\n0QIDAQAB\n-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFz/TafBvk9nYn3O7mvot8+O+XPhj\nfyhFqhIhTKnEsASrBHVjo7Z9KGKO0lAc7WFJVLeW2tz/3ZpI+er0xObuxQ==\n-----END PUBLIC KEY-----\n";
    /// Signed with the keys above: HS256 (`k1`), RS256 (`r1`), ES256 (`e1`).
    pub const TOKENS: [&str; 3] = [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjowfQ.MZ03J6TUqJ6yn6e-mz75KtanePWjKT7rjfqHXcR8atc",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InIxIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0.Hf4xwpKH7HlAa8hEHw7Jl06T0NiBV7Z4m9EEMP-SMqPIaBh4yTsOmY7ptU7r0w6ZwxAk_aXl-BuDJ5nGB6pBheX0nWbUaFHO7-_o9EYauaZ-PJmtDrT7ss_Gmjf9BIucNOsbf3FjsWkDp-ZWAFqrH_ksztPo-aVfUUxlTwawkNIEGshXRoESpf2bpskz2k6mREjxrX6oF6Ac-UeWNde71f3hh8F9KoaFRTZuti_feAGqejhk_y4fPlysAd2nnNWcCZRyiPfqD0f7zzksm_A97SmTvXlmefJmpWSM0XeDpPeVjJh8kwpmoVOCjart8kRfPuXHazl1w1OoEKViZW0ipg",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImUxIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0.OWtOj6XNVZ2lDSkLRBuJjuyHURuwBP_s78WZIPyuHQtU4WI8g4T9zqASXSalT5-QDysIu4ck5Wir3i0SMCMuBg",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwarden::mcp::{decode_jwt, JwtKeySource, JwtKeys, Verification};

    #[test]
    fn the_fixed_tokens_verify_with_the_fixed_keys() {
        let keys = JwtKeys::from_sources(&[
            JwtKeySource::Hs256Secret(jwt_material::HS256_SECRET.to_vec()),
            JwtKeySource::Jwks(jwt_material::JWKS.to_string()),
            JwtKeySource::Pem(jwt_material::PEM.to_string()),
        ])
        .unwrap();
        for token in jwt_material::TOKENS {
            let jwt = decode_jwt(token).unwrap();
            assert_eq!(
                keys.verify(token, &jwt, Some(1_893_456_000)),
                Verification::Verified,
                "{token}"
            );
        }
    }

    #[test]
    fn cut_pieces_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..=255u8 {
            assert_eq!(cut(&data, seed).concat(), data);
        }
    }

    #[test]
    fn a_recorded_fixture_encodes_to_a_program_with_the_same_payloads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/server_everything.events.jsonl");
        let events = mcpwarden::replay::read_events(&path).unwrap();
        let payload = |evs: &mut dyn Iterator<Item = &KernelEvent>| -> Vec<u8> {
            evs.filter_map(|e| match e {
                KernelEvent::Data { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .flatten()
            .collect()
        };
        let steps = program(&encode_program(&events));
        let decoded: Vec<KernelEvent> = steps
            .into_iter()
            .filter_map(|s| match s {
                Step::Event(e) => Some(e),
                Step::Tick(_) => None,
            })
            .collect();
        assert_eq!(payload(&mut decoded.iter()), payload(&mut events.iter()));
        let opens = |evs: &[KernelEvent]| {
            evs.iter()
                .filter(|e| matches!(e, KernelEvent::Open { .. }))
                .count()
        };
        assert_eq!(opens(&decoded), opens(&events));
    }
}
