//! Storage behind one trait: SQLite (embedded, WAL, one events table per day) or PostgreSQL
//! (shared by any number of collector replicas). Both have versioned migrations and pass the
//! same test suite ([`suite`]).

pub mod postgres;
pub mod sqlite;
pub mod suite;

use std::collections::BTreeSet;

use crate::model::{SessionObs, StoredEvent};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is neither `sqlite://PATH` nor `postgres://…`.
    #[error("store URL {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {}", pg_detail(.0))]
    Postgres(#[from] ::postgres::Error),
    /// A stored record is not JSON.
    #[error("stored record is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The store's connection lock was poisoned by a panic.
    #[error("store lock poisoned")]
    Poisoned,
    /// The database was created by a newer collector.
    #[error("schema version {found} is newer than this collector's {known}")]
    TooNew {
        /// Version in the database.
        found: i64,
        /// Newest version this collector knows.
        known: i64,
    },
}

/// What a collector needs from its storage.
pub trait Store: Send + Sync {
    /// Stores a batch in one transaction. A record already stored (same agent id and seq) is
    /// skipped; returns how many were new. Returns only after the commit.
    fn ingest(&self, events: &[StoredEvent], obs: &[SessionObs]) -> Result<usize, StoreError>;
    /// Every observer's latest summary of sessions seen in `[from, to]` (Unix ns; `None`:
    /// unbounded).
    fn session_obs(
        &self,
        from_ns: Option<u64>,
        to_ns: Option<u64>,
    ) -> Result<Vec<SessionObs>, StoreError>;
    /// The observers' summaries of one session.
    fn session(&self, key: &str) -> Result<Vec<SessionObs>, StoreError>;
    /// Keys of sessions one of whose records contains `text` (ASCII case-insensitive).
    fn search(&self, text: &str) -> Result<BTreeSet<String>, StoreError>;
    /// Every record of one session, by time (then agent, seq).
    fn timeline(&self, key: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// Every record of these types (`catalog`, `tool_drift`, …), by time.
    fn events_of_types(&self, types: &[&str]) -> Result<Vec<StoredEvent>, StoreError>;
    /// Forgets records and sessions older than `before_unix_ns`; returns records removed
    /// (SQLite: whole days).
    fn purge(&self, before_unix_ns: u64) -> Result<u64, StoreError>;
    /// Records stored.
    fn count(&self) -> Result<u64, StoreError>;
    /// The schema version after migrations.
    fn schema_version(&self) -> Result<i64, StoreError>;
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…` / `postgresql://…`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(
            path,
        ))?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(url)?))
    } else {
        Err(StoreError::Url(url.to_owned()))
    }
}

fn pg_detail(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{e}: {}", d.message()),
        None => e.to_string(),
    }
}

/// `LIKE` pattern for a substring, with `\` escaping.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
