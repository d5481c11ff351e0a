//! Reading the MCP fields we report out of JSON-RPC params and results.
//!
//! Every accessor tolerates any shape: a field of the wrong type reads as absent.

use serde_json::Value;

use super::record::MAX_ERROR_MESSAGE_BYTES;

/// `_meta` key carrying the protocol version of a stateless (2026-07-28+) request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's `Implementation` in stateless requests.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying the client's capabilities in stateless requests.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `result._meta` key carrying the server's `Implementation` in stateless results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// First revision without the handshake (dates compare as strings).
pub const FIRST_STATELESS_REVISION: &str = "2026-07-28";

/// An `Implementation {name, version}` (clientInfo / serverInfo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Implementation {
    pub name: Option<String>,
    pub version: Option<String>,
}

impl Implementation {
    pub fn from_value(v: Option<&Value>) -> Option<Implementation> {
        let v = v?.as_object()?;
        Some(Implementation {
            name: str_field(v.get("name")),
            version: str_field(v.get("version")),
        })
    }
}

/// What a stateless-era request says about its client in `params._meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatelessMeta {
    pub protocol_version: String,
    pub client: Option<Implementation>,
    pub capabilities: Option<Value>,
}

impl StatelessMeta {
    /// Present only when `params._meta` names a protocol version.
    pub fn from_params(params: Option<&Value>) -> Option<StatelessMeta> {
        let meta = meta(params)?;
        let protocol_version = str_field(meta.get(META_PROTOCOL_VERSION))?;
        Some(StatelessMeta {
            protocol_version,
            client: Implementation::from_value(meta.get(META_CLIENT_INFO)),
            capabilities: meta.get(META_CLIENT_CAPABILITIES).cloned(),
        })
    }
}

/// Whether an `MCP-Protocol-Version` value names a stateless revision.
pub fn is_stateless_revision(version: &str) -> bool {
    version.len() == FIRST_STATELESS_REVISION.len()
        && version
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_digit() || *b == b'-')
        && version >= FIRST_STATELESS_REVISION
}

/// The target a request names: `params.name` for `tools/call` and `prompts/get`,
/// `params.uri` for `resources/read`.
pub fn target_name(method: &str, params: Option<&Value>) -> Option<String> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    str_field(params?.get(field))
}

/// The progress token: `params._meta.progressToken` on a request, `params.progressToken`
/// on `notifications/progress`. Only strings and numbers are tokens.
pub fn progress_token(method: &str, params: Option<&Value>, is_request: bool) -> Option<Value> {
    let token = if is_request {
        meta(params)?.get("progressToken")
    } else if method == "notifications/progress" {
        params?.get("progressToken")
    } else {
        None
    }?;
    matches!(token, Value::String(_) | Value::Number(_)).then(|| token.clone())
}

/// For a result with `isError: true`: `Some(first text content)`; otherwise `None`.
pub fn tool_error(result: &Value) -> Option<Option<String>> {
    if result.get("isError") != Some(&Value::Bool(true)) {
        return None;
    }
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|items| {
            items.iter().find_map(|item| {
                (item.get("type").and_then(Value::as_str) == Some("text"))
                    .then(|| item.get("text").and_then(Value::as_str))
                    .flatten()
            })
        })
        .map(cap_message);
    Some(text)
}

/// `result._meta["io.modelcontextprotocol/serverInfo"]` of a stateless result.
pub fn stateless_server_info(result: &Value) -> Option<Implementation> {
    Implementation::from_value(result.get("_meta")?.get(META_SERVER_INFO))
}

/// An error message cut to [`MAX_ERROR_MESSAGE_BYTES`] at a char boundary.
pub fn cap_message(s: &str) -> String {
    if s.len() <= MAX_ERROR_MESSAGE_BYTES {
        return s.to_string();
    }
    let mut end = MAX_ERROR_MESSAGE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A string member.
pub fn str_field(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn meta(params: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn target_names_come_from_name_or_uri() {
        let p = json!({"name": "add", "uri": "file:///x", "arguments": {}});
        assert_eq!(target_name("tools/call", Some(&p)), Some("add".into()));
        assert_eq!(target_name("prompts/get", Some(&p)), Some("add".into()));
        assert_eq!(
            target_name("resources/read", Some(&p)),
            Some("file:///x".into())
        );
        assert_eq!(target_name("tools/list", Some(&p)), None);
        assert_eq!(target_name("tools/call", Some(&json!({"name": 3}))), None);
        assert_eq!(target_name("tools/call", None), None);
    }

    #[test]
    fn progress_tokens_of_requests_and_progress_notifications() {
        let req = json!({"name": "slow", "_meta": {"progressToken": "tok-1"}});
        assert_eq!(
            progress_token("tools/call", Some(&req), true),
            Some(json!("tok-1"))
        );
        let note = json!({"progressToken": 3, "progress": 0.5, "total": 1.0});
        assert_eq!(
            progress_token("notifications/progress", Some(&note), false),
            Some(json!(3))
        );
        assert_eq!(
            progress_token("notifications/message", Some(&note), false),
            None
        );
        let bad = json!({"_meta": {"progressToken": {"x": 1}}});
        assert_eq!(progress_token("tools/call", Some(&bad), true), None);
    }

    #[test]
    fn tool_error_takes_the_first_text_content() {
        let r = json!({"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"},
                                   {"type": "text", "text": "division by zero"}],
                       "isError": true});
        assert_eq!(tool_error(&r), Some(Some("division by zero".into())));
        assert_eq!(
            tool_error(&json!({"content": [], "isError": true})),
            Some(None)
        );
        assert_eq!(tool_error(&json!({"content": [], "isError": false})), None);
        assert_eq!(tool_error(&json!({"isError": "true"})), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let cut = cap_message(&s);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert_eq!(cut.len(), MAX_ERROR_MESSAGE_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn stateless_meta_requires_the_protocol_version_key() {
        let p = json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "2.3.0"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }});
        assert_eq!(
            StatelessMeta::from_params(Some(&p)),
            Some(StatelessMeta {
                protocol_version: "2026-07-28".into(),
                client: Some(Implementation {
                    name: Some("mcp".into()),
                    version: Some("2.3.0".into())
                }),
                capabilities: Some(json!({})),
            })
        );
        assert_eq!(
            StatelessMeta::from_params(Some(&json!({"_meta": {"progressToken": 1}}))),
            None
        );
    }

    #[test]
    fn stateless_revisions_are_dates_from_2026_07_28() {
        assert!(is_stateless_revision("2026-07-28"));
        assert!(is_stateless_revision("2027-01-01"));
        assert!(!is_stateless_revision("2025-11-25"));
        assert!(!is_stateless_revision("latest"));
        assert!(!is_stateless_revision("9999"));
    }
}
