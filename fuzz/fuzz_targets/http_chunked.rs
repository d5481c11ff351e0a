//! The chunked transfer coding: the input is the body of a response whose head says
//! `Transfer-Encoding: chunked` (JSON, SSE, or gzip-coded JSON, chosen by the cut seed), so
//! every mutation lands in the chunk-size lines, extensions, data and trailers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::http_chunked::run(data));
