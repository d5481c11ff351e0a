//! Registered claims checked once the signature is good: `iss` (RFC 7519 §4.1.1, exact match)
//! and `aud` (§4.1.3, a string or an array of strings).

use serde_json::{Map, Value};

use super::Verification;

/// What a verified token's `iss` and `aud` must say. Nothing configured: nothing checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimRules<'r> {
    /// The token's `iss` must be this string exactly.
    pub issuer: Option<&'r str>,
    /// When not empty, the token's `aud` must name one of these (exact match).
    pub audiences: &'r [String],
}

/// `Verified`, or why the claims do not match `rules` (`IssuerMismatch` first).
/// A missing or non-string `iss`, and a missing `aud` or one with no string naming a
/// configured audience, do not match.
pub fn check(claims: &Map<String, Value>, rules: ClaimRules<'_>) -> Verification {
    if let Some(want) = rules.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(want) {
            return Verification::IssuerMismatch;
        }
    }
    if !rules.audiences.is_empty() {
        let named = |aud: &str| rules.audiences.iter().any(|want| want == aud);
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => named(aud),
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(named),
            _ => false,
        };
        if !ok {
            return Verification::AudienceMismatch;
        }
    }
    Verification::Verified
}
