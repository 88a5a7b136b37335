//! Upstream response heads (RFC 9112 §4, §6.3): status, header fields and body framing.

use super::{HeaderIdx, has_bare_lf, has_token, parse_content_length, range_in};

/// Most header fields accepted from an upstream response.
const MAX_RESPONSE_HEADERS: usize = 128;

/// How an upstream response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the upstream closes.
    UntilClose,
}

/// A complete upstream response head; header ranges index the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub len: usize,
    pub framing: BodyFraming,
    /// Whether the upstream connection may be reused after the body.
    pub keep_alive: bool,
    /// A stream of events: `Content-Type: text/event-stream` (Server-Sent Events) or
    /// `application/vnd.amazon.eventstream` (Bedrock's binary frames).
    pub event_stream: bool,
}

/// An upstream response the router cannot relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid upstream response: {0}")]
pub struct ResponseError(pub &'static str);

/// Parses an upstream response head from the start of `buf`; `Ok(None)` while incomplete.
pub fn parse_response_head(
    buf: &[u8],
    max_head_bytes: usize,
    headers: &mut Vec<HeaderIdx>,
) -> Result<Option<ResponseHead>, ResponseError> {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut parsed);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_head_bytes => {
            return Err(ResponseError("response head is too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError("too many response headers"));
        }
        Err(_) => return Err(ResponseError("malformed response head")),
    };
    if has_bare_lf(buf.get(..len).unwrap_or_default()) {
        return Err(ResponseError(
            "a line of the response head ends with a bare LF",
        ));
    }
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    headers.clear();
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut event_stream = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        let value = h.value.trim_ascii();
        headers.push(HeaderIdx {
            name: range_in(buf, name),
            value: range_in(buf, h.value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value).ok_or(ResponseError("invalid Content-Length"))?;
            if length.is_some_and(|p| p != n) {
                return Err(ResponseError("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if !last.eq_ignore_ascii_case(b"chunked") || value.contains(&b',') {
                return Err(ResponseError("unsupported transfer coding"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(value, b"close");
            keep_alive_token |= has_token(value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"content-type") {
            event_stream = value
                .get(..17)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"))
                || value
                    .get(..34)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"application/vnd.amazon.eventstream"));
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyFraming::Empty
    } else if chunked {
        BodyFraming::Chunked
    } else if let Some(n) = length {
        if n == 0 {
            BodyFraming::Empty
        } else {
            BodyFraming::Length(n)
        }
    } else {
        BodyFraming::UntilClose
    };
    let keep_alive =
        !close && (minor == 1 || keep_alive_token) && framing != BodyFraming::UntilClose;
    Ok(Some(ResponseHead {
        status,
        len,
        framing,
        keep_alive,
        event_stream,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
        parse_response_head(buf, 4096, &mut Vec::new())
    }

    #[test]
    fn framings() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, BodyFraming::Length(12));
        assert!(r.keep_alive);
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.framing, BodyFraming::Chunked);
        assert!(r.event_stream);
        let r = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.framing, BodyFraming::UntilClose);
        assert!(!r.keep_alive);
        let r = parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.framing, BodyFraming::Empty);
        let r = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn partial_and_bad() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None));
        }
        assert!(parse(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n").is_err());
        assert!(parse_response_head(&[b'a'; 100], 50, &mut Vec::new()).is_err());
    }
}
