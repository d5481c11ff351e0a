//! Reading and validating a policy file (and the pins file it names) into a [`Policy`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::format::{FilePolicy, IdScope, Rule, ServerDefault, UnknownCatalog};
use super::{Action, ReasonKind};

/// Why a policy (or its pins file) was refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{file}: refusing a file writable by group or others (mode {mode:04o}): \
         `chmod go-w` it"
    )]
    Permissions { file: PathBuf, mode: u32 },
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the offending field (`rules[0].match.args.url`).
        field: String,
        message: String,
    },
}

/// `limits:` of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    /// Nesting depth of the JSON-RPC message: the message object is 1, `params: {}` is 2.
    pub max_json_depth: u64,
    /// Longest string (member names included), in bytes.
    pub max_string_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_json_depth: 64,
            max_string_bytes: 1024 * 1024,
        }
    }
}

/// Pins: `{server: {tool: sha256 hex of the canonical definition}}`.
pub type PinMap = BTreeMap<String, BTreeMap<String, String>>;

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) file: PathBuf,
    pub(crate) default: Action,
    pub(crate) record_allows: bool,
    pub(crate) hold_timeout_ms: u64,
    pub(crate) approve_timeout_secs: u64,
    pub(crate) unknown_catalog: UnknownCatalog,
    pub(crate) limits: Limits,
    /// Only what the file sets; [`Policy::check_action`] adds the defaults.
    pub(crate) checks: BTreeMap<ReasonKind, Action>,
    pub(crate) pins_file: Option<PathBuf>,
    /// What the pins file held when the policy was loaded.
    pub(crate) file_pins: PinMap,
    pub(crate) servers: Vec<ServerDefault>,
    pub(crate) rules: Vec<Rule>,
}

impl Default for Policy {
    /// `default: allow`, no rules, default checks and limits.
    fn default() -> Self {
        Policy {
            file: PathBuf::new(),
            default: Action::Allow,
            record_allows: false,
            hold_timeout_ms: 50,
            approve_timeout_secs: 120,
            unknown_catalog: UnknownCatalog::Unverifiable,
            limits: Limits::default(),
            checks: BTreeMap::new(),
            pins_file: None,
            file_pins: PinMap::new(),
            servers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl Policy {
    /// Hold mode: how long a paused write waits for a decision before it is released
    /// (or reset, for a matching rule with `fail: closed`).
    pub fn hold_timeout_ms(&self) -> u64 {
        self.hold_timeout_ms
    }

    /// Whether plain allows get verdict records too.
    pub fn record_allows(&self) -> bool {
        self.record_allows
    }

    /// Default time a person has to approve a held call.
    pub fn approve_timeout_ms(&self) -> u64 {
        self.approve_timeout_secs.saturating_mul(1000)
    }

    /// The file the policy came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The configured pins file, if any.
    pub fn pins_file(&self) -> Option<&Path> {
        self.pins_file.as_deref()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The `checks` table entry for `kind`, defaults included.
    pub fn check_action(&self, kind: ReasonKind) -> Action {
        match self.checks.get(&kind) {
            Some(a) => *a,
            None if kind == ReasonKind::ToolDefinitionDrift => Action::Deny,
            None => Action::Audit,
        }
    }
}

/// Reads and validates a policy file. Refuses a file writable by group or others.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    check_not_writable_by_others(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

pub(crate) fn check_not_writable_by_others(path: &Path) -> Result<(), PolicyError> {
    let meta = std::fs::metadata(path).map_err(|source| PolicyError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(PolicyError::Permissions {
            file: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Parses policy text (`file` names it in errors and anchors a relative pins file). Reads
/// the pins file when one is configured (a missing one is empty: it is created when the
/// first pin is written).
pub fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
    let parsed: FilePolicy = if text.trim().is_empty() {
        FilePolicy::default()
    } else {
        let _ids = IdScope::enter();
        yaml(text, file)?
    };
    let defaults = Policy::default();
    let limits = parsed.limits.unwrap_or_default();
    let pins_file = parsed.pins.map(|p| {
        if p.file.is_relative() {
            file.parent().unwrap_or(Path::new(".")).join(p.file)
        } else {
            p.file
        }
    });
    let file_pins = match &pins_file {
        Some(p) => read_pins(p)?,
        None => PinMap::new(),
    };
    Ok(Policy {
        file: file.to_path_buf(),
        default: parsed.default.unwrap_or(defaults.default),
        record_allows: parsed.record_allows.unwrap_or(defaults.record_allows),
        hold_timeout_ms: parsed.hold_timeout_ms.unwrap_or(defaults.hold_timeout_ms),
        approve_timeout_secs: parsed
            .approve_timeout_secs
            .unwrap_or(defaults.approve_timeout_secs),
        unknown_catalog: parsed.unknown_catalog.unwrap_or_default(),
        limits: Limits {
            max_body_bytes: limits
                .max_body_bytes
                .unwrap_or(defaults.limits.max_body_bytes),
            max_json_depth: limits
                .max_json_depth
                .unwrap_or(defaults.limits.max_json_depth),
            max_string_bytes: limits
                .max_string_bytes
                .unwrap_or(defaults.limits.max_string_bytes),
        },
        checks: parsed.checks,
        pins_file,
        file_pins,
        servers: parsed.servers,
        rules: parsed.rules,
    })
}

/// Deserializes YAML, turning an error into `FILE:LINE:COLUMN: field `path`: message`.
fn yaml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, PolicyError> {
    crate::config::yaml_located(text).map_err(|e| PolicyError::Invalid {
        file: file.to_path_buf(),
        line: e.line,
        column: e.column,
        field: e.field,
        message: e.message,
    })
}

/// Reads a pins file; a missing file is empty.
pub(crate) fn read_pins(path: &Path) -> Result<PinMap, PolicyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PinMap::new()),
        Err(source) => {
            return Err(PolicyError::Read {
                file: path.to_path_buf(),
                source,
            })
        }
    };
    check_not_writable_by_others(path)?;
    if text.trim().is_empty() {
        return Ok(PinMap::new());
    }
    let pins: BTreeMap<String, BTreeMap<String, PinHash>> = yaml(&text, path)?;
    Ok(pins
        .into_iter()
        .map(|(server, tools)| (server, tools.into_iter().map(|(t, h)| (t, h.0)).collect()))
        .collect())
}

/// A SHA-256 in lower-case hex (upper case accepted, stored lower).
struct PinHash(String);

impl<'de> serde::Deserialize<'de> for PinHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::glob::validated_str(d, "a SHA-256 in hex", |s| {
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(PinHash(s.to_ascii_lowercase()))
            } else {
                Err(format!("`{s}` is not a SHA-256 in hex (64 hex digits)"))
            }
        })
    }
}

/// Writes `pins` to `path` atomically (a temporary file renamed over it), mode 0600.
pub(crate) fn write_pins(path: &Path, pins: &PinMap) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::from(
        "# mcpwarden tool pins: server -> tool -> SHA-256 of the canonical definition.\n\
         # Written by the agent (first sight, `mcpwarden catalog accept`); edits are read on reload.\n",
    );
    let body = serde_norway::to_string(pins).map_err(std::io::Error::other)?;
    if !pins.is_empty() {
        text.push_str(&body);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pins".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
