//! Whether a rule's `match:` (or a server entry's) fits one request.

use serde_json::{Map, Value};

use super::format::{ArgConds, Cond, EraName, IdentityMatch, Match, ProcessMatch, ServerMatch};
use super::{Reason, RequestFacts};
use crate::mcp::Era;

/// Every given condition of `m` holds for `facts` (with `findings`: the tracker's and the
/// policy's own).
pub fn rule_matches(m: &Match, facts: &RequestFacts<'_>, findings: &[Reason]) -> bool {
    if let Some(g) = &m.server {
        if !g.any(facts.server) {
            return false;
        }
    }
    if let Some(g) = &m.host {
        if !facts.host.is_some_and(|h| g.any(h)) {
            return false;
        }
    }
    if let Some(c) = &m.client {
        if !opt_any(&c.name, facts.client_name) || !opt_any(&c.version, facts.client_version) {
            return false;
        }
    }
    if let Some(p) = &m.process {
        if !process_matches(p, facts) {
            return false;
        }
    }
    if let Some(i) = &m.identity {
        if !identity_matches(i, facts) {
            return false;
        }
    }
    if let Some(era) = m.era {
        let want = match era {
            EraName::Handshake => Era::Handshake,
            EraName::Stateless => Era::Stateless,
        };
        if facts.era != want {
            return false;
        }
    }
    if let Some(g) = &m.method {
        if !g.any(facts.method) {
            return false;
        }
    }
    if let Some(g) = &m.tool {
        if facts.method != "tools/call" || !name_of(facts, "name").is_some_and(|n| g.any(n)) {
            return false;
        }
    }
    if let Some(g) = &m.resource {
        let method_fits = matches!(facts.method, "resources/read" | "resources/subscribe");
        if !method_fits || !name_of(facts, "uri").is_some_and(|n| g.any(n)) {
            return false;
        }
    }
    if let Some(g) = &m.prompt {
        if facts.method != "prompts/get" || !name_of(facts, "name").is_some_and(|n| g.any(n)) {
            return false;
        }
    }
    if let Some(args) = &m.args {
        if facts.method != "tools/call" || !args_match(args, arguments(facts.params)) {
            return false;
        }
    }
    if let Some(checks) = &m.check {
        if !findings.iter().any(|f| checks.0.contains(&f.kind)) {
            return false;
        }
    }
    true
}

/// A `servers[]` entry fits.
pub fn server_matches(m: &ServerMatch, facts: &RequestFacts<'_>) -> bool {
    m.server.as_ref().is_none_or(|g| g.any(facts.server))
        && m.host
            .as_ref()
            .is_none_or(|g| facts.host.is_some_and(|h| g.any(h)))
}

/// The primitive's name: the tracker's, else `params.<member>`.
fn name_of<'a>(facts: &RequestFacts<'a>, member: &str) -> Option<&'a str> {
    facts.name.or_else(|| facts.params?.get(member)?.as_str())
}

/// `tools/call` `arguments`; absent or `null` is `{}`.
pub fn arguments(params: Option<&Value>) -> &Value {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    match params.and_then(|p| p.get("arguments")) {
        Some(v) if !v.is_null() => v,
        _ => EMPTY.get_or_init(|| Value::Object(Map::new())),
    }
}

fn opt_any(globs: &Option<super::glob::Globs>, value: Option<&str>) -> bool {
    match globs {
        None => true,
        Some(g) => value.is_some_and(|v| g.any(v)),
    }
}

fn process_matches(p: &ProcessMatch, facts: &RequestFacts<'_>) -> bool {
    let proc_ = facts.process;
    opt_any(&p.comm, Some(&proc_.comm))
        && opt_any(&p.exe, proc_.exe.as_deref())
        && p.uid
            .as_ref()
            .is_none_or(|u| proc_.uid.is_some_and(|uid| u.0.contains(&uid)))
        && opt_any(&p.cgroup, proc_.cgroup.as_deref())
        && opt_any(&p.container_id, proc_.container_id.as_deref())
}

fn identity_matches(i: &IdentityMatch, facts: &RequestFacts<'_>) -> bool {
    opt_any(&i.user, facts.user)
        && i.role.as_ref().is_none_or(|g| {
            facts
                .role
                .is_some_and(|roles| roles.split(',').map(str::trim).any(|r| g.any(r)))
        })
        && i.verified.is_none_or(|v| v == facts.identity_verified)
}

/// Every argument condition holds.
pub fn args_match(args: &ArgConds, arguments: &Value) -> bool {
    args.0
        .iter()
        .all(|(path, cond)| cond_holds(cond, path.lookup(arguments)))
}

/// One condition on a value (`None`: the path does not exist). A condition on a value of
/// another type is false.
pub fn cond_holds(cond: &Cond, v: Option<&Value>) -> bool {
    match cond {
        Cond::Absent => v.is_none(),
        Cond::Present => v.is_some(),
        Cond::Not(inner) => !cond_holds(inner, v),
        _ => {
            let Some(v) = v else {
                return false;
            };
            match cond {
                Cond::Equals(want) => json_eq(v, want),
                Cond::OneOf(list) => list.iter().any(|w| json_eq(v, w)),
                Cond::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
                Cond::Glob(g) => v.as_str().is_some_and(|s| g.matches(s)),
                Cond::Regex(r) => v.as_str().is_some_and(|s| r.0.is_match(s)),
                Cond::Range(r) => v
                    .as_f64()
                    .is_some_and(|n| r.min.is_none_or(|m| n >= m) && r.max.is_none_or(|m| n <= m)),
                Cond::Absent | Cond::Present | Cond::Not(_) => false,
            }
        }
    }
}

/// JSON equality with numbers compared by value (`1` = `1.0`), recursively (bounded by the
/// policy's own value, which is small).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}
