//! Renders a received [`Envelope`]'s record as the JSON line the agent wrote for it.
//!
//! The inverse (`Record` → proto) lives in the agent (`agent/src/export/convert.rs`), whose
//! round-trip tests check that both directions agree: the agent's JSON line of a record equals
//! the JSON this module rebuilds from its proto form.

use serde_json::{Map, Number, Value};

use crate::v1::{
    envelope, session_record, CancelRecord, CatalogRecord, DriftRecord, Envelope, HealthRecord,
    InputRequestList, JsonList, MessageRecord, ProcessIdentity, RpcId, SessionRecord, StringList,
    VerdictRecord, VerificationFailure,
};

/// Why a record could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The envelope has no record.
    #[error("envelope {seq} carries no record")]
    Empty {
        /// The envelope's sequence number.
        seq: u64,
    },
    /// A session record's kind is unspecified or unknown.
    #[error("session record with unknown kind {0}")]
    SessionKind(i32),
    /// A `*_json` field does not hold JSON.
    #[error("field {field} is not JSON: {source}")]
    BadJson {
        /// The proto field's name.
        field: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
}

/// The JSON `"type"` of an envelope's record (`message`, `session_end`, …), if it has one.
pub fn record_type(env: &Envelope) -> Option<&'static str> {
    Some(match env.record.as_ref()? {
        envelope::Record::Message(_) => "message",
        envelope::Record::Session(s) => match session_record::Kind::try_from(s.kind).ok()? {
            session_record::Kind::Start => "session_start",
            session_record::Kind::Update => "session_update",
            session_record::Kind::End => "session_end",
            session_record::Kind::Unspecified => return None,
        },
        envelope::Record::Drift(_) => "tool_drift",
        envelope::Record::Cancel(_) => "call_cancelled",
        envelope::Record::Verdict(_) => "verdict",
        envelope::Record::Catalog(_) => "catalog",
        envelope::Record::Health(_) => "health",
    })
}

/// The record of `env` as the agent's JSON line (an object with `"type"`).
pub fn record_to_json(env: &Envelope) -> Result<Value, RenderError> {
    let ty = record_type(env);
    match env.record.as_ref() {
        None => Err(RenderError::Empty { seq: env.seq }),
        Some(envelope::Record::Message(m)) => message(m),
        Some(envelope::Record::Session(s)) => match ty {
            Some(t) => session(t, s),
            None => Err(RenderError::SessionKind(s.kind)),
        },
        Some(envelope::Record::Drift(d)) => Ok(drift(d)),
        Some(envelope::Record::Cancel(c)) => cancel(c),
        Some(envelope::Record::Verdict(v)) => verdict(v),
        Some(envelope::Record::Catalog(c)) => catalog(c),
        Some(envelope::Record::Health(h)) => Ok(health(h)),
    }
}

/// A JSON object under construction, with the record contract's three kinds of keys.
struct Obj(Map<String, Value>);

impl Obj {
    fn new(ty: &str) -> Obj {
        let mut m = Map::new();
        m.insert("type".into(), Value::from(ty));
        Obj(m)
    }
    /// Always present.
    fn put(&mut self, k: &str, v: impl Into<Value>) -> &mut Self {
        self.0.insert(k.to_owned(), v.into());
        self
    }
    /// Present only when set (`skip_serializing_if = "Option::is_none"`).
    fn opt(&mut self, k: &str, v: Option<Value>) -> &mut Self {
        if let Some(v) = v {
            self.0.insert(k.to_owned(), v);
        }
        self
    }
    /// Present only when true.
    fn flag(&mut self, k: &str, v: bool) -> &mut Self {
        if v {
            self.0.insert(k.to_owned(), Value::Bool(true));
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn s(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |x| Value::from(x.as_str()))
}
fn os(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| Value::from(x.as_str()))
}
fn id(v: &Option<RpcId>) -> Option<Value> {
    use crate::v1::rpc_id::Value as V;
    Some(match v.as_ref()?.value.as_ref()? {
        V::Num(n) => Value::from(*n),
        V::Str(s) => Value::from(s.as_str()),
        V::Other(raw) => match raw.parse::<Number>() {
            Ok(n) => Value::Number(n),
            Err(_) => Value::from(raw.as_str()),
        },
    })
}
fn parse(field: &'static str, text: &str) -> Result<Value, RenderError> {
    serde_json::from_str(text).map_err(|source| RenderError::BadJson { field, source })
}
fn oj(field: &'static str, v: &Option<String>) -> Result<Option<Value>, RenderError> {
    v.as_deref().map(|t| parse(field, t)).transpose()
}
fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|x| Value::from(x.as_str())).collect())
}
fn slist(v: &Option<StringList>) -> Option<Value> {
    v.as_ref().map(|l| strings(&l.items))
}
fn jlist(field: &'static str, v: &Option<JsonList>) -> Result<Value, RenderError> {
    match v {
        None => Ok(Value::Null),
        Some(l) => Ok(Value::Array(
            l.items_json
                .iter()
                .map(|t| parse(field, t))
                .collect::<Result<_, _>>()?,
        )),
    }
}
fn input_requests(v: &Option<InputRequestList>) -> Option<Value> {
    v.as_ref().map(|l| {
        Value::Array(
            l.items
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("key".into(), Value::from(r.key.as_str()));
                    m.insert("method".into(), s(&r.method));
                    Value::Object(m)
                })
                .collect(),
        )
    })
}
fn verification(v: &VerificationFailure) -> Result<Value, RenderError> {
    let mut m = Map::new();
    m.insert("reason".into(), Value::from(v.reason.as_str()));
    m.insert("header".into(), Value::from(v.header.as_str()));
    m.insert("header_value".into(), s(&v.header_value));
    if let Some(d) = &v.decoded_value {
        m.insert("decoded_value".into(), Value::from(d.as_str()));
    }
    m.insert("body_field".into(), Value::from(v.body_field.as_str()));
    m.insert(
        "body_value".into(),
        oj("body_value_json", &v.body_value_json)?.unwrap_or(Value::Null),
    );
    Ok(Value::Object(m))
}

fn message(m: &MessageRecord) -> Result<Value, RenderError> {
    let mut o = Obj::new("message");
    o.put("ts_ns", m.ts_ns)
        .put("pid", m.pid)
        .put("comm", m.comm.as_str())
        .put("side", m.side.as_str())
        .put("local", m.local.as_str())
        .put("remote", m.remote.as_str())
        .put("conn_id", m.conn_id.as_str())
        .put("http_method", m.http_method.as_str())
        .put("http_path", m.http_path.as_str())
        .put(
            "http_status",
            m.http_status.map_or(Value::Null, Value::from),
        )
        .put("session_id", s(&m.session_id))
        .put("era", m.era.as_str())
        .put("direction", m.direction.as_str())
        .put("kind", m.kind.as_str())
        .put("id", id(&m.id).unwrap_or(Value::Null))
        .put("method", s(&m.method))
        .opt("name", os(&m.name))
        .opt("latency_ns", m.latency_ns.map(Value::from))
        .opt("error_code", m.error_code.map(Value::from))
        .opt("error_name", os(&m.error_name))
        .opt("error_message", os(&m.error_message))
        .put("tool_error", m.tool_error)
        .opt(
            "progress_token",
            oj("progress_token_json", &m.progress_token_json)?,
        )
        .opt("related_id", id(&m.related_id))
        .flag("cancelled", m.cancelled)
        .opt("mcp_protocol_version", os(&m.mcp_protocol_version))
        .put("batch", m.batch)
        .put("transport", m.transport.as_str())
        .opt("result_type", os(&m.result_type))
        .opt("input_requests", input_requests(&m.input_requests))
        .opt("input_responses", slist(&m.input_responses))
        .opt("call_id", id(&m.call_id))
        .opt("round", m.round.map(Value::from))
        .opt("subscription_id", id(&m.subscription_id))
        .opt("supported_versions", slist(&m.supported_versions))
        .opt(
            "required_capabilities",
            oj("required_capabilities_json", &m.required_capabilities_json)?,
        )
        .opt("ttl_ms", m.ttl_ms.map(Value::from))
        .opt("cache_scope", os(&m.cache_scope));
    if !m.verification.is_empty() {
        let v = m
            .verification
            .iter()
            .map(verification)
            .collect::<Result<Vec<_>, _>>()?;
        o.put("verification", v);
    }
    o.opt("params", oj("params_json", &m.params_json)?)
        .opt("result", oj("result_json", &m.result_json)?)
        .opt("error_data", oj("error_data_json", &m.error_data_json)?)
        .flag("truncated", m.truncated)
        .opt("payload_bytes", m.payload_bytes.map(Value::from))
        .opt("capture_lost_bytes", m.capture_lost_bytes.map(Value::from))
        .opt("traceparent", os(&m.traceparent));
    if !m.headers.is_empty() {
        let h: Map<String, Value> = m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        o.put("headers", Value::Object(h));
    }
    identity(&mut o, &m.process);
    o.opt("peer_pid", m.peer_pid.map(Value::from))
        .opt("peer_comm", os(&m.peer_comm));
    Ok(o.done())
}

/// The process identity fields, flattened into the record (each only when known).
fn identity(o: &mut Obj, p: &Option<ProcessIdentity>) {
    let Some(p) = p else {
        return;
    };
    o.opt("exe", os(&p.exe))
        .opt("uid", p.uid.map(Value::from))
        .opt("cgroup", os(&p.cgroup))
        .opt("container_id", os(&p.container_id))
        .opt("pod_name", os(&p.pod_name))
        .opt("pod_namespace", os(&p.pod_namespace));
}

fn session(ty: &str, r: &SessionRecord) -> Result<Value, RenderError> {
    let attacks = r
        .attacks_json
        .iter()
        .map(|t| parse("attacks_json", t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut o = Obj::new(ty);
    o.put("session_id", r.session_id.as_str())
        .put("grouping", r.grouping.as_str())
        .put("era", r.era.as_str())
        .put("pid", r.pid)
        .put("comm", r.comm.as_str())
        .put("side", r.side.as_str())
        .put("server", r.server.as_str())
        .put("client_name", s(&r.client_name))
        .put("client_version", s(&r.client_version))
        .put("server_name", s(&r.server_name))
        .put("server_version", s(&r.server_version))
        .put("protocol_version", s(&r.protocol_version))
        .put("started_ns", r.started_ns)
        .put("ended_ns", r.ended_ns)
        .put("duration_ns", r.duration_ns)
        .put("requests", r.requests)
        .put("notifications", r.notifications)
        .put("responses", r.responses)
        .put("errors", r.errors)
        .put("status", r.status.as_str())
        .put("end_reason", s(&r.end_reason))
        .put("methods", strings(&r.methods))
        .put("tools", strings(&r.tools))
        .put("primitives", strings(&r.primitives))
        .put("state", r.state.as_str())
        .put("user", s(&r.user))
        .put("role", s(&r.role))
        .put("identity_source", s(&r.identity_source))
        .put("identity_verified", r.identity_verified)
        .put(
            "client_capabilities",
            oj("client_capabilities_json", &r.client_capabilities_json)?.unwrap_or(Value::Null),
        )
        .put(
            "server_capabilities",
            oj("server_capabilities_json", &r.server_capabilities_json)?.unwrap_or(Value::Null),
        )
        .put("cancelled", r.cancelled)
        .put("protocol_version_mismatches", r.protocol_version_mismatches)
        .put(
            "first_mismatched_protocol_version",
            s(&r.first_mismatched_protocol_version),
        )
        .put(
            "supported_versions",
            slist(&r.supported_versions).unwrap_or(Value::Null),
        )
        .put("verification_failures", r.verification_failures)
        .put("attacks", attacks);
    if r.joined_mid_stream {
        o.put("joined_mid_stream", true);
    }
    identity(&mut o, &r.process);
    Ok(o.done())
}

fn drift(d: &DriftRecord) -> Value {
    let mut o = Obj::new("tool_drift");
    o.put("ts_ns", d.ts_ns)
        .put("pid", d.pid)
        .put("comm", d.comm.as_str())
        .put("side", d.side.as_str())
        .put("server", d.server.as_str())
        .put("session_id", d.session_id.as_str())
        .put("tool", d.tool.as_str())
        .put("fields", strings(&d.fields))
        .put("old_hash", d.old_hash.as_str())
        .put("new_hash", d.new_hash.as_str());
    o.done()
}

fn cancel(c: &CancelRecord) -> Result<Value, RenderError> {
    let mut o = Obj::new("call_cancelled");
    o.put("ts_ns", c.ts_ns)
        .put("pid", c.pid)
        .put("comm", c.comm.as_str())
        .put("side", c.side.as_str())
        .put("local", c.local.as_str())
        .put("remote", c.remote.as_str())
        .put("conn_id", c.conn_id.as_str())
        .put("session_id", c.session_id.as_str())
        .put("era", c.era.as_str())
        .put("reason", c.reason.as_str())
        .put("id", id(&c.id).unwrap_or(Value::Null))
        .put("method", c.method.as_str())
        .opt("name", os(&c.name))
        .opt("call_id", id(&c.call_id))
        .opt("round", c.round.map(Value::from))
        .put("requested_ns", c.requested_ns)
        .put("elapsed_ns", c.elapsed_ns)
        .put(
            "http_status",
            c.http_status.map_or(Value::Null, Value::from),
        )
        .put("notifications", c.notifications)
        .opt("progress", oj("progress_json", &c.progress_json)?);
    Ok(o.done())
}

fn verdict(v: &VerdictRecord) -> Result<Value, RenderError> {
    let reasons: Vec<Value> = v
        .reasons
        .iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert("kind".into(), Value::from(r.kind.as_str()));
            m.insert("detail".into(), Value::from(r.detail.as_str()));
            Value::Object(m)
        })
        .collect();
    let mut o = Obj::new("verdict");
    o.put("ts_ns", v.ts_ns)
        .put("session_id", s(&v.session_id))
        .put("pid", v.pid)
        .put("comm", v.comm.as_str())
        .put("side", v.side.as_str())
        .put("local", v.local.as_str())
        .put("remote", v.remote.as_str())
        .put("conn_id", v.conn_id.as_str())
        .put("server", v.server.as_str())
        .put("era", v.era.as_str())
        .put("id", id(&v.id).unwrap_or(Value::Null))
        .put("method", v.method.as_str())
        .opt("name", os(&v.name))
        .put("user", s(&v.user))
        .put("role", s(&v.role))
        .put("action", v.action.as_str())
        .put("rule_id", s(&v.rule_id))
        .put("reasons", reasons)
        .put("enforcement", v.enforcement.as_str())
        .opt("hold_id", v.hold_id.map(Value::from))
        .put("decision_ns", v.decision_ns)
        .opt("enforced_after_ns", v.enforced_after_ns.map(Value::from))
        .put(
            "request",
            oj("request_json", &v.request_json)?.unwrap_or(Value::Null),
        )
        .flag("block_connect", v.block_connect);
    identity(&mut o, &v.process);
    Ok(o.done())
}

fn catalog(c: &CatalogRecord) -> Result<Value, RenderError> {
    let mut o = Obj::new("catalog");
    o.put("ts_ns", c.ts_ns)
        .put("pid", c.pid)
        .put("comm", c.comm.as_str())
        .put("side", c.side.as_str())
        .put("server", c.server.as_str())
        .put("server_name", s(&c.server_name))
        .put("server_version", s(&c.server_version))
        .put("session_id", c.session_id.as_str())
        .put("changed", c.changed.as_str())
        .put("tools", jlist("tools", &c.tools)?)
        .put("resources", jlist("resources", &c.resources)?)
        .put(
            "resource_templates",
            jlist("resource_templates", &c.resource_templates)?,
        )
        .put("prompts", jlist("prompts", &c.prompts)?);
    Ok(o.done())
}

/// A counter map as a JSON object (keys sorted, as the agent writes them).
fn counters(m: &std::collections::HashMap<String, u64>) -> Value {
    let sorted: std::collections::BTreeMap<&String, &u64> = m.iter().collect();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect(),
    )
}

fn health(h: &HealthRecord) -> Value {
    let sinks: std::collections::BTreeMap<&String, Value> = h
        .sinks
        .iter()
        .map(|(k, v)| (k, counters(&v.counters)))
        .collect();
    let programs: Vec<Value> = h
        .programs
        .iter()
        .map(|p| {
            let mut o = Map::new();
            o.insert("name".into(), Value::from(p.name.as_str()));
            o.insert("id".into(), Value::from(p.id));
            o.insert("run_count".into(), Value::from(p.run_count));
            o.insert("run_time_ns".into(), Value::from(p.run_time_ns));
            o.insert("recursion_misses".into(), Value::from(p.recursion_misses));
            Value::Object(o)
        })
        .collect();
    let mut o = Obj::new("health");
    o.put("ts_ns", h.ts_ns)
        .put("reason", h.reason.as_str())
        .put("pid", h.pid)
        .put("uptime_ns", h.uptime_ns)
        .put("rss_bytes", h.rss_bytes)
        .put("kernel", counters(&h.kernel))
        .put("hooks", counters(&h.hooks))
        .put("conn", counters(&h.conn))
        .put("mcp", counters(&h.mcp))
        .put("tracked", counters(&h.tracked))
        .put("enforce", counters(&h.enforce))
        .put(
            "export",
            Value::Object(sinks.into_iter().map(|(k, v)| (k.clone(), v)).collect()),
        )
        .put("programs", programs);
    o.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_envelope_and_bad_json_are_errors_not_panics() {
        let env = Envelope::default();
        assert!(matches!(
            record_to_json(&env),
            Err(RenderError::Empty { seq: 0 })
        ));
        let env = Envelope {
            record: Some(envelope::Record::Cancel(CancelRecord {
                progress_json: Some("{not json".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(matches!(
            record_to_json(&env),
            Err(RenderError::BadJson {
                field: "progress_json",
                ..
            })
        ));
        let env = Envelope {
            record: Some(envelope::Record::Session(SessionRecord::default())),
            ..Default::default()
        };
        assert!(matches!(
            record_to_json(&env),
            Err(RenderError::SessionKind(0))
        ));
    }

    #[test]
    fn rpc_ids_keep_their_json_type() {
        use crate::v1::rpc_id::Value as V;
        let mk = |v| Some(RpcId { value: Some(v) });
        assert_eq!(id(&mk(V::Num(-3))), Some(Value::from(-3)));
        assert_eq!(id(&mk(V::Str("7".into()))), Some(Value::from("7")));
        assert_eq!(
            id(&mk(V::Other("1.5".into()))),
            Some(serde_json::json!(1.5))
        );
        assert_eq!(id(&None), None);
    }
}
