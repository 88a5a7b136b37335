//! A small blocking HTTP/1.1 client for the router's side threads (token fetches, health
//! probes): one request per connection (`connection: close`), rustls for `https`, a deadline
//! on connect, each read and each write, a cap on what is read. Never used on an executor.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use crate::http::url::Url;

/// Connect, read and write timeout when the caller gives none.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// One blocking HTTP/1.1 exchange (`connection: close`): status and body.
pub fn call(
    url: &Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    headers: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    call_within(url, tls, method, headers, body, IO_TIMEOUT)
}

/// [`call`] with `timeout` for connecting and for each read and write.
pub fn call_within(
    url: &Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    headers: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let target = if url.path.is_empty() { "/" } else { &url.path };
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {}\r\naccept: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        url.authority,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let place = format!("`{}`", url.authority);
    let sock = connect_any(&url.host, url.port, timeout, &place)?;
    let io = |e: std::io::Error| format!("talking to {place}: {e}");
    sock.set_read_timeout(Some(timeout)).map_err(io)?;
    sock.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut raw = Vec::new();
    match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("{place} is not a TLS server name: {e}"))?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| format!("TLS to {place}: {e}"))?;
            let mut stream = rustls::StreamOwned::new(conn, sock);
            stream.write_all(&request).map_err(io)?;
            read_all(&mut stream, &mut raw).map_err(io)?;
        }
        None => {
            let mut stream = sock;
            stream.write_all(&request).map_err(io)?;
            read_all(&mut stream, &mut raw).map_err(io)?;
        }
    }
    response(&raw).map_err(|why| format!("{place} {why}"))
}

/// Connects to the first address of `host` that answers within `timeout` each; errors name
/// `place`.
pub fn connect_any(
    host: &str,
    port: u16,
    timeout: Duration,
    place: &str,
) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {place}: {e}"))?;
    let mut last = format!("{place} resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {place}: {e}"),
        }
    }
    Err(last)
}

/// Reads until the peer closes (a missing TLS close_notify included) or the cap.
fn read_all(r: &mut impl std::io::Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.extend_from_slice(buf.get(..n).unwrap_or_default());
                if out.len() > MAX_RESPONSE {
                    return Err(std::io::Error::other("answered more than 64 KiB"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The status and body of a complete response.
fn response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    use crate::http::response::{BodyFraming, parse_response_head};
    let mut headers = Vec::new();
    let head = parse_response_head(raw, MAX_RESPONSE, &mut headers)
        .map_err(|e| format!("sent {e}"))?
        .ok_or("closed the connection before a complete response head")?;
    let rest = raw.get(head.len..).unwrap_or_default();
    let body = match head.framing {
        BodyFraming::Empty => Vec::new(),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            rest.get(..n)
                .ok_or("closed the connection before the end of the response")?
                .to_vec()
        }
        BodyFraming::Chunked => {
            let mut out = Vec::new();
            let mut decoder = crate::http::chunked::Decoder::new();
            let (done, _) = crate::http::chunked::decode_into(&mut decoder, rest, &mut out)
                .map_err(|e| format!("sent a broken chunked body: {}", e.0))?;
            if !done {
                return Err("closed the connection before the end of the response".into());
            }
            out
        }
        BodyFraming::UntilClose => rest.to_vec(),
    };
    Ok((head.status, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn responses_are_read_in_every_framing() {
        let (status, body) =
            response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").unwrap();
        assert_eq!((status, body.as_slice()), (200, b"hello".as_slice()));
        let (_, body) = response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"hello");
        let (status, body) = response(b"HTTP/1.1 400 Bad\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (400, b"{}".as_slice()));
        assert!(response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello").is_err());
        assert!(response(b"HTTP/1.1 200").is_err());
    }
}
