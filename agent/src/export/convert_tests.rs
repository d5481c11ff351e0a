//! Round trips: the JSON line of a record == the JSON the collector rebuilds from its proto.

use super::*;
use crate::mcp::{
    CancelReason, EndReason, Enforcement, Era, Flow, Grouping, IdentitySource, Kind, SessionState,
    SessionStatus, Side, Transport, VerificationReason,
};
use crate::policy::{Action, Reason, ReasonKind};
use mcpwarden_proto::json::record_to_json;
use serde_json::json;

fn round_trip(r: &Record) {
    let line = serde_json::to_value(r).expect("records serialise");
    let env = pb::Envelope {
        seq: 1,
        record: Some(record_to_proto(r)),
        ..Default::default()
    };
    // Through the wire bytes too.
    let bytes = prost::Message::encode_to_vec(&env);
    let back: pb::Envelope = prost::Message::decode(bytes.as_slice()).expect("decodes");
    let rebuilt = record_to_json(&back).expect("renders");
    assert_eq!(line, rebuilt, "record {r:?}");
}

fn full_message() -> MessageRecord {
    MessageRecord {
        ts_ns: 12,
        pid: 7,
        comm: "python3".into(),
        side: Side::Client,
        local: "127.0.0.1:5000".into(),
        remote: "127.0.0.1:8000".into(),
        conn_id: "7:3".into(),
        http_method: "POST".into(),
        http_path: "/mcp".into(),
        http_status: Some(200),
        session_id: Some("abc".into()),
        era: Era::Stateless,
        direction: Flow::ServerToClient,
        kind: Kind::Error,
        id: Some(RpcId::Other("1.5".into())),
        method: Some("tools/call".into()),
        name: Some("add".into()),
        latency_ns: Some(99),
        error_code: Some(-32602),
        error_name: Some("invalid_params"),
        error_message: Some("bad".into()),
        tool_error: true,
        progress_token: Some(json!("tok")),
        related_id: Some(RpcId::Str("r".into())),
        cancelled: true,
        mcp_protocol_version: Some("2025-06-18".into()),
        batch: true,
        transport: Transport::Sse,
        result_type: Some("input_required".into()),
        input_requests: Some(vec![
            InputRequestSummary {
                key: "a".into(),
                method: None,
            },
            InputRequestSummary {
                key: "b".into(),
                method: Some("roots/list".into()),
            },
        ]),
        input_responses: Some(vec![]),
        call_id: Some(RpcId::Num(-4)),
        round: Some(2),
        subscription_id: Some(RpcId::Num(9)),
        supported_versions: Some(vec!["2026-07-28".into()]),
        required_capabilities: Some(json!({"sampling": {}})),
        ttl_ms: Some(1000),
        cache_scope: Some("session".into()),
        verification: vec![VerificationFailure {
            reason: VerificationReason::HeaderMismatch,
            header: "Mcp-Name".into(),
            header_value: None,
            decoded_value: Some("x".into()),
            body_field: "params.name".into(),
            body_value: Some(json!(3.25)),
        }],
        params: Some(json!({"arguments": {"password": "[redacted]", "n": [1, 2.5, null]}})),
        result: Some(Value::Null),
        error_data: Some(json!("d")),
        truncated: true,
        payload_bytes: Some(5000),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        headers: Some(
            [("x-request-id".to_string(), "r-1".to_string())]
                .into_iter()
                .collect(),
        ),
        process: crate::process::ProcessIdentity {
            exe: Some("/usr/bin/python3.11".into()),
            uid: Some(1000),
            cgroup: Some("/kubepods/pod1/abc".into()),
            container_id: Some("a".repeat(64)),
            pod_name: Some("mcp-0".into()),
            pod_namespace: Some("team".into()),
        },
        peer_pid: Some(8),
        peer_comm: Some("uvicorn".into()),
    }
}

fn empty_message() -> MessageRecord {
    MessageRecord {
        http_status: None,
        session_id: None,
        id: None,
        method: None,
        name: None,
        latency_ns: None,
        error_code: None,
        error_name: None,
        error_message: None,
        tool_error: false,
        progress_token: None,
        related_id: None,
        cancelled: false,
        mcp_protocol_version: None,
        batch: false,
        transport: Transport::Json,
        result_type: None,
        input_requests: None,
        input_responses: None,
        call_id: None,
        round: None,
        subscription_id: None,
        supported_versions: None,
        required_capabilities: None,
        ttl_ms: None,
        cache_scope: None,
        verification: vec![],
        params: None,
        result: None,
        error_data: None,
        truncated: false,
        payload_bytes: None,
        traceparent: None,
        headers: None,
        process: Default::default(),
        peer_pid: None,
        peer_comm: None,
        ..full_message()
    }
}

fn summary(status: SessionStatus, end: Option<EndReason>) -> SessionSummary {
    SessionSummary {
        session_id: "stateless:0123456789abcdef".into(),
        grouping: Grouping::Stateless,
        era: Era::Handshake,
        pid: 1,
        comm: "node".into(),
        side: Side::Server,
        server: "127.0.0.1:8000/mcp".into(),
        client_name: Some("c".into()),
        client_version: None,
        server_name: Some("s".into()),
        server_version: None,
        protocol_version: Some("2025-11-25".into()),
        started_ns: 1,
        ended_ns: 5,
        duration_ns: 4,
        requests: 3,
        notifications: 2,
        responses: 3,
        errors: 1,
        status,
        end_reason: end,
        methods: vec!["initialize".into(), "tools/call".into()],
        tools: vec!["add".into()],
        primitives: vec![],
        state: SessionState::Operating,
        user: Some("alice".into()),
        role: None,
        identity_source: Some(IdentitySource::Jwt),
        identity_verified: true,
        client_capabilities: Some(json!({})),
        server_capabilities: None,
        cancelled: 1,
        protocol_version_mismatches: 0,
        first_mismatched_protocol_version: None,
        supported_versions: None,
        verification_failures: 2,
        attacks: vec![
            json!({"kind": "tool_definition_drift", "tool": "add", "fields": ["description"]}),
        ],
        joined_mid_stream: false,
        process: crate::process::ProcessIdentity {
            exe: Some("/usr/bin/node".into()),
            uid: Some(0),
            ..Default::default()
        },
    }
}

#[test]
fn hand_built_records_of_every_type_round_trip() {
    let records = vec![
        Record::Message(full_message()),
        Record::Message(empty_message()),
        Record::SessionStart(summary(SessionStatus::Active, None)),
        Record::SessionUpdate(summary(SessionStatus::Active, None)),
        Record::SessionEnd(summary(SessionStatus::Ended, Some(EndReason::NotFound))),
        Record::SessionEnd(SessionSummary {
            supported_versions: Some(vec![]),
            attacks: vec![],
            ..summary(SessionStatus::Ended, Some(EndReason::Idle))
        }),
        Record::Drift(DriftRecord {
            ts_ns: 3,
            pid: 2,
            comm: "x".into(),
            side: Side::Unknown,
            server: "s".into(),
            session_id: "i".into(),
            tool: "t".into(),
            fields: vec!["inputSchema".into()],
            old_hash: "aa".into(),
            new_hash: "bb".into(),
        }),
        Record::Cancelled(CancelRecord {
            ts_ns: 9,
            pid: 2,
            comm: "x".into(),
            side: Side::Client,
            local: "l".into(),
            remote: "r".into(),
            conn_id: "c".into(),
            session_id: "s".into(),
            era: Era::Stateless,
            reason: CancelReason::StreamClosed,
            id: RpcId::Num(4),
            method: "tools/call".into(),
            name: None,
            call_id: Some(RpcId::Num(1)),
            round: None,
            requested_ns: 2,
            elapsed_ns: 7,
            http_status: None,
            notifications: 3,
            progress: Some(json!({"progress": 1, "total": 2})),
        }),
        Record::Verdict(VerdictRecord {
            ts_ns: 1,
            session_id: None,
            pid: 2,
            comm: "c".into(),
            side: Side::Client,
            local: "l".into(),
            remote: "r".into(),
            conn_id: "k".into(),
            server: "s".into(),
            era: Era::Handshake,
            id: Some(RpcId::Num(3)),
            method: "tools/call".into(),
            name: Some("rm".into()),
            user: None,
            role: Some("admin".into()),
            action: Action::Deny,
            rule_id: None,
            reasons: vec![Reason {
                kind: ReasonKind::UnknownTool,
                detail: "no such tool".into(),
            }],
            enforcement: Enforcement::HeldThenReset,
            hold_id: Some(5),
            decision_ns: 1200,
            enforced_after_ns: None,
            request: Some(json!({"method": "tools/call", "params": {"name": "rm"}})),
            process: Default::default(),
            fail_closed: true,
            approve_timeout_ms: 1,
            block_connect: true,
            peer_pid: None,
        }),
        Record::Catalog(CatalogRecord {
            ts_ns: 1,
            pid: 2,
            comm: "c".into(),
            side: Side::Server,
            server: "s".into(),
            server_name: None,
            server_version: Some("1".into()),
            session_id: "x".into(),
            changed: "tools".into(),
            tools: Some(vec![
                json!({"name": "add", "inputSchema": {"type": "object"}}),
            ]),
            resources: Some(vec![]),
            resource_templates: None,
            prompts: None,
        }),
    ];
    for r in &records {
        round_trip(r);
    }
}

/// Every record the pipeline produces from the recorded SDK fixtures (real traffic of the
/// Python SDK and of the TypeScript `server-everything`).
#[test]
fn records_from_recorded_sdk_traffic_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut seen = std::collections::BTreeSet::new();
    for name in ["python_sdk.events.jsonl", "server_everything.events.jsonl"] {
        let events = crate::replay::read_events(&dir.join(name)).expect("fixture reads");
        let records = crate::replay::replay(events, &crate::replay::ReplayConfig::default());
        assert!(records.len() > 10, "{name}: {} records", records.len());
        for r in &records {
            let v = serde_json::to_value(r).expect("serialises");
            seen.insert(v["type"].as_str().unwrap_or_default().to_owned());
            round_trip(r);
        }
    }
    assert!(
        seen.contains("message") && seen.contains("session_end"),
        "{seen:?}"
    );
}

/// A health record with every map filled, and one with every map empty.
#[test]
fn health_records_round_trip() {
    use crate::capture::progstats::ProgramStats;
    use crate::health::{HealthReason, HealthRecord};
    let full = HealthRecord::new(10, HealthReason::Interval, 9, 8192)
        .with_kernel(
            &[("ring_full_chunks", 0), ("chunks_emitted", 3)],
            &[("ssl_write_bytes".into(), 40)],
        )
        .with_stages(
            &json!({"gaps": 2, "gap_bytes": 10}),
            &crate::mcp::McpStats {
                sessions: 1,
                messages: 4,
                ..Default::default()
            },
            &json!({"resets": 1, "reset_latency_p50_ns": null}),
        )
        .with_export(&crate::export::SinkStats {
            grpc: Some(crate::export::ExportStats {
                sent: 5,
                ..Default::default()
            }),
            otlp: Some(Default::default()),
        })
        .with_programs(vec![
            ProgramStats {
                name: "sock_send_capture".into(),
                id: 7,
                run_count: 100,
                run_time_ns: 2000,
                recursion_misses: 1,
            },
            ProgramStats {
                name: "sys_enter_write".into(),
                id: 8,
                run_count: 0,
                run_time_ns: 0,
                recursion_misses: 0,
            },
        ]);
    round_trip(&Record::Health(full));
    round_trip(&Record::Health(HealthRecord::new(
        1,
        HealthReason::Stop,
        0,
        0,
    )));
}
