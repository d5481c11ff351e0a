//! Glob patterns of the policy file, compiled once into anchored regular expressions.
//!
//! * `*` matches any run of characters except `/`; `**` any run including `/`;
//! * `?` one character other than `/`;
//! * `[abc]`, `[a-z]`, `[!abc]` (or `[^abc]`) one character of (not of) a class;
//! * `\x` the character `x` itself; every other character stands for itself.

use std::fmt;

use regex::Regex;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// Upper bound on the compiled size of one pattern (a pattern is a few hundred bytes at most).
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// One compiled glob.
#[derive(Clone)]
pub struct Glob {
    text: String,
    re: Regex,
}

/// Why a glob was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError(pub String);

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    /// Compiles `text`; case-sensitive unless `ignore_case`.
    pub fn new(text: &str, ignore_case: bool) -> Result<Glob, GlobError> {
        let mut re = String::from(if ignore_case { "(?si)^" } else { "(?s)^" });
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    re.push_str(".*");
                    i += 2;
                    continue;
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '\\' => match chars.get(i + 1) {
                    Some(c) => {
                        re.push_str(&regex::escape(&c.to_string()));
                        i += 1;
                    }
                    None => {
                        return Err(GlobError(format!(
                            "bad glob `{text}`: trailing `\\` escapes nothing"
                        )))
                    }
                },
                '[' => {
                    let (class, next) = class(&chars, i).ok_or_else(|| {
                        GlobError(format!(
                            "bad glob `{text}`: `[` at character {} is never closed",
                            i + 1
                        ))
                    })?;
                    re.push_str(&class);
                    i = next;
                    continue;
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
            i += 1;
        }
        re.push('$');
        let re = regex::RegexBuilder::new(&re)
            .size_limit(MAX_COMPILED_BYTES)
            .build()
            .map_err(|e| GlobError(format!("bad glob `{text}`: {}", last_line(&e.to_string()))))?;
        Ok(Glob {
            text: text.to_string(),
            re,
        })
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The regex class for the `[` at `start`, and the index after its `]`. `None` if unclosed.
fn class(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    let mut out = String::from("[");
    if matches!(chars.get(i), Some('!') | Some('^')) {
        out.push('^');
        i += 1;
    }
    let first = i;
    while i < chars.len() {
        let c = chars[i];
        // A `]` right after the opening (or its negation) is a member, as in POSIX.
        if c == ']' && i > first {
            out.push(']');
            return Some((out, i + 1));
        }
        match c {
            '\\' => {
                let next = *chars.get(i + 1)?;
                out.push('\\');
                out.push(next);
                i += 2;
                continue;
            }
            '-' => out.push('-'),
            // Everything else literally (regex class metacharacters escaped).
            '[' | ']' | '^' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
        i += 1;
    }
    None
}

/// The last line of a (multi-line) regex error: the reason itself.
pub(crate) fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text);
    line.trim().trim_start_matches("error: ").to_string()
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated_str(d, "a glob string", |s| Glob::new(s, false).map_err(|e| e.0))
    }
}

/// Reads a string and checks it from inside the visitor, so that the YAML deserializer
/// stamps a refusal with the string's own line and column.
pub(crate) fn validated_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        check: fn(&str) -> Result<T, String>,
    }
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.check)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, check })
}

/// One glob or a list of globs: any of them matches.
#[derive(Debug, Clone)]
pub struct Globs(pub Vec<Glob>);

impl Globs {
    /// Whether any pattern matches `s`.
    pub fn any(&self, s: &str) -> bool {
        self.0.iter().any(|g| g.matches(s))
    }

    /// `"a"` or `"a" | "b"`.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|g| format!("{:?}", g.as_str()))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Globs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a glob string or a list of glob strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Globs, E> {
                Ok(Globs(vec![Glob::new(v, false).map_err(E::custom)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Globs, A::Error> {
                let mut out = Vec::new();
                while let Some(g) = seq.next_element::<Glob>()? {
                    out.push(g);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("an empty list matches nothing"));
                }
                Ok(Globs(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("explode", "explode", true),
            ("explode", "explode2", false),
            ("ex*", "explode", true),
            ("*", "a/b", false),
            ("**", "a/b", true),
            ("/srv/data/**", "/srv/data/x/y.txt", true),
            ("/srv/data/**", "/srv/database", false),
            ("/srv/*/x", "/srv/a/x", true),
            ("/srv/*/x", "/srv/a/b/x", false),
            ("t?ol", "tool", true),
            ("t?ol", "t/ol", false),
            ("[ab]c", "bc", true),
            ("[!ab]c", "bc", false),
            ("[!ab]c", "xc", true),
            ("[a-c]1", "b1", true),
            ("[]]x", "]x", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("a.b", "axb", false),
            ("(x)+", "(x)+", true),
            ("tools/*", "tools/call", true),
            ("tools/*", "resources/read", false),
            ("", "", true),
        ];
        for (pat, s, want) in cases {
            let g = Glob::new(pat, false).unwrap();
            assert_eq!(g.matches(s), *want, "{pat:?} on {s:?}");
        }
    }

    #[test]
    fn ignore_case_is_for_hosts_only() {
        assert!(Glob::new("*.Internal", true)
            .unwrap()
            .matches("mcp.INTERNAL"));
        assert!(!Glob::new("*.Internal", false)
            .unwrap()
            .matches("mcp.INTERNAL"));
    }

    #[test]
    fn broken_globs_are_refused_with_the_reason() {
        let e = Glob::new("a[bc", false).unwrap_err();
        assert_eq!(e.0, "bad glob `a[bc`: `[` at character 2 is never closed");
        let e = Glob::new("ab\\", false).unwrap_err();
        assert_eq!(e.0, "bad glob `ab\\`: trailing `\\` escapes nothing");
        assert!(Glob::new("[z-a]", false).is_err());
    }
}
