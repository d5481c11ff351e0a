//! SQLite store: one file in WAL mode, records in one table per (UTC) day so retention drops
//! whole tables; session summaries in `session_obs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{like_pattern, Store, StoreError};
use crate::model::{SessionObs, StoredEvent};

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Versioned migrations, applied in order; the version is `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: day-table registry and session summaries.
    "CREATE TABLE day_tables (day INTEGER PRIMARY KEY);
     CREATE TABLE session_obs (
        session_key TEXT NOT NULL, agent_id TEXT NOT NULL, pid INTEGER NOT NULL,
        side TEXT NOT NULL, hostname TEXT NOT NULL, comm TEXT NOT NULL, server TEXT NOT NULL,
        session_id TEXT NOT NULL, started_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
        kind INTEGER NOT NULL, summary TEXT NOT NULL,
        PRIMARY KEY (session_key, agent_id, pid, side));
     CREATE INDEX session_obs_last ON session_obs (last_ns);",
];

fn day_table(day: i64) -> String {
    format!("events_day_{day}")
}

fn day_ddl(day: i64) -> String {
    let t = day_table(day);
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
            agent_id TEXT NOT NULL, seq INTEGER NOT NULL, hostname TEXT NOT NULL,
            boot_id TEXT NOT NULL, rtype TEXT NOT NULL, ts_ns INTEGER NOT NULL,
            session_key TEXT, server TEXT, pid INTEGER NOT NULL, comm TEXT NOT NULL,
            side TEXT NOT NULL, record TEXT NOT NULL,
            PRIMARY KEY (agent_id, seq));
         CREATE INDEX IF NOT EXISTS {t}_session ON {t} (session_key, ts_ns);
         CREATE INDEX IF NOT EXISTS {t}_type ON {t} (rtype, ts_ns);
         INSERT OR IGNORE INTO day_tables (day) VALUES ({day});"
    )
}

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const EVENT_COLS: &str =
    "agent_id, seq, hostname, boot_id, rtype, ts_ns, session_key, server, pid, comm, side, record";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredEvent, String)> {
    Ok((
        StoredEvent {
            agent_id: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            hostname: r.get(2)?,
            boot_id: r.get(3)?,
            rtype: r.get(4)?,
            ts_unix_ns: r.get::<_, i64>(5)? as u64,
            session_key: r.get(6)?,
            server: r.get(7)?,
            pid: r.get::<_, i64>(8)? as u32,
            comm: r.get(9)?,
            side: r.get(10)?,
            record: serde_json::Value::Null,
        },
        r.get(11)?,
    ))
}

const OBS_COLS: &str = "session_key, agent_id, pid, side, hostname, comm, server, session_id, started_ns, last_ns, kind, summary";

fn obs_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(SessionObs, String)> {
    Ok((
        SessionObs {
            session_key: r.get(0)?,
            agent_id: r.get(1)?,
            pid: r.get::<_, i64>(2)? as u32,
            side: r.get(3)?,
            hostname: r.get(4)?,
            comm: r.get(5)?,
            server: r.get(6)?,
            session_id: r.get(7)?,
            started_unix_ns: r.get::<_, i64>(8)? as u64,
            last_unix_ns: r.get::<_, i64>(9)? as u64,
            kind: r.get::<_, i64>(10)? as u8,
            summary: serde_json::Value::Null,
        },
        r.get(11)?,
    ))
}

fn finish_events(rows: Vec<(StoredEvent, String)>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter()
        .map(|(mut e, text)| {
            e.record = serde_json::from_str(&text)?;
            Ok(e)
        })
        .collect()
}

fn finish_obs(rows: Vec<(SessionObs, String)>) -> Result<Vec<SessionObs>, StoreError> {
    rows.into_iter()
        .map(|(mut o, text)| {
            o.summary = serde_json::from_str(&text)?;
            Ok(o)
        })
        .collect()
}

/// Sorts records by time, then agent and sequence.
pub(crate) fn sort_events(v: &mut [StoredEvent]) {
    v.sort_by(|a, b| (a.ts_unix_ns, &a.agent_id, a.seq).cmp(&(b.ts_unix_ns, &b.agent_id, b.seq)));
}

impl SqliteStore {
    /// Opens (creating) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory surfaces as the open error below.
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, applied_unix_ms INTEGER NOT NULL)",
        )?;
        let tx = conn.transaction()?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_unix_ms) VALUES (?1, ?2)",
                params![i as i64 + 1, now],
            )?;
        }
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    fn days(conn: &Connection) -> Result<Vec<i64>, StoreError> {
        let mut st = conn.prepare_cached("SELECT day FROM day_tables ORDER BY day")?;
        let days = st
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(days)
    }

    fn query_events(
        conn: &Connection,
        where_sql: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut rows = Vec::new();
        for day in Self::days(conn)? {
            let sql = format!(
                "SELECT {EVENT_COLS} FROM {} WHERE {where_sql}",
                day_table(day)
            );
            let mut st = conn.prepare(&sql)?;
            let got = st
                .query_map(p, event_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.extend(got);
        }
        let mut v = finish_events(rows)?;
        sort_events(&mut v);
        Ok(v)
    }
}

impl Store for SqliteStore {
    fn ingest(&self, events: &[StoredEvent], obs: &[SessionObs]) -> Result<usize, StoreError> {
        let mut conn = self.lock()?;
        let known: BTreeSet<i64> = Self::days(&conn)?.into_iter().collect();
        let tx = conn.transaction()?;
        let mut new = 0;
        for e in events {
            let day = (e.ts_unix_ns / NS_PER_DAY) as i64;
            if !known.contains(&day) {
                tx.execute_batch(&day_ddl(day))?;
            }
            let sql = format!(
                "INSERT OR IGNORE INTO {} ({EVENT_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                day_table(day)
            );
            let mut st = tx.prepare_cached(&sql)?;
            new += st.execute(params![
                e.agent_id,
                e.seq as i64,
                e.hostname,
                e.boot_id,
                e.rtype,
                e.ts_unix_ns as i64,
                e.session_key,
                e.server,
                i64::from(e.pid),
                e.comm,
                e.side,
                e.record.to_string(),
            ])?;
        }
        {
            let mut st = tx.prepare_cached(&format!(
                "INSERT INTO session_obs ({OBS_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)
                 ON CONFLICT (session_key, agent_id, pid, side) DO UPDATE SET
                    hostname = excluded.hostname, comm = excluded.comm,
                    started_ns = MIN(session_obs.started_ns, excluded.started_ns),
                    last_ns = excluded.last_ns, kind = excluded.kind, summary = excluded.summary
                 WHERE excluded.last_ns > session_obs.last_ns
                    OR (excluded.last_ns = session_obs.last_ns AND excluded.kind >= session_obs.kind)"
            ))?;
            for o in obs {
                st.execute(params![
                    o.session_key,
                    o.agent_id,
                    i64::from(o.pid),
                    o.side,
                    o.hostname,
                    o.comm,
                    o.server,
                    o.session_id,
                    o.started_unix_ns as i64,
                    o.last_unix_ns as i64,
                    i64::from(o.kind),
                    o.summary.to_string(),
                ])?;
            }
        }
        tx.commit()?;
        Ok(new)
    }

    fn session_obs(
        &self,
        from_ns: Option<u64>,
        to_ns: Option<u64>,
    ) -> Result<Vec<SessionObs>, StoreError> {
        let conn = self.lock()?;
        // Sessions are filtered on their merged span later; this only narrows.
        let mut st = conn.prepare_cached(&format!(
            "SELECT {OBS_COLS} FROM session_obs WHERE last_ns >= ?1 AND started_ns <= ?2"
        ))?;
        let rows = st
            .query_map(
                params![
                    from_ns.map_or(0, |v| v as i64),
                    to_ns.map_or(i64::MAX, |v| v.min(i64::MAX as u64) as i64)
                ],
                obs_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        finish_obs(rows)
    }

    fn session(&self, key: &str) -> Result<Vec<SessionObs>, StoreError> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached(&format!(
            "SELECT {OBS_COLS} FROM session_obs WHERE session_key = ?1"
        ))?;
        let rows = st
            .query_map(params![key], obs_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        finish_obs(rows)
    }

    fn search(&self, text: &str) -> Result<BTreeSet<String>, StoreError> {
        let conn = self.lock()?;
        let pat = like_pattern(text);
        let mut keys = BTreeSet::new();
        for day in Self::days(&conn)? {
            let sql = format!(
                "SELECT DISTINCT session_key FROM {} WHERE session_key IS NOT NULL AND record LIKE ?1 ESCAPE '\\'",
                day_table(day)
            );
            let mut st = conn.prepare(&sql)?;
            for k in st.query_map(params![pat], |r| r.get::<_, String>(0))? {
                keys.insert(k?);
            }
        }
        Ok(keys)
    }

    fn timeline(&self, key: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.lock()?;
        Self::query_events(&conn, "session_key = ?1", &[&key])
    }

    fn events_of_types(&self, types: &[&str]) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.lock()?;
        let mut out = Vec::new();
        for t in types {
            out.extend(Self::query_events(&conn, "rtype = ?1", &[t])?);
        }
        sort_events(&mut out);
        Ok(out)
    }

    fn purge(&self, before_unix_ns: u64) -> Result<u64, StoreError> {
        let mut conn = self.lock()?;
        let cutoff_day = (before_unix_ns / NS_PER_DAY) as i64;
        let days = Self::days(&conn)?;
        let tx = conn.transaction()?;
        let mut removed = 0u64;
        for day in days.into_iter().filter(|d| *d < cutoff_day) {
            let t = day_table(day);
            let n: i64 = tx.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))?;
            tx.execute_batch(&format!("DROP TABLE {t}"))?;
            tx.execute("DELETE FROM day_tables WHERE day = ?1", params![day])?;
            removed += n as u64;
        }
        tx.execute(
            "DELETE FROM session_obs WHERE last_ns < ?1",
            params![before_unix_ns.min(i64::MAX as u64) as i64],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        let mut n = 0u64;
        for day in Self::days(&conn)? {
            let c: i64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM {}", day_table(day)),
                [],
                |r| r.get(0),
            )?;
            n += c as u64;
        }
        Ok(n)
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.lock()?;
        let v: Option<i64> = conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        Ok(v.unwrap_or(0))
    }
}
