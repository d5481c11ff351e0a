//! One session, many views: merges every observer's summary of a session into one row, and
//! filters, pages and renders (JSON, CSV) the list.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::SessionObs;

/// Filters and paging of `GET /api/sessions` (all optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionQuery {
    /// Sessions active at or after this Unix time (ms).
    pub from: Option<u64>,
    /// Sessions started at or before this Unix time (ms).
    pub to: Option<u64>,
    /// Exact user.
    pub user: Option<String>,
    /// Exact role (or one of a comma-joined role list).
    pub role: Option<String>,
    /// Substring of the server endpoint or server name.
    pub server: Option<String>,
    /// Substring of the client name.
    pub client: Option<String>,
    /// A tool the session called (exact).
    pub tool: Option<String>,
    /// An attack kind detected on the session (exact).
    pub attack: Option<String>,
    /// `active` or `ended`.
    pub status: Option<String>,
    /// Free text: case-insensitive substring of the session's fields or of any record's
    /// content (arguments, results, errors…).
    pub q: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Rows to skip.
    pub offset: Option<usize>,
}

/// One observer of a session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Observer {
    pub agent_id: String,
    pub hostname: String,
    pub side: String,
    pub pid: u32,
    pub comm: String,
}

/// One merged session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    /// The merged session's key (`GET /api/sessions/{key}`).
    pub key: String,
    pub session_id: String,
    /// `ip:port/path` of the server endpoint.
    pub server: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub protocol_version: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
    /// Unix ms of the first message, and of the last message (or the end).
    pub started_ms: u64,
    pub last_seen_ms: u64,
    /// RFC 3339 forms of the above.
    pub started: String,
    pub last_seen: String,
    /// Set when the session ended.
    pub ended: Option<String>,
    pub end_reason: Option<String>,
    pub duration_ms: u64,
    /// Requests (the most any observer counted: both sides see the same calls).
    pub calls: u64,
    pub errors: u64,
    /// `active` or `ended`.
    pub status: String,
    pub tools: Vec<String>,
    pub methods: Vec<String>,
    /// Kinds of the attacks detected (sorted, unique).
    pub attacks: Vec<String>,
    /// Who saw the session.
    pub agents: Vec<Observer>,
}

fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// Merges the observations of one session (all with the same key; at least one).
pub fn merge(obs: &[SessionObs]) -> Option<SessionRow> {
    let first = obs.first()?;
    // Client-side observers first: they know the client's identity best.
    let mut ordered: Vec<&SessionObs> = obs.iter().collect();
    ordered.sort_by_key(|o| (o.side != "client", o.agent_id.clone(), o.pid));
    let pick = |k: &str| ordered.iter().find_map(|o| str_field(&o.summary, k));
    let started = obs.iter().map(|o| o.started_unix_ns).min().unwrap_or(0) / 1_000_000;
    let last = obs.iter().map(|o| o.last_unix_ns).max().unwrap_or(0) / 1_000_000;
    let ended_obs = ordered
        .iter()
        .find(|o| o.kind == 3 && o.summary["status"] == "ended");
    let u64_max = |k: &str| {
        obs.iter()
            .filter_map(|o| o.summary.get(k).and_then(Value::as_u64))
            .max()
            .unwrap_or(0)
    };
    let mut tools = BTreeSet::new();
    let mut methods = BTreeSet::new();
    let mut attacks = BTreeSet::new();
    let mut agents = BTreeSet::new();
    for o in obs {
        for (k, set) in [("tools", &mut tools), ("methods", &mut methods)] {
            if let Some(a) = o.summary.get(k).and_then(Value::as_array) {
                set.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        if let Some(a) = o.summary.get("attacks").and_then(Value::as_array) {
            attacks.extend(
                a.iter()
                    .filter_map(|x| x.get("kind").and_then(Value::as_str))
                    .map(str::to_owned),
            );
        }
        agents.insert(Observer {
            agent_id: o.agent_id.clone(),
            hostname: o.hostname.clone(),
            side: o.side.clone(),
            pid: o.pid,
            comm: o.comm.clone(),
        });
    }
    Some(SessionRow {
        key: first.session_key.clone(),
        session_id: first.session_id.clone(),
        server: first.server.clone(),
        server_name: pick("server_name"),
        server_version: pick("server_version"),
        client_name: pick("client_name"),
        client_version: pick("client_version"),
        protocol_version: pick("protocol_version"),
        user: pick("user"),
        role: pick("role"),
        started_ms: started,
        last_seen_ms: last,
        started: rfc3339(started),
        last_seen: rfc3339(last),
        ended: ended_obs.map(|_| rfc3339(last)),
        end_reason: ended_obs.and_then(|o| str_field(&o.summary, "end_reason")),
        duration_ms: last.saturating_sub(started),
        calls: u64_max("requests"),
        errors: u64_max("errors"),
        status: if ended_obs.is_some() {
            "ended"
        } else {
            "active"
        }
        .to_owned(),
        tools: tools.into_iter().collect(),
        methods: methods.into_iter().collect(),
        attacks: attacks.into_iter().collect(),
        agents: agents.into_iter().collect(),
    })
}

/// Groups observations by session key and merges each group; newest first.
pub fn merge_all(obs: Vec<SessionObs>) -> Vec<SessionRow> {
    let mut by_key: BTreeMap<String, Vec<SessionObs>> = BTreeMap::new();
    for o in obs {
        by_key.entry(o.session_key.clone()).or_default().push(o);
    }
    let mut rows: Vec<SessionRow> = by_key.values().filter_map(|v| merge(v)).collect();
    rows.sort_by(|a, b| {
        b.last_seen_ms
            .cmp(&a.last_seen_ms)
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

impl SessionQuery {
    /// The page size.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// Whether `row` passes every filter except `q` over record content (`content_hit`: the
    /// store found `q` in one of the session's records).
    pub fn matches(&self, row: &SessionRow, content_hit: bool) -> bool {
        if self.from.is_some_and(|f| row.last_seen_ms < f)
            || self.to.is_some_and(|t| row.started_ms > t)
        {
            return false;
        }
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_ref().is_some_and(|h| h == w))
        };
        if !eq(&self.user, &row.user) {
            return false;
        }
        if let Some(r) = &self.role {
            if !row
                .role
                .as_ref()
                .is_some_and(|h| h.split(',').any(|x| x.trim() == r))
            {
                return false;
            }
        }
        if let Some(s) = &self.server {
            let name_hit = row.server_name.as_ref().is_some_and(|n| contains_ci(n, s));
            if !contains_ci(&row.server, s) && !name_hit {
                return false;
            }
        }
        if let Some(c) = &self.client {
            if !row.client_name.as_ref().is_some_and(|n| contains_ci(n, c)) {
                return false;
            }
        }
        if self.tool.as_ref().is_some_and(|t| !row.tools.contains(t))
            || self
                .attack
                .as_ref()
                .is_some_and(|a| !row.attacks.contains(a))
            || self.status.as_ref().is_some_and(|s| *s != row.status)
        {
            return false;
        }
        if let Some(q) = &self.q {
            let fields = [
                Some(&row.session_id),
                Some(&row.server),
                row.server_name.as_ref(),
                row.client_name.as_ref(),
                row.user.as_ref(),
                row.role.as_ref(),
            ];
            let hit = fields.iter().flatten().any(|f| contains_ci(f, q))
                || row
                    .tools
                    .iter()
                    .chain(&row.methods)
                    .chain(&row.attacks)
                    .any(|f| contains_ci(f, q));
            if !hit && !content_hit {
                return false;
            }
        }
        true
    }
}

/// One page of the filtered list.
#[derive(Debug, Clone, Serialize)]
pub struct SessionPage {
    /// Rows matching the filters (all pages).
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub sessions: Vec<SessionRow>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The rows as CSV (header line first).
pub fn to_csv(rows: &[SessionRow]) -> String {
    let mut out = String::from(
        "key,session_id,server,server_name,client_name,client_version,user,role,started,last_seen,duration_ms,calls,errors,status,tools,attacks,agents\n",
    );
    for r in rows {
        let agents: Vec<String> = r
            .agents
            .iter()
            .map(|a| format!("{}@{}:{}:{}", a.agent_id, a.hostname, a.side, a.pid))
            .collect();
        let cols = [
            r.key.clone(),
            r.session_id.clone(),
            r.server.clone(),
            r.server_name.clone().unwrap_or_default(),
            r.client_name.clone().unwrap_or_default(),
            r.client_version.clone().unwrap_or_default(),
            r.user.clone().unwrap_or_default(),
            r.role.clone().unwrap_or_default(),
            r.started.clone(),
            r.last_seen.clone(),
            r.duration_ms.to_string(),
            r.calls.to_string(),
            r.errors.to_string(),
            r.status.clone(),
            r.tools.join(" "),
            r.attacks.join(" "),
            agents.join(" "),
        ];
        let line: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(agent: &str, side: &str, kind: u8, status: &str, requests: u64) -> SessionObs {
        SessionObs {
            session_key: "k".into(),
            agent_id: agent.into(),
            hostname: format!("{agent}-host"),
            pid: 10,
            side: side.into(),
            comm: "p".into(),
            server: "127.0.0.1:8000/mcp".into(),
            session_id: "s".into(),
            started_unix_ns: if side == "client" {
                1_000_000_000
            } else {
                1_100_000_000
            },
            last_unix_ns: 3_000_000_000,
            kind,
            summary: json!({
                "status": status, "requests": requests, "errors": 1,
                "client_name": if side == "client" { json!("cli") } else { json!(null) },
                "user": "alice", "role": "dev,ops",
                "tools": [format!("t-{side}")], "methods": ["tools/call"],
                "attacks": [{"kind": "tool_definition_drift"}],
                "end_reason": if status == "ended" { json!("delete") } else { json!(null) },
            }),
        }
    }

    #[test]
    fn two_sides_merge_into_one_session() {
        let row = merge(&[
            obs("b", "server", 2, "active", 3),
            obs("a", "client", 3, "ended", 4),
        ])
        .expect("row");
        assert_eq!(row.started_ms, 1000);
        assert_eq!(row.duration_ms, 2000);
        assert_eq!(row.calls, 4);
        assert_eq!(row.status, "ended");
        assert_eq!(row.end_reason.as_deref(), Some("delete"));
        assert_eq!(row.client_name.as_deref(), Some("cli"));
        assert_eq!(row.tools, vec!["t-client", "t-server"]);
        assert_eq!(row.attacks, vec!["tool_definition_drift"]);
        assert_eq!(row.agents.len(), 2);
        let q = |f: fn(&mut SessionQuery)| {
            let mut q = SessionQuery::default();
            f(&mut q);
            q.matches(&row, false)
        };
        assert!(q(|q| q.role = Some("ops".into())));
        assert!(!q(|q| q.role = Some("op".into())));
        assert!(q(|q| q.tool = Some("t-server".into())));
        assert!(!q(|q| q.status = Some("active".into())));
        assert!(q(|q| q.q = Some("ALICE".into())));
        assert!(!q(|q| q.q = Some("zzz".into())));
        assert!(!q(|q| q.from = Some(3001)));
        assert!(q(|q| q.to = Some(1000)));
        assert!(!q(|q| q.to = Some(999)));
        let csv = to_csv(&[row]);
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.contains("\"dev,ops\""), "{csv}");
    }
}
