//! One client connection: read a request head and body into the connection buffer under the
//! configured deadlines and caps, hand the request to [`crate::gateway::paths`], repeat while keep-alive
//! holds. Pipelined requests already in the buffer are served in order.
//!
//! Timeouts: `idle` while waiting for the first byte of a request, `head` from that first
//! byte until the head is complete (so a slowloris client trickling bytes is cut off at the
//! deadline, not reset by every byte), `body` for the body. A refused request is answered
//! with its status and the connection is closed gracefully (write side shut, input drained
//! briefly) so the client reads the answer instead of a reset; every close does the same.
//!
//! Memory: a body is read into a buffer that grows only as its bytes arrive, never to the
//! length a head declares. A head whose body is not already buffered is checked first
//! ([`crate::gateway::paths::admit`]: path, method and key), so an unauthenticated client cannot make the
//! router hold a body at all, and `100 Continue` is sent only after that check. Buffer growth
//! past the initial size is reserved from one node-wide budget ([`BodyBudget`],
//! `--max-pending-body-bytes`); a body that does not fit is refused with 503.

use std::io::ErrorKind as IoKind;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt as _;
use glommio::net::TcpStream;

use crate::dialect::Wire;
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{self, RequestId, RouteReport};
use crate::http::HeaderIdx;
use crate::http::chunked::{Chunk, Decoder, decode_into};
use crate::http::request::{Framing, Head, HeadError, parse_head};
use crate::runtime::client::{Client, Next, Request, Stream};
use crate::runtime::core::{BodyBudget, Core};

/// Initial connection buffer; grows up to the head limit, or to hold a body.
const INITIAL_BUFFER: usize = 16 * 1024;
/// How long an idle keep-alive connection keeps its buffers before giving them up (taken
/// again when its next request's first byte arrives): a busy connection never pays for it,
/// and thousands of idle ones hold almost nothing.
const IDLE_HOLD: Duration = Duration::from_millis(250);
/// How long a closing connection keeps reading (and dropping) what the client still sends.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes a closing connection drains.
const LINGER_BYTES: usize = 1 << 20;

/// Answers a connection over the per-core limit with 503 and closes it.
pub async fn refuse(stream: TcpStream) {
    let mut out = Vec::new();
    let err = Error::new(
        ErrorKind::TooManyConnections,
        "this server has too many open connections; retry shortly",
    );
    let id = RequestId::generate(0);
    respond::error(
        &mut out,
        &err,
        &id,
        &RouteReport::none(Instant::now()),
        true,
        Wire::OpenAi,
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut stream = stream;
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown(Shutdown::Write).await;
}

struct Conn<'c> {
    stream: Stream,
    buf: Vec<u8>,
    filled: usize,
    headers: Vec<HeaderIdx>,
    body: Vec<u8>,
    out: Vec<u8>,
    budget: &'c BodyBudget,
    /// Bytes of `budget` this connection holds: its buffers' capacity past the initial size.
    reserved: u64,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

/// What reading a request produced.
enum Read {
    Request(Head),
    /// The peer closed, went idle past the limit, or the server is draining.
    Gone,
    Refuse(Error),
}

/// Serves one connection until it closes.
pub async fn serve(stream: TcpStream, core: &Core) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(core.config().write_timeout));
    let stream = match &core.config().tls {
        None => Stream::Plain(stream),
        // Boxed, as the request's future below: only the connection's idle state stays in
        // its task.
        Some(tls) => match Box::pin(handshake(stream, tls, core.config().head_timeout)).await {
            Some(s) => s,
            None => return,
        },
    };
    // No buffer until the first byte arrives (`wait_idle`).
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        filled: 0,
        headers: Vec::new(),
        body: Vec::new(),
        out: Vec::new(),
        budget: &core.shared.body_budget,
        reserved: 0,
    };
    loop {
        let head = match c.read_head(core).await {
            Read::Request(h) => h,
            Read::Gone => return,
            Read::Refuse(err) => {
                // A head that could not be taken still names its path, most of the time: the
                // refusal is in that path's dialect.
                let line = c.buf.get(..c.filled).unwrap_or_default();
                let wire = crate::dialect::of_path(request_line_path(line));
                return Box::pin(c.refuse(core, &err, wire)).await;
            }
        };
        core.metrics().requests.fetch_add(1, Ordering::Relaxed);
        // A body that is not here yet is awaited only for a request that may be served: the
        // path, method and key are checked on the head alone.
        if !c.body_buffered(&head)
            && let Err(err) = crate::gateway::paths::admit(
                core,
                c.buf.get(..head.len).unwrap_or_default(),
                &head,
                &c.headers,
            )
        {
            let wire = crate::dialect::of_request(head.path(&c.buf), &c.buf, &c.headers);
            return Box::pin(c.refuse(core, &err, wire)).await;
        }
        let consumed = match c.read_body(core, &head).await {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(err) => {
                let wire = crate::dialect::of_request(head.path(&c.buf), &c.buf, &c.headers);
                return Box::pin(c.refuse(core, &err, wire)).await;
            }
        };
        let started = Instant::now();
        let Conn {
            stream,
            buf,
            headers,
            body,
            out,
            ..
        } = &mut c;
        let body_bytes: &[u8] = match head.framing {
            Framing::Chunked => body,
            Framing::Length(n) => buf
                .get(head.len..head.len + usize::try_from(n).unwrap_or(usize::MAX))
                .unwrap_or_default(),
            Framing::Empty => &[],
        };
        let req = Request {
            buf: buf.get(..head.len).unwrap_or_default(),
            head: &head,
            headers,
            body: body_bytes,
            started,
        };
        let mut client = Client {
            stream,
            out,
            minor: head.minor,
            must_close: !head.keep_alive || core.shutting_down(),
            sent: false,
        };
        // Inline: the request's future (routing, the upstream exchange, the relay) is most of
        // the task's ~11 KB, idle or not. Boxing it cut an idle connection's task to 1.2 KB,
        // but moved and allocated 10 KB per request; not kept until measured free
        // (benches/RESULTS.md, "Idle connections").
        let next = crate::gateway::paths::handle(core, &req, &mut client).await;
        if next == Next::Close || !head.keep_alive || core.shutting_down() {
            return Box::pin(c.close()).await;
        }
        // Keep what follows this request (a pipelined one) at the front of the buffer.
        c.buf.copy_within(consumed..c.filled, 0);
        c.filled -= consumed;
        c.shrink();
    }
}

/// The TLS handshake, within the head timeout; `None` (logged at debug) if it fails.
async fn handshake(
    stream: TcpStream,
    tls: &std::sync::Arc<rustls::ServerConfig>,
    limit: Duration,
) -> Option<Stream> {
    use futures_lite::FutureExt as _;
    let _ = stream.set_read_timeout(Some(limit));
    let accept = futures_rustls::TlsAcceptor::from(std::sync::Arc::clone(tls)).accept(stream);
    let done = async { Some(accept.await) }
        .or(async {
            glommio::timer::sleep(limit).await;
            None
        })
        .await;
    match done {
        Some(Ok(s)) => Some(Stream::Tls(Box::new(s))),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        None => {
            tracing::debug!("TLS handshake not completed within the head timeout");
            None
        }
    }
}

impl Conn<'_> {
    async fn read_head(&mut self, core: &Core) -> Read {
        let cfg = core.config();
        let limits = &cfg.limits;
        // Clocks are read only when the connection has to wait (a pipelined request already
        // in the buffer needs none). An idle connection waits for its next request's first
        // byte in `wait_idle`; the head clock starts then.
        let mut head_deadline = None;
        let mut pipelined = self.filled > 0;
        if !pipelined {
            if !self.wait_idle(core).await {
                return Read::Gone;
            }
            head_deadline = Some(Instant::now() + cfg.head_timeout);
        }
        loop {
            if self.filled > 0 {
                match parse_head(
                    self.buf.get(..self.filled).unwrap_or_default(),
                    limits,
                    &mut self.headers,
                ) {
                    Ok(Some(head)) => return Read::Request(head),
                    Ok(None) => {}
                    Err(e) => return Read::Refuse(head_error(e)),
                }
            }
            if self.filled == self.buf.len() {
                let cap = (limits.max_head_bytes + 1).max(self.buf.len());
                if self.buf.len() >= cap {
                    return Read::Refuse(head_error(HeadError::HeadTooLarge(
                        limits.max_head_bytes,
                    )));
                }
                self.buf.resize((self.buf.len() * 2).min(cap), 0);
            }
            let now = Instant::now();
            if pipelined {
                // Part of a request was already buffered: its head clock started then.
                head_deadline = Some(now + cfg.head_timeout);
                pipelined = false;
            }
            let deadline = *head_deadline.get_or_insert(now + cfg.head_timeout);
            if now >= deadline {
                return Read::Refuse(Error::new(
                    ErrorKind::RequestTimeout,
                    format!(
                        "request head not received within {} ms",
                        cfg.head_timeout.as_millis()
                    ),
                ));
            }
            self.stream.set_read_timeout(Some(deadline - now));
            let spare = self.buf.get_mut(self.filled..).unwrap_or_default();
            let read = self.stream.read(spare).await;
            match read {
                Ok(0) => return Read::Gone,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == IoKind::TimedOut => {}
                Err(_) => return Read::Gone,
            }
        }
    }

    /// Waits on an idle connection (nothing buffered) for its next request's first bytes,
    /// until the idle timeout or shutdown (`false`: gone). The buffers are kept for
    /// [`IDLE_HOLD`], then given up; the connection then waits on a one-byte read and takes
    /// a buffer again when that byte arrives.
    async fn wait_idle(&mut self, core: &Core) -> bool {
        use futures_lite::FutureExt as _;
        let idle = Instant::now() + core.config().idle_timeout;
        let mut first = [0u8; 1];
        loop {
            let now = Instant::now();
            if now >= idle || core.shutting_down() {
                return false;
            }
            let holding = !self.buf.is_empty();
            let wait = if holding {
                (idle - now).min(IDLE_HOLD)
            } else {
                idle - now
            };
            self.stream.set_read_timeout(Some(wait));
            let Self { stream, buf, .. } = self;
            let into: &mut [u8] = if holding { buf } else { &mut first };
            // Nothing wakes an idle connection to poll: a byte, its deadline or shutdown.
            let read = async { Some(stream.read(into).await) }
                .or(async {
                    core.shutdown_started().await;
                    None
                })
                .await;
            match read {
                None | Some(Ok(0)) => return false,
                Some(Ok(n)) => {
                    if !holding {
                        self.buf = vec![0; INITIAL_BUFFER];
                        if let Some(b) = self.buf.first_mut() {
                            *b = first[0];
                        }
                    }
                    self.filled = n;
                    return true;
                }
                Some(Err(e)) if e.kind() == IoKind::TimedOut => {
                    if holding {
                        self.release();
                    }
                }
                Some(Err(_)) => return false,
            }
        }
    }

    /// Gives up every buffer (an idle connection): what it held goes back to the allocator
    /// and the body budget.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.out = Vec::new();
        self.headers = Vec::new();
        self.body = Vec::new();
        self.budget.release(self.reserved);
        self.reserved = 0;
    }

    /// Whether the whole body of `head` is already in the buffer (nothing to wait for).
    fn body_buffered(&self, head: &Head) -> bool {
        match head.framing {
            Framing::Empty => true,
            Framing::Length(n) => {
                usize::try_from(n).is_ok_and(|n| head.len.saturating_add(n) <= self.filled)
            }
            Framing::Chunked => {
                // Decided by a throwaway decoder over what is buffered (chunked requests are
                // rare; the data ranges it finds are not copied).
                let mut probe = Decoder::new();
                let mut at = head.len;
                loop {
                    let input = self.buf.get(at..self.filled).unwrap_or_default();
                    match probe.decode(input) {
                        Ok((_, Some(Chunk::End))) => return true,
                        Ok((used, Some(Chunk::Data(_)))) if used > 0 => at += used,
                        _ => return false,
                    }
                }
            }
        }
    }

    /// Reads the body; returns how many buffer bytes the request used (head and raw body),
    /// or `None` if the client went away.
    async fn read_body(&mut self, core: &Core, head: &Head) -> Result<Option<usize>, Error> {
        let cfg = core.config();
        let mut deadline = None;
        if head.expect_continue && !self.body_buffered(head) {
            // Only now: the head passed `gateway::paths::admit`, so the client may send the body.
            let _ = self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await;
        }
        match head.framing {
            Framing::Empty => Ok(Some(head.len)),
            Framing::Length(n) => {
                let need = head.len + usize::try_from(n).unwrap_or(usize::MAX);
                while self.filled < need {
                    if self.filled == self.buf.len() {
                        self.grow_buffer(need)?;
                    }
                    let until = *deadline.get_or_insert_with(|| Instant::now() + cfg.body_timeout);
                    if !self.read_more(until, cfg.body_timeout).await? {
                        return Ok(None);
                    }
                }
                Ok(Some(need))
            }
            Framing::Chunked => {
                let mut decoder = Decoder::new();
                self.body.clear();
                let mut raw = head.len;
                loop {
                    let input = self.buf.get(raw..self.filled).unwrap_or_default();
                    let before = self.body.capacity();
                    let decoded = decode_into(&mut decoder, input, &mut self.body);
                    self.account_body_growth(before)?;
                    let (done, used) =
                        decoded.map_err(|e| Error::new(ErrorKind::BadRequest, e.to_string()))?;
                    raw += used;
                    if self.body.len() as u64 > cfg.limits.max_body_bytes {
                        return Err(Error::new(
                            ErrorKind::PayloadTooLarge,
                            format!(
                                "request body is larger than the limit of {} bytes",
                                cfg.limits.max_body_bytes
                            ),
                        ));
                    }
                    if done {
                        return Ok(Some(raw));
                    }
                    // Decoded bytes are in `self.body`; drop their raw form, keep the head.
                    self.buf.copy_within(raw..self.filled, head.len);
                    self.filled -= raw - head.len;
                    raw = head.len;
                    if self.filled == self.buf.len() {
                        // Only a chunk-size line or trailer longer than the spare room gets
                        // here (the decoder consumes data as it comes): bounded by its caps.
                        let grown = self.buf.len() * 2;
                        self.grow_buffer(grown)?;
                    }
                    let until = *deadline.get_or_insert_with(|| Instant::now() + cfg.body_timeout);
                    if !self.read_more(until, cfg.body_timeout).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Grows the buffer (doubling, at most to `limit` bytes) after reserving the growth from
    /// the node's body budget.
    fn grow_buffer(&mut self, limit: usize) -> Result<(), Error> {
        let len = self.buf.len();
        let next = len.saturating_mul(2).min(limit).max(len + 1);
        self.reserve((next - len) as u64)?;
        self.buf.resize(next, 0);
        Ok(())
    }

    /// Reserves what the decoded-body buffer grew by since it had `before` bytes of capacity.
    fn account_body_growth(&mut self, before: usize) -> Result<(), Error> {
        let after = self.body.capacity();
        if after > before {
            self.reserve((after - before) as u64)?;
        }
        Ok(())
    }

    fn reserve(&mut self, n: u64) -> Result<(), Error> {
        if !self.budget.reserve(n) {
            return Err(Error::new(
                ErrorKind::Overloaded,
                "this server is buffering too many request bodies right now; retry shortly",
            )
            .with_retry_after(1));
        }
        self.reserved += n;
        Ok(())
    }

    /// After a request: buffers back to their initial size, their budget released.
    fn shrink(&mut self) {
        self.body.clear();
        if self.body.capacity() > INITIAL_BUFFER {
            self.body = Vec::new();
        }
        if self.buf.len() > INITIAL_BUFFER && self.filled <= INITIAL_BUFFER {
            self.buf.truncate(INITIAL_BUFFER);
            self.buf.shrink_to(INITIAL_BUFFER);
        }
        let held =
            self.buf.len().saturating_sub(INITIAL_BUFFER) as u64 + self.body.capacity() as u64;
        if held < self.reserved {
            self.budget.release(self.reserved - held);
            self.reserved = held;
        }
    }

    /// Reads once into the buffer's spare room; `false` if the peer closed.
    async fn read_more(&mut self, deadline: Instant, limit: Duration) -> Result<bool, Error> {
        let now = Instant::now();
        if now >= deadline {
            return Err(body_timeout(limit));
        }
        self.stream.set_read_timeout(Some(deadline - now));
        let spare = self.buf.get_mut(self.filled..).unwrap_or_default();
        match self.stream.read(spare).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.filled += n;
                Ok(true)
            }
            Err(e) if e.kind() == IoKind::TimedOut => Err(body_timeout(limit)),
            Err(_) => Ok(false),
        }
    }

    /// Answers a refused request and closes the connection gracefully.
    /// `wire`: the dialect of the path asked for (the error is in its shape).
    async fn refuse(mut self, core: &Core, err: &Error, wire: Wire) {
        // Whatever body was buffered is dropped before the answer goes out, so the budget
        // it held is free by the time the client reads the refusal.
        self.filled = 0;
        self.shrink();
        core.metrics().count_status(err.kind.status());
        tracing::debug!(status = err.kind.status(), error = %err, "request refused");
        let id = RequestId::generate(core.next_request_number());
        self.out.clear();
        respond::error(
            &mut self.out,
            err,
            &id,
            &RouteReport::none(Instant::now()),
            true,
            wire,
        );
        if self.stream.write_all(&self.out).await.is_err() {
            return;
        }
        self.close().await;
    }

    /// Closes gracefully: write side shut, then what the client is still sending is read and
    /// dropped for a moment, so closing with unread input does not turn into a reset that
    /// eats the answer (RFC 9112 §9.6).
    async fn close(mut self) {
        // Whatever body was buffered is dropped now, not after the drain.
        self.filled = 0;
        self.shrink();
        self.stream.shutdown_write().await;
        let until = Instant::now() + LINGER;
        let mut drained = 0usize;
        if self.buf.is_empty() {
            self.buf = vec![0; 4096];
        }
        let keep = INITIAL_BUFFER.min(self.buf.len());
        let sink = self.buf.get_mut(..keep).unwrap_or_default();
        while drained < LINGER_BYTES {
            let now = Instant::now();
            if now >= until {
                break;
            }
            self.stream.set_read_timeout(Some(until - now));
            match self.stream.read(sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

fn body_timeout(limit: Duration) -> Error {
    Error::new(
        ErrorKind::RequestTimeout,
        format!("request body not received within {} ms", limit.as_millis()),
    )
}

/// The path of a request line (`METHOD /path?query HTTP/1.1`), or nothing when there is none.
fn request_line_path(buf: &[u8]) -> &[u8] {
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    line.split(|&b| b == b' ').nth(1).unwrap_or_default()
}

fn head_error(e: HeadError) -> Error {
    let kind = match e {
        HeadError::Malformed(_) => ErrorKind::BadRequest,
        HeadError::UriTooLong(_) => ErrorKind::UriTooLong,
        HeadError::HeadTooLarge(_) | HeadError::TooManyHeaders(_) => ErrorKind::HeadersTooLarge,
        HeadError::UnsupportedTransferCoding => ErrorKind::NotImplemented,
        HeadError::Version => ErrorKind::VersionNotSupported,
        HeadError::LengthRequired => ErrorKind::LengthRequired,
        HeadError::BodyTooLarge(..) => ErrorKind::PayloadTooLarge,
    };
    Error::new(kind, e.to_string())
}
