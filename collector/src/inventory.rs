//! `GET /api/servers`: each server's catalogue (from `catalog` records), when it was seen,
//! the sessions that used it and its tool drift events.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::model::StoredEvent;
use crate::sessions::SessionRow;

/// One server's inventory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerInventory {
    /// `ip:port/path` of the server endpoint.
    pub server: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// RFC 3339 of the first and last record naming this server.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// The latest complete lists (`null`: never listed).
    pub tools: Option<Value>,
    pub resources: Option<Value>,
    pub resource_templates: Option<Value>,
    pub prompts: Option<Value>,
    /// Catalogue records received.
    pub catalog_updates: u64,
    /// Sessions with this server: key, session id, tools called.
    pub sessions: Vec<ServerSession>,
    /// Tool definitions that changed, oldest first.
    pub drift: Vec<DriftEvent>,
}

/// A session that used a server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSession {
    pub key: String,
    pub session_id: String,
    pub started: String,
    pub status: String,
    pub tools: Vec<String>,
}

/// One tool drift.
#[derive(Debug, Clone, Serialize)]
pub struct DriftEvent {
    pub time: String,
    pub tool: String,
    pub fields: Value,
    pub old_hash: String,
    pub new_hash: String,
    pub session_key: Option<String>,
    pub agent_id: String,
    pub hostname: String,
}

fn rfc3339(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Builds the inventory from catalogue and drift records (time-ordered) and session rows.
pub fn build(events: &[StoredEvent], sessions: &[SessionRow]) -> Vec<ServerInventory> {
    let mut by: BTreeMap<String, (u64, u64, ServerInventory)> = BTreeMap::new();
    for e in events {
        let Some(server) = e.server.clone() else {
            continue;
        };
        let entry = by.entry(server.clone()).or_insert_with(|| {
            (
                e.ts_unix_ns,
                e.ts_unix_ns,
                ServerInventory {
                    server,
                    ..Default::default()
                },
            )
        });
        entry.0 = entry.0.min(e.ts_unix_ns);
        entry.1 = entry.1.max(e.ts_unix_ns);
        let inv = &mut entry.2;
        let r = &e.record;
        match e.rtype.as_str() {
            "catalog" => {
                inv.catalog_updates += 1;
                for (k, slot) in [
                    ("tools", &mut inv.tools),
                    ("resources", &mut inv.resources),
                    ("resource_templates", &mut inv.resource_templates),
                    ("prompts", &mut inv.prompts),
                ] {
                    if !r[k].is_null() {
                        *slot = Some(r[k].clone());
                    }
                }
                if let Some(n) = r["server_name"].as_str() {
                    inv.server_name = Some(n.to_owned());
                }
                if let Some(v) = r["server_version"].as_str() {
                    inv.server_version = Some(v.to_owned());
                }
            }
            "tool_drift" => inv.drift.push(DriftEvent {
                time: rfc3339(e.ts_unix_ns),
                tool: r["tool"].as_str().unwrap_or_default().to_owned(),
                fields: r["fields"].clone(),
                old_hash: r["old_hash"].as_str().unwrap_or_default().to_owned(),
                new_hash: r["new_hash"].as_str().unwrap_or_default().to_owned(),
                session_key: e.session_key.clone(),
                agent_id: e.agent_id.clone(),
                hostname: e.hostname.clone(),
            }),
            _ => {}
        }
    }
    for s in sessions {
        let ms_ns = |ms: u64| ms.saturating_mul(1_000_000);
        let entry = by.entry(s.server.clone()).or_insert_with(|| {
            (
                ms_ns(s.started_ms),
                ms_ns(s.last_seen_ms),
                ServerInventory {
                    server: s.server.clone(),
                    ..Default::default()
                },
            )
        });
        entry.0 = entry.0.min(ms_ns(s.started_ms));
        entry.1 = entry.1.max(ms_ns(s.last_seen_ms));
        if entry.2.server_name.is_none() {
            entry.2.server_name = s.server_name.clone();
        }
        entry.2.sessions.push(ServerSession {
            key: s.key.clone(),
            session_id: s.session_id.clone(),
            started: s.started.clone(),
            status: s.status.clone(),
            tools: s.tools.clone(),
        });
    }
    by.into_values()
        .map(|(first, last, mut inv)| {
            inv.first_seen = Some(rfc3339(first));
            inv.last_seen = Some(rfc3339(last));
            inv
        })
        .collect()
}
