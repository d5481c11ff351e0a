//! Header/body verification: the request headers that mirror the JSON-RPC body (2026-07-28,
//! "Request Metadata" of the Streamable HTTP transport) compared with the body they mirror.
//!
//! Gateways and load balancers route on these headers without reading the body; a header that
//! disagrees with the body is how a request slips past them. Every disagreement is a typed
//! [`VerificationFailure`] naming the header, what it said and what the body said.
//!
//! What is checked, on client→server requests and notifications:
//! * `MCP-Protocol-Version` against `params._meta["io.modelcontextprotocol/protocolVersion"]`
//!   (when the body names one); missing on a stateless request.
//! * `Mcp-Method` against `method`; missing on a stateless request.
//! * `Mcp-Name` (plain or `=?base64?…?=`) against `params.name` (`tools/call`, `prompts/get`) or
//!   `params.uri` (`resources/read`); missing on such a stateless request when the body has the
//!   value; present on any other method (`header_unexpected`).
//! * `Mcp-Param-{Name}` (plain or base64) against the `tools/call` argument whose property in the
//!   tool's `inputSchema` carries `"x-mcp-header": "{Name}"` (schema from the server's catalogue):
//!   present ⇔ argument present (non-null), equal after decoding (integers numerically); a
//!   `Mcp-Param-*` the schema does not declare, or on another method, is `header_unexpected`.
//!   Without the tool's schema (no `tools/list` seen) they cannot be mapped and are counted as
//!   unverified, not reported.
//! * Any routing header given more than once: `header_duplicated`; a value with characters
//!   outside visible ASCII/space/tab, or a malformed base64 sentinel: `header_malformed`.
//!
//! "Missing" applies to stateless-era requests only (the headers are required from 2026-07-28);
//! headers that are present are checked in every era: a gateway reading them is fooled alike.
//! Header values are case-sensitive, header names are not.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::extract::{cap_message, META_PROTOCOL_VERSION};

/// Request header mirroring the protocol version.
pub const PROTOCOL_VERSION_HEADER: &str = "MCP-Protocol-Version";
/// Request header mirroring `method`.
pub const METHOD_HEADER: &str = "Mcp-Method";
/// Request header mirroring `params.name` / `params.uri`.
pub const NAME_HEADER: &str = "Mcp-Name";
/// Prefix of the headers mirroring annotated tool arguments.
pub const PARAM_HEADER_PREFIX: &str = "Mcp-Param-";
/// The schema annotation naming an argument's header.
pub const X_MCP_HEADER: &str = "x-mcp-header";

/// Why a header failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationReason {
    /// The header and the body value it mirrors differ.
    HeaderMismatch,
    /// A header the stateless revision requires is absent.
    HeaderMissing,
    /// A header on a request that must not carry it: `Mcp-Name` on a method without a name,
    /// `Mcp-Param-*` on another method, not declared by the tool, or whose argument is absent.
    HeaderUnexpected,
    /// Characters outside visible ASCII/space/tab, or a malformed `=?base64?…?=` value.
    HeaderMalformed,
    /// The header was given more than once.
    HeaderDuplicated,
}

/// One header that disagrees with the body (or is missing, or should not be there).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationFailure {
    pub reason: VerificationReason,
    /// The header's name: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-{Name}`
    /// (the name the schema declares; as received for undeclared ones).
    pub header: String,
    /// The header's value as received (`null` when missing; the first when duplicated).
    pub header_value: Option<String>,
    /// The decoded value of a `=?base64?…?=` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoded_value: Option<String>,
    /// The body member the header mirrors: `method`, `params.name`, `params.uri`,
    /// `params.arguments.<path>`, `params._meta.io.modelcontextprotocol/protocolVersion`.
    pub body_field: String,
    /// That member's value (`null` when absent); strings cut to 4096 bytes, objects and
    /// arrays replaced by `"<object>"` / `"<array>"`.
    pub body_value: Option<Value>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verification {
    pub failures: Vec<VerificationFailure>,
    /// `Mcp-Param-*` headers of a `tools/call` whose tool schema is not known (or declares its
    /// headers invalidly): they cannot be mapped to arguments.
    pub unverified_params: u32,
}

/// What the catalogue knows about the called tool.
#[derive(Debug, Clone, Copy)]
pub enum ToolSchema<'a> {
    /// The tool is in the server's catalogue; its `inputSchema` (if any).
    Known(Option<&'a Value>),
    /// No complete `tools/list` of the server lists this tool.
    Unknown,
}

/// One request or notification to verify.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub headers: &'a [(String, String)],
    pub method: &'a str,
    pub params: Option<&'a Value>,
    /// A request (not a notification).
    pub is_request: bool,
    /// The request belongs to the stateless era (its headers are required).
    pub stateless: bool,
}

/// Checks the mirrored headers of one message against its body.
pub fn verify(view: &RequestView, tool: ToolSchema) -> Verification {
    let mut v = Verification::default();
    check_protocol_version(view, &mut v.failures);
    check_method(view, &mut v.failures);
    check_name(view, &mut v.failures);
    check_params(view, tool, &mut v);
    v
}

fn values<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim_matches([' ', '\t']))
        .collect()
}

fn failure(
    reason: VerificationReason,
    header: &str,
    header_value: Option<&str>,
    body_field: &str,
    body_value: Option<&Value>,
) -> VerificationFailure {
    VerificationFailure {
        reason,
        header: header.to_string(),
        header_value: header_value.map(cap_message),
        decoded_value: None,
        body_field: body_field.to_string(),
        body_value: body_value.filter(|v| !v.is_null()).map(bounded),
    }
}

/// A body value as reported: scalars as they are (strings capped), containers by kind.
fn bounded(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(cap_message(s)),
        Value::Array(_) => Value::String("<array>".into()),
        Value::Object(_) => Value::String("<object>".into()),
        other => other.clone(),
    }
}

/// The single value of a routing header; a duplicate is reported and the first value used.
fn single<'h>(
    headers: &'h [(String, String)],
    header: &str,
    body_field: &str,
    body_value: Option<&Value>,
    out: &mut Vec<VerificationFailure>,
) -> Option<&'h str> {
    let all = values(headers, header);
    if all.len() > 1 {
        out.push(failure(
            VerificationReason::HeaderDuplicated,
            header,
            all.first().copied(),
            body_field,
            body_value,
        ));
    }
    all.first().copied()
}

fn check_protocol_version(view: &RequestView, out: &mut Vec<VerificationFailure>) {
    let body = view
        .params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION));
    let Some(body) = body else {
        return; // not a stateless body: the handshake era checks against the negotiated one
    };
    let field = format!("params._meta.{META_PROTOCOL_VERSION}");
    let header = single(
        view.headers,
        PROTOCOL_VERSION_HEADER,
        &field,
        Some(body),
        out,
    );
    match header {
        None if view.is_request => out.push(failure(
            VerificationReason::HeaderMissing,
            PROTOCOL_VERSION_HEADER,
            None,
            &field,
            Some(body),
        )),
        None => {}
        Some(h) if body.as_str() != Some(h) => out.push(failure(
            VerificationReason::HeaderMismatch,
            PROTOCOL_VERSION_HEADER,
            Some(h),
            &field,
            Some(body),
        )),
        Some(_) => {}
    }
}

fn check_method(view: &RequestView, out: &mut Vec<VerificationFailure>) {
    let body = Value::String(view.method.to_string());
    match single(view.headers, METHOD_HEADER, "method", Some(&body), out) {
        None if view.stateless && view.is_request => out.push(failure(
            VerificationReason::HeaderMissing,
            METHOD_HEADER,
            None,
            "method",
            Some(&body),
        )),
        None => {}
        Some(h) if h != view.method => out.push(failure(
            VerificationReason::HeaderMismatch,
            METHOD_HEADER,
            Some(h),
            "method",
            Some(&body),
        )),
        Some(_) => {}
    }
}

/// The body member `Mcp-Name` mirrors for `method`.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

fn check_name(view: &RequestView, out: &mut Vec<VerificationFailure>) {
    let Some(key) = name_field(view.method) else {
        let method = Value::String(view.method.to_string());
        if let Some(h) = single(view.headers, NAME_HEADER, "method", Some(&method), out) {
            out.push(failure(
                VerificationReason::HeaderUnexpected,
                NAME_HEADER,
                Some(h),
                "method",
                Some(&method),
            ));
        }
        return;
    };
    let field = format!("params.{key}");
    let body = view
        .params
        .and_then(|p| p.get(key))
        .filter(|v| !v.is_null());
    let Some(raw) = single(view.headers, NAME_HEADER, &field, body, out) else {
        if view.stateless && view.is_request && body.is_some() {
            out.push(failure(
                VerificationReason::HeaderMissing,
                NAME_HEADER,
                None,
                &field,
                body,
            ));
        }
        return;
    };
    match decode_header_value(raw) {
        Err(_) => out.push(failure(
            VerificationReason::HeaderMalformed,
            NAME_HEADER,
            Some(raw),
            &field,
            body,
        )),
        Ok(decoded) => {
            if body.and_then(Value::as_str) != Some(decoded.as_str()) {
                let mut f = failure(
                    VerificationReason::HeaderMismatch,
                    NAME_HEADER,
                    Some(raw),
                    &field,
                    body,
                );
                if decoded != raw {
                    f.decoded_value = Some(cap_message(&decoded));
                }
                out.push(f);
            }
        }
    }
}

/// A property annotated with `x-mcp-header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam {
    /// The chain of `properties` keys from the schema root.
    pub path: Vec<String>,
    /// The annotation's value: the header is `Mcp-Param-{token}`.
    pub token: String,
    /// The property's JSON Schema `type` (`string`, `integer` or `boolean`).
    pub kind: String,
}

/// The `x-mcp-header` annotations of an `inputSchema`, or `None` when one of them breaks the
/// spec's constraints (not reachable through `properties` alone, not an RFC 9110 token, not on
/// a string/integer/boolean property, not unique case-insensitively): conforming clients drop
/// such a tool, so its headers cannot be interpreted.
pub fn header_params(schema: &Value) -> Option<Vec<HeaderParam>> {
    let mut found = Vec::new();
    // (path from the root through `properties` only, or None once another keyword was crossed)
    let mut stack: Vec<(Option<Vec<String>>, &Value)> = vec![(Some(Vec::new()), schema)];
    while let Some((path, node)) = stack.pop() {
        let Some(obj) = node.as_object() else {
            continue;
        };
        if let Some(token) = obj.get(X_MCP_HEADER) {
            let path = path.clone().filter(|p| !p.is_empty())?;
            let token = token.as_str().filter(|t| is_token(t))?;
            let kind = obj.get("type").and_then(Value::as_str)?;
            if !matches!(kind, "string" | "integer" | "boolean") {
                return None;
            }
            if found
                .iter()
                .any(|p: &HeaderParam| p.token.eq_ignore_ascii_case(token))
            {
                return None;
            }
            found.push(HeaderParam {
                path,
                token: token.to_string(),
                kind: kind.to_string(),
            });
        }
        for (kw, sub) in obj {
            match kw.as_str() {
                "properties" => {
                    if let Some(props) = sub.as_object() {
                        for (name, s) in props {
                            let p = path.as_ref().map(|p| {
                                let mut p = p.clone();
                                p.push(name.clone());
                                p
                            });
                            stack.push((p, s));
                        }
                    }
                }
                "items"
                | "contains"
                | "unevaluatedItems"
                | "additionalProperties"
                | "propertyNames"
                | "unevaluatedProperties"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contentSchema" => stack.push((None, sub)),
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                    for s in sub.as_array().into_iter().flatten() {
                        stack.push((None, s));
                    }
                }
                "patternProperties" | "dependentSchemas" | "$defs" | "definitions" => {
                    for s in sub.as_object().into_iter().flat_map(|m| m.values()) {
                        stack.push((None, s));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Some(found)
}

/// RFC 9110 `token` (`1*tchar`).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

fn check_params(view: &RequestView, tool: ToolSchema, v: &mut Verification) {
    let param_headers: Vec<(&str, &str)> = view
        .headers
        .iter()
        .filter(|(n, _)| {
            n.len() > PARAM_HEADER_PREFIX.len()
                && n.is_char_boundary(PARAM_HEADER_PREFIX.len())
                && n[..PARAM_HEADER_PREFIX.len()].eq_ignore_ascii_case(PARAM_HEADER_PREFIX)
        })
        .map(|(n, val)| (n.as_str(), val.trim_matches([' ', '\t'])))
        .collect();
    if view.method != "tools/call" {
        let method = Value::String(view.method.to_string());
        for (name, value) in param_headers {
            v.failures.push(failure(
                VerificationReason::HeaderUnexpected,
                name,
                Some(value),
                "method",
                Some(&method),
            ));
        }
        return;
    }
    let declared = match tool {
        ToolSchema::Known(Some(schema)) => header_params(schema),
        ToolSchema::Known(None) => Some(Vec::new()),
        ToolSchema::Unknown => None,
    };
    let Some(declared) = declared else {
        v.unverified_params += param_headers.len() as u32;
        return;
    };
    let arguments = view.params.and_then(|p| p.get("arguments"));
    for param in &declared {
        let header = format!("{PARAM_HEADER_PREFIX}{}", param.token);
        let field = format!("params.arguments.{}", param.path.join("."));
        let raws: Vec<&str> = param_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&header))
            .map(|(_, val)| *val)
            .collect();
        let value = value_at(arguments, &param.path).filter(|x| !x.is_null());
        if raws.len() > 1 {
            v.failures.push(failure(
                VerificationReason::HeaderDuplicated,
                &header,
                raws.first().copied(),
                &field,
                value,
            ));
        }
        let raw = raws.first().copied();
        let rendered = value.and_then(render);
        match (raw, value, rendered) {
            (None, None, _) | (None, Some(_), None) => {}
            (None, Some(_), Some(_)) => v.failures.push(failure(
                VerificationReason::HeaderMissing,
                &header,
                None,
                &field,
                value,
            )),
            (Some(raw), None, _) => v.failures.push(failure(
                VerificationReason::HeaderUnexpected,
                &header,
                Some(raw),
                &field,
                None,
            )),
            (Some(raw), Some(_), None) => v.failures.push(failure(
                VerificationReason::HeaderMismatch,
                &header,
                Some(raw),
                &field,
                value,
            )),
            (Some(raw), Some(body), Some(rendered)) => match decode_header_value(raw) {
                Err(_) => v.failures.push(failure(
                    VerificationReason::HeaderMalformed,
                    &header,
                    Some(raw),
                    &field,
                    value,
                )),
                Ok(decoded) => {
                    if !param_matches(&param.kind, body, &rendered, &decoded) {
                        let mut f = failure(
                            VerificationReason::HeaderMismatch,
                            &header,
                            Some(raw),
                            &field,
                            value,
                        );
                        if decoded != raw {
                            f.decoded_value = Some(cap_message(&decoded));
                        }
                        v.failures.push(f);
                    }
                }
            },
        }
    }
    for (name, value) in param_headers {
        let known = declared.iter().any(|p| {
            name.get(PARAM_HEADER_PREFIX.len()..)
                .is_some_and(|t| t.eq_ignore_ascii_case(&p.token))
        });
        if !known {
            v.failures.push(failure(
                VerificationReason::HeaderUnexpected,
                name,
                Some(value),
                "params.arguments",
                None,
            ));
        }
    }
}

fn value_at<'v>(arguments: Option<&'v Value>, path: &[String]) -> Option<&'v Value> {
    let mut node = arguments?;
    for key in path {
        node = node.as_object()?.get(key)?;
    }
    Some(node)
}

/// How a client renders an argument into its header: booleans `true`/`false`, numbers in
/// decimal, strings as they are; `None` for containers (never mirrored).
fn render(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Header and body agree: integer properties compare numerically (`42` = `42.0`), everything
/// else as the client would have rendered it.
fn param_matches(kind: &str, body: &Value, rendered: &str, decoded: &str) -> bool {
    if kind == "integer" {
        if let (Some(header), Some(body)) = (integer_text(decoded), integer_value(body)) {
            return header == body;
        }
    }
    decoded == rendered
}

/// `-?[0-9]+(\.0+)?` as an integer.
fn integer_text(s: &str) -> Option<i128> {
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if let Some(f) = fraction {
        if f.is_empty() || !f.bytes().all(|b| b == b'0') {
            return None;
        }
    }
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    whole.parse().ok()
}

fn integer_value(v: &Value) -> Option<i128> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // Integral and within i64: the only integers a JSON float can hold exactly here.
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i128)
}

/// Why a header value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    #[error("byte {byte:#04x} at offset {offset} is not visible ASCII, space or tab")]
    Character { offset: usize, byte: u8 },
    #[error("the =?base64?…?= payload is not canonical padded base64: {0}")]
    Base64(String),
    #[error("the =?base64?…?= payload is not UTF-8")]
    Utf8,
}

/// A header value as the sender meant it: plain visible ASCII (space and tab allowed inside)
/// as is; `=?base64?<canonical base64 of UTF-8>?=` decoded. An error for characters outside
/// that set or a malformed sentinel (bad base64, non-canonical, not UTF-8).
pub fn decode_header_value(raw: &str) -> Result<String, HeaderValueError> {
    if let Some((offset, &byte)) = raw
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| !(**b == b'\t' || (0x20..0x7f).contains(*b)))
    {
        return Err(HeaderValueError::Character { offset, byte });
    }
    let Some(payload) = raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Ok(raw.to_string());
    };
    let bytes = STANDARD
        .decode(payload)
        .map_err(|e| HeaderValueError::Base64(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| HeaderValueError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn meta() -> Value {
        json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {}})
    }

    fn route_schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer", "x-mcp-header": "Limit"},
            "query": {"type": "string"}
        }})
    }

    fn run(
        headers: &[(&str, &str)],
        method: &str,
        params: Value,
        tool: ToolSchema,
    ) -> Vec<VerificationFailure> {
        let headers = h(headers);
        verify(
            &RequestView {
                headers: &headers,
                method,
                params: Some(&params),
                is_request: true,
                stateless: true,
            },
            tool,
        )
        .failures
    }

    fn fail(
        reason: VerificationReason,
        header: &str,
        header_value: Option<&str>,
        body_field: &str,
        body_value: Option<Value>,
    ) -> VerificationFailure {
        VerificationFailure {
            reason,
            header: header.into(),
            header_value: header_value.map(str::to_string),
            decoded_value: None,
            body_field: body_field.into(),
            body_value,
        }
    }

    #[test]
    fn an_honest_stateless_tool_call_has_no_failure() {
        let schema = route_schema();
        let got = run(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "route"),
                ("Mcp-Param-Region", "=?base64?WsO8cmljaA==?="),
                ("mcp-param-limit", "10.0"),
            ],
            "tools/call",
            json!({"name": "route", "arguments": {"region": "Zürich", "limit": 10, "query": "q"},
                   "_meta": meta()}),
            ToolSchema::Known(Some(&schema)),
        );
        assert_eq!(got, vec![]);
    }

    #[test]
    fn a_name_header_naming_another_tool_is_a_mismatch_with_both_values() {
        let got = run(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ],
            "tools/call",
            json!({"name": "fail", "arguments": {}, "_meta": meta()}),
            ToolSchema::Unknown,
        );
        assert_eq!(
            got,
            vec![fail(
                VerificationReason::HeaderMismatch,
                "Mcp-Name",
                Some("add"),
                "params.name",
                Some(json!("fail"))
            )]
        );
    }

    #[test]
    fn a_base64_name_that_decodes_to_something_else_reports_the_decoded_value() {
        // "YWRk" is base64 of "add".
        let got = run(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?YWRk?="),
            ],
            "tools/call",
            json!({"name": "fail", "_meta": meta()}),
            ToolSchema::Unknown,
        );
        let mut want = fail(
            VerificationReason::HeaderMismatch,
            "Mcp-Name",
            Some("=?base64?YWRk?="),
            "params.name",
            Some(json!("fail")),
        );
        want.decoded_value = Some("add".into());
        assert_eq!(got, vec![want]);
    }

    #[test]
    fn missing_required_headers_are_reported_only_in_the_stateless_era() {
        let params = json!({"uri": "config://app", "_meta": meta()});
        let got = run(&[], "resources/read", params.clone(), ToolSchema::Unknown);
        assert_eq!(
            got,
            vec![
                fail(
                    VerificationReason::HeaderMissing,
                    "MCP-Protocol-Version",
                    None,
                    "params._meta.io.modelcontextprotocol/protocolVersion",
                    Some(json!("2026-07-28"))
                ),
                fail(
                    VerificationReason::HeaderMissing,
                    "Mcp-Method",
                    None,
                    "method",
                    Some(json!("resources/read"))
                ),
                fail(
                    VerificationReason::HeaderMissing,
                    "Mcp-Name",
                    None,
                    "params.uri",
                    Some(json!("config://app"))
                ),
            ]
        );
        let handshake = verify(
            &RequestView {
                headers: &[],
                method: "resources/read",
                params: Some(&json!({"uri": "config://app"})),
                is_request: true,
                stateless: false,
            },
            ToolSchema::Unknown,
        );
        assert_eq!(handshake, Verification::default());
    }

    #[test]
    fn notifications_need_no_method_header_but_a_wrong_one_is_reported() {
        let headers = h(&[("mcp-method", "tools/call")]);
        let got = verify(
            &RequestView {
                headers: &headers,
                method: "notifications/cancelled",
                params: None,
                is_request: false,
                stateless: true,
            },
            ToolSchema::Unknown,
        );
        assert_eq!(
            got.failures,
            vec![fail(
                VerificationReason::HeaderMismatch,
                "Mcp-Method",
                Some("tools/call"),
                "method",
                Some(json!("notifications/cancelled"))
            )]
        );
    }

    #[test]
    fn headers_on_the_wrong_method_are_unexpected() {
        let got = run(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "add"),
                ("mcp-param-region", "x"),
            ],
            "tools/list",
            json!({"_meta": meta()}),
            ToolSchema::Unknown,
        );
        assert_eq!(
            got,
            vec![
                fail(
                    VerificationReason::HeaderUnexpected,
                    "Mcp-Name",
                    Some("add"),
                    "method",
                    Some(json!("tools/list"))
                ),
                fail(
                    VerificationReason::HeaderUnexpected,
                    "mcp-param-region",
                    Some("x"),
                    "method",
                    Some(json!("tools/list"))
                ),
            ]
        );
    }

    #[test]
    fn param_headers_follow_the_schema_annotations() {
        let schema = route_schema();
        let base = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "route"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            all
        };
        let args = |a: Value| json!({"name": "route", "arguments": a, "_meta": meta()});
        let known = ToolSchema::Known(Some(&schema));

        // Argument present, header missing.
        assert_eq!(
            run(
                &with(&[]),
                "tools/call",
                args(json!({"region": "eu"})),
                known
            ),
            vec![fail(
                VerificationReason::HeaderMissing,
                "Mcp-Param-Region",
                None,
                "params.arguments.region",
                Some(json!("eu"))
            )]
        );
        // Header present, argument absent (or null).
        assert_eq!(
            run(
                &with(&[("Mcp-Param-Region", "eu")]),
                "tools/call",
                args(json!({"region": null})),
                known
            ),
            vec![fail(
                VerificationReason::HeaderUnexpected,
                "Mcp-Param-Region",
                Some("eu"),
                "params.arguments.region",
                None
            )]
        );
        // Base64 decoding to another value.
        let mut decoded = fail(
            VerificationReason::HeaderMismatch,
            "Mcp-Param-Region",
            Some("=?base64?dXMtZWFzdC0x?="),
            "params.arguments.region",
            Some(json!("eu-west-1")),
        );
        decoded.decoded_value = Some("us-east-1".into());
        assert_eq!(
            run(
                &with(&[("mcp-param-region", "=?base64?dXMtZWFzdC0x?=")]),
                "tools/call",
                args(json!({"region": "eu-west-1"})),
                known
            ),
            vec![decoded]
        );
        // Integers compare numerically; 10.5 is not 10.
        assert_eq!(
            run(
                &with(&[("mcp-param-limit", "10.5")]),
                "tools/call",
                args(json!({"limit": 10})),
                known
            ),
            vec![fail(
                VerificationReason::HeaderMismatch,
                "Mcp-Param-Limit",
                Some("10.5"),
                "params.arguments.limit",
                Some(json!(10))
            )]
        );
        // Malformed sentinel, undeclared header, duplicate.
        assert_eq!(
            run(
                &with(&[
                    ("mcp-param-region", "=?base64?not base64?="),
                    ("mcp-param-tenant", "acme"),
                ]),
                "tools/call",
                args(json!({"region": "eu"})),
                known
            ),
            vec![
                fail(
                    VerificationReason::HeaderMalformed,
                    "Mcp-Param-Region",
                    Some("=?base64?not base64?="),
                    "params.arguments.region",
                    Some(json!("eu"))
                ),
                fail(
                    VerificationReason::HeaderUnexpected,
                    "mcp-param-tenant",
                    Some("acme"),
                    "params.arguments",
                    None
                ),
            ]
        );
        assert_eq!(
            run(
                &with(&[("mcp-param-region", "eu"), ("MCP-PARAM-REGION", "us")]),
                "tools/call",
                args(json!({"region": "eu"})),
                known
            ),
            vec![fail(
                VerificationReason::HeaderDuplicated,
                "Mcp-Param-Region",
                Some("eu"),
                "params.arguments.region",
                Some(json!("eu"))
            )]
        );
    }

    #[test]
    fn param_headers_of_an_unknown_tool_are_counted_not_judged() {
        let headers = h(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "route"),
            ("mcp-param-region", "eu"),
        ]);
        let params = json!({"name": "route", "arguments": {"region": "us"}, "_meta": meta()});
        let v = verify(
            &RequestView {
                headers: &headers,
                method: "tools/call",
                params: Some(&params),
                is_request: true,
                stateless: true,
            },
            ToolSchema::Unknown,
        );
        assert_eq!((v.failures.len(), v.unverified_params), (0, 1));
    }

    #[test]
    fn protocol_version_and_method_mismatches_and_duplicates() {
        let got = run(
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/list"),
                ("Mcp-Method", "tools/list"),
            ],
            "prompts/list",
            json!({"_meta": meta()}),
            ToolSchema::Unknown,
        );
        assert_eq!(
            got,
            vec![
                fail(
                    VerificationReason::HeaderMismatch,
                    "MCP-Protocol-Version",
                    Some("2025-11-25"),
                    "params._meta.io.modelcontextprotocol/protocolVersion",
                    Some(json!("2026-07-28"))
                ),
                fail(
                    VerificationReason::HeaderDuplicated,
                    "Mcp-Method",
                    Some("tools/list"),
                    "method",
                    Some(json!("prompts/list"))
                ),
                fail(
                    VerificationReason::HeaderMismatch,
                    "Mcp-Method",
                    Some("tools/list"),
                    "method",
                    Some(json!("prompts/list"))
                ),
            ]
        );
    }

    #[test]
    fn header_values_decode_per_the_sentinel_rules() {
        assert_eq!(decode_header_value("us-west1"), Ok("us-west1".into()));
        assert_eq!(
            decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?="),
            Ok("Hello, 世界".into())
        );
        assert_eq!(
            decode_header_value("=?base64?IHBhZGRlZCA=?="),
            Ok(" padded ".into())
        );
        assert_eq!(
            decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
            Ok("=?base64?literal?=".into())
        );
        // Non-canonical (trailing bits), missing padding, not UTF-8, raw non-ASCII, markers
        // in upper case (not a sentinel: taken literally).
        for bad in ["=?base64?SGVsbG9=?=", "=?base64?SGVsbG8?="] {
            assert!(
                matches!(decode_header_value(bad), Err(HeaderValueError::Base64(_))),
                "{bad}"
            );
        }
        assert_eq!(
            decode_header_value("=?base64?/w==?="),
            Err(HeaderValueError::Utf8)
        );
        assert_eq!(
            decode_header_value("Zürich"),
            Err(HeaderValueError::Character {
                offset: 1,
                byte: 0xc3
            })
        );
        assert_eq!(
            decode_header_value("=?BASE64?YWRk?="),
            Ok("=?BASE64?YWRk?=".into())
        );
    }

    #[test]
    fn annotations_off_the_properties_chain_or_duplicated_make_the_schema_unusable() {
        assert_eq!(
            header_params(&route_schema()).map(|p| p
                .into_iter()
                .map(|p| (p.path.join("."), p.token, p.kind))
                .collect::<Vec<_>>()),
            Some(vec![
                ("limit".into(), "Limit".into(), "integer".into()),
                ("region".into(), "Region".into(), "string".into()),
            ])
        );
        let nested = json!({"properties": {"a": {"type": "object", "properties": {
            "b": {"type": "boolean", "x-mcp-header": "B"}}}}});
        assert_eq!(
            header_params(&nested).map(|p| p[0].path.clone()),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        for bad in [
            json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}}),
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"},
                                  "b": {"type": "string", "x-mcp-header": "a"}}}),
            json!({"x-mcp-header": "Root", "type": "string"}),
        ] {
            assert_eq!(header_params(&bad), None, "{bad}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let weird = [
            json!(null),
            json!([1, 2]),
            json!({"name": {"x": 1}, "arguments": "nope", "_meta": 7}),
            json!({"name": "route", "arguments": {"region": {"deep": [1]}}}),
        ];
        let schema = route_schema();
        for params in weird {
            for method in ["tools/call", "resources/read", "x"] {
                let headers = h(&[
                    ("mcp-name", "=?base64?"),
                    ("mcp-param-region", "\u{1}"),
                    ("mcp-param-", ""),
                ]);
                let _ = verify(
                    &RequestView {
                        headers: &headers,
                        method,
                        params: Some(&params),
                        is_request: true,
                        stateless: true,
                    },
                    ToolSchema::Known(Some(&schema)),
                );
            }
        }
    }
}
