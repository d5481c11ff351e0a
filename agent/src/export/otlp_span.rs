//! Records → OpenTelemetry spans (OTLP/JSON) following the MCP semantic conventions
//! (`open-telemetry/semantic-conventions-genai`, `docs/gen-ai/mcp.md`): one span per paired
//! request (on its answer) and one per ended session.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

use crate::mcp::{Flow, Kind, MessageRecord, Record, SessionSummary, Side};

/// Span kinds of OTLP.
const KIND_INTERNAL: u8 = 1;
const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;
/// Requests remembered for their trace context until answered.
const MAX_OPEN_REQUESTS: usize = 16 * 1024;

/// A W3C `traceparent`: trace id and parent span id (hex).
fn parse_traceparent(tp: &str) -> Option<(String, String)> {
    let mut parts = tp.trim().split('-');
    let (_ver, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(trace, 32) || !hex(span, 16) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

fn attr_str(k: &str, v: &str) -> Value {
    json!({"key": k, "value": {"stringValue": v}})
}
fn attr_int(k: &str, v: i64) -> Value {
    // OTLP/JSON carries 64-bit integers as strings.
    json!({"key": k, "value": {"intValue": v.to_string()}})
}

fn split_addr(a: &str) -> Option<(&str, i64)> {
    let (h, p) = a.rsplit_once(':')?;
    Some((h.trim_matches(['[', ']']), p.parse().ok()?))
}

/// Builds spans, remembering requests' trace context until their answers arrive.
#[derive(Debug)]
pub struct SpanBuilder {
    realtime_offset_ns: u64,
    rng: u64,
    /// (conn_id, request direction, id) → traceparent of the request.
    open: HashMap<(String, Flow, String), String>,
    order: VecDeque<(String, Flow, String)>,
    /// Requests forgotten to stay within the bound.
    pub evicted: u64,
}

impl SpanBuilder {
    /// A builder turning kernel timestamps into Unix time with `realtime_offset_ns`.
    pub fn new(realtime_offset_ns: u64, seed: u64) -> SpanBuilder {
        SpanBuilder {
            realtime_offset_ns,
            rng: seed | 1,
            open: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    fn random_hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            out.push_str(&format!("{:016x}", self.rng));
        }
        out.truncate(bytes * 2);
        out
    }

    /// The span (OTLP/JSON) a record yields, if any.
    pub fn on_record(&mut self, r: &Record) -> Option<Value> {
        match r {
            Record::Message(m) => self.on_message(m),
            Record::SessionEnd(s) => Some(self.session_span(s)),
            _ => None,
        }
    }

    fn remember(&mut self, m: &MessageRecord) {
        let (Some(id), Some(tp)) = (&m.id, &m.traceparent) else {
            return;
        };
        let key = (m.conn_id.clone(), m.direction, id.to_string());
        if self.open.insert(key.clone(), tp.clone()).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_OPEN_REQUESTS {
            if let Some(old) = self.order.pop_front() {
                if self.open.remove(&old).is_some() {
                    self.evicted += 1;
                }
            }
        }
    }

    fn on_message(&mut self, m: &MessageRecord) -> Option<Value> {
        if m.kind == Kind::Request {
            self.remember(m);
            return None;
        }
        if !matches!(m.kind, Kind::Response | Kind::Error) {
            return None;
        }
        let method = m.method.as_deref()?;
        let latency = m.latency_ns?;
        let id = m.id.as_ref()?;
        let req_dir = m.direction.opposite();
        let parent = m.traceparent.clone().or_else(|| {
            let key = (m.conn_id.clone(), req_dir, id.to_string());
            self.open.remove(&key)
        });
        let (trace_id, parent_span) = match parent.as_deref().and_then(parse_traceparent) {
            Some((t, s)) => (t, Some(s)),
            None => (self.random_hex(16), None),
        };
        // CLIENT on the request's sender, SERVER on its receiver.
        let observed_sent_request = matches!(
            (m.side, req_dir),
            (Side::Client, Flow::ClientToServer) | (Side::Server, Flow::ServerToClient)
        );
        let kind = match m.side {
            Side::Unknown => KIND_INTERNAL,
            _ if observed_sent_request => KIND_CLIENT,
            _ => KIND_SERVER,
        };
        let mut attrs = vec![
            attr_str("mcp.method.name", method),
            attr_str("jsonrpc.request.id", &id.to_string()),
            attr_str("network.protocol.name", "http"),
            attr_str("network.transport", "tcp"),
            attr_int("process.pid", i64::from(m.pid)),
            attr_str("process.executable.name", &m.comm),
        ];
        let mut target = None;
        match (method, m.name.as_deref()) {
            ("tools/call", Some(n)) => {
                attrs.push(attr_str("gen_ai.tool.name", n));
                attrs.push(attr_str("gen_ai.operation.name", "execute_tool"));
                target = Some(n);
            }
            ("prompts/get", Some(n)) => {
                attrs.push(attr_str("gen_ai.prompt.name", n));
                target = Some(n);
            }
            ("resources/read", Some(uri)) => attrs.push(attr_str("mcp.resource.uri", uri)),
            _ => {}
        }
        if let Some(s) = &m.session_id {
            attrs.push(attr_str("mcp.session.id", s));
        }
        if let Some(v) = &m.mcp_protocol_version {
            attrs.push(attr_str("mcp.protocol.version", v));
        }
        // The server's address on client spans, the client's on server spans.
        let (server_end, client_end) = match m.side {
            Side::Server => (&m.local, &m.remote),
            _ => (&m.remote, &m.local),
        };
        if kind == KIND_SERVER {
            if let Some((h, p)) = split_addr(client_end) {
                attrs.push(attr_str("client.address", h));
                attrs.push(attr_int("client.port", p));
            }
        } else if let Some((h, p)) = split_addr(server_end) {
            attrs.push(attr_str("server.address", h));
            attrs.push(attr_int("server.port", p));
        }
        let mut status = json!({"code": 0});
        if let Some(code) = m.error_code {
            attrs.push(attr_str("error.type", &code.to_string()));
            attrs.push(attr_str("rpc.response.status_code", &code.to_string()));
            status = json!({"code": 2, "message": m.error_message.clone().unwrap_or_default()});
        } else if m.tool_error {
            attrs.push(attr_str("error.type", "tool_error"));
            status = json!({"code": 2, "message": m.error_message.clone().unwrap_or_default()});
        }
        if m.cancelled {
            attrs.push(attr_str("mcpwarden.cancelled", "true"));
        }
        let name = match target {
            Some(t) => format!("{method} {t}"),
            None => method.to_owned(),
        };
        let end = m.ts_ns.saturating_add(self.realtime_offset_ns);
        let start = end.saturating_sub(latency);
        let mut span = json!({
            "traceId": trace_id,
            "spanId": self.random_hex(8),
            "name": name,
            "kind": kind,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": attrs,
            "status": status,
        });
        if let Some(p) = parent_span {
            span["parentSpanId"] = Value::from(p);
        }
        Some(span)
    }

    fn session_span(&mut self, s: &SessionSummary) -> Value {
        let mut attrs = vec![
            attr_str("mcp.session.id", &s.session_id),
            attr_str("mcpwarden.server", &s.server),
            attr_int("mcpwarden.requests", s.requests as i64),
            attr_int("mcpwarden.errors", s.errors as i64),
            attr_int("process.pid", i64::from(s.pid)),
            attr_str("process.executable.name", &s.comm),
            attr_str("network.protocol.name", "http"),
            attr_str("network.transport", "tcp"),
        ];
        if let Some(v) = &s.protocol_version {
            attrs.push(attr_str("mcp.protocol.version", v));
        }
        if let Some(c) = &s.client_name {
            attrs.push(attr_str("mcpwarden.client.name", c));
        }
        if let Some(u) = &s.user {
            attrs.push(attr_str("enduser.id", u));
        }
        if !s.tools.is_empty() {
            attrs.push(attr_str("mcpwarden.tools", &s.tools.join(",")));
        }
        let kind = match s.side {
            Side::Client => KIND_CLIENT,
            Side::Server => KIND_SERVER,
            Side::Unknown => KIND_INTERNAL,
        };
        json!({
            "traceId": self.random_hex(16),
            "spanId": self.random_hex(8),
            "name": "mcp session",
            "kind": kind,
            "startTimeUnixNano": s.started_ns.saturating_add(self.realtime_offset_ns).to_string(),
            "endTimeUnixNano": s.ended_ns.saturating_add(self.realtime_offset_ns).to_string(),
            "attributes": attrs,
            "status": {"code": if s.errors > 0 { 2 } else { 0 }},
        })
    }
}

/// The OTLP/JSON `ExportTraceServiceRequest` body for `spans`.
pub fn export_request(spans: Vec<Value>, host: &str) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attr_str("service.name", "mcpwarden"),
                attr_str("host.name", host),
            ]},
            "scopeSpans": [{
                "scope": {"name": "mcpwarden", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let events =
            crate::replay::read_events(&dir.join("python_sdk.events.jsonl")).expect("fixture");
        crate::replay::replay(events, &crate::replay::ReplayConfig::default())
    }

    fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    #[test]
    fn tool_calls_become_spans_with_the_conventions_attributes() {
        let mut b = SpanBuilder::new(1_000, 7);
        let spans: Vec<Value> = records().iter().filter_map(|r| b.on_record(r)).collect();
        let call = spans
            .iter()
            .find(|s| attr(s, "mcp.method.name") == Some(&json!({"stringValue": "tools/call"})))
            .expect("a tools/call span");
        let tool = attr(call, "gen_ai.tool.name").expect("tool name");
        assert_eq!(
            call["name"],
            format!("tools/call {}", tool["stringValue"].as_str().unwrap_or(""))
        );
        assert_eq!(
            attr(call, "gen_ai.operation.name"),
            Some(&json!({"stringValue": "execute_tool"}))
        );
        assert!(attr(call, "jsonrpc.request.id").is_some());
        let start: u64 = call["startTimeUnixNano"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        let end: u64 = call["endTimeUnixNano"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        assert!(end > start && start > 1_000);
        assert!(spans.iter().any(|s| s["name"] == "mcp session"));
        assert!(spans
            .iter()
            .all(|s| s["traceId"].as_str().map(str::len) == Some(32)));
    }

    #[test]
    fn traceparent_of_the_request_becomes_the_parent() {
        let mut b = SpanBuilder::new(0, 7);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut recs = records();
        let mut tagged = None;
        for r in recs.iter_mut() {
            if let Record::Message(m) = r {
                if m.kind == Kind::Request && m.method.as_deref() == Some("tools/call") {
                    m.traceparent = Some(tp.into());
                    tagged = m.id.clone();
                    break;
                }
            }
        }
        assert!(tagged.is_some());
        let spans: Vec<Value> = recs.iter().filter_map(|r| b.on_record(r)).collect();
        let child = spans
            .iter()
            .find(|s| s["parentSpanId"] == "b7ad6b7169203331")
            .expect("parented span");
        assert_eq!(child["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(parse_traceparent("00-000-1-01"), None);
    }
}
