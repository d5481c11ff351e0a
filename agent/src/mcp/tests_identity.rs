//! Identity: JWT decoding and verification (HS256, RS256, ES256 with keys from PEM, DER and
//! JWKS), header identities, and what reaches the session summary (never the token).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use super::tests::*;
use super::*;

/// A 2048-bit RSA key made for these tests with `openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048` (PKCS#8). Not used anywhere else.
const RSA_PRIVATE_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDDbOehIAvE+CJz
XTnuCEiluBAUGOaGvOszxg8iaIhVmsU4bs0ElF4Y3GuNU8BlfuiARfpzW1krpX7L
Vd2TOsl5c3zZ0fXi43iP1lcCrMMQIYZwJN1QjuwMc7H1OgFuG7YQPvreBYsxR16r
eHItU8XfUNS3sivnLunH0rMU1l/UHl4fdG6mAsUvTf+3nN6cLff3xEn1wRF2NmSl
QmSwKSJhGhfKuBqXjiXY8i/WV4FZHRlsQKocS9h/XC0i7v1NfXM3xasYwAeKZMUo
bZCTXKAmcSV7PxHEWKpssefVRrIaVnI/+qpn1XvV951bhC62X6BHLOfwEkfREWvl
GWB8mbT7AgMBAAECggEAMh3wvRKB0i6sbxd+brvzHYS5ot3L6Mv0KZ/ma7WRGRsK
7vEDZORDyW5lqqXK1nyYVaUcmI7ZrGbRwIWxwDs4RgxG/Xlp7JjXZ1PZlpcFo1Jl
rsbVdv5gLMVS4wfQLBOxOjNclKmpS6b48VJ/PX6ZZS7OjpmDxtLyI0u2n2Zmxvfc
A4tE2hQL59oqdS1POFRM8ivm3T+r/56d0pF2LwsC1vlYK3svI/A1y9Yz7rmk2bO2
aZOKX27WozfFcgKAWLynstLrU4vekzXE5vSkEQqkpXBdsrz5J38ZjDaYybSLHliG
iCys7OSuPSM3D57Nuhisbcifqxpx7A2UR9zTQ0MZoQKBgQDhaDpCBNw9DarPWkzz
cUOxioPHgwM6BE1wDVtkPkMJOH66++TlJc6x/1ph4rq4CD4TWCQ6l2MV1Lut3/ON
VySaWYqOUyzgTWWqJiGauXt74YYb2Y8bHw74EjntQ1ufbZbfJRUxV+dD/SmADRgr
5HpZDiBzJdtXm6pdTXoAjbaTqwKBgQDd8vY8FZ0v9NMWip1tTEesB9N66+MA1yVj
Zsp2EnBAhIcWPeuGPzQd1egrtEE8HME6jCseq2GjdK9iN9FwIE98+55n5ySCDHpn
oPzwDXlL3tmYXeFwFMuvCxgEzRarPNiaLVqmM1HkiDEaQzK7/mlzik8qFROxEL9R
5QdYQUkT8QKBgAuKBWl5zDiH6ZWh3syboMaG+8YL6+9dZwV0eZhBI7dmH/68hHRC
ojk0hFD8hWiEa4EcAwbI1za35D+7dkFnE6WfLdupYGO/MpQqTZAZLLwjyHTGh2/x
ABgs/rApwZgAyTd1M4eKI3m0jRpUEUe185l5gqnCZ18txePu4m8C0jTvAoGBALJW
Dbo7l8C31IDRQitXVmOJKkkjjpPXS4hySI3UxPNiSXT6reuBj2vFu7aaMKyPYkeb
5u3OwTZohJ/Dv/p7S8NeHmrYVAJW6men+HUeLm9jEa4XCRRY8Uyl+lepPuS6kERZ
2vOeWtfpAqNaiUJ66tpWsMNciiUFEuVHxL4KPyDRAoGBAKSs05mLfghhOBSaH2Hy
bPh228SvVXEyRvuiSgLriar9+Sw8OE7ONNQqY2IW2Yi7ymYT8atBxBabZdjwKnu2
IE8aRl8Lf27J5ep0RxLpD4LLXEDKTCgJWHbqzG6uYX3YU1dNNIAjNSwZkr3xzFdE
gxnKtLin+RO7z8ueVJ1YjFio
-----END PRIVATE KEY-----
";

/// Its public half, `openssl pkey -pubout` (SubjectPublicKeyInfo).
const RSA_PUBLIC_SPKI_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAw2znoSALxPgic1057ghI
pbgQFBjmhrzrM8YPImiIVZrFOG7NBJReGNxrjVPAZX7ogEX6c1tZK6V+y1XdkzrJ
eXN82dH14uN4j9ZXAqzDECGGcCTdUI7sDHOx9ToBbhu2ED763gWLMUdeq3hyLVPF
31DUt7Ir5y7px9KzFNZf1B5eH3RupgLFL03/t5zenC3398RJ9cERdjZkpUJksCki
YRoXyrgal44l2PIv1leBWR0ZbECqHEvYf1wtIu79TX1zN8WrGMAHimTFKG2Qk1yg
JnElez8RxFiqbLHn1UayGlZyP/qqZ9V71fedW4Qutl+gRyzn8BJH0RFr5RlgfJm0
+wIDAQAB
-----END PUBLIC KEY-----
";

/// The same public key as PKCS#1 `RSAPublicKey` DER (`openssl rsa -RSAPublicKey_out
/// -outform DER`), base64.
const RSA_PUBLIC_PKCS1_DER_B64: &str = "MIIBCgKCAQEAw2znoSALxPgic1057ghIpbgQFBjmhrzrM8YPImiIVZrFOG7NBJReGNxrjVPAZX7ogEX6c1tZK6V+y1XdkzrJeXN82dH14uN4j9ZXAqzDECGGcCTdUI7sDHOx9ToBbhu2ED763gWLMUdeq3hyLVPF31DUt7Ir5y7px9KzFNZf1B5eH3RupgLFL03/t5zenC3398RJ9cERdjZkpUJksCkiYRoXyrgal44l2PIv1leBWR0ZbECqHEvYf1wtIu79TX1zN8WrGMAHimTFKG2Qk1ygJnElez8RxFiqbLHn1UayGlZyP/qqZ9V71fedW4Qutl+gRyzn8BJH0RFr5RlgfJm0+wIDAQAB";

/// Its modulus as a JWK `n` (from `openssl rsa -pubin -noout -modulus`).
const RSA_JWK_N: &str = "w2znoSALxPgic1057ghIpbgQFBjmhrzrM8YPImiIVZrFOG7NBJReGNxrjVPAZX7ogEX6c1tZK6V-y1XdkzrJeXN82dH14uN4j9ZXAqzDECGGcCTdUI7sDHOx9ToBbhu2ED763gWLMUdeq3hyLVPF31DUt7Ir5y7px9KzFNZf1B5eH3RupgLFL03_t5zenC3398RJ9cERdjZkpUJksCkiYRoXyrgal44l2PIv1leBWR0ZbECqHEvYf1wtIu79TX1zN8WrGMAHimTFKG2Qk1ygJnElez8RxFiqbLHn1UayGlZyP_qqZ9V71fedW4Qutl-gRyzn8BJH0RFr5RlgfJm0-w";

/// Signed by `openssl dgst -sha256 -sign` with the key above (an independent signer):
/// header `{"alg":"RS256","typ":"JWT","kid":"rsa-1"}`, claims
/// `{"sub":"alice@example.com","roles":["admin","ops"],"iss":"https://idp.example.com"}`.
const OPENSSL_RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSIsInJvbGVzIjpbImFkbWluIiwib3BzIl0sImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUuY29tIn0.JgNGZasFISGKjtneCzcoWDUlopnVn194K77T-K_MiYhkfIJC_hrV5-eylMjylLsQWFEZ3eDsJ3TSB7Iw4DQS2JKpHcItOjQRyMiA6dt-8uGMoxG1l0vIN0MdMSn6oysCbW8_yrXnZ-0SOsqRDpyxX0G0vMynRdHmncbXHJMrkW7G8Y_-JI-MdF0cFGd_TejXVp2dt21JAdkUnJi9ty2ZJS1rmeVnX7uMFesZAmdwHreL04xrb7X4NtIth4w7R3UH5TkK5HzTnejlvydj8w8Gfj7EDQyDhDWGYJ_xvra9NKHC8XyTXxoGpO6Rd47ZAKyylfLdl01FFRhlPceQ-LDoRg";

/// SubjectPublicKeyInfo DER header of a P-256 public key; the uncompressed point follows.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

const SECRET: &[u8] = b"correct horse battery staple, 32+";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "typ": "JWT"}), claims);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap_or_default()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = signing_input(&header, claims);
    let key = RsaKeyPair::from_pkcs8(&pem_body(RSA_PRIVATE_PKCS8_PEM))
        .unwrap_or_else(|e| panic!("test RSA key must load: {e}"));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap_or_else(|e| panic!("RSA signing must work: {e}"));
    format!("{input}.{}", b64(&sig))
}

/// A fresh P-256 key pair; returns (key pair, uncompressed public point).
fn p256() -> (EcdsaKeyPair, Vec<u8>) {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .unwrap_or_else(|e| panic!("P-256 generation must work: {e}"));
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .unwrap_or_else(|e| panic!("generated P-256 key must load: {e}"));
    let point = pair.public_key().as_ref().to_vec();
    (pair, point)
}

fn es256(pair: &EcdsaKeyPair, claims: &Value, kid: &str) -> String {
    let input = signing_input(&json!({"alg": "ES256", "typ": "JWT", "kid": kid}), claims);
    let sig = pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap_or_else(|e| panic!("ECDSA signing must work: {e}"));
    format!("{input}.{}", b64(sig.as_ref()))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn verify(keys: &[JwtKeySource], token: &str) -> Verification {
    let keys = JwtKeys::from_sources(keys).unwrap_or_else(|e| panic!("keys must load: {e}"));
    let jwt = jwt::decode(token).unwrap_or_else(|e| panic!("token must decode: {e}"));
    keys.verify(token, &jwt, None)
}

use super::jwt;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Runs a handshake whose requests carry `headers`, then returns all records (finish included).
fn session_with(cfg: McpConfig, headers: &[(&str, &str)]) -> (Vec<Value>, McpStats) {
    let mut sim = Sim::with(cfg);
    let c1 = client("c1", 40001);
    let mut out = Vec::new();
    let x = Exchange::post(headers);
    out.extend(sim.request(&c1, &x, INITIALIZE, SEC));
    let x = x.answered(200, &[("mcp-session-id", "s1")], Transport::Json);
    out.extend(sim.head(&c1, &x, SEC + 1));
    out.extend(sim.answer(&c1, &x, INITIALIZE_RESULT, SEC + 2));
    let mut with_sid: Vec<(&str, &str)> = headers.to_vec();
    with_sid.push(("mcp-session-id", "s1"));
    out.extend(sim.request(&c1, &Exchange::post(&with_sid), INITIALIZED, SEC + 3));
    out.extend(sim.finish(2 * SEC));
    (out, sim.tracker.stats())
}

fn identity_of(records: &[Value]) -> Value {
    let end = records
        .iter()
        .find(|r| r["type"] == "session_end")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "user": end["user"], "role": end["role"],
        "identity_source": end["identity_source"], "identity_verified": end["identity_verified"]
    })
}

fn jwt_cfg(role_claim: Option<&str>, keys: Vec<JwtKeySource>) -> McpConfig {
    McpConfig {
        identity: IdentityConfig {
            role_claim: role_claim.map(str::to_string),
            keys,
            ..IdentityConfig::default()
        },
        ..McpConfig::default()
    }
}

#[test]
fn an_hs256_token_signed_with_the_configured_secret_is_verified_and_never_output() {
    let token = hs256(
        SECRET,
        &json!({"sub": "alice", "roles": ["admin", "ops"], "exp": 4102444800u64}),
    );
    let auth = bearer(&token);
    let (records, stats) = session_with(
        jwt_cfg(
            Some("roles"),
            vec![JwtKeySource::Hs256Secret(SECRET.to_vec())],
        ),
        &[("authorization", &auth)],
    );
    assert_eq!(
        identity_of(&records),
        json!({"user": "alice", "role": "admin,ops", "identity_source": "jwt", "identity_verified": true})
    );
    assert_eq!((stats.jwt_errors, stats.jwt_unverified), (0, 0));
    let all = serde_json::to_string(&records).unwrap_or_default();
    let signature = token.rsplit('.').next().unwrap_or("?");
    assert!(
        !all.contains(&token) && !all.contains(signature),
        "the token must never be output: {all}"
    );
}

#[test]
fn an_hs256_token_with_a_wrong_signature_keeps_its_claims_but_is_marked_unverified_and_counted() {
    let forged = hs256(
        b"not the secret",
        &json!({"sub": "mallory", "role": "admin"}),
    );
    let auth = bearer(&forged);
    let (records, stats) = session_with(
        jwt_cfg(
            Some("role"),
            vec![JwtKeySource::Hs256Secret(SECRET.to_vec())],
        ),
        &[("Authorization", &auth)],
    );
    assert_eq!(
        identity_of(&records),
        json!({"user": "mallory", "role": "admin", "identity_source": "jwt", "identity_verified": false})
    );
    assert_eq!(
        stats.jwt_unverified, 1,
        "read once: the token did not change"
    );
    assert_eq!(
        verify(&[JwtKeySource::Hs256Secret(SECRET.to_vec())], &forged),
        Verification::BadSignature
    );
}

#[test]
fn without_keys_a_jwt_identity_is_read_but_unverified_and_nothing_is_counted() {
    let token = hs256(b"whatever", &json!({"sub": "bob"}));
    let auth = bearer(&token);
    let (records, stats) = session_with(McpConfig::default(), &[("authorization", &auth)]);
    assert_eq!(
        identity_of(&records),
        json!({"user": "bob", "role": null, "identity_source": "jwt", "identity_verified": false})
    );
    assert_eq!((stats.jwt_errors, stats.jwt_unverified), (0, 0));
}

#[test]
fn rs256_tokens_verify_against_spki_pem_pkcs1_der_and_a_jwks() {
    let pkcs1 = STANDARD
        .decode(RSA_PUBLIC_PKCS1_DER_B64)
        .unwrap_or_default();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "other-curve"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "encryption-only"},
        {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "rsa-1", "n": RSA_JWK_N, "e": "AQAB"}
    ]})
    .to_string();
    let ring_signed = rs256(&json!({"sub": "carol"}), None);
    for (what, keys) in [
        (
            "SPKI PEM",
            vec![JwtKeySource::Pem(RSA_PUBLIC_SPKI_PEM.into())],
        ),
        (
            "SPKI DER",
            vec![JwtKeySource::Der(pem_body(RSA_PUBLIC_SPKI_PEM))],
        ),
        ("PKCS#1 DER", vec![JwtKeySource::Der(pkcs1.clone())]),
        ("JWKS", vec![JwtKeySource::Jwks(jwks.clone())]),
    ] {
        assert_eq!(
            verify(&keys, OPENSSL_RS256_TOKEN),
            Verification::Verified,
            "{what}: openssl-signed"
        );
        assert_eq!(
            verify(&keys, &ring_signed),
            Verification::Verified,
            "{what}: ring-signed"
        );
    }
    // A JWKS whose only RSA key has another kid does not verify a token naming rsa-1.
    let other_kid =
        json!({"keys": [{"kty": "RSA", "kid": "rsa-2", "n": RSA_JWK_N, "e": "AQAB"}]}).to_string();
    assert_eq!(
        verify(&[JwtKeySource::Jwks(other_kid)], OPENSSL_RS256_TOKEN),
        Verification::NoMatchingKey
    );
    // Claims changed after signing.
    let mut parts: Vec<&str> = OPENSSL_RS256_TOKEN.split('.').collect();
    let tampered_claims = b64(br#"{"sub":"alice@example.com","roles":["admin","ops","root"]}"#);
    parts[1] = &tampered_claims;
    let tampered = parts.join(".");
    assert_eq!(
        verify(&[JwtKeySource::Pem(RSA_PUBLIC_SPKI_PEM.into())], &tampered),
        Verification::BadSignature
    );

    // Through the tracker: user and roles from the openssl-signed token.
    let auth = bearer(OPENSSL_RS256_TOKEN);
    let (records, _) = session_with(
        jwt_cfg(Some("roles"), vec![JwtKeySource::Jwks(jwks)]),
        &[("authorization", &auth)],
    );
    assert_eq!(
        identity_of(&records),
        json!({"user": "alice@example.com", "role": "admin,ops", "identity_source": "jwt", "identity_verified": true})
    );
}

#[test]
fn es256_tokens_verify_against_a_generated_p256_key_as_jwk_and_as_spki() {
    let (pair, point) = p256();
    let (_, other_point) = p256();
    let jwk = |point: &[u8], kid: &str| json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let token = es256(&pair, &json!({"sub": "dave", "groups": ["eng"]}), "ec-1");
    let jwks = json!({"keys": [jwk(&other_point, "ec-0"), jwk(&point, "ec-1")]}).to_string();
    assert_eq!(
        verify(&[JwtKeySource::Jwks(jwks)], &token),
        Verification::Verified
    );
    // A single JWK (not wrapped in `keys`) is accepted too.
    assert_eq!(
        verify(
            &[JwtKeySource::Jwks(jwk(&point, "ec-1").to_string())],
            &token
        ),
        Verification::Verified
    );
    let mut spki = unhex(P256_SPKI_PREFIX);
    spki.extend_from_slice(&point);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&spki)
    );
    assert_eq!(
        verify(&[JwtKeySource::Pem(pem)], &token),
        Verification::Verified
    );
    assert_eq!(
        verify(&[JwtKeySource::Der(spki)], &token),
        Verification::Verified
    );
    let mut wrong = unhex(P256_SPKI_PREFIX);
    wrong.extend_from_slice(&other_point);
    assert_eq!(
        verify(&[JwtKeySource::Der(wrong)], &token),
        Verification::BadSignature
    );
}

#[test]
fn the_algorithm_must_match_the_key_type() {
    // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = hs256(RSA_PUBLIC_SPKI_PEM.as_bytes(), &json!({"sub": "eve"}));
    let rsa_only = [JwtKeySource::Pem(RSA_PUBLIC_SPKI_PEM.into())];
    assert_eq!(verify(&rsa_only, &confused), Verification::NoMatchingKey);
    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none"}), &json!({"sub": "eve"}))
    );
    assert_eq!(verify(&rsa_only, &none), Verification::UnsupportedAlg);
    let rs512 = format!(
        "{}.AAAA",
        signing_input(&json!({"alg": "RS512"}), &json!({"sub": "eve"}))
    );
    assert_eq!(verify(&rsa_only, &rs512), Verification::UnsupportedAlg);
    // An RS256 token against only an HMAC secret.
    let rs = rs256(&json!({"sub": "eve"}), None);
    assert_eq!(
        verify(&[JwtKeySource::Hs256Secret(SECRET.to_vec())], &rs),
        Verification::NoMatchingKey
    );
}

#[test]
fn exp_and_nbf_are_checked_at_the_requests_kernel_time_when_a_realtime_offset_is_configured() {
    // Kernel time SEC..2*SEC maps to Unix time 1_700_000_001..
    let offset = 1_700_000_000 * SEC;
    let cfg = |offset: Option<u64>| McpConfig {
        realtime_offset_ns: offset,
        ..jwt_cfg(None, vec![JwtKeySource::Hs256Secret(SECRET.to_vec())])
    };
    let cases = [
        (json!({"sub": "u", "exp": 1_700_000_500u64}), true),
        (json!({"sub": "u", "exp": 1_699_990_000u64}), false), // expired long ago
        (json!({"sub": "u", "exp": 1_699_999_990u64}), true),  // within the 60 s skew
        (json!({"sub": "u", "nbf": 1_700_009_000u64}), false), // not yet valid
        (json!({"sub": "u", "nbf": 1_700_000_030u64}), true),  // within the skew
    ];
    for (claims, verified) in cases {
        let auth = bearer(&hs256(SECRET, &claims));
        let (records, stats) = session_with(cfg(Some(offset)), &[("authorization", &auth)]);
        assert_eq!(
            identity_of(&records)["identity_verified"],
            json!(verified),
            "{claims}"
        );
        assert_eq!(stats.jwt_unverified, u64::from(!verified), "{claims}");
        // Without the offset the tracker reads no clock: time claims are not checked.
        let (records, _) = session_with(cfg(None), &[("authorization", &auth)]);
        assert_eq!(
            identity_of(&records)["identity_verified"],
            json!(true),
            "{claims}"
        );
    }
}

#[test]
fn malformed_tokens_give_no_identity_are_counted_and_never_panic() {
    let long = format!(
        "{}.{}.{}",
        "a".repeat(8000),
        "b".repeat(8000),
        "c".repeat(500)
    );
    let cases: Vec<(String, JwtError)> = vec![
        ("opaque-oauth-token".into(), JwtError::Segments { count: 1 }),
        ("a.b".into(), JwtError::Segments { count: 2 }),
        ("a.b.c.d".into(), JwtError::Segments { count: 4 }),
        ("!!!.e30.".into(), JwtError::Base64 { part: "header" }),
        (
            format!("{}.e30.", b64(b"not json")),
            JwtError::NotObject { part: "header" },
        ),
        (
            format!("e30.{}.", b64(b"[]")),
            JwtError::NotObject { part: "payload" },
        ),
        ("e30.e30.***".into(), JwtError::Base64 { part: "signature" }),
        (
            long.clone(),
            JwtError::TooLong {
                len: long.len(),
                limit: jwt::MAX_TOKEN_BYTES,
            },
        ),
    ];
    for (token, want) in &cases {
        assert_eq!(jwt::decode(token).err().as_ref(), Some(want), "{token:.40}");
        let auth = bearer(token);
        let (records, stats) = session_with(McpConfig::default(), &[("authorization", &auth)]);
        assert_eq!(
            identity_of(&records),
            json!({"user": null, "role": null, "identity_source": null, "identity_verified": false})
        );
        assert_eq!(stats.jwt_errors, 1, "{token:.40}");
    }
    // Not a bearer token at all: nothing to read, nothing counted.
    let (records, stats) = session_with(
        McpConfig::default(),
        &[("authorization", "Basic YWxpY2U6cHc=")],
    );
    assert_eq!(identity_of(&records)["identity_source"], Value::Null);
    assert_eq!(stats.jwt_errors, 0);
    // `e30` is `{}`: a JWT with no claims gives no identity and no error.
    assert!(jwt::decode("e30.e30.").is_ok());
    // Padding on the segments is tolerated.
    let padded = format!(
        "{}=.{}==.",
        b64(br#"{"alg":"none"}"#),
        b64(br#"{"sub":"p"}"#)
    );
    assert_eq!(
        jwt::decode(&padded).map(|j| j.claims.get("sub").cloned()),
        Ok(Some(json!("p")))
    );

    // Every cut and many byte flips of a real token decode or fail, never panic.
    let keys =
        JwtKeys::from_sources(&[JwtKeySource::Pem(RSA_PUBLIC_SPKI_PEM.into())]).unwrap_or_default();
    let token = OPENSSL_RS256_TOKEN.as_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..4000 {
        let mut t = token.to_vec();
        if i < token.len() {
            t.truncate(i);
        } else {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pos = (seed as usize) % t.len();
            let alphabet = b"-_.AZaz09=+/\x00\xff";
            t[pos] = alphabet[(seed >> 40) as usize % alphabet.len()];
        }
        let s = String::from_utf8_lossy(&t);
        if let Ok(decoded) = jwt::decode(&s) {
            let v = keys.verify(&s, &decoded, Some(1_700_000_000));
            assert!(
                s == OPENSSL_RS256_TOKEN || !v.is_verified(),
                "a changed token must not verify: {s}"
            );
        }
    }
}

#[test]
fn a_configured_user_header_wins_over_the_jwt_and_is_never_verified() {
    let token = hs256(SECRET, &json!({"sub": "from-jwt"}));
    let auth = bearer(&token);
    let cfg = McpConfig {
        identity: IdentityConfig {
            user_header: Some("X-User".into()),
            role_header: Some("x-role".into()),
            keys: vec![JwtKeySource::Hs256Secret(SECRET.to_vec())],
            ..IdentityConfig::default()
        },
        ..McpConfig::default()
    };
    let (records, _) = session_with(
        cfg.clone(),
        &[
            ("authorization", &auth),
            ("x-user", "gateway-user"),
            ("X-Role", "analyst"),
        ],
    );
    assert_eq!(
        identity_of(&records),
        json!({"user": "gateway-user", "role": "analyst", "identity_source": "header", "identity_verified": false})
    );
    // Without the header, the JWT is read.
    let (records, _) = session_with(cfg, &[("authorization", &auth)]);
    assert_eq!(
        identity_of(&records),
        json!({"user": "from-jwt", "role": null, "identity_source": "jwt", "identity_verified": true})
    );
}

#[test]
fn claims_are_found_by_dotted_path_roles_arrays_are_joined_and_values_are_bounded() {
    let claims = json!({
        "sub": 12345,
        "preferred_username": "x".repeat(1000),
        "realm_access": {"roles": ["offline_access", "mcp-admin", 7, {"no": 1}]}
    });
    let resolver = |user: &str, role: &str| {
        IdentityResolver::new(IdentityConfig {
            user_claim: user.into(),
            role_claim: Some(role.into()),
            ..IdentityConfig::default()
        })
        .unwrap_or_else(|e| panic!("no keys, cannot fail: {e}"))
    };
    let headers = hdrs(&[("authorization", &bearer(&hs256(SECRET, &claims)))]);
    let id = resolver("sub", "realm_access.roles")
        .resolve(&headers, None)
        .identity;
    assert_eq!(
        id,
        Some(Identity {
            user: Some("12345".into()),
            role: Some("offline_access,mcp-admin,7".into()),
            source: IdentitySource::Jwt,
            verified: false,
        })
    );
    let id = resolver("preferred_username", "missing")
        .resolve(&headers, None)
        .identity;
    assert_eq!(id.and_then(|i| i.user).map(|u| u.len()), Some(256));
}

#[test]
fn the_identity_is_reread_when_the_token_changes_and_the_latest_wins() {
    let mut sim = Sim::with(jwt_cfg(
        None,
        vec![JwtKeySource::Hs256Secret(SECRET.to_vec())],
    ));
    let c1 = client("c1", 40001);
    sim.handshake(&c1, "s1", SEC);
    let first = bearer(&hs256(SECRET, &json!({"sub": "alice"})));
    let forged = bearer(&hs256(b"bad", &json!({"sub": "alice"})));
    let refreshed = bearer(&hs256(SECRET, &json!({"sub": "alice", "iat": 2})));
    for (i, auth) in [&first, &first, &forged, &forged, &refreshed]
        .iter()
        .enumerate()
    {
        let x = Exchange::post(&[("mcp-session-id", "s1"), ("authorization", auth)]);
        sim.request(
            &c1,
            &x,
            &format!(r#"{{"jsonrpc":"2.0","id":{},"method":"ping"}}"#, i + 1),
            2 * SEC,
        );
        let verified: Vec<Option<bool>> = sim
            .tracker
            .sessions()
            .map(|s| s.identity.as_ref().map(|i| i.verified))
            .collect();
        assert_eq!(verified, vec![Some(i != 2 && i != 3)], "after request {i}");
    }
    assert_eq!(sim.tracker.stats().jwt_unverified, 1);
}

#[test]
fn a_servers_own_identity_config_overrides_the_global_one() {
    let mut sim = Sim::with(McpConfig {
        servers: vec![ServerConfig {
            server: "127.0.0.1:8000".into(),
            session_id: None,
            identity: Some(IdentityConfig {
                jwt: false,
                user_header: Some("x-forwarded-user".into()),
                ..IdentityConfig::default()
            }),
        }],
        ..McpConfig::default()
    });
    let auth = bearer(&hs256(SECRET, &json!({"sub": "jwt-user"})));
    let x = Exchange::post(&[("mcp-session-id", "s1"), ("authorization", &auth)]);
    sim.request(
        &client("c1", 40001),
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        SEC,
    );
    let ended = sim.finish(2 * SEC);
    assert_eq!(
        identity_of(&ended)["identity_source"],
        Value::Null,
        "JWT reading is off for this server"
    );
    let x = Exchange::post(&[("mcp-session-id", "s2"), ("x-forwarded-user", "hdr-user")]);
    sim.request(
        &client("c1", 40001),
        &x,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        3 * SEC,
    );
    assert_eq!(identity_of(&sim.finish(4 * SEC))["user"], json!("hdr-user"));
}

#[test]
fn unusable_keys_are_refused_by_try_new_naming_the_server_and_skipped_and_counted_by_new() {
    let bad_pem =
        JwtKeySource::Pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
    let cfg = McpConfig {
        servers: vec![ServerConfig {
            server: "10.0.0.5:443/mcp".into(),
            session_id: None,
            identity: Some(IdentityConfig {
                keys: vec![JwtKeySource::Hs256Secret(SECRET.to_vec()), bad_pem],
                ..IdentityConfig::default()
            }),
        }],
        ..McpConfig::default()
    };
    let err = McpTracker::try_new(cfg.clone())
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "identity key for 10.0.0.5:443/mcp: PEM: certificates are not read; extract the key \
             with `openssl x509 -pubkey -noout -in <cert>`"
        )
    );
    assert_eq!(McpTracker::new(cfg).stats().key_errors, 1);

    let load = |s: JwtKeySource| JwtKeys::from_sources(&[s]).err().map(|e| e.to_string());
    assert_eq!(
        load(JwtKeySource::Pem("hello".into())).as_deref(),
        Some("PEM: no `-----BEGIN ...-----` block")
    );
    assert_eq!(
        load(JwtKeySource::Der(vec![0x30, 0x82, 0xff])).as_deref(),
        Some("DER public key: neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey")
    );
    assert_eq!(
        load(JwtKeySource::Hs256Secret(Vec::new())).as_deref(),
        Some("HS256 secret is empty")
    );
    assert_eq!(
        load(JwtKeySource::Jwks(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#.into()
        ))
        .as_deref(),
        Some("JWKS: no usable key (RSA for RS256, EC P-256 for ES256, oct for HS256)")
    );
    assert_eq!(
        load(JwtKeySource::Jwks("{".into())).map(|e| e.starts_with("JWKS: not JSON")),
        Some(true)
    );
    assert!(McpTracker::try_new(McpConfig::default()).is_ok());
}

#[test]
fn key_files_are_told_apart_by_content() {
    let dir = std::env::temp_dir().join(format!("mcpwarden-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        JwtKeySource::from_file(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    };
    assert!(matches!(
        write("k.pem", RSA_PUBLIC_SPKI_PEM.as_bytes()),
        JwtKeySource::Pem(_)
    ));
    assert!(matches!(
        write("k.json", b"  {\"keys\":[]}"),
        JwtKeySource::Jwks(_)
    ));
    assert!(matches!(
        write("k.der", &pem_body(RSA_PUBLIC_SPKI_PEM)),
        JwtKeySource::Der(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    #[test]
    fn arbitrary_tokens_never_panic(s in "[A-Za-z0-9_=.-]{0,300}") {
        if let Ok(jwt) = jwt::decode(&s) {
            let keys = JwtKeys::from_sources(&[JwtKeySource::Hs256Secret(SECRET.to_vec())]).unwrap_or_default();
            let _ = keys.verify(&s, &jwt, Some(0));
        }
    }

    #[test]
    fn arbitrary_key_material_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = JwtKeys::from_sources(&[JwtKeySource::Der(bytes.clone())]);
        let _ = JwtKeys::from_sources(&[JwtKeySource::Pem(format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----", STANDARD.encode(&bytes)))]);
        let _ = JwtKeys::from_sources(&[JwtKeySource::Jwks(text)]);
    }

    #[test]
    fn truncated_real_keys_never_panic(cut in 0usize..294) {
        let der = pem_body(RSA_PUBLIC_SPKI_PEM);
        let _ = JwtKeys::from_sources(&[JwtKeySource::Der(der[..cut.min(der.len())].to_vec())]);
    }
}
