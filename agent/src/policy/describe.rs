//! What `mcpwarden policy check` prints: the rules as the agent understood them.

use std::fmt::Write as _;

use serde_json::Value;

use super::format::{Cond, EraName, Fail, Match, UnknownCatalog};
use super::load::Policy;
use super::{Action, ReasonKind};

/// Every finding kind, in the order the README lists them.
pub const ALL_KINDS: [ReasonKind; 14] = [
    ReasonKind::SchemaViolation,
    ReasonKind::UnknownTool,
    ReasonKind::UnverifiableTool,
    ReasonKind::ToolDefinitionDrift,
    ReasonKind::MalformedJsonrpc,
    ReasonKind::WrongJsonrpcVersion,
    ReasonKind::MissingSessionId,
    ReasonKind::ProtocolVersionMismatch,
    ReasonKind::BeforeInitialize,
    ReasonKind::BodyTooLarge,
    ReasonKind::JsonTooDeep,
    ReasonKind::StringTooLong,
    ReasonKind::HeaderMismatch,
    ReasonKind::TruncatedRequest,
];

/// The wire name of a finding kind.
pub fn kind_name(k: ReasonKind) -> &'static str {
    match k {
        ReasonKind::SchemaViolation => "schema_violation",
        ReasonKind::UnknownTool => "unknown_tool",
        ReasonKind::UnverifiableTool => "unverifiable_tool",
        ReasonKind::ToolDefinitionDrift => "tool_definition_drift",
        ReasonKind::MalformedJsonrpc => "malformed_jsonrpc",
        ReasonKind::WrongJsonrpcVersion => "wrong_jsonrpc_version",
        ReasonKind::MissingSessionId => "missing_session_id",
        ReasonKind::ProtocolVersionMismatch => "protocol_version_mismatch",
        ReasonKind::BeforeInitialize => "before_initialize",
        ReasonKind::BodyTooLarge => "body_too_large",
        ReasonKind::JsonTooDeep => "json_too_deep",
        ReasonKind::StringTooLong => "string_too_long",
        ReasonKind::HeaderMismatch => "header_mismatch",
        ReasonKind::TruncatedRequest => "truncated_request",
    }
}

pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Audit => "audit",
        Action::Deny => "deny",
        Action::Approve => "approve",
    }
}

impl Policy {
    /// A human listing of the policy as understood (for `mcpwarden policy check`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "policy {}: OK", self.file.display());
        let _ = writeln!(out, "default: {}", action_name(self.default));
        let _ = writeln!(out, "record_allows: {}", self.record_allows);
        let _ = writeln!(
            out,
            "hold_timeout_ms: {} (then release, or reset for a matching rule with fail: closed)",
            self.hold_timeout_ms
        );
        let _ = writeln!(out, "approve_timeout_secs: {}", self.approve_timeout_secs);
        let _ = writeln!(
            out,
            "unknown_catalog: {}",
            match self.unknown_catalog {
                UnknownCatalog::Unverifiable => "unverifiable (an unverifiable_tool finding)",
                UnknownCatalog::Deny => "deny",
            }
        );
        let _ = writeln!(
            out,
            "limits: max_body_bytes {}, max_json_depth {}, max_string_bytes {}",
            self.limits.max_body_bytes, self.limits.max_json_depth, self.limits.max_string_bytes
        );
        let checks: Vec<String> = ALL_KINDS
            .iter()
            .map(|k| {
                let set = if self.checks.contains_key(k) {
                    ""
                } else {
                    " (default)"
                };
                format!(
                    "  {}: {}{set}",
                    kind_name(*k),
                    action_name(self.check_action(*k))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "checks (action when the finding is present):\n{}",
            checks.join("\n")
        );
        match &self.pins_file {
            Some(p) => {
                let n: usize = self.file_pins.values().map(|t| t.len()).sum();
                let _ = writeln!(out, "pins: {} ({n} pinned tools)", p.display());
            }
            None => {
                let _ = writeln!(out, "pins: in memory only (first sight)");
            }
        }
        if self.servers.is_empty() {
            let _ = writeln!(out, "servers: none");
        } else {
            let _ = writeln!(out, "servers (first fitting entry gives the default):");
            for (i, s) in self.servers.iter().enumerate() {
                let mut conds = Vec::new();
                if let Some(g) = &s.matcher.server {
                    conds.push(format!("server {}", g.0.describe()));
                }
                if let Some(g) = &s.matcher.host {
                    conds.push(format!("host {}", g.0.describe()));
                }
                let when = if conds.is_empty() {
                    "every server".to_string()
                } else {
                    conds.join(" and ")
                };
                let _ = writeln!(
                    out,
                    "  {}. {when}: default {}",
                    i + 1,
                    action_name(s.default)
                );
            }
        }
        if self.rules.is_empty() {
            let _ = writeln!(out, "rules: none");
        } else {
            let _ = writeln!(out, "rules (first match wins):");
            for (i, r) in self.rules.iter().enumerate() {
                let mut extra = Vec::new();
                if r.fail == Fail::Closed {
                    extra.push("fail closed".to_string());
                }
                if let Some(s) = r.approve_timeout_secs {
                    extra.push(format!("approve timeout {s} s"));
                }
                if r.block_connect {
                    extra.push("block new connections".to_string());
                }
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", extra.join(", "))
                };
                let _ = writeln!(
                    out,
                    "  {}. {}: {}{extra} when {}",
                    i + 1,
                    r.id,
                    action_name(r.action),
                    describe_match(&r.matcher)
                );
            }
        }
        out
    }
}

fn describe_match(m: &Match) -> String {
    let mut c = Vec::new();
    if let Some(g) = &m.server {
        c.push(format!("server {}", g.0.describe()));
    }
    if let Some(g) = &m.host {
        c.push(format!("host {}", g.0.describe()));
    }
    if let Some(cl) = &m.client {
        if let Some(g) = &cl.name {
            c.push(format!("client name {}", g.describe()));
        }
        if let Some(g) = &cl.version {
            c.push(format!("client version {}", g.describe()));
        }
    }
    if let Some(p) = &m.process {
        for (what, g) in [
            ("comm", &p.comm),
            ("exe", &p.exe),
            ("cgroup", &p.cgroup),
            ("container id", &p.container_id),
        ] {
            if let Some(g) = g {
                c.push(format!("process {what} {}", g.describe()));
            }
        }
        if let Some(u) = &p.uid {
            let list: Vec<String> = u.0.iter().map(u32::to_string).collect();
            c.push(format!("uid {}", list.join(" | ")));
        }
    }
    if let Some(i) = &m.identity {
        if let Some(g) = &i.user {
            c.push(format!("user {}", g.describe()));
        }
        if let Some(g) = &i.role {
            c.push(format!("a role {}", g.describe()));
        }
        if let Some(v) = i.verified {
            c.push(
                if v {
                    "identity verified"
                } else {
                    "identity not verified"
                }
                .to_string(),
            );
        }
    }
    if let Some(e) = m.era {
        c.push(format!(
            "era {}",
            match e {
                EraName::Handshake => "handshake",
                EraName::Stateless => "stateless",
            }
        ));
    }
    if let Some(g) = &m.method {
        c.push(format!("method {}", g.describe()));
    }
    if let Some(g) = &m.tool {
        c.push(format!("tools/call of tool {}", g.describe()));
    }
    if let Some(g) = &m.resource {
        c.push(format!("resources/read|subscribe of {}", g.describe()));
    }
    if let Some(g) = &m.prompt {
        c.push(format!("prompts/get of {}", g.describe()));
    }
    if let Some(args) = &m.args {
        for (path, cond) in &args.0 {
            c.push(format!("argument {path} {}", describe_cond(cond)));
        }
    }
    if let Some(k) = &m.check {
        let names: Vec<&str> = k.0.iter().map(|k| kind_name(*k)).collect();
        c.push(format!("a finding {}", names.join(" | ")));
    }
    if c.is_empty() {
        "always".into()
    } else {
        c.join(" and ")
    }
}

fn describe_cond(c: &Cond) -> String {
    match c {
        Cond::Equals(v) => format!("equals {}", compact(v)),
        Cond::OneOf(v) => {
            let list: Vec<String> = v.iter().map(compact).collect();
            format!("is one of {}", list.join(", "))
        }
        Cond::Prefix(p) => format!("starts with {p:?}"),
        Cond::Glob(g) => format!("matches glob {:?}", g.as_str()),
        Cond::Regex(r) => format!("matches regex {:?}", r.0.as_str()),
        Cond::Range(r) => match (r.min, r.max) {
            (Some(a), Some(b)) => format!("is a number in [{a}, {b}]"),
            (Some(a), None) => format!("is a number >= {a}"),
            (None, Some(b)) => format!("is a number <= {b}"),
            (None, None) => "is a number".into(),
        },
        Cond::Present => "is present".into(),
        Cond::Absent => "is absent".into(),
        Cond::Not(inner) => format!("not ({})", describe_cond(inner)),
    }
}

fn compact(v: &Value) -> String {
    v.to_string()
}
