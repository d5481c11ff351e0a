//! JSON-RPC decoding of one body or SSE `data`: single messages and batches, the size and
//! depth bounds (checked before parsing), ids, and classification of every element.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpwarden::rpc::{decode, decode_with, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    if let Ok(payload) = &whole {
        for m in payload.messages.iter().flatten() {
            let _ = (m.method(), m.id().map(|id| id.to_value()));
        }
    }
    // Tight bounds: the limit paths, and nothing a tighter bound accepts may differ.
    let tight = DecodeLimits {
        max_body_bytes: 64,
        max_depth: 4,
    };
    if let Ok(payload) = decode_with(data, &tight) {
        assert_eq!(
            Some(&payload),
            whole.as_ref().ok(),
            "tight limits accepted a body differently from the defaults"
        );
    }
});
