//! One request on its way to one endpoint ([`Exchange`]), and what answering it produced for
//! its audit record ([`Outcome`]): the types the request phases hand to the mock endpoint,
//! the forwarder and the relay.

use std::borrow::Cow;

use crate::dialect::{Api, Wire};
use crate::gateway::respond::{RequestId, RouteReport, elapsed_ms};
use crate::runtime::client::Request;
use crate::runtime::core::Core;
use crate::upstream::meter::Usage;

/// One request on its way to one endpoint.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub core: &'a Core,
    pub req: &'a Request<'a>,
    pub id: RequestId<'a>,
    pub rule: u32,
    pub endpoint: &'a str,
    pub model: &'a str,
    pub stream: bool,
    /// The body to send (the client's, with `model` rewritten and usage asked for if needed).
    pub body: &'a [u8],
    /// A stream whose client did not ask for the usage chunk (`stream_options.include_usage`):
    /// the proxy asked the upstream for it, and the relay takes it out again.
    pub strip_usage: bool,
    /// Leave the end of the response unsent (`strict` audit: it goes once the record is
    /// durable).
    pub hold_last: bool,
    /// What the client asked for.
    pub api: Api,
    /// Set when the upstream speaks another dialect than the client: its answer is
    /// translated.
    pub translation: Option<Translation>,
    /// Request fields dropped in translation, for `x-switchyard-dropped` (empty: none).
    pub dropped: &'a str,
    /// Which upstream attempt of the request this is (1 for the first).
    pub attempt: u32,
    /// No candidate follows (the last of the rule's, or the last attempt allowed): an error
    /// the upstream answers is relayed. Otherwise an error the next candidate may mend
    /// ([`falls_back`]) is not: the request goes on to the next.
    pub last_chance: bool,
    /// Time spent waiting on the upstream and on the client (µs), added up by the forwarder
    /// and the relay: the rest of the request's time is the router's own
    /// (`switchyard_overhead_seconds`).
    pub waited_us: std::cell::Cell<u64>,
    /// The `traceparent` sent upstream (the request's trace; empty: none).
    pub traceparent: &'a [u8],
    /// When this attempt must end: the request's deadline, narrowed by the forwarder to the
    /// endpoint's `timeouts.total_ms` (`None`: no limit but the per-read ones).
    pub give_up_at: std::cell::Cell<Option<std::time::Instant>>,
}

/// Whether an upstream's status, before anything reached the client, sends the request to
/// the next candidate: timeouts, rate limits, server errors and overload (408, 429, 5xx,
/// Anthropic's 529), and refused credentials (401, 403: the next endpoint has other keys).
/// Other 4xx are the request's own fault and go back as they are.
#[must_use]
pub fn falls_back(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429) || (500..600).contains(&status)
}

/// A 400 or 413 whose body (`first`: what came with the head) says the prompt does not fit
/// the model's context window.
#[must_use]
pub fn context_overflow(status: u16, first: &[u8]) -> bool {
    matches!(status, 400 | 413) && crate::dialect::errors::says_context_overflow(first)
}

/// An answer to translate: from the upstream's dialect into the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub from: Wire,
    pub to: Wire,
    /// An OpenAI client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl Exchange<'_> {
    /// Counts an upstream failure in `switchyard_upstream_errors_total`.
    pub fn upstream_failed(&self) {
        self.core
            .metrics()
            .upstream_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `io` and counts the time it took as waiting (see [`Exchange::waited_us`]).
    pub async fn waiting<T>(&self, io: impl std::future::Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let out = io.await;
        self.waited_since(start);
        out
    }

    /// Counts the time since `since` as waiting; returns now (the one clock reading).
    pub fn waited_since(&self, since: std::time::Instant) -> std::time::Instant {
        let now = std::time::Instant::now();
        let us =
            u64::try_from(now.saturating_duration_since(since).as_micros()).unwrap_or(u64::MAX);
        self.waited_us.set(self.waited_us.get().saturating_add(us));
        now
    }

    /// The routing report for this exchange, with latency measured now.
    #[must_use]
    pub fn report(&self) -> RouteReport<'_> {
        RouteReport {
            endpoint: Some(self.endpoint),
            rule: Some(self.rule),
            latency_ms: elapsed_ms(self.req.started),
        }
    }
}

/// What answering a request produced, for its audit record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Status sent to the client.
    pub status: u16,
    /// Body bytes sent to the client.
    pub response_bytes: u64,
    /// The upstream's `usage` block, when it sent one.
    pub usage: Option<Usage>,
    /// Without `usage`: completion tokens estimated from the generated text, when readable.
    pub estimated_completion: Option<u64>,
    pub upstream_status: Option<u16>,
    /// Time from the request head to the upstream's response head.
    pub upstream_latency_ms: Option<u64>,
    /// What went wrong, for failed or cut-short answers.
    pub error: Option<String>,
    /// Why the model stopped, as the client was told (`stop`, `end_turn`, …).
    pub stop_reason: Option<Cow<'static, str>>,
    /// An upstream error's `retry-after-ms` / `Retry-After`, in ms.
    pub retry_after_ms: Option<i64>,
    /// Time from the request head to the commit point (µs): the upstream's response head, or
    /// on an event stream its first body bytes.
    pub first_byte_us: Option<u64>,
    /// The client left before the answer was complete.
    pub client_gone: bool,
    /// A 400 or 413 whose body says the prompt does not fit the model's context window.
    pub context_overflow: bool,
}
