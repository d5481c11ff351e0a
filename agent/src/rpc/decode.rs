//! Body → [`RpcPayload`], bounded in size and nesting depth.

use serde_json::Value;

use super::message::json_type;
use super::{RpcError, RpcMessage, RpcPayload};

/// Default largest body decoded: 16 MiB (tool results may carry base64 images).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Deepest nesting of arrays/objects accepted: 127 levels.
///
/// This is exactly what serde_json parses: its recursion limit of 128 rejects the 128th
/// level, and a larger configured value is clamped to it. When serde stops there, one
/// linear scan (no recursion) names the level's offset; a smaller configured value is
/// checked by that scan before parsing.
pub const DEFAULT_MAX_DEPTH: usize = 127;

/// Bounds applied by [`decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Bodies longer than this are rejected with [`RpcError::TooLarge`].
    pub max_body_bytes: usize,
    /// Nesting deeper than this is rejected with [`RpcError::TooDeep`]; clamped to
    /// [`DEFAULT_MAX_DEPTH`].
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Decodes one body with the default limits. See [`decode_with`].
pub fn decode(body: &[u8]) -> Result<RpcPayload, RpcError> {
    decode_with(body, &DecodeLimits::default())
}

/// Decodes one body: a single JSON-RPC object or a batch array.
///
/// The outer `Err` means nothing could be decoded (not JSON, too large, too deep, empty);
/// inside a batch every element is classified on its own.
pub fn decode_with(body: &[u8], limits: &DecodeLimits) -> Result<RpcPayload, RpcError> {
    if body.len() > limits.max_body_bytes {
        return Err(RpcError::TooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RpcError::EmptyBody { len: body.len() });
    }
    let max_depth = limits.max_depth.min(DEFAULT_MAX_DEPTH);
    // serde_json's own recursion limit is exactly the default depth, so only a tighter
    // configured limit needs the scan before parsing (it costs about as much as a tenth of
    // the parse); at the default, serde stops at the 128th level and the scan names it.
    if max_depth < DEFAULT_MAX_DEPTH {
        check_depth(body, max_depth)?;
    }

    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            return check_depth(body, DEFAULT_MAX_DEPTH)
                .err()
                .unwrap_or(RpcError::TooDeep {
                    limit: max_depth,
                    depth: max_depth + 1,
                    offset: 0,
                });
        }
        // serde_json renders "<what> at line L column C"; keep <what>, the position has
        // its own fields.
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        RpcError::NotJson {
            line: e.line(),
            column: e.column(),
            detail: full.strip_suffix(&position).unwrap_or(&full).to_string(),
        }
    })?;

    match value {
        Value::Array(items) if items.is_empty() => Err(RpcError::EmptyBatch),
        Value::Array(items) => Ok(RpcPayload {
            messages: items.into_iter().map(RpcMessage::from_value).collect(),
            batch: true,
        }),
        Value::Object(_) => Ok(RpcPayload {
            messages: vec![RpcMessage::from_value(value)],
            batch: false,
        }),
        other => Err(RpcError::NotJsonRpc {
            reason: format!(
                "top-level JSON is {}, expected an object or a batch array",
                json_type(&other)
            ),
        }),
    }
}

/// Scans the bytes once, outside strings, counting open `[`/`{`; fails at the first bracket
/// that goes deeper than `max_depth`. Does not validate JSON (serde does that next).
fn check_depth(body: &[u8], max_depth: usize) -> Result<(), RpcError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(RpcError::TooDeep {
                        limit: max_depth,
                        depth,
                        offset,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::RpcId;
    use serde_json::json;

    fn single(body: &str) -> Result<RpcMessage, RpcError> {
        let mut payload = match decode(body.as_bytes()) {
            Ok(payload) => payload,
            Err(e) => panic!("body must decode: {e}"),
        };
        assert!(!payload.batch, "a single object is not a batch");
        assert_eq!(payload.messages.len(), 1);
        payload.messages.remove(0)
    }

    fn reason(err: Result<RpcMessage, RpcError>) -> String {
        match err {
            Err(RpcError::NotJsonRpc { reason }) => reason,
            other => panic!("expected NotJsonRpc, got {other:?}"),
        }
    }

    #[test]
    fn initialize_request_decodes_with_its_params() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"mcp","version":"0.1.0"}}}"#;
        assert_eq!(
            single(body),
            Ok(RpcMessage::Request {
                id: RpcId::Num(1),
                method: "initialize".into(),
                params: Some(json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"sampling": {}},
                    "clientInfo": {"name": "mcp", "version": "0.1.0"}
                })),
            })
        );
    }

    #[test]
    fn any_method_name_is_accepted_and_absent_params_stay_absent() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":"a-1","method":"vendor/x.y z"}"#),
            Ok(RpcMessage::Request {
                id: RpcId::Str("a-1".into()),
                method: "vendor/x.y z".into(),
                params: None,
            })
        );
    }

    #[test]
    fn notification_has_no_id() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(RpcMessage::Notification {
                method: "notifications/initialized".into(),
                params: None,
            })
        );
    }

    #[test]
    fn response_with_string_id() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":"x7","result":{"tools":[]}}"#),
            Ok(RpcMessage::Response {
                id: RpcId::Str("x7".into()),
                result: json!({"tools": []}),
            })
        );
    }

    #[test]
    fn error_with_null_id_as_sent_for_an_unknown_session() {
        assert_eq!(
            single(
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#
            ),
            Ok(RpcMessage::Error {
                id: None,
                code: -32600,
                message: "Session not found".into(),
                data: None,
            })
        );
    }

    #[test]
    fn error_without_id_and_with_data() {
        assert_eq!(
            single(
                r#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Unsupported protocol version","data":{"supported":["2025-11-25"],"requested":"1.0"}}}"#
            ),
            Ok(RpcMessage::Error {
                id: None,
                code: -32602,
                message: "Unsupported protocol version".into(),
                data: Some(json!({"supported": ["2025-11-25"], "requested": "1.0"})),
            })
        );
    }

    #[test]
    fn batch_decodes_each_element_on_its_own() {
        let body = r#"[
            {"jsonrpc":"2.0","id":1,"method":"tools/list"},
            {"jsonrpc":"1.0","id":2,"method":"ping"},
            {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}},
            42
        ]"#;
        let payload = decode(body.as_bytes());
        let Ok(payload) = payload else {
            panic!("batch must decode: {payload:?}")
        };
        assert!(payload.batch);
        assert_eq!(payload.messages.len(), 4);
        assert_eq!(
            payload.messages[0],
            Ok(RpcMessage::Request {
                id: RpcId::Num(1),
                method: "tools/list".into(),
                params: None,
            })
        );
        assert_eq!(
            reason(payload.messages[1].clone()),
            "`jsonrpc` is \"1.0\", expected \"2.0\""
        );
        assert_eq!(
            payload.messages[2],
            Ok(RpcMessage::Notification {
                method: "notifications/progress".into(),
                params: Some(json!({"progressToken": 1, "progress": 0.5})),
            })
        );
        assert_eq!(
            reason(payload.messages[3].clone()),
            "expected an object, found a number"
        );
    }

    #[test]
    fn a_batch_of_one_is_still_a_batch() {
        let payload = decode(br#"[{"jsonrpc":"2.0","method":"ping","id":9}]"#);
        assert_eq!(payload.map(|p| (p.batch, p.messages.len())), Ok((true, 1)));
    }

    #[test]
    fn empty_batch_is_rejected() {
        assert_eq!(decode(b" [ ] "), Err(RpcError::EmptyBatch));
    }

    #[test]
    fn shape_violations_name_the_member() {
        let cases = [
            (r#"{"id":1,"method":"ping"}"#, "`jsonrpc` member is missing"),
            (
                r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
                "`jsonrpc` is 2.0, expected \"2.0\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "request `id` is null, expected a string or a number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
                "request `id` is an array, expected a string or a number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                "`method` is a number, expected a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
                "both `result` and `error` are present",
            ),
            (r#"{"jsonrpc":"2.0","result":{}}"#, "response without `id`"),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
                "`error.code` 1.5 is not an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1}}"#,
                "`error.message` is missing",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#,
                "`error` is a string, expected an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                "none of `method`, `result` or `error` is present",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
                "`method` \"ping\" together with `result`",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(reason(single(body)), want, "body: {body}");
        }
    }

    #[test]
    fn top_level_scalar_is_not_json_rpc() {
        assert_eq!(
            decode(b"\"hello\""),
            Err(RpcError::NotJsonRpc {
                reason: "top-level JSON is a string, expected an object or a batch array".into()
            })
        );
    }

    #[test]
    fn invalid_json_reports_line_and_column() {
        let err = decode(b"{\"jsonrpc\":\"2.0\",\n \"id\": 1,,}");
        let Err(RpcError::NotJson {
            line,
            column,
            detail,
        }) = err
        else {
            panic!("expected NotJson, got {err:?}")
        };
        assert_eq!((line, column), (2, 10));
        assert_eq!(detail, "key must be a string");
    }

    #[test]
    fn empty_and_whitespace_bodies_are_reported_as_empty() {
        assert_eq!(decode(b""), Err(RpcError::EmptyBody { len: 0 }));
        assert_eq!(decode(b" \r\n\t"), Err(RpcError::EmptyBody { len: 4 }));
    }

    #[test]
    fn utf8_bom_is_skipped() {
        let body = b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}";
        assert_eq!(decode(body).map(|p| p.messages.len()), Ok(1));
    }

    #[test]
    fn bodies_above_the_limit_are_rejected_before_parsing() {
        let limits = DecodeLimits {
            max_body_bytes: 10,
            ..DecodeLimits::default()
        };
        assert_eq!(
            decode_with(br#"{"jsonrpc":"2.0","method":"ping"}"#, &limits),
            Err(RpcError::TooLarge {
                size: 33,
                limit: 10
            })
        );
    }

    fn nested(levels: usize) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","method":"tools/call","params":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    #[test]
    fn nesting_up_to_the_limit_decodes() {
        // The object itself is level 1, so 126 arrays reach exactly 127 levels.
        let payload = decode(nested(DEFAULT_MAX_DEPTH - 1).as_bytes());
        assert_eq!(payload.map(|p| p.messages[0].is_ok()), Ok(true));
    }

    #[test]
    fn nesting_past_the_limit_is_too_deep_with_the_offset() {
        let body = nested(DEFAULT_MAX_DEPTH);
        let offset = body.find('[').map(|i| i + DEFAULT_MAX_DEPTH - 1);
        assert_eq!(
            decode(body.as_bytes()).err(),
            Some(RpcError::TooDeep {
                limit: DEFAULT_MAX_DEPTH,
                depth: DEFAULT_MAX_DEPTH + 1,
                offset: offset.unwrap_or(0),
            })
        );
    }

    #[test]
    fn very_deep_nesting_is_rejected_without_recursing() {
        let body = "[".repeat(1_000_000);
        assert!(matches!(
            decode(body.as_bytes()),
            Err(RpcError::TooDeep {
                depth: 128,
                offset: 127,
                ..
            })
        ));
    }

    #[test]
    fn configured_depth_is_honoured_and_clamped() {
        let tight = DecodeLimits {
            max_depth: 2,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode_with(nested(2).as_bytes(), &tight),
            Err(RpcError::TooDeep { limit: 2, .. })
        ));
        let loose = DecodeLimits {
            max_depth: 10_000,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode_with(nested(500).as_bytes(), &loose),
            Err(RpcError::TooDeep {
                limit: DEFAULT_MAX_DEPTH,
                ..
            })
        ));
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"x","params":{{"s":"{}\"{}"}}}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(
            decode(body.as_bytes()).map(|p| p.messages[0].is_ok()),
            Ok(true)
        );
    }

    #[test]
    fn errors_render_their_evidence() {
        let e = RpcError::TooDeep {
            limit: 127,
            depth: 128,
            offset: 300,
        };
        assert_eq!(
            e.to_string(),
            "JSON nests deeper than 127 levels (level 128 opened at byte 300); \
             rejected to bound recursion"
        );
        assert_eq!(
            RpcError::TooLarge {
                size: 20,
                limit: 10
            }
            .to_string(),
            "JSON-RPC body of 20 bytes exceeds the 10-byte limit"
        );
    }

    #[test]
    fn truncated_and_mutated_real_bodies_never_panic() {
        let body = br#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":"\u00e9\"x"},"_meta":{"progressToken":3}}},{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"3"}],"isError":false}}]"#;
        for cut in 0..=body.len() {
            let _ = decode(&body[..cut]);
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut mutated = body.to_vec();
            let pos = (seed as usize) % mutated.len();
            mutated[pos] = (seed >> 32) as u8;
            let _ = decode(&mutated);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn json_alphabet_soup_never_panics(s in r#"[\[\]{}":,0-9a-z\\. -]{0,256}"#) {
            let _ = decode(s.as_bytes());
        }
    }
}
