//! The policy file's YAML shape. Every pattern, regex and path is compiled while it is read,
//! so a bad one fails with the line, column and field of the value itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use regex::Regex;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::glob::{last_line, validated_str, Glob, Globs};
use super::jsonpath::JsonPath;
use super::{Action, ReasonKind};

/// Upper bound on the compiled size of one `regex` condition.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// The whole file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePolicy {
    pub default: Option<Action>,
    pub record_allows: Option<bool>,
    pub hold_timeout_ms: Option<u64>,
    pub approve_timeout_secs: Option<u64>,
    pub unknown_catalog: Option<UnknownCatalog>,
    pub limits: Option<FileLimits>,
    #[serde(default)]
    pub checks: BTreeMap<ReasonKind, Action>,
    pub pins: Option<FilePins>,
    #[serde(default)]
    pub servers: Vec<ServerDefault>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// What a `tools/call` gets when no complete `tools/list` of its server was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCatalog {
    /// An `unverifiable_tool` finding (the `checks` table decides: `audit` by default).
    #[default]
    Unverifiable,
    /// Denied.
    Deny,
}

#[derive(Debug, Default)]
pub(crate) struct FileLimits {
    pub max_body_bytes: Option<u64>,
    pub max_json_depth: Option<u64>,
    pub max_string_bytes: Option<u64>,
}

/// The deepest `max_json_depth` allowed: schema validation recurses along the arguments,
/// and must stay well inside a 2 MiB thread stack.
pub const MAX_JSON_DEPTH_CEILING: u64 = 256;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<u64>,
    max_json_depth: Option<u64>,
    max_string_bytes: Option<u64>,
}

impl TryFrom<RawLimits> for FileLimits {
    type Error = String;
    fn try_from(r: RawLimits) -> Result<FileLimits, String> {
        if let Some(d) = r.max_json_depth {
            if !(2..=MAX_JSON_DEPTH_CEILING).contains(&d) {
                return Err(format!(
                    "max_json_depth {d} is outside 2..={MAX_JSON_DEPTH_CEILING}"
                ));
            }
        }
        Ok(FileLimits {
            max_body_bytes: r.max_body_bytes,
            max_json_depth: r.max_json_depth,
            max_string_bytes: r.max_string_bytes,
        })
    }
}

impl<'de> Deserialize<'de> for FileLimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_map::<D, RawLimits, FileLimits>(d, "a limits map")
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePins {
    pub file: PathBuf,
}

/// `servers[]`: the default action of the servers a match fits.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDefault {
    #[serde(rename = "match")]
    pub matcher: ServerMatch,
    pub default: Action,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerMatch {
    pub server: Option<ServerGlobs>,
    pub host: Option<HostGlobs>,
}

/// Hold-mode timeout behaviour of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fail {
    /// Release the call when no decision came in time.
    #[default]
    Open,
    /// Reset it.
    Closed,
}

/// One rule, validated as a whole (options that need a given action).
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub action: Action,
    pub fail: Fail,
    pub approve_timeout_secs: Option<u64>,
    pub block_connect: bool,
    pub matcher: Match,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: RuleId,
    action: Action,
    fail: Option<Fail>,
    approve_timeout_secs: Option<u64>,
    block_connect: Option<bool>,
    #[serde(rename = "match", default)]
    matcher: Match,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(r: RawRule) -> Result<Rule, String> {
        if r.approve_timeout_secs.is_some() && r.action != Action::Approve {
            return Err(format!(
                "rule `{}`: approve_timeout_secs applies only to action approve",
                r.id.0
            ));
        }
        if r.block_connect == Some(true) && r.action != Action::Deny {
            return Err(format!(
                "rule `{}`: block_connect needs action deny",
                r.id.0
            ));
        }
        Ok(Rule {
            id: r.id.0,
            action: r.action,
            fail: r.fail.unwrap_or_default(),
            approve_timeout_secs: r.approve_timeout_secs,
            block_connect: r.block_connect.unwrap_or(false),
            matcher: r.matcher,
        })
    }
}

thread_local! {
    /// Rule ids seen so far in the file being parsed (`None` outside a parse).
    static SEEN_IDS: RefCell<Option<HashSet<String>>> = const { RefCell::new(None) };
}

/// Tracks rule ids for duplicate detection while a file is parsed on this thread; the ids
/// are forgotten when the guard drops.
pub(crate) struct IdScope;

impl IdScope {
    pub fn enter() -> IdScope {
        SEEN_IDS.with(|s| *s.borrow_mut() = Some(HashSet::new()));
        IdScope
    }
}

impl Drop for IdScope {
    fn drop(&mut self) {
        SEEN_IDS.with(|s| *s.borrow_mut() = None);
    }
}

/// A rule id: not empty, unique in the file (checked where it is written).
#[derive(Debug)]
struct RuleId(String);

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_str(d, "a rule id string", |id| {
            if id.trim().is_empty() {
                return Err("a rule id must not be empty".into());
            }
            if id.chars().any(char::is_control) {
                return Err("a rule id must not contain control characters".into());
            }
            let dup = SEEN_IDS.with(|s| match s.borrow_mut().as_mut() {
                Some(seen) => !seen.insert(id.to_string()),
                None => false,
            });
            if dup {
                return Err(format!("duplicate rule id `{id}` (ids must be unique)"));
            }
            Ok(RuleId(id.to_string()))
        })
    }
}

/// `match:` of a rule: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub server: Option<ServerGlobs>,
    pub host: Option<HostGlobs>,
    pub client: Option<ClientMatch>,
    pub process: Option<ProcessMatch>,
    pub identity: Option<IdentityMatch>,
    pub era: Option<EraName>,
    pub method: Option<Globs>,
    pub tool: Option<Globs>,
    pub resource: Option<Globs>,
    pub prompt: Option<Globs>,
    pub args: Option<ArgConds>,
    pub check: Option<Checks>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    server: Option<ServerGlobs>,
    host: Option<HostGlobs>,
    client: Option<ClientMatch>,
    process: Option<ProcessMatch>,
    identity: Option<IdentityMatch>,
    era: Option<EraName>,
    method: Option<Globs>,
    tool: Option<Globs>,
    resource: Option<Globs>,
    prompt: Option<Globs>,
    args: Option<ArgConds>,
    check: Option<Checks>,
}

impl TryFrom<RawMatch> for Match {
    type Error = String;
    fn try_from(m: RawMatch) -> Result<Match, String> {
        let primitives = [m.tool.is_some(), m.resource.is_some(), m.prompt.is_some()];
        if primitives.iter().filter(|p| **p).count() > 1 {
            return Err(
                "give at most one of `tool`, `resource`, `prompt` (each implies its method)".into(),
            );
        }
        if m.args.is_some() && (m.resource.is_some() || m.prompt.is_some()) {
            return Err(
                "`args` applies to tools/call arguments: it cannot go with `resource` or `prompt`"
                    .into(),
            );
        }
        Ok(Match {
            server: m.server,
            host: m.host,
            client: m.client,
            process: m.process,
            identity: m.identity,
            era: m.era,
            method: m.method,
            tool: m.tool,
            resource: m.resource,
            prompt: m.prompt,
            args: m.args,
            check: m.check,
        })
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMatch {
    pub name: Option<Globs>,
    pub version: Option<Globs>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessMatch {
    pub comm: Option<Globs>,
    pub exe: Option<Globs>,
    pub uid: Option<Uids>,
    pub cgroup: Option<Globs>,
    pub container_id: Option<Globs>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMatch {
    pub user: Option<Globs>,
    /// Matches if any comma-separated role matches.
    pub role: Option<Globs>,
    pub verified: Option<bool>,
}

/// `era:` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EraName {
    Handshake,
    Stateless,
}

/// Globs on `"ip:port/path"`. A pattern without `/` matches the `ip:port` part, whatever
/// the path.
#[derive(Debug, Clone)]
pub struct ServerGlobs(pub Globs);

impl<'de> Deserialize<'de> for ServerGlobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Globs::deserialize(d).map(ServerGlobs)
    }
}

impl ServerGlobs {
    pub fn any(&self, server: &str) -> bool {
        let endpoint = server.split_once('/').map_or(server, |(ep, _)| ep);
        self.0 .0.iter().any(|g| {
            if g.as_str().contains('/') {
                g.matches(server)
            } else {
                g.matches(endpoint)
            }
        })
    }
}

/// Globs on the `Host` header, case-insensitive. A pattern without a port matches the host
/// whatever its port.
#[derive(Debug, Clone)]
pub struct HostGlobs(pub Globs);

impl<'de> Deserialize<'de> for HostGlobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let globs = Globs::deserialize(d)?;
        let mut out = Vec::with_capacity(globs.0.len());
        for g in globs.0 {
            out.push(Glob::new(g.as_str(), true).map_err(de::Error::custom)?);
        }
        Ok(HostGlobs(Globs(out)))
    }
}

impl HostGlobs {
    pub fn any(&self, host: &str) -> bool {
        let bare = strip_port(host);
        self.0 .0.iter().any(|g| {
            if has_port(g.as_str()) {
                g.matches(host)
            } else {
                g.matches(bare)
            }
        })
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(host: &str) -> &str {
    let tail_from = host.rfind(']').map_or(0, |i| i + 1);
    match host[tail_from..].rfind(':') {
        Some(i)
            if host[tail_from + i + 1..]
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            &host[..tail_from + i]
        }
        _ => host,
    }
}

fn has_port(pattern: &str) -> bool {
    let tail_from = pattern.rfind(']').map_or(0, |i| i + 1);
    pattern[tail_from..].contains(':')
}

/// One uid or a list.
#[derive(Debug, Clone)]
pub struct Uids(pub Vec<u32>);

impl<'de> Deserialize<'de> for Uids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Uids;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a uid or a list of uids")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Uids, E> {
                u32::try_from(v)
                    .map(|u| Uids(vec![u]))
                    .map_err(|_| E::custom(format!("uid {v} is out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Uids, E> {
                u32::try_from(v)
                    .map(|u| Uids(vec![u]))
                    .map_err(|_| E::custom(format!("uid {v} is out of range")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Uids, A::Error> {
                let mut out = Vec::new();
                while let Some(u) = seq.next_element::<u32>()? {
                    out.push(u);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("an empty list matches nothing"));
                }
                Ok(Uids(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One finding kind or a list: any present matches.
#[derive(Debug, Clone)]
pub struct Checks(pub Vec<ReasonKind>);

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a check name or a list of check names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Checks, E> {
                ReasonKind::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(|k| Checks(vec![k]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checks, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = seq.next_element::<ReasonKind>()? {
                    out.push(k);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("an empty list matches nothing"));
                }
                Ok(Checks(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `args:` conditions in file order; all must hold.
#[derive(Debug, Clone)]
pub struct ArgConds(pub Vec<(JsonPath, Cond)>);

impl<'de> Deserialize<'de> for ArgConds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArgConds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from argument JSON paths to conditions")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ArgConds, A::Error> {
                let mut out: Vec<(JsonPath, Cond)> = Vec::new();
                while let Some(path) = map.next_key::<JsonPath>()? {
                    let cond = map.next_value::<Cond>()?;
                    if out.iter().any(|(p, _)| p.steps() == path.steps()) {
                        return Err(de::Error::custom(format!(
                            "argument path `{path}` is given twice"
                        )));
                    }
                    out.push((path, cond));
                }
                Ok(ArgConds(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A condition on one argument value.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Any JSON value; numbers compare by value (`1` = `1.0`).
    Equals(Value),
    OneOf(Vec<Value>),
    /// Strings only.
    Prefix(String),
    /// Strings only.
    Glob(Glob),
    /// Strings only; unanchored (use `^…$`).
    Regex(PolicyRegex),
    /// Numbers only; bounds inclusive.
    Range(Range),
    /// `present: true` / `absent: false`: the path exists (even with `null`).
    Present,
    /// `absent: true` / `present: false`.
    Absent,
    Not(Box<Cond>),
}

impl<'de> Deserialize<'de> for Cond {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_map::<D, RawCond, Cond>(d, "a condition map")
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_map::<D, RawRule, Rule>(d, "a rule map")
    }
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_map::<D, RawMatch, Match>(d, "a match map")
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_map::<D, RawRange, Range>(d, "a range map")
    }
}

/// Reads a map as `R`, then checks it as a whole into `T`, from inside the map's visitor so
/// that the YAML deserializer stamps a refusal with the map's own line and column.
fn validated_map<'de, D, R, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
    T: TryFrom<R, Error = String>,
{
    struct V<R, T>(&'static str, PhantomData<(R, T)>);
    impl<'de, R, T> Visitor<'de> for V<R, T>
    where
        R: Deserialize<'de>,
        T: TryFrom<R, Error = String>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = R::deserialize(de::value::MapAccessDeserializer::new(map))?;
            T::try_from(raw).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V::<R, T>(expecting, PhantomData))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    #[serde(default, deserialize_with = "any_value")]
    equals: Option<Value>,
    one_of: Option<Vec<Value>>,
    prefix: Option<String>,
    glob: Option<Glob>,
    regex: Option<PolicyRegex>,
    range: Option<Range>,
    present: Option<bool>,
    absent: Option<bool>,
    not: Option<Box<Cond>>,
}

/// `equals: null` is a condition on `null`, not an omitted key.
fn any_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

const COND_NAMES: &str = "equals, one_of, prefix, glob, regex, range, present, absent, not";

impl TryFrom<RawCond> for Cond {
    type Error = String;
    fn try_from(r: RawCond) -> Result<Cond, String> {
        let mut found = Vec::new();
        if let Some(v) = r.equals {
            found.push(Cond::Equals(v));
        }
        if let Some(v) = r.one_of {
            if v.is_empty() {
                return Err("`one_of` needs at least one value".into());
            }
            found.push(Cond::OneOf(v));
        }
        if let Some(v) = r.prefix {
            found.push(Cond::Prefix(v));
        }
        if let Some(v) = r.glob {
            found.push(Cond::Glob(v));
        }
        if let Some(v) = r.regex {
            found.push(Cond::Regex(v));
        }
        if let Some(v) = r.range {
            found.push(Cond::Range(v));
        }
        if let Some(v) = r.present {
            found.push(if v { Cond::Present } else { Cond::Absent });
        }
        if let Some(v) = r.absent {
            found.push(if v { Cond::Absent } else { Cond::Present });
        }
        if let Some(v) = r.not {
            found.push(Cond::Not(v));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(format!("a condition needs one of: {COND_NAMES}")),
            _ => Err(format!(
                "a condition takes exactly one of: {COND_NAMES} (use several paths, or `not`)"
            )),
        }
    }
}

/// A compiled `regex` condition.
#[derive(Clone)]
pub struct PolicyRegex(pub Regex);

impl fmt::Debug for PolicyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for PolicyRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_str(d, "a regex string", |text| {
            regex::RegexBuilder::new(text)
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .map(PolicyRegex)
                .map_err(|e| format!("bad regex `{text}`: {}", last_line(&e.to_string())))
        })
    }
}

/// `range: { min, max }`, inclusive; either bound optional, not both.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    min: Option<f64>,
    max: Option<f64>,
}

impl TryFrom<RawRange> for Range {
    type Error = String;
    fn try_from(r: RawRange) -> Result<Range, String> {
        match (r.min, r.max) {
            (None, None) => Err("a range needs `min`, `max` or both".into()),
            (Some(a), Some(b)) if a > b => Err(format!("range min {a} is greater than max {b}")),
            _ => Ok(Range {
                min: r.min,
                max: r.max,
            }),
        }
    }
}
