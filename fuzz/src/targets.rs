//! The fuzz targets' bodies, one module per target (`fuzz_targets/<name>.rs` calls
//! `<name>::run`), so the same checks also run without libFuzzer: the agent's unit tests
//! feed them the seed corpus ([`TARGETS`], `agent/tests/fuzz_corpus.rs`).
//!
//! Paths to the harness go through `super::super` so this file also compiles when included
//! by path from another crate.

pub mod conn_table {
    //! The whole pure pipeline (conn → http → rpc → mcp) from arbitrary sequences of kernel
    //! events (opens, data with gaps and overlaps, closes, fd reuse, ticks; see
    //! `mcpwarden_fuzz::program`), ending with `finish`; every record must serialise.
    use super::super::{program, Step};
    use mcpwarden::conn::ConnTable;
    use mcpwarden::http::Limits;
    use mcpwarden::mcp::{McpConfig, McpTracker};

    pub fn run(data: &[u8]) {
        let small = data.first().is_some_and(|b| b & 0x80 != 0);
        let cfg = if small {
            McpConfig {
                idle_timeout_ns: 200_000_000,
                max_pending_per_session: 2,
                max_sessions: 2,
                max_payload_bytes: 512,
                ..McpConfig::default()
            }
        } else {
            McpConfig::default()
        };
        let mut table = ConnTable::new(
            McpTracker::new(cfg),
            Limits::default(),
            if small { 2 } else { 64 },
        );
        let mut out = Vec::new();
        let mut now = 0;
        for step in program(data) {
            match step {
                Step::Event(ev) => {
                    now = now.max(mcpwarden::replay::event_ts(&ev).unwrap_or(0));
                    table.on_event(ev, &mut out);
                }
                Step::Tick(ts) => {
                    now = ts;
                    table.on_tick(ts, &mut out);
                }
            }
        }
        table.finish(now, &mut out);
        for r in &out {
            assert!(serde_json::to_string(r).is_ok());
        }
    }
}

pub mod http_chunked {
    //! The chunked transfer coding: the input is the body of a response whose head says
    //! `Transfer-Encoding: chunked` (JSON, SSE, or gzip-coded JSON, chosen by the cut seed), so
    //! every mutation lands in the chunk-size lines, extensions, data and trailers.
    use super::super::{check_http, HttpInput, HTTP_INPUT_HEADER};
    use mcpwarden::http::MessageKind;

    const HEADS: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
    ];

    pub fn run(data: &[u8]) {
        let Some(first) = data.first() else { return };
        let head = HEADS[usize::from(*first) % HEADS.len()];
        let mut stream = data[..data.len().min(HTTP_INPUT_HEADER)].to_vec();
        stream.extend_from_slice(head);
        stream.extend_from_slice(data.get(HTTP_INPUT_HEADER..).unwrap_or_default());
        if let Some(input) = HttpInput::parse(&stream) {
            check_http(MessageKind::Response, &input);
        }
    }
}

pub mod http_request {
    //! The request direction of an HTTP/1.x stream: heads, framing, chunked and coded bodies,
    //! pipelining, resynchronisation after garbage and after a capture gap. The same stream
    //! parsed whole and cut into pieces must give the same events.
    use super::super::{check_http, HttpInput};
    use mcpwarden::http::MessageKind;

    pub fn run(data: &[u8]) {
        if let Some(input) = HttpInput::parse(data) {
            check_http(MessageKind::Request, &input);
        }
    }
}

pub mod http_response {
    //! The response direction of an HTTP/1.x stream, told which request methods it answers
    //! (HEAD: no body; CONNECT: a tunnel): status lines, 1xx, chunked bodies with extensions
    //! and trailers, gzip/deflate, `text/event-stream` bodies, bodies delimited by close, a
    //! capture gap. The same stream parsed whole and cut into pieces must give the same events.
    use super::super::{check_http, HttpInput};
    use mcpwarden::http::MessageKind;

    pub fn run(data: &[u8]) {
        if let Some(input) = HttpInput::parse(data) {
            check_http(MessageKind::Response, &input);
        }
    }
}

pub mod jwt {
    //! JWT decoding and verification (`mcp::decode_jwt`, `JwtKeys`): bearer tokens from the wire,
    //! and key material from configuration files (PEM, DER, JWKS). Input: a mode byte, then
    //! either a token (decoded, then verified against fixed keys) or key material (parsed as
    //! PEM, JWKS and DER, then used to verify fixed tokens). A token accepted as verified must
    //! carry the claims it decoded to.
    use std::sync::OnceLock;

    use super::super::jwt_material::{HS256_SECRET, JWKS, PEM, TOKENS};
    use mcpwarden::mcp::{decode_jwt, JwtKeySource, JwtKeys, Verification};

    /// 2030-01-01: inside the fixed tokens' validity.
    const NOW: u64 = 1_893_456_000;

    fn fixed_keys() -> &'static JwtKeys {
        static KEYS: OnceLock<JwtKeys> = OnceLock::new();
        KEYS.get_or_init(|| {
            JwtKeys::from_sources(&[
                JwtKeySource::Hs256Secret(HS256_SECRET.to_vec()),
                JwtKeySource::Jwks(JWKS.to_string()),
                JwtKeySource::Pem(PEM.to_string()),
            ])
            .expect("the fixed fuzzing keys parse")
        })
    }

    pub fn run(data: &[u8]) {
        let Some((mode, rest)) = data.split_first() else {
            return;
        };
        if mode % 2 == 0 {
            let token = String::from_utf8_lossy(rest);
            if let Ok(jwt) = decode_jwt(&token) {
                let v = fixed_keys().verify(&token, &jwt, Some(NOW));
                if v == Verification::Verified {
                    // Only the fixed tokens (or equivalent encodings of them) verify.
                    assert!(jwt.alg.is_some(), "verified a token without alg: {token:?}");
                }
            }
        } else {
            let text = String::from_utf8_lossy(rest).into_owned();
            let (keys, _errors) = JwtKeys::from_sources_lenient(&[
                JwtKeySource::Pem(text.clone()),
                JwtKeySource::Jwks(text),
                JwtKeySource::Der(rest.to_vec()),
            ]);
            for token in TOKENS {
                if let Ok(jwt) = decode_jwt(token) {
                    let _ = keys.verify(token, &jwt, Some(NOW));
                }
            }
        }
    }
}

pub mod rpc_decode {
    //! JSON-RPC decoding of one body or SSE `data`: single messages and batches, the size and
    //! depth bounds (checked before parsing), ids, and classification of every element.
    use mcpwarden::rpc::{decode, decode_with, DecodeLimits};

    pub fn run(data: &[u8]) {
        let whole = decode(data);
        if let Ok(payload) = &whole {
            for m in payload.messages.iter().flatten() {
                let _ = (m.method(), m.id().map(|id| id.to_value()));
            }
        }
        // Tight bounds: the limit paths, and nothing a tighter bound accepts may differ.
        let tight = DecodeLimits {
            max_body_bytes: 64,
            max_depth: 4,
        };
        if let Ok(payload) = decode_with(data, &tight) {
            assert_eq!(
                Some(&payload),
                whole.as_ref().ok(),
                "tight limits accepted a body differently from the defaults"
            );
        }
    }
}

pub mod sse {
    //! Server-Sent Events (the http module keeps its SSE parser private, so it is reached
    //! through a response): the input is the body of a `text/event-stream` response delimited
    //! by close, so every mutation lands in field lines, line endings, `data:` joins, `id:`,
    //! `retry:`, comments and the per-event bound.
    use super::super::{check_http, HttpInput, HTTP_INPUT_HEADER};
    use mcpwarden::http::MessageKind;

    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";

    pub fn run(data: &[u8]) {
        let mut stream = data[..data.len().min(HTTP_INPUT_HEADER)].to_vec();
        stream.extend_from_slice(HEAD);
        stream.extend_from_slice(data.get(HTTP_INPUT_HEADER..).unwrap_or_default());
        if let Some(input) = HttpInput::parse(&stream) {
            check_http(MessageKind::Response, &input);
        }
    }
}

pub mod record_formats {
    //! The agent's other byte and text decoders: ring-buffer records (kernel ABI structs),
    //! recording lines (`mcpwarden replay` input), tracepoint `format` files and
    //! `/proc/net/tcp` rows. None may panic; a decoded recording line re-encodes to itself.
    pub fn run(data: &[u8]) {
        let _ = mcpwarden::capture::events::decode(data);
        let _ = mcpwarden::capture::events::hold_of(data);
        let text = String::from_utf8_lossy(data);
        let _ = mcpwarden::capture::tpformat::parse_format(&text);
        let _ = mcpwarden::conn::procfs::find_inode(&text, "1");
        for (i, line) in text.lines().enumerate() {
            if let Ok(ev) = mcpwarden::replay::event_from_line(line, i + 1) {
                let again = mcpwarden::replay::event_to_line(&ev);
                let back = mcpwarden::replay::event_from_line(&again, i + 1);
                assert_eq!(back.ok(), Some(ev), "{again}");
            }
        }
    }
}

/// A fuzz target's body: takes the raw input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `cargo fuzz list`).
pub const TARGETS: &[(&str, Target)] = &[
    ("conn_table", conn_table::run),
    ("record_formats", record_formats::run),
    ("http_chunked", http_chunked::run),
    ("http_request", http_request::run),
    ("http_response", http_response::run),
    ("jwt", jwt::run),
    ("rpc_decode", rpc_decode::run),
    ("sse", sse::run),
];
