//! `mcpwarden run --record FILE` and `mcpwarden replay FILE` of the same run agree: the
//! message records replayed from the recording are the ones the live agent wrote.

use std::process::Command;

use mcpwarden_tests::{free_port, run_py_client, test_env, Agent, PyServer};
use serde_json::Value;

/// Fields only the live agent can know: who the process is, read from `/proc/PID` when the
/// record is written (README, message records: `exe`, `uid`, `cgroup`, `container_id`,
/// `pod_name`, `pod_namespace`); a replay must not read this host's `/proc`
/// (`McpConfig::process_identity`), so it writes none of them. Everything else, the
/// 4-tuples included (recorded at capture time), must be equal.
const LIVE_ONLY: &[&str] = &[
    "exe",
    "uid",
    "cgroup",
    "container_id",
    "pod_name",
    "pod_namespace",
];

fn normalized(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "message")
        .map(|r| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                for k in LIVE_ONLY {
                    o.remove(*k);
                }
            }
            r.to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn replaying_a_recording_gives_the_message_records_of_the_live_run() {
    let env = test_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("events.jsonl");
    let rec = recording.to_str().expect("utf-8 path");
    let agent = Agent::start(&["--record", rec]);
    let server = PyServer::start(free_port());
    let _summary = run_py_client(&server.url());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let live = agent.stop();
    let out = Command::new(&env.agent_bin)
        .arg("replay")
        .arg(&recording)
        .output()
        .expect("cannot run mcpwarden replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = mcpwarden_tests::agent::parse_json_lines(
        &String::from_utf8_lossy(&out.stdout),
        "mcpwarden replay",
    );
    let (live, replayed) = (normalized(&live), normalized(&replayed));
    assert!(!live.is_empty(), "the live run reported no message");
    if live != replayed {
        let only_live: Vec<_> = live.iter().filter(|l| !replayed.contains(l)).collect();
        let only_replay: Vec<_> = replayed.iter().filter(|l| !live.contains(l)).collect();
        panic!(
            "live and replayed message records differ\n--- only live ({}) ---\n{}\n--- only replayed ({}) ---\n{}",
            only_live.len(),
            only_live.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
            only_replay.len(),
            only_replay.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        );
    }
}
