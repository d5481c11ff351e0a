//! What was said: the `params`, `result` and `error.data` of each message, bounded and
//! redacted before any sink sees them.
//!
//! * Redaction (mode `redacted`, the default) replaces the values of keys that name secrets
//!   ([`is_secret_key`]: `password`, `token`, `secret`, `api_key`, `authorization`, cookies,
//!   …) anywhere in the value, and the values at the configured JSON paths
//!   (`$.arguments.password`, `$.arguments.items[0].key`, `$..pin` for a key at any depth),
//!   by [`REDACTED`].
//! * Bounding: a value whose JSON is longer than `max_bytes` first has its long strings cut
//!   (each to a share of the bound, with a `…[+N bytes]` marker); if that is not enough, the
//!   value becomes the cut JSON text as a string. The record then says `truncated: true` and
//!   `payload_bytes` keeps the original size.
//!
//! Pure and iterative: no recursion on attacker-controlled depth (the decoder bounds depth,
//! but the walk does not rely on it).

use serde_json::Value;
use thiserror::Error;

/// The marker that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// How much content reaches the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PayloadMode {
    /// Everything, unredacted (for debugging on a trusted host).
    Full,
    /// Secret-named keys and configured paths replaced by `[REDACTED]` (default).
    #[default]
    Redacted,
    /// No `params`/`result`/`error_data` in records.
    Off,
}

impl std::fmt::Display for PayloadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadMode::Full => "full",
            PayloadMode::Redacted => "redacted",
            PayloadMode::Off => "off",
        })
    }
}

/// A JSON path that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("JSON path `{path}`: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
    /// `[*]` or `.*`: every member or element.
    Any,
    /// `..key`: that key at any depth below.
    Descend(String),
}

/// A small JSON path: `$.a.b`, `a.b`, `$.a[0]`, `$['x y']`, `$.a[*].b`, `$..b`.
/// Paths are relative to the redacted value (`params`, `result` or `error.data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let err = |reason: &str| PathError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = text.trim();
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
        } else if !rest.is_empty() && !rest.starts_with('.') && !rest.starts_with('[') {
            // `a.b` means `$.a.b`.
            let owned = format!(".{rest}");
            return JsonPath::parse(&format!("${owned}")).map(|mut p| {
                p.text = text.to_string();
                p
            });
        }
        let b = rest.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let ident_end = |from: usize| {
            let mut j = from;
            while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                j += 1;
            }
            j
        };
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let end = ident_end(i + 2);
                    if end == i + 2 {
                        return Err(err("`..` must be followed by a key"));
                    }
                    steps.push(Step::Descend(rest[i + 2..end].to_string()));
                    i = end;
                }
                b'.' => {
                    let end = ident_end(i + 1);
                    if end == i + 1 {
                        return Err(err("empty key after `.`"));
                    }
                    let key = &rest[i + 1..end];
                    steps.push(if key == "*" {
                        Step::Any
                    } else {
                        Step::Key(key.to_string())
                    });
                    i = end;
                }
                b'[' => {
                    let close = rest[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| err("`[` without `]`"))?;
                    let inner = rest[i + 1..close].trim();
                    let quoted = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                    steps.push(if inner == "*" {
                        Step::Any
                    } else if let Some(key) = quoted {
                        Step::Key(key.to_string())
                    } else {
                        Step::Index(
                            inner
                                .parse()
                                .map_err(|_| err("index must be a number, `*` or a quoted key"))?,
                        )
                    });
                    i = close + 1;
                }
                _ => return Err(err("expected `.` or `[`")),
            }
        }
        if steps.is_empty() {
            return Err(err("the path names no member"));
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The values this path names in `v` (read-only).
    pub fn select<'v>(&self, v: &'v Value) -> Vec<&'v Value> {
        let mut cur = vec![v];
        for step in &self.steps {
            let mut next = Vec::new();
            for node in cur {
                match step {
                    Step::Key(k) => next.extend(node.get(k.as_str())),
                    Step::Index(i) => next.extend(node.get(*i)),
                    Step::Any => match node {
                        Value::Object(m) => next.extend(m.values()),
                        Value::Array(a) => next.extend(a.iter()),
                        _ => {}
                    },
                    Step::Descend(k) => {
                        let mut stack = vec![node];
                        while let Some(n) = stack.pop() {
                            match n {
                                Value::Object(m) => {
                                    next.extend(m.get(k.as_str()));
                                    stack.extend(m.values());
                                }
                                Value::Array(a) => stack.extend(a.iter()),
                                _ => {}
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// Replaces every value this path names in `v` by [`REDACTED`]; returns how many.
    fn redact(&self, v: &mut Value) -> usize {
        let mut count = 0;
        let mut cur: Vec<&mut Value> = vec![v];
        let last = self.steps.len() - 1;
        for (n, step) in self.steps.iter().enumerate() {
            let mut next: Vec<&mut Value> = Vec::new();
            for node in cur {
                match step {
                    Step::Key(k) => next.extend(node.get_mut(k.as_str())),
                    Step::Index(i) => next.extend(node.get_mut(*i)),
                    Step::Any => match node {
                        Value::Object(m) => next.extend(m.values_mut()),
                        Value::Array(a) => next.extend(a.iter_mut()),
                        _ => {}
                    },
                    Step::Descend(k) => {
                        let mut stack = vec![node];
                        while let Some(n) = stack.pop() {
                            match n {
                                Value::Object(m) => {
                                    for (key, val) in m.iter_mut() {
                                        if key == k {
                                            next.push(val);
                                        } else {
                                            stack.push(val);
                                        }
                                    }
                                }
                                Value::Array(a) => stack.extend(a.iter_mut()),
                                _ => {}
                            }
                        }
                    }
                }
            }
            if n == last {
                for target in next {
                    *target = Value::String(REDACTED.into());
                    count += 1;
                }
                return count;
            }
            cur = next;
        }
        count
    }
}

/// Key names (lower case, `-`/`_` removed) whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "auth",
    "cookie",
    "setcookie",
    "credentials",
    "credential",
    "privatekey",
    "bearer",
    "jwt",
    "sessiontoken",
];

/// Suffixes (same normalisation) that name secrets: `db_password`, `client_secret`,
/// `x-api-key`, `access_token`, `github_token`… but not `progressToken`/`maxTokens`, which
/// MCP uses for other things.
const SECRET_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "apikey",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "bearertoken",
    "privatekey",
    "githubtoken",
    "apitoken",
    "cookie",
];

/// Whether a JSON key (or header name) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    // Every key of every message passes here: ASCII keys are normalised on the stack.
    if key.is_ascii() && key.len() <= SHORT_KEY_BYTES {
        let mut buf = [0u8; SHORT_KEY_BYTES];
        let mut n = 0;
        for b in key.bytes().filter(|b| !matches!(b, b'-' | b'_' | b'.')) {
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        let norm = &buf[..n];
        return SECRET_KEYS.iter().any(|k| k.as_bytes() == norm)
            || SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s.as_bytes()));
    }
    let norm: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_' && *c != '.')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.contains(&norm.as_str()) || SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s))
}

/// Longest key [`is_secret_key`] normalises without an allocation.
const SHORT_KEY_BYTES: usize = 64;

/// How content is bounded and redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentConfig {
    pub mode: PayloadMode,
    /// Longest serialised content kept per field.
    pub max_bytes: usize,
    /// Extra paths to redact (relative to `params`, `result` or `error.data`).
    pub redact_paths: Vec<JsonPath>,
    /// Request headers copied into message records (names, lower case); secret-named ones
    /// (`authorization`, `cookie`, …) are redacted even when listed.
    pub output_headers: Vec<String>,
}

/// Default bound on each content field.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            mode: PayloadMode::Redacted,
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            redact_paths: Vec::new(),
            output_headers: Vec::new(),
        }
    }
}

/// One content field as it goes into a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub value: Value,
    pub truncated: bool,
    /// Serialised size before bounding.
    pub original_bytes: u64,
}

impl ContentConfig {
    /// The record form of `v` under this configuration; `None` when payloads are off.
    pub fn render(&self, v: &Value) -> Option<Content> {
        if self.mode == PayloadMode::Off {
            return None;
        }
        Some(self.render_always(v))
    }

    /// [`ContentConfig::render`] of a value the caller gives away (no copy).
    pub fn render_owned(&self, mut value: Value) -> Option<Content> {
        if self.mode == PayloadMode::Off {
            return None;
        }
        let original = json_len(&value);
        let redacted = self.mode != PayloadMode::Full && self.redact(&mut value) > 0;
        let len = if redacted { json_len(&value) } else { original };
        let (value, truncated) = bound(value, len, self.max_bytes);
        Some(Content {
            value,
            truncated,
            original_bytes: original as u64,
        })
    }

    /// Like [`ContentConfig::render`], but redacted even when payloads are off (evidence of
    /// a verdict or attack).
    pub fn render_always(&self, v: &Value) -> Content {
        let mut value = v.clone();
        let redacted = self.mode != PayloadMode::Full && self.redact(&mut value) > 0;
        let original = json_len(v);
        // Unchanged by redaction: its length is the original's (one serialisation less).
        let len = if redacted { json_len(&value) } else { original };
        let original_bytes = original as u64;
        let (value, truncated) = bound(value, len, self.max_bytes);
        Content {
            value,
            truncated,
            original_bytes,
        }
    }

    /// Redacts in place: secret-named keys anywhere, then the configured paths.
    pub fn redact(&self, v: &mut Value) -> usize {
        let mut count = redact_secret_keys(v);
        for p in &self.redact_paths {
            count += p.redact(v);
        }
        count
    }

    /// The configured request headers of a message, secret-named ones redacted.
    pub fn headers(&self, headers: &[(String, String)]) -> Option<Vec<(String, String)>> {
        if self.output_headers.is_empty() {
            return None;
        }
        let out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                self.output_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(n))
            })
            .map(|(n, v)| {
                let n = n.to_ascii_lowercase();
                let v = if is_secret_key(&n) || n == "proxy-authorization" {
                    REDACTED.to_string()
                } else {
                    v.clone()
                };
                (n, v)
            })
            .collect();
        (!out.is_empty()).then_some(out)
    }
}

/// Replaces the values of secret-named keys anywhere in `v`.
fn redact_secret_keys(v: &mut Value) -> usize {
    let mut count = 0;
    let mut stack = vec![v];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if is_secret_key(k) && !matches!(val, Value::Null) {
                        *val = Value::String(REDACTED.into());
                        count += 1;
                    } else {
                        stack.push(val);
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
    count
}

/// Serialised length of `v` (compact JSON, exactly what `serde_json::to_writer` writes),
/// counted without writing it: iterative, strings measured against serde_json's escapes.
pub fn json_len(v: &Value) -> usize {
    let mut len = 0;
    let mut stack = vec![v];
    while let Some(node) = stack.pop() {
        len += match node {
            Value::Null => 4,
            Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(n) => number_len(n),
            Value::String(s) => str_len(s),
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len().saturating_sub(1)
            }
            Value::Object(m) => {
                stack.extend(m.values());
                // `{}`, the commas, and per member its quoted key and the colon.
                2 + m.len().saturating_sub(1) + m.keys().map(|k| str_len(k) + 1).sum::<usize>()
            }
        };
    }
    len
}

/// Bytes a number takes in serde_json's output.
fn number_len(n: &serde_json::Number) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, n);
    c.0
}

/// Bytes a string takes in serde_json's output: quotes, and for each byte its escape
/// (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`: 2 bytes; other control bytes `\u00XX`: 6).
fn str_len(s: &str) -> usize {
    const fn escaped_len() -> [u8; 256] {
        let mut t = [1u8; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = 6;
            b += 1;
        }
        t[0x08] = 2;
        t[0x09] = 2;
        t[0x0A] = 2;
        t[0x0C] = 2;
        t[0x0D] = 2;
        t[b'"' as usize] = 2;
        t[b'\\' as usize] = 2;
        t
    }
    static LEN: [u8; 256] = escaped_len();
    2 + s
        .bytes()
        .map(|b| usize::from(LEN[usize::from(b)]))
        .sum::<usize>()
}

/// Cuts `s` to at most `max` bytes at a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bounds `v` (`len` serialised bytes) to about `max` serialised bytes; returns the value
/// and whether it was cut.
fn bound(mut v: Value, len: usize, max: usize) -> (Value, bool) {
    if len <= max {
        return (v, false);
    }
    // First: long strings get a share of the bound each.
    let share = (max / 8).max(64);
    let mut stack = vec![&mut v];
    while let Some(node) = stack.pop() {
        match node {
            Value::String(s) if s.len() > share => {
                let extra = s.len() - cut(s, share).len();
                *s = format!("{}…[+{extra} bytes]", cut(s, share));
            }
            Value::Object(m) => stack.extend(m.values_mut()),
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
    if json_len(&v) <= max {
        return (v, true);
    }
    // Then: the JSON text itself, cut.
    let text = v.to_string();
    (Value::String(cut(&text, max).to_string()), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(mode: PayloadMode, paths: &[&str]) -> ContentConfig {
        ContentConfig {
            mode,
            redact_paths: paths
                .iter()
                .filter_map(|p| JsonPath::parse(p).ok())
                .collect(),
            ..ContentConfig::default()
        }
    }

    #[test]
    fn secret_named_keys_are_redacted_at_any_depth_but_mcp_tokens_are_not() {
        let c = cfg(PayloadMode::Redacted, &[]);
        let v = json!({"name": "login", "arguments": {"user": "ann", "password": "hunter2",
            "nested": [{"api_key": "k1"}, {"X-Api-Key": "k2", "Cookie": "c"}],
            "client_secret": "s"},
            "_meta": {"progressToken": 7}, "maxTokens": 100});
        let out = c.render(&v).map(|c| c.value).unwrap_or_default();
        assert_eq!(
            out,
            json!({"name": "login", "arguments": {"user": "ann", "password": REDACTED,
                "nested": [{"api_key": REDACTED}, {"X-Api-Key": REDACTED, "Cookie": REDACTED}],
                "client_secret": REDACTED},
                "_meta": {"progressToken": 7}, "maxTokens": 100})
        );
    }

    #[test]
    fn configured_paths_are_redacted() {
        let c = cfg(
            PayloadMode::Redacted,
            &["$.arguments.pin", "arguments.cards[*].number", "$..ssn"],
        );
        let v = json!({"arguments": {"pin": 1234, "cards": [{"number": "4111"}, {"number": "5500"}],
            "deep": {"x": {"ssn": "123-45"}}}});
        let out = c.render(&v).map(|c| c.value).unwrap_or_default();
        assert_eq!(
            out,
            json!({"arguments": {"pin": REDACTED, "cards": [{"number": REDACTED}, {"number": REDACTED}],
                "deep": {"x": {"ssn": REDACTED}}}})
        );
    }

    #[test]
    fn rendering_a_given_value_equals_rendering_a_copy() {
        let values = [
            json!({"user": "ann", "password": "hunter2", "n": [1, 2, {"token": null}]}),
            json!({"text": "x".repeat(100_000), "nested": {"api_key": "k"}}),
            json!({"plain": "nothing to redact", "list": [1, 2, 3]}),
            json!("just a string"),
        ];
        for mode in [PayloadMode::Full, PayloadMode::Redacted, PayloadMode::Off] {
            let c = ContentConfig {
                max_bytes: 1024,
                ..cfg(mode, &["$.n[0]"])
            };
            for v in &values {
                assert_eq!(c.render_owned(v.clone()), c.render(v), "{mode} {v}");
            }
        }
    }

    #[test]
    fn the_counted_length_is_the_serialised_length() {
        let mut all_bytes = String::new();
        for c in (0u8..=0x7f).map(char::from) {
            all_bytes.push(c);
        }
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12345678901234_i64),
            json!(u64::MAX),
            json!(1.5),
            json!(-0.000001234),
            json!(1e300),
            json!(""),
            json!(all_bytes),
            json!("é ü 日本 \u{1F600} \u{7f}"),
            json!([]),
            json!({}),
            json!([1, [2, [3, {"a": [null, true, "x\"y"]}]], {}]),
            json!({"k\n": {"\u{1}": [1.25, "v\\"], "b": {}}, "": ""}),
        ];
        for v in &values {
            let written = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
            assert_eq!(json_len(v), written, "{v}");
        }
    }

    #[test]
    fn secret_keys_are_recognised_alike_in_ascii_and_beyond() {
        for (key, secret) in [
            ("Password", true),
            ("X-Api-Key", true),
            ("client_secret", true),
            ("progressToken", false),
            ("maxTokens", false),
            ("GITHUB.TOKEN", true),
            ("pässword", false),
            ("ÄPI_KEY", false),
            ("my_APIKEY", true),
            (&"a".repeat(100), false),
            (&format!("{}_password", "a".repeat(100)), true),
        ] {
            assert_eq!(is_secret_key(key), secret, "{key}");
        }
    }

    #[test]
    fn full_mode_keeps_secrets_and_off_mode_reports_nothing() {
        let v = json!({"password": "p"});
        let full = cfg(PayloadMode::Full, &["$.password"]);
        assert_eq!(full.render(&v).map(|c| c.value), Some(v.clone()));
        assert_eq!(cfg(PayloadMode::Off, &[]).render(&v), None);
        assert_eq!(
            cfg(PayloadMode::Off, &[]).render_always(&v).value,
            json!({"password": REDACTED})
        );
    }

    #[test]
    fn large_content_is_bounded_with_the_original_size() {
        let c = ContentConfig {
            max_bytes: 1024,
            ..ContentConfig::default()
        };
        let big = "A".repeat(600 * 1024);
        let v = json!({"content": [{"type": "image", "data": big, "mimeType": "image/png"}]});
        let out = c.render(&v).unwrap_or_else(|| unreachable!());
        assert!(out.truncated);
        assert_eq!(out.original_bytes as usize, json_len(&v));
        assert!(json_len(&out.value) <= 1024, "{}", json_len(&out.value));
        assert_eq!(out.value["content"][0]["mimeType"], json!("image/png"));
        let data = out.value["content"][0]["data"].as_str().unwrap_or_default();
        assert!(data.ends_with(&format!("…[+{} bytes]", 600 * 1024 - 128)));
    }

    #[test]
    fn many_small_members_fall_back_to_cut_text() {
        let c = ContentConfig {
            max_bytes: 200,
            ..ContentConfig::default()
        };
        let v = Value::Array((0..1000).map(|i| json!(i)).collect());
        let out = c.render(&v).unwrap_or_else(|| unreachable!());
        assert!(out.truncated);
        assert!(out
            .value
            .as_str()
            .is_some_and(|s| s.len() <= 200 && s.starts_with("[0,1,2")));
    }

    #[test]
    fn paths_parse_or_name_their_error() {
        for ok in [
            "$.a",
            "a.b",
            "$['x y'].z",
            "$.a[0]",
            "$.a[*].b",
            "$..k",
            "$[\"q\"]",
        ] {
            assert!(JsonPath::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["$", "$.", "$.a[", "$.a[x]", "$..", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        let p = JsonPath::parse("$.a[1].b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.select(&json!({"a": [{}, {"b": 3}]})), vec![&json!(3)]);
    }

    #[test]
    fn only_configured_headers_are_output_and_secrets_stay_hidden() {
        let c = ContentConfig {
            output_headers: vec!["x-request-id".into(), "authorization".into()],
            ..ContentConfig::default()
        };
        let h = vec![
            ("X-Request-Id".to_string(), "r1".to_string()),
            ("Authorization".to_string(), "Bearer abc".to_string()),
            ("Host".to_string(), "h".to_string()),
        ];
        assert_eq!(
            c.headers(&h),
            Some(vec![
                ("x-request-id".into(), "r1".into()),
                ("authorization".into(), REDACTED.into())
            ])
        );
        assert_eq!(ContentConfig::default().headers(&h), None);
    }

    #[test]
    fn deep_values_do_not_overflow_the_stack() {
        let mut v = json!("leaf");
        for _ in 0..20_000 {
            // Not `json!`: it would serialise `v` (recursively) to embed it.
            let mut m = serde_json::Map::new();
            m.insert("password".into(), Value::Null);
            m.insert("k".into(), v);
            v = Value::Object(m);
        }
        let c = cfg(PayloadMode::Redacted, &["$..leafkey"]);
        assert_eq!(c.redact(&mut v), 0);
        // Take the deep value apart iteratively (its recursive drop would overflow).
        let mut cur = v;
        while let Value::Object(mut m) = cur {
            cur = m.remove("k").unwrap_or(Value::Null);
        }
    }
}
