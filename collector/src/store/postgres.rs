//! PostgreSQL store: any number of collector replicas share one database; duplicates are
//! refused by the primary key (agent_id, seq), so replicas keep no state of their own.

use std::collections::BTreeSet;
use std::sync::Mutex;

use postgres::{Client, NoTls, Row};

use super::sqlite::sort_events;
use super::{like_pattern, Store, StoreError};
use crate::model::{SessionObs, StoredEvent};

/// Versioned migrations, applied in order under an advisory lock; version = index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: records and session summaries.
    "CREATE TABLE events (
        agent_id TEXT NOT NULL, seq BIGINT NOT NULL, hostname TEXT NOT NULL,
        boot_id TEXT NOT NULL, rtype TEXT NOT NULL, ts_ns BIGINT NOT NULL,
        session_key TEXT, server TEXT, pid BIGINT NOT NULL, comm TEXT NOT NULL,
        side TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (agent_id, seq));
     CREATE INDEX events_session ON events (session_key, ts_ns);
     CREATE INDEX events_type ON events (rtype, ts_ns);
     CREATE INDEX events_ts ON events (ts_ns);
     CREATE TABLE session_obs (
        session_key TEXT NOT NULL, agent_id TEXT NOT NULL, pid BIGINT NOT NULL,
        side TEXT NOT NULL, hostname TEXT NOT NULL, comm TEXT NOT NULL, server TEXT NOT NULL,
        session_id TEXT NOT NULL, started_ns BIGINT NOT NULL, last_ns BIGINT NOT NULL,
        kind SMALLINT NOT NULL, summary TEXT NOT NULL,
        PRIMARY KEY (session_key, agent_id, pid, side));
     CREATE INDEX session_obs_last ON session_obs (last_ns);",
];

/// Advisory lock key serialising migrations of concurrently starting replicas.
const MIGRATION_LOCK: i64 = 0x6d63_7077_6172_6465;

/// The PostgreSQL store.
pub struct PgStore {
    client: Mutex<Client>,
}

const EVENT_COLS: &str =
    "agent_id, seq, hostname, boot_id, rtype, ts_ns, session_key, server, pid, comm, side, record";
const OBS_COLS: &str = "session_key, agent_id, pid, side, hostname, comm, server, session_id, started_ns, last_ns, kind, summary";

fn event(r: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        agent_id: r.try_get(0)?,
        seq: r.try_get::<_, i64>(1)? as u64,
        hostname: r.try_get(2)?,
        boot_id: r.try_get(3)?,
        rtype: r.try_get(4)?,
        ts_unix_ns: r.try_get::<_, i64>(5)? as u64,
        session_key: r.try_get(6)?,
        server: r.try_get(7)?,
        pid: r.try_get::<_, i64>(8)? as u32,
        comm: r.try_get(9)?,
        side: r.try_get(10)?,
        record: serde_json::from_str(r.try_get::<_, &str>(11)?)?,
    })
}

fn obs(r: &Row) -> Result<SessionObs, StoreError> {
    Ok(SessionObs {
        session_key: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        pid: r.try_get::<_, i64>(2)? as u32,
        side: r.try_get(3)?,
        hostname: r.try_get(4)?,
        comm: r.try_get(5)?,
        server: r.try_get(6)?,
        session_id: r.try_get(7)?,
        started_unix_ns: r.try_get::<_, i64>(8)? as u64,
        last_unix_ns: r.try_get::<_, i64>(9)? as u64,
        kind: r.try_get::<_, i16>(10)? as u8,
        summary: serde_json::from_str(r.try_get::<_, &str>(11)?)?,
    })
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl PgStore {
    /// Connects and applies pending migrations.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .try_get(0)?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )?;
        }
        tx.commit()?;
        Ok(PgStore {
            client: Mutex::new(client),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Client>, StoreError> {
        self.client.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl Store for PgStore {
    fn ingest(&self, events: &[StoredEvent], obs_in: &[SessionObs]) -> Result<usize, StoreError> {
        let mut client = self.lock()?;
        let mut tx = client.transaction()?;
        let ins = tx.prepare(&format!(
            "INSERT INTO events ({EVENT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
             ON CONFLICT (agent_id, seq) DO NOTHING"
        ))?;
        let mut new = 0usize;
        for e in events {
            new += tx.execute(
                &ins,
                &[
                    &e.agent_id,
                    &(e.seq as i64),
                    &e.hostname,
                    &e.boot_id,
                    &e.rtype,
                    &clamp(e.ts_unix_ns),
                    &e.session_key,
                    &e.server,
                    &i64::from(e.pid),
                    &e.comm,
                    &e.side,
                    &e.record.to_string(),
                ],
            )? as usize;
        }
        let up = tx.prepare(&format!(
            "INSERT INTO session_obs AS o ({OBS_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
             ON CONFLICT (session_key, agent_id, pid, side) DO UPDATE SET
                hostname = excluded.hostname, comm = excluded.comm,
                started_ns = LEAST(o.started_ns, excluded.started_ns),
                last_ns = excluded.last_ns, kind = excluded.kind, summary = excluded.summary
             WHERE excluded.last_ns > o.last_ns
                OR (excluded.last_ns = o.last_ns AND excluded.kind >= o.kind)"
        ))?;
        for o in obs_in {
            tx.execute(
                &up,
                &[
                    &o.session_key,
                    &o.agent_id,
                    &i64::from(o.pid),
                    &o.side,
                    &o.hostname,
                    &o.comm,
                    &o.server,
                    &o.session_id,
                    &clamp(o.started_unix_ns),
                    &clamp(o.last_unix_ns),
                    &i16::from(o.kind),
                    &o.summary.to_string(),
                ],
            )?;
        }
        tx.commit()?;
        Ok(new)
    }

    fn session_obs(
        &self,
        from_ns: Option<u64>,
        to_ns: Option<u64>,
    ) -> Result<Vec<SessionObs>, StoreError> {
        let mut c = self.lock()?;
        let rows = c.query(
            &format!("SELECT {OBS_COLS} FROM session_obs WHERE last_ns >= $1 AND started_ns <= $2"),
            &[
                &clamp(from_ns.unwrap_or(0)),
                &clamp(to_ns.unwrap_or(u64::MAX)),
            ],
        )?;
        rows.iter().map(obs).collect()
    }

    fn session(&self, key: &str) -> Result<Vec<SessionObs>, StoreError> {
        let mut c = self.lock()?;
        let rows = c.query(
            &format!("SELECT {OBS_COLS} FROM session_obs WHERE session_key = $1"),
            &[&key],
        )?;
        rows.iter().map(obs).collect()
    }

    fn search(&self, text: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut c = self.lock()?;
        let rows = c.query(
            "SELECT DISTINCT session_key FROM events
             WHERE session_key IS NOT NULL AND record ILIKE $1 ESCAPE '\\'",
            &[&like_pattern(text)],
        )?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect()
    }

    fn timeline(&self, key: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let mut c = self.lock()?;
        let rows = c.query(
            &format!("SELECT {EVENT_COLS} FROM events WHERE session_key = $1"),
            &[&key],
        )?;
        let mut v = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        sort_events(&mut v);
        Ok(v)
    }

    fn events_of_types(&self, types: &[&str]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut c = self.lock()?;
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        let rows = c.query(
            &format!("SELECT {EVENT_COLS} FROM events WHERE rtype = ANY($1)"),
            &[&types],
        )?;
        let mut v = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        sort_events(&mut v);
        Ok(v)
    }

    fn purge(&self, before_unix_ns: u64) -> Result<u64, StoreError> {
        let mut c = self.lock()?;
        let cutoff = clamp(before_unix_ns);
        let n = c.execute("DELETE FROM events WHERE ts_ns < $1", &[&cutoff])?;
        c.execute("DELETE FROM session_obs WHERE last_ns < $1", &[&cutoff])?;
        Ok(n)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let mut c = self.lock()?;
        Ok(c.query_one("SELECT COUNT(*) FROM events", &[])?
            .try_get::<_, i64>(0)? as u64)
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        let mut c = self.lock()?;
        Ok(c.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?)
    }
}
