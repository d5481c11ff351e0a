//! JWT decoding and verification (`mcp::decode_jwt`, `JwtKeys`): bearer tokens from the wire,
//! and key material from configuration files (PEM, DER, JWKS). Input: a mode byte, then
//! either a token (decoded, then verified against fixed keys) or key material (parsed as
//! PEM, JWKS and DER, then used to verify fixed tokens). A token accepted as verified must
//! carry the claims it decoded to.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpwarden_fuzz::targets::jwt::run(data));
