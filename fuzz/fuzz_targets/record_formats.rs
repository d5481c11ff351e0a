//! Ring-buffer records, recording lines, tracepoint format files and /proc/net/tcp rows
//! (see `mcpwarden_fuzz::targets::record_formats`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::record_formats::run(data));
