//! JSON Web Tokens (JWS compact serialisation): defensive decoding, and signature verification
//! with `ring` for HS256, RS256 and ES256.
//!
//! Everything here reads bytes a peer sent: sizes are bounded before decoding, every parse
//! returns an error instead of panicking, and the algorithm must match the key type (an RSA
//! public key is never used as an HMAC secret). Keys come from PEM, DER or JWKS material
//! ([`JwtKeySource`]); a JWK's or token's `kid` narrows the keys tried.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::{hmac, signature};
use serde_json::{Map, Value};

use super::config::JwtKeySource;

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
    /// A configured key verified the signature (and the time claims, when checked).
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
                let blocks = pem_blocks(text)?;
                for (label, der) in blocks {
                    match label.as_str() {
                        "PUBLIC KEY" => self.add_spki(&der)?,
                        "RSA PUBLIC KEY" => {
                            let (n, e) = rsa_pkcs1(&der)?;
                            self.rsa.push(RsaKey { kid: None, n, e });
                        }
                        "CERTIFICATE" => {
                            return Err(KeyError::Pem {
                                reason: "certificates are not read; extract the key with \
                                         `openssl x509 -pubkey -noout -in <cert>`"
                                    .to_string(),
                            })
                        }
                        other => {
                            return Err(KeyError::Pem {
                                reason: format!(
                                    "block `{other}` is not a public key (want `PUBLIC KEY` or \
                                     `RSA PUBLIC KEY`)"
                                ),
                            })
                        }
                    }
                }
                Ok(())
            }
            JwtKeySource::Der(der) => {
                if self.add_spki(der).is_ok() {
                    return Ok(());
                }
                let (n, e) = rsa_pkcs1(der).map_err(|_| KeyError::Der {
                    reason: "neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey".to_string(),
                })?;
                self.rsa.push(RsaKey { kid: None, n, e });
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

    fn add_spki(&mut self, der: &[u8]) -> Result<(), KeyError> {
        match spki(der)? {
            PublicKey::Rsa { n, e } => self.rsa.push(RsaKey { kid: None, n, e }),
            PublicKey::P256 { point } => self.ec.push(EcKey { kid: None, point }),
        }
        Ok(())
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

/// `(label, der)` of every PEM block in `text`.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let pem_err = |reason: String| KeyError::Pem { reason };
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| pem_err("unterminated BEGIN line".to_string()))?;
        let label = after[..label_end].to_string();
        let body_and_rest = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body_and_rest
            .find(&end_marker)
            .ok_or_else(|| pem_err(format!("no `{end_marker}`")))?;
        let body: String = body_and_rest[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if body.contains(':') {
            return Err(pem_err(format!(
                "block `{label}` has headers (encrypted?); want a plain public key"
            )));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| pem_err(format!("block `{label}` is not base64: {e}")))?;
        blocks.push((label, der));
        rest = &body_and_rest[end + end_marker.len()..];
    }
    if blocks.is_empty() {
        return Err(pem_err("no `-----BEGIN ...-----` block".to_string()));
    }
    Ok(blocks)
}

enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

/// rsaEncryption, 1.2.840.113549.1.1.1
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 / P-256, 1.2.840.10045.3.1.7
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

fn der_err(reason: &str) -> KeyError {
    KeyError::Der {
        reason: reason.to_string(),
    }
}

/// SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID, params }, BIT STRING }.
fn spki(der: &[u8]) -> Result<PublicKey, KeyError> {
    let mut outer = der;
    let mut spki = read_tlv(&mut outer, SEQUENCE)?;
    let mut alg = read_tlv(&mut spki, SEQUENCE)?;
    let oid = read_tlv(&mut alg, OID)?;
    let bits = read_tlv(&mut spki, BIT_STRING)?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(der_err("BIT STRING with unused bits")),
    };
    if oid == OID_RSA {
        let (n, e) = rsa_pkcs1(key)?;
        Ok(PublicKey::Rsa { n, e })
    } else if oid == OID_EC {
        let curve = read_tlv(&mut alg, OID)?;
        if curve != OID_P256 {
            return Err(der_err("EC key on a curve other than P-256"));
        }
        if key.len() != 65 || key.first() != Some(&4) {
            return Err(der_err("P-256 key is not an uncompressed point"));
        }
        Ok(PublicKey::P256 {
            point: key.to_vec(),
        })
    } else {
        Err(der_err("key algorithm is neither RSA nor EC"))
    }
}

/// PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
fn rsa_pkcs1(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let mut outer = der;
    let mut seq = read_tlv(&mut outer, SEQUENCE)?;
    let n = strip_zeros(read_tlv(&mut seq, INTEGER)?.to_vec());
    let e = strip_zeros(read_tlv(&mut seq, INTEGER)?.to_vec());
    if n.is_empty() || e.is_empty() {
        return Err(der_err("RSA key with a zero modulus or exponent"));
    }
    Ok((n, e))
}

/// Reads one TLV with tag `tag` from the front of `input` and returns its contents.
fn read_tlv<'a>(input: &mut &'a [u8], tag: u8) -> Result<&'a [u8], KeyError> {
    let (&t, rest) = input.split_first().ok_or_else(|| der_err("truncated"))?;
    if t != tag {
        return Err(der_err("unexpected ASN.1 tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or_else(|| der_err("truncated"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return Err(der_err("unsupported length encoding"));
        }
        let (len_bytes, after) = rest.split_at(octets);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(der_err("truncated"));
    }
    let (contents, after) = rest.split_at(len);
    *input = after;
    Ok(contents)
}
