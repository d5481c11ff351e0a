//! Agent → collector with real Python SDK traffic (privileged: the agent loads eBPF).
//!
//! - The collector is stopped for 20 s mid-conversation, then restarted: every record the
//!   agent wrote is stored exactly once.
//! - The collector is killed with SIGKILL mid-conversation and restarted: the same.
//! - Two agents (one `--pid` on the client, one on the server, distinct ids) and two collector
//!   replicas on one PostgreSQL: one merged session; a replica dies mid-conversation and
//!   nothing is lost or duplicated.

use std::time::{Duration, Instant};

use mcpwarden_collector::pg_harness::TestPostgres;
use mcpwarden_tests::collector::{assert_stored_exactly_once, wait_until};
use mcpwarden_tests::{free_port, Agent, ClientOptions, CollectorProc, PyServer, SdkClient};
use serde_json::Value;

fn export_args(url: &str, agent_id: &str, state: &std::path::Path) -> Vec<String> {
    vec![
        "--export".into(),
        url.into(),
        "--agent-id".into(),
        agent_id.into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--export-grace".into(),
        "20".into(),
    ]
}

fn tagged(agent_id: &str, records: Vec<Value>) -> Vec<(String, Value)> {
    records
        .into_iter()
        .map(|r| (agent_id.to_owned(), r))
        .collect()
}

/// The merged session with this session id, from the API (exactly one row).
fn merged_session(col: &CollectorProc, session_id: &str) -> Value {
    let page = col.get("/api/sessions?limit=1000");
    let rows: Vec<&Value> = page["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["session_id"] == session_id)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "want one merged session {session_id}: {page}"
    );
    rows[0].clone()
}

enum Outage {
    Stop20s,
    Kill,
}

fn outage_mid_conversation(outage: Outage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("collector.db").display());
    let (grpc, http) = (free_port(), free_port());
    let col = CollectorProc::start(&store, grpc, http);
    let args = export_args(&col.url(), "e2e-outage", dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(&args);
    let server = PyServer::start(free_port());
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_after_initialize: true,
            ..Default::default()
        },
    );
    client.wait_initialized();
    wait_until(
        "the collector stores the initialize exchange",
        Duration::from_secs(20),
        || col.stored() >= 2,
    );
    let down_at = Instant::now();
    let col_wait = match outage {
        Outage::Stop20s => {
            col.stop();
            Duration::from_secs(20)
        }
        Outage::Kill => {
            col.kill();
            Duration::from_secs(1)
        }
    };
    client.resume();
    let summary = client.finish();
    if let Some(rest) = col_wait.checked_sub(down_at.elapsed()) {
        std::thread::sleep(rest);
    }
    let col = CollectorProc::start(&store, grpc, http);
    // Stopping the agent flushes the export (up to --export-grace for acknowledgements).
    let records = agent.stop();
    assert!(records.len() > 10, "agent wrote {} records", records.len());
    assert_stored_exactly_once(&store, &tagged("e2e-outage", records));
    let session_id = summary["session_id"].as_str().expect("client session id");
    let row = merged_session(&col, session_id);
    // One agent saw both ends: both sides are in the merged session.
    let sides: Vec<&str> = row["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["side"].as_str())
        .collect();
    assert!(
        sides.contains(&"client") && sides.contains(&"server"),
        "{row}"
    );
    assert!(row["calls"].as_u64().unwrap_or(0) >= 3, "{row}");
    let detail = col.get(&format!(
        "/api/sessions/{}",
        row["key"].as_str().unwrap_or("")
    ));
    let events = detail["events"].as_array().expect("timeline");
    assert!(events.iter().any(|e| e["record"]["method"] == "tools/call"
        && e["side"] == "server"
        && e["pid"] == server.pid()));
    col.stop();
}

#[test]
fn collector_stopped_for_20s_mid_conversation_loses_and_duplicates_nothing() {
    outage_mid_conversation(Outage::Stop20s);
}

#[test]
fn collector_killed_mid_conversation_loses_and_duplicates_nothing() {
    outage_mid_conversation(Outage::Kill);
}

#[test]
fn two_agents_two_replicas_on_postgres_merge_one_session_and_survive_a_replica_death() {
    let pg = TestPostgres::start().expect("PostgreSQL test server");
    let store = pg.fresh_database("e2e_replicas").expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let r1 = CollectorProc::start(&store, free_port(), free_port());
    let r2 = CollectorProc::start(&store, free_port(), free_port());
    let server = PyServer::start(free_port());
    let server_pid = server.pid().to_string();
    let mut s_args = export_args(
        &format!("{},{}", r2.url(), r1.url()),
        "e2e-server",
        dir.path(),
    );
    s_args.extend(["--pid".into(), server_pid]);
    let s_args: Vec<&str> = s_args.iter().map(String::as_str).collect();
    let agent_s = Agent::start(&s_args);
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_before_start: true,
            pause_after_initialize: true,
            ..Default::default()
        },
    );
    client.wait_ready();
    let mut c_args = export_args(
        &format!("{},{}", r1.url(), r2.url()),
        "e2e-client",
        dir.path(),
    );
    c_args.extend(["--pid".into(), client.pid().to_string()]);
    let c_args: Vec<&str> = c_args.iter().map(String::as_str).collect();
    let agent_c = Agent::start(&c_args);
    client.start();
    client.wait_initialized();
    wait_until(
        "replica 1 stores the client's first records",
        Duration::from_secs(20),
        || {
            r1.get("/api/stats")["ingest"]["stored"]
                .as_u64()
                .unwrap_or(0)
                >= 2
        },
    );
    // Replica 1 dies; the client's agent fails over to replica 2.
    r1.kill();
    client.resume();
    let summary = client.finish();
    let rec_c = agent_c.stop();
    let rec_s = agent_s.stop();
    // Every record of the client's agent is about the client (its health records name the
    // agent itself).
    assert!(rec_c
        .iter()
        .filter(|r| r["type"] != "health")
        .all(|r| r["pid"] == client_pid_of(&summary)));
    let mut written = tagged("e2e-client", rec_c);
    written.extend(tagged("e2e-server", rec_s));
    assert_stored_exactly_once(&store, &written);
    let session_id = summary["session_id"].as_str().expect("client session id");
    let row = merged_session(&r2, session_id);
    let agents: Vec<&str> = row["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["agent_id"].as_str())
        .collect();
    assert!(
        agents.contains(&"e2e-client") && agents.contains(&"e2e-server"),
        "{row}"
    );
    r2.stop();
}

fn client_pid_of(summary: &Value) -> Value {
    summary["pid"].clone()
}
