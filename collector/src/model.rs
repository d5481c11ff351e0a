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
