//! The storage test suite: every backend must pass it (run against SQLite and PostgreSQL by
//! `collector/tests/storage.rs`). Panics on the first failed check.

use mcpwarden_proto::v1::{
    envelope, session_record, AgentIdentity, CatalogRecord, DriftRecord, Envelope, JsonList,
    MessageRecord, RpcId, SessionRecord,
};

use super::Store;
use crate::model::{normalise, session_key, SessionObs, StoredEvent};
use crate::sessions::{merge_all, SessionQuery};

const DAY_NS: u64 = 86_400 * 1_000_000_000;
/// Unix time of the suite's records (2026-01-02, plus offsets).
const BASE: u64 = 1_767_312_000 * 1_000_000_000;

/// An agent's identity.
pub fn agent(id: &str) -> AgentIdentity {
    AgentIdentity {
        agent_id: id.into(),
        hostname: format!("{id}-host"),
        boot_id: "boot".into(),
        agent_version: "test".into(),
    }
}

/// A `tools/call` request (client→server) observed on `side` with `args` as params.
pub fn call(seq: u64, side: &str, ts: u64, session: &str, args: &str) -> Envelope {
    let (local, remote) = if side == "client" {
        ("127.0.0.1:40000", "127.0.0.1:8000")
    } else {
        ("127.0.0.1:8000", "127.0.0.1:40000")
    };
    Envelope {
        seq,
        agent: None,
        realtime_offset_ns: BASE,
        record: Some(envelope::Record::Message(MessageRecord {
            ts_ns: ts,
            pid: if side == "client" { 100 } else { 200 },
            comm: side.into(),
            side: side.into(),
            local: local.into(),
            remote: remote.into(),
            conn_id: format!("{side}:1"),
            http_method: "POST".into(),
            http_path: "/mcp".into(),
            session_id: Some(session.into()),
            era: "handshake".into(),
            direction: "client_to_server".into(),
            kind: "request".into(),
            id: Some(RpcId {
                value: Some(mcpwarden_proto::v1::rpc_id::Value::Num(seq as i64)),
            }),
            method: Some("tools/call".into()),
            name: Some("add".into()),
            transport: "json".into(),
            params_json: Some(args.into()),
            ..Default::default()
        })),
    }
}

/// A session summary of `kind` observed on `side`.
pub fn summary(
    seq: u64,
    side: &str,
    kind: session_record::Kind,
    session: &str,
    ended_ns: u64,
) -> Envelope {
    Envelope {
        seq,
        agent: None,
        realtime_offset_ns: BASE,
        record: Some(envelope::Record::Session(SessionRecord {
            kind: kind as i32,
            session_id: session.into(),
            grouping: "session_header".into(),
            era: "handshake".into(),
            pid: if side == "client" { 100 } else { 200 },
            comm: side.into(),
            side: side.into(),
            server: "127.0.0.1:8000/mcp".into(),
            client_name: (side == "client").then(|| "suite-client".into()),
            started_ns: 1_000,
            ended_ns,
            requests: 2,
            errors: 1,
            status: if kind == session_record::Kind::End {
                "ended"
            } else {
                "active"
            }
            .into(),
            end_reason: (kind == session_record::Kind::End).then(|| "delete".into()),
            tools: vec!["add".into()],
            state: "operating".into(),
            user: Some("alice".into()),
            attacks_json: vec![r#"{"kind":"tool_definition_drift","tool":"add"}"#.into()],
            ..Default::default()
        })),
    }
}

fn catalog(seq: u64) -> Envelope {
    Envelope {
        seq,
        agent: None,
        realtime_offset_ns: BASE,
        record: Some(envelope::Record::Catalog(CatalogRecord {
            ts_ns: 500,
            pid: 200,
            comm: "server".into(),
            side: "server".into(),
            server: "127.0.0.1:8000/mcp".into(),
            session_id: "S1".into(),
            changed: "tools".into(),
            tools: Some(JsonList {
                items_json: vec![r#"{"name":"add"}"#.into()],
            }),
            ..Default::default()
        })),
    }
}

fn drift(seq: u64) -> Envelope {
    Envelope {
        seq,
        agent: None,
        realtime_offset_ns: BASE,
        record: Some(envelope::Record::Drift(DriftRecord {
            ts_ns: 600,
            pid: 200,
            comm: "server".into(),
            side: "server".into(),
            server: "127.0.0.1:8000/mcp".into(),
            session_id: "S1".into(),
            tool: "add".into(),
            fields: vec!["description".into()],
            old_hash: "aa".into(),
            new_hash: "bb".into(),
        })),
    }
}

/// Normalises envelopes of one agent for `Store::ingest`.
pub fn batch(a: &AgentIdentity, envs: &[Envelope]) -> (Vec<StoredEvent>, Vec<SessionObs>) {
    let mut ev = Vec::new();
    let mut obs = Vec::new();
    for e in envs {
        let (s, o) = normalise(e, a).expect("normalises");
        ev.push(s);
        obs.extend(o);
    }
    (ev, obs)
}

/// Runs every check against `store` (which must be empty). `reopen` opens the same store
/// again (migrations must be idempotent).
pub fn run(store: &dyn Store, reopen: &dyn Fn() -> Box<dyn Store>) {
    use session_record::Kind;
    assert_eq!(store.schema_version().expect("version"), 1);
    let client = agent("agent-client");
    let server = agent("agent-server");
    let c_envs = vec![
        summary(1, "client", Kind::Start, "S1", 1_000),
        call(
            2,
            "client",
            2_000,
            "S1",
            r#"{"name":"add","arguments":{"a":1,"secret_word":"Zebra42"}}"#,
        ),
        summary(3, "client", Kind::End, "S1", 9_000),
    ];
    let s_envs = vec![
        catalog(10),
        summary(11, "server", Kind::Update, "S1", 8_000),
        call(
            12,
            "server",
            2_100,
            "S1",
            r#"{"name":"add","arguments":{"a":1}}"#,
        ),
        drift(13),
    ];
    let (ce, co) = batch(&client, &c_envs);
    let (se, so) = batch(&server, &s_envs);
    assert_eq!(store.ingest(&ce, &co).expect("ingest"), 3);
    assert_eq!(store.ingest(&se, &so).expect("ingest"), 4);
    // At-least-once delivery: a resent batch stores nothing new.
    assert_eq!(store.ingest(&ce, &co).expect("re-ingest"), 0);
    assert_eq!(store.count().expect("count"), 7);

    // One merged session from two agents and both sides.
    let rows = merge_all(store.session_obs(None, None).expect("obs"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.key, session_key("127.0.0.1:8000/mcp", "S1"));
    assert_eq!(row.agents.len(), 2);
    assert_eq!(row.status, "ended");
    assert_eq!(row.client_name.as_deref(), Some("suite-client"));
    assert_eq!(row.calls, 2);
    assert_eq!(row.attacks, vec!["tool_definition_drift"]);
    // An older summary never replaces a newer one.
    let (oe, oo) = batch(&client, &[summary(4, "client", Kind::Update, "S1", 5_000)]);
    store.ingest(&oe, &oo).expect("ingest old update");
    let rows = merge_all(store.session_obs(None, None).expect("obs"));
    assert_eq!(rows[0].status, "ended");

    // Time window.
    let t = |ns: u64| Some(BASE + ns);
    assert_eq!(store.session_obs(t(10_000), None).expect("obs").len(), 0);
    assert_eq!(store.session_obs(None, t(500)).expect("obs").len(), 0);
    assert_eq!(store.session_obs(t(8_500), t(9_500)).expect("obs").len(), 1);

    // Timeline: every record of the session from both agents, in time order.
    let tl = store.timeline(&row.key).expect("timeline");
    let seqs: Vec<u64> = tl.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![10, 13, 1, 2, 12, 4, 11, 3], "{tl:?}");
    assert!(tl
        .iter()
        .any(|e| e.hostname == "agent-server-host" && e.side == "server"));
    assert_eq!(tl[3].record["params"]["arguments"]["a"], 1);
    assert_eq!(store.session(&row.key).expect("session").len(), 2);

    // Free text over content, case-insensitive; LIKE wildcards are literal.
    assert!(store.search("zebra42").expect("search").contains(&row.key));
    assert!(store.search("no-such-text").expect("search").is_empty());
    assert!(store.search("%").expect("search").is_empty());
    let q = SessionQuery {
        q: Some("Zebra42".into()),
        ..Default::default()
    };
    assert!(q.matches(
        row,
        store.search("Zebra42").expect("search").contains(&row.key)
    ));

    // Inventory sources.
    let inv = store
        .events_of_types(&["catalog", "tool_drift"])
        .expect("types");
    assert_eq!(inv.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10, 13]);

    // Migrations are idempotent.
    let again = reopen();
    assert_eq!(again.schema_version().expect("version"), 1);
    assert_eq!(again.count().expect("count"), 8);

    // Retention: a record two days old goes; today's stay.
    let mut old = call(99, "client", 0, "OLD", "{}");
    old.realtime_offset_ns = BASE - 2 * DAY_NS;
    let (oe, oo) = batch(&client, &[old]);
    store.ingest(&oe, &oo).expect("ingest old");
    assert_eq!(store.count().expect("count"), 9);
    let removed = store.purge(BASE - DAY_NS).expect("purge");
    assert_eq!(removed, 1);
    assert_eq!(store.count().expect("count"), 8);
    assert_eq!(
        merge_all(store.session_obs(None, None).expect("obs")).len(),
        1
    );
    // Purging everything also forgets sessions.
    store.purge(BASE + 2 * DAY_NS).expect("purge all");
    assert_eq!(store.count().expect("count"), 0);
    assert!(store.session_obs(None, None).expect("obs").is_empty());
}
