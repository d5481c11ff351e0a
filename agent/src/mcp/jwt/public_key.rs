//! Public keys from PEM and DER material, read with maintained crates: `pem` for the blocks,
//! `spki` for SubjectPublicKeyInfo (`PUBLIC KEY`) and `pkcs1` for PKCS#1 `RSAPublicKey`
//! (`RSA PUBLIC KEY`). Only what `ring` verifies here is accepted: RSA, and EC on P-256.

use pkcs1::RsaPublicKeyRef;
use spki::der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::KeyError;

/// A public key, in the form `ring` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicKey {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed P-256 point: `04 || x || y`.
    P256 { point: Vec<u8> },
}

/// id-ecPublicKey, RFC 5480.
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 / P-256.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / P-384 (named in errors only).
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// Ed25519, RFC 8410 (named in errors only).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Length of an uncompressed P-256 point.
const P256_POINT_LEN: usize = 65;

fn pem_err(reason: impl Into<String>) -> KeyError {
    KeyError::Pem {
        reason: reason.into(),
    }
}

fn der_err(reason: impl Into<String>) -> KeyError {
    KeyError::Der {
        reason: reason.into(),
    }
}

/// Every key of a PEM text: `PUBLIC KEY` and `RSA PUBLIC KEY` blocks, one after the other.
pub(super) fn from_pem(text: &str) -> Result<Vec<PublicKey>, KeyError> {
    let blocks = pem::parse_many(text).map_err(|e| pem_err(e.to_string()))?;
    if blocks.is_empty() {
        return Err(pem_err("no `-----BEGIN ...-----` block"));
    }
    blocks
        .iter()
        .map(|block| {
            let label = block.tag();
            if block.headers().iter().next().is_some() {
                return Err(pem_err(format!(
                    "block `{label}` has headers (encrypted?); want a plain public key"
                )));
            }
            match label {
                "PUBLIC KEY" => spki(block.contents()),
                "RSA PUBLIC KEY" => rsa_pkcs1(block.contents()),
                "CERTIFICATE" => Err(pem_err(
                    "certificates are not read; extract the key with \
                     `openssl x509 -pubkey -noout -in <cert>`",
                )),
                other => Err(pem_err(format!(
                    "block `{other}` is not a public key (want `PUBLIC KEY` or `RSA PUBLIC KEY`)"
                ))),
            }
        })
        .collect()
}

/// A DER key: SubjectPublicKeyInfo, else PKCS#1 `RSAPublicKey`.
pub(super) fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
    match SubjectPublicKeyInfoRef::from_der(der) {
        Ok(info) => spki_key(info),
        Err(_) => rsa_pkcs1(der)
            .map_err(|_| der_err("neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey")),
    }
}

/// SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) of an RSA or P-256 key.
fn spki(der: &[u8]) -> Result<PublicKey, KeyError> {
    let info = SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| der_err(format!("not a SubjectPublicKeyInfo: {e}")))?;
    spki_key(info)
}

fn spki_key(info: SubjectPublicKeyInfoRef<'_>) -> Result<PublicKey, KeyError> {
    let key = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| der_err("BIT STRING with unused bits"))?;
    let alg = info.algorithm;
    if alg.oid == pkcs1::ALGORITHM_OID {
        return rsa_pkcs1(key);
    }
    if alg.oid == OID_ED25519 {
        return Err(der_err(
            "Ed25519 key: EdDSA is not supported (RS256, ES256 with P-256, HS256)",
        ));
    }
    if alg.oid != OID_EC {
        return Err(der_err(format!(
            "key algorithm {} is neither RSA nor EC",
            alg.oid
        )));
    }
    let curve = alg
        .parameters_oid()
        .map_err(|e| der_err(format!("EC key without a named curve: {e}")))?;
    if curve == OID_P384 {
        return Err(der_err(
            "EC key on P-384: ES384 is not supported (ES256 needs P-256)",
        ));
    }
    if curve != OID_P256 {
        return Err(der_err(format!("EC key on curve {curve}, not P-256")));
    }
    if key.len() != P256_POINT_LEN || key.first() != Some(&4) {
        return Err(der_err("P-256 key is not an uncompressed point"));
    }
    Ok(PublicKey::P256 {
        point: key.to_vec(),
    })
}

/// PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1): SEQUENCE { n INTEGER, e INTEGER }.
fn rsa_pkcs1(der: &[u8]) -> Result<PublicKey, KeyError> {
    let key = RsaPublicKeyRef::from_der(der)
        .map_err(|e| der_err(format!("not a PKCS#1 RSAPublicKey: {e}")))?;
    let n = strip_zeros(key.modulus.as_bytes());
    let e = strip_zeros(key.public_exponent.as_bytes());
    if n.is_empty() || e.is_empty() {
        return Err(der_err("RSA key with a zero modulus or exponent"));
    }
    Ok(PublicKey::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[zeros..]
}
