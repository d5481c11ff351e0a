//! The response direction of an HTTP/1.x stream, told which request methods it answers
//! (HEAD: no body; CONNECT: a tunnel): status lines, 1xx, chunked bodies with extensions
//! and trailers, gzip/deflate, `text/event-stream` bodies, bodies delimited by close, a
//! capture gap. The same stream parsed whole and cut into pieces must give the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::http_response::run(data));
