//! The request direction of an HTTP/1.x stream: heads, framing, chunked and coded bodies,
//! pipelining, resynchronisation after garbage and after a capture gap. The same stream
//! parsed whole and cut into pieces must give the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::http_request::run(data));
