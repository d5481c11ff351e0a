//! Whole-parser specifications: realistic MCP streamable-HTTP exchanges and broken
//! streams. Every script is replayed whole, split in two at every offset of every piece,
//! and byte by byte; all replays must give exactly the same events.

use super::decode::tests::{gzip, raw_deflate, zlib};
use super::*;

/// One thing that happens to the stream.
#[derive(Clone, Copy)]
enum Step<'a> {
    Data(&'a [u8]),
    Gap(u64),
    Close,
    /// `expect_response_to(method)`.
    Expect(&'a str),
}
use Step::{Close, Data, Expect, Gap};

/// How a replay cuts the data of step `k` into pieces.
type Cutter<'c> = &'c dyn Fn(usize, &[u8]) -> Vec<Vec<u8>>;

fn replay(
    kind: MessageKind,
    limits: Limits,
    steps: &[Step<'_>],
    pieces: Cutter<'_>,
) -> Vec<HttpEvent> {
    let mut p = HttpParser::new(kind, limits);
    let mut out = Vec::new();
    for (k, step) in steps.iter().enumerate() {
        match *step {
            Data(d) => {
                for piece in pieces(k, d) {
                    p.push(&piece, 0, &mut out);
                }
            }
            Gap(n) => p.gap(n, 0, &mut out),
            Close => p.close(0, &mut out),
            Expect(m) => p.expect_response_to(m),
        }
    }
    out
}

/// Replays `steps` every way and checks they agree; returns the events.
fn check_with(kind: MessageKind, limits: Limits, steps: &[Step<'_>]) -> Vec<HttpEvent> {
    let whole = replay(kind, limits, steps, &|_, d| vec![d.to_vec()]);
    for (k, step) in steps.iter().enumerate() {
        let Data(d) = *step else { continue };
        for i in 0..=d.len() {
            let split = replay(kind, limits, steps, &|j, d| {
                if j == k {
                    vec![d[..i].to_vec(), d[i..].to_vec()]
                } else {
                    vec![d.to_vec()]
                }
            });
            assert_eq!(split, whole, "step {k} split at byte {i}");
        }
    }
    let bytewise = replay(kind, limits, steps, &|_, d| {
        d.chunks(1).map(<[u8]>::to_vec).collect()
    });
    assert_eq!(bytewise, whole, "byte by byte");
    let odd = replay(kind, limits, steps, &|_, d| {
        d.chunks(7).map(<[u8]>::to_vec).collect()
    });
    assert_eq!(odd, whole, "pieces of 7 bytes");
    whole
}

fn check(kind: MessageKind, steps: &[Step<'_>]) -> Vec<HttpEvent> {
    check_with(kind, Limits::default(), steps)
}

/// One line per event, for readable expectations.
fn describe(events: &[HttpEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            HttpEvent::Request(r) => format!("request {} {}", r.method, r.path),
            HttpEvent::Response(r) => format!("response {}", r.status),
            HttpEvent::Body { data, .. } => format!("body {}", String::from_utf8_lossy(data)),
            HttpEvent::Sse(s) => format!(
                "sse event={} id={} retry={} data={}",
                s.event.as_deref().unwrap_or("-"),
                s.id.as_deref().unwrap_or("-"),
                s.retry_ms.map_or("-".to_string(), |r| r.to_string()),
                s.data
            ),
            HttpEvent::Partial {
                data,
                size,
                lost,
                sse,
                ..
            } => format!(
                "partial{} size={size} lost={lost} {}",
                if *sse { " sse" } else { "" },
                String::from_utf8_lossy(data)
            ),
            HttpEvent::CutPrefix { data, size, .. } => {
                format!("cut-prefix size={size} {}", String::from_utf8_lossy(data))
            }
            HttpEvent::End { .. } => "end".to_string(),
            HttpEvent::Error(e) => format!("error {e:?}"),
        })
        .collect()
}

const REQ: MessageKind = MessageKind::Request;
const RESP: MessageKind = MessageKind::Response;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp","version":"2.3.0"}}}"#;

fn post_mcp(body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:8000\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The chunked framing of `parts`, one chunk each, then the last chunk.
fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ndate: Sat, 22 Aug 2026 10:00:00 GMT\r\nserver: uvicorn\r\n\
cache-control: no-cache, no-transform\r\nconnection: keep-alive\r\ncontent-type: text/event-stream\r\n\
mcp-session-id: fa60cf06151643aa9614f08ced9ea783\r\nx-accel-buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------- requests

#[test]
fn a_post_to_mcp_gives_its_head_and_json_body() {
    let req = post_mcp(INITIALIZE, "");
    let ev = check(REQ, &[Data(&req)]);
    assert_eq!(
        describe(&ev),
        vec![
            "request POST /mcp".to_string(),
            format!("body {INITIALIZE}"),
            "end".into()
        ]
    );
    let HttpEvent::Request(head) = &ev[0] else {
        panic!("first event should be the request head, got {:?}", ev[0]);
    };
    assert_eq!(head.version_minor, 1);
    assert_eq!(head.headers.get("Content-Type"), Some("application/json"));
    assert_eq!(
        head.headers.get("ACCEPT"),
        Some("application/json, text/event-stream")
    );
}

#[test]
fn a_delete_ending_the_session_has_no_body() {
    let req = b"DELETE /mcp HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nmcp-session-id: fa60cf06\r\n\r\n";
    let ev = check(REQ, &[Data(req)]);
    assert_eq!(describe(&ev), vec!["request DELETE /mcp", "end"]);
}

#[test]
fn pipelined_requests_are_parsed_back_to_back() {
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let stream = cat(&[
        &post_mcp(INITIALIZE, ""),
        &post_mcp(notification, "mcp-session-id: s1\r\nmcp-protocol-version: 2025-11-25\r\n"),
        b"GET /mcp?stream=1 HTTP/1.1\r\naccept: text/event-stream\r\nCache-Control: no-store\r\n\r\n",
        b"DELETE /mcp HTTP/1.1\r\nmcp-session-id: s1\r\n\r\n",
    ]);
    let ev = check(REQ, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "request POST /mcp".to_string(),
            format!("body {INITIALIZE}"),
            "end".into(),
            "request POST /mcp".into(),
            format!("body {notification}"),
            "end".into(),
            "request GET /mcp?stream=1".into(),
            "end".into(),
            "request DELETE /mcp".into(),
            "end".into(),
        ]
    );
}

#[test]
fn a_chunked_request_with_extensions_and_trailers() {
    let stream = b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\n{\"a\":\r\n3 ; name=\"q;x\" \r\n12}\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n\
GET /next HTTP/1.1\r\n\r\n";
    let ev = check(REQ, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "request POST /mcp",
            "body {\"a\":12}",
            "end",
            "request GET /next",
            "end"
        ]
    );
}

#[test]
fn expect_100_continue_request_then_its_body() {
    let stream = b"POST /mcp HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}";
    let ev = check(REQ, &[Data(stream)]);
    assert_eq!(describe(&ev), vec!["request POST /mcp", "body {}", "end"]);
}

#[test]
fn blank_lines_between_messages_are_ignored() {
    let stream = b"GET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n\n";
    let ev = check(REQ, &[Data(stream), Close]);
    assert_eq!(
        describe(&ev),
        vec!["request GET /a", "end", "request GET /b", "end"]
    );
}

#[test]
fn an_http_1_0_request_reports_its_version() {
    let ev = check(REQ, &[Data(b"GET / HTTP/1.0\r\n\r\n")]);
    let HttpEvent::Request(head) = &ev[0] else {
        panic!("expected a request head, got {ev:?}");
    };
    assert_eq!(head.version_minor, 0);
}

// ---------------------------------------------------------------- responses

#[test]
fn an_sse_response_emits_each_mcp_message_event() {
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1,"total":2}}"#;
    let result = r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"3"}],"isError":false,"structuredContent":{"result":3}}}"#;
    let e1 = format!("event: message\r\ndata: {progress}\r\n\r\n");
    let e2 = format!("event: message\r\ndata: {result}\r\n\r\n");
    // The second event is split across two chunks.
    let (a, b) = e2.as_bytes().split_at(20);
    let stream = cat(&[SSE_HEAD, &chunked(&[e1.as_bytes(), a, b])]);
    let ev = check(RESP, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200".to_string(),
            format!("sse event=message id=- retry=- data={progress}"),
            format!("sse event=message id=- retry=- data={result}"),
            "end".into(),
        ]
    );
    let HttpEvent::Response(head) = &ev[0] else {
        panic!("expected the response head first, got {:?}", ev[0]);
    };
    assert_eq!(head.reason, "OK");
    assert_eq!(
        head.headers.get("Mcp-Session-Id"),
        Some("fa60cf06151643aa9614f08ced9ea783")
    );
}

#[test]
fn sse_events_are_emitted_as_their_chunks_arrive() {
    let first = chunked(&[b"event: message\ndata: {\"id\":1}\n\n"]);
    // Everything but the last chunk.
    let open = cat(&[SSE_HEAD, &first[..first.len() - 5]]);
    let mut p = HttpParser::new(RESP, Limits::default());
    let mut out = Vec::new();
    p.push(&open, 1, &mut out);
    assert_eq!(
        describe(&out),
        vec![
            "response 200",
            "sse event=message id=- retry=- data={\"id\":1}"
        ]
    );
    p.push(b"0\r\n\r\n", 2, &mut out);
    assert_eq!(out.last(), Some(&HttpEvent::End { ts_ns: 2 }));
}

#[test]
fn sse_multi_line_data_crlf_lf_and_priming_events() {
    let body = b"id: x\nretry: 100\ndata: \n\n\
: keep-alive comment\r\n\
event: message\r\ndata: line one\r\ndata: line two\r\nid: 2\r\n\r\n\
data:no space\rdata:  two spaces\r\r";
    let stream = cat(&[SSE_HEAD, &chunked(&[&body[..30], &body[30..]])]);
    let ev = check(RESP, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "sse event=- id=x retry=100 data=",
            "sse event=message id=2 retry=- data=line one\nline two",
            "sse event=- id=- retry=- data=no space\n two spaces",
            "end",
        ]
    );
}

#[test]
fn an_accepted_notification_gets_202_with_no_body() {
    let stream =
        b"HTTP/1.1 202 Accepted\r\ndate: x\r\nserver: uvicorn\r\ncontent-length: 0\r\n\r\n";
    let ev = check(RESP, &[Data(stream)]);
    assert_eq!(describe(&ev), vec!["response 202", "end"]);
}

#[test]
fn a_404_for_an_unknown_session_carries_a_json_error() {
    let body =
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#;
    let stream = format!(
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let ev = check(RESP, &[Data(stream.as_bytes())]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 404".to_string(),
            format!("body {body}"),
            "end".into()
        ]
    );
}

#[test]
fn keep_alive_carries_three_responses_back_to_back() {
    let json = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]}}"#;
    let stream = cat(&[
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        )
        .as_bytes(),
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        SSE_HEAD,
        &chunked(&[b"event: message\ndata: {}\n\n"]),
    ]);
    let ev = check(RESP, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200".to_string(),
            format!("body {json}"),
            "end".into(),
            "response 202".into(),
            "end".into(),
            "response 200".into(),
            "sse event=message id=- retry=- data={}".into(),
            "end".into(),
        ]
    );
}

#[test]
fn a_gzip_body_is_decoded_with_content_length_and_chunked() {
    let z = gzip(INITIALIZE.as_bytes());
    let stream = cat(&[
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            z.len()
        )
        .as_bytes(),
        &z,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: GZIP\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked(&[&z[..10], &z[10..]]),
    ]);
    let ev = check(RESP, &[Data(&stream)]);
    let expected = vec![
        "response 200".to_string(),
        format!("body {INITIALIZE}"),
        "end".into(),
        "response 200".into(),
        format!("body {INITIALIZE}"),
        "end".into(),
    ];
    assert_eq!(describe(&ev), expected);
}

#[test]
fn deflate_bodies_may_be_zlib_wrapped_or_raw() {
    for body in [zlib(b"{\"ok\":true}"), raw_deflate(b"{\"ok\":true}")] {
        let stream = cat(&[
            format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            &body,
        ]);
        let ev = check(RESP, &[Data(&stream)]);
        assert_eq!(
            describe(&ev),
            vec!["response 200", "body {\"ok\":true}", "end"]
        );
    }
}

#[test]
fn a_gzip_sse_stream_is_decoded_incrementally() {
    let events = b"event: message\ndata: 1\n\nevent: message\ndata: 2\n\n";
    let z = gzip(events);
    let stream = cat(&[
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n\r\n",
        &z,
    ]);
    let ev = check(RESP, &[Data(&stream), Close]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "sse event=message id=- retry=- data=1",
            "sse event=message id=- retry=- data=2",
            "end"
        ]
    );
}

#[test]
fn a_compressed_sse_stream_yields_each_event_once_its_bytes_are_flushed() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(b"event: message\ndata: 1\n\n");
    let _ = enc.flush();
    let first = std::mem::take(enc.get_mut());
    let _ = enc.write_all(b"event: message\ndata: 2\n\n");
    let rest = enc.finish().unwrap_or_default();
    let mut p = HttpParser::new(RESP, Limits::default());
    let mut out = Vec::new();
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n";
    p.push(head, 1, &mut out);
    let first_chunk = cat(&[format!("{:x}\r\n", first.len()).as_bytes(), &first, b"\r\n"]);
    p.push(&first_chunk, 2, &mut out);
    assert_eq!(
        describe(&out),
        vec!["response 200", "sse event=message id=- retry=- data=1"]
    );
    p.push(&chunked(&[&rest]), 3, &mut out);
    assert_eq!(
        describe(&out[2..]),
        vec!["sse event=message id=- retry=- data=2", "end"]
    );
}

#[test]
fn a_connect_request_turns_the_stream_into_a_tunnel() {
    let stream =
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01 tls bytes";
    let ev = check(REQ, &[Data(stream), Close]);
    assert_eq!(
        describe(&ev),
        vec!["request CONNECT example.com:443", "end"]
    );
    let resp = b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03 tls bytes";
    let ev = check(RESP, &[Expect("CONNECT"), Data(resp), Close]);
    assert_eq!(describe(&ev), vec!["response 200", "end"]);
}

#[test]
fn the_parser_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<HttpParser>();
    assert_send::<HttpEvent>();
}

#[test]
fn a_head_response_has_no_body_despite_its_content_length() {
    let stream = b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
    let ev = check(RESP, &[Expect("HEAD"), Expect("GET"), Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec!["response 200", "end", "response 200", "body {}", "end"]
    );
}

#[test]
fn responses_204_and_304_have_no_body() {
    let stream = b"HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\netag: \"x\"\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx";
    let ev = check(RESP, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 204",
            "end",
            "response 304",
            "end",
            "response 200",
            "body x",
            "end"
        ]
    );
}

#[test]
fn a_100_continue_precedes_the_final_response_without_an_end() {
    let stream = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    // The 100 must not use up the expectation of the final response.
    let ev = check(RESP, &[Expect("POST"), Expect("HEAD"), Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 100",
            "response 200",
            "body {}",
            "end",
            "response 200",
            "end"
        ]
    );
}

#[test]
fn a_response_without_length_ends_at_close() {
    let stream = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\"}";
    let ev = check(RESP, &[Data(stream), Close]);
    assert_eq!(
        describe(&ev),
        vec!["response 200", "body {\"jsonrpc\":\"2.0\"}", "end"]
    );
}

#[test]
fn a_legacy_sse_stream_without_length_ends_at_close() {
    let stream = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
event: endpoint\ndata: /messages/?session_id=0af1\n\n: ping\n\nevent: message\ndata: {}\n\n";
    let ev = check(RESP, &[Data(stream), Close]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "sse event=endpoint id=- retry=- data=/messages/?session_id=0af1",
            "sse event=message id=- retry=- data={}",
            "end"
        ]
    );
}

#[test]
fn switching_protocols_stops_http_parsing() {
    let stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let ev = check(RESP, &[Data(stream), Close]);
    assert_eq!(describe(&ev), vec!["response 101", "end"]);
}

// ---------------------------------------------------------------- timestamps

#[test]
fn events_carry_the_kernel_time_of_their_bytes() {
    let mut p = HttpParser::new(RESP, Limits::default());
    let mut out = Vec::new();
    p.push(b"\r\nHTTP/1.1 200 OK\r\ncontent-le", 10, &mut out);
    p.push(b"ngth: 4\r\n\r\n{", 20, &mut out);
    p.push(b"}", 30, &mut out);
    p.push(
        b"{}HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n",
        40,
        &mut out,
    );
    p.push(b"\r\n", 50, &mut out);
    let mut expected = vec![
        ("response", 10),
        ("body first", 20),
        ("body last", 40),
        ("end", 40),
        ("response", 40),
        ("end", 50),
    ]
    .into_iter();
    for e in &out {
        match e {
            HttpEvent::Response(r) => assert_eq!(Some(("response", r.ts_ns)), expected.next()),
            HttpEvent::Body {
                first_ts_ns,
                last_ts_ns,
                ..
            } => {
                assert_eq!(Some(("body first", *first_ts_ns)), expected.next());
                assert_eq!(Some(("body last", *last_ts_ns)), expected.next());
            }
            HttpEvent::End { ts_ns } => assert_eq!(Some(("end", *ts_ns)), expected.next()),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(expected.next(), None);
}

#[test]
fn a_message_resumed_from_buffered_bytes_keeps_its_first_piece_time() {
    let mut p = HttpParser::new(REQ, Limits::default());
    let mut out = Vec::new();
    p.push(b"GET /a HTTP/1.1\r\n\r\nGET /b HT", 1, &mut out);
    p.push(b"TP/1.1\r\n", 2, &mut out);
    p.push(b"\r\n", 3, &mut out);
    let stamps: Vec<(String, u64)> = out
        .iter()
        .filter_map(|e| match e {
            HttpEvent::Request(r) => Some((r.path.clone(), r.ts_ns)),
            HttpEvent::End { ts_ns } => Some(("end".into(), *ts_ns)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stamps,
        vec![
            ("/a".into(), 1),
            ("end".into(), 1),
            ("/b".into(), 1),
            ("end".into(), 3)
        ]
    );
}

#[test]
fn an_sse_event_carries_the_time_of_the_piece_that_completed_it() {
    let mut p = HttpParser::new(RESP, Limits::default());
    let mut out = Vec::new();
    p.push(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n",
        5,
        &mut out,
    );
    p.push(b"\n", 6, &mut out);
    p.close(7, &mut out);
    let HttpEvent::Sse(e) = &out[1] else {
        panic!("expected an SSE event, got {out:?}");
    };
    assert_eq!(e.ts_ns, 6);
    assert_eq!(out[2], HttpEvent::End { ts_ns: 7 });
}

// ---------------------------------------------------------------- broken streams

#[test]
fn garbage_is_reported_then_the_next_request_is_parsed() {
    let stream = cat(&[b"\x16\x03\x01\x02\x00 hello\r\n\r\n", &post_mcp("{}", "")]);
    let ev = check(REQ, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            r#"error MalformedHead { reason: "invalid token; first line \"\\x16\\x03\\x01\\x02\\x00 hello\"" }"#,
            "request POST /mcp",
            "body {}",
            "end"
        ]
    );
}

#[test]
fn a_bad_header_line_drops_the_message() {
    let stream = b"GET /a HTTP/1.1\r\nBad Header\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    let ev = check(REQ, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            r#"error MalformedHead { reason: "invalid header name; first line \"GET /a HTTP/1.1\"" }"#,
            "request GET /b",
            "end"
        ]
    );
}

#[test]
fn a_bad_chunk_size_is_reported_then_the_next_response_is_parsed() {
    let stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\
HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
    let ev = check(RESP, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            r#"error BadChunk { reason: "expected a hex chunk size, found 'z'" }"#,
            "response 202",
            "end"
        ]
    );
}

#[test]
fn an_oversized_head_is_reported_then_the_next_message_is_parsed() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let stream = cat(&[
        b"GET /a HTTP/1.1\r\nX-Big: ",
        &[b'a'; 100],
        b"\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    ]);
    let ev = check_with(REQ, limits, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec!["error HeadTooLarge { limit: 64 }", "request GET /b", "end"]
    );
}

#[test]
fn endless_garbage_stays_bounded() {
    let limits = Limits {
        max_head_bytes: 1024,
        ..Limits::default()
    };
    let mut p = HttpParser::new(REQ, limits);
    let mut out = Vec::new();
    for _ in 0..100 {
        p.push(&[b'x'; 1000], 0, &mut out);
        assert!(
            p.buffered_bytes() <= 1024,
            "buffered {}",
            p.buffered_bytes()
        );
    }
    assert_eq!(describe(&out), vec!["error HeadTooLarge { limit: 1024 }"]);
}

#[test]
fn an_oversized_body_is_reported_by_its_head_and_parsing_goes_on() {
    let limits = Limits {
        max_body_bytes: 8,
        ..Limits::default()
    };
    let stream = cat(&[
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        &chunked(&[b"01234", b"56789", b"ab"]),
        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n01234567",
        b"HTTP/1.1 200 OK\r\n\r\n0123456789abc",
    ]);
    let ev = check_with(RESP, limits, &[Data(&stream), Close]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "error BodyTooLarge { declared: 10, limit: 8 }",
            "partial size=10 lost=0 0123456789",
            "end",
            "response 200",
            "error BodyTooLarge { declared: 10, limit: 8 }",
            "partial size=12 lost=0 0123456789ab",
            "end",
            "response 200",
            "body 01234567",
            "end",
            "response 200",
            "partial size=13 lost=0 0123456789abc",
            "error BodyTooLarge { declared: 13, limit: 8 }",
            "end",
        ]
    );
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_body_limit() {
    let limits = Limits {
        max_body_bytes: 1000,
        ..Limits::default()
    };
    let z = gzip(&[b'a'; 5000]);
    assert!(z.len() < 1000);
    let stream = cat(&[
        format!(
            "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            z.len()
        )
        .as_bytes(),
        &z,
    ]);
    let ev = check_with(RESP, limits, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            r#"error Decompress { encoding: "gzip", reason: "the decoded body is larger than the 1000-byte limit (Limits::max_body_bytes)" }"#,
            "end"
        ]
    );
}

#[test]
fn a_corrupt_or_unsupported_coding_drops_the_body_but_not_the_message() {
    let stream =
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 12\r\n\r\nhello world!\
HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 0\r\n\r\n";
    let ev = check(RESP, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            r#"error Decompress { encoding: "gzip", reason: "invalid gzip header" }"#,
            "end",
            "response 200",
            r#"error Decompress { encoding: "br", reason: "unsupported coding \"br\"" }"#,
            "end",
            "response 200",
            "end",
        ]
    );
}

#[test]
fn a_request_with_an_undeterminable_length_is_refused() {
    let stream =
        b"POST /mcp HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\nxxxxGET /b HTTP/1.1\r\n\r\n";
    let ev = check(REQ, &[Data(stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            r#"error MalformedHead { reason: "request Transfer-Encoding \"gzip\" does not end in chunked, so its body length cannot be known" }"#,
            "request GET /b",
            "end"
        ]
    );
}

#[test]
fn a_close_inside_a_message_reports_what_was_truncated() {
    let body = check(
        REQ,
        &[
            Data(b"POST /mcp HTTP/1.1\r\ncontent-length: 10\r\n\r\n{\"a\""),
            Close,
        ],
    );
    assert_eq!(
        describe(&body),
        vec![
            "request POST /mcp",
            "error Truncated { part: Body, received: 4, expected: Some(10) }"
        ]
    );
    let head = check(REQ, &[Data(b"\r\nPOST /mcp HTTP/1.1\r\nhost"), Close]);
    assert_eq!(
        describe(&head),
        vec!["error Truncated { part: Head, received: 24, expected: None }"]
    );
    let chunks = check(
        RESP,
        &[
            Data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab"),
            Close,
        ],
    );
    assert_eq!(
        describe(&chunks),
        vec![
            "response 200",
            "error Truncated { part: Body, received: 2, expected: None }"
        ]
    );
}

#[test]
fn a_close_inside_an_sse_stream_ends_it_and_reports_a_partial_event() {
    let stream = cat(&[SSE_HEAD, b"20\r\ndata: complete\n\ndata: partial"]);
    let ev = check(RESP, &[Data(&stream), Close]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "sse event=- id=- retry=- data=complete",
            "error Truncated { part: SseEvent, received: 13, expected: None }",
            "end",
        ]
    );
}

#[test]
fn an_oversized_sse_event_is_skipped_and_the_stream_goes_on() {
    let limits = Limits {
        max_sse_event_bytes: 32,
        ..Limits::default()
    };
    let big = format!("data: {}\n\n", "x".repeat(40));
    let stream = cat(&[SSE_HEAD, &chunked(&[big.as_bytes(), b"data: small\n\n"])]);
    let ev = check_with(RESP, limits, &[Data(&stream)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "error SseEventTooLarge { limit: 32 }",
            // Still reported from its first 32 bytes, with its real size.
            "partial sse size=46 lost=0 xxxxxxxxxxxxxxxxxxxxxxxxxx",
            "sse event=- id=- retry=- data=small",
            "end"
        ]
    );
}

#[test]
fn a_gap_in_a_head_resynchronises_at_the_next_request() {
    let ev = check(
        REQ,
        &[
            Data(b"POST /mcp HTTP/1.1\r\ncontent-le"),
            Gap(40),
            Data(b"\"id\":1}POST /mcp HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec![
            "error Gap { lost: 40 }",
            "request POST /mcp",
            "body {}",
            "end"
        ]
    );
}

#[test]
fn a_gap_between_messages_resynchronises_silently() {
    let ev = check(
        RESP,
        &[
            Expect("GET"),
            Data(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"),
            Gap(100),
            Data(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec!["response 202", "end", "response 200", "body {}", "end"]
    );
}

#[test]
fn a_gap_inside_a_length_body_reports_that_message_cut_and_goes_on() {
    let ev = check(
        REQ,
        &[
            Data(b"POST /mcp HTTP/1.1\r\ncontent-length: 21\r\n\r\n{\"jsonrpc\""),
            Gap(5),
            Data(b"id\":1}GET /next HTTP/1.1\r\n\r\n"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec![
            "request POST /mcp",
            "error Gap { lost: 5 }",
            "partial size=21 lost=5 {\"jsonrpc\"",
            "end",
            "request GET /next",
            "end"
        ]
    );
}

#[test]
fn a_gap_past_the_end_of_a_body_resynchronises() {
    let ev = check(
        RESP,
        &[
            Data(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"jsonrpc\""),
            Gap(30),
            Data(b"ntent-length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "error Gap { lost: 30 }",
            "response 404",
            "end"
        ]
    );
}

#[test]
fn a_gap_inside_an_sse_chunk_skips_the_damaged_event_and_keeps_the_stream() {
    let first = b"event: message\ndata: {\"id\":1}\n\nevent: message\ndata: {\"id\":2}\n\n";
    let lost_at = 40;
    let head_and_start = cat(&[
        SSE_HEAD,
        format!("{:x}\r\n", first.len()).as_bytes(),
        &first[..lost_at],
    ]);
    let rest = cat(&[
        &first[lost_at + 3..],
        b"\r\n",
        &chunked(&[b"event: message\ndata: {\"id\":3}\n\n"]),
    ]);
    let ev = check(RESP, &[Data(&head_and_start), Gap(3), Data(&rest)]);
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "sse event=message id=- retry=- data={\"id\":1}",
            "error Gap { lost: 3 }",
            "sse event=message id=- retry=- data={\"id\":3}",
            "end",
        ]
    );
}

#[test]
fn a_gap_across_chunk_framing_resynchronises_at_the_next_response() {
    let ev = check(
        RESP,
        &[
            Data(&cat(&[SSE_HEAD, b"5\r\ndata:"])),
            Gap(50),
            Data(b"0\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec![
            "response 200",
            "error Gap { lost: 50 }",
            "response 202",
            "end"
        ]
    );
}

#[test]
fn the_parser_is_reusable_after_close() {
    let ev = check(
        REQ,
        &[
            Data(b"GET /a HTTP/1.1\r\n"),
            Close,
            Data(b"GET /b HTTP/1.1\r\n\r\n"),
        ],
    );
    assert_eq!(
        describe(&ev),
        vec![
            "error Truncated { part: Head, received: 17, expected: None }",
            "request GET /b",
            "end"
        ]
    );
}

#[test]
fn errors_read_as_sentences() {
    let e = HttpError::BodyTooLarge {
        declared: 10,
        limit: 8,
    };
    assert_eq!(
        e.to_string(),
        "HTTP body of 10 bytes is larger than the 8-byte limit (Limits::max_body_bytes); it was skipped"
    );
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of HTTP and SSE (and junk) that, shuffled together, reach every state.
    const FRAGMENTS: &[&[u8]] = &[
        b"POST /mcp HTTP/1.1\r\n",
        b"GET /mcp HTTP/1.1\r\n",
        b"HEAD / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n",
        b"HTTP/1.0 404 Not Found\r\n",
        b"content-length: 5\r\n",
        b"Content-Length: 0\r\n",
        b"transfer-encoding: chunked\r\n",
        b"content-type: text/event-stream\r\n",
        b"content-encoding: gzip\r\n",
        b"content-encoding: deflate\r\n",
        b"X-Folded: a\r\n b\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"5\r\nhello\r\n",
        b"1a;ext=1\r\n",
        b"0\r\n\r\n",
        b"0\r\nTrailer: x\r\n\r\n",
        b"event: message\n",
        b"data: {\"jsonrpc\":\"2.0\"}\n\n",
        b"data: a\r\ndata: b\r\r",
        b"id: x\nretry: 100\ndata: \n\n",
        b": comment\n",
        b"{\"id\":1}",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        b"\x78\x9c",
        b"\x00\xff garbage",
        b"zz\r\n",
    ];

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
                1 => prop::collection::vec(any::<u8>(), 0..8),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (8usize..200, 1usize..64, 4usize..64).prop_map(|(h, b, s)| Limits {
            max_head_bytes: h,
            max_body_bytes: b,
            max_sse_event_bytes: s,
        })
    }

    /// Feeds `segments` (separated by gaps of `lost` bytes), each cut at `cuts`.
    fn feed(
        kind: MessageKind,
        limits: Limits,
        segments: &[Vec<u8>],
        cuts: &[usize],
        close: bool,
    ) -> (Vec<HttpEvent>, usize) {
        let mut p = HttpParser::new(kind, limits);
        p.expect_response_to("GET");
        p.expect_response_to("HEAD");
        let mut out = Vec::new();
        let mut most_buffered = 0;
        for (k, seg) in segments.iter().enumerate() {
            if k > 0 {
                p.gap(7, 0, &mut out);
            }
            let mut at = 0;
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (seg.len() + 1)).collect();
            bounds.sort_unstable();
            bounds.push(seg.len());
            for b in bounds {
                p.push(&seg[at..b], 0, &mut out);
                most_buffered = most_buffered.max(p.buffered_bytes());
                at = b;
            }
        }
        if close {
            p.close(0, &mut out);
        }
        (out, most_buffered)
    }

    proptest! {
        // Failures are not persisted to a file outside this module: the minimal failing
        // input is printed, add it as a named test.
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn events_do_not_depend_on_how_the_stream_is_cut(
            segments in prop::collection::vec(stream(), 1..3),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            limits in limits(),
            response in any::<bool>(),
            close in any::<bool>(),
        ) {
            let kind = if response { RESP } else { REQ };
            let (whole, _) = feed(kind, limits, &segments, &[], close);
            let (cut, most_buffered) = feed(kind, limits, &segments, &cuts, close);
            prop_assert_eq!(&cut, &whole);
            let bytes: Vec<usize> = (0..segments.iter().map(Vec::len).max().unwrap_or(0)).collect();
            let (bytewise, _) = feed(kind, limits, &segments, &bytes, close);
            prop_assert_eq!(&bytewise, &whole);
            // An incomplete head or a resync candidate, never more.
            prop_assert!(most_buffered <= limits.max_head_bytes + 32, "buffered {}", most_buffered);
        }
    }
}

#[test]
fn the_held_back_buffer_is_shrunk_after_a_large_message() {
    let mut p = HttpParser::new(MessageKind::Request, Limits::default());
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":{{"pad":"{}"}}}}"#,
        "a".repeat(200_000)
    );
    let whole = post_mcp(&body, "");
    let mut out = Vec::new();
    // An incomplete head first: the rest arrives in one large read appended to it.
    p.push(&whole[..20], 1, &mut out);
    p.push(&whole[20..], 2, &mut out);
    assert!(
        out.iter()
            .any(|e| matches!(e, HttpEvent::Body { .. } | HttpEvent::Partial { .. })),
        "{:?}",
        describe(&out)
    );
    assert_eq!(p.buffered_bytes(), 0);
    assert!(
        p.buf_capacity() <= parser::KEEP_BUF_CAPACITY,
        "{}",
        p.buf_capacity()
    );
}

/// Body skipping: a compressed body over the limit becomes skippable once its kept head is
/// complete (64 KiB decoded), the hole is accounted as received, and the message is reported
/// from its head with its full size; the next message parses.
#[test]
fn a_skipped_rest_of_a_compressed_body_over_the_limit_ends_it_as_if_read() {
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let mut plain = br#"{"jsonrpc":"2.0","id":3,"result":{"text":""#.to_vec();
    plain.resize(400_000, b'z');
    let z = gzip(&plain);
    // Padding after the gzip stream stands in for the bytes the kernel leaves out.
    let size = z.len() + 500_000;
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {size}\r\n\r\n");
    let mut p = HttpParser::new(RESP, limits);
    let mut out = Vec::new();
    p.push(head.as_bytes(), 0, &mut out);
    assert_eq!(p.skippable_body(), None, "nothing of the body kept yet");
    assert!(!p.skip(10, 0, &mut out), "not skippable: nothing done");
    p.push(&z, 0, &mut out);
    assert_eq!(p.skippable_body(), Some(500_000));
    assert!(!p.skip(500_001, 0, &mut out), "more than is left");
    assert!(p.skip(400_000, 0, &mut out));
    assert_eq!(p.skippable_body(), Some(100_000));
    assert!(p.skip(100_000, 0, &mut out));
    assert_eq!(p.skippable_body(), None);
    p.push(
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
        0,
        &mut out,
    );
    let got: Vec<String> = describe(&out)
        .into_iter()
        .map(|d| d.chars().take(120).collect())
        .collect();
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[0], "response 200");
    assert_eq!(
        got[1],
        format!("error BodyTooLarge {{ declared: {size}, limit: 1024 }}")
    );
    assert!(
        got[2].starts_with(&format!(
            "partial size={size} lost=0 {{\"jsonrpc\":\"2.0\",\"id\":3"
        )),
        "{}",
        got[2]
    );
    match &out[2] {
        HttpEvent::Partial { data, .. } => assert_eq!(data.len(), PARTIAL_HEAD_BYTES),
        e => panic!("{e:?}"),
    }
    assert_eq!(&got[3..], ["end", "response 202", "end"]);
}

/// A body kept whole (under the limit) or a chunked one is never skippable.
#[test]
fn bodies_the_parser_still_reads_are_not_skippable() {
    let mut p = HttpParser::new(REQ, Limits::default());
    let mut out = Vec::new();
    p.push(
        b"POST /mcp HTTP/1.1\r\ncontent-length: 1000000\r\n\r\n{\"a\":",
        0,
        &mut out,
    );
    assert_eq!(p.skippable_body(), None);
    let mut p = HttpParser::new(
        REQ,
        Limits {
            max_body_bytes: 8,
            ..Limits::default()
        },
    );
    p.push(
        b"POST /mcp HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        0,
        &mut out,
    );
    p.push(&[b'x'; 100_000], 0, &mut out);
    assert_eq!(p.skippable_body(), None);
}

#[test]
fn a_request_body_over_the_limit_is_announced_once_its_first_64_kib_are_held() {
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let body = vec![b'x'; PARTIAL_HEAD_BYTES + 5_000];
    let head = format!(
        "POST /mcp HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let next = b"POST /mcp HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
    let stream = cat(&[head.as_bytes(), &body, next]);
    let whole = replay(REQ, limits, &[Data(&stream)], &|_, d| vec![d.to_vec()]);
    let kinds: Vec<String> = describe(&whole)
        .iter()
        .map(|e| e.split(' ').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "error",
            "cut-prefix",
            "partial",
            "end",
            "request",
            "body",
            "end"
        ]
    );
    let Some(HttpEvent::CutPrefix { data, size, .. }) = whole.get(2) else {
        panic!("{whole:?}");
    };
    assert_eq!((data.len(), *size), (PARTIAL_HEAD_BYTES, body.len() as u64));
    // The same events however the stream is cut: at the same byte, once.
    for n in [1_000, 4_096, PARTIAL_HEAD_BYTES, PARTIAL_HEAD_BYTES + 1] {
        let cut = replay(REQ, limits, &[Data(&stream)], &|_, d| {
            d.chunks(n).map(<[u8]>::to_vec).collect()
        });
        assert_eq!(cut, whole, "pieces of {n}");
    }
    // An answer is never announced: only a request waits on the policy.
    let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
    let answer = cat(&[resp.as_bytes(), &body]);
    let ev = replay(RESP, limits, &[Data(&answer)], &|_, d| vec![d.to_vec()]);
    assert!(!describe(&ev).iter().any(|e| e.starts_with("cut-prefix")));
}

#[test]
fn a_held_request_body_over_the_limit_is_announced_with_what_it_has() {
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let mut p = HttpParser::new(REQ, limits);
    let mut out = Vec::new();
    p.push(
        b"POST /mcp HTTP/1.1\r\ncontent-length: 100000\r\n\r\n{\"method\":\"tools/call\"",
        7,
        &mut out,
    );
    assert!(!describe(&out).iter().any(|e| e.starts_with("cut-prefix")));
    p.announce_cut(7, &mut out);
    p.announce_cut(8, &mut out);
    let announced: Vec<String> = describe(&out)
        .into_iter()
        .filter(|e| e.starts_with("cut-prefix"))
        .collect();
    assert_eq!(
        announced,
        ["cut-prefix size=100000 {\"method\":\"tools/call\""],
        "once"
    );
}
