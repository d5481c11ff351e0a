//! The connection table with hand-built kernel events: TLS connections whose socket is learned
//! late, gaps, duplicates.

use super::*;
use crate::mcp::McpConfig;

const REQ: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 58\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{}}";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}";

fn tls_conn() -> ConnIdent {
    ConnIdent {
        pid: 4242,
        fd: mcpwarden_common::conn::NO_FD,
        start_ns: 100,
    }
}

fn table() -> ConnTable {
    ConnTable::new(McpTracker::new(McpConfig::default()), Limits::default(), 16)
}

fn open(conn: ConnIdent) -> KernelEvent {
    KernelEvent::Open {
        conn,
        ts_ns: 1_000,
        local: None,
        remote: None,
        connector: None,
        comm: "client".into(),
        tls: true,
        sock_fd: None,
        proc_tuple: None,
    }
}

fn data(conn: ConnIdent, dir: Direction, pos: u64, bytes: &[u8], ts_ns: u64) -> KernelEvent {
    KernelEvent::Data {
        conn,
        tid: 1,
        ts_ns,
        direction: dir,
        pos,
        syscall_len: bytes.len() as u32,
        truncated: false,
        sock_fd: None,
        bytes: bytes.to_vec(),
    }
}

fn messages(out: &[Record]) -> Vec<serde_json::Value> {
    out.iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter(|v| v["type"] == "message")
        .collect()
}

#[test]
fn tls_data_waits_for_its_socket_and_then_carries_the_real_tuple() {
    let mut t = table();
    let mut out = Vec::new();
    let c = tls_conn();
    t.on_event(open(c), &mut out);
    t.on_event(data(c, Direction::Egress, 0, REQ, 2_000), &mut out);
    assert!(messages(&out).is_empty(), "held until the tie: {out:?}");
    t.on_event(
        KernelEvent::TlsTie {
            conn: c,
            local: Some("127.0.0.1:40000".parse().unwrap()),
            remote: Some("127.0.0.1:8443".parse().unwrap()),
            connector: Some(true),
            sock_fd: 9,
            proc_tuple: None,
        },
        &mut out,
    );
    t.on_event(data(c, Direction::Ingress, 0, RESP, 5_000), &mut out);
    let m = messages(&out);
    assert_eq!(m.len(), 2, "{m:?}");
    for r in &m {
        assert_eq!(r["local"], "127.0.0.1:40000");
        assert_eq!(r["remote"], "127.0.0.1:8443");
        assert_eq!(r["side"], "client");
        assert_eq!(r["conn_id"], "4242:tls:100");
    }
    assert_eq!(m[0]["kind"], "request");
    assert_eq!(m[1]["kind"], "response");
    assert_eq!(m[1]["latency_ns"], 3_000);
    assert_eq!(t.stats.tls_ties, 1);
}

#[test]
fn tls_data_whose_socket_never_comes_is_released_after_the_wait_without_a_tuple() {
    let mut t = table();
    let mut out = Vec::new();
    let c = tls_conn();
    t.on_event(open(c), &mut out);
    t.on_event(data(c, Direction::Egress, 0, REQ, 2_000), &mut out);
    t.on_tick(500_000_000, &mut out);
    assert!(messages(&out).is_empty(), "still within the wait");
    t.on_tick(1_000_001_000, &mut out);
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{out:?}");
    assert_eq!(m[0]["local"], "");
    assert_eq!(t.stats.tls_untied, 1);
}

#[test]
fn a_gap_is_counted_and_the_next_message_still_decodes() {
    let mut t = table();
    let mut out = Vec::new();
    let c = ConnIdent {
        pid: 1,
        fd: 5,
        start_ns: 10,
    };
    t.on_event(data(c, Direction::Egress, 0, &REQ[..20], 1), &mut out);
    // 30 bytes lost, then a whole new request.
    t.on_event(data(c, Direction::Egress, 50, REQ, 2), &mut out);
    assert_eq!(t.stats.gaps, 1);
    assert_eq!(t.stats.gap_bytes, 30);
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{out:?}");
    assert_eq!(m[0]["method"], "tools/call");
}

#[test]
fn an_answer_whose_middle_the_capture_lost_is_reported_paired_and_marked_cut() {
    let mut t = table();
    let mut out = Vec::new();
    let c = ConnIdent {
        pid: 1,
        fd: 5,
        start_ns: 10,
    };
    t.on_event(data(c, Direction::Egress, 0, REQ, 1_000), &mut out);
    // A 600 000-byte result: the first 1000 bytes arrive, the next 500 000 are lost (a write
    // above the capture limit), then the rest.
    let text = "a".repeat(600_000);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#
    );
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let wire = [head.as_bytes(), body.as_bytes()].concat();
    let cut = head.len() + 1000;
    t.on_event(
        data(c, Direction::Ingress, 0, &wire[..cut], 4_000),
        &mut out,
    );
    let rest = cut + 500_000;
    t.on_event(
        data(c, Direction::Ingress, rest as u64, &wire[rest..], 9_000),
        &mut out,
    );
    let m = messages(&out);
    assert_eq!(m.len(), 2, "{out:?}");
    let answer = &m[1];
    assert_eq!(answer["kind"], "response");
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["method"], "tools/call");
    assert_eq!(answer["latency_ns"], 8_000);
    assert_eq!(answer["truncated"], true);
    assert_eq!(answer["payload_bytes"], body.len());
    assert_eq!(answer["capture_lost_bytes"], 500_000);
    assert!(answer.get("result").is_none(), "{answer}");
    assert_eq!(t.stats.gap_bytes, 500_000);
    assert_eq!(t.tracker().stats().partial_messages, 1);
}

#[test]
fn a_tail_the_capture_lost_shows_at_close_and_its_message_is_reported_cut() {
    let mut t = table();
    let mut out = Vec::new();
    let c = ConnIdent {
        pid: 1,
        fd: 5,
        start_ns: 10,
    };
    t.on_event(data(c, Direction::Egress, 0, REQ, 1_000), &mut out);
    // The answer's last 3 bytes never came; the close says how many there were.
    let cut = RESP.len() - 3;
    t.on_event(
        data(c, Direction::Ingress, 0, &RESP[..cut], 4_000),
        &mut out,
    );
    assert_eq!(messages(&out).len(), 1, "the answer waits for its end");
    t.on_event(
        KernelEvent::Close {
            conn: c,
            ts_ns: 6_000,
            egress_bytes: REQ.len() as u64,
            ingress_bytes: RESP.len() as u64,
        },
        &mut out,
    );
    let m = messages(&out);
    assert_eq!(m.len(), 2, "{out:?}");
    assert_eq!(m[1]["kind"], "response");
    assert_eq!(m[1]["id"], 7);
    assert_eq!(m[1]["method"], "tools/call");
    assert_eq!(m[1]["truncated"], true);
    assert_eq!(m[1]["payload_bytes"], 36);
    assert_eq!(m[1]["capture_lost_bytes"], 3);
    assert_eq!((t.stats.gaps, t.stats.gap_bytes), (1, 3));
}

#[test]
fn a_cut_request_whose_id_came_last_is_named_by_its_answer() {
    let mut t = table();
    let mut out = Vec::new();
    let c = ConnIdent {
        pid: 1,
        fd: 5,
        start_ns: 10,
    };
    // node's order: method, params, jsonrpc, id last; the capture loses 300 000 bytes of
    // the argument.
    let blob = "b".repeat(400_000);
    let body = format!(
        r#"{{"method":"tools/call","params":{{"name":"upload","arguments":{{"blob":"{blob}"}}}},"jsonrpc":"2.0","id":2}}"#
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let wire = [head.as_bytes(), body.as_bytes()].concat();
    let cut = head.len() + 1000;
    t.on_event(data(c, Direction::Egress, 0, &wire[..cut], 1_000), &mut out);
    let rest = cut + 300_000;
    t.on_event(
        data(c, Direction::Egress, rest as u64, &wire[rest..], 2_000),
        &mut out,
    );
    assert!(messages(&out).is_empty(), "waits for its id: {out:?}");
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":2}";
    t.on_event(data(c, Direction::Ingress, 0, resp, 9_000), &mut out);
    let m = messages(&out);
    assert_eq!(m.len(), 2, "{out:?}");
    assert_eq!(
        (&m[0]["kind"], &m[0]["id"], &m[0]["method"], &m[0]["ts_ns"]),
        (
            &serde_json::json!("request"),
            &serde_json::json!(2),
            &serde_json::json!("tools/call"),
            &serde_json::json!(2_000)
        )
    );
    assert_eq!(m[0]["truncated"], true);
    assert_eq!(m[0]["payload_bytes"], body.len());
    assert_eq!(m[0]["capture_lost_bytes"], 300_000);
    assert_eq!(
        (
            &m[1]["kind"],
            &m[1]["id"],
            &m[1]["method"],
            &m[1]["latency_ns"]
        ),
        (
            &serde_json::json!("response"),
            &serde_json::json!(2),
            &serde_json::json!("tools/call"),
            &serde_json::json!(7_000)
        )
    );
    assert_eq!(t.tracker().stats().partial_messages, 1);
    assert_eq!(t.tracker().stats().partial_unreadable, 0);
}

#[test]
fn bytes_delivered_twice_are_trimmed_and_counted() {
    let mut t = table();
    let mut out = Vec::new();
    let c = ConnIdent {
        pid: 1,
        fd: 5,
        start_ns: 10,
    };
    t.on_event(data(c, Direction::Egress, 0, &REQ[..40], 1), &mut out);
    t.on_event(data(c, Direction::Egress, 30, &REQ[30..], 2), &mut out);
    assert_eq!(t.stats.duplicate_bytes, 10);
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{out:?}");
    assert_eq!(m[0]["id"], 7);
}

#[test]
fn both_ends_on_this_host_name_each_other_as_peers() {
    let mut t = table();
    let mut out = Vec::new();
    let client = ConnIdent {
        pid: 10,
        fd: 5,
        start_ns: 1,
    };
    let server = ConnIdent {
        pid: 20,
        fd: 9,
        start_ns: 2,
    };
    let a: std::net::SocketAddr = ([127, 0, 0, 1], 40000).into();
    let b: std::net::SocketAddr = ([127, 0, 0, 1], 8000).into();
    for (conn, local, remote, connector, comm) in [
        (client, a, b, true, "agent-client"),
        (server, b, a, false, "mcp-server"),
    ] {
        t.on_event(
            KernelEvent::Open {
                conn,
                ts_ns: 10,
                local: Some(local),
                remote: Some(remote),
                connector: Some(connector),
                comm: comm.into(),
                tls: false,
                sock_fd: None,
                proc_tuple: None,
            },
            &mut out,
        );
    }
    t.on_event(data(client, Direction::Egress, 0, REQ, 20), &mut out);
    t.on_event(data(server, Direction::Ingress, 0, REQ, 21), &mut out);
    let m = messages(&out);
    assert_eq!(m.len(), 2);
    assert_eq!(
        (&m[0]["pid"], &m[0]["peer_pid"]),
        (&serde_json::json!(10), &serde_json::json!(20))
    );
    assert_eq!(m[0]["peer_comm"], serde_json::json!("mcp-server"));
    assert_eq!(
        (&m[1]["pid"], &m[1]["peer_pid"]),
        (&serde_json::json!(20), &serde_json::json!(10))
    );
    // Once the server's end is gone, the client's records name no peer.
    t.on_event(
        KernelEvent::Close {
            conn: server,
            ts_ns: 30,
            egress_bytes: 0,
            ingress_bytes: 0,
        },
        &mut out,
    );
    out.clear();
    t.on_event(data(client, Direction::Ingress, 0, RESP, 40), &mut out);
    let m = messages(&out);
    assert_eq!(m[0].get("peer_pid"), None);
}

fn plain(pid: u32, fd: u32) -> ConnIdent {
    ConnIdent {
        pid,
        fd,
        start_ns: 1,
    }
}

/// A plaintext open with a 4-tuple of its own (same-tuple opens of one process are
/// duplicate fds of one socket).
fn open_plain(conn: ConnIdent, ts_ns: u64) -> KernelEvent {
    let port = 1000 + conn.fd as u16 + 100 * conn.pid as u16;
    KernelEvent::Open {
        conn,
        ts_ns,
        local: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        remote: Some("127.0.0.1:2000".parse().unwrap()),
        connector: Some(true),
        comm: "c".into(),
        tls: false,
        sock_fd: Some(conn.fd),
        proc_tuple: None,
    }
}

#[test]
fn a_full_table_evicts_the_least_recently_active_connection_first() {
    let mut t = ConnTable::new(McpTracker::new(McpConfig::default()), Limits::default(), 3);
    let mut out = Vec::new();
    let (a, b, c, d) = (plain(1, 3), plain(1, 4), plain(2, 3), plain(3, 3));
    t.on_event(open_plain(a, 10), &mut out);
    t.on_event(open_plain(b, 20), &mut out);
    t.on_event(open_plain(c, 30), &mut out);
    assert_eq!(t.eviction_order(), vec![a, b, c]);
    // a becomes the most recently active.
    t.on_event(data(a, Direction::Egress, 0, b"POST", 40), &mut out);
    assert_eq!(t.eviction_order(), vec![b, c, a]);
    t.on_event(open_plain(d, 50), &mut out);
    assert_eq!(
        t.eviction_order(),
        vec![c, a, d],
        "b was the least recently active"
    );
    assert_eq!(t.stats.conns_evicted, 1);
    assert!(!t.contains(&b));
    // A close leaves the index with the connection.
    t.on_event(
        KernelEvent::Close {
            conn: a,
            ts_ns: 60,
            egress_bytes: 4,
            ingress_bytes: 0,
        },
        &mut out,
    );
    assert_eq!(t.eviction_order(), vec![c, d]);
    assert_eq!(t.len(), 2);
}

#[test]
fn the_table_reads_no_proc_a_tuple_resolved_at_capture_time_travels_in_the_event() {
    let mut t = table();
    let mut out = Vec::new();
    // A pid that cannot exist (above PID_MAX_LIMIT): /proc has nothing to say about it.
    let conn = plain(4_194_305, 5);
    t.on_event(
        KernelEvent::Open {
            conn,
            ts_ns: 1_000,
            local: None,
            remote: None,
            connector: None,
            comm: "old".into(),
            tls: false,
            sock_fd: Some(5),
            proc_tuple: Some((
                "127.0.0.1:8000".parse().unwrap(),
                "127.0.0.1:50000".parse().unwrap(),
            )),
        },
        &mut out,
    );
    t.on_event(data(conn, Direction::Ingress, 0, REQ, 2_000), &mut out);
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["local"], "127.0.0.1:8000");
    assert_eq!(m[0]["remote"], "127.0.0.1:50000");
}

/// Eviction cost with a full table (`cargo test -p mcpwarden --release --lib
/// eviction_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn eviction_cost_with_a_full_table() {
    let n = 65_536u32;
    let mut t = ConnTable::new(
        McpTracker::new(McpConfig::default()),
        Limits::default(),
        n as usize,
    );
    let mut out = Vec::new();
    for i in 0..n {
        t.on_event(open_plain(plain(i, 3), u64::from(i)), &mut out);
    }
    let inserts = 20_000u32;
    let t0 = std::time::Instant::now();
    for i in 0..inserts {
        t.on_event(open_plain(plain(n + i, 3), u64::from(n + i)), &mut out);
    }
    let per = t0.elapsed() / inserts;
    eprintln!("eviction: {per:?} per insert into a full table of {n}");
    assert_eq!(t.stats.conns_evicted, u64::from(inserts));
}

fn plain_open(fd: u32, start_ns: u64) -> (ConnIdent, KernelEvent) {
    let conn = ConnIdent {
        pid: 4343,
        fd,
        start_ns,
    };
    let ev = KernelEvent::Open {
        conn,
        ts_ns: start_ns,
        local: Some("127.0.0.1:8000".parse().unwrap()),
        remote: Some("127.0.0.1:40000".parse().unwrap()),
        connector: Some(false),
        comm: "server".into(),
        tls: false,
        sock_fd: Some(fd),
        proc_tuple: None,
    };
    (conn, ev)
}

fn close_of(conn: ConnIdent, ts_ns: u64) -> KernelEvent {
    KernelEvent::Close {
        conn,
        ts_ns,
        egress_bytes: 0,
        ingress_bytes: 0,
    }
}

/// A server reads requests through one fd and answers through a `dup` of it: the duplicate's
/// stream joins the connection, so each answer pairs with its request.
#[test]
fn answers_written_through_a_duplicated_fd_pair_with_the_requests_read_through_the_first() {
    let mut t = table();
    let mut out = Vec::new();
    let (reader, open_reader) = plain_open(5, 1_000);
    let (writer, open_writer) = plain_open(6, 2_000);
    t.on_event(open_reader, &mut out);
    t.on_event(data(reader, Direction::Ingress, 0, REQ, 3_000), &mut out);
    t.on_event(open_writer, &mut out);
    t.on_event(data(writer, Direction::Egress, 0, RESP, 4_000), &mut out);
    // The joined fd is known (no open resolved from /proc for it), and a repeated open of it
    // joins once.
    assert!(t.contains(&writer));
    t.on_event(plain_open(6, 2_000).1, &mut out);
    let req2 = String::from_utf8_lossy(REQ).replace("\"id\":7", "\"id\":8");
    let resp2 = String::from_utf8_lossy(RESP).replace("\"id\":7", "\"id\":8");
    t.on_event(
        data(
            reader,
            Direction::Ingress,
            REQ.len() as u64,
            req2.as_bytes(),
            5_000,
        ),
        &mut out,
    );
    t.on_event(
        data(
            writer,
            Direction::Egress,
            RESP.len() as u64,
            resp2.as_bytes(),
            6_000,
        ),
        &mut out,
    );
    let m = messages(&out);
    let got: Vec<(String, String, String)> = m
        .iter()
        .map(|r| {
            (
                r["conn_id"].to_string(),
                r["kind"].to_string(),
                r["method"].to_string(),
            )
        })
        .collect();
    let conn_id = format!("\"{reader}\"");
    let want: Vec<(String, String, String)> = ["request", "response", "request", "response"]
        .iter()
        .map(|k| {
            (
                conn_id.clone(),
                format!("\"{k}\""),
                "\"tools/call\"".to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "{m:#?}");
    assert_eq!(t.stats.dup_fds_joined, 1);
    assert_eq!(t.stats.unmatched_responses, 0);
    // The duplicate closing first leaves the connection; then the connection closes.
    t.on_event(close_of(writer, 7_000), &mut out);
    assert_eq!(t.stats.conns_closed, 0);
    t.on_event(close_of(reader, 7_001), &mut out);
    assert_eq!(t.stats.conns_closed, 1);
    assert_eq!(t.stats.gaps, 0);
}

/// Both fds writing one direction cannot be ordered: the second fd's bytes are counted, and
/// the first fd's stream stays intact.
#[test]
fn a_direction_written_through_two_fds_keeps_the_first_and_counts_the_other() {
    let mut t = table();
    let mut out = Vec::new();
    let (a, open_a) = plain_open(5, 1_000);
    let (b, open_b) = plain_open(6, 2_000);
    t.on_event(open_a, &mut out);
    t.on_event(open_b, &mut out);
    t.on_event(data(b, Direction::Egress, 0, RESP, 3_000), &mut out);
    t.on_event(data(a, Direction::Egress, 0, RESP, 4_000), &mut out);
    assert_eq!(t.stats.dup_stream_conflicts, 1);
    assert_eq!(t.stats.dup_fds_joined, 1);
}

/// A request whose body (`size` bytes of a JSON-RPC call) is over the body limit.
fn big_request(id: u64, size: usize) -> Vec<u8> {
    let start = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x","params":{{"p":""#);
    let end = r#""}}"#;
    let mut body = start.into_bytes();
    body.resize(size - end.len(), b'a');
    body.extend_from_slice(end.as_bytes());
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    [head.as_bytes(), &body].concat()
}

fn plain_conn() -> ConnIdent {
    ConnIdent {
        pid: 77,
        fd: 5,
        start_ns: 300,
    }
}

#[test]
fn a_body_over_the_limit_is_named_for_skipping_once_its_head_is_kept_and_the_hole_is_no_gap() {
    let mut t = table();
    t.request_body_skips();
    let mut out = Vec::new();
    let c = plain_conn();
    let size = 20 << 20;
    let wire = big_request(1, size);
    let head_len = wire.len() - size;
    // The head and 32 KiB of body: the kept head is not complete, nothing to skip yet.
    let a = head_len + (32 << 10);
    t.on_event(data(c, Direction::Egress, 0, &wire[..a], 2_000), &mut out);
    assert_eq!(t.take_body_skips(), vec![]);
    // 64 KiB more: the kept head is complete; the rest of the body is named.
    let b = a + (64 << 10);
    t.on_event(
        data(c, Direction::Egress, a as u64, &wire[a..b], 3_000),
        &mut out,
    );
    let end = wire.len() as u64;
    assert_eq!(
        t.take_body_skips(),
        vec![BodySkipChange::Start {
            conn: c,
            dir: Direction::Egress,
            from: b as u64,
            until: end
        }]
    );
    // The kernel left out all but the body's last 100 bytes, then the next request came.
    let last = wire.len() - 100;
    let mut tail = wire[last..].to_vec();
    tail.extend_from_slice(REQ);
    t.on_event(
        data(c, Direction::Egress, last as u64, &tail, 9_000),
        &mut out,
    );
    assert_eq!(
        t.take_body_skips(),
        vec![BodySkipChange::End {
            conn: c,
            dir: Direction::Egress
        }]
    );
    assert_eq!((t.stats.gaps, t.stats.gap_bytes), (0, 0));
    assert_eq!(t.stats.body_skipped_bytes, (last - b) as u64);
    let m = messages(&out);
    let got: Vec<_> = m
        .iter()
        .map(|r| {
            (
                r["id"].clone(),
                r["method"].clone(),
                r["truncated"].clone(),
                r["payload_bytes"].clone(),
                r.get("capture_lost_bytes").cloned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1.into(), "x".into(), true.into(), size.into(), None),
            (
                7.into(),
                "tools/call".into(),
                serde_json::Value::Null,
                2.into(),
                None
            ),
        ],
        "{m:?}"
    );
}

#[test]
fn a_hole_outside_the_named_range_is_still_a_gap_and_a_closed_connection_ends_its_skip() {
    let mut t = table();
    t.request_body_skips();
    let mut out = Vec::new();
    let c = plain_conn();
    let size = 10 << 20;
    let wire = big_request(2, size);
    let a = wire.len() - size + (80 << 10);
    t.on_event(data(c, Direction::Egress, 0, &wire[..a], 2_000), &mut out);
    let skips = t.take_body_skips();
    assert_eq!(skips.len(), 1, "{skips:?}");
    // Bytes missing beyond the body's end: not what was asked for.
    let beyond = wire.len() as u64 + 10;
    t.on_event(data(c, Direction::Egress, beyond, REQ, 5_000), &mut out);
    assert_eq!((t.stats.gaps, t.stats.body_skipped_bytes), (1, 0));
    // The stream moved past the range: it ends.
    assert_eq!(
        t.take_body_skips(),
        vec![BodySkipChange::End {
            conn: c,
            dir: Direction::Egress
        }]
    );
    // A second big body, then the connection closes inside its range: the tail is skipped
    // bytes, not loss, and the kernel is told to forget the range.
    let base = beyond + REQ.len() as u64;
    let wire2 = big_request(3, size);
    let a2 = wire2.len() - size + (80 << 10);
    t.on_event(
        data(c, Direction::Egress, base, &wire2[..a2], 6_000),
        &mut out,
    );
    assert_eq!(t.take_body_skips().len(), 1);
    t.on_event(
        KernelEvent::Close {
            conn: c,
            ts_ns: 7_000,
            egress_bytes: base + wire2.len() as u64,
            ingress_bytes: 0,
        },
        &mut out,
    );
    assert_eq!(
        t.take_body_skips(),
        vec![BodySkipChange::End {
            conn: c,
            dir: Direction::Egress
        }]
    );
    assert_eq!(t.stats.gaps, 1);
    assert_eq!(t.stats.body_skipped_bytes, (wire2.len() - a2) as u64);
    // Request 2, cut by the real gap, is not reported (as before body skipping).
    let ids: Vec<_> = messages(&out).iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        ids,
        vec![serde_json::json!(7), serde_json::json!(3)],
        "{out:?}"
    );
}

#[test]
fn without_the_kernel_asked_the_table_collects_nothing() {
    let mut t = table();
    let mut out = Vec::new();
    let wire = big_request(1, 10 << 20);
    t.on_event(
        data(plain_conn(), Direction::Egress, 0, &wire, 2_000),
        &mut out,
    );
    assert_eq!(t.take_body_skips(), vec![]);
    assert_eq!(messages(&out).len(), 1);
}

const NO_EXPLODE: &str =
    "rules:\n  - id: no-explode\n    action: deny\n    match: { tool: explode }\n";

fn pid_conn(pid: u32) -> ConnIdent {
    ConnIdent {
        pid,
        fd: 5,
        start_ns: 10,
    }
}

/// A 9 MB `explode` call whose tool name comes first.
fn explode_post() -> Vec<u8> {
    oversized_post(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"explode","arguments":{"pad":""#,
        r#""}}}"#,
    )
}

/// A table whose tracker judges with the real policy `text`.
fn judged_table(text: &str) -> ConnTable {
    let policy = match crate::policy::parse(text, std::path::Path::new("/t/policy.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let mut t = table();
    t.tracker_mut()
        .set_policy(Box::new(crate::policy::Judge::new(policy)));
    t
}

fn verdicts(out: &[Record]) -> Vec<serde_json::Value> {
    out.iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter(|v| v["type"] == "verdict")
        .collect()
}

fn reason_kinds(v: &serde_json::Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["kind"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A POST of `body`: a JSON-RPC prefix, padding to 9 MB (over the 8 MiB body limit, so only
/// its first 64 KiB are kept), and `tail`.
fn oversized_post(prefix: &str, tail: &str) -> Vec<u8> {
    let pad = "a".repeat(9_000_000);
    let body = format!("{prefix}{pad}{tail}");
    format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_request_too_large_to_read_is_still_judged_by_its_tool_name() {
    let mut t = judged_table(NO_EXPLODE);
    let mut out = Vec::new();
    let c = pid_conn(1);
    let post = explode_post();
    t.on_event(data(c, Direction::Egress, 0, &post, 1_000), &mut out);
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "{out:?}");
    assert_eq!(v[0]["action"], "deny");
    assert_eq!(v[0]["rule_id"], "no-explode");
    assert_eq!(v[0]["name"], "explode");
    assert_eq!(v[0]["id"], 9);
    assert_eq!(
        reason_kinds(&v[0]),
        ["truncated_request", "body_too_large", "unverifiable_tool"],
        "no tools/list was seen"
    );
    let m = messages(&out);
    assert_eq!(
        m[0]["name"], "explode",
        "the record names the tool too: {m:?}"
    );
    assert_eq!(m[0]["truncated"], true);
    assert_eq!(t.tracker().stats().cut_judged, 1);
}

#[test]
fn a_cut_request_whose_name_and_id_come_later_is_judged_before_its_answer() {
    // Node writes `id` last; the tool name here comes after the padding.
    let mut t = judged_table("checks: { truncated_request: deny }\n");
    let mut out = Vec::new();
    let c = pid_conn(1);
    let post = oversized_post(
        r#"{"method":"tools/call","params":{"arguments":{"pad":""#,
        r#""},"name":"explode"},"jsonrpc":"2.0","id":3}"#,
    );
    t.on_event(data(c, Direction::Egress, 0, &post, 1_000), &mut out);
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "judged before any answer: {out:?}");
    assert_eq!(v[0]["action"], "deny");
    assert_eq!(v[0]["method"], "tools/call");
    assert_eq!(v[0]["id"], serde_json::Value::Null);
    assert_eq!(
        reason_kinds(&v[0]),
        ["truncated_request", "body_too_large", "unknown_tool"]
    );
    assert!(
        messages(&out).is_empty(),
        "the message waits for its answer's id"
    );

    // A body whose first bytes say nothing readable is judged too.
    let mut out = Vec::new();
    let c = pid_conn(2);
    t.on_event(
        data(c, Direction::Egress, 0, &oversized_post("[", "]"), 2_000),
        &mut out,
    );
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "{out:?}");
    assert_eq!(v[0]["action"], "deny");
    assert_eq!(v[0]["method"], "");
    assert_eq!(reason_kinds(&v[0]), ["truncated_request", "body_too_large"]);
    assert_eq!(
        v[0]["request"],
        serde_json::json!({"body_bytes": 9_000_002, "truncated": true}),
        "its size, not its bytes"
    );
    assert_eq!(t.tracker().stats().cut_judged, 2);
}

#[test]
fn a_request_too_large_to_read_is_judged_at_its_first_64_kib_not_at_its_end() {
    let mut t = judged_table(NO_EXPLODE);
    let mut out = Vec::new();
    let c = pid_conn(1);
    let post = explode_post();
    let (first, rest) = post.split_at(100_000);
    t.on_event(data(c, Direction::Egress, 0, first, 1_000), &mut out);
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "judged while 8.9 MB are still to come: {out:?}");
    assert_eq!(
        (&v[0]["action"], &v[0]["rule_id"]),
        (&serde_json::json!("deny"), &serde_json::json!("no-explode"))
    );
    assert_eq!(v[0]["id"], 9);
    assert!(messages(&out).is_empty(), "reported at its end");
    t.on_event(
        data(c, Direction::Egress, first.len() as u64, rest, 2_000),
        &mut out,
    );
    assert_eq!(
        verdicts(&out).len(),
        1,
        "not judged twice: {:?}",
        verdicts(&out)
    );
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{out:?}");
    assert_eq!(
        (&m[0]["name"], &m[0]["truncated"]),
        (&serde_json::json!("explode"), &serde_json::json!(true))
    );
    assert_eq!(t.tracker().stats().cut_judged, 1);
}

#[test]
fn a_held_write_of_a_request_too_large_to_read_is_judged_by_the_bytes_it_carries() {
    let mut t = judged_table(NO_EXPLODE);
    let mut out = Vec::new();
    let c = pid_conn(1);
    let post = explode_post();
    // The process is stopped at a write of 2 KB: nothing more comes before the decision.
    t.on_held_event(
        data(c, Direction::Egress, 0, &post[..2_000], 1_000),
        &mut out,
    );
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "{out:?}");
    assert_eq!(v[0]["rule_id"], "no-explode");
    // A request within the limit is judged as usual, once, at its end.
    let mut out = Vec::new();
    let c = pid_conn(2);
    t.on_held_event(data(c, Direction::Egress, 0, REQ, 1_000), &mut out);
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "{out:?}");
    assert_eq!(reason_kinds(&v[0]), ["unknown_tool"], "not cut: {v:?}");
    assert_eq!(t.tracker().stats().cut_judged, 1);
}

#[test]
fn addresses_are_written_as_std_writes_them() {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    let v4 = [
        (Ipv4Addr::new(0, 0, 0, 0), 0),
        (Ipv4Addr::new(127, 0, 0, 1), 8080),
        (Ipv4Addr::new(10, 20, 100, 9), 443),
        (Ipv4Addr::new(255, 255, 255, 255), 65535),
        (Ipv4Addr::new(1, 22, 203, 40), 5),
    ];
    for (ip, port) in v4 {
        let a = SocketAddr::from((ip, port));
        assert_eq!(super::fmt_addr(Some(a)), a.to_string());
    }
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 9000));
    assert_eq!(super::fmt_addr(Some(v6)), "[::1]:9000");
    assert_eq!(super::fmt_addr(None), "");
}
