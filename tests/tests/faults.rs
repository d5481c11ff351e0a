//! Faults (issue 18, item 4): the agent SIGKILLed and restarted mid-session, a ring buffer
//! overloaded by a burst, and a traced process SIGKILLed in the middle of a message.
//!
//! Counters are host-wide: these tests assume no other HTTP traffic on the host while they run
//! (as under `cargo xtask test`, one test at a time).

use std::time::{Duration, Instant};

use mcpwarden_tests::agent::{parse_json_lines, Agent};
use mcpwarden_tests::conversation::assert_peers_behaved;
use mcpwarden_tests::hostile::{assert_rss_bounded, counter, HostileSender, HostileSink};
use mcpwarden_tests::records::{messages_of, outline, session_ends_of, str_field, u64_field};
use mcpwarden_tests::{free_port, ClientOptions, PyServer, SdkClient};
use serde_json::Value;

/// Program names the agent loads in its default capture mode (as in agent_lifecycle.rs).
const OUR_PROGRAMS: &[&str] = &[
    "sock_send_capture",
    "sock_recv_capture",
    "inet_sock_set_state",
    "sched_process_exec",
];

fn ours_loaded() -> Vec<String> {
    let names: Vec<String> = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .collect();
    OUR_PROGRAMS
        .iter()
        .map(|n| &n[..n.len().min(15)])
        .filter(|n| names.iter().any(|l| l == n))
        .map(str::to_string)
        .collect()
}

/// The complete lines a killed agent left (a SIGKILL may cut the last one).
fn complete_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    parse_json_lines(complete, &path.display().to_string())
}

#[test]
fn an_agent_killed_and_restarted_mid_session_adopts_its_connections_and_marks_the_gap() {
    let server = PyServer::start(free_port());
    let first = Agent::start(&[]);
    let mut client = SdkClient::spawn(
        &server.url(),
        &ClientOptions {
            pause_after_initialize: true,
            ..ClientOptions::default()
        },
    );
    client.wait_initialized();
    let client_pid = client.pid();

    // SIGKILL: no drain, no session_end, no final health record.
    let first_pid = first.pid() as libc::pid_t;
    let first_output = first.dir().join("records.jsonl");
    // SAFETY: kill(2) on the agent child, which the guard in `first` has not reaped yet.
    assert_eq!(unsafe { libc::kill(first_pid, libc::SIGKILL) }, 0);
    let t0 = Instant::now();
    while !ours_loaded().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "programs still loaded 10 s after the agent was SIGKILLed: {:?}",
            ours_loaded()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = complete_lines(&first_output);
    drop(first);

    let second = Agent::start(&["--health-interval", "1"]);
    client.resume();
    let summary = client.finish();
    let session_id = assert_peers_behaved(&summary, &server).to_string();
    let records = second.stop();
    assert_rss_bounded(&records);
    // The killed agent had seen the initialize exchange, and never ended the session.
    let first_ends: Vec<&Value> = before
        .iter()
        .filter(|r| r["type"] == "session_end" && r["session_id"] == session_id.as_str())
        .collect();
    assert!(
        first_ends.is_empty(),
        "a SIGKILLed agent writes no session_end for the session: {first_ends:?}"
    );

    // Capture resumed: every later call, from both sides, in the session the client opened
    // before the restart, and marked as joined mid-stream.
    let want: Vec<(String, String)> = [
        ("request", "tools/list"),
        ("response", "tools/list"),
        ("request", "tools/call"),
        ("response", "tools/call"),
        ("request", "tools/call"),
        ("response", "tools/call"),
        ("request", "resources/read"),
        ("response", "resources/read"),
        ("request", "prompts/get"),
        ("response", "prompts/get"),
    ]
    .iter()
    .map(|(k, m)| (k.to_string(), m.to_string()))
    .collect();
    for (side, pid) in [("client", client_pid), ("server", server.pid())] {
        let got_records = messages_of(&records, pid);
        let got: Vec<(String, String)> = got_records
            .iter()
            .map(|m| {
                assert_eq!(
                    m["session_id"],
                    session_id.as_str(),
                    "{side}: session of {m}"
                );
                (
                    str_field(m, "kind").to_string(),
                    str_field(m, "method").to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "{side}:\n{}", outline(&got_records));
        let ends = session_ends_of(&records, pid, &session_id);
        assert_eq!(ends.len(), 1, "{side}: one session_end");
        let end = ends[0];
        assert_eq!(
            end["joined_mid_stream"], true,
            "{side}: the gap is marked: {end}"
        );
        assert_eq!(
            str_field(end, "state"),
            "new",
            "{side}: no initialize seen: {end}"
        );
        assert_eq!(str_field(end, "end_reason"), "delete", "{side}: {end}");
        assert_eq!(u64_field(end, "requests"), 5, "{side}: {end}");
        assert_eq!(u64_field(end, "responses"), 5, "{side}: {end}");
    }
    let health = records.last().expect("final health");
    // The counter counts exactly the session_end records that carry the mark (host-wide
    // counters: other sessions on the host may add to both sides alike).
    let marked = records
        .iter()
        .filter(|r| r["type"] == "session_end" && r["joined_mid_stream"] == true)
        .count() as u64;
    assert_eq!(
        counter(health, "mcp", "sessions_joined_mid_stream"),
        marked,
        "{health}"
    );
    eprintln!(
        "restart: conns_adopted {} of conns_opened {}",
        counter(health, "conn", "conns_adopted"),
        counter(health, "conn", "conns_opened")
    );
    assert!(
        counter(health, "conn", "conns_adopted") <= counter(health, "conn", "conns_opened"),
        "{health}"
    );
}

#[test]
fn a_burst_into_a_small_ring_buffer_is_counted_as_loss_never_silently() {
    // Traces only the sink, so the byte count below is exact whatever else runs on the host.
    let sink = HostileSink::start();
    let sink_pid = sink.pid().to_string();
    let agent = Agent::start(&["--ring-bytes", "65536", "--pid", &sink_pid]);
    let sent = HostileSender::spawn("burst", sink.port()).finish();
    let records = agent.stop();
    assert_rss_bounded(&records);
    let health = records.last().expect("final health");
    let requests = u64_field(&sent, "requests");
    assert_eq!(u64_field(&sent, "responses"), requests, "{sent}");
    // Every byte the sink moved (read the requests, wrote the answers) was either carried to
    // userspace or counted lost.
    let moved = u64_field(&sent, "sent_bytes") + u64_field(&sent, "received_bytes");
    let hooks = health["hooks"].as_object().expect("hooks");
    let sum = |suffix: &str| -> u64 {
        hooks
            .iter()
            .filter(|(k, _)| {
                k.ends_with(suffix)
                    && (suffix != "_bytes"
                        || !(k.ends_with("_ring_full_bytes") || k.ends_with("_truncated_bytes")))
            })
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum()
    };
    let carried = sum("_bytes");
    let ring_full = sum("_ring_full_bytes");
    let truncated = sum("_truncated_bytes");
    eprintln!("burst: moved {moved}, carried {carried}, ring_full {ring_full}, truncated {truncated}\n{health}");
    assert_eq!(
        carried + ring_full + truncated,
        moved,
        "bytes carried + lost (per hook) = bytes the peers moved, both ends\n{health}"
    );
    assert_eq!(
        counter(health, "kernel", "ring_full_bytes"),
        ring_full,
        "{health}"
    );
    assert!(
        ring_full > 0,
        "the premise: a 64 KiB ring overflowed\n{health}"
    );
    // What was reported is a subset of what was sent, each request at most once per side.
    {
        let pid = sink.pid();
        let ids: Vec<u64> = messages_of(&records, pid)
            .iter()
            .filter(|m| m["kind"] == "request")
            .map(|m| u64_field(m, "id"))
            .collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ids.len(),
            "pid {pid}: a request reported twice"
        );
        assert!(
            ids.iter().all(|id| (1..=requests).contains(id)),
            "pid {pid}: ids outside 1..={requests}"
        );
        assert!(
            (ids.len() as u64) < requests,
            "pid {pid}: bytes were lost, so fewer than {requests} requests can be whole"
        );
    }
}

#[test]
fn a_traced_process_killed_mid_message_ends_its_session_and_leaks_nothing() {
    let sink = HostileSink::start();
    let sink_pid = sink.pid().to_string();
    // The witness traces only the sink: its counters are exact whatever else runs.
    let witness = Agent::start(&["--pid", &sink_pid, "--health-interval", "1"]);
    let agent = Agent::start(&["--health-interval", "1"]);
    let mut sender = HostileSender::spawn("killed_mid_message", sink.port());
    sender.wait_for_stderr("\"half_sent\":true");
    let sender_pid = sender.pid();
    sender.kill();
    // Let the agent see both ends close and tick at least twice.
    let t0 = Instant::now();
    let output = agent.dir().join("records.jsonl");
    let witness_output = witness.dir().join("records.jsonl");
    loop {
        let ended = complete_lines(&output)
            .iter()
            .filter(|r| {
                r["type"] == "session_end"
                    && [sender_pid, sink.pid()]
                        .iter()
                        .any(|p| r["pid"].as_u64() == Some(u64::from(*p)))
            })
            .count();
        let after_end = complete_lines(&witness_output)
            .iter()
            .skip_while(|r| r["type"] != "session_end")
            .filter(|r| r["type"] == "health")
            .count();
        if ended == 2 && after_end >= 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "want 2 session_end records and a health record after them within 30 s, got {ended}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = agent.stop();
    let witnessed = witness.stop();
    assert_rss_bounded(&records);
    for pid in [sender_pid, sink.pid()] {
        let ends: Vec<&Value> = records
            .iter()
            .filter(|r| r["type"] == "session_end" && r["pid"].as_u64() == Some(u64::from(pid)))
            .collect();
        assert_eq!(ends.len(), 1, "pid {pid}: one session_end: {ends:?}");
        let end = ends[0];
        assert_eq!(str_field(end, "grouping"), "connection", "{end}");
        assert_eq!(str_field(end, "end_reason"), "closed", "{end}");
        assert_eq!(str_field(end, "status"), "ended", "{end}");
        assert_eq!(
            u64_field(end, "requests"),
            1,
            "only initialize was whole: {end}"
        );
        assert_eq!(u64_field(end, "responses"), 1, "{end}");
        let kinds: Vec<(&str, &str)> = messages_of(&records, pid)
            .iter()
            .map(|m| (str_field(m, "kind"), str_field(m, "method")))
            .collect();
        assert_eq!(
            kinds,
            [("request", "initialize"), ("response", "initialize")],
            "pid {pid}"
        );
    }
    // The witness's first health record after the sink's session ended: nothing tracked,
    // nothing pending.
    let after: &Value = witnessed
        .iter()
        .skip_while(|r| r["type"] != "session_end")
        .find(|r| r["type"] == "health")
        .expect("a health record after the session_end records");
    assert_eq!(after["tracked"]["sessions"], 0, "{after}");
    assert_eq!(after["tracked"]["pending"], 0, "{after}");
    let health = witnessed.last().expect("final health");
    // The half request was cut by the close (the sink's side).
    assert_eq!(counter(health, "conn", "http_errors"), 1, "{health}");
    assert_eq!(
        counter(health, "conn", "conns_opened"),
        counter(health, "conn", "conns_closed"),
        "{health}"
    );
}
