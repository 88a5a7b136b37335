//! A small blocking Redis client (RESP2) for the limits coordinator's side thread: one
//! connection, `redis://` or `rediss://` (rustls), `AUTH` and `SELECT` from the URL, a deadline
//! on connect and on every read and write, commands sent as a pipeline (all written, then all
//! replies read). Never used on an executor.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Longest reply line or bulk string read (the coordinator's replies are a few numbers).
const MAX_REPLY: usize = 1 << 20;

/// Where the Redis server is, from `redis://[user:password@]host[:port][/db]` or `rediss://…`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (The password never reaches a log.)
        write!(f, "{self}")
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses a Redis URL; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = text.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(format!(
                "`{text}` is not a Redis URL (expected redis://host:port[/db] or rediss://…)"
            ));
        };
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, db)) => (
                a,
                db.parse::<u32>().map_err(|_| {
                    format!("the database in `{text}` must be a number, found `{db}`")
                })?,
            ),
            None => (rest, 0),
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match credentials.map(|c| c.split_once(':').unwrap_or(("", c))) {
            Some((u, p)) => (
                Some(u.to_owned()).filter(|u| !u.is_empty()),
                Some(p.to_owned()).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("the port in `{text}` must be a number, found `{p}`"))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{text}` names no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            user,
            password,
            db,
        })
    }
}

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    Text(Vec<u8>),
    Array(Vec<Value>),
    /// An error reply (`-ERR …`, `-NOSCRIPT …`): the server's words.
    Error(String),
}

impl Value {
    /// The integer a reply holds (an integer, or a bulk string of digits).
    #[must_use]
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Text(t) => std::str::from_utf8(t).ok()?.parse().ok(),
            _ => None,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// One connection.
pub struct Conn {
    io: BufReader<Stream>,
    place: String,
    out: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects (each address in turn, `connect` each), sets `io` as the read and write
    /// deadline, and authenticates and selects the database the URL names.
    pub fn connect(
        url: &RedisUrl,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect: Duration,
        io: Duration,
    ) -> Result<Self, String> {
        let place = format!("Redis at {url}");
        let sock = crate::upstream::blocking::connect_any(&url.host, url.port, connect, &place)?;
        let fail = |e: std::io::Error| format!("{place}: {e}");
        sock.set_read_timeout(Some(io)).map_err(fail)?;
        sock.set_write_timeout(Some(io)).map_err(fail)?;
        sock.set_nodelay(true).map_err(fail)?;
        let stream = if url.tls {
            let config = tls.ok_or_else(|| format!("{place}: no TLS configuration"))?;
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("{place}: not a TLS server name: {e}"))?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| format!("{place}: TLS: {e}"))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock)))
        } else {
            Stream::Plain(sock)
        };
        let mut conn = Self {
            io: BufReader::new(stream),
            place,
            out: Vec::new(),
        };
        let mut hello: Vec<Vec<Vec<u8>>> = Vec::new();
        if let Some(password) = &url.password {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &url.user {
                auth.push(user.clone().into_bytes());
            }
            auth.push(password.clone().into_bytes());
            hello.push(auth);
        }
        if url.db != 0 {
            hello.push(vec![b"SELECT".to_vec(), url.db.to_string().into_bytes()]);
        }
        hello.push(vec![b"PING".to_vec()]);
        for reply in conn.pipeline(&hello)? {
            if let Value::Error(e) = reply {
                return Err(format!("{} refused the connection: {e}", conn.place));
            }
        }
        Ok(conn)
    }

    /// Sends `commands` at once and reads their replies, in order. `Err` when the
    /// connection failed (it must then be dropped); a command's own error is a
    /// [`Value::Error`].
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, String> {
        self.out.clear();
        for args in commands {
            encode(args, &mut self.out);
        }
        let place = &self.place;
        let out = &self.out;
        self.io
            .get_mut()
            .write_all(out)
            .and_then(|()| self.io.get_mut().flush())
            .map_err(|e| format!("writing to {place}: {e}"))?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.reply(0)?);
        }
        Ok(replies)
    }

    /// One command.
    pub fn call(&mut self, args: Vec<Vec<u8>>) -> Result<Value, String> {
        self.pipeline(&[args])?
            .pop()
            .ok_or_else(|| format!("{} sent no reply", self.place))
    }

    fn line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        let n = (&mut self.io)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading from {}: {e}", self.place))?;
        if n == 0 {
            return Err(format!("{} closed the connection", self.place));
        }
        if !line.ends_with(b"\r\n") {
            return Err(format!("{} sent a reply line without its end", self.place));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn reply(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 8 {
            return Err(format!("{} sent replies nested too deep", self.place));
        }
        let line = self.line()?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| format!("{} sent an empty reply line", self.place))?;
        let number = || -> Result<i64, String> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{} sent a malformed length or integer", self.place))
        };
        match kind {
            b'+' => Ok(Value::Text(rest.to_vec())),
            b'-' => Ok(Value::Error(String::from_utf8_lossy(rest).into_owned())),
            b':' => Ok(Value::Int(number()?)),
            b'$' => {
                let len = number()?;
                if len < 0 {
                    return Ok(Value::Nil);
                }
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_REPLY {
                    return Err(format!("{} sent a reply over 1 MiB", self.place));
                }
                let mut data = vec![0u8; len + 2];
                self.io
                    .read_exact(&mut data)
                    .map_err(|e| format!("reading from {}: {e}", self.place))?;
                data.truncate(len);
                Ok(Value::Text(data))
            }
            b'*' => {
                let n = number()?;
                if n < 0 {
                    return Ok(Value::Nil);
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(MAX_REPLY);
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(self.reply(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            _ => Err(format!("{} sent a reply of unknown type", self.place)),
        }
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[Vec<u8>], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn urls_are_read_with_their_parts() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.tls),
            ("127.0.0.1", 6380, 2, false)
        );
        let u = RedisUrl::parse("rediss://app:s3cret@cache.internal").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.tls,
                u.user.as_deref(),
                u.password.as_deref()
            ),
            ("cache.internal", 6379, true, Some("app"), Some("s3cret"))
        );
        let u = RedisUrl::parse("redis://:pw@[::1]:7000").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_deref(),
                u.password.as_deref()
            ),
            ("::1", 7000, None, Some("pw"))
        );
        assert!(!format!("{u:?}").contains("pw"));
        for bad in ["http://x", "redis://", "redis://h:port", "redis://h/db"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_are_encoded_as_bulk_arrays() {
        let mut out = Vec::new();
        encode(&[b"GET".to_vec(), b"k".to_vec()], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
