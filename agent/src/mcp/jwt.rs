//! JSON Web Tokens (JWS compact serialisation): defensive decoding, and signature verification
//! with `ring` for HS256, RS256 and ES256.
//!
//! Everything here reads bytes a peer sent: sizes are bounded before decoding, every parse
//! returns an error instead of panicking, and the algorithm must match the key type (an RSA
//! public key is never used as an HMAC secret). Keys come from PEM, DER or JWKS material
//! ([`JwtKeySource`]; PEM and DER are read in [`public_key`]); a JWK's or token's `kid` narrows
//! the keys tried. Once the signature is good, [`check_claims`] compares `iss` and `aud` with
//! what the configuration expects.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::{hmac, signature};
use serde_json::{Map, Value};

use super::config::JwtKeySource;
use public_key::PublicKey;

mod claims;
mod public_key;
#[cfg(test)]
mod tests;

pub use claims::{check as check_claims, ClaimRules};

/// Longest token decoded (header + claims + signature, base64url).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Tolerance for `exp` / `nbf` against the observed time, in seconds.
pub const CLOCK_SKEW_S: u64 = 60;

/// Why a bearer token could not be read as a JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token of {len} bytes exceeds the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("token has {count} dot-separated segments, a JWS has 3")]
    Segments { count: usize },
    #[error("JWT {part} is not base64url")]
    Base64 { part: &'static str },
    #[error("JWT {part} is not a JSON object")]
    NotObject { part: &'static str },
}

/// Why key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("PEM: {reason}")]
    Pem { reason: String },
    #[error("DER public key: {reason}")]
    Der { reason: String },
    #[error("JWKS: {reason}")]
    Jwks { reason: String },
    #[error("HS256 secret is empty")]
    EmptySecret,
}

/// A token's header, claims, signature and the bytes that were signed.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedJwt {
    pub alg: Option<String>,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signature: Vec<u8>,
    /// Length of `header.payload` at the start of the token.
    signed_len: usize,
}

/// Splits and decodes a compact JWS. The signature is not checked here.
pub fn decode(token: &str) -> Result<DecodedJwt, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong {
            len: token.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, sig] = parts.as_slice() else {
        return Err(JwtError::Segments { count: parts.len() });
    };
    let header = json_object(header, "header")?;
    let claims = json_object(payload, "payload")?;
    let signature = b64url(sig).ok_or(JwtError::Base64 { part: "signature" })?;
    let text = |k: &str| header.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(DecodedJwt {
        alg: text("alg"),
        kid: text("kid"),
        claims,
        signature,
        signed_len: header_len(token),
    })
}

fn header_len(token: &str) -> usize {
    // `decode` checked there are exactly two dots.
    token.rfind('.').unwrap_or(0)
}

fn json_object(segment: &str, part: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64url(segment).ok_or(JwtError::Base64 { part })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::NotObject { part }),
    }
}

/// base64url without padding; trailing `=` are tolerated.
fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The outcome of checking a decoded token against the configured keys and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// A configured key verified the signature (and the time claims, when checked; and, from
    /// [`check_claims`], `iss`/`aud` as configured).
    Verified,
    /// No keys are configured: the token is read but not verified.
    NoKeys,
    /// `alg` is not HS256, RS256 or ES256 (including `none`).
    UnsupportedAlg,
    /// No configured key of the algorithm's type (and `kid`, when both name one).
    NoMatchingKey,
    /// Keys were tried and none verified the signature.
    BadSignature,
    /// Signature good, but `exp` has passed.
    Expired,
    /// Signature good, but `nbf` is in the future.
    NotYetValid,
    /// Signature good, but `iss` is missing or not the configured issuer.
    IssuerMismatch,
    /// Signature good, but `aud` is missing or names none of the configured audiences.
    AudienceMismatch,
}

impl Verification {
    pub fn is_verified(self) -> bool {
        self == Verification::Verified
    }
}

struct HmacKey {
    kid: Option<String>,
    key: hmac::Key,
}

struct RsaKey {
    kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

struct EcKey {
    kid: Option<String>,
    /// Uncompressed P-256 point: `04 || x || y`.
    point: Vec<u8>,
}

/// Parsed verification keys.
#[derive(Default)]
pub struct JwtKeys {
    hmac: Vec<HmacKey>,
    rsa: Vec<RsaKey>,
    ec: Vec<EcKey>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("hs256", &self.hmac.len())
            .field("rs256", &self.rsa.len())
            .field("es256", &self.ec.len())
            .finish()
    }
}

impl JwtKeys {
    /// Parses every source; the first unusable one is an error.
    pub fn from_sources(sources: &[JwtKeySource]) -> Result<JwtKeys, KeyError> {
        let mut keys = JwtKeys::default();
        for source in sources {
            keys.add(source)?;
        }
        Ok(keys)
    }

    /// Parses every source, skipping (and returning) the unusable ones.
    pub fn from_sources_lenient(sources: &[JwtKeySource]) -> (JwtKeys, Vec<KeyError>) {
        let mut keys = JwtKeys::default();
        let mut errors = Vec::new();
        for source in sources {
            if let Err(e) = keys.add(source) {
                errors.push(e);
            }
        }
        (keys, errors)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.hmac.len() + self.rsa.len() + self.ec.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&mut self, source: &JwtKeySource) -> Result<(), KeyError> {
        match source {
            JwtKeySource::Hs256Secret(secret) => self.add_secret(None, secret),
            JwtKeySource::Pem(text) => {
                // All blocks are read before any key is kept: a bad block adds nothing.
                for key in public_key::from_pem(text)? {
                    self.add_public(key);
                }
                Ok(())
            }
            JwtKeySource::Der(der) => {
                self.add_public(public_key::from_der(der)?);
                Ok(())
            }
            JwtKeySource::Jwks(text) => self.add_jwks(text),
        }
    }

    fn add_secret(&mut self, kid: Option<String>, secret: &[u8]) -> Result<(), KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        self.hmac.push(HmacKey {
            kid,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        });
        Ok(())
    }

    fn add_public(&mut self, key: PublicKey) {
        match key {
            PublicKey::Rsa { n, e } => self.rsa.push(RsaKey { kid: None, n, e }),
            PublicKey::P256 { point } => self.ec.push(EcKey { kid: None, point }),
        }
    }

    fn add_jwks(&mut self, text: &str) -> Result<(), KeyError> {
        let jwks_err = |reason: &str| KeyError::Jwks {
            reason: reason.to_string(),
        };
        let doc: Value =
            serde_json::from_str(text).map_err(|e| jwks_err(&format!("not JSON: {e}")))?;
        let keys: Vec<&Value> = match doc.get("keys") {
            Some(Value::Array(keys)) => keys.iter().collect(),
            Some(_) => return Err(jwks_err("`keys` is not an array")),
            None if doc.get("kty").is_some() => vec![&doc],
            None => return Err(jwks_err("no `keys` array and no `kty`")),
        };
        let before = self.len();
        for jwk in keys {
            let field = |k: &str| jwk.get(k).and_then(Value::as_str);
            if field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let kid = field("kid").map(str::to_string);
            let bytes = |k: &str| -> Result<Vec<u8>, KeyError> {
                field(k)
                    .and_then(b64url)
                    .ok_or_else(|| jwks_err(&format!("`{k}` is missing or not base64url")))
            };
            match (field("kty"), field("alg")) {
                (Some("RSA"), None | Some("RS256")) => {
                    let n = strip_zeros(bytes("n")?);
                    let e = strip_zeros(bytes("e")?);
                    if n.is_empty() || e.is_empty() {
                        return Err(jwks_err("RSA key with an empty `n` or `e`"));
                    }
                    self.rsa.push(RsaKey { kid, n, e });
                }
                (Some("EC"), None | Some("ES256")) => {
                    if field("crv") != Some("P-256") {
                        continue;
                    }
                    let (x, y) = (bytes("x")?, bytes("y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return Err(jwks_err("P-256 `x` and `y` must be 32 bytes each"));
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    self.ec.push(EcKey { kid, point });
                }
                (Some("oct"), None | Some("HS256")) => self.add_secret(kid, &bytes("k")?)?,
                _ => {}
            }
        }
        if self.len() == before {
            return Err(jwks_err(
                "no usable key (RSA for RS256, EC P-256 for ES256, oct for HS256)",
            ));
        }
        Ok(())
    }

    /// Checks the signature of `jwt` (decoded from `token`), then its time claims when
    /// `now_unix_s` is given.
    pub fn verify(&self, token: &str, jwt: &DecodedJwt, now_unix_s: Option<u64>) -> Verification {
        if self.is_empty() {
            return Verification::NoKeys;
        }
        let Some(signed) = token.as_bytes().get(..jwt.signed_len) else {
            return Verification::BadSignature;
        };
        let kid = jwt.kid.as_deref();
        let matches = |key_kid: &Option<String>| match (kid, key_kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        let sig = jwt.signature.as_slice();
        let (tried, ok) = match jwt.alg.as_deref() {
            Some("HS256") => try_keys(self.hmac.iter().filter(|k| matches(&k.kid)), |k| {
                hmac::verify(&k.key, signed, sig).is_ok()
            }),
            Some("RS256") => try_keys(self.rsa.iter().filter(|k| matches(&k.kid)), |k| {
                signature::RsaPublicKeyComponents {
                    n: k.n.as_slice(),
                    e: k.e.as_slice(),
                }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
                .is_ok()
            }),
            Some("ES256") => try_keys(self.ec.iter().filter(|k| matches(&k.kid)), |k| {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &k.point)
                    .verify(signed, sig)
                    .is_ok()
            }),
            _ => return Verification::UnsupportedAlg,
        };
        if tried == 0 {
            return Verification::NoMatchingKey;
        }
        if !ok {
            return Verification::BadSignature;
        }
        let Some(now) = now_unix_s else {
            return Verification::Verified;
        };
        let time = |k: &str| jwt.claims.get(k).and_then(Value::as_f64);
        if time("exp").is_some_and(|exp| now as f64 >= exp + CLOCK_SKEW_S as f64) {
            return Verification::Expired;
        }
        if time("nbf").is_some_and(|nbf| (now.saturating_add(CLOCK_SKEW_S) as f64) < nbf) {
            return Verification::NotYetValid;
        }
        Verification::Verified
    }
}

/// (keys tried, any verified)
fn try_keys<'k, K: 'k>(
    keys: impl Iterator<Item = &'k K>,
    mut check: impl FnMut(&K) -> bool,
) -> (usize, bool) {
    let mut tried = 0;
    for k in keys {
        tried += 1;
        if check(k) {
            return (tried, true);
        }
    }
    (tried, false)
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}
