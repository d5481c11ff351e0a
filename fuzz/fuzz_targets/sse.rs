//! Server-Sent Events (the http module keeps its SSE parser private, so it is reached
//! through a response): the input is the body of a `text/event-stream` response delimited
//! by close, so every mutation lands in field lines, line endings, `data:` joins, `id:`,
//! `retry:`, comments and the per-event bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::sse::run(data));
