//! The whole pure pipeline (conn → http → rpc → mcp) from arbitrary sequences of kernel
//! events (opens, data with gaps and overlaps, closes, fd reuse, ticks; see
//! `mcpwarden_fuzz::program`), ending with `finish`; every record must serialise.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::conn_table::run(data));
