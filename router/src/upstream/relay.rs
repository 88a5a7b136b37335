//! The response body, relayed to the client as it arrives: de-chunked from the upstream,
//! re-framed for the client (length, chunked, or until close for HTTP/1.0), passed through the
//! usage [`Meter`], and ended honestly when the upstream breaks off (an SSE error event and a
//! proper end of a stream; a closed connection for a short fixed-length body).

use std::io::ErrorKind as IoKind;
use std::sync::atomic::Ordering;

use crate::control::table::Upstream;
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{self, push_hex, push_u64};
use crate::http::chunked::{Chunk, Decoder};
use crate::http::response::{BodyFraming, ResponseHead};
use crate::http::{HeaderIdx, is_hop_by_hop};
use crate::runtime::client::{Client, Next};
use crate::upstream::exchange::{Exchange, Outcome};
use crate::upstream::meter::{Meter, Mode};
use crate::upstream::pool::{UpConn, read_watching};

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
pub(crate) struct Answer<'a> {
    pub(crate) head: ResponseHead,
    pub(crate) headers: &'a [HeaderIdx],
    pub(crate) rbuf: &'a mut [u8],
    pub(crate) filled: usize,
}

/// Relays the response head and body. Never fails: errors after the head are reported in the
/// body (SSE) or by closing the connection.
pub(crate) async fn relay(
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
        // `strict` audit: the end of the response waits (in `gateway::chat`) for the record.
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
    if let Some(suppressed) = crate::runtime::logging::allow(&crate::runtime::logging::UPSTREAM_CUT)
    {
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
