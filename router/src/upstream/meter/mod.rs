//! Token usage of a relayed answer: read from the upstream's `usage` object with a real JSON
//! parse, or — when the upstream reports none — estimated from the text it generated.
//!
//! OpenAI-compatible servers report `usage` at the end of a JSON completion and, for streams,
//! in one extra chunk (`"choices": []` plus `usage`) before `[DONE]` — but only when the
//! request sets `stream_options.include_usage`, which SDKs leave off by default. The proxy
//! therefore asks for it on every stream ([`crate::gateway::body::ask_for_usage`]) and, when the client
//! had not asked, the [`Meter`] takes that chunk out of what the client receives: the client
//! sees the stream it asked for, and the audit record, limits and cost get the upstream's own
//! count.
//!
//! A JSON answer passes through untouched; the meter keeps its bytes (up to
//! [`MAX_KEPT_JSON`]) and reads `usage` at the end. A stream is cut into Server-Sent Events
//! (only whole events are passed on, so the held tail is at most one incomplete event, up to
//! [`MAX_EVENT`]); each `data:` payload that is a JSON object is parsed for its usage and for
//! the characters of generated text (content, reasoning, refusals, tool-call arguments), from
//! which an estimate is made when no usage arrives ([`CHARS_PER_TOKEN`], flagged as an
//! estimate in the audit record).

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::dialect::Wire;
use crate::dialect::ir::Counts;
use crate::dialect::sse::{MAX_EVENT, event_data, event_len};

mod shapes;

pub use self::shapes::estimate_prompt_tokens;
use self::shapes::{Answer, AnthropicAnswer, AnthropicEvent, UsageJson};

/// Characters per token assumed by estimates (a common heuristic for English text).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Largest JSON answer kept whole for reading its usage (larger ones are read from a tail).
pub const MAX_KEPT_JSON: usize = 1024 * 1024;
/// Bytes of a JSON answer's end searched for `usage` before the whole answer is parsed.
const TAIL: usize = 4096;

/// Token counts of an answer as the audit trail keeps them: `input` counts every prompt
/// token, cached ones included (OpenAI's way; an Anthropic answer's three input counts are
/// added up), and `cache_read` and `cache_write` say how many of them were cached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    /// The usage reported as `counts`, if any count was.
    #[must_use]
    pub fn of(counts: &Counts) -> Option<Self> {
        counts.any().then(|| Self {
            input: counts.prompt_total(),
            output: counts.output.unwrap_or(0),
            cache_read: counts.cache_read.unwrap_or(0),
            cache_write: counts.cache_write.unwrap_or(0),
        })
    }
}

/// A stop reason as the audit trail keeps it: the known values without an allocation.
#[must_use]
pub fn stop_text(reason: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 12] = [
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "function_call",
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "refusal",
        "pause_turn",
        "model_context_window_exceeded",
    ];
    match KNOWN.iter().find(|k| **k == reason) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(reason.chars().take(64).collect()),
    }
}

/// How the meter reads the body it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A JSON answer (or anything that is not an event stream): passed through whole.
    Json,
    /// Server-Sent Events; `strip_usage`: the client did not ask for the usage chunk (the
    /// proxy asked for it), so it is taken out.
    Events { strip_usage: bool },
}

/// Reads usage from a relayed body and decides which of its bytes go on to the client.
#[derive(Debug)]
pub struct Meter<'b> {
    mode: Mode,
    /// The dialect of the body.
    wire: Wire,
    /// JSON: the body (up to [`MAX_KEPT_JSON`]), then its last [`TAIL`] bytes.
    /// Events: the incomplete event held back.
    buf: &'b mut Vec<u8>,
    /// JSON: the body went past [`MAX_KEPT_JSON`] (only a tail is kept).
    overflowed: bool,
    /// Events: an event went past [`MAX_EVENT`]; the rest passes unread.
    unsynced: bool,
    /// Counts reported so far (cumulative: the latest wins).
    counts: Option<Counts>,
    stop: Option<Cow<'static, str>>,
    generated_chars: u64,
    /// The status an error event in the stream stands for (the first one seen).
    error_status: Option<u16>,
    /// Events are searched for an error until the stream is committed to the client.
    watch_errors: bool,
}

impl<'b> Meter<'b> {
    /// A meter for a body in `wire`'s dialect, keeping its bytes in `buf` (cleared first).
    pub fn new(mode: Mode, wire: Wire, buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Self {
            mode,
            wire,
            buf,
            overflowed: false,
            unsynced: false,
            counts: None,
            stop: None,
            generated_chars: 0,
            error_status: None,
            watch_errors: true,
        }
    }

    /// Characters of generated text (content, reasoning, refusals, tool-call arguments) seen
    /// so far in a stream.
    #[must_use]
    pub fn generated(&self) -> u64 {
        self.generated_chars
    }

    /// The stream reached the client: an error event can no longer send the request
    /// elsewhere, and events are no longer searched for one.
    pub fn committed(&mut self) {
        self.watch_errors = false;
    }

    /// The status an error event in the stream stands for (Anthropic `overloaded_error`:
    /// 529, a rate limit: 429, anything else: 500), once one was seen.
    #[must_use]
    pub fn error_status(&self) -> Option<u16> {
        self.error_status
    }

    /// Takes the next decoded body bytes; calls `out` with the bytes to send on, in order
    /// (all of them for JSON; whole events for a stream).
    pub fn pass(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) {
        match self.mode {
            Mode::Json => {
                self.keep_json(data);
                out(data);
            }
            Mode::Events { .. } if self.unsynced => out(data),
            Mode::Events { strip_usage } => {
                self.buf.extend_from_slice(data);
                let mut at = 0;
                let mut kept = 0..0;
                while let Some(len) = event_len(self.buf.get(at..).unwrap_or_default()) {
                    let event = at..at + len;
                    let keep = self.read_event(event.clone(), strip_usage);
                    if keep && kept.end == event.start {
                        kept.end = event.end;
                    } else if keep {
                        out(self.buf.get(kept.clone()).unwrap_or_default());
                        kept = event.clone();
                    }
                    at = event.end;
                }
                out(self.buf.get(kept).unwrap_or_default());
                self.buf.drain(..at);
                if self.buf.len() > MAX_EVENT {
                    // Not an event stream we can follow: pass everything on unread.
                    out(self.buf.as_slice());
                    self.buf.clear();
                    self.unsynced = true;
                }
            }
        }
    }

    /// At the end of the body: passes on what is held (an unterminated last event).
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if let Mode::Events { strip_usage } = self.mode
            && !self.buf.is_empty()
        {
            let len = self.buf.len();
            if self.read_event(0..len, strip_usage) {
                out(self.buf.as_slice());
            }
            self.buf.clear();
        }
    }

    /// The upstream's usage, if it reported one.
    #[must_use]
    pub fn usage(&mut self) -> Option<Usage> {
        if self.mode == Mode::Json && self.counts.is_none() {
            self.counts = self.json_usage();
        }
        self.counts.as_ref().and_then(Usage::of)
    }

    /// The stop reason the answer gave (OpenAI `finish_reason`, Anthropic `stop_reason`).
    #[must_use]
    pub fn stop_reason(&mut self) -> Option<Cow<'static, str>> {
        if self.mode == Mode::Json && self.stop.is_none() {
            let key = match self.wire {
                Wire::OpenAi
                | Wire::Bedrock
                | Wire::BedrockInvoke
                | Wire::Gemini
                | Wire::VertexAnthropic => &*FINISH_REASON,
                Wire::Anthropic => &*STOP_REASON,
            };
            let tail = self.buf.get(self.buf.len().saturating_sub(TAIL)..)?;
            self.stop = value_after_key::<Cow<'_, str>>(tail, key).map(|s| stop_text(&s));
        }
        self.stop.clone()
    }

    /// Completion tokens estimated from the generated text seen (for when there is no
    /// usage). A JSON answer is parsed for this only when asked.
    #[must_use]
    pub fn estimated_completion_tokens(&mut self) -> Option<u64> {
        if self.mode == Mode::Json {
            if self.overflowed {
                return None;
            }
            self.generated_chars = match self.wire {
                Wire::OpenAi
                | Wire::Bedrock
                | Wire::BedrockInvoke
                | Wire::Gemini
                | Wire::VertexAnthropic => serde_json::from_slice::<Answer<'_>>(self.buf)
                    .ok()?
                    .generated_chars(),
                Wire::Anthropic => serde_json::from_slice::<AnthropicAnswer>(self.buf)
                    .ok()?
                    .generated_chars(),
            };
        }
        Some(self.generated_chars.div_ceil(CHARS_PER_TOKEN))
    }

    fn keep_json(&mut self, data: &[u8]) {
        if !self.overflowed && self.buf.len() + data.len() <= MAX_KEPT_JSON {
            self.buf.extend_from_slice(data);
            return;
        }
        self.overflowed = true;
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * TAIL {
            let cut = self.buf.len() - TAIL;
            self.buf.drain(..cut);
        }
    }

    /// Usage of a JSON answer: the value after the last `"usage"` key of its end, parsed; else
    /// the whole answer (when kept), parsed.
    fn json_usage(&self) -> Option<Counts> {
        let tail = self.buf.get(self.buf.len().saturating_sub(TAIL)..)?;
        if let Some(c) =
            value_after_key::<UsageJson>(tail, &USAGE).and_then(|u| u.counts(self.wire))
        {
            return Some(c);
        }
        if self.overflowed {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct WithUsage {
            #[serde(default)]
            usage: Option<UsageJson>,
        }
        let answer = serde_json::from_slice::<WithUsage>(self.buf).ok()?;
        answer.usage?.counts(self.wire)
    }

    /// Reads one event's data; returns whether it goes on to the client.
    fn read_event(&mut self, event: std::ops::Range<usize>, strip_usage: bool) -> bool {
        let Some(data) = self.buf.get(event).and_then(event_data) else {
            return true;
        };
        if data.first() != Some(&b'{') {
            return true;
        }
        // (Before any content only: the first content commits the stream to the client.)
        if self.watch_errors
            && self.generated_chars == 0
            && self.error_status.is_none()
            && ERROR.find(&data).is_some()
        {
            self.error_status = error_event_status(&data);
        }
        if self.wire == Wire::Anthropic {
            read_anthropic(
                &data,
                &mut self.counts,
                &mut self.stop,
                &mut self.generated_chars,
            );
            return true;
        }
        let Ok(chunk) = serde_json::from_slice::<Answer<'_>>(&data) else {
            return true;
        };
        self.generated_chars = self.generated_chars.saturating_add(chunk.generated_chars());
        if let Some(reason) = chunk.finish_reason() {
            self.stop = Some(stop_text(reason));
        }
        let usage_only = chunk.is_usage_only();
        if let Some(c) = chunk.usage.and_then(|u| u.counts(Wire::OpenAi)) {
            self.counts = Some(c);
        }
        !(strip_usage && usage_only)
    }
}

/// The status an error event stands for: OpenAI's `{"error": {"type"|"code"}}` or Anthropic's
/// `{"type": "error", "error": {"type"}}`; `None` when `data` is not an error event.
fn error_event_status(data: &[u8]) -> Option<u16> {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        error: Option<Body<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        code: Option<serde_json::Value>,
    }
    let e: Event<'_> = serde_json::from_slice(data).ok()?;
    let body = e.error?;
    if e.kind.as_deref().is_some_and(|k| k != "error") {
        return None;
    }
    let code = body.code.as_ref().and_then(serde_json::Value::as_str);
    Some(crate::dialect::errors::event_status(
        body.kind.as_deref(),
        code,
    ))
}

/// An Anthropic event: counts from `message_start` and `message_delta` (cumulative), the
/// stop reason, the generated text of deltas.
fn read_anthropic(
    data: &[u8],
    counts: &mut Option<Counts>,
    stop: &mut Option<Cow<'static, str>>,
    chars: &mut u64,
) {
    let Ok(e) = serde_json::from_slice::<AnthropicEvent<'_>>(data) else {
        return;
    };
    let usage = match e.kind.as_ref() {
        "message_start" => e.message.and_then(|m| m.usage),
        "message_delta" => e.usage,
        _ => None,
    };
    if let Some(c) = usage.and_then(|u| u.counts(Wire::Anthropic)) {
        *counts = Some(counts.unwrap_or_default().updated(c));
    }
    if let Some(d) = &e.delta {
        *chars = chars.saturating_add(d.generated_chars());
        if let Some(reason) = &d.stop_reason {
            *stop = Some(stop_text(reason));
        }
    }
}

/// The keys searched for in every answer, their searchers built once.
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static FINISH_REASON: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"finish_reason\""));
static STOP_REASON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"stop_reason\""));
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// The value after the last `key` (a quoted JSON key) in `text` that parses as a `T`, read with
/// a real JSON parser (so key order, whitespace and nested details do not matter).
fn value_after_key<'t, T: serde::Deserialize<'t>>(text: &'t [u8], key: &Finder<'_>) -> Option<T> {
    // Found forwards and tried last first: memchr's forward search is vectorised, its
    // reverse one is not (and it ran over every JSON answer's tail).
    let found: smallvec::SmallVec<[usize; 4]> = key.find_iter(text).collect();
    for &at in found.iter().rev() {
        let rest = text.get(at + key.needle().len()..)?;
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        if rest.get(colon) != Some(&b':') {
            continue;
        }
        let value = rest.get(colon + 1..)?;
        let mut values = serde_json::Deserializer::from_slice(value).into_iter::<T>();
        if let Some(Ok(v)) = values.next() {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn run(mode: Mode, parts: &[&[u8]]) -> (Vec<u8>, Option<Usage>, Option<u64>) {
        let mut buf = Vec::new();
        let mut meter = Meter::new(mode, Wire::OpenAi, &mut buf);
        let mut out = Vec::new();
        for p in parts {
            meter.pass(p, &mut |b| out.extend_from_slice(b));
        }
        meter.finish(&mut |b| out.extend_from_slice(b));
        let usage = meter.usage();
        let estimate = meter.estimated_completion_tokens();
        (out, usage, estimate)
    }

    #[test]
    fn json_usage_in_any_key_order_with_details() {
        let body = br#"{"choices":[{"message":{"content":"abcdefgh"}}],"usage":{"completion_tokens_details":{"reasoning_tokens":3},"completion_tokens":34,"prompt_tokens_details":{"cached_tokens":5},"prompt_tokens":12}}"#;
        let (out, usage, _) = run(Mode::Json, &[&body[..20], &body[20..]]);
        assert_eq!(out, body);
        assert_eq!(
            usage,
            Some(Usage {
                input: 12,
                output: 34,
                cache_read: 5,
                cache_write: 0
            })
        );
        // Usage first and a long answer after it: found by parsing the whole answer.
        let long = format!(
            r#"{{"usage":{{"prompt_tokens":1,"completion_tokens":2}},"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
            "y".repeat(10_000)
        );
        assert_eq!(run(Mode::Json, &[long.as_bytes()]).1.unwrap().output, 2);
        // The word "usage" inside generated text is not a usage object.
        let text =
            br#"{"choices":[{"message":{"content":"the \"usage\": {\"prompt_tokens\": 99}"}}]}"#;
        let (_, usage, estimate) = run(Mode::Json, &[text]);
        assert_eq!(usage, None);
        assert_eq!(estimate, Some(9), "35 characters of content");
    }

    const STREAM: &[u8] = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}],\"usage\":null}\n\n\
data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"x\\\":1}\"}}]}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":6,\"total_tokens\":13}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn the_usage_chunk_is_read_and_stripped_when_the_client_did_not_ask() {
        for cut in 0..STREAM.len() {
            let (out, usage, _) = run(
                Mode::Events { strip_usage: true },
                &[&STREAM[..cut], &STREAM[cut..]],
            );
            assert_eq!(
                usage,
                Some(Usage {
                    input: 7,
                    output: 6,
                    cache_read: 0,
                    cache_write: 0
                }),
                "cut at {cut}"
            );
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("total_tokens"), "cut at {cut}: {text}");
            assert_eq!(text.matches("data: ").count(), 4, "cut at {cut}");
            assert!(text.ends_with("data: [DONE]\n\n"));
        }
        let (out, _, _) = run(Mode::Events { strip_usage: false }, &[STREAM]);
        assert_eq!(out, STREAM);
    }

    #[test]
    fn without_usage_the_generated_text_is_estimated() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\r\n\r\ndata: {\"choices\":[{\"delta\":{\"reasoning_content\":\"ijkl\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        let (out, usage, estimate) = run(Mode::Events { strip_usage: true }, &[stream]);
        assert_eq!(out, stream);
        assert_eq!(usage, None);
        assert_eq!(estimate, Some(3), "12 characters");
    }

    #[test]
    fn prompts_are_estimated_from_their_text() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":[{"type":"text","text":"efgh"},{"type":"image_url","image_url":{"url":"data:..."}}]}]}"#;
        assert_eq!(estimate_prompt_tokens(body), 2);
        assert_eq!(estimate_prompt_tokens(b"not json!"), 3);
        // Anthropic: the system prompt and tool results' nested text count too.
        let body = br#"{"system":"abcd","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"efgh"}]},{"type":"text","text":"ijkl"}]}]}"#;
        assert_eq!(estimate_prompt_tokens(body), 3);
        // Embeddings: strings, or token ids (one token each).
        assert_eq!(estimate_prompt_tokens(br#"{"input":["abcd","efgh"]}"#), 2);
        assert_eq!(estimate_prompt_tokens(br#"{"input":[[1,2,3]]}"#), 3);
    }

    #[test]
    fn an_endless_event_is_passed_on_unread() {
        let big = vec![b'x'; MAX_EVENT + 10];
        let (out, usage, _) = run(Mode::Events { strip_usage: true }, &[&big, STREAM]);
        assert_eq!(out.len(), big.len() + STREAM.len());
        assert_eq!(usage, None);
    }
}
