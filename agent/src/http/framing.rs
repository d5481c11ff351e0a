//! How long a message body is (RFC 9112 §6.3) and how it is coded.

use super::headers::Headers;

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body: the message ends with its head.
    Empty,
    /// A 1xx interim response: no body, and the exchange goes on with the final response.
    Interim,
    /// `Content-Length` bytes.
    Length(u64),
    /// Transfer-Encoding ending in chunked.
    Chunked,
    /// A response without length: the body ends when the connection closes.
    UntilClose,
    /// The message ends with its head and the connection stops carrying HTTP
    /// (101 Switching Protocols, a successful CONNECT).
    Tunnel,
}

/// The framing and codings of one message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyPlan {
    pub length: BodyLength,
    /// Codings to remove, in the order the sender applied them (Content-Encoding, then
    /// transfer codings other than chunked).
    pub codings: Vec<String>,
    /// `Content-Type: text/event-stream`.
    pub is_sse: bool,
}

pub(crate) fn request_plan(method: &str, headers: &Headers) -> Result<BodyPlan, String> {
    if method == "CONNECT" {
        return Ok(plan(BodyLength::Tunnel, Vec::new(), headers));
    }
    let (length, te) = match transfer_codings(headers)? {
        Some((te, true)) => (BodyLength::Chunked, te),
        Some((te, false)) => {
            return Err(format!(
                "request Transfer-Encoding \"{}\" does not end in chunked, so its body length \
                 cannot be known",
                te.join(", ")
            ))
        }
        None => match content_length(headers)? {
            Some(0) | None => (BodyLength::Empty, Vec::new()),
            Some(n) => (BodyLength::Length(n), Vec::new()),
        },
    };
    Ok(plan(length, te, headers))
}

/// `request_method`: the method of the request this answers, when known.
pub(crate) fn response_plan(
    status: u16,
    request_method: Option<&str>,
    headers: &Headers,
) -> Result<BodyPlan, String> {
    let no_body = |length| Ok(plan(length, Vec::new(), headers));
    match status {
        101 => return no_body(BodyLength::Tunnel),
        100..=199 => return no_body(BodyLength::Interim),
        204 | 304 => return no_body(BodyLength::Empty),
        _ => {}
    }
    match request_method {
        Some("HEAD") => return no_body(BodyLength::Empty),
        Some("CONNECT") if (200..300).contains(&status) => return no_body(BodyLength::Tunnel),
        _ => {}
    }
    let (length, te) = match transfer_codings(headers)? {
        Some((te, true)) => (BodyLength::Chunked, te),
        Some((te, false)) => (BodyLength::UntilClose, te),
        None => match content_length(headers)? {
            Some(0) => (BodyLength::Empty, Vec::new()),
            Some(n) => (BodyLength::Length(n), Vec::new()),
            None => (BodyLength::UntilClose, Vec::new()),
        },
    };
    Ok(plan(length, te, headers))
}

fn plan(length: BodyLength, transfer: Vec<String>, headers: &Headers) -> BodyPlan {
    let mut codings: Vec<String> = headers
        .list("content-encoding")
        .into_iter()
        .map(str::to_owned)
        .collect();
    codings.extend(transfer);
    let is_sse = headers.get("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
    });
    BodyPlan {
        length,
        codings,
        is_sse,
    }
}

/// The transfer codings other than chunked, and whether chunked is the final one;
/// `None` without Transfer-Encoding.
fn transfer_codings(headers: &Headers) -> Result<Option<(Vec<String>, bool)>, String> {
    let list = headers.list("transfer-encoding");
    let Some((last, rest)) = list.split_last() else {
        return Ok(None);
    };
    let is_chunked = |c: &&str| {
        c.split(';')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("chunked"))
    };
    if rest.iter().any(is_chunked) {
        return Err(format!(
            "Transfer-Encoding \"{}\" applies chunked before another coding",
            list.join(", ")
        ));
    }
    if is_chunked(last) {
        Ok(Some((rest.iter().map(|c| (*c).to_owned()).collect(), true)))
    } else {
        Ok(Some((
            list.iter().map(|c| (*c).to_owned()).collect(),
            false,
        )))
    }
}

/// The Content-Length (RFC 9110 §8.6): every value, across repeated fields and lists,
/// must be the same decimal number.
fn content_length(headers: &Headers) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for v in headers.list("content-length") {
        let n = if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            None
        };
        let Some(n) = n else {
            return Err(format!("invalid Content-Length {v:?}"));
        };
        match found {
            Some(prev) if prev != n => {
                return Err(format!("conflicting Content-Length values {prev} and {n}"))
            }
            _ => found = Some(n),
        }
    }
    if found.is_none() && headers.get("content-length").is_some() {
        return Err("empty Content-Length".into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    #[test]
    fn requests_without_length_have_no_body() {
        let p = request_plan("GET", &h(&[("accept", "text/event-stream")])).expect("valid");
        assert_eq!(p.length, BodyLength::Empty);
        assert!(!p.is_sse);
    }

    #[test]
    fn chunked_wins_over_content_length_and_other_codings_are_kept() {
        let p = request_plan(
            "POST",
            &h(&[
                ("Content-Length", "10"),
                ("Transfer-Encoding", "gzip, chunked"),
                ("Content-Encoding", "deflate"),
            ]),
        )
        .expect("valid");
        assert_eq!(p.length, BodyLength::Chunked);
        assert_eq!(p.codings, vec!["deflate", "gzip"]);
    }

    #[test]
    fn a_request_whose_transfer_coding_is_not_chunked_is_refused() {
        assert!(request_plan("POST", &h(&[("transfer-encoding", "gzip")])).is_err());
        assert!(request_plan("POST", &h(&[("transfer-encoding", "chunked, gzip")])).is_err());
    }

    #[test]
    fn content_length_must_agree_and_be_decimal() {
        let ok = request_plan(
            "POST",
            &h(&[("content-length", "5"), ("Content-Length", "5, 5")]),
        );
        assert_eq!(ok.map(|p| p.length), Ok(BodyLength::Length(5)));
        assert_eq!(
            request_plan(
                "POST",
                &h(&[("content-length", "5"), ("content-length", "6")])
            ),
            Err("conflicting Content-Length values 5 and 6".into())
        );
        assert_eq!(
            request_plan("POST", &h(&[("content-length", "-1")])),
            Err("invalid Content-Length \"-1\"".into())
        );
        assert!(request_plan("POST", &h(&[("content-length", "")])).is_err());
    }

    #[test]
    fn response_rules_follow_status_and_method() {
        let cl = h(&[("content-length", "12")]);
        let len = |s, m| response_plan(s, m, &cl).map(|p| p.length);
        assert_eq!(len(200, Some("HEAD")), Ok(BodyLength::Empty));
        assert_eq!(len(204, None), Ok(BodyLength::Empty));
        assert_eq!(len(304, Some("GET")), Ok(BodyLength::Empty));
        assert_eq!(len(100, None), Ok(BodyLength::Interim));
        assert_eq!(len(101, None), Ok(BodyLength::Tunnel));
        assert_eq!(len(200, Some("CONNECT")), Ok(BodyLength::Tunnel));
        assert_eq!(len(200, Some("GET")), Ok(BodyLength::Length(12)));
        let none = h(&[]);
        assert_eq!(
            response_plan(200, None, &none).map(|p| p.length),
            Ok(BodyLength::UntilClose)
        );
        let te = h(&[("transfer-encoding", "gzip")]);
        let p = response_plan(200, None, &te).expect("valid");
        assert_eq!(
            (p.length, p.codings),
            (BodyLength::UntilClose, vec!["gzip".to_string()])
        );
    }

    #[test]
    fn event_stream_is_recognised_with_parameters_and_any_case() {
        let p = response_plan(
            200,
            None,
            &h(&[("Content-Type", "Text/Event-Stream; charset=utf-8")]),
        )
        .expect("valid");
        assert!(p.is_sse);
    }
}
