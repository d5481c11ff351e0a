//! `Record` → `mcpwarden.v1` proto, field by field.
//!
//! Every record struct is destructured exhaustively: a field added to a record fails to compile
//! here until it is carried. The inverse (proto → the JSON line) is
//! [`mcpwarden_proto::json`]; the tests below check that a record's JSON line equals the JSON
//! the collector rebuilds from its proto form.

use mcpwarden_proto::v1 as pb;
use serde::Serialize;
use serde_json::Value;

use crate::capture::progstats::ProgramStats;
use crate::health::HealthRecord;
use crate::mcp::{
    CancelRecord, CatalogRecord, DriftRecord, InputRequestSummary, MessageRecord, Record,
    SessionSummary, VerdictRecord, VerificationFailure,
};
use crate::rpc::RpcId;

/// The proto form of one record (the `record` of an envelope).
pub fn record_to_proto(record: &Record) -> pb::envelope::Record {
    use pb::envelope::Record as P;
    use pb::session_record::Kind;
    match record {
        Record::Message(m) => P::Message(message(m)),
        Record::SessionStart(s) => P::Session(session(Kind::Start, s)),
        Record::SessionUpdate(s) => P::Session(session(Kind::Update, s)),
        Record::SessionEnd(s) => P::Session(session(Kind::End, s)),
        Record::Verdict(v) => P::Verdict(verdict(v)),
        Record::Catalog(c) => P::Catalog(catalog(c)),
        Record::Drift(d) => P::Drift(drift(d)),
        Record::Cancelled(c) => P::Cancel(cancel(c)),
        Record::Health(h) => P::Health(health(h)),
    }
}

fn health(h: &HealthRecord) -> pb::HealthRecord {
    let HealthRecord {
        ts_ns,
        reason,
        pid,
        uptime_ns,
        rss_bytes,
        kernel,
        hooks,
        conn,
        mcp,
        tracked,
        enforce,
        export,
        programs,
    } = h;
    let map = |m: &crate::health::CounterMap| -> std::collections::HashMap<String, u64> {
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    };
    pb::HealthRecord {
        ts_ns: *ts_ns,
        reason: tag(reason),
        pid: *pid,
        uptime_ns: *uptime_ns,
        rss_bytes: *rss_bytes,
        kernel: map(kernel),
        hooks: map(hooks),
        conn: map(conn),
        mcp: map(mcp),
        tracked: map(tracked),
        enforce: map(enforce),
        sinks: export
            .iter()
            .map(|(k, v)| (k.clone(), pb::CounterMap { counters: map(v) }))
            .collect(),
        programs: programs
            .iter()
            .map(
                |ProgramStats {
                     name,
                     id,
                     run_count,
                     run_time_ns,
                     recursion_misses,
                 }| pb::ProgramHealth {
                    name: name.clone(),
                    id: *id,
                    run_count: *run_count,
                    run_time_ns: *run_time_ns,
                    recursion_misses: *recursion_misses,
                },
            )
            .collect(),
    }
}

/// The JSON string of a unit enum (`"client"`, `"handshake"`, …).
fn tag<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}
fn otag<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(tag)
}
fn json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}
fn ojson(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(json)
}
fn rpc_id(id: &RpcId) -> pb::RpcId {
    use pb::rpc_id::Value as V;
    pb::RpcId {
        value: Some(match id {
            RpcId::Num(n) => V::Num(*n),
            RpcId::Str(s) => V::Str(s.clone()),
            RpcId::Other(s) => V::Other(s.clone()),
        }),
    }
}
fn orpc(id: &Option<RpcId>) -> Option<pb::RpcId> {
    id.as_ref().map(rpc_id)
}
fn slist(v: &Option<Vec<String>>) -> Option<pb::StringList> {
    v.as_ref().map(|items| pb::StringList {
        items: items.clone(),
    })
}
fn jlist(v: &Option<Vec<Value>>) -> Option<pb::JsonList> {
    v.as_ref().map(|items| pb::JsonList {
        items_json: items.iter().map(json).collect(),
    })
}
fn input_requests(v: &Option<Vec<InputRequestSummary>>) -> Option<pb::InputRequestList> {
    v.as_ref().map(|items| pb::InputRequestList {
        items: items
            .iter()
            .map(|InputRequestSummary { key, method }| pb::InputRequest {
                key: key.clone(),
                method: method.clone(),
            })
            .collect(),
    })
}
fn verification(v: &VerificationFailure) -> pb::VerificationFailure {
    let VerificationFailure {
        reason,
        header,
        header_value,
        decoded_value,
        body_field,
        body_value,
    } = v;
    pb::VerificationFailure {
        reason: tag(reason),
        header: header.clone(),
        header_value: header_value.clone(),
        decoded_value: decoded_value.clone(),
        body_field: body_field.clone(),
        body_value_json: ojson(body_value),
    }
}

fn message(m: &MessageRecord) -> pb::MessageRecord {
    let MessageRecord {
        ts_ns,
        pid,
        comm,
        side,
        local,
        remote,
        conn_id,
        http_method,
        http_path,
        http_status,
        session_id,
        era,
        direction,
        kind,
        id,
        method,
        name,
        latency_ns,
        error_code,
        error_name,
        error_message,
        tool_error,
        progress_token,
        related_id,
        cancelled,
        mcp_protocol_version,
        batch,
        transport,
        result_type,
        input_requests: inputs,
        input_responses,
        call_id,
        round,
        subscription_id,
        supported_versions,
        required_capabilities,
        ttl_ms,
        cache_scope,
        verification: failures,
        params,
        result,
        error_data,
        truncated,
        payload_bytes,
        traceparent,
        headers,
        process,
        peer_pid,
        peer_comm,
    } = m;
    pb::MessageRecord {
        ts_ns: *ts_ns,
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        local: local.clone(),
        remote: remote.clone(),
        conn_id: conn_id.clone(),
        http_method: http_method.clone(),
        http_path: http_path.clone(),
        http_status: http_status.map(u32::from),
        session_id: session_id.clone(),
        era: tag(era),
        direction: tag(direction),
        kind: tag(kind),
        id: orpc(id),
        method: method.clone(),
        name: name.clone(),
        latency_ns: *latency_ns,
        error_code: *error_code,
        error_name: error_name.map(str::to_owned),
        error_message: error_message.clone(),
        tool_error: *tool_error,
        progress_token_json: ojson(progress_token),
        related_id: orpc(related_id),
        cancelled: *cancelled,
        mcp_protocol_version: mcp_protocol_version.clone(),
        batch: *batch,
        transport: tag(transport),
        result_type: result_type.clone(),
        input_requests: input_requests(inputs),
        input_responses: slist(input_responses),
        call_id: orpc(call_id),
        round: *round,
        subscription_id: orpc(subscription_id),
        supported_versions: slist(supported_versions),
        required_capabilities_json: ojson(required_capabilities),
        ttl_ms: *ttl_ms,
        cache_scope: cache_scope.clone(),
        verification: failures.iter().map(verification).collect(),
        params_json: ojson(params),
        result_json: ojson(result),
        error_data_json: ojson(error_data),
        truncated: *truncated,
        payload_bytes: *payload_bytes,
        traceparent: traceparent.clone(),
        process: Some(identity(process)),
        headers: headers
            .as_ref()
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        peer_pid: *peer_pid,
        peer_comm: peer_comm.clone(),
    }
}

fn identity(p: &crate::process::ProcessIdentity) -> pb::ProcessIdentity {
    let crate::process::ProcessIdentity {
        exe,
        uid,
        cgroup,
        container_id,
        pod_name,
        pod_namespace,
    } = p;
    pb::ProcessIdentity {
        exe: exe.clone(),
        uid: *uid,
        cgroup: cgroup.clone(),
        container_id: container_id.clone(),
        pod_name: pod_name.clone(),
        pod_namespace: pod_namespace.clone(),
    }
}

fn session(kind: pb::session_record::Kind, s: &SessionSummary) -> pb::SessionRecord {
    let SessionSummary {
        session_id,
        grouping,
        era,
        pid,
        comm,
        side,
        server,
        client_name,
        client_version,
        server_name,
        server_version,
        protocol_version,
        started_ns,
        ended_ns,
        duration_ns,
        requests,
        notifications,
        responses,
        errors,
        status,
        end_reason,
        methods,
        tools,
        primitives,
        state,
        user,
        role,
        identity_source,
        identity_verified,
        client_capabilities,
        server_capabilities,
        cancelled,
        protocol_version_mismatches,
        first_mismatched_protocol_version,
        supported_versions,
        verification_failures,
        attacks,
        // Not in the wire contract yet (proto/): JSON-lines output only.
        joined_mid_stream: _,
        process,
    } = s;
    pb::SessionRecord {
        kind: kind as i32,
        session_id: session_id.clone(),
        grouping: tag(grouping),
        era: tag(era),
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        server: server.clone(),
        client_name: client_name.clone(),
        client_version: client_version.clone(),
        server_name: server_name.clone(),
        server_version: server_version.clone(),
        protocol_version: protocol_version.clone(),
        started_ns: *started_ns,
        ended_ns: *ended_ns,
        duration_ns: *duration_ns,
        requests: *requests,
        notifications: *notifications,
        responses: *responses,
        errors: *errors,
        status: tag(status),
        end_reason: otag(end_reason),
        methods: methods.clone(),
        tools: tools.clone(),
        primitives: primitives.clone(),
        state: tag(state),
        user: user.clone(),
        role: role.clone(),
        identity_source: otag(identity_source),
        identity_verified: *identity_verified,
        client_capabilities_json: ojson(client_capabilities),
        server_capabilities_json: ojson(server_capabilities),
        cancelled: *cancelled,
        protocol_version_mismatches: *protocol_version_mismatches,
        first_mismatched_protocol_version: first_mismatched_protocol_version.clone(),
        supported_versions: slist(supported_versions),
        verification_failures: *verification_failures,
        attacks_json: attacks.iter().map(json).collect(),
        process: Some(identity(process)),
    }
}

fn drift(d: &DriftRecord) -> pb::DriftRecord {
    let DriftRecord {
        ts_ns,
        pid,
        comm,
        side,
        server,
        session_id,
        tool,
        fields,
        old_hash,
        new_hash,
    } = d;
    pb::DriftRecord {
        ts_ns: *ts_ns,
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        server: server.clone(),
        session_id: session_id.clone(),
        tool: tool.clone(),
        fields: fields.clone(),
        old_hash: old_hash.clone(),
        new_hash: new_hash.clone(),
    }
}

fn cancel(c: &CancelRecord) -> pb::CancelRecord {
    let CancelRecord {
        ts_ns,
        pid,
        comm,
        side,
        local,
        remote,
        conn_id,
        session_id,
        era,
        reason,
        id,
        method,
        name,
        call_id,
        round,
        requested_ns,
        elapsed_ns,
        http_status,
        notifications,
        progress,
    } = c;
    pb::CancelRecord {
        ts_ns: *ts_ns,
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        local: local.clone(),
        remote: remote.clone(),
        conn_id: conn_id.clone(),
        session_id: session_id.clone(),
        era: tag(era),
        reason: tag(reason),
        id: Some(rpc_id(id)),
        method: method.clone(),
        name: name.clone(),
        call_id: orpc(call_id),
        round: *round,
        requested_ns: *requested_ns,
        elapsed_ns: *elapsed_ns,
        http_status: http_status.map(u32::from),
        notifications: *notifications,
        progress_json: ojson(progress),
    }
}

fn verdict(v: &VerdictRecord) -> pb::VerdictRecord {
    let VerdictRecord {
        ts_ns,
        session_id,
        pid,
        comm,
        side,
        local,
        remote,
        conn_id,
        server,
        era,
        id,
        method,
        name,
        user,
        role,
        action,
        rule_id,
        reasons,
        enforcement,
        hold_id,
        decision_ns,
        enforced_after_ns,
        request,
        process,
        block_connect,
        // Enforcer hints, not part of the record.
        fail_closed: _,
        approve_timeout_ms: _,
        peer_pid: _,
    } = v;
    pb::VerdictRecord {
        ts_ns: *ts_ns,
        session_id: session_id.clone(),
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        local: local.clone(),
        remote: remote.clone(),
        conn_id: conn_id.clone(),
        server: server.clone(),
        era: tag(era),
        id: orpc(id),
        method: method.clone(),
        name: name.clone(),
        user: user.clone(),
        role: role.clone(),
        action: tag(action),
        rule_id: rule_id.clone(),
        reasons: reasons
            .iter()
            .map(|r| pb::Reason {
                kind: tag(&r.kind),
                detail: r.detail.clone(),
            })
            .collect(),
        enforcement: tag(enforcement),
        hold_id: *hold_id,
        decision_ns: *decision_ns,
        enforced_after_ns: *enforced_after_ns,
        request_json: ojson(request),
        process: Some(identity(process)),
        block_connect: *block_connect,
    }
}

fn catalog(c: &CatalogRecord) -> pb::CatalogRecord {
    let CatalogRecord {
        ts_ns,
        pid,
        comm,
        side,
        server,
        server_name,
        server_version,
        session_id,
        changed,
        tools,
        resources,
        resource_templates,
        prompts,
    } = c;
    pb::CatalogRecord {
        ts_ns: *ts_ns,
        pid: *pid,
        comm: comm.clone(),
        side: tag(side),
        server: server.clone(),
        server_name: server_name.clone(),
        server_version: server_version.clone(),
        session_id: session_id.clone(),
        changed: changed.clone(),
        tools: jlist(tools),
        resources: jlist(resources),
        resource_templates: jlist(resource_templates),
        prompts: jlist(prompts),
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
