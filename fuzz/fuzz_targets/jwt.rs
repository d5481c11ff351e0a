//! JWT decoding and verification (`mcp::decode_jwt`, `JwtKeys`): bearer tokens from the wire,
//! and key material from configuration files (PEM, DER, JWKS). Input: a mode byte, then
//! either a token (decoded, then verified against fixed keys) or key material (parsed as
//! PEM, JWKS and DER, then used to verify fixed tokens). A token accepted as verified must
//! carry the claims it decoded to.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpwarden::mcp::{decode_jwt, JwtKeySource, JwtKeys, Verification};
use mcpwarden_fuzz::jwt_material::{HS256_SECRET, JWKS, PEM, TOKENS};

/// 2030-01-01: inside the fixed tokens' validity.
const NOW: u64 = 1_893_456_000;

fn fixed_keys() -> &'static JwtKeys {
    static KEYS: OnceLock<JwtKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        JwtKeys::from_sources(&[
            JwtKeySource::Hs256Secret(HS256_SECRET.to_vec()),
            JwtKeySource::Jwks(JWKS.to_string()),
            JwtKeySource::Pem(PEM.to_string()),
        ])
        .expect("the fixed fuzzing keys parse")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        if let Ok(jwt) = decode_jwt(&token) {
            let v = fixed_keys().verify(&token, &jwt, Some(NOW));
            if v == Verification::Verified {
                // Only the fixed tokens (or equivalent encodings of them) verify.
                assert!(jwt.alg.is_some(), "verified a token without alg: {token:?}");
            }
        }
    } else {
        let text = String::from_utf8_lossy(rest).into_owned();
        let (keys, _errors) = JwtKeys::from_sources_lenient(&[
            JwtKeySource::Pem(text.clone()),
            JwtKeySource::Jwks(text),
            JwtKeySource::Der(rest.to_vec()),
        ]);
        for token in TOKENS {
            if let Ok(jwt) = decode_jwt(token) {
                let _ = keys.verify(token, &jwt, Some(NOW));
            }
        }
    }
});
