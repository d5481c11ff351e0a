//! The JSON paths of argument conditions: `$.a.b`, `a.b`, `a[0]`, `$['x y']`, `$["x"]`.
//! Only member names and array indexes: no wildcards, filters or slices.

use std::fmt;

use serde::de::{Deserialize, Deserializer};
use serde_json::Value;

/// One step into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Member(String),
    Index(usize),
}

/// A parsed path, applied to `tools/call` `arguments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `text`; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |at: usize, what: &str| {
            format!("bad JSON path `{text}` at character {}: {what}", at + 1)
        };
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut steps = Vec::new();
        if chars.first() == Some(&'$') {
            i = 1;
            if i == chars.len() {
                return Err(bad(
                    0,
                    "`$` alone names the whole arguments object: name a member",
                ));
            }
            if chars[i] == '.' {
                i += 1;
            } else if chars[i] != '[' {
                return Err(bad(i, "expected `.` or `[` after `$`"));
            }
        }
        loop {
            if i >= chars.len() {
                return Err(bad(
                    i.saturating_sub(1),
                    "the path ends where a member name belongs",
                ));
            }
            if chars[i] == '[' {
                let (step, next) = bracket(&chars, i).map_err(|m| bad(i, &m))?;
                steps.push(step);
                i = next;
            } else {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if matches!(chars[i], ']' | '\'' | '"' | '*' | ' ') {
                        return Err(bad(
                            i,
                            &format!("`{}` in a bare member name (use $['...'])", chars[i]),
                        ));
                    }
                    i += 1;
                }
                if i == start {
                    return Err(bad(i, "empty member name"));
                }
                steps.push(Step::Member(chars[start..i].iter().collect()));
            }
            // After a step: end, `.name`, or `[...]`.
            while i < chars.len() && chars[i] == '[' {
                let (step, next) = bracket(&chars, i).map_err(|m| bad(i, &m))?;
                steps.push(step);
                i = next;
            }
            if i == chars.len() {
                break;
            }
            if chars[i] != '.' {
                return Err(bad(i, "expected `.` or `[`"));
            }
            i += 1;
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The value at this path under `root`, if every step exists.
    pub fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut v = root;
        for step in &self.steps {
            v = match (step, v) {
                (Step::Member(m), Value::Object(o)) => o.get(m)?,
                (Step::Index(n), Value::Array(a)) => a.get(*n)?,
                _ => return None,
            };
        }
        Some(v)
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// `[0]`, `['x y']` or `["x y"]` starting at `start`; the step and the index after `]`.
fn bracket(chars: &[char], start: usize) -> Result<(Step, usize), String> {
    let mut i = start + 1;
    match chars.get(i) {
        Some(q @ ('\'' | '"')) => {
            let q = *q;
            i += 1;
            let mut name = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("unclosed quoted member name".into()),
                    Some('\\') => {
                        let c = chars.get(i + 1).ok_or("unclosed quoted member name")?;
                        name.push(*c);
                        i += 2;
                    }
                    Some(c) if *c == q => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        name.push(*c);
                        i += 1;
                    }
                }
            }
            if chars.get(i) != Some(&']') {
                return Err("expected `]` after the quoted member name".into());
            }
            Ok((Step::Member(name), i + 1))
        }
        Some(c) if c.is_ascii_digit() => {
            let s = i;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            if chars.get(i) != Some(&']') {
                return Err("expected `]` after the index".into());
            }
            let digits: String = chars[s..i].iter().collect();
            let n = digits
                .parse::<usize>()
                .map_err(|_| format!("index {digits} is too large"))?;
            Ok((Step::Index(n), i + 1))
        }
        _ => Err("expected an index or a quoted member name after `[`".into()),
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::glob::validated_str(d, "a JSON path string", JsonPath::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spelling_reaches_the_same_value() {
        let v = json!({"a": {"b": [10, {"x y": "deep"}]}, "url": "u"});
        let cases: &[(&str, Option<Value>)] = &[
            ("url", Some(json!("u"))),
            ("$.url", Some(json!("u"))),
            ("$['url']", Some(json!("u"))),
            ("$[\"url\"]", Some(json!("u"))),
            ("a.b[0]", Some(json!(10))),
            ("$.a.b[1]['x y']", Some(json!("deep"))),
            ("a.b[2]", None),
            ("a.c", None),
            ("url.x", None),
            ("a[0]", None),
        ];
        for (p, want) in cases {
            let path = JsonPath::parse(p).unwrap();
            assert_eq!(path.lookup(&v).cloned(), *want, "{p}");
        }
    }

    #[test]
    fn broken_paths_say_where() {
        let cases: &[(&str, &str)] = &[
            ("$", "bad JSON path `$` at character 1: `$` alone names the whole arguments object: name a member"),
            ("a..b", "bad JSON path `a..b` at character 3: empty member name"),
            ("a.", "bad JSON path `a.` at character 2: the path ends where a member name belongs"),
            ("a[x]", "bad JSON path `a[x]` at character 2: expected an index or a quoted member name after `[`"),
            ("$['x", "bad JSON path `$['x` at character 2: unclosed quoted member name"),
            ("a[0", "bad JSON path `a[0` at character 2: expected `]` after the index"),
            ("a b", "bad JSON path `a b` at character 2: ` ` in a bare member name (use $['...'])"),
            ("$x", "bad JSON path `$x` at character 2: expected `.` or `[` after `$`"),
            ("a[0]b", "bad JSON path `a[0]b` at character 5: expected `.` or `[`"),
        ];
        for (p, want) in cases {
            assert_eq!(JsonPath::parse(p).unwrap_err(), *want, "{p}");
        }
    }
}
