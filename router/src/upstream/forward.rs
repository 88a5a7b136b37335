//! Forwarding a request: its head for the upstream (the endpoint's credentials, the client
//! headers the allowlist passes), a connection from the pool, the response head (interim
//! responses skipped, the client watched while the upstream thinks), then [`relay`].
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

use std::io::ErrorKind as IoKind;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::control::table::Upstream;
use crate::dialect::Wire;
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::push_u64;
use crate::http::response::{ResponseHead, parse_response_head};
use crate::http::{HeaderIdx, has_token, header_matches, header_str};
use crate::runtime::client::{Client, Next};
use crate::upstream::exchange::{Exchange, Outcome, falls_back};
use crate::upstream::pool::{UpConn, read_watching};
use crate::upstream::relay::{Answer, relay};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read buffer for upstream responses.
const READ_BUFFER: usize = 16 * 1024;

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
    if let Some(total) = up.timeouts.total {
        let end = Instant::now() + total;
        x.give_up_at
            .set(Some(x.give_up_at.get().map_or(end, |d| d.min(end))));
    }
    let mut bearer = google_token(x, up).await?;
    let mut wire = core.pool.bytes.take();
    wire.clear();
    wire.reserve(768 + x.body.len());
    request_head(x, up, bearer.as_deref(), &mut wire);
    wire.extend_from_slice(x.body);
    // A Google token the upstream refuses (401: expired or revoked early) is dropped and the
    // request sent once more with a fresh one.
    let mut auth_retry = bearer.is_some();

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
        // (Timed here rather than through `x.waiting`, which would move this large future
        // into its own.)
        let start = Instant::now();
        let sent = exchange_head(x, up, &mut conn, &wire, &mut rbuf, &mut headers, client).await;
        x.waited_since(start);
        match sent {
            Ok((head, _)) if head.status == 401 && auth_retry => {
                auth_retry = false;
                if let (Some(tokens), Some(used)) = (&up.google, &bearer) {
                    tokens.invalidate(used);
                }
                bearer = google_token(x, up).await?;
                wire.clear();
                request_head(x, up, bearer.as_deref(), &mut wire);
                wire.extend_from_slice(x.body);
                // The refusal's body is not read: the connection is not reused.
                conn = connect(x, up).await?;
                reused = false;
            }
            Ok(v) => break v,
            Err(SendFailure::Stale) if reused => {
                core.metrics()
                    .stale_connections
                    .fetch_add(1, Ordering::Relaxed);
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
                x.upstream_failed();
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
    if !x.last_chance && falls_back(head.status) {
        // Nothing has reached the client: the next candidate gets the request. The refusal's
        // body is not read, so the connection is not reused.
        x.upstream_failed();
        let after = header_str(&rbuf, &headers, b"retry-after");
        let said = after
            .map(|v| format!(", retry-after {v}"))
            .unwrap_or_default();
        let mut err = Error::new(
            ErrorKind::UpstreamRefused,
            format!(
                "endpoint `{}` answered {}{said}; the request went to the next candidate",
                x.endpoint, head.status
            ),
        );
        err.upstream_status = Some(head.status);
        // What came with the head of the body tells an empty account from a rate limit.
        err.quota_exhausted = head.status == 429
            && memchr::memmem::find(
                rbuf.get(head.len..filled).unwrap_or_default(),
                b"insufficient_quota",
            )
            .is_some();
        err.upstream_retry_ms = crate::control::breaker::retry_after_ms(
            after,
            header_str(&rbuf, &headers, b"retry-after-ms"),
        )
        .map(|ms| u32::try_from(ms).unwrap_or(u32::MAX));
        return Err(err);
    }
    let answer = Answer {
        head,
        headers: &headers,
        rbuf: &mut rbuf,
        filled,
    };
    relay(x, up, conn, answer, client).await
}

/// The endpoint's Google access token (Vertex), fetched off the executors when there is no
/// usable one. A failure is a 503 the next candidate may take; its reason goes to the log.
async fn google_token(
    x: &Exchange<'_>,
    up: &Upstream,
) -> Result<Option<std::sync::Arc<str>>, Error> {
    let Some(tokens) = &up.google else {
        return Ok(None);
    };
    x.waiting(tokens.token()).await.map(Some).map_err(|why| {
        Error::new(
            ErrorKind::UpstreamCredentials,
            format!(
                "endpoint `{}` has no Google access token (the router's log says why)",
                x.endpoint
            ),
        )
        .with_internal(why)
    })
}

async fn connect(x: &Exchange<'_>, up: &Upstream) -> Result<UpConn, Error> {
    x.waiting(x.core.pool.connect(up, x.endpoint))
        .await
        .inspect_err(|_| {
            x.upstream_failed();
        })
}

fn upstream_error(x: &Exchange<'_>, kind: ErrorKind, what: &str) -> Error {
    x.upstream_failed();
    Error::new(kind, format!("endpoint `{}` {what}", x.endpoint))
}

/// The upstream request head: our framing and credentials, then the client headers the
/// allowlist passes ([`forwarded`]).
fn request_head(x: &Exchange<'_>, up: &Upstream, bearer: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"POST ");
    let target_at = out.len();
    up.path.target(x.api, x.model, x.stream, out);
    let target_end = out.len();
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(up.authority.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    push_u64(out, x.body.len() as u64);
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(x.id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !x.traceparent.is_empty() {
        out.extend_from_slice(b"traceparent: ");
        out.extend_from_slice(x.traceparent);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = &up.auth {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(token) = bearer {
        out.extend_from_slice(b"authorization: Bearer ");
        out.extend_from_slice(token.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(signer) = &up.sigv4 {
        let target = String::from_utf8_lossy(out.get(target_at..target_end).unwrap_or_default())
            .into_owned();
        sign(signer, up, &target, x.body, out);
    }
    let buf = x.req.buf;
    let extra = &x.core.config().forward_headers;
    let named_by_connection = |name: &[u8]| {
        x.req.headers.iter().any(|h| {
            h.name(buf).eq_ignore_ascii_case(b"connection") && has_token(h.value(buf), name)
        })
    };
    let wire = up.wire_for(|| x.model);
    let anthropic = wire == Wire::Anthropic;
    // Claude on Vertex takes beta features as a header too; its version is in the body.
    let betas = anthropic || wire == Wire::VertexAnthropic;
    let mut versioned = false;
    for h in x.req.headers {
        let name = h.name(buf);
        let pass = match anthropic_header(name) {
            // The API version and beta features the client chose go to Anthropic as they are.
            Some(version) => {
                versioned |= version && anthropic;
                if version { anthropic } else { betas }
            }
            None => forwarded(name, extra),
        };
        if pass && !named_by_connection(name) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value(buf));
            out.extend_from_slice(b"\r\n");
        }
    }
    if anthropic && !versioned {
        out.extend_from_slice(b"anthropic-version: ");
        out.extend_from_slice(ANTHROPIC_VERSION.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Adds `x-amz-date`, `x-amz-security-token` (temporary credentials) and the SigV4
/// `authorization` to the head, signing the target as sent, the `host`, `content-type` and
/// those headers, and the body. The clock is the host's.
fn sign(
    signer: &crate::upstream::sigv4::Signer,
    up: &Upstream,
    target: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    use crate::upstream::sigv4::{Request, amz_date};
    let date = amz_date(crate::clock::now_ms());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let token = signer.credentials().session_token.as_deref();
    let mut headers = vec![
        ("host", up.authority.as_str()),
        ("content-type", "application/json"),
        ("x-amz-date", date.as_str()),
    ];
    if let Some(t) = token {
        headers.push(("x-amz-security-token", t));
    }
    let authorization = signer.authorization(
        &Request {
            method: "POST",
            path,
            query,
            headers: &headers,
            body,
        },
        &date,
    );
    out.extend_from_slice(b"x-amz-date: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(t) = token {
        out.extend_from_slice(b"x-amz-security-token: ");
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"authorization: ");
    out.extend_from_slice(authorization.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The `anthropic-version` sent to Anthropic when the client sent none (an OpenAI client's
/// request, translated): the version the Messages API has been stable at.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `Some(is_version)` for the Anthropic API's own request headers.
fn anthropic_header(name: &[u8]) -> Option<bool> {
    if name.eq_ignore_ascii_case(b"anthropic-version") {
        Some(true)
    } else if name.eq_ignore_ascii_case(b"anthropic-beta") {
        Some(false)
    } else {
        None
    }
}

/// Client headers every upstream gets: content negotiation, the client's identity and W3C
/// `tracestate` (the `traceparent` sent is the router's own, written from the request's
/// trace: the client's when it sent a valid one). Everything else stays at the router — credentials (the endpoint gets its
/// own), account selectors (`OpenAI-Organization`, `OpenAI-Project`, `x-goog-user-project`
/// would pick a different account beside the operator's key), cookies, framing, routing
/// headers — unless the operator adds it with `--forward-header`. A header named in the
/// client's `Connection` is hop-by-hop (RFC 9110 §7.6.1) and never forwarded.
pub const FORWARDED: [&str; 4] = ["accept", "user-agent", "tracestate", "openai-beta"];

/// Whether a client header goes upstream: on [`FORWARDED`] or matching an operator's
/// `--forward-header` pattern (a name, or a prefix ending in `*`).
fn forwarded(name: &[u8], extra: &[String]) -> bool {
    if name.eq_ignore_ascii_case(b"traceparent") {
        return false;
    }
    FORWARDED
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
        || extra.iter().any(|pattern| header_matches(pattern, name))
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
    let sent_at = Instant::now();
    let ttft_deadline = sent_at + up.timeouts.ttft;
    // The attempt's own end, when it comes first.
    let overall = x.give_up_at.get().filter(|end| *end < ttft_deadline);
    let deadline = overall.unwrap_or(ttft_deadline);
    let timeout = || timeout(x, up, overall.is_some());
    let mut first_read = Some(sent_at);
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
        // (The first read starts as the request is sent: one clock reading serves both.)
        let now = first_read.take().unwrap_or_else(Instant::now);
        if now >= deadline {
            return Err(timeout());
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
        let Some(read) = read_watching(conn, spare, deadline - now, now, client).await else {
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
            Err(e) if e.kind() == IoKind::TimedOut => return Err(timeout()),
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

/// No response head in time: within the endpoint's time to first byte, or (`overall`)
/// before the attempt's total time or the request's deadline ran out.
fn timeout(x: &Exchange<'_>, up: &Upstream, overall: bool) -> SendFailure {
    let message = if overall {
        format!(
            "endpoint `{}` did not respond before the request's time ran out",
            x.endpoint
        )
    } else {
        format!(
            "endpoint `{}` did not respond within {} ms",
            x.endpoint,
            up.timeouts.ttft.as_millis()
        )
    };
    SendFailure::Fatal(Error::new(ErrorKind::UpstreamTimeout, message))
}
