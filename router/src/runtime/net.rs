//! A TCP connection, plain or wrapped in rustls: client connections (server-side TLS,
//! `--tls-cert`) and upstream connections (client-side TLS) are the same shape.

use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use glommio::net::TcpStream;

/// A TLS stream over a glommio TCP stream: gives the TCP stream back (for timeouts and
/// peeking).
pub trait OverTcp: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for futures_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl OverTcp for futures_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// A connection: plain TCP, or TLS over it.
pub enum Socket<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A client's connection to the router.
pub type ClientSocket = Socket<futures_rustls::server::TlsStream<TcpStream>>;
/// The router's connection to an upstream.
pub type UpstreamSocket = Socket<futures_rustls::client::TlsStream<TcpStream>>;

impl<T> std::fmt::Debug for Socket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Socket::Plain",
            Self::Tls(_) => "Socket::Tls",
        })
    }
}

impl<T: OverTcp> Socket<T> {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => t.tcp(),
        }
    }

    /// Sets how long a read may wait. Best effort, like every socket option here: a failure
    /// leaves the previous one.
    pub fn set_read_timeout(&self, limit: Option<std::time::Duration>) {
        let _ = self.tcp().set_read_timeout(limit);
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(t) => t.read(buf).await,
        }
    }

    /// Writes all of `bytes` (through TLS: encrypted and flushed).
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
        }
    }

    /// Ends the write side (TLS: `close_notify` first). Best effort: the peer may be gone.
    pub async fn shutdown_write(&mut self) {
        match self {
            Self::Plain(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write).await;
            }
            Self::Tls(t) => {
                let _ = t.close().await;
            }
        }
    }
}
