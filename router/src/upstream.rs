//! Upstream HTTP(S): per-core keep-alive pools, connecting (DNS off the executor, TLS through
//! rustls), sending the request, and relaying the response to the client as it arrives.
//!
//! Failure mapping (one place, [`ErrorKind`]): cannot resolve or connect, TLS handshake
//! failure → 503 `upstream_unavailable` (nothing was sent, so the next candidate may take
//! the request); no response head within the endpoint's timeout → 504; reset, early close or
//! an unparseable head → 502. Once the response head has been relayed, a failure can no
//! longer change the status: a cut stream ends with an SSE error event and a proper end of
//! the chunked body; a cut fixed-length body closes the client connection, so the client
//! sees a short body and not a complete-looking one.
//!
//! A pooled connection the upstream closed while idle is detected when the request gets no
//! response byte at all, and the request is sent once more on a fresh connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::FutureExt as _;
use glommio::net::TcpStream;

use crate::config::Config;
use crate::conn::{Client, Next};
use crate::error::{Error, ErrorKind};
use crate::http::chunked::{Chunk, Decoder};
use crate::http::response::{BodyFraming, ResponseHead, parse_response_head};
use crate::http::{HeaderIdx, has_token, is_hop_by_hop};
use crate::proxy::{Exchange, Outcome};
use crate::recycle::FreeList;
use crate::respond::{self, push_hex, push_u64};
use crate::table::Upstream;
use crate::usage::{Meter, Mode};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Idle pooled connections older than this are closed rather than reused.
const POOL_IDLE_TTL: Duration = Duration::from_secs(30);
/// Read buffer for upstream responses.
const READ_BUFFER: usize = 16 * 1024;

/// A connection to an upstream, plain or TLS.
pub type UpConn = crate::net::UpstreamSocket;

/// How long a read from an upstream runs before the client's socket is watched too. Most
/// reads complete well within it (the upstream is fast, or a stream is flowing), and they
/// pay nothing for the watch; a read that waits longer — a model thinking — is raced with
/// [`Client::closed`], so a client that leaves is noticed this long after it left at most.
const WATCH_AFTER: Duration = Duration::from_millis(25);

/// Reads from the upstream within `limit`; `None` when the client closed its connection
/// first (watched once the read has waited [`WATCH_AFTER`]).
async fn read_watching(
    conn: &mut UpConn,
    buf: &mut [u8],
    limit: Duration,
    client: &Client<'_>,
) -> Option<std::io::Result<usize>> {
    let started = Instant::now();
    if limit > WATCH_AFTER {
        match read_within(conn, buf, WATCH_AFTER).await {
            Err(e) if e.kind() == IoKind::TimedOut => {}
            done => return Some(done),
        }
    }
    let rest = limit.saturating_sub(started.elapsed());
    async { Some(read_within(conn, buf, rest).await) }
        .or(async {
            client.closed().await;
            None
        })
        .await
}

/// Reads with a deadline for this read.
async fn read_within(
    conn: &mut UpConn,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<usize> {
    conn.set_read_timeout(Some(timeout));
    conn.read(buf).await
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

/// Resolved addresses by (host, port), with when they were resolved.
type DnsCache = HashMap<(String, u16), (Arc<[SocketAddr]>, Instant)>;

/// One core's upstream connections and DNS answers.
pub struct Pool {
    idle: RefCell<HashMap<String, Vec<Idle>>>,
    dns: RefCell<DnsCache>,
    /// Scratch byte buffers (request wire form, response reads, body rewrites).
    pub bytes: FreeList<Vec<u8>>,
    /// Response read buffers (kept at their full length, so never re-zeroed).
    pub read_buffers: FreeList<Vec<u8>>,
    /// Scratch header lists for response heads.
    pub header_lists: FreeList<Vec<HeaderIdx>>,
    max_idle: usize,
    connect_timeout: Duration,
    resolver: Arc<crate::resolve::Resolver>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("origins", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    #[must_use]
    pub fn new(config: &Config, resolver: Arc<crate::resolve::Resolver>) -> Self {
        Self {
            resolver,
            idle: RefCell::new(HashMap::new()),
            dns: RefCell::new(HashMap::new()),
            bytes: FreeList::default(),
            read_buffers: FreeList::default(),
            header_lists: FreeList::default(),
            max_idle: config.upstream_idle_per_endpoint,
            connect_timeout: config.connect_timeout,
        }
    }

    fn checkout(&self, key: &str) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < POOL_IDLE_TTL {
                return Some(c.conn);
            }
        }
        None
    }

    fn checkin(&self, key: &str, conn: UpConn) {
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(key) {
            if list.len() < self.max_idle {
                list.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
            return;
        }
        if self.max_idle > 0 {
            idle.insert(
                key.to_owned(),
                vec![Idle {
                    conn,
                    since: Instant::now(),
                }],
            );
        }
    }

    /// `host:port`'s addresses: this core's copy of a recent answer, else the node's
    /// resolver (off the executor, single-flight, with a deadline).
    async fn resolve(&self, host: &str, port: u16) -> crate::resolve::Answer {
        if let Some((addrs, at)) = self.dns.borrow().get(&(host.to_owned(), port))
            && at.elapsed() < crate::resolve::TTL
        {
            return Ok(Arc::clone(addrs));
        }
        let addrs = self.resolver.resolve(host, port).await?;
        self.dns.borrow_mut().insert(
            (host.to_owned(), port),
            (Arc::clone(&addrs), Instant::now()),
        );
        Ok(addrs)
    }

    /// Closes idle connections past their time and forgets old DNS answers (called every
    /// few seconds by the core, so neither grows with upstreams no longer used).
    pub fn reap(&self) {
        self.idle.borrow_mut().retain(|_, list| {
            list.retain(|c| c.since.elapsed() < POOL_IDLE_TTL);
            !list.is_empty()
        });
        self.dns
            .borrow_mut()
            .retain(|_, (_, at)| at.elapsed() < crate::resolve::TTL);
    }

    async fn connect(&self, up: &Upstream, endpoint: &str) -> Result<UpConn, Error> {
        // The client learns which step failed; addresses, host names and OS errors go to
        // the log only (they describe the operator's network).
        let unavailable = |step: &str, detail: String| {
            Error::new(
                ErrorKind::UpstreamUnavailable,
                format!("endpoint `{endpoint}` is unavailable: {step}"),
            )
            .with_internal(detail)
        };
        let addrs = self.resolve(&up.host, up.port).await.map_err(|e| {
            unavailable(
                "its address could not be resolved",
                format!("cannot resolve `{}`: {e}", up.host),
            )
        })?;
        let mut last = None;
        let mut tcp = None;
        for &addr in addrs.iter() {
            match TcpStream::connect_timeout(addr, self.connect_timeout).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| unavailable("could not connect", last.unwrap_or_default()))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(up.timeout));
        let Some(tls) = &up.tls else {
            return Ok(UpConn::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| {
            unavailable(
                "its TLS server name is invalid",
                format!("`{}` is not a TLS server name: {e}", up.host),
            )
        })?;
        let connector = futures_rustls::TlsConnector::from(Arc::clone(tls));
        let handshake = async {
            connector
                .connect(name, tcp)
                .await
                .map_err(glommio::GlommioError::from)
        };
        match glommio::timer::timeout(self.connect_timeout, handshake).await {
            Ok(s) => Ok(UpConn::Tls(Box::new(s))),
            Err(e) => Err(unavailable(
                "the TLS handshake failed",
                format!("TLS handshake with `{}` failed: {e}", up.host),
            )),
        }
    }
}

/// Why sending a request on a connection failed.
enum SendFailure {
    /// No response byte came back on a reused connection: the upstream had closed it.
    Stale,
    /// The client closed its connection while the upstream had not answered yet.
    ClientGone,
    Fatal(Error),
}

/// Sends the exchange to `up` and relays the response to the client. `Err` only when nothing
/// has been written to the client yet.
pub async fn forward(
    x: &Exchange<'_>,
    up: &Upstream,
    client: &mut Client<'_>,
) -> Result<(Next, Outcome), Error> {
    let core = x.core;
    let mut wire = core.pool.bytes.take();
    wire.clear();
    wire.reserve(768 + x.body.len());
    request_head(x, up, &mut wire);
    wire.extend_from_slice(x.body);

    let mut rbuf = core.pool.read_buffers.take();
    if rbuf.len() < READ_BUFFER {
        rbuf.resize(READ_BUFFER, 0);
    }
    let mut headers = core.pool.header_lists.take();
    let (mut conn, mut reused) = match core.pool.checkout(&up.pool_key) {
        Some(c) => (c, true),
        None => (connect(x, up).await?, false),
    };
    let (head, filled) = loop {
        match exchange_head(x, up, &mut conn, &wire, &mut rbuf, &mut headers, client).await {
            Ok(v) => break v,
            Err(SendFailure::Stale) if reused => {
                // The request may have reached the upstream before it closed the pooled
                // connection: from here on a failure is not safe to pass to another
                // candidate (which could run it twice), so it is a 502, not a 503.
                conn = connect(x, up).await.map_err(|e| {
                    Error::new(
                        ErrorKind::UpstreamBadResponse,
                        format!(
                            "endpoint `{}` closed a reused connection without answering, and a new connection failed",
                            x.endpoint
                        ),
                    )
                    .with_internal(e.for_log())
                })?;
                reused = false;
            }
            Err(SendFailure::Stale) => {
                return Err(upstream_error(
                    x,
                    ErrorKind::UpstreamBadResponse,
                    "closed the connection without responding",
                ));
            }
            Err(SendFailure::Fatal(e)) => {
                core.metrics()
                    .upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            Err(SendFailure::ClientGone) => {
                return Err(Error::new(
                    ErrorKind::ClientClosed,
                    format!(
                        "the client closed the connection before endpoint `{}` answered; the upstream request was cancelled",
                        x.endpoint
                    ),
                ));
            }
        }
    };
    let answer = Answer {
        head,
        headers: &headers,
        rbuf: &mut rbuf,
        filled,
    };
    Ok(relay(x, up, conn, answer, client).await)
}

async fn connect(x: &Exchange<'_>, up: &Upstream) -> Result<UpConn, Error> {
    x.core.pool.connect(up, x.endpoint).await.inspect_err(|_| {
        x.core
            .metrics()
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
    })
}

fn upstream_error(x: &Exchange<'_>, kind: ErrorKind, what: &str) -> Error {
    x.core
        .metrics()
        .upstream_errors
        .fetch_add(1, Ordering::Relaxed);
    Error::new(kind, format!("endpoint `{}` {what}", x.endpoint))
}

/// The upstream request head: our framing and credentials, then the client headers the
/// allowlist passes ([`forwarded`]).
fn request_head(x: &Exchange<'_>, up: &Upstream, out: &mut Vec<u8>) {
    out.extend_from_slice(b"POST ");
    up.path.target(x.model, out);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(up.authority.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    push_u64(out, x.body.len() as u64);
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(x.id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some((name, value)) = &up.auth {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let buf = x.req.buf;
    let extra = &x.core.config().forward_headers;
    let named_by_connection = |name: &[u8]| {
        x.req.headers.iter().any(|h| {
            h.name(buf).eq_ignore_ascii_case(b"connection") && has_token(h.value(buf), name)
        })
    };
    for h in x.req.headers {
        let name = h.name(buf);
        if forwarded(name, extra) && !named_by_connection(name) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value(buf));
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Client headers every upstream gets: content negotiation, the client's identity and W3C
/// trace context. Everything else stays at the router — credentials (the endpoint gets its
/// own), account selectors (`OpenAI-Organization`, `OpenAI-Project`, `x-goog-user-project`
/// would pick a different account beside the operator's key), cookies, framing, routing
/// headers — unless the operator adds it with `--forward-header`. A header named in the
/// client's `Connection` is hop-by-hop (RFC 9110 §7.6.1) and never forwarded.
pub const FORWARDED: [&str; 5] = [
    "accept",
    "user-agent",
    "traceparent",
    "tracestate",
    "openai-beta",
];

/// Whether a client header goes upstream: on [`FORWARDED`] or matching an operator's
/// `--forward-header` pattern (a name, or a prefix ending in `*`).
fn forwarded(name: &[u8], extra: &[String]) -> bool {
    FORWARDED
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
        || extra.iter().any(|pattern| header_matches(pattern, name))
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

async fn exchange_head(
    x: &Exchange<'_>,
    up: &Upstream,
    conn: &mut UpConn,
    wire: &[u8],
    rbuf: &mut Vec<u8>,
    headers: &mut Vec<HeaderIdx>,
    client: &Client<'_>,
) -> Result<(ResponseHead, usize), SendFailure> {
    let fatal = |kind, what: String| {
        SendFailure::Fatal(Error::new(
            kind,
            format!("endpoint `{}` {what}", x.endpoint),
        ))
    };
    if conn.write_all(wire).await.is_err() {
        return Err(SendFailure::Stale);
    }
    let deadline = Instant::now() + up.timeout;
    let mut filled = 0;
    // Any byte at all (an interim response too) means the connection was not stale.
    let mut answered = false;
    loop {
        // What is buffered is parsed before reading again: an interim response and the final
        // head often arrive in one read.
        if filled > 0 {
            match parse_response_head(
                rbuf.get(..filled).unwrap_or_default(),
                MAX_RESPONSE_HEAD,
                headers,
            ) {
                Ok(Some(head)) if (100..200).contains(&head.status) => {
                    // Interim response (100 Continue, 103 Early Hints): skip it.
                    rbuf.copy_within(head.len..filled, 0);
                    filled -= head.len;
                    continue;
                }
                Ok(Some(head)) => return Ok((head, filled)),
                Ok(None) => {}
                Err(e) => {
                    return Err(fatal(
                        ErrorKind::UpstreamBadResponse,
                        format!("sent an invalid response: {}", e.0),
                    ));
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout(x, up));
        }
        if filled == rbuf.len() {
            if rbuf.len() >= MAX_RESPONSE_HEAD {
                return Err(fatal(
                    ErrorKind::UpstreamBadResponse,
                    "sent a response head that is too large".into(),
                ));
            }
            rbuf.resize(rbuf.len() * 2, 0);
        }
        let spare = rbuf.get_mut(filled..).unwrap_or_default();
        // While the upstream thinks, the client may give up: then the upstream request is
        // dropped (closing its connection tells the upstream to stop generating).
        let Some(read) = read_watching(conn, spare, deadline - now, client).await else {
            return Err(SendFailure::ClientGone);
        };
        match read {
            Ok(0) if !answered => return Err(SendFailure::Stale),
            Ok(0) => {
                return Err(fatal(
                    ErrorKind::UpstreamBadResponse,
                    "closed the connection in the middle of the response head".into(),
                ));
            }
            Ok(n) => {
                filled += n;
                answered = true;
            }
            Err(e) if e.kind() == IoKind::TimedOut => return Err(timeout(x, up)),
            Err(_) if !answered => return Err(SendFailure::Stale),
            Err(e) => {
                return Err(fatal(
                    ErrorKind::UpstreamBadResponse,
                    format!("failed while sending the response head: {e}"),
                ));
            }
        }
    }
}

fn timeout(x: &Exchange<'_>, up: &Upstream) -> SendFailure {
    SendFailure::Fatal(Error::new(
        ErrorKind::UpstreamTimeout,
        format!(
            "endpoint `{}` did not respond within {} ms",
            x.endpoint,
            up.timeout.as_millis()
        ),
    ))
}

/// How the relayed body is framed towards the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Length,
    Chunked,
    /// HTTP/1.0 client and no upstream length: the body ends when we close.
    Close,
    Empty,
}

/// An upstream's answer as read so far: its head, and the buffer holding the head (header
/// ranges index it) and the first body bytes.
struct Answer<'a> {
    head: ResponseHead,
    headers: &'a [HeaderIdx],
    rbuf: &'a mut [u8],
    filled: usize,
}

/// Relays the response head and body. Never fails: errors after the head are reported in the
/// body (SSE) or by closing the connection.
async fn relay(
    x: &Exchange<'_>,
    up: &Upstream,
    mut conn: UpConn,
    answer: Answer<'_>,
    client: &mut Client<'_>,
) -> (Next, Outcome) {
    let core = x.core;
    let Answer {
        head,
        headers,
        rbuf,
        filled,
    } = answer;
    core.metrics().count_status(head.status);
    client.must_close |= core.shutting_down();
    let out_framing = match head.framing {
        BodyFraming::Empty => Out::Empty,
        BodyFraming::Length(_) => Out::Length,
        BodyFraming::Chunked | BodyFraming::UntilClose if client.minor >= 1 => Out::Chunked,
        BodyFraming::Chunked | BodyFraming::UntilClose => Out::Close,
    };
    let close_client = client.must_close || out_framing == Out::Close;
    write_head(
        x,
        &head,
        rbuf.get(..head.len).unwrap_or_default(),
        headers,
        out_framing,
        close_client,
        client.out,
    );
    let mut held = core.pool.bytes.take();
    let mode = if head.event_stream && (200..300).contains(&head.status) {
        Mode::Events {
            strip_usage: x.strip_usage,
        }
    } else {
        Mode::Json
    };
    let mut body = Body {
        framing: head.framing,
        out: out_framing,
        remaining: match head.framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        },
        decoder: Decoder::new(),
        meter: Meter::new(mode, &mut held),
        outcome: Outcome {
            status: head.status,
            upstream_status: Some(head.status),
            upstream_latency_ms: Some(x.report().latency_ms),
            ..Outcome::default()
        },
        clean: true,
        done: out_framing == Out::Empty,
    };
    let mut pending = head.len..filled;
    // Each turn relays what was read, then reads on; a `break` carries why the upstream's
    // body broke off (the stream is then ended for the client by `cut`).
    let why = loop {
        let input = rbuf.get(pending.clone()).unwrap_or_default();
        if let Err(why) = body.take(input, client.out) {
            break why;
        }
        if body.done {
            body.end(client.out);
        }
        // `strict` audit: the end of the response waits (in `proxy::chat`) for the record.
        let hold = body.done && x.hold_last;
        if !hold && !client.out.is_empty() && client.flush().await.is_err() {
            // The client went away: drop the upstream connection (its response is unread),
            // which also tells the upstream to stop generating.
            return left(body, "client closed the connection during the response");
        }
        if body.done {
            return finished(x, up, conn, &head, body, close_client);
        }
        // A quiet stream (the model thinking) must not hide a client that left.
        let Some(read) = read_watching(&mut conn, rbuf, up.timeout, client).await else {
            client.out.clear();
            return left(
                body,
                "client closed the connection during the response; the upstream request was cancelled",
            );
        };
        match read {
            Ok(0) if head.framing == BodyFraming::UntilClose => {
                // The end of a close-delimited body; the loop top writes the last chunk.
                body.done = true;
                body.clean = false;
                pending = 0..0;
            }
            Ok(n) if n > 0 => pending = 0..n,
            Ok(_) => break "closed the connection before the response was complete".to_owned(),
            Err(e) if e.kind() == IoKind::TimedOut => {
                break format!(
                    "stopped sending for {} ms in the middle of the response",
                    up.timeout.as_millis()
                );
            }
            Err(e) => break format!("failed in the middle of the response: {e}"),
        }
    };
    body.settle(client.out);
    cut(
        x,
        conn,
        client,
        out_framing,
        head.event_stream,
        &why,
        body.outcome,
    )
    .await
}

/// The relay's end when the client left: the record says so, and what the meter read.
fn left(mut body: Body<'_>, why: &str) -> (Next, Outcome) {
    body.abandon();
    body.outcome.error = Some(why.to_owned());
    (Next::Close, body.outcome)
}

/// The relay's end when the body was complete: usage into the outcome, the upstream
/// connection back to the pool when it ended exactly with the body.
fn finished(
    x: &Exchange<'_>,
    up: &Upstream,
    conn: UpConn,
    head: &ResponseHead,
    mut body: Body<'_>,
    close_client: bool,
) -> (Next, Outcome) {
    let mut outcome = std::mem::take(&mut body.outcome);
    outcome.usage = body.meter.usage();
    if outcome.usage.is_none() {
        outcome.estimated_completion = body.meter.estimated_completion_tokens();
    }
    tracing::debug!(
        request_id = x.id.as_str(),
        endpoint = x.endpoint,
        rule = x.rule,
        model = x.model,
        status = head.status,
        stream = x.stream,
        tokens_in = outcome.usage.map(|u| u.prompt_tokens),
        tokens_out = outcome.usage.map(|u| u.completion_tokens),
        "relayed"
    );
    if body.clean && head.keep_alive {
        x.core.pool.checkin(&up.pool_key, conn);
    }
    let next = if close_client {
        Next::Close
    } else {
        Next::KeepAlive
    };
    (next, outcome)
}

/// The client's response head: the upstream's status and end-to-end headers, ours
/// (`x-request-id`, `x-switchyard-route`), and our framing.
fn write_head(
    x: &Exchange<'_>,
    head: &ResponseHead,
    hbuf: &[u8],
    headers: &[HeaderIdx],
    out_framing: Out,
    close_client: bool,
    out: &mut Vec<u8>,
) {
    respond::status_line(out, head.status);
    for h in headers {
        let name = h.name(hbuf);
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"date")
            || name.eq_ignore_ascii_case(b"server")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || name.eq_ignore_ascii_case(b"x-switchyard-route")
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(hbuf));
        out.extend_from_slice(b"\r\n");
    }
    respond::ids(out, &x.id, &x.report());
    match (out_framing, head.framing) {
        (Out::Length, BodyFraming::Length(n)) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        (Out::Empty, _) if head.status != 204 && head.status != 304 => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        (Out::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The relayed body's state: how the upstream frames it and the client gets it, what the
/// meter reads of it, and what the audit record will say.
struct Body<'m> {
    framing: BodyFraming,
    out: Out,
    /// Bytes left of a length-framed body.
    remaining: u64,
    decoder: Decoder,
    meter: Meter<'m>,
    outcome: Outcome,
    /// The upstream connection ends exactly at the body's end (it may be pooled).
    clean: bool,
    done: bool,
}

impl Body<'_> {
    /// Takes the next bytes read from the upstream, appending what goes to the client to
    /// `out`; `Err` says why the body is broken.
    fn take(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self.framing {
            // Bytes after a response that has no body are not ours to relay, and the
            // connection that carried them cannot be trusted for the next request.
            BodyFraming::Empty => self.clean &= input.is_empty(),
            BodyFraming::Length(_) => {
                let take =
                    usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
                let data = input.get(..take).unwrap_or_default();
                // A length-framed body goes out with the same length: passed through whole
                // (an event stream with a length is rare; its usage chunk stays).
                self.meter.pass(data, &mut |_| {});
                self.outcome.response_bytes += data.len() as u64;
                out.extend_from_slice(data);
                self.remaining -= take as u64;
                self.clean &= take == input.len();
                self.done = self.remaining == 0;
            }
            BodyFraming::Chunked => {
                let mut at = 0;
                while at < input.len() {
                    let (used, found) = self
                        .decoder
                        .decode(input.get(at..).unwrap_or_default())
                        .map_err(|e| format!("sent a malformed chunked body: {}", e.0))?;
                    let base = at;
                    at += used;
                    match found {
                        Some(Chunk::Data(r)) => {
                            let data = input.get(base + r.start..base + r.end).unwrap_or_default();
                            self.pass(data, out);
                        }
                        Some(Chunk::End) => {
                            self.done = true;
                            self.clean &= at == input.len();
                            break;
                        }
                        None => {}
                    }
                }
            }
            BodyFraming::UntilClose => self.pass(input, out),
        }
        Ok(())
    }

    /// Decoded body bytes through the meter to the client, framed for it.
    fn pass(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let (framing, bytes) = (self.out, &mut self.outcome.response_bytes);
        self.meter.pass(data, &mut |kept| {
            *bytes += kept.len() as u64;
            emit(out, framing, kept);
        });
    }

    /// The body is complete: what the meter held goes out, then the last chunk.
    fn end(&mut self, out: &mut Vec<u8>) {
        let (framing, bytes) = (self.out, &mut self.outcome.response_bytes);
        self.meter.finish(&mut |kept| {
            *bytes += kept.len() as u64;
            emit(out, framing, kept);
        });
        if self.out == Out::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    /// The upstream cut the body short: what the meter holds goes to `out`, and what it
    /// read goes in the outcome.
    fn settle(&mut self, out: &mut Vec<u8>) {
        settle(&mut self.meter, &mut self.outcome, out, self.out);
    }

    /// The client left: nothing more is sent; what the meter read goes in the outcome.
    fn abandon(&mut self) {
        self.meter.finish(&mut |_| {});
        self.outcome.usage = self.meter.usage();
        if self.outcome.usage.is_none() {
            self.outcome.estimated_completion = self.meter.estimated_completion_tokens();
        }
    }
}

/// A body cut short: what the meter holds goes out, and what it read goes in the outcome.
fn settle(meter: &mut Meter<'_>, outcome: &mut Outcome, out: &mut Vec<u8>, framing: Out) {
    meter.finish(&mut |kept| {
        outcome.response_bytes += kept.len() as u64;
        emit(out, framing, kept);
    });
    outcome.usage = meter.usage();
    if outcome.usage.is_none() {
        outcome.estimated_completion = meter.estimated_completion_tokens();
    }
}

fn emit(out: &mut Vec<u8>, framing: Out, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    if framing == Out::Chunked {
        push_hex(out, data.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Ends a relay whose upstream failed after the head was sent.
async fn cut(
    x: &Exchange<'_>,
    conn: UpConn,
    client: &mut Client<'_>,
    framing: Out,
    event_stream: bool,
    why: &str,
    mut outcome: Outcome,
) -> (Next, Outcome) {
    outcome.error = Some(format!("endpoint `{}` {why}", x.endpoint));
    // Its response is unread: the connection cannot be reused. Closing it also tells the
    // upstream to stop generating.
    drop(conn);
    x.core
        .metrics()
        .upstream_errors
        .fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = crate::logging::allow(&crate::logging::UPSTREAM_CUT) {
        tracing::warn!(
            request_id = x.id.as_str(),
            endpoint = x.endpoint,
            error = why,
            suppressed,
            "upstream response cut short"
        );
    }
    if framing != Out::Chunked {
        // A short fixed-length (or close-delimited) body: closing is the only honest signal.
        let _ = client.flush().await;
        return (Next::Close, outcome);
    }
    if event_stream {
        let err = Error::new(
            ErrorKind::UpstreamBadResponse,
            format!("endpoint `{}` {why}", x.endpoint),
        );
        let mut event = b"\n\ndata: ".to_vec();
        err.write_body(&mut event);
        event.extend_from_slice(b"\n\n");
        emit(client.out, framing, &event);
        outcome.response_bytes += event.len() as u64;
        client.out.extend_from_slice(b"0\r\n\r\n");
        if client.flush().await.is_err() {
            return (Next::Close, outcome);
        }
        let next = if client.must_close {
            Next::Close
        } else {
            Next::KeepAlive
        };
        return (next, outcome);
    }
    // Chunked but not SSE: leave the chunked body unterminated and close.
    let _ = client.flush().await;
    (Next::Close, outcome)
}
