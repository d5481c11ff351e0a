//! Header fields of one HTTP message, in the order they were sent.

use std::sync::Arc;

/// The header fields of a message: `(name, value)` pairs in wire order, names as sent.
///
/// Lookups are case-insensitive (RFC 9110 §5.1). Values are decoded as UTF-8 with invalid
/// bytes replaced (U+FFFD), and have surrounding whitespace removed.
///
/// Shared: a clone (the connection keeps each request head until its response, and hands
/// it on with every payload of the exchange) costs a reference count, not a copy of every
/// field; a push to a shared list copies it first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Arc<Vec<(String, String)>>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self(Arc::new(Vec::new()))
    }

    /// Room for `additional` more fields.
    pub fn reserve(&mut self, additional: usize) {
        Arc::make_mut(&mut self.0).reserve(additional);
    }

    /// Appends a field at the end.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(&mut self.0).push((name.into(), value.into()));
    }

    /// The value of the first field called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// The values of every field called `name` (case-insensitive), in wire order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The elements of a comma-separated list field (RFC 9110 §5.6.1) across every field
    /// called `name`: trimmed, empty elements skipped.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect()
    }

    /// Whether a comma-separated list field `name` holds `token` (case-insensitive),
    /// e.g. `has_token("connection", "close")`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).iter().any(|e| {
            e.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(token))
        })
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// The pairs, consuming the headers.
    pub fn into_inner(self) -> Vec<(String, String)> {
        Arc::unwrap_or_clone(self.0)
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self(Arc::new(pairs))
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        Self(Arc::new(
            iter.into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        ))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a (String, String);
    type IntoIter = std::slice::Iter<'a, (String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        [
            ("Content-Type", "text/event-stream"),
            ("mcp-session-id", "abc"),
            ("Transfer-Encoding", "gzip"),
            ("transfer-encoding", " chunked "),
            ("Connection", "keep-alive, Upgrade;x=1"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn lookup_ignores_the_case_of_the_name() {
        let h = sample();
        assert_eq!(h.get("content-type"), Some("text/event-stream"));
        assert_eq!(h.get("MCP-Session-Id"), Some("abc"));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn get_all_returns_every_field_in_wire_order() {
        let h = sample();
        let all: Vec<&str> = h.get_all("TRANSFER-ENCODING").collect();
        assert_eq!(all, vec!["gzip", " chunked "]);
    }

    #[test]
    fn list_splits_and_trims_comma_separated_values_across_fields() {
        let h = sample();
        assert_eq!(h.list("transfer-encoding"), vec!["gzip", "chunked"]);
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
    }

    #[test]
    fn iter_keeps_names_as_sent() {
        let h = sample();
        assert_eq!(h.iter().next(), Some(("Content-Type", "text/event-stream")));
        assert_eq!(h.len(), 5);
        assert!(!h.is_empty());
    }
}
