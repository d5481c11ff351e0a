//! What the collector stores, derived from received envelopes: one [`StoredEvent`] per record
//! and, for session summaries, one [`SessionObs`] (one observer's latest view of a session).

use mcpwarden_proto::json::{record_to_json, RenderError};
use mcpwarden_proto::v1::{envelope, AgentIdentity, Envelope};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One stored record with who saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The observing agent.
    pub agent_id: String,
    /// The agent's sequence number (unique per agent).
    pub seq: u64,
    /// Host name and boot id of the observing machine.
    pub hostname: String,
    pub boot_id: String,
    /// The JSON `type` (`message`, `session_end`, …).
    pub rtype: String,
    /// Unix time (ns) of the record (its kernel timestamp plus the agent's offset).
    pub ts_unix_ns: u64,
    /// The merged session this record belongs to (see [`session_key`]), when it has one.
    pub session_key: Option<String>,
    /// `ip:port/path` of the server, when known.
    pub server: Option<String>,
    /// The observed process.
    pub pid: u32,
    pub comm: String,
    /// `client`, `server` or `unknown`.
    pub side: String,
    /// The record exactly as the agent's JSON line.
    pub record: Value,
}

/// One observer's (agent, process, side) latest summary of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionObs {
    pub session_key: String,
    pub agent_id: String,
    pub hostname: String,
    pub pid: u32,
    pub side: String,
    pub comm: String,
    pub server: String,
    pub session_id: String,
    /// Unix ns of the session's first and last message as this observer saw them.
    pub started_unix_ns: u64,
    pub last_unix_ns: u64,
    /// 1 start, 2 update, 3 end: which summary this is (a later one replaces an earlier).
    pub kind: u8,
    /// The summary record (JSON line).
    pub summary: Value,
}

/// The id of a merged session: every record of the same server endpoint and session id
/// (from any agent, either side) shares it. 16 hex characters (URL-safe). A synthetic
/// `stateless:` id already names its server endpoint, so it alone is the key.
pub fn session_key(server: &str, session_id: &str) -> String {
    let server = if session_id.starts_with("stateless:") {
        ""
    } else {
        server
    };
    let mut h = Sha256::new();
    h.update(server.as_bytes());
    h.update([0u8]);
    h.update(session_id.as_bytes());
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The server endpoint of a message: the server end's `ip:port` and the path without query.
fn message_server(side: &str, local: &str, remote: &str, path: &str) -> String {
    let end = if side == "server" { local } else { remote };
    let path = path.split('?').next().unwrap_or("");
    format!("{end}{path}")
}

/// `comm` and `side` of a `health` record's event: the agent itself.
static AGENT_COMM: String = String::new();
static AGENT_SIDE: String = String::new();

/// Why an envelope could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The record could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The envelope names no agent.
    #[error("envelope {0} has no agent id")]
    NoAgent(u64),
}

/// The stored forms of one envelope; `agent` is the stream's full identity.
pub fn normalise(
    env: &Envelope,
    agent: &AgentIdentity,
) -> Result<(StoredEvent, Option<SessionObs>), ModelError> {
    if agent.agent_id.is_empty() {
        return Err(ModelError::NoAgent(env.seq));
    }
    let record = record_to_json(env)?;
    let rtype = record["type"].as_str().unwrap_or_default().to_owned();
    let off = env.realtime_offset_ns;
    let wall = |ns: u64| ns.saturating_add(off);
    let mut obs = None;
    let (ts, server, session_id, pid, comm, side) = match env.record.as_ref() {
        Some(envelope::Record::Message(m)) => {
            let server = message_server(&m.side, &m.local, &m.remote, &m.http_path);
            let sid = m.session_id.clone().unwrap_or_else(|| m.conn_id.clone());
            (m.ts_ns, Some(server), Some(sid), m.pid, &m.comm, &m.side)
        }
        Some(envelope::Record::Session(s)) => {
            let key = session_key(&s.server, &s.session_id);
            obs = Some(SessionObs {
                session_key: key,
                agent_id: agent.agent_id.clone(),
                hostname: agent.hostname.clone(),
                pid: s.pid,
                side: s.side.clone(),
                comm: s.comm.clone(),
                server: s.server.clone(),
                session_id: s.session_id.clone(),
                started_unix_ns: wall(s.started_ns),
                last_unix_ns: wall(s.ended_ns),
                kind: s.kind.clamp(0, 3) as u8,
                summary: record.clone(),
            });
            let ts = if s.kind == 1 {
                s.started_ns
            } else {
                s.ended_ns
            };
            (
                ts,
                Some(s.server.clone()),
                Some(s.session_id.clone()),
                s.pid,
                &s.comm,
                &s.side,
            )
        }
        Some(envelope::Record::Drift(d)) => (
            d.ts_ns,
            Some(d.server.clone()),
            Some(d.session_id.clone()),
            d.pid,
            &d.comm,
            &d.side,
        ),
        Some(envelope::Record::Cancel(c)) => {
            // Stateless era only: the synthetic session id is the key (no path needed).
            let server = message_server(&c.side, &c.local, &c.remote, "");
            (
                c.ts_ns,
                Some(server),
                Some(c.session_id.clone()),
                c.pid,
                &c.comm,
                &c.side,
            )
        }
        Some(envelope::Record::Verdict(v)) => (
            v.ts_ns,
            Some(v.server.clone()),
            v.session_id.clone(),
            v.pid,
            &v.comm,
            &v.side,
        ),
        Some(envelope::Record::Catalog(c)) => (
            c.ts_ns,
            Some(c.server.clone()),
            Some(c.session_id.clone()),
            c.pid,
            &c.comm,
            &c.side,
        ),
        // The agent's own counters: no session, no server; the observed process is the agent.
        Some(envelope::Record::Health(h)) => (h.ts_ns, None, None, h.pid, &AGENT_COMM, &AGENT_SIDE),
        None => return Err(RenderError::Empty { seq: env.seq }.into()),
    };
    let session_key = match (&server, &session_id) {
        (Some(s), Some(id)) => Some(session_key(s, id)),
        _ => None,
    };
    Ok((
        StoredEvent {
            agent_id: agent.agent_id.clone(),
            seq: env.seq,
            hostname: agent.hostname.clone(),
            boot_id: agent.boot_id.clone(),
            rtype,
            ts_unix_ns: wall(ts),
            session_key,
            server,
            pid,
            comm: comm.clone(),
            side: side.clone(),
            record,
        },
        obs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwarden_proto::v1::{CounterMap, HealthRecord, ProgramHealth};

    fn health_envelope() -> Envelope {
        Envelope {
            seq: 9,
            agent: None,
            realtime_offset_ns: 1_000,
            record: Some(envelope::Record::Health(HealthRecord {
                ts_ns: 50,
                reason: "stop".into(),
                pid: 4242,
                uptime_ns: 40,
                rss_bytes: 4096,
                kernel: [("ring_full_chunks".to_owned(), 0)].into(),
                sinks: [(
                    "grpc".to_owned(),
                    CounterMap {
                        counters: [("acked".to_owned(), 3)].into(),
                    },
                )]
                .into(),
                programs: vec![ProgramHealth {
                    name: "sock_send_capture".into(),
                    id: 5,
                    recursion_misses: 1,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        }
    }

    fn agent() -> AgentIdentity {
        AgentIdentity {
            agent_id: "a1".into(),
            hostname: "h".into(),
            boot_id: "b".into(),
            agent_version: "t".into(),
        }
    }

    #[test]
    fn a_health_record_is_stored_as_an_event_of_the_agent_outside_any_session() {
        let (ev, obs) = normalise(&health_envelope(), &agent()).expect("normalises");
        assert!(obs.is_none());
        assert_eq!(ev.rtype, "health");
        assert_eq!(ev.session_key, None);
        assert_eq!(ev.server, None);
        assert_eq!(ev.pid, 4242);
        assert_eq!(ev.ts_unix_ns, 1_050);
        assert_eq!(ev.record["export"]["grpc"]["acked"], 3);
        assert_eq!(ev.record["programs"][0]["recursion_misses"], 1);
    }

    #[test]
    fn the_sqlite_store_keeps_health_records() {
        use crate::store::{sqlite::SqliteStore, Store};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("c.db")).expect("open");
        let (ev, _) = normalise(&health_envelope(), &agent()).expect("normalises");
        assert_eq!(
            store
                .ingest(std::slice::from_ref(&ev), &[])
                .expect("ingest"),
            1
        );
        let got = store.events_of_types(&["health"]).expect("query");
        assert_eq!(got, vec![ev]);
    }
}
