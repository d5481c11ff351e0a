//! Key material read through `pem`/`spki`/`pkcs1` (every accepted format, with keys and tokens
//! made by openssl for these tests), and the `iss`/`aud` checks.

use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde_json::json;

use super::*;
use crate::mcp::{IdentityConfig, IdentityResolver};

/// An RSA-2048 public key made for these tests (`openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:2048`, then `openssl pkey -pubout`): SubjectPublicKeyInfo PEM.
const RSA_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnvOjBTteebr704N8piAO
Tfsp7/avF8/ChL02U70fXhyIyEWkMn+Go+TcJ3OiUOL5bbssoaAx0BTGsZgbxf4u
UnsEMpNnuUQZ3Z3lxG1I7QBgs464MG6s84CxkQ1Ihs96O62/y7nM2XJkGyEClJT8
tbnBPAxkSEHVTDKStEX/sq4+yR8mRdpOKLAhgVafyRZJ7h6F8INwNEs93PlO8fYS
TtClW+nmd8wj/hSguP5JzJ/A3T5993Itb8JzE4jUvQi5lv/ZHi5MFnC3C4DyRMXQ
mu5Cb2T5BJvCriJrlSde6tE6Q1lXO9D+XrJQLm3PgHn1HoiRZhGWxCYq/lyPgCdD
NQIDAQAB
-----END PUBLIC KEY-----
";
/// The same key as PKCS#1 (`openssl rsa -RSAPublicKey_out`).
const RSA_PKCS1_PEM: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAnvOjBTteebr704N8piAOTfsp7/avF8/ChL02U70fXhyIyEWkMn+G
o+TcJ3OiUOL5bbssoaAx0BTGsZgbxf4uUnsEMpNnuUQZ3Z3lxG1I7QBgs464MG6s
84CxkQ1Ihs96O62/y7nM2XJkGyEClJT8tbnBPAxkSEHVTDKStEX/sq4+yR8mRdpO
KLAhgVafyRZJ7h6F8INwNEs93PlO8fYSTtClW+nmd8wj/hSguP5JzJ/A3T5993It
b8JzE4jUvQi5lv/ZHi5MFnC3C4DyRMXQmu5Cb2T5BJvCriJrlSde6tE6Q1lXO9D+
XrJQLm3PgHn1HoiRZhGWxCYq/lyPgCdDNQIDAQAB
-----END RSA PUBLIC KEY-----
";
/// The same key as SubjectPublicKeyInfo DER (`openssl pkey -pubin -outform DER`), base64.
const RSA_SPKI_DER_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnvOjBTteebr704N8piAOTfsp7/avF8/ChL02U70fXhyIyEWkMn+Go+TcJ3OiUOL5bbssoaAx0BTGsZgbxf4uUnsEMpNnuUQZ3Z3lxG1I7QBgs464MG6s84CxkQ1Ihs96O62/y7nM2XJkGyEClJT8tbnBPAxkSEHVTDKStEX/sq4+yR8mRdpOKLAhgVafyRZJ7h6F8INwNEs93PlO8fYSTtClW+nmd8wj/hSguP5JzJ/A3T5993Itb8JzE4jUvQi5lv/ZHi5MFnC3C4DyRMXQmu5Cb2T5BJvCriJrlSde6tE6Q1lXO9D+XrJQLm3PgHn1HoiRZhGWxCYq/lyPgCdDNQIDAQAB";
/// The same key as PKCS#1 DER (`openssl rsa -pubin -RSAPublicKey_out -outform DER`), base64.
const RSA_PKCS1_DER_B64: &str = "MIIBCgKCAQEAnvOjBTteebr704N8piAOTfsp7/avF8/ChL02U70fXhyIyEWkMn+Go+TcJ3OiUOL5bbssoaAx0BTGsZgbxf4uUnsEMpNnuUQZ3Z3lxG1I7QBgs464MG6s84CxkQ1Ihs96O62/y7nM2XJkGyEClJT8tbnBPAxkSEHVTDKStEX/sq4+yR8mRdpOKLAhgVafyRZJ7h6F8INwNEs93PlO8fYSTtClW+nmd8wj/hSguP5JzJ/A3T5993Itb8JzE4jUvQi5lv/ZHi5MFnC3C4DyRMXQmu5Cb2T5BJvCriJrlSde6tE6Q1lXO9D+XrJQLm3PgHn1HoiRZhGWxCYq/lyPgCdDNQIDAQAB";
/// A P-256 public key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`,
/// `openssl pkey -pubout`).
const P256_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGlU7qz2RBw+6dJP7Yk9TQ5TxwxFm
6FuGyjwMtB5lkRWRr/nNxTCaM4oHOwhBPMU8N8gHuFqqpCUbtTYtO6RIsQ==
-----END PUBLIC KEY-----
";
/// The same key as DER, base64.
const P256_SPKI_DER_B64: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGlU7qz2RBw+6dJP7Yk9TQ5TxwxFm6FuGyjwMtB5lkRWRr/nNxTCaM4oHOwhBPMU8N8gHuFqqpCUbtTYtO6RIsQ==";
/// A P-384 public key (`ec_paramgen_curve:P-384`): ES384 is not supported.
const P384_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAESRR2f8Je39ZjT8pcGGzTRTPFrTxfarqv
Yhfdxl1ivSF20EyaUgVsw7UASw3yRVgej2RMAwhYhP1M8VF3oTkQH4t/LSXwzq4I
hQMePh5UnCAcQdgS/vjoUP8sTMM4q0UP
-----END PUBLIC KEY-----
";
/// The same key as DER, base64.
const P384_SPKI_DER_B64: &str = "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAESRR2f8Je39ZjT8pcGGzTRTPFrTxfarqvYhfdxl1ivSF20EyaUgVsw7UASw3yRVgej2RMAwhYhP1M8VF3oTkQH4t/LSXwzq4IhQMePh5UnCAcQdgS/vjoUP8sTMM4q0UP";
/// An Ed25519 public key (`openssl genpkey -algorithm ED25519`): EdDSA is not supported.
const ED25519_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA+nS2zvl+/bDN1Ne91N7aymO79EEWwMzlFgWe8pkI2RE=
-----END PUBLIC KEY-----
";
/// The same key as DER, base64.
const ED25519_SPKI_DER_B64: &str = "MCowBQYDK2VwAyEA+nS2zvl+/bDN1Ne91N7aymO79EEWwMzlFgWe8pkI2RE=";
/// A self-signed certificate of the P-256 key (`openssl req -x509`).
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBczCCARmgAwIBAgIUE9RySG5B+g8SReT+jMYrKwsFc/QwCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEdGVzdDAeFw0yNjExMzAxMjM1MThaFw0yNjEyMDExMjM1MTha
MA8xDTALBgNVBAMMBHRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQaVTur
PZEHD7p0k/tiT1NDlPHDEWboW4bKPAy0HmWRFZGv+c3FMJozigc7CEE8xTw3yAe4
WqqkJRu1Ni07pEixo1MwUTAdBgNVHQ4EFgQUxEH2XQjkmJJvo09b6O1Pz8adg2Qw
HwYDVR0jBBgwFoAUxEH2XQjkmJJvo09b6O1Pz8adg2QwDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNIADBFAiAhniY9hlK/QXze50YCVLVKOXhgZ8tbDvCrSE8P
Z5uxuQIhAKL7S7C2RVOzek7AWCWXPQ+/JgB0w5rdhOD8wtM+Fiuc
-----END CERTIFICATE-----
";
/// Signed with `openssl dgst -sha256 -sign` and the RSA key: header `{"alg":"RS256","typ":"JWT"}`,
/// claims `{"sub":"openssl-user","iss":"https://idp.example.com","aud":["mcp-tools","other"]}`.
const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsImF1ZCI6WyJtY3AtdG9vbHMiLCJvdGhlciJdfQ.S57UxN6NA6kvaE6YUpnVU7KlGBPmZ3NfkOvfoM9bfTlZ0SJSktvDLwYrb2IIWAhZ9ISYjkRb55IStwOe9rIR-PD6nvL9pQUk6n1tq4nkvXQ40U6qOrjbUBSUrTAjC1a6IgseG90cVcaE3jpepfnk1aFaOiHRg9QCaaK0lioXWNxblJp5L-fhDDayhXd8M5HqA-kVAEYc621IPPhdnBYAy_h25Wvtav5WLJAHGPHKAUHAKKjYzGLNHZA0i1FoK7bz01ZTHlFocY218U8iLqDUqRt15C3cuB-UYf6YFDpzPzJ0CTR4M-06jAUrGq3iFLrpfFR6qZeYfY6kuUY6DOqdgg";
/// The same claims signed by openssl with the P-256 key (`ES256`; DER signature turned into
/// `r || s`, and checked with `openssl dgst -verify`).
const ES256_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsImF1ZCI6WyJtY3AtdG9vbHMiLCJvdGhlciJdfQ.h_ezob4ycp9ZODUeE5JxiYfyRo65k4VByMhTSBD56cehbTNP0ZrqJgQW59gjmZWjjOQAFzopoawoa_CaEF1Scw";

fn der(b64: &str) -> Vec<u8> {
    STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("test DER constant: {e}"))
}

fn keys(source: JwtKeySource) -> JwtKeys {
    JwtKeys::from_sources(&[source]).unwrap_or_else(|e| panic!("keys must load: {e}"))
}

fn key_error(source: JwtKeySource) -> String {
    match JwtKeys::from_sources(&[source]) {
        Ok(k) => panic!("want a key error, got {k:?}"),
        Err(e) => e.to_string(),
    }
}

fn verify(keys: &JwtKeys, token: &str) -> Verification {
    let jwt = decode(token).unwrap_or_else(|e| panic!("token must decode: {e}"));
    keys.verify(token, &jwt, None)
}

/// `token` with its claims replaced (the signature no longer matches).
fn tampered(token: &str) -> String {
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#);
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = &claims;
    parts.join(".")
}

#[test]
fn rsa_keys_verify_an_openssl_rs256_token_in_every_format() {
    for (what, source) in [
        ("SPKI PEM", JwtKeySource::Pem(RSA_SPKI_PEM.into())),
        ("PKCS#1 PEM", JwtKeySource::Pem(RSA_PKCS1_PEM.into())),
        ("SPKI DER", JwtKeySource::Der(der(RSA_SPKI_DER_B64))),
        ("PKCS#1 DER", JwtKeySource::Der(der(RSA_PKCS1_DER_B64))),
    ] {
        let k = keys(source);
        assert_eq!(
            format!("{k:?}"),
            "JwtKeys { hs256: 0, rs256: 1, es256: 0 }",
            "{what}"
        );
        assert_eq!(verify(&k, RS256_TOKEN), Verification::Verified, "{what}");
        assert_eq!(
            verify(&k, &tampered(RS256_TOKEN)),
            Verification::BadSignature,
            "{what}"
        );
        assert_eq!(
            verify(&k, ES256_TOKEN),
            Verification::NoMatchingKey,
            "{what}"
        );
    }
}

#[test]
fn rsa_spki_and_pkcs1_give_the_same_modulus_and_exponent() {
    let from_spki = public_key::from_pem(RSA_SPKI_PEM).unwrap_or_default();
    let from_pkcs1 = public_key::from_pem(RSA_PKCS1_PEM).unwrap_or_default();
    assert_eq!(from_spki, from_pkcs1);
    let [PublicKey::Rsa { n, e }] = from_spki.as_slice() else {
        panic!("want one RSA key, got {from_spki:?}");
    };
    assert_eq!((n.len(), e.as_slice()), (256, &[1, 0, 1][..]));
    assert_ne!(n.first(), Some(&0), "leading zero of the INTEGER kept");
}

#[test]
fn a_p256_spki_key_verifies_an_openssl_es256_token_as_pem_and_der() {
    for (what, source) in [
        ("SPKI PEM", JwtKeySource::Pem(P256_SPKI_PEM.into())),
        ("SPKI DER", JwtKeySource::Der(der(P256_SPKI_DER_B64))),
    ] {
        let k = keys(source);
        assert_eq!(
            format!("{k:?}"),
            "JwtKeys { hs256: 0, rs256: 0, es256: 1 }",
            "{what}"
        );
        assert_eq!(verify(&k, ES256_TOKEN), Verification::Verified, "{what}");
        assert_eq!(
            verify(&k, &tampered(ES256_TOKEN)),
            Verification::BadSignature,
            "{what}"
        );
        assert_eq!(
            verify(&k, RS256_TOKEN),
            Verification::NoMatchingKey,
            "{what}"
        );
    }
}

#[test]
fn several_pem_blocks_in_one_text_are_all_read() {
    let both = format!("{RSA_SPKI_PEM}\n{P256_SPKI_PEM}{RSA_PKCS1_PEM}");
    let k = keys(JwtKeySource::Pem(both));
    assert_eq!(format!("{k:?}"), "JwtKeys { hs256: 0, rs256: 2, es256: 1 }");
    assert_eq!(verify(&k, RS256_TOKEN), Verification::Verified);
    assert_eq!(verify(&k, ES256_TOKEN), Verification::Verified);
}

#[test]
fn p384_and_ed25519_keys_are_refused_naming_what_is_missing() {
    for source in [
        JwtKeySource::Pem(P384_SPKI_PEM.into()),
        JwtKeySource::Der(der(P384_SPKI_DER_B64)),
    ] {
        assert_eq!(
            key_error(source),
            "DER public key: EC key on P-384: ES384 is not supported (ES256 needs P-256)"
        );
    }
    for source in [
        JwtKeySource::Pem(ED25519_SPKI_PEM.into()),
        JwtKeySource::Der(der(ED25519_SPKI_DER_B64)),
    ] {
        assert_eq!(
            key_error(source),
            "DER public key: Ed25519 key: EdDSA is not supported (RS256, ES256 with P-256, HS256)"
        );
    }
}

#[test]
fn pem_that_is_not_a_plain_public_key_is_refused() {
    let err = |text: &str| key_error(JwtKeySource::Pem(text.into()));
    assert_eq!(
        err(CERT_PEM),
        "PEM: certificates are not read; extract the key with \
         `openssl x509 -pubkey -noout -in <cert>`"
    );
    assert_eq!(err("no pem here"), "PEM: no `-----BEGIN ...-----` block");
    let private = RSA_SPKI_PEM.replace("PUBLIC KEY", "PRIVATE KEY");
    assert_eq!(
        err(&private),
        "PEM: block `PRIVATE KEY` is not a public key (want `PUBLIC KEY` or `RSA PUBLIC KEY`)"
    );
    let encrypted = P256_SPKI_PEM.replace(
        "-----\n",
        "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
    );
    assert!(
        err(&encrypted).contains("has headers"),
        "{}",
        err(&encrypted)
    );
    let mismatched = P256_SPKI_PEM.replace("END PUBLIC KEY", "END RSA PUBLIC KEY");
    assert!(
        err(&mismatched).starts_with("PEM: "),
        "{}",
        err(&mismatched)
    );
    let not_base64 = P256_SPKI_PEM.replace("MFkw", "M*kw");
    assert!(
        err(&not_base64).starts_with("PEM: "),
        "{}",
        err(&not_base64)
    );
    // A `PUBLIC KEY` block holding PKCS#1 (a common mix-up) is not a SubjectPublicKeyInfo.
    let pkcs1_as_spki = RSA_PKCS1_PEM.replace("RSA PUBLIC KEY", "PUBLIC KEY");
    assert!(
        err(&pkcs1_as_spki).starts_with("DER public key: not a SubjectPublicKeyInfo"),
        "{}",
        err(&pkcs1_as_spki)
    );
    // A bad block refuses the whole text: the good block before it is not kept either.
    let (k, errors) =
        JwtKeys::from_sources_lenient(&[JwtKeySource::Pem(format!("{RSA_SPKI_PEM}{CERT_PEM}"))]);
    assert_eq!((k.len(), errors.len()), (0, 1));
}

#[test]
fn der_that_is_not_a_supported_public_key_is_refused() {
    let err = |bytes: Vec<u8>| key_error(JwtKeySource::Der(bytes));
    let neither = "DER public key: neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey";
    assert_eq!(err(Vec::new()), neither);
    assert_eq!(err(vec![0x30, 0x82, 0xff]), neither);
    let spki = der(P256_SPKI_DER_B64);
    assert_eq!(err(spki[..spki.len() - 1].to_vec()), neither, "truncated");
    let mut trailing = spki.clone();
    trailing.push(0);
    assert_eq!(err(trailing), neither, "trailing bytes");
    // A well-formed SubjectPublicKeyInfo holding a compressed P-256 point (02 || x):
    // SEQUENCE { the same AlgorithmIdentifier (21 bytes), BIT STRING { 00 02 x } }.
    let mut compressed = vec![0x30, 0x39];
    compressed.extend_from_slice(&spki[2..23]);
    compressed.extend_from_slice(&[0x03, 0x22, 0x00, 0x02]);
    compressed.extend_from_slice(&spki[27..59]);
    assert_eq!(
        err(compressed),
        "DER public key: P-256 key is not an uncompressed point"
    );
}

fn hs256(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

const SECRET: &[u8] = b"a shared secret for the iss/aud tests";

fn rules<'r>(issuer: Option<&'r str>, audiences: &'r [String]) -> ClaimRules<'r> {
    ClaimRules { issuer, audiences }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn claims(v: serde_json::Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        other => panic!("claims must be an object: {other}"),
    }
}

#[test]
fn iss_must_match_exactly_when_an_issuer_is_configured() {
    let want = Some("https://idp.example.com");
    let check = |c: serde_json::Value| check_claims(&claims(c), rules(want, &[]));
    assert_eq!(
        check(json!({"iss": "https://idp.example.com"})),
        Verification::Verified
    );
    for c in [
        json!({"iss": "https://evil.example.com"}),
        json!({"iss": "https://idp.example.com/"}),
        json!({"iss": "HTTPS://IDP.EXAMPLE.COM"}),
        json!({"iss": ["https://idp.example.com"]}),
        json!({"sub": "no iss"}),
    ] {
        assert_eq!(check(c.clone()), Verification::IssuerMismatch, "{c}");
    }
}

#[test]
fn aud_as_a_string_or_an_array_must_name_a_configured_audience() {
    let want = strings(&["mcp-tools", "mcp-admin"]);
    let check = |c: serde_json::Value| check_claims(&claims(c), rules(None, &want));
    for c in [
        json!({"aud": "mcp-tools"}),
        json!({"aud": "mcp-admin"}),
        json!({"aud": ["billing", "mcp-admin"]}),
        json!({"aud": [7, "mcp-tools"]}),
    ] {
        assert_eq!(check(c.clone()), Verification::Verified, "{c}");
    }
    for c in [
        json!({"aud": "billing"}),
        json!({"aud": ["billing", "MCP-TOOLS"]}),
        json!({"aud": []}),
        json!({"aud": 7}),
        json!({"sub": "no aud"}),
    ] {
        assert_eq!(check(c.clone()), Verification::AudienceMismatch, "{c}");
    }
}

#[test]
fn iss_is_reported_before_aud_and_nothing_configured_checks_nothing() {
    let want = strings(&["mcp-tools"]);
    let both_wrong = claims(json!({"iss": "x", "aud": "y"}));
    assert_eq!(
        check_claims(&both_wrong, rules(Some("z"), &want)),
        Verification::IssuerMismatch
    );
    assert_eq!(
        check_claims(&both_wrong, rules(None, &[])),
        Verification::Verified
    );
    assert_eq!(
        check_claims(&Map::new(), ClaimRules::default()),
        Verification::Verified
    );
}

fn resolver(issuer: Option<&str>, audience: &[&str], keys: Vec<JwtKeySource>) -> IdentityResolver {
    IdentityResolver::new(IdentityConfig {
        issuer: issuer.map(str::to_string),
        audience: strings(audience),
        keys,
        ..IdentityConfig::default()
    })
    .unwrap_or_else(|e| panic!("keys must load: {e}"))
}

/// (user, verified, unverified reason) of a request carrying `token`.
fn resolve(r: &IdentityResolver, token: &str) -> (Option<String>, bool, Option<Verification>) {
    let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
    let res = r.resolve(&headers, None);
    let id = res.identity.unwrap_or_else(|| panic!("want an identity"));
    (id.user, id.verified, res.unverified)
}

#[test]
fn a_token_failing_iss_or_aud_is_an_unverified_identity_with_the_reason() {
    let secret = || vec![JwtKeySource::Hs256Secret(SECRET.to_vec())];
    let token = hs256(&json!({"sub": "alice", "iss": "https://idp", "aud": ["a", "b"]}));
    let user = Some("alice".to_string());
    assert_eq!(
        resolve(&resolver(Some("https://idp"), &["b"], secret()), &token),
        (user.clone(), true, None)
    );
    assert_eq!(
        resolve(&resolver(Some("https://idp"), &["c"], secret()), &token),
        (user.clone(), false, Some(Verification::AudienceMismatch))
    );
    assert_eq!(
        resolve(&resolver(Some("https://other"), &["a"], secret()), &token),
        (user.clone(), false, Some(Verification::IssuerMismatch))
    );
    // The signature is checked first: a forged token is reported as such.
    assert_eq!(
        resolve(
            &resolver(Some("https://other"), &["c"], secret()),
            &tampered(&token)
        ),
        (
            Some("mallory".to_string()),
            false,
            Some(Verification::BadSignature)
        )
    );
    // Without keys nothing is verified, so iss/aud are not reported either.
    assert_eq!(
        resolve(&resolver(Some("https://other"), &["c"], Vec::new()), &token),
        (user, false, None)
    );
}

#[test]
fn openssl_tokens_with_an_audience_array_verify_against_the_configured_audience() {
    let rsa = || vec![JwtKeySource::Pem(RSA_SPKI_PEM.into())];
    let p256 = || vec![JwtKeySource::Der(der(P256_SPKI_DER_B64))];
    let user = Some("openssl-user".to_string());
    for (token, k) in [(RS256_TOKEN, rsa()), (ES256_TOKEN, p256())] {
        let ok = resolver(Some("https://idp.example.com"), &["mcp-tools"], k.clone());
        assert_eq!(resolve(&ok, token), (user.clone(), true, None));
        let other = resolver(Some("https://idp.example.com"), &["billing"], k);
        assert_eq!(
            resolve(&other, token),
            (user.clone(), false, Some(Verification::AudienceMismatch))
        );
    }
}
