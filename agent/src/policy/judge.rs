//! The judge: adds the policy's own checks to a request's findings, matches the rules and
//! decides.
//!
//! Precedence (documented in the README, "Policy"):
//! 1. the first rule whose `match` fits gives the rule's action;
//! 2. the `checks` table gives the strictest action among the findings present
//!    (`unknown_catalog: deny` adds `deny` for a call whose server's catalogue was never seen);
//! 3. without a matching rule, the first fitting `servers[]` entry's `default`, else the global
//!    `default`, gives the base action;
//! 4. the verdict is the stricter of the rule's (or base) action and the checks action
//!    (deny > approve > audit > allow), except that a rule whose `match` names `check:`
//!    decides alone: that is how a check is waived or softened for what the rule matches.

use serde::Serialize;

use super::format::{Fail, Rule, UnknownCatalog};
use super::limits;
use super::load::Policy;
use super::matching::{arguments, rule_matches, server_matches};
use super::pins::{PinCheck, PinTable};
use super::schema::{violations, SchemaCache};
use super::{Action, Judgement, Reason, ReasonKind, RequestFacts};
use crate::mcp::ToolCatalog;

/// Compiled schemas kept.
pub const SCHEMA_CACHE_ENTRIES: usize = 1024;
/// Pinned tools kept.
pub const MAX_PINS: usize = 65_536;

/// Counters of the judge (cumulative over reloads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JudgeStats {
    pub judged: u64,
    pub allowed: u64,
    pub audited: u64,
    pub denied: u64,
    pub approve: u64,
    /// Verdicts given by a rule; by the `checks` table; by a server or global default.
    pub by_rule: u64,
    pub by_check: u64,
    pub by_default: u64,
    /// Findings added by the policy's own checks (schema, catalogue, pins, limits).
    pub findings_added: u64,
    pub schema_compiles: u64,
    pub schema_compile_errors: u64,
    pub schema_cache_hits: u64,
    pub schema_cache_size: u64,
    pub schema_cache_evictions: u64,
    pub pins: u64,
    pub pin_evictions: u64,
    pub pins_file_writes: u64,
    pub pins_file_write_errors: u64,
    /// The last pins file write error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pins_file_error: Option<String>,
}

/// Judges client→server messages against a [`Policy`]; keeps pins and compiled schemas.
pub struct Judge {
    policy: Policy,
    pins: PinTable,
    schemas: SchemaCache,
    stats: JudgeStats,
}

/// What gave a verdict (for the counters).
#[derive(Clone, Copy)]
enum DecidedBy {
    Rule,
    Check,
    Default,
}

/// Strictness: deny > approve > audit > allow.
fn rank(a: Action) -> u8 {
    match a {
        Action::Allow => 0,
        Action::Audit => 1,
        Action::Approve => 2,
        Action::Deny => 3,
    }
}

fn stricter(a: Action, b: Action) -> Action {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

impl Judge {
    pub fn new(policy: Policy) -> Judge {
        super::schema::warm_up();
        let mut pins = PinTable::new(MAX_PINS);
        pins.load_file_pins(&policy.file_pins);
        Judge {
            policy,
            pins,
            schemas: SchemaCache::new(SCHEMA_CACHE_ENTRIES),
            stats: JudgeStats::default(),
        }
    }

    /// Reload: pins and compiled schemas stay; entries of the new policy's pins file that
    /// differ from the table replace their pins.
    pub fn set_policy(&mut self, policy: Policy) {
        self.pins.load_file_pins(&policy.file_pins);
        self.policy = policy;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A server's complete tools list was (re)committed: first sight pins each tool's
    /// definition (written to the pins file, when one is configured), and each `inputSchema`
    /// is compiled now, between the list and the calls, rather than by the first call.
    pub fn observe_catalog(&mut self, server: &str, catalog: &ToolCatalog) {
        let mut added = false;
        for (name, def) in &catalog.tools {
            added |= self.pins.observe(server, def);
            if let Some(schema) = &def.input_schema {
                let _ = self.schemas.get(server, name, &def.hash, schema);
            }
        }
        if added {
            self.persist_pins();
        }
    }

    /// `mcpwarden catalog accept SERVER TOOL`: the tool's current definition becomes its pin;
    /// false if the tool was never seen. Rewrites the pins file when one is configured.
    pub fn accept(&mut self, server: &str, tool: &str) -> bool {
        let ok = self.pins.accept(server, tool);
        if ok {
            self.persist_pins();
        }
        ok
    }

    pub fn stats(&self) -> JudgeStats {
        let mut s = self.stats.clone();
        s.schema_compiles = self.schemas.counts.compiles;
        s.schema_compile_errors = self.schemas.counts.compile_errors;
        s.schema_cache_hits = self.schemas.counts.hits;
        s.schema_cache_evictions = self.schemas.counts.evictions;
        s.schema_cache_size = self.schemas.len() as u64;
        s.pins = self.pins.len() as u64;
        s.pin_evictions = self.pins.evictions;
        s
    }

    fn persist_pins(&mut self) {
        let Some(path) = self.policy.pins_file.clone() else {
            return;
        };
        match super::load::write_pins(&path, &self.pins.to_map()) {
            Ok(()) => self.stats.pins_file_writes += 1,
            Err(e) => {
                self.stats.pins_file_write_errors += 1;
                self.stats.last_pins_file_error = Some(format!("{}: {e}", path.display()));
            }
        }
    }

    /// Judges one client→server message. `catalog` is the catalogue of `facts.server`.
    pub fn judge(&mut self, facts: &RequestFacts<'_>, catalog: Option<&ToolCatalog>) -> Judgement {
        let mut reasons = facts.findings.clone();
        let own_from = reasons.len();
        if facts.cut {
            reasons.push(Reason {
                kind: ReasonKind::TruncatedRequest,
                detail: format!(
                    "the request's body ({} bytes) was cut before it was all read (over the \
                     body limit, or bytes lost in capture): judged by its first bytes, its \
                     params unchecked",
                    facts.body_bytes
                ),
            });
        }
        let too_deep = limits::check(
            &self.policy.limits,
            facts.body_bytes,
            facts.params,
            &mut reasons,
        );
        let no_catalogue = facts.method == "tools/call"
            && self.check_tool_call(facts, catalog, too_deep, &mut reasons);
        self.stats.findings_added += (reasons.len() - own_from) as u64;

        let rule = self
            .policy
            .rules
            .iter()
            .find(|r| rule_matches(&r.matcher, facts, &reasons));
        let mut checks: Option<Action> = None;
        for r in &reasons {
            let a = self.policy.check_action(r.kind);
            checks = Some(checks.map_or(a, |c| stricter(c, a)));
        }
        if no_catalogue && self.policy.unknown_catalog == UnknownCatalog::Deny {
            checks = Some(Action::Deny);
        }
        let (action, decided_by): (Action, Option<&Rule>) = match rule {
            Some(r) if r.matcher.check.is_some() => (r.action, Some(r)),
            Some(r) => match checks {
                Some(c) if rank(c) > rank(r.action) => (c, None),
                _ => (r.action, Some(r)),
            },
            None => {
                let base = self
                    .policy
                    .servers
                    .iter()
                    .find(|s| server_matches(&s.matcher, facts))
                    .map_or(self.policy.default, |s| s.default);
                (checks.map_or(base, |c| stricter(base, c)), None)
            }
        };
        let by = if decided_by.is_some() {
            DecidedBy::Rule
        } else if rule.is_some() || checks == Some(action) {
            DecidedBy::Check
        } else {
            DecidedBy::Default
        };
        let judgement = Judgement {
            action,
            rule_id: decided_by.map(|r| r.id.clone()),
            fail_closed: rule.is_some_and(|r| r.fail == Fail::Closed) || action == Action::Approve,
            approve_timeout_ms: rule
                .and_then(|r| r.approve_timeout_secs)
                .map_or(self.policy.approve_timeout_ms(), |s| s.saturating_mul(1000)),
            block_connect: decided_by.is_some_and(|r| r.block_connect),
            reasons,
        };
        self.count(action, by);
        judgement
    }

    fn count(&mut self, action: Action, by: DecidedBy) {
        self.stats.judged += 1;
        match action {
            Action::Allow => self.stats.allowed += 1,
            Action::Audit => self.stats.audited += 1,
            Action::Deny => self.stats.denied += 1,
            Action::Approve => self.stats.approve += 1,
        }
        match by {
            DecidedBy::Rule => self.stats.by_rule += 1,
            DecidedBy::Check => self.stats.by_check += 1,
            DecidedBy::Default => self.stats.by_default += 1,
        }
    }

    /// Catalogue, pin and schema checks of a `tools/call`. Returns whether the server's
    /// catalogue was never seen complete.
    fn check_tool_call(
        &mut self,
        facts: &RequestFacts<'_>,
        catalog: Option<&ToolCatalog>,
        too_deep: bool,
        reasons: &mut Vec<Reason>,
    ) -> bool {
        let server = facts.server;
        let name = facts.name.or_else(|| facts.params?.get("name")?.as_str());
        let Some(name) = name else {
            reasons.push(Reason {
                kind: ReasonKind::UnknownTool,
                detail: if facts.cut {
                    "tools/call cut before its params.name".into()
                } else {
                    "tools/call without a string params.name".into()
                },
            });
            return false;
        };
        let Some(cat) = catalog.filter(|c| c.snapshots.tools > 0) else {
            reasons.push(Reason {
                kind: ReasonKind::UnverifiableTool,
                detail: format!(
                    "no complete tools/list of {server} was seen: tool `{name}` cannot be \
                     checked against the catalogue"
                ),
            });
            return true;
        };
        let Some(def) = cat.tools.get(name) else {
            if cat.truncated > 0 {
                // The tool may be one of the entries the catalogue could not keep.
                reasons.push(Reason {
                    kind: ReasonKind::UnverifiableTool,
                    detail: format!(
                        "tool `{name}` is not in the tools/list of {server}, which was truncated \
                         ({} entries not kept)",
                        cat.truncated
                    ),
                });
                return false;
            }
            reasons.push(Reason {
                kind: ReasonKind::UnknownTool,
                detail: format!(
                    "tool `{name}` is not in the complete tools/list of {server} ({} tools)",
                    cat.tools.len()
                ),
            });
            return false;
        };
        if self.pins.observe(server, def) {
            self.persist_pins();
        }
        if let PinCheck::Drift {
            pinned_hash,
            fields,
        } = self.pins.check(server, def)
        {
            let what = match fields {
                Some(f) if !f.is_empty() => format!("changed: {}", f.join(", ")),
                _ => "pinned by hash from the pins file, changed fields unknown".into(),
            };
            reasons.push(Reason {
                kind: ReasonKind::ToolDefinitionDrift,
                detail: format!(
                    "tool `{name}` of {server} differs from its pin ({what}; pinned {}, now {}); \
                     accept with `mcpwarden catalog accept {server} {name}`",
                    short(&pinned_hash),
                    short(&def.hash)
                ),
            });
        }
        if too_deep || facts.cut {
            // Arguments too deep to walk, or not all there: not validated (the finding
            // says why).
            return false;
        }
        let Some(schema) = &def.input_schema else {
            return false;
        };
        match self.schemas.get(server, name, &def.hash, schema) {
            Err(e) => reasons.push(Reason {
                kind: ReasonKind::UnverifiableTool,
                detail: format!("the inputSchema of tool `{name}` does not compile: {e}"),
            }),
            Ok(validator) => {
                if let Some(d) = violations(validator, arguments(facts.params)) {
                    reasons.push(Reason {
                        kind: ReasonKind::SchemaViolation,
                        detail: format!("arguments of tool `{name}` violate its inputSchema: {d}"),
                    });
                }
            }
        }
        false
    }
}

/// The first 12 hex digits of a hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
