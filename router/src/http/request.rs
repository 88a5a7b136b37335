//! Request heads: request line, header fields and message framing (RFC 9112 §2–§6).
//!
//! [`parse_head`] is called on the connection buffer after every read. It answers "not yet"
//! (`Ok(None)`) for a partial head, the parsed [`Head`] for a complete one, and a [`HeadError`]
//! naming the status to answer with for anything the router refuses: a partial head is never an
//! error, an over-long one always is, so a slow or hostile client cannot make the buffer grow
//! past the configured caps.

use std::ops::Range;

use super::{HeaderIdx, has_bare_lf, has_token, parse_content_length, range_in};

/// Hard ceiling on the configurable header-count cap: the parse array lives on the stack.
pub const MAX_HEADERS_CEILING: usize = 512;

/// Caps applied while parsing a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields, in bytes.
    pub max_head_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Decoded body, in bytes.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Request methods the router distinguishes; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A complete, accepted request head. Ranges index the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target as sent (origin form: path and optional query).
    pub target: Range<usize>,
    /// HTTP/1.`minor`.
    pub minor: u8,
    /// Length of the head in bytes, through the blank line that ends it.
    pub len: usize,
    pub framing: Framing,
    /// Whether the client lets the connection be reused after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

impl Head {
    /// The path of the target, without the query.
    #[must_use]
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let target = buf.get(self.target.clone()).unwrap_or_default();
        match memchr::memchr(b'?', target) {
            Some(q) => target.get(..q).unwrap_or_default(),
            None => target,
        }
    }
}

/// Why a request head is refused; each maps to one status in [`HeadError::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request target is longer than the limit of {0} bytes")]
    UriTooLong(usize),
    #[error("request header section is larger than the limit of {0} bytes")]
    HeadTooLarge(usize),
    #[error("request has more than the limit of {0} header fields")]
    TooManyHeaders(usize),
    #[error("transfer coding is not supported: only `chunked` is")]
    UnsupportedTransferCoding,
    #[error("HTTP version is not supported: use HTTP/1.1 or HTTP/1.0")]
    Version,
    #[error("a request body needs a `Content-Length` or `Transfer-Encoding: chunked` header")]
    LengthRequired,
    #[error("request body of {0} bytes is larger than the limit of {1} bytes")]
    BodyTooLarge(u64, u64),
}

impl HeadError {
    /// The response status for this refusal.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::LengthRequired => 411,
            Self::BodyTooLarge(..) => 413,
            Self::UriTooLong(_) => 414,
            Self::HeadTooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::UnsupportedTransferCoding => 501,
            Self::Version => 505,
        }
    }
}

/// Parses the request head at the start of `buf`, filling `headers` with the header fields.
///
/// Returns `Ok(None)` while the head is incomplete and within limits.
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
    headers: &mut Vec<HeaderIdx>,
) -> Result<Option<Head>, HeadError> {
    // RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request line
    // (CRLF only, like every other line here).
    let skip = buf
        .chunks(2)
        .take_while(|pair| *pair == b"\r\n")
        .count()
        .min(4)
        * 2;
    let rest = buf.get(skip..).unwrap_or_default();
    check_request_line(rest, limits)?;

    let cap = limits.max_headers.clamp(1, MAX_HEADERS_CEILING);
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS_CEILING];
    let mut req = httparse::Request::new(parsed.get_mut(..cap).unwrap_or_default());
    let len = match req.parse(rest) {
        Ok(httparse::Status::Complete(len)) => skip + len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(HeadError::HeadTooLarge(limits.max_head_bytes));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders(limits.max_headers));
        }
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(e) => return Err(HeadError::Malformed(describe(e))),
    };
    if len > limits.max_head_bytes {
        return Err(HeadError::HeadTooLarge(limits.max_head_bytes));
    }
    // RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; we do not. A front
    // proxy that reads lines differently from us is how requests get smuggled, and every
    // client worth serving sends CRLF. (The chunked decoder has the same rule.)
    if has_bare_lf(buf.get(skip..len).unwrap_or_default()) {
        return Err(HeadError::Malformed(
            "a line of the request head ends with a bare LF; use CRLF",
        ));
    }
    let method = match req.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let path = req.path.unwrap_or_default();
    if path.len() > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong(limits.max_uri_bytes));
    }
    if !path.starts_with('/') && path != "*" {
        return Err(HeadError::Malformed(
            "request target must be a path starting with `/`",
        ));
    }
    let target = range_in(buf, path.as_bytes());
    let minor = req.version.unwrap_or(1);

    headers.clear();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut hosts = 0usize;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value.trim_ascii();
        headers.push(HeaderIdx {
            name: range_in(buf, name),
            value: range_in(buf, h.value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)
                .ok_or(HeadError::Malformed("invalid `Content-Length` value"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(HeadError::Malformed("conflicting `Content-Length` headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // RFC 9112 §6.1: chunked must be the final coding, and the router decodes no
            // other coding, so anything but exactly `chunked` is refused.
            transfer_encoding = true;
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue;
                }
                if !coding.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Err(HeadError::UnsupportedTransferCoding);
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(value, b"close");
            keep_alive_token |= has_token(value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    if minor == 1 && hosts != 1 {
        return Err(HeadError::Malformed(
            "an HTTP/1.1 request needs exactly one `Host` header",
        ));
    }
    // RFC 9112 §6.1: a message with both is a smuggling attempt or a broken intermediary;
    // refusing it is the safe reading.
    if transfer_encoding && length.is_some() {
        return Err(HeadError::Malformed(
            "both `Content-Length` and `Transfer-Encoding` are present",
        ));
    }
    if transfer_encoding && !chunked {
        return Err(HeadError::UnsupportedTransferCoding);
    }
    if chunked && minor == 0 {
        return Err(HeadError::Malformed(
            "`Transfer-Encoding` is not allowed in HTTP/1.0",
        ));
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) if method == Method::Post || req.method == Some("PUT") => {
            return Err(HeadError::LengthRequired);
        }
        (false, None) => Framing::Empty,
    };
    if let Framing::Length(n) = framing
        && n > limits.max_body_bytes
    {
        return Err(HeadError::BodyTooLarge(n, limits.max_body_bytes));
    }
    Ok(Some(Head {
        method,
        target,
        minor,
        len,
        framing,
        keep_alive: !close && (minor == 1 || keep_alive_token),
        expect_continue: expect_continue && minor == 1,
    }))
}

/// Checks the request line before header parsing, so an over-long target is refused with
/// 414 (not 431) and a newer HTTP version with 505 (not 400).
fn check_request_line(buf: &[u8], limits: &Limits) -> Result<(), HeadError> {
    let Some(eol) = memchr::memchr(b'\n', buf) else {
        // `METHOD SP target SP HTTP/1.1` is the target plus at most a few dozen bytes.
        if buf.len() > limits.max_uri_bytes + 64 {
            return Err(HeadError::UriTooLong(limits.max_uri_bytes));
        }
        return Ok(());
    };
    let line = buf.get(..eol).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.rsplitn(2, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let before = parts.next().unwrap_or_default();
    if let Some(v) = version.strip_prefix(b"HTTP/")
        && v != b"1.1"
        && v != b"1.0"
        && v.len() == 3
        && v[0].is_ascii_digit()
        && v[1] == b'.'
        && v[2].is_ascii_digit()
    {
        return Err(HeadError::Version);
    }
    let target_len = before
        .iter()
        .position(|&b| b == b' ')
        .map_or(0, |sp| before.len() - sp - 1);
    if target_len > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong(limits.max_uri_bytes));
    }
    Ok(())
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
        parse_head(buf, &Limits::default(), &mut Vec::new())
    }

    fn small() -> Limits {
        Limits {
            max_head_bytes: 256,
            max_headers: 4,
            max_uri_bytes: 64,
            max_body_bytes: 100,
        }
    }

    const POST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Tenant: acme\r\n\r\nhello";

    #[test]
    fn complete_head_with_body_after_it() {
        let mut headers = Vec::new();
        let head = parse_head(POST, &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path(POST), b"/v1/chat/completions");
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(&POST[head.len..], b"hello");
        assert!(head.keep_alive);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[2].name(POST), b"X-Tenant");
        assert_eq!(headers[2].value(POST), b"acme");
    }

    #[test]
    fn every_split_point_is_partial_until_the_blank_line() {
        let head_len = POST.len() - 5;
        for cut in 0..head_len {
            assert_eq!(parse(&POST[..cut]), Ok(None), "cut at {cut}");
        }
        for cut in head_len..=POST.len() {
            let head = parse(&POST[..cut]).unwrap().unwrap();
            assert_eq!(head.len, head_len, "cut at {cut}");
        }
    }

    #[test]
    fn pipelined_requests_parse_one_after_the_other() {
        let two = [POST, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        let first = parse(&two).unwrap().unwrap();
        let next = &two[first.len + 5..];
        let second = parse(next).unwrap().unwrap();
        assert_eq!(second.method, Method::Get);
        assert_eq!(second.path(next), b"/healthz");
        assert_eq!(second.len, next.len());
    }

    #[test]
    fn leading_blank_lines_are_ignored() {
        let buf = b"\r\n\r\nGET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(head.path(buf), b"/a");
        assert_eq!(head.len, buf.len());
    }

    #[test]
    fn refusals_map_to_their_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"POST /a HTTP/1.1\r\nHost: x\r\n\r\n", 411),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501),
            (b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"GET /a HTTP/1.2\r\nHost: x\r\n\r\n", 505),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413),
            (b"GET /a HTTP/1.1\nHost: x\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nHost: x\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nHost: x\r\n\n", 400),
            (b"GET /a HTTP/1.1\nHost: x\n\n", 400),
            (b"\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ];
        for (buf, status) in cases {
            let got = parse_head(buf, &small(), &mut Vec::new());
            assert_eq!(
                got.map_err(HeadError::status),
                Err(*status),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn oversized_heads_are_refused_before_they_complete() {
        let limits = small();
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_head(long_target.as_bytes(), &limits, &mut Vec::new()),
            Err(HeadError::UriTooLong(64))
        );
        // The target alone, never finished, is refused once it passes the limit.
        let partial = format!("GET /{}", "a".repeat(200));
        assert_eq!(
            parse_head(partial.as_bytes(), &limits, &mut Vec::new()),
            Err(HeadError::UriTooLong(64))
        );
        let many = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(
            parse_head(many.as_bytes(), &limits, &mut Vec::new()),
            Err(HeadError::TooManyHeaders(4))
        );
        // A header section that never ends is refused at the limit, not buffered forever.
        let endless = format!("GET / HTTP/1.1\r\nHost: x\r\nA: {}", "b".repeat(300));
        assert_eq!(
            parse_head(endless.as_bytes(), &limits, &mut Vec::new()),
            Err(HeadError::HeadTooLarge(256))
        );
    }

    #[test]
    fn connection_semantics() {
        let close = parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
        let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let old_ka = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old_ka.keep_alive);
        let expect = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(expect.expect_continue);
        assert_eq!(expect.framing, Framing::Chunked);
    }
}
