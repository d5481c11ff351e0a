//! JSON-RPC 2.0 message shapes and their classification from a parsed JSON value.

use serde_json::Value;

use super::{RpcError, RpcId};

/// One JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcMessage {
    /// A call that expects an answer (`id` present).
    Request {
        id: RpcId,
        method: String,
        params: Option<Value>,
    },
    /// A call without `id`: no answer follows.
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A successful answer.
    Response { id: RpcId, result: Value },
    /// A failed answer. `id` is `None` when it was `null` or absent (the peer could not read
    /// the request's id, e.g. a parse error or a transport-level refusal).
    Error {
        id: Option<RpcId>,
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

impl RpcMessage {
    /// The method name of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            RpcMessage::Request { method, .. } | RpcMessage::Notification { method, .. } => {
                Some(method)
            }
            RpcMessage::Response { .. } | RpcMessage::Error { .. } => None,
        }
    }

    /// The id, when the message has one.
    pub fn id(&self) -> Option<&RpcId> {
        match self {
            RpcMessage::Request { id, .. } | RpcMessage::Response { id, .. } => Some(id),
            RpcMessage::Error { id, .. } => id.as_ref(),
            RpcMessage::Notification { .. } => None,
        }
    }

    /// Classifies one JSON value (an object) as a JSON-RPC 2.0 message.
    pub fn from_value(value: Value) -> Result<RpcMessage, RpcError> {
        let Value::Object(mut obj) = value else {
            return Err(not_rpc(format!(
                "expected an object, found {}",
                json_type(&value)
            )));
        };
        match obj.get("jsonrpc") {
            Some(Value::String(v)) if v == "2.0" => {}
            Some(other) => {
                return Err(not_rpc(format!(
                    "`jsonrpc` is {}, expected \"2.0\"",
                    snippet(other)
                )))
            }
            None => return Err(not_rpc("`jsonrpc` member is missing".to_string())),
        }

        let has_result = obj.contains_key("result");
        let has_error = obj.contains_key("error");
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(not_rpc(format!(
                    "`method` is {}, expected a string",
                    json_type(&method)
                )));
            };
            if has_result || has_error {
                return Err(not_rpc(format!(
                    "`method` \"{}\" together with `{}`",
                    truncate(&method),
                    if has_result { "result" } else { "error" }
                )));
            }
            let params = obj.remove("params");
            return match obj.remove("id") {
                None => Ok(RpcMessage::Notification { method, params }),
                Some(id) => Ok(RpcMessage::Request {
                    id: request_id(&id, "request")?,
                    method,
                    params,
                }),
            };
        }

        match (obj.remove("result"), obj.remove("error")) {
            (Some(_), Some(_)) => Err(not_rpc("both `result` and `error` are present".to_string())),
            (Some(result), None) => match obj.get("id") {
                Some(id) => Ok(RpcMessage::Response {
                    id: request_id(id, "response")?,
                    result,
                }),
                None => Err(not_rpc("response without `id`".to_string())),
            },
            (None, Some(error)) => error_message(obj.get("id"), error),
            (None, None) => Err(not_rpc(
                "none of `method`, `result` or `error` is present".to_string(),
            )),
        }
    }
}

/// The messages of one body.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcPayload {
    /// One entry per message; a batch element that is not a valid message is an `Err`
    /// at its position, its neighbours are unaffected.
    pub messages: Vec<Result<RpcMessage, RpcError>>,
    /// The body was a JSON array (a batch), even one of a single element.
    pub batch: bool,
}

fn error_message(id: Option<&Value>, error: Value) -> Result<RpcMessage, RpcError> {
    let id = match id {
        None | Some(Value::Null) => None,
        Some(id) => Some(request_id(id, "error response")?),
    };
    let Value::Object(mut error) = error else {
        return Err(not_rpc(format!(
            "`error` is {}, expected an object",
            json_type(&error)
        )));
    };
    let code = match error.get("code") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| not_rpc(format!("`error.code` {n} is not an integer")))?,
        Some(other) => {
            return Err(not_rpc(format!(
                "`error.code` is {}, expected an integer",
                json_type(other)
            )))
        }
        None => return Err(not_rpc("`error.code` is missing".to_string())),
    };
    let message = match error.remove("message") {
        Some(Value::String(m)) => m,
        Some(other) => {
            return Err(not_rpc(format!(
                "`error.message` is {}, expected a string",
                json_type(&other)
            )))
        }
        None => return Err(not_rpc("`error.message` is missing".to_string())),
    };
    Ok(RpcMessage::Error {
        id,
        code,
        message,
        data: error.remove("data"),
    })
}

fn request_id(id: &Value, what: &str) -> Result<RpcId, RpcError> {
    RpcId::from_value(id).ok_or_else(|| {
        not_rpc(format!(
            "{what} `id` is {}, expected a string or a number",
            snippet(id)
        ))
    })
}

fn not_rpc(reason: String) -> RpcError {
    RpcError::NotJsonRpc { reason }
}

/// The JSON type of a value, for error messages.
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a scalar (or the type of a container) for error messages.
fn snippet(v: &Value) -> String {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::String(s) => format!("\"{}\"", truncate(s)),
        Value::Array(_) | Value::Object(_) => json_type(v).to_string(),
    }
}

const SNIPPET_CHARS: usize = 64;

fn truncate(s: &str) -> String {
    if s.chars().count() <= SNIPPET_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(SNIPPET_CHARS).collect();
        t.push('…');
        t
    }
}
