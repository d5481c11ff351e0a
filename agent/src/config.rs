//! The agent's configuration file (YAML): where each MCP server keeps its session id, who the
//! user is (JWT claims verified with the given keys, or gateway headers), and timeouts.
//! Validated at load: every error names the file, the line and the field.
//!
//! ```yaml
//! session_header: mcp-session-id      # default
//! idle_timeout_secs: 600              # end sessions idle this long (never with a call pending)
//! close_grace_secs: 30                # end sessions this long after their last connection closed
//! stateless_idle_gap_secs: 300        # end stateless (2026-07-28) sessions idle this long
//! identity:                           # default for every server
//!   jwt: true                         # read Authorization: Bearer <JWT>
//!   user_claim: sub
//!   role_claim: roles                 # a string claim, or an array joined with ","
//!   keys:                             # without keys, identities are reported unverified
//!     - file: /etc/mcpwarden/jwks.json       # JWKS, PEM or DER public key (RS256, ES256)
//!     - hs256_secret_file: /etc/mcpwarden/hs256.key
//!   issuer: https://idp.example.com   # a verified token's `iss` must be exactly this
//!   audience: mcp-tools               # its `aud` must name this (or one of a list: [a, b])
//!   user_header: x-user               # trusted gateway headers (win over the JWT)
//!   role_header: x-role
//! content:                            # what was said, in message records
//!   payloads: redacted                # full | redacted (default) | off
//!   max_bytes: 65536                  # per params/result/error.data; longer is cut (truncated: true)
//!   redact: ["$.arguments.pin", "$..ssn"]  # JSON paths, besides secret-named keys
//!   headers: [x-request-id]           # request headers copied into records (secrets redacted)
//! session_update_secs: 10             # live session reports (session_start/session_update); 0: off
//! servers:
//!   - server: "10.0.0.5:8443/mcp"     # ip:port/path, or ip:port for every path
//!     session_id: { header: x-session }   # or { query: session_id }
//!     identity: { jwt: false, user_header: x-user }
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::mcp::content::{JsonPath, PayloadMode};
use crate::mcp::{IdentityConfig, JwtKeySource, McpConfig, ServerConfig, SessionIdLocation};

/// Why a configuration file was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the offending field (`servers[0].session_id`).
        field: String,
        message: String,
    },
    #[error("{file}: writable by group or others (mode {mode:o}): refusing it; `chmod go-w` it")]
    Unsafe { file: PathBuf, mode: u32 },
    #[error("{file}: field `{field}`: cannot read key file {key_file}: {source}")]
    KeyFile {
        file: PathBuf,
        field: String,
        key_file: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    session_header: Option<String>,
    idle_timeout_secs: Option<u64>,
    close_grace_secs: Option<u64>,
    stateless_idle_gap_secs: Option<u64>,
    identity: Option<FileIdentity>,
    content: Option<FileContent>,
    session_update_secs: Option<u64>,
    #[serde(default)]
    servers: Vec<FileServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContent {
    payloads: Option<FilePayloads>,
    max_bytes: Option<usize>,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FilePayloads {
    Full,
    Redacted,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    server: String,
    session_id: Option<FileSessionId>,
    identity: Option<FileIdentity>,
}

/// Exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSessionId {
    header: Option<String>,
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    jwt: Option<bool>,
    user_claim: Option<String>,
    role_claim: Option<String>,
    #[serde(default)]
    keys: Vec<FileKey>,
    issuer: Option<NonEmptyString>,
    audience: Option<Audience>,
    user_header: Option<String>,
    role_header: Option<String>,
}

/// A non-empty string (`issuer:`, and each entry of `audience:`).
#[derive(Debug)]
struct NonEmptyString(String);

impl<'de> Deserialize<'de> for NonEmptyString {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NonEmptyString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-empty string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NonEmptyString, E> {
                non_empty(v, &self).map(NonEmptyString)
            }
        }
        de.deserialize_string(V)
    }
}

/// `audience:` a non-empty string, or a non-empty list of them.
#[derive(Debug)]
struct Audience(Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-empty audience string, or a non-empty list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Audience, E> {
                non_empty(v, &self).map(|a| Audience(vec![a]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut all = Vec::new();
                while let Some(a) = seq.next_element::<NonEmptyString>()? {
                    all.push(a.0);
                }
                if all.is_empty() {
                    return Err(serde::de::Error::invalid_length(0, &self));
                }
                Ok(Audience(all))
            }
        }
        de.deserialize_any(V)
    }
}

fn non_empty<E: serde::de::Error>(v: &str, exp: &dyn serde::de::Expected) -> Result<String, E> {
    if v.is_empty() {
        return Err(E::invalid_value(serde::de::Unexpected::Str(v), exp));
    }
    Ok(v.to_string())
}

/// Exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    /// JWKS, PEM or DER public key.
    file: Option<PathBuf>,
    /// Raw bytes of an HS256 secret (trailing newline trimmed).
    hs256_secret_file: Option<PathBuf>,
}

/// Where a YAML document failed to deserialize: 1-based line and column (0 when unknown),
/// the dotted path of the field, and the reason alone.
pub(crate) struct YamlError {
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

/// Deserializes YAML with the offending field's path and position (shared by the
/// configuration and the policy file, so both report errors the same way).
pub(crate) fn yaml_located<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "(top level)".to_string(),
            p => p,
        };
        let inner = e.into_inner();
        let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
        // serde_norway prefixes the path and appends the position: keep the reason only.
        let text = inner.to_string();
        let text = match text.split_once(": ") {
            Some((pre, rest)) if field.starts_with(pre) => rest.to_string(),
            _ => text,
        };
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        YamlError {
            line,
            column,
            field,
            message,
        }
    })
}

/// Reads and validates a configuration file into the tracker's configuration.
pub fn load(path: &Path) -> Result<McpConfig, ConfigError> {
    refuse_writable_by_others(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// A file anyone else may rewrite must not steer a privileged agent.
pub fn refuse_writable_by_others(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(ConfigError::Unsafe {
            file: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Parses configuration text (`path` names it in errors and anchors relative key files).
pub fn parse(path: &Path, text: &str) -> Result<McpConfig, ConfigError> {
    let file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        yaml_located(text).map_err(|e| ConfigError::Invalid {
            file: path.to_path_buf(),
            line: e.line,
            column: e.column,
            field: e.field,
            message: e.message,
        })?
    };
    let mut cfg = McpConfig::default();
    if let Some(h) = file.session_header {
        cfg.session_header = h.to_ascii_lowercase();
    }
    if let Some(s) = file.idle_timeout_secs {
        cfg.idle_timeout_ns = s.saturating_mul(1_000_000_000);
    }
    if let Some(s) = file.close_grace_secs {
        cfg.close_grace_ns = s.saturating_mul(1_000_000_000);
    }
    if let Some(s) = file.stateless_idle_gap_secs {
        cfg.stateless_idle_gap_ns = s.saturating_mul(1_000_000_000);
    }
    if let Some(s) = file.session_update_secs {
        cfg.session_update_interval_ns = s.saturating_mul(1_000_000_000);
    }
    if let Some(c) = file.content {
        if let Some(m) = c.payloads {
            cfg.content.mode = match m {
                FilePayloads::Full => PayloadMode::Full,
                FilePayloads::Redacted => PayloadMode::Redacted,
                FilePayloads::Off => PayloadMode::Off,
            };
        }
        if let Some(n) = c.max_bytes {
            cfg.content.max_bytes = n;
        }
        for (i, p) in c.redact.iter().enumerate() {
            let parsed = JsonPath::parse(p)
                .map_err(|e| invalid(path, &format!("content.redact[{i}]"), &e.to_string()))?;
            cfg.content.redact_paths.push(parsed);
        }
        cfg.content.output_headers = c.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    }
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(id) = file.identity {
        cfg.identity = identity(path, base, "identity", id)?;
    }
    for (i, s) in file.servers.into_iter().enumerate() {
        let field = format!("servers[{i}]");
        let session_id = match s.session_id {
            None => None,
            Some(FileSessionId {
                header: Some(h),
                query: None,
            }) => Some(SessionIdLocation::Header(h.to_ascii_lowercase())),
            Some(FileSessionId {
                header: None,
                query: Some(q),
            }) => Some(SessionIdLocation::Query(q)),
            Some(_) => {
                return Err(invalid(
                    path,
                    &format!("{field}.session_id"),
                    "give exactly one of `header` or `query`",
                ))
            }
        };
        cfg.servers.push(ServerConfig {
            server: s.server,
            session_id,
            identity: s
                .identity
                .map(|id| identity(path, base, &format!("{field}.identity"), id))
                .transpose()?,
        });
    }
    Ok(cfg)
}

/// A semantic error found after parsing (no position: the field path locates it).
fn invalid(file: &Path, field: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn identity(
    file: &Path,
    base: &Path,
    field: &str,
    id: FileIdentity,
) -> Result<IdentityConfig, ConfigError> {
    let defaults = IdentityConfig::default();
    let mut keys = Vec::new();
    for (i, k) in id.keys.into_iter().enumerate() {
        let key_field = format!("{field}.keys[{i}]");
        let (p, hs) = match (k.file, k.hs256_secret_file) {
            (Some(p), None) => (p, false),
            (None, Some(p)) => (p, true),
            _ => {
                return Err(invalid(
                    file,
                    &key_field,
                    "give exactly one of `file` or `hs256_secret_file`",
                ))
            }
        };
        let p = if p.is_relative() { base.join(p) } else { p };
        let err = |source| ConfigError::KeyFile {
            file: file.to_path_buf(),
            field: key_field.clone(),
            key_file: p.clone(),
            source,
        };
        keys.push(if hs {
            let mut bytes = std::fs::read(&p).map_err(err)?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            JwtKeySource::Hs256Secret(bytes)
        } else {
            JwtKeySource::from_file(&p).map_err(err)?
        });
    }
    Ok(IdentityConfig {
        jwt: id.jwt.unwrap_or(defaults.jwt),
        user_claim: id.user_claim.unwrap_or(defaults.user_claim),
        role_claim: id.role_claim,
        keys,
        issuer: id.issuer.map(|i| i.0),
        audience: id.audience.map(|a| a.0).unwrap_or_default(),
        user_header: id.user_header.map(|h| h.to_ascii_lowercase()),
        role_header: id.role_header.map(|h| h.to_ascii_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(Path::new("/etc/mcpwarden.yaml"), text) {
            Ok(c) => panic!("want an error for {text:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(
            parse(Path::new("x.yaml"), "").unwrap(),
            McpConfig::default()
        );
    }

    #[test]
    fn a_full_file_sets_every_knob() {
        let dir = tempfile_dir();
        let secret = dir.join("hs.key");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text = "session_header: X-Sess\nidle_timeout_secs: 5\nclose_grace_secs: 2\n\
                    stateless_idle_gap_secs: 7\n\
                    identity:\n  role_claim: roles\n  keys:\n    - hs256_secret_file: hs.key\n\
                    servers:\n  - server: \"127.0.0.1:9000/mcp\"\n    session_id: { query: session_id }\n\
                    \x20   identity: { jwt: false, user_header: X-User }\n";
        let cfg = parse(&dir.join("c.yaml"), text).unwrap();
        assert_eq!(cfg.session_header, "x-sess");
        assert_eq!(cfg.idle_timeout_ns, 5_000_000_000);
        assert_eq!(cfg.close_grace_ns, 2_000_000_000);
        assert_eq!(cfg.stateless_idle_gap_ns, 7_000_000_000);
        assert_eq!(cfg.identity.role_claim.as_deref(), Some("roles"));
        assert_eq!(
            cfg.identity.keys,
            vec![JwtKeySource::Hs256Secret(b"s3cret".to_vec())]
        );
        assert_eq!(cfg.servers.len(), 1);
        assert_eq!(
            cfg.servers[0].session_id,
            Some(SessionIdLocation::Query("session_id".into()))
        );
        let id = cfg.servers[0].identity.as_ref().unwrap();
        assert!(!id.jwt);
        assert_eq!(id.user_header.as_deref(), Some("x-user"));
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpwarden-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn issuer_and_audience_are_read_globally_and_per_server() {
        let text = "identity:\n  issuer: https://idp.example.com\n  audience: mcp-tools\n\
                    servers:\n  - server: \"10.0.0.5:443\"\n    identity:\n\
                    \x20     issuer: \"https://idp.example.com/tenant\"\n\
                    \x20     audience: [mcp-a, \"mcp-b\"]\n  - server: \"10.0.0.6:443\"\n\
                    \x20   identity: { audience: [\"123\"] }\n";
        let cfg = parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(
            cfg.identity.issuer.as_deref(),
            Some("https://idp.example.com")
        );
        assert_eq!(cfg.identity.audience, vec!["mcp-tools".to_string()]);
        let per_server: Vec<(Option<&str>, &[String])> = cfg
            .servers
            .iter()
            .filter_map(|s| s.identity.as_ref())
            .map(|id| (id.issuer.as_deref(), id.audience.as_slice()))
            .collect();
        assert_eq!(
            per_server,
            vec![
                (
                    Some("https://idp.example.com/tenant"),
                    &["mcp-a".to_string(), "mcp-b".to_string()][..]
                ),
                (None, &["123".to_string()][..]),
            ]
        );
        // Not configured: not checked.
        let cfg = parse(Path::new("c.yaml"), "identity:\n  jwt: true\n").unwrap();
        assert_eq!(
            (cfg.identity.issuer, cfg.identity.audience),
            (None, Vec::new())
        );
    }

    #[test]
    fn a_bad_issuer_or_audience_names_file_line_column_and_field() {
        for (text, at, field) in [
            ("identity:\n  issuer: \"\"\n", ":2:", "identity.issuer"),
            ("identity:\n  issuer: [a]\n", ":2:", "identity.issuer"),
            ("identity:\n  audience: 3\n", ":2:", "identity.audience"),
            ("identity:\n  audience: []\n", ":2:", "identity.audience"),
            (
                "identity:\n  audience: { a: b }\n",
                ":2:",
                "identity.audience",
            ),
            (
                "servers:\n  - server: a\n    identity:\n      audience: [ok, \"\"]\n",
                ":4:",
                "servers[0].identity.audience[1]",
            ),
        ] {
            let e = err(text);
            assert!(
                e.starts_with(&format!("/etc/mcpwarden.yaml{at}")),
                "{text:?}: {e}"
            );
            assert!(e.contains(&format!("field `{field}`: ")), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_unknown_field_names_file_line_and_field() {
        let e = err("session_header: a\nidle_timeout: 5\n");
        assert!(e.starts_with("/etc/mcpwarden.yaml:2:"), "{e}");
        assert!(e.contains("idle_timeout"), "{e}");
    }

    #[test]
    fn a_wrong_type_inside_a_server_names_its_path() {
        let e = err("servers:\n  - server: a\n  - server: b\n    session_id: { cookie: x }\n");
        assert!(e.starts_with("/etc/mcpwarden.yaml:4:"), "{e}");
        assert!(e.contains("field `servers[1].session_id"), "{e}");
    }

    #[test]
    fn a_number_where_a_bool_belongs_names_the_field() {
        let e = err("identity:\n  jwt: 3\n");
        assert!(e.starts_with("/etc/mcpwarden.yaml:2:"), "{e}");
        assert!(e.contains("field `identity.jwt`"), "{e}");
    }

    #[test]
    fn a_key_with_two_sources_names_the_key_entry() {
        let e = err("identity:\n  keys:\n    - { file: a, hs256_secret_file: b }\n");
        assert!(
            e.contains("field `identity.keys[0]`: give exactly one"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_key_file_names_the_key_entry() {
        let e = err("identity:\n  keys:\n    - file: /nonexistent/jwks.json\n");
        assert!(e.contains("field `identity.keys[0]`"), "{e}");
        assert!(e.contains("/nonexistent/jwks.json"), "{e}");
    }

    #[test]
    fn the_content_section_sets_mode_bound_paths_and_headers() {
        let cfg = parse(
            Path::new("c.yaml"),
            "content:\n  payloads: full\n  max_bytes: 100\n  redact: [\"$.arguments.pin\"]\n  headers: [X-Request-Id]\nsession_update_secs: 3\n",
        )
        .unwrap();
        assert_eq!(cfg.content.mode, PayloadMode::Full);
        assert_eq!(cfg.content.max_bytes, 100);
        assert_eq!(cfg.content.redact_paths[0].as_str(), "$.arguments.pin");
        assert_eq!(cfg.content.output_headers, vec!["x-request-id".to_string()]);
        assert_eq!(cfg.session_update_interval_ns, 3_000_000_000);
    }

    #[test]
    fn a_bad_redact_path_or_payload_mode_names_the_field() {
        let e = err("content:\n  redact: [\"$.a[\"]\n");
        assert!(e.contains("field `content.redact[0]`"), "{e}");
        let e = err("content:\n  payloads: some\n");
        assert!(e.starts_with("/etc/mcpwarden.yaml:2:"), "{e}");
        assert!(e.contains("content.payloads"), "{e}");
    }

    #[test]
    fn a_file_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let p = dir.join("open.yaml");
        std::fs::write(&p, "idle_timeout_secs: 5\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("writable by group or others (mode 666)"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&p).is_ok());
    }
}
