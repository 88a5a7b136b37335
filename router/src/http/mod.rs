//! HTTP/1.1, sans-IO: pure functions over byte buffers that say complete, partial or invalid.
//!
//! Nothing here reads a socket. The connection layer (`crate::runtime::conn`) owns the buffers and the
//! deadlines; this module owns the wire format (RFC 9112): request heads ([`request`]), chunked
//! bodies ([`chunked`]), upstream response heads ([`response`]) and endpoint URLs ([`url`]). Parsed heads are kept as
//! offsets into the connection's buffer, so headers are borrowed, never copied.
//!
//! Line endings: CRLF only. RFC 9112 §2.2 lets a recipient accept a bare LF; this module
//! refuses it in request heads (400), upstream response heads (502) and chunked framing in
//! both directions, because two parsers that disagree about where a line ends are how
//! requests are smuggled past a front proxy.

pub mod chunked;
pub mod request;
pub mod response;
pub mod url;

use std::ops::Range;

/// A header as two byte ranges into the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderIdx {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

impl HeaderIdx {
    /// The header's name in `buf` (the buffer it was parsed from).
    #[must_use]
    pub fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.name.clone()).unwrap_or_default()
    }

    /// The header's value in `buf`, without surrounding whitespace.
    #[must_use]
    pub fn value<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.value.clone()).unwrap_or_default().trim_ascii()
    }
}

/// Offsets of `part` inside `whole`; `part` must be a subslice of `whole` (httparse hands
/// back subslices of the buffer it was given).
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// Whether some LF in `head` is not preceded by CR.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head.get(i - 1) != Some(&b'\r'))
}

/// Parses a `Content-Length` value: one or more digits, nothing else (RFC 9110 §8.6). A list
/// of equal values (`5, 5`) is accepted as the RFC allows; differing values are not.
#[must_use]
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        match found {
            Some(prev) if prev != n => return None,
            _ => found = Some(n),
        }
    }
    found
}

/// Whether a comma-separated header value contains `token` (case-insensitive), as
/// `Connection: keep-alive, Upgrade` does.
#[must_use]
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Case-insensitive match of a header name against `name` or `prefix*`.
#[must_use]
pub fn header_matches(pattern: &str, name: &[u8]) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes())),
        None => pattern.as_bytes().eq_ignore_ascii_case(name),
    }
}

/// The value of the first header named `name`, as text (`None` when absent or not UTF-8).
#[must_use]
pub fn header_str<'b>(buf: &'b [u8], headers: &[HeaderIdx], name: &[u8]) -> Option<&'b str> {
    headers
        .iter()
        .find(|h| h.name(buf).eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value(buf)).ok())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the framing headers a proxy must rewrite: never
/// forwarded in either direction.
#[must_use]
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 10] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        assert_eq!(parse_content_length(b"5, 5"), Some(5));
        assert_eq!(parse_content_length(b"5, 6"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"+1"), None);
        assert_eq!(parse_content_length(b"1e3"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive", b"close"));
    }
}
