//! The chunked transfer coding: the input is the body of a response whose head says
//! `Transfer-Encoding: chunked` (JSON, SSE, or gzip-coded JSON, chosen by the cut seed), so
//! every mutation lands in the chunk-size lines, extensions, data and trailers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpwarden::http::MessageKind;
use mcpwarden_fuzz::{check_http, HttpInput, HTTP_INPUT_HEADER};

const HEADS: [&[u8]; 3] = [
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some(first) = data.first() else { return };
    let head = HEADS[usize::from(*first) % HEADS.len()];
    let mut stream = data[..data.len().min(HTTP_INPUT_HEADER)].to_vec();
    stream.extend_from_slice(head);
    stream.extend_from_slice(data.get(HTTP_INPUT_HEADER..).unwrap_or_default());
    if let Some(input) = HttpInput::parse(&stream) {
        check_http(MessageKind::Response, &input);
    }
});
