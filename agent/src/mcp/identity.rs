//! Who is behind a session: user and role from a configured header, or from a claim of the JWT
//! in `Authorization: Bearer`, verified when keys are configured.
//!
//! The token never leaves this module: only the claims named in the configuration are copied
//! out, cut to a bounded length.

use serde::Serialize;
use serde_json::Value;

use super::config::IdentityConfig;
use super::header_value;
use super::jwt::{self, ClaimRules, JwtError, JwtKeys, KeyError, Verification};

/// Longest user or role value kept (longer ones are cut at a char boundary).
pub const MAX_IDENTITY_BYTES: usize = 256;
/// Most role entries joined from an array claim.
pub const MAX_ROLES: usize = 32;

/// Where an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    Jwt,
    Header,
}

/// A session's user and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<String>,
    pub role: Option<String>,
    pub source: IdentitySource,
    /// A configured key verified the JWT's signature, its time claims (when checked) and its
    /// `iss` and `aud` (when configured). Always `false` for header identities.
    pub verified: bool,
}

/// What reading one request's headers gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub identity: Option<Identity>,
    /// The bearer token is not a readable JWT.
    pub malformed: Option<JwtError>,
    /// Keys are configured and did not verify the token (`None` when verified or no keys).
    pub unverified: Option<Verification>,
}

/// An [`IdentityConfig`] with its keys parsed.
#[derive(Debug)]
pub struct IdentityResolver {
    cfg: IdentityConfig,
    keys: JwtKeys,
}

impl IdentityResolver {
    /// Fails on the first unusable key.
    pub fn new(cfg: IdentityConfig) -> Result<Self, KeyError> {
        let keys = JwtKeys::from_sources(&cfg.keys)?;
        Ok(IdentityResolver { cfg, keys })
    }

    /// Skips unusable keys and returns them.
    pub fn lenient(cfg: IdentityConfig) -> (Self, Vec<KeyError>) {
        let (keys, errors) = JwtKeys::from_sources_lenient(&cfg.keys);
        (IdentityResolver { cfg, keys }, errors)
    }

    fn claim_rules(&self) -> ClaimRules<'_> {
        ClaimRules {
            issuer: self.cfg.issuer.as_deref(),
            audiences: &self.cfg.audience,
        }
    }

    /// The request headers that decide the identity (for change detection).
    pub fn inputs<'h>(&self, headers: &'h [(String, String)]) -> [Option<&'h str>; 3] {
        let header = |name: &Option<String>| name.as_deref().and_then(|n| header_value(headers, n));
        [
            self.cfg
                .jwt
                .then(|| header_value(headers, "authorization"))
                .flatten(),
            header(&self.cfg.user_header),
            header(&self.cfg.role_header),
        ]
    }

    /// The identity one request's headers carry. `now_unix_s`: when given, JWT `exp`/`nbf`
    /// are checked against it. A token whose signature verifies is then held to the configured
    /// `issuer` and `audience`.
    pub fn resolve(&self, headers: &[(String, String)], now_unix_s: Option<u64>) -> Resolution {
        let [auth, user_header, role_header] = self.inputs(headers);
        let mut res = Resolution {
            identity: None,
            malformed: None,
            unverified: None,
        };
        if let Some(user) = user_header {
            res.identity = Some(Identity {
                user: Some(cap(user)),
                role: role_header.map(cap),
                source: IdentitySource::Header,
                verified: false,
            });
            return res;
        }
        let Some(token) = auth.and_then(bearer) else {
            return res;
        };
        let decoded = match jwt::decode(token) {
            Ok(decoded) => decoded,
            Err(e) => {
                res.malformed = Some(e);
                return res;
            }
        };
        let verification = match self.keys.verify(token, &decoded, now_unix_s) {
            Verification::Verified => jwt::check_claims(&decoded.claims, self.claim_rules()),
            other => other,
        };
        if !matches!(verification, Verification::Verified | Verification::NoKeys) {
            res.unverified = Some(verification);
        }
        let user = claim(&decoded.claims, &self.cfg.user_claim).and_then(scalar);
        let role = self
            .cfg
            .role_claim
            .as_deref()
            .and_then(|name| claim(&decoded.claims, name))
            .and_then(roles);
        if user.is_some() || role.is_some() {
            res.identity = Some(Identity {
                user,
                role,
                source: IdentitySource::Jwt,
                verified: verification.is_verified(),
            });
        }
        res
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A claim by literal name, else by a dotted path through objects.
fn claim<'v>(claims: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(cap(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string, or an array of strings joined with `,`.
fn roles(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => {
            let joined = items
                .iter()
                .filter_map(scalar)
                .take(MAX_ROLES)
                .collect::<Vec<_>>()
                .join(",");
            (!joined.is_empty()).then(|| cap(&joined))
        }
        other => scalar(other),
    }
}

fn cap(s: &str) -> String {
    if s.len() <= MAX_IDENTITY_BYTES {
        return s.to_string();
    }
    let mut end = MAX_IDENTITY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
