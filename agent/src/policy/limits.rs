//! Size limits: body bytes, nesting depth and the longest string of a message's `params`.
//! Iterative walks: a 10,000-deep value costs heap, never stack.

use serde_json::Value;

use super::load::Limits;
use super::{Reason, ReasonKind};

/// Depth and longest string of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Containers on the deepest path (`{}` is 1, a scalar 0).
    pub depth: usize,
    /// Longest string, member names included, in bytes.
    pub longest_string: usize,
}

/// Measures `v` without recursion.
pub fn shape(v: &Value) -> Shape {
    let mut out = Shape::default();
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::String(s) => out.longest_string = out.longest_string.max(s.len()),
            Value::Array(items) => {
                out.depth = out.depth.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                out.depth = out.depth.max(depth + 1);
                for (k, item) in map {
                    out.longest_string = out.longest_string.max(k.len());
                    stack.push((item, depth + 1));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    out
}

/// The JSON pointer of the first string (value or member name) longer than `limit`.
fn long_string_path(v: &Value, limit: usize) -> Option<String> {
    let mut stack: Vec<(&Value, String)> = vec![(v, String::new())];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::String(s) if s.len() > limit => return Some(or_root(path)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((item, format!("{path}/{i}")));
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter().rev() {
                    let child = format!("{path}/{}", pointer_escape(k));
                    if k.len() > limit {
                        return Some(format!("{child} (member name)"));
                    }
                    stack.push((item, child));
                }
            }
            _ => {}
        }
    }
    None
}

fn or_root(path: String) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        path
    }
}

/// RFC 6901 escaping, with the name shortened for the report.
fn pointer_escape(k: &str) -> String {
    let short: String = k.chars().take(64).collect();
    let short = if short.len() < k.len() {
        format!("{short}…")
    } else {
        short
    };
    short.replace('~', "~0").replace('/', "~1")
}

/// Adds the limit findings of one message. Returns whether the message is too deep (then
/// nothing else may walk it recursively).
pub fn check(
    limits: &Limits,
    body_bytes: usize,
    params: Option<&Value>,
    out: &mut Vec<Reason>,
) -> bool {
    if body_bytes as u64 > limits.max_body_bytes {
        out.push(Reason {
            kind: ReasonKind::BodyTooLarge,
            detail: format!(
                "body of {body_bytes} bytes exceeds max_body_bytes {}",
                limits.max_body_bytes
            ),
        });
    }
    let Some(params) = params else {
        return false;
    };
    let s = shape(params);
    // The message object holds `params`: one more level.
    let depth = s.depth as u64 + 1;
    let too_deep = depth > limits.max_json_depth;
    if too_deep {
        out.push(Reason {
            kind: ReasonKind::JsonTooDeep,
            detail: format!(
                "message nested {depth} levels deep exceeds max_json_depth {} \
                 (schema validation skipped)",
                limits.max_json_depth
            ),
        });
    }
    if s.longest_string as u64 > limits.max_string_bytes {
        let limit = usize::try_from(limits.max_string_bytes).unwrap_or(usize::MAX);
        let at = long_string_path(params, limit).unwrap_or_else(|| "?".into());
        out.push(Reason {
            kind: ReasonKind::StringTooLong,
            detail: format!(
                "a string of {} bytes at params{at} exceeds max_string_bytes {}",
                s.longest_string, limits.max_string_bytes
            ),
        });
    }
    too_deep
}
