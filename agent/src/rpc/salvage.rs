//! What a JSON-RPC message that was cut short still says: its `id`, `method`, whether it is a
//! result, and an error's `code` and `message`, read from the first bytes of the body.
//!
//! For messages the capture could not carry whole (a write above the capture limit, a size
//! limit, a capture gap): they are still reported, marked truncated, instead of vanishing.
//! The scan reads the top-level object's members in order and stops where the bytes stop;
//! members after the cut are unknown (the Python SDK writes `jsonrpc` and `id` first, node
//! writes `id` last: a node answer's id comes from its HTTP exchange instead).

use serde_json::Value;

use super::RpcId;

/// The members of a cut-short message's top-level object that were readable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Salvaged {
    pub id: Option<RpcId>,
    pub method: Option<String>,
    /// A `result` member began.
    pub result: bool,
    /// `error.code`, when it was readable.
    pub error_code: Option<i64>,
    /// `error.message`, when it was readable.
    pub error_message: Option<String>,
    /// An `error` member began.
    pub error: bool,
    /// `params.name` and `params.uri`, when they came before the cut (what the policy
    /// matches a `tools/call`, `prompts/get` or `resources/read` by).
    pub params_name: Option<String>,
    pub params_uri: Option<String>,
}

/// Reads the top-level members of the JSON object that `prefix` begins (after whitespace and
/// a UTF-8 BOM). `None` when it does not begin an object.
pub fn salvage(prefix: &[u8]) -> Option<Salvaged> {
    let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let mut s = Scan { b: prefix, i: 0 };
    s.ws();
    if s.peek()? != b'{' {
        return None;
    }
    s.i += 1;
    let mut out = Salvaged::default();
    s.members(|s, key| {
        match key.as_str() {
            "id" => out.id = s.scalar().as_ref().and_then(RpcId::from_value),
            "method" => {
                out.method = s.scalar().and_then(|v| v.as_str().map(str::to_owned));
            }
            "result" => {
                out.result = true;
                s.skip_value()?;
            }
            "params" => {
                s.ws();
                if s.peek()? == b'{' {
                    s.i += 1;
                    s.members(|s, key| {
                        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
                        match key.as_str() {
                            "name" => out.params_name = text(s.scalar()),
                            "uri" => out.params_uri = text(s.scalar()),
                            _ => s.skip_value()?,
                        }
                        Some(())
                    })?;
                } else {
                    s.skip_value()?;
                }
            }
            "error" => {
                out.error = true;
                s.ws();
                if s.peek()? == b'{' {
                    s.i += 1;
                    s.members(|s, key| {
                        match key.as_str() {
                            "code" => out.error_code = s.scalar().and_then(|v| v.as_i64()),
                            "message" => {
                                out.error_message =
                                    s.scalar().and_then(|v| v.as_str().map(str::to_owned));
                            }
                            _ => s.skip_value()?,
                        }
                        Some(())
                    });
                } else {
                    s.skip_value()?;
                }
            }
            _ => s.skip_value()?,
        }
        Some(())
    });
    Some(out)
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// The members of an object whose `{` was consumed, each handed to `f` with the scan at
    /// its value; stops at the object's end or where the bytes (or the syntax) stop.
    fn members(&mut self, mut f: impl FnMut(&mut Self, String) -> Option<()>) -> Option<()> {
        loop {
            self.ws();
            match self.peek()? {
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                b',' => {
                    self.i += 1;
                    continue;
                }
                b'"' => {}
                _ => return None,
            }
            let key = self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            f(self, key)?;
        }
    }

    /// A complete JSON string at the scan position, decoded.
    fn string(&mut self) -> Option<String> {
        let end = self.string_end()?;
        let s: String = serde_json::from_slice(&self.b[self.i..end]).ok()?;
        self.i = end;
        Some(s)
    }

    /// The offset just past the string that starts at the scan position.
    fn string_end(&self) -> Option<usize> {
        let mut j = self.i + 1;
        let mut escaped = false;
        while j < self.b.len() {
            match self.b[j] {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => return Some(j + 1),
                _ => {}
            }
            j += 1;
        }
        None
    }

    /// A complete string, number, `true`, `false` or `null`; `None` (scan stopped) for
    /// anything else or a value the bytes cut.
    fn scalar(&mut self) -> Option<Value> {
        let start = self.i;
        let end = match self.peek()? {
            b'"' => self.string_end()?,
            b'{' | b'[' => {
                self.skip_value()?;
                return None;
            }
            _ => {
                let mut j = self.i;
                while j < self.b.len() && !matches!(self.b[j], b',' | b'}' | b']') {
                    j += 1;
                }
                if j == self.b.len() {
                    return None; // a number may go on after the cut
                }
                j
            }
        };
        let v = serde_json::from_slice(self.b[start..end].trim_ascii()).ok();
        self.i = end;
        v
    }

    /// Skips one value (any JSON), `None` when the bytes end inside it.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i = self.string_end()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            self.i = self.string_end()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                return None;
            }
            _ => {
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']') {
                    self.i += 1;
                }
                if self.i == self.b.len() {
                    return None;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_answer_cut_inside_its_result_keeps_its_id() {
        let body = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"aaaa"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.id, Some(RpcId::Num(7)));
        assert!(s.result);
        assert_eq!(s.method, None);
    }

    #[test]
    fn a_node_request_cut_inside_its_params_keeps_its_method_not_its_id() {
        let body = br#"{"method":"tools/call","params":{"name":"upload","arguments":{"blob":"QUJD"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.method.as_deref(), Some("tools/call"));
        assert_eq!(s.id, None);
        assert!(!s.result);
    }

    #[test]
    fn a_request_cut_inside_its_arguments_keeps_the_tool_name_before_them() {
        let body = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"up\u006coad","arguments":{"blob":"QUJD"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.params_name.as_deref(), Some("upload"));
        assert_eq!(s.params_uri, None);
        let body = br#"{"method":"resources/read","params":{"uri":"file:///a","_meta":{"x":"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.params_uri.as_deref(), Some("file:///a"));
    }

    #[test]
    fn a_name_after_the_cut_is_not_known_and_one_inside_the_arguments_is_not_taken() {
        let body = br#"{"method":"tools/call","params":{"arguments":{"name":"decoy","blob":"QUJD"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.method.as_deref(), Some("tools/call"));
        assert_eq!(s.params_name, None);
        // Whole params before the cut: its members after the arguments count, and the
        // members after params are read too.
        let body = br#"{"params":{"arguments":{"name":"decoy"},"name":"real"},"method":"tools/call","id":"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.params_name.as_deref(), Some("real"));
        assert_eq!(s.method.as_deref(), Some("tools/call"));
    }

    #[test]
    fn an_error_answer_gives_code_and_message_even_when_its_data_is_cut() {
        let body = br#" {"jsonrpc":"2.0","id":"a\"b","error":{"code":-32602,"message":"bad \u00e9","data":{"x":[1,2,"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.id, Some(RpcId::Str("a\"b".into())));
        assert!(s.error);
        assert_eq!(s.error_code, Some(-32602));
        assert_eq!(s.error_message.as_deref(), Some("bad é"));
    }

    #[test]
    fn members_after_a_skipped_nested_value_are_read() {
        let body =
            br#"{"params":{"a":[{"b":"}"}],"c":null},"method":"x/y","id":12,"jsonrpc":"2.0"}"#;
        let s = salvage(body).expect("an object");
        assert_eq!(s.method.as_deref(), Some("x/y"));
        assert_eq!(s.id, Some(RpcId::Num(12)));
    }

    #[test]
    fn a_number_cut_at_the_end_is_not_guessed() {
        let s = salvage(br#"{"method":"ping","id":12"#).expect("an object");
        assert_eq!(s.method.as_deref(), Some("ping"));
        assert_eq!(s.id, None, "12 may be the start of 123");
    }

    #[test]
    fn what_is_not_an_object_gives_nothing_and_nothing_panics() {
        assert_eq!(salvage(b""), None);
        assert_eq!(salvage(b"[{\"id\":1}]"), None);
        assert_eq!(salvage(b"garbage"), None);
        let body = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"m"},"x":[[["#;
        for i in 0..body.len() {
            let _ = salvage(&body[..i]);
        }
        for junk in [&b"{\"a\":}}}"[..], b"{,,,\"", b"{\"\\", b"{\"id\":[}]"] {
            let _ = salvage(junk);
        }
    }
}
