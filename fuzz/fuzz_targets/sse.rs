//! Server-Sent Events (the http module keeps its SSE parser private, so it is reached
//! through a response): the input is the body of a `text/event-stream` response delimited
//! by close, so every mutation lands in field lines, line endings, `data:` joins, `id:`,
//! `retry:`, comments and the per-event bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpwarden::http::MessageKind;
use mcpwarden_fuzz::{check_http, HttpInput, HTTP_INPUT_HEADER};

const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let mut stream = data[..data.len().min(HTTP_INPUT_HEADER)].to_vec();
    stream.extend_from_slice(HEAD);
    stream.extend_from_slice(data.get(HTTP_INPUT_HEADER..).unwrap_or_default());
    if let Some(input) = HttpInput::parse(&stream) {
        check_http(MessageKind::Response, &input);
    }
});
