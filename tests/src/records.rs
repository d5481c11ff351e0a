//! Reading the agent's records: selection by pid and session, typed field access that
//! panics with the record, and compact renderings for failure messages.

use serde_json::Value;

/// `type == "message"` records of process `pid`, ordered by `ts_ns` (stable for equal times).
pub fn messages_of(records: &[Value], pid: u32) -> Vec<&Value> {
    let mut messages: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "message" && r["pid"].as_u64() == Some(u64::from(pid)))
        .collect();
    messages.sort_by_key(|r| r["ts_ns"].as_u64().unwrap_or(0));
    messages
}

/// `type == "session_end"` records of process `pid` for `session_id`.
pub fn session_ends_of<'a>(records: &'a [Value], pid: u32, session_id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["type"] == "session_end"
                && r["pid"].as_u64() == Some(u64::from(pid))
                && r["session_id"] == session_id
        })
        .collect()
}

/// A string field; panics naming the field and showing the record when it is not a string.
pub fn str_field<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field:?} should be a string in record {record}"))
}

/// An unsigned integer field; panics naming the field and showing the record otherwise.
pub fn u64_field(record: &Value, field: &str) -> u64 {
    record[field].as_u64().unwrap_or_else(|| {
        panic!("field {field:?} should be an unsigned integer in record {record}")
    })
}

/// A boolean field; panics naming the field and showing the record otherwise.
pub fn bool_field(record: &Value, field: &str) -> bool {
    record[field]
        .as_bool()
        .unwrap_or_else(|| panic!("field {field:?} should be a boolean in record {record}"))
}

/// Splits `"ip:port"` (or `"[v6]:port"`) into the address text and the port.
pub fn split_addr(addr: &str) -> (&str, u16) {
    let (ip, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("address {addr:?} should be ip:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("address {addr:?} has no numeric port"));
    (ip.trim_start_matches('[').trim_end_matches(']'), port)
}

/// One line per record, for failure messages: `ts pid side direction kind method id session`.
pub fn outline(records: &[&Value]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format!(
            "  {} pid={} side={} {} {} {} id={} name={} session={}\n",
            r["type"].as_str().unwrap_or("?"),
            r["pid"],
            r["side"].as_str().unwrap_or("-"),
            r["direction"].as_str().unwrap_or("-"),
            r["kind"].as_str().unwrap_or("-"),
            r["method"].as_str().unwrap_or("-"),
            r["id"],
            r["name"],
            r["session_id"],
        ));
    }
    if out.is_empty() {
        out.push_str("  (none)\n");
    }
    out
}

/// The counters of a `health` record that mean something observed was lost (see the README,
/// "What is counted"): `(section, counter)`.
pub const LOSS_COUNTERS: &[(&str, &str)] = &[
    ("kernel", "ring_full_chunks"),
    ("kernel", "ring_full_bytes"),
    ("kernel", "shed_chunks"),
    ("kernel", "shed_bytes"),
    ("kernel", "truncated_bytes"),
    ("kernel", "read_user_failed"),
    ("kernel", "unreadable_bytes"),
    ("kernel", "sniff_short_bytes"),
    ("kernel", "args_map_full"),
    ("kernel", "conn_map_full"),
    ("kernel", "tls_args_map_full"),
    ("conn", "gaps"),
    ("conn", "gap_bytes"),
    ("conn", "bad_records"),
    ("conn", "conns_evicted"),
    ("mcp", "evicted_pending"),
    ("mcp", "evicted_sessions"),
    ("mcp", "dropped_exchanges"),
];

/// The agent's last record is its `"reason": "stop"` health record, and it shows no loss: every
/// [`LOSS_COUNTERS`] entry is present and 0, no hook lost or truncated bytes, and no eBPF
/// program missed a run by recursion. Returns that record.
pub fn assert_final_health_shows_no_loss(records: &[Value]) -> &Value {
    let last = records
        .last()
        .unwrap_or_else(|| panic!("the agent wrote no record; want a final health record"));
    assert!(
        last["type"] == "health" && last["reason"] == "stop",
        "the agent's last record should be its final health record, got {last}"
    );
    let mut lost = Vec::new();
    for (section, counter) in LOSS_COUNTERS {
        match last[section][counter].as_u64() {
            Some(0) => {}
            Some(n) => lost.push(format!("{section}.{counter} = {n}")),
            None => panic!("final health record has no {section}.{counter}: {last}"),
        }
    }
    let hooks = last["hooks"]
        .as_object()
        .unwrap_or_else(|| panic!("final health record has no hooks object: {last}"));
    for (name, v) in hooks {
        if (name.ends_with("_ring_full_bytes") || name.ends_with("_truncated_bytes"))
            && v.as_u64() != Some(0)
        {
            lost.push(format!("hooks.{name} = {v}"));
        }
    }
    let programs = last["programs"]
        .as_array()
        .unwrap_or_else(|| panic!("final health record has no programs list: {last}"));
    assert!(
        !programs.is_empty(),
        "final health record lists no eBPF program: {last}"
    );
    for p in programs {
        if p["recursion_misses"].as_u64() != Some(0) {
            lost.push(format!(
                "programs[{}].recursion_misses = {}",
                p["name"], p["recursion_misses"]
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "the final health record shows loss: {lost:?}\n{last}"
    );
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_of_keeps_one_pid_and_orders_by_time() {
        let records = vec![
            json!({"type":"message","pid":7,"ts_ns":20,"method":"b"}),
            json!({"type":"message","pid":8,"ts_ns":10,"method":"x"}),
            json!({"type":"session_end","pid":7,"session_id":"s"}),
            json!({"type":"message","pid":7,"ts_ns":10,"method":"a"}),
        ];
        let got: Vec<&str> = messages_of(&records, 7)
            .iter()
            .map(|r| str_field(r, "method"))
            .collect();
        assert_eq!(got, ["a", "b"]);
        assert_eq!(session_ends_of(&records, 7, "s").len(), 1);
    }

    fn final_health(ring_full: u64, misses: u64) -> Vec<Value> {
        let mut kernel = serde_json::Map::new();
        let mut conn = serde_json::Map::new();
        let mut mcp = serde_json::Map::new();
        for (section, counter) in LOSS_COUNTERS {
            let m = match *section {
                "kernel" => &mut kernel,
                "conn" => &mut conn,
                _ => &mut mcp,
            };
            m.insert((*counter).into(), Value::from(0));
        }
        kernel.insert("ring_full_chunks".into(), Value::from(ring_full));
        vec![
            serde_json::json!({"type": "message"}),
            serde_json::json!({
                "type": "health", "reason": "stop", "kernel": kernel, "conn": conn, "mcp": mcp,
                "hooks": {"write_bytes": 10, "write_ring_full_bytes": 0},
                "programs": [{"name": "sock_send_capture", "recursion_misses": misses}]
            }),
        ]
    }

    #[test]
    fn a_final_health_record_of_zeros_passes_the_loss_check() {
        let records = final_health(0, 0);
        assert_eq!(
            assert_final_health_shows_no_loss(&records)["type"],
            "health"
        );
    }

    #[test]
    #[should_panic(expected = "kernel.ring_full_chunks = 2")]
    fn a_lost_chunk_fails_the_loss_check() {
        assert_final_health_shows_no_loss(&final_health(2, 0));
    }

    #[test]
    #[should_panic(expected = "recursion_misses = 1")]
    fn a_recursion_miss_fails_the_loss_check() {
        assert_final_health_shows_no_loss(&final_health(0, 1));
    }

    #[test]
    fn split_addr_reads_v4_and_v6() {
        assert_eq!(split_addr("127.0.0.1:8080"), ("127.0.0.1", 8080));
        assert_eq!(split_addr("[::1]:443"), ("::1", 443));
    }
}
