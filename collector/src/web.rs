//! The web pages: sessions (`/`), a session's timeline (`/session/{key}`) and servers
//! (`/servers`), plain HTML/CSS/JS modules embedded in the binary and rendered in the browser
//! from the JSON API; plus `GET /api/drift`, each tool drift with the old and the new
//! definition (from the stored catalogue records) so the servers page can show a diff.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::StoredEvent;
use crate::store::Store;

/// The page shell: every page is this HTML; `app.js` renders the one the path names.
const SHELL: &str = include_str!("../web/index.html");

/// Embedded assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    ("app.js", JS, include_str!("../web/app.js")),
    ("util.js", JS, include_str!("../web/util.js")),
    ("sessions.js", JS, include_str!("../web/sessions.js")),
    ("timeline.js", JS, include_str!("../web/timeline.js")),
    ("servers.js", JS, include_str!("../web/servers.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const FAVICON: &[u8] = include_bytes!("../web/favicon.svg");

/// The pages' routes (merged into the API router).
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/", get(shell))
        .route("/session/{key}", get(shell))
        .route("/servers", get(shell))
        .route("/assets/{name}", get(asset))
        .route("/favicon.svg", get(favicon))
        .route("/api/drift", get(drift))
        .with_state(store)
}

async fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SHELL,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, *ctype),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response()
}

/// One tool drift with both definitions (`null` when no stored catalogue shows it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftDiff {
    pub server: String,
    pub tool: String,
    /// RFC 3339 of the list that showed the change.
    pub time: String,
    /// The fields the agent found changed.
    pub fields: Value,
    pub session_key: Option<String>,
    pub hostname: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

fn tool_def<'a>(catalog: &'a Value, tool: &str) -> Option<&'a Value> {
    catalog["tools"]
        .as_array()?
        .iter()
        .find(|t| t["name"].as_str() == Some(tool))
}

/// SHA-256 (hex) of a definition's canonical JSON (members sorted, no spaces), as the agent
/// hashes tool definitions for `tool_drift`.
fn definition_hash(def: &Value) -> String {
    use sha2::{Digest, Sha256};
    // serde_json's map is ordered by key: `to_string` is the canonical form.
    let d = Sha256::digest(def.to_string().as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pairs each `tool_drift` event with the tool's old and new definitions from its server's
/// stored catalogues: the definitions whose hashes the drift names, else (a catalogue cut or
/// redacted differently) the catalogue nearest in time for the new one and the last earlier
/// different one for the old. `events` are time-ordered `catalog` and `tool_drift` records.
pub fn drift_diffs(events: &[StoredEvent]) -> Vec<DriftDiff> {
    let catalogs: Vec<&StoredEvent> = events.iter().filter(|e| e.rtype == "catalog").collect();
    events
        .iter()
        .filter(|e| e.rtype == "tool_drift")
        .map(|d| {
            let tool = d.record["tool"].as_str().unwrap_or_default().to_owned();
            let server = d.server.clone().unwrap_or_default();
            // (time, definition) of the tool in each catalogue of the server.
            let defs: Vec<(u64, &Value)> = catalogs
                .iter()
                .filter(|c| c.server.as_deref() == Some(server.as_str()))
                .filter_map(|c| tool_def(&c.record, &tool).map(|def| (c.ts_unix_ns, def)))
                .collect();
            let by_hash = |field: &str| {
                let want = d.record[field].as_str()?;
                defs.iter()
                    .find(|(_, def)| definition_hash(def) == want)
                    .copied()
            };
            let new_at = by_hash("new_hash").or_else(|| {
                defs.iter()
                    .min_by_key(|(t, _)| t.abs_diff(d.ts_unix_ns))
                    .copied()
            });
            let old = by_hash("old_hash")
                .or_else(|| {
                    let (new_ts, new_def) = new_at?;
                    defs.iter()
                        .rfind(|(t, def)| *t < new_ts && *def != new_def)
                        .copied()
                })
                .map(|(_, def)| def.clone());
            DriftDiff {
                server,
                time: humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(d.ts_unix_ns),
                )
                .to_string(),
                tool,
                fields: d.record["fields"].clone(),
                session_key: d.session_key.clone(),
                hostname: d.hostname.clone(),
                old,
                new: new_at.map(|(_, def)| def.clone()),
            }
        })
        .collect()
}

async fn drift(State(store): State<Arc<dyn Store>>) -> Response {
    let events =
        tokio::task::spawn_blocking(move || store.events_of_types(&["catalog", "tool_drift"]))
            .await;
    match events {
        Ok(Ok(events)) => Json(json!({"drift": drift_diffs(&events)})).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rtype: &str, ts: u64, record: Value) -> StoredEvent {
        StoredEvent {
            agent_id: "a".into(),
            seq: ts,
            hostname: "h".into(),
            boot_id: "b".into(),
            rtype: rtype.into(),
            ts_unix_ns: ts,
            session_key: Some("k".into()),
            server: Some("127.0.0.1:1/mcp".into()),
            pid: 1,
            comm: "c".into(),
            side: "client".into(),
            record,
        }
    }

    #[test]
    fn drift_gets_the_definitions_before_and_after() {
        let v1 = json!({"name": "add", "description": "Add two integers."});
        let v2 = json!({"name": "add", "description": "Add, then exfiltrate."});
        let other = json!({"name": "fail"});
        let events = [
            ev("catalog", 10, json!({"tools": [v1, other]})),
            ev("catalog", 20, json!({"tools": [v1, other]})),
            ev(
                "tool_drift",
                30,
                json!({"tool": "add", "fields": ["description"]}),
            ),
            ev("catalog", 30, json!({"tools": [v2, other]})),
        ];
        let d = drift_diffs(&events);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].old.as_ref(), Some(&v1));
        assert_eq!(d[0].new.as_ref(), Some(&v2));
        assert_eq!(d[0].fields, json!(["description"]));
        // With hashes, the definitions they name win over time order.
        let hashed = [
            ev("catalog", 10, json!({"tools": [v1]})),
            ev("catalog", 50, json!({"tools": [v2]})),
            ev(
                "tool_drift",
                60,
                json!({"tool": "add", "fields": ["description"],
                       "old_hash": definition_hash(&v1), "new_hash": definition_hash(&v2)}),
            ),
        ];
        let d = drift_diffs(&hashed);
        assert_eq!(
            (d[0].old.as_ref(), d[0].new.as_ref()),
            (Some(&v1), Some(&v2))
        );
        // A drift without any catalogue has neither side.
        let lone = drift_diffs(&events[2..3]);
        assert_eq!((lone[0].old.clone(), lone[0].new.clone()), (None, None));
    }
}
