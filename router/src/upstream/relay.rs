//! The response body, relayed to the client as it arrives: de-chunked from the upstream,
//! re-framed for the client (length, chunked, or until close for HTTP/1.0), passed through the
//! usage [`Meter`] — or, when the upstream speaks another dialect, through a [`Translator`] —
//! and ended honestly when the upstream breaks off (an error event and a proper end of a
//! stream; a closed connection for a short fixed-length body).
//!
//! A translated stream goes out chunked, event by event as the upstream's arrive. A translated
//! whole answer (JSON, or an error) is complete only at its end, so its head waits for it: it
//! then goes out with a `content-length`, and an upstream that breaks off before the end gets
//! the client a 502 in its own dialect instead of half an answer.

use std::io::ErrorKind as IoKind;
use std::time::Instant;

use crate::control::table::Upstream;
use crate::dialect::translate::{Options, Translator};
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{self, push_hex, push_u64};
use crate::http::chunked::{Chunk, Decoder};
use crate::http::response::{BodyFraming, ResponseHead};
use crate::http::{HeaderIdx, is_hop_by_hop};
use crate::runtime::client::{Client, Next};
use crate::upstream::exchange::{Exchange, Outcome, context_overflow, falls_back};
use crate::upstream::meter::{CHARS_PER_TOKEN, Meter, Mode, Usage};
use crate::upstream::pool::{UpConn, read_watching};

/// How the relayed body is framed towards the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    Length,
    Chunked,
    /// HTTP/1.0 client and no upstream length: the body ends when we close.
    Close,
    Empty,
    /// A translated whole answer: head and body are written together at the end.
    Deferred,
}

/// An upstream's answer as read so far: its head, and the buffer holding the head (header
/// ranges index it) and the first body bytes.
pub(crate) struct Answer<'a> {
    pub(crate) head: ResponseHead,
    pub(crate) headers: &'a [HeaderIdx],
    pub(crate) rbuf: &'a mut [u8],
    pub(crate) filled: usize,
}

/// Most bytes of an event stream held back while waiting for its first content (past it the
/// stream is committed anyway).
const MAX_HELD: usize = 64 * 1024;

/// Relays the response head and body. Errors after the commit point are reported in the body
/// (SSE) or by closing the connection. The commit point of an event stream that another
/// candidate could still take is its first content (generated text, reasoning, tool
/// arguments), not its head: until then nothing is flushed, and an error event, a break or no
/// content within the endpoint's time to first byte is an `Err` — the client has seen nothing,
/// and the request goes on as after an error status.
pub(crate) async fn relay(
    x: &Exchange<'_>,
    up: &Upstream,
    mut conn: UpConn,
    answer: Answer<'_>,
    client: &mut Client<'_>,
) -> Result<(Next, Outcome), Error> {
    let core = x.core;
    let Answer {
        head,
        headers,
        rbuf,
        filled,
    } = answer;
    // An event stream another candidate could take is committed at its first content.
    let mut committed = !(head.event_stream && (200..300).contains(&head.status)) || x.last_chance;
    let content_by = Instant::now() + up.timeouts.ttft;
    client.must_close |= core.shutting_down();
    let ok = (200..300).contains(&head.status);
    let mut parser = core.pool.parsers.take();
    let translator = x.translation.map(|t| {
        Box::new(Translator::new(
            t.from,
            t.to,
            &Options {
                stream: head.event_stream && ok,
                include_usage: t.include_usage,
                created: u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0),
                id: x.id.as_str(),
                model: x.model,
                error_status: (!ok).then_some(head.status),
                endpoint: x.endpoint,
            },
            &mut parser,
        ))
    });
    // A translated whole answer goes out when complete: its head is kept until then.
    let mut saved_head = core.pool.bytes.take();
    let deferred = translator
        .as_ref()
        .filter(|t| t.content_type() != "text/event-stream")
        .map(|_| {
            saved_head.clear();
            saved_head.extend_from_slice(rbuf.get(..head.len).unwrap_or_default());
            &*saved_head
        });
    let out_framing = match head.framing {
        BodyFraming::Empty if translator.is_none() => Out::Empty,
        _ if deferred.is_some() => Out::Deferred,
        BodyFraming::Length(_) if translator.is_none() => Out::Length,
        _ if client.minor >= 1 => Out::Chunked,
        _ => Out::Close,
    };
    let close_client = client.must_close || out_framing == Out::Close;
    if deferred.is_none() {
        if committed {
            core.metrics().count_status(head.status);
        }
        write_head(
            x,
            &head,
            rbuf.get(..head.len).unwrap_or_default(),
            headers,
            translator.as_ref().map(|t| t.content_type()),
            out_framing,
            close_client,
            client.out,
        );
    }
    let mut held = core.pool.bytes.take();
    let mode = if head.event_stream && ok {
        Mode::Events {
            strip_usage: x.strip_usage,
        }
    } else {
        Mode::Json
    };
    let reader = match translator {
        Some(t) => Reader::Translate(t, &mut held),
        None => Reader::Meter(Meter::new(mode, x.api.wire(), &mut held)),
    };
    let mut body = Body {
        framing: head.framing,
        out: out_framing,
        remaining: match head.framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        },
        decoder: Decoder::new(),
        reader,
        outcome: Outcome {
            status: head.status,
            upstream_status: Some(head.status),
            retry_after_ms: (head.status >= 400)
                .then(|| {
                    let hbuf = rbuf.get(..head.len).unwrap_or_default();
                    crate::control::breaker::retry_after_ms(
                        crate::http::header_str(hbuf, headers, b"retry-after"),
                        crate::http::header_str(hbuf, headers, b"retry-after-ms"),
                    )
                })
                .flatten(),
            upstream_latency_ms: Some(x.report().latency_ms),
            context_overflow: context_overflow(
                head.status,
                rbuf.get(head.len..filled).unwrap_or_default(),
            ),
            // An event stream commits at its first body bytes (set below), anything else at
            // its head.
            first_byte_us: (!(head.event_stream && ok)).then(|| elapsed_us(x)),
            ..Outcome::default()
        },
        clean: true,
        done: head.framing == BodyFraming::Empty,
    };
    let mut pending = head.len..filled;
    // Each turn relays what was read, then reads on; a `break` carries why the upstream's
    // body broke off and whether a read timed out (the stream is then ended by `cut`).
    let (why, timed_out) = loop {
        let input = rbuf.get(pending.clone()).unwrap_or_default();
        if body.outcome.first_byte_us.is_none() && !input.is_empty() && committed {
            body.outcome.first_byte_us = Some(elapsed_us(x));
        }
        if let Err(why) = body.take(input, client.out) {
            break (why, false);
        }
        if !committed {
            if let Some(status) = body.error_status().filter(|&s| falls_back(s)) {
                client.out.clear();
                return Err(stream_refused(x, status));
            }
            if body.generated() > 0 || body.done || client.out.len() > MAX_HELD {
                committed = true;
                if let Reader::Meter(m) = &mut body.reader {
                    m.committed();
                }
                core.metrics().count_status(head.status);
                body.outcome.first_byte_us = Some(elapsed_us(x));
            }
        }
        if body.done {
            match &deferred {
                Some(saved) => {
                    let mut answer = core.pool.bytes.take();
                    answer.clear();
                    let status = body.end_whole(x, &mut answer);
                    core.metrics().count_status(status);
                    write_whole(x, status, saved, headers, &answer, close_client, client.out);
                }
                None => body.end(x, client.out),
            }
        }
        // `strict` audit: the end of the response waits (in `gateway::chat`) for the record.
        let hold = (body.done && x.hold_last) || !committed;
        // One clock reading after this turn's work, one after each wait (waits: not ours).
        let mut now = Instant::now();
        if !hold && !client.out.is_empty() {
            let flushed = client.flush().await;
            now = x.waited_since(now);
            if flushed.is_err() {
                // The client went away: drop the upstream connection (its response is
                // unread), which also tells the upstream to stop generating.
                return Ok(left(
                    body,
                    "client closed the connection during the response",
                ));
            }
        }
        if body.done {
            return Ok(finished(x, up, conn, &head, body, close_client));
        }
        // The next read waits at most the endpoint's idle gap, or what is left of the
        // attempt's time.
        let remaining = x
            .give_up_at
            .get()
            .map(|end| end.saturating_duration_since(now));
        let mut wait = remaining.map_or(up.timeouts.idle, |r| r.min(up.timeouts.idle));
        if !committed {
            wait = wait.min(content_by.saturating_duration_since(now));
            if wait.is_zero() {
                client.out.clear();
                return Err(no_content(x, up));
            }
        }
        if wait.is_zero() {
            break (
                "ran out of time in the middle of the response (the endpoint's `timeouts.total_ms` or the request's deadline)".to_owned(),
                true,
            );
        }
        // A quiet stream (the model thinking) must not hide a client that left.
        let read = read_watching(&mut conn, rbuf, wait, now, client).await;
        x.waited_since(now);
        let Some(read) = read else {
            client.out.clear();
            return Ok(left(
                body,
                "client closed the connection during the response; the upstream request was cancelled",
            ));
        };
        match read {
            Ok(0) if head.framing == BodyFraming::UntilClose => {
                // The end of a close-delimited body; the loop top writes the last chunk.
                body.done = true;
                body.clean = false;
                pending = 0..0;
            }
            Ok(n) if n > 0 => pending = 0..n,
            Ok(_) => {
                break (
                    "closed the connection before the response was complete".to_owned(),
                    false,
                );
            }
            Err(e) if e.kind() == IoKind::TimedOut && wait < up.timeouts.idle => {
                break (
                "ran out of time in the middle of the response (the endpoint's `timeouts.total_ms` or the request's deadline)".to_owned(),
                true,
            );
            }
            Err(e) if e.kind() == IoKind::TimedOut => {
                break (
                    format!(
                        "stopped sending for {} ms in the middle of the response",
                        up.timeouts.idle.as_millis()
                    ),
                    true,
                );
            }
            Err(e) => break (format!("failed in the middle of the response: {e}"), false),
        }
    };
    if !committed {
        // Nothing reached the client: the next candidate may take the request (after a
        // timeout always; after a break only where the rule allows resending).
        client.out.clear();
        x.upstream_failed();
        let kind = if timed_out {
            ErrorKind::UpstreamTimeout
        } else {
            ErrorKind::UpstreamBadResponse
        };
        return Err(Error::new(
            kind,
            format!("endpoint `{}` {why}, before its first token", x.endpoint),
        ));
    }
    body.settle(&why, client.out);
    Ok(cut(x, conn, client, &mut body, head.event_stream, &why).await)
}

/// An event stream that sent no content within the endpoint's time to first byte.
fn no_content(x: &Exchange<'_>, up: &Upstream) -> Error {
    x.upstream_failed();
    Error::new(
        ErrorKind::UpstreamTimeout,
        format!(
            "endpoint `{}` sent no content within {} ms",
            x.endpoint,
            up.timeouts.ttft.as_millis()
        ),
    )
}

/// An event stream whose first event (before any content) was an error: the request goes on
/// as after that status.
fn stream_refused(x: &Exchange<'_>, status: u16) -> Error {
    x.upstream_failed();
    let mut err = Error::new(
        ErrorKind::UpstreamRefused,
        format!(
            "endpoint `{}` began its stream with an error event ({status}); the request went to the next candidate",
            x.endpoint
        ),
    );
    err.upstream_status = Some(status);
    err
}

/// Time since the request head was complete, in µs.
fn elapsed_us(x: &Exchange<'_>) -> u64 {
    u64::try_from(x.req.started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The relay's end when the client left: the record says so, and what the reader read.
fn left(mut body: Body<'_>, why: &str) -> (Next, Outcome) {
    body.abandon();
    body.outcome.error = Some(why.to_owned());
    body.outcome.client_gone = true;
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
    body.read_usage();
    let outcome = std::mem::take(&mut body.outcome);
    tracing::debug!(
        request_id = x.id.as_str(),
        endpoint = x.endpoint,
        rule = x.rule,
        model = x.model,
        status = head.status,
        stream = x.stream,
        tokens_in = outcome.usage.map(|u| u.input),
        tokens_out = outcome.usage.map(|u| u.output),
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

/// The client's response head: the upstream's status and end-to-end headers (its
/// `content-type` replaced by `content_type` when translated), ours (`x-request-id`,
/// `x-switchyard-route`, `x-switchyard-dropped`), and our framing.
#[expect(
    clippy::too_many_arguments,
    reason = "the head's parts, each used once"
)]
fn write_head(
    x: &Exchange<'_>,
    head: &ResponseHead,
    hbuf: &[u8],
    headers: &[HeaderIdx],
    content_type: Option<&str>,
    out_framing: Out,
    close_client: bool,
    out: &mut Vec<u8>,
) {
    respond::status_line(out, head.status);
    end_to_end_headers(x, head.status, hbuf, headers, content_type, out);
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

/// The upstream's end-to-end headers and ours. An error after more than one attempt says
/// `x-should-retry: false`: the router has already tried the rule's other candidates, and the
/// OpenAI and Anthropic SDKs, which retry errors on their own, obey it.
fn end_to_end_headers(
    x: &Exchange<'_>,
    status: u16,
    hbuf: &[u8],
    headers: &[HeaderIdx],
    content_type: Option<&str>,
    out: &mut Vec<u8>,
) {
    let tried_enough = status >= 400 && x.attempt >= 2;
    for h in headers {
        let name = h.name(hbuf);
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"date")
            || name.eq_ignore_ascii_case(b"server")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || name.eq_ignore_ascii_case(b"x-switchyard-route")
            || (tried_enough && name.eq_ignore_ascii_case(b"x-should-retry"))
            || (content_type.is_some() && name.eq_ignore_ascii_case(b"content-type"))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(hbuf));
        out.extend_from_slice(b"\r\n");
    }
    respond::ids(out, &x.id, &x.report());
    if let Some(ct) = content_type {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !x.dropped.is_empty() {
        out.extend_from_slice(b"x-switchyard-dropped: ");
        out.extend_from_slice(x.dropped.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if tried_enough {
        out.extend_from_slice(b"x-should-retry: false\r\n");
    }
}

/// A translated whole answer, head and body (its status: the upstream's, or 502 when its
/// answer could not be translated).
fn write_whole(
    x: &Exchange<'_>,
    status: u16,
    hbuf: &[u8],
    headers: &[HeaderIdx],
    body: &[u8],
    close_client: bool,
    out: &mut Vec<u8>,
) {
    respond::status_line(out, status);
    end_to_end_headers(x, status, hbuf, headers, Some("application/json"), out);
    out.extend_from_slice(b"content-length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// What reads the relayed body: the meter (passed through), or a translator (with the
/// buffer its output goes through before it is framed for the client).
enum Reader<'m> {
    Meter(Meter<'m>),
    Translate(Box<Translator<'m>>, &'m mut Vec<u8>),
}

/// The relayed body's state: how the upstream frames it and the client gets it, what reads
/// it, and what the audit record will say.
struct Body<'m> {
    framing: BodyFraming,
    out: Out,
    /// Bytes left of a length-framed body.
    remaining: u64,
    decoder: Decoder,
    reader: Reader<'m>,
    outcome: Outcome,
    /// The upstream connection ends exactly at the body's end (it may be pooled).
    clean: bool,
    done: bool,
}

impl Body<'_> {
    /// Characters of generated text read so far.
    fn generated(&self) -> u64 {
        match &self.reader {
            Reader::Meter(meter) => meter.generated(),
            Reader::Translate(t, _) => t.tally().chars,
        }
    }

    /// The status of an error event read before any content.
    fn error_status(&self) -> Option<u16> {
        match &self.reader {
            Reader::Meter(meter) => meter.error_status(),
            Reader::Translate(t, _) => t.tally().error_status,
        }
    }

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
                self.remaining -= take as u64;
                self.clean &= take == input.len();
                self.done = self.remaining == 0;
                match &mut self.reader {
                    // A length-framed body goes out with the same length: passed through
                    // whole (an event stream with a length is rare; its usage chunk stays).
                    Reader::Meter(meter) if self.out == Out::Length => {
                        meter.pass(data, &mut |_| {});
                        self.outcome.response_bytes += data.len() as u64;
                        out.extend_from_slice(data);
                    }
                    _ => self.pass(data, out)?,
                }
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
                            self.pass(data, out)?;
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
            BodyFraming::UntilClose => self.pass(input, out)?,
        }
        Ok(())
    }

    /// Decoded body bytes through the reader to the client, framed for it.
    fn pass(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let (framing, bytes) = (self.out, &mut self.outcome.response_bytes);
        match &mut self.reader {
            Reader::Meter(meter) => {
                meter.pass(data, &mut |kept| {
                    *bytes += kept.len() as u64;
                    emit(out, framing, kept);
                });
                Ok(())
            }
            Reader::Translate(t, translated) => {
                translated.clear();
                let r = t.push(data, translated);
                *bytes += translated.len() as u64;
                emit(out, framing, translated);
                r
            }
        }
    }

    /// The body is complete: what the reader held goes out, then the last chunk.
    fn end(&mut self, x: &Exchange<'_>, out: &mut Vec<u8>) {
        let (framing, bytes) = (self.out, &mut self.outcome.response_bytes);
        match &mut self.reader {
            Reader::Meter(meter) => meter.finish(&mut |kept| {
                *bytes += kept.len() as u64;
                emit(out, framing, kept);
            }),
            Reader::Translate(t, translated) => {
                translated.clear();
                if let Err(why) = t.finish(translated) {
                    self.outcome.error = Some(format!("endpoint `{}` {why}", x.endpoint));
                }
                *bytes += translated.len() as u64;
                emit(out, framing, translated);
            }
        }
        if self.out == Out::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    /// A translated whole answer is complete: it is written to `answer`; returns the status
    /// to send (502 when it could not be translated).
    fn end_whole(&mut self, x: &Exchange<'_>, answer: &mut Vec<u8>) -> u16 {
        let Reader::Translate(t, _) = &mut self.reader else {
            return self.outcome.status;
        };
        if let Err(why) = t.finish(answer) {
            let err = Error::new(
                ErrorKind::UpstreamBadResponse,
                format!("endpoint `{}` {why}", x.endpoint),
            );
            answer.clear();
            err.write_body_in(answer, x.api.wire());
            self.outcome.error = Some(err.message.to_string());
            self.outcome.status = err.kind.status();
        }
        self.outcome.response_bytes = answer.len() as u64;
        self.outcome.status
    }

    /// Usage, stop reason and (without usage) an estimate, from what the reader read.
    fn read_usage(&mut self) {
        let o = &mut self.outcome;
        match &mut self.reader {
            Reader::Meter(meter) => {
                o.usage = meter.usage();
                o.stop_reason = meter.stop_reason();
                if o.usage.is_none() {
                    o.estimated_completion = meter.estimated_completion_tokens();
                }
            }
            Reader::Translate(t, _) => {
                let tally = t.tally();
                o.usage = Usage::of(&tally.counts);
                o.stop_reason = t.stop_reason().map(std::borrow::Cow::Borrowed);
                if o.usage.is_none() {
                    o.estimated_completion = Some(tally.chars.div_ceil(CHARS_PER_TOKEN));
                }
            }
        }
    }

    /// The upstream cut the body short (`why`): what the reader holds goes to `out` (a
    /// translated stream ends with an error event), and what it read goes in the outcome.
    fn settle(&mut self, why: &str, out: &mut Vec<u8>) {
        let (framing, bytes) = (self.out, &mut self.outcome.response_bytes);
        match &mut self.reader {
            Reader::Meter(meter) => meter.finish(&mut |kept| {
                *bytes += kept.len() as u64;
                emit(out, framing, kept);
            }),
            Reader::Translate(t, translated) if framing != Out::Deferred => {
                translated.clear();
                t.cut(why, translated);
                *bytes += translated.len() as u64;
                emit(out, framing, translated);
            }
            Reader::Translate(..) => {}
        }
        self.read_usage();
    }

    /// The client left: nothing more is sent; what the reader read goes in the outcome.
    fn abandon(&mut self) {
        if let Reader::Meter(meter) = &mut self.reader {
            meter.finish(&mut |_| {});
        }
        self.read_usage();
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

/// Ends a relay whose upstream failed after the head was sent (or, for a translated whole
/// answer, before anything was).
async fn cut(
    x: &Exchange<'_>,
    conn: UpConn,
    client: &mut Client<'_>,
    body: &mut Body<'_>,
    event_stream: bool,
    why: &str,
) -> (Next, Outcome) {
    let mut outcome = std::mem::take(&mut body.outcome);
    outcome.error = Some(format!("endpoint `{}` {why}", x.endpoint));
    // Its response is unread: the connection cannot be reused. Closing it also tells the
    // upstream to stop generating.
    drop(conn);
    x.upstream_failed();
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
    let err = Error::new(
        ErrorKind::UpstreamBadResponse,
        format!("endpoint `{}` {why}", x.endpoint),
    );
    match body.out {
        Out::Deferred => {
            // Nothing was sent: the client gets a proper 502 in its dialect.
            outcome.status = err.kind.status();
            outcome.response_bytes = crate::gateway::reply::error_with_id(
                x.core,
                client,
                &x.id,
                &err,
                &x.report(),
                x.api.wire(),
            );
            let next = if client.flush().await.is_err() || client.must_close {
                Next::Close
            } else {
                Next::KeepAlive
            };
            return (next, outcome);
        }
        Out::Chunked => {}
        _ => {
            // A short fixed-length (or close-delimited) body: closing is the only honest
            // signal.
            let _ = client.flush().await;
            return (Next::Close, outcome);
        }
    }
    if matches!(body.reader, Reader::Translate(..)) {
        // The translator has written the error event in the client's dialect.
    } else if event_stream {
        let mut event = b"\n\ndata: ".to_vec();
        err.write_body(&mut event);
        event.extend_from_slice(b"\n\n");
        emit(client.out, Out::Chunked, &event);
        outcome.response_bytes += event.len() as u64;
    } else {
        // Chunked but not SSE: leave the chunked body unterminated and close.
        let _ = client.flush().await;
        return (Next::Close, outcome);
    }
    client.out.extend_from_slice(b"0\r\n\r\n");
    if client.flush().await.is_err() {
        return (Next::Close, outcome);
    }
    let next = if client.must_close {
        Next::Close
    } else {
        Next::KeepAlive
    };
    (next, outcome)
}
