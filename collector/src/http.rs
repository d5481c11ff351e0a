//! The HTTP JSON API (documented in the README, "Export and collector").

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::grpc::IngestCounters;
use crate::inventory;
use crate::model::StoredEvent;
use crate::sessions::{merge, merge_all, to_csv, SessionPage, SessionQuery, SessionRow};
use crate::store::{Store, StoreError};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Ingest counters.
    pub counters: Arc<IngestCounters>,
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/stats", get(stats))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions.json", get(sessions_json))
        .route("/api/sessions.csv", get(sessions_csv))
        .route("/api/sessions/{key}", get(session))
        .route("/api/servers", get(servers))
        .with_state(state)
}

struct ApiError(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": self.0})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(e.to_string())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(e.to_string()))?
        .map_err(ApiError::from)
}

/// Every session passing the filters, newest first.
pub fn filtered(store: &dyn Store, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
    let rows = merge_all(store.session_obs(None, None)?);
    let hits = match q.q.as_deref() {
        Some(t) if !t.is_empty() => store.search(t)?,
        _ => Default::default(),
    };
    Ok(rows
        .into_iter()
        .filter(|r| q.matches(r, hits.contains(&r.key)))
        .collect())
}

async fn stats(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let store = s.store.clone();
    let (count, version) = blocking(move || Ok((store.count()?, store.schema_version()?))).await?;
    Ok(Json(json!({
        "ingest": s.counters.snapshot(),
        "records": count,
        "schema_version": version,
    })))
}

async fn sessions(
    State(s): State<ApiState>,
    Query(q): Query<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let store = s.store.clone();
    let qq = q.clone();
    let rows = blocking(move || filtered(store.as_ref(), &qq)).await?;
    let (limit, offset) = (q.limit(), q.offset.unwrap_or(0));
    Ok(Json(SessionPage {
        total: rows.len(),
        limit,
        offset,
        sessions: rows.into_iter().skip(offset).take(limit).collect(),
    }))
}

async fn export_rows(s: &ApiState, q: SessionQuery) -> Result<Vec<SessionRow>, ApiError> {
    let store = s.store.clone();
    let (limit, offset) = (q.limit, q.offset.unwrap_or(0));
    let rows = blocking(move || filtered(store.as_ref(), &q)).await?;
    Ok(rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

async fn sessions_json(
    State(s): State<ApiState>,
    Query(q): Query<SessionQuery>,
) -> Result<Response, ApiError> {
    let rows = export_rows(&s, q).await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"sessions.json\"",
        )],
        Json(rows),
    )
        .into_response())
}

async fn sessions_csv(
    State(s): State<ApiState>,
    Query(q): Query<SessionQuery>,
) -> Result<Response, ApiError> {
    let rows = export_rows(&s, q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sessions.csv\"",
            ),
        ],
        to_csv(&rows),
    )
        .into_response())
}

/// One event of a timeline.
#[derive(Serialize)]
struct TimelineEvent {
    /// RFC 3339 (ns) of the record.
    time: String,
    #[serde(flatten)]
    event: StoredEvent,
}

async fn session(State(s): State<ApiState>, Path(key): Path<String>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let (obs, events) = blocking(move || Ok((store.session(&key)?, store.timeline(&key)?))).await?;
    let Some(row) = merge(&obs) else {
        if events.is_empty() {
            return Ok((
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such session"})),
            )
                .into_response());
        }
        return Ok(Json(json!({"session": null, "events": timeline(events)})).into_response());
    };
    Ok(Json(json!({"session": row, "events": timeline(events)})).into_response())
}

fn timeline(events: Vec<StoredEvent>) -> Vec<TimelineEvent> {
    events
        .into_iter()
        .map(|e| TimelineEvent {
            time: humantime::format_rfc3339_nanos(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(e.ts_unix_ns),
            )
            .to_string(),
            event: e,
        })
        .collect()
}

async fn servers(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let store = s.store.clone();
    let (events, rows) = blocking(move || {
        Ok((
            store.events_of_types(&["catalog", "tool_drift"])?,
            merge_all(store.session_obs(None, None)?),
        ))
    })
    .await?;
    Ok(Json(json!({"servers": inventory::build(&events, &rows)})))
}
