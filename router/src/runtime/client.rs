//! The request and client types handlers see: the request borrowed from its connection's
//! buffer, the client side to write the answer to, and whether the connection goes on.

use std::time::Instant;

use crate::http::HeaderIdx;
use crate::http::request::Head;

/// A request as the handlers see it: head and headers borrowed from the connection buffer.
#[derive(Debug)]
pub struct Request<'b> {
    /// The connection buffer through the end of the head (header ranges index it).
    pub buf: &'b [u8],
    pub head: &'b Head,
    pub headers: &'b [HeaderIdx],
    pub body: &'b [u8],
    /// When the head was complete.
    pub started: Instant,
}

impl<'b> Request<'b> {
    /// The value of the first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name(self.buf).eq_ignore_ascii_case(name))
            .map(|h| h.value(self.buf))
    }
}

/// Whether the connection may serve another request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// A client connection: plain TCP, or TLS over it (`--tls-cert`).
pub type Stream = crate::runtime::net::ClientSocket;

/// The client side of the connection, for handlers to write to.
#[derive(Debug)]
pub struct Client<'c> {
    pub stream: &'c mut Stream,
    /// Reusable output buffer.
    pub out: &'c mut Vec<u8>,
    /// HTTP/1.`minor` of the request being answered.
    pub minor: u8,
    /// The request asked to close, or the server is draining.
    pub must_close: bool,
    /// Some of the response has been written to the socket.
    pub sent: bool,
}

impl Client<'_> {
    /// Resolves when the client has closed its side of the connection (or reset it), while
    /// the router is busy elsewhere (waiting for an upstream): a one-byte `MSG_PEEK`, which
    /// consumes nothing. If the client sent more bytes instead (a pipelined request), it is
    /// alive and this never resolves. Over TLS a closing client usually sends `close_notify`
    /// first, which also counts as "more bytes": such a close is noticed at the next write.
    pub async fn closed(&self) {
        let mut probe = [0u8; 1];
        match self.stream.tcp().peek(&mut probe).await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending::<()>().await,
        }
    }

    /// Writes and clears the output buffer.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.sent |= !self.out.is_empty();
        let r = self.stream.write_all(self.out).await;
        self.out.clear();
        r
    }
}
