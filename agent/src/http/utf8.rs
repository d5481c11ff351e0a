//! Bytes as text, lossily, at the speed of the valid case.

use std::borrow::Cow;

/// `bytes` as UTF-8 text, invalid sequences replaced by U+FFFD: the same result as
/// [`String::from_utf8_lossy`], but valid input (nearly all header values and SSE lines) is
/// checked by [`std::str::from_utf8`], whose ASCII fast path is several times quicker than
/// the chunk-by-chunk scan of the lossy conversion.
pub(crate) fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_standard_lossy_conversion() {
        for bytes in [
            &b""[..],
            b"text/event-stream",
            "caf\u{e9} \u{1F600}".as_bytes(),
            b"bad \xff\xfe byte",
            b"cut \xe2\x82",
            b"\xc0\xaf overlong",
        ] {
            assert_eq!(lossy(bytes), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
        assert!(matches!(lossy(b"ascii"), Cow::Borrowed("ascii")));
    }
}
