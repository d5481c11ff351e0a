//! JSON-RPC decoding of one body or SSE `data`: single messages and batches, the size and
//! depth bounds (checked before parsing), ids, and classification of every element.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::rpc_decode::run(data));
