//! Load shedding (`mcpwarden_common::conn::SHED_GRACE_BYTES`): a bulk HTTPS download that is
//! not MCP fills a deliberately small ring (2 MiB) while the official Python SDK client
//! makes calls with 150 KB results and arguments on the same host. The download's chunks
//! are shed and counted; the MCP conversation is reported whole, from both ends, with
//! nothing lost to a full ring. (Without shedding, the large messages find the ring full.)
//! The download's `GET`s cannot be MCP, so the kernel would skip their exchanges before
//! shedding had anything to do: the agent runs with `--no-exchange-skip` here, standing for
//! bulk traffic that skipping does not cover (a `POST` upload, or a `GET` asking for an event
//! stream).

use std::process::Command;
use std::time::Duration;

use mcpwarden_tests::peers::finish_client;
use mcpwarden_tests::records::{messages_of, outline};
use mcpwarden_tests::{free_port, test_env, Agent, ChildGuard, PyServer, SelfSignedCert};
use serde_json::Value;

/// Calls per tool (`blob` and `measure`), each moving `SIZE` characters.
const CALLS: usize = 12;
const SIZE: usize = 150_000;

#[test]
fn an_mcp_session_keeps_every_message_while_a_bulk_download_fills_the_ring() {
    let env = test_env();
    let cert = SelfSignedCert::generate();
    let agent = Agent::start(&["--ring-bytes", "2097152", "--no-exchange-skip"]);
    let server = PyServer::start_with_flags(free_port(), &["--large-tools"]);
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let bench = env
        .peers_dir
        .parent()
        .expect("tests/peers has a parent")
        .join("bench");
    // 1 MiB bodies on one keep-alive TLS connection, far longer than the calls below take.
    let mut download = Command::new(&env.python);
    download
        .arg(bench.join("host_tax.py"))
        .args(["download", "100000", "--cert"])
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key);
    let mut bulk = ChildGuard::spawn("bulk download", &mut download, dir.path());
    std::thread::sleep(Duration::from_millis(500));
    let sizes = vec![SIZE.to_string(); CALLS].join(",");
    let mut client = Command::new(&env.python);
    client
        .arg(env.peers_dir.join("python/large_client.py"))
        .arg(server.url())
        .args(["--sizes", &sizes]);
    let shown = format!("{client:?}");
    let mut process = ChildGuard::spawn("SDK client", &mut client, dir.path());
    let client_pid = process.pid();
    let summary = finish_client(&mut process, &shown, client_pid);
    let done = summary["calls"].as_array().map_or(0, |c| {
        c.iter()
            .filter(|c| c["result_len"].as_u64() == Some(SIZE as u64))
            .count()
    });
    assert_eq!(
        done,
        2 * CALLS,
        "the peers themselves must have completed every call: {summary}"
    );
    assert!(
        bulk.wait_timeout(Duration::ZERO).is_none(),
        "the download must still run when the calls end (it lasts far longer)"
    );
    bulk.kill();
    let records = agent.stop();
    let health = records
        .last()
        .filter(|r| r["type"] == "health" && r["reason"] == "stop")
        .unwrap_or_else(|| panic!("no final health record: {:?}", records.last()));
    for (side, pid) in [("client", client_pid), ("server", server.pid())] {
        let messages = messages_of(&records, pid);
        let calls: Vec<&Value> = messages
            .iter()
            .copied()
            .filter(|m| m["kind"] == "request" && m["method"] == "tools/call")
            .collect();
        assert_eq!(
            calls.len(),
            2 * CALLS,
            "{side} (pid {pid}): every tools/call request; records:\n{}",
            outline(&messages)
        );
        for req in calls {
            let answered = messages.iter().any(|m| {
                m["kind"] == "response"
                    && m["id"] == req["id"]
                    && m["latency_ns"].as_u64() > Some(0)
            });
            assert!(
                answered,
                "{side} (pid {pid}): the call {} has a paired response; records:\n{}",
                req["id"],
                outline(&messages)
            );
        }
    }
    // Then why: the download was shed, and nothing went to a full ring.
    let kernel = &health["kernel"];
    assert!(
        kernel["shed_bytes"].as_u64().unwrap_or(0) > 0,
        "the download filled the ring, so its chunks were shed: {kernel}"
    );
    assert_eq!(
        kernel["ring_full_chunks"], 0,
        "nothing was lost to a full ring: {kernel}"
    );
    assert!(
        kernel["mcp_procs_marked"].as_u64().unwrap_or(0) >= 2,
        "the MCP client and server were marked: {kernel}"
    );
}
