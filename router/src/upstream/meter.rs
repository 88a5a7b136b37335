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
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

/// Characters per token assumed by estimates (a common heuristic for English text).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Largest JSON answer kept whole for reading its usage (larger ones are read from a tail).
pub const MAX_KEPT_JSON: usize = 1024 * 1024;
/// Largest Server-Sent Event held back until it is complete; a longer one is passed on as it
/// comes and the rest of the stream is relayed unread.
pub const MAX_EVENT: usize = 1024 * 1024;
/// Bytes of a JSON answer's end searched for `usage` before the whole answer is parsed.
const TAIL: usize = 4096;

/// Prompt and completion token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// An OpenAI `usage` object; other fields (`total_tokens`, `*_details`) are ignored.
#[derive(Debug, Deserialize)]
struct UsageJson {
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<UsageJson> for Usage {
    fn from(u: UsageJson) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// A chat completion or one chunk of a streamed one: what metering reads of it.
#[derive(Debug, Deserialize)]
struct Answer<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<UsageJson>,
}

#[derive(Debug, Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
    #[serde(default, borrow)]
    delta: Option<Message<'a>>,
    /// Legacy completions.
    #[serde(default)]
    text: Text,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(default)]
    content: Text,
    #[serde(default)]
    reasoning_content: Text,
    #[serde(default)]
    reasoning: Text,
    #[serde(default)]
    refusal: Text,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    function_call: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
struct Function<'a> {
    #[serde(default, borrow)]
    #[expect(dead_code, reason = "deserialized only to borrow the whole object")]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    arguments: Text,
}

/// The length in characters of a string field; anything else (null, an array of content
/// parts) counts as zero rather than failing the parse.
#[derive(Debug, Default)]
struct Text(u64);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or anything else")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.chars().count() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(0))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(0))
            }
        }
        d.deserialize_any(V)
    }
}

impl Answer<'_> {
    /// Characters of generated text in this answer or chunk.
    fn generated_chars(&self) -> u64 {
        let message = |m: &Message<'_>| {
            let calls = m
                .tool_calls
                .iter()
                .flatten()
                .filter_map(|c| c.function.as_ref())
                .chain(m.function_call.as_ref())
                .fold(0u64, |n, f| n.saturating_add(f.arguments.0));
            [
                m.content.0,
                m.reasoning_content.0,
                m.reasoning.0,
                m.refusal.0,
                calls,
            ]
            .iter()
            .fold(0u64, |n, &c| n.saturating_add(c))
        };
        self.choices
            .iter()
            .flatten()
            .map(|c| {
                let m = c.message.as_ref().map_or(0, message);
                let d = c.delta.as_ref().map_or(0, message);
                m.saturating_add(d).saturating_add(c.text.0)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// The extra usage chunk of a stream: no choices, a usage object.
    fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.as_ref().is_none_or(Vec::is_empty)
    }
}

/// Prompt tokens of a request estimated from its messages' text (for when the upstream
/// reports no usage); from its size when it cannot be read.
#[must_use]
pub fn estimate_prompt_tokens(body: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Prompt {
        #[serde(default)]
        messages: Vec<PromptMessage>,
    }
    #[derive(Deserialize)]
    struct PromptMessage {
        #[serde(default)]
        content: Parts,
    }
    match serde_json::from_slice::<Prompt>(body) {
        Ok(p) => p
            .messages
            .iter()
            .fold(0u64, |n, m| n.saturating_add(m.content.0))
            .div_ceil(CHARS_PER_TOKEN),
        Err(_) => (body.len() as u64).div_ceil(CHARS_PER_TOKEN),
    }
}

/// The characters of a message's `content`: a string, or the `text` of its parts.
#[derive(Debug, Default)]
struct Parts(u64);

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Part {
            #[serde(default)]
            text: Text,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Parts, E> {
                Ok(Parts(s.chars().count() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Parts, E> {
                Ok(Parts(0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
                let mut n = 0u64;
                while let Some(p) = seq.next_element::<Part>()? {
                    n = n.saturating_add(p.text.0);
                }
                Ok(Parts(n))
            }
        }
        d.deserialize_any(V)
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
    /// JSON: the body (up to [`MAX_KEPT_JSON`]), then its last [`TAIL`] bytes.
    /// Events: the incomplete event held back.
    buf: &'b mut Vec<u8>,
    /// JSON: the body went past [`MAX_KEPT_JSON`] (only a tail is kept).
    overflowed: bool,
    /// Events: an event went past [`MAX_EVENT`]; the rest passes unread.
    unsynced: bool,
    usage: Option<Usage>,
    generated_chars: u64,
}

impl<'b> Meter<'b> {
    /// A meter keeping its bytes in `buf` (cleared first).
    pub fn new(mode: Mode, buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Self {
            mode,
            buf,
            overflowed: false,
            unsynced: false,
            usage: None,
            generated_chars: 0,
        }
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
        if self.mode == Mode::Json && self.usage.is_none() {
            self.usage = self.json_usage();
        }
        self.usage
    }

    /// Completion tokens estimated from the generated text seen (for when there is no
    /// usage). A JSON answer is parsed for this only when asked.
    #[must_use]
    pub fn estimated_completion_tokens(&mut self) -> Option<u64> {
        if self.mode == Mode::Json {
            if self.overflowed {
                return None;
            }
            let answer = serde_json::from_slice::<Answer<'_>>(self.buf).ok()?;
            self.generated_chars = answer.generated_chars();
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
    fn json_usage(&self) -> Option<Usage> {
        let tail = self.buf.get(self.buf.len().saturating_sub(TAIL)..)?;
        if let Some(u) = usage_after_key(tail) {
            return Some(u);
        }
        if self.overflowed {
            return None;
        }
        let answer = serde_json::from_slice::<Answer<'_>>(self.buf).ok()?;
        answer.usage.map(Usage::from)
    }

    /// Reads one event's data; returns whether it goes on to the client.
    fn read_event(&mut self, event: std::ops::Range<usize>, strip_usage: bool) -> bool {
        let Some(data) = self.buf.get(event).and_then(event_data) else {
            return true;
        };
        if data.first() != Some(&b'{') {
            return true;
        }
        let Ok(chunk) = serde_json::from_slice::<Answer<'_>>(&data) else {
            return true;
        };
        self.generated_chars = self.generated_chars.saturating_add(chunk.generated_chars());
        let usage_only = chunk.is_usage_only();
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        !(strip_usage && usage_only)
    }
}

/// The length of the first complete event in `buf` (through the blank line that ends it),
/// if there is one. Lines end with LF, CRLF or CR (the SSE specification allows all three).
fn event_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', buf.get(from..)?) {
        let at = from + i;
        let eol = match (buf.get(at), buf.get(at + 1)) {
            (Some(b'\r'), Some(b'\n')) => at + 2,
            // A CR at the very end may be the first half of a CRLF: wait for more.
            (Some(b'\r'), None) => return None,
            _ => at + 1,
        };
        match (buf.get(eol), buf.get(eol + 1)) {
            (Some(b'\n'), _) => return Some(eol + 1),
            (Some(b'\r'), Some(b'\n')) => return Some(eol + 2),
            (Some(b'\r'), Some(_)) => return Some(eol + 1),
            (Some(b'\r'), None) | (None, _) => return None,
            _ => from = eol,
        }
    }
    None
}

/// The data of an event: its `data:` lines joined with LF (one leading space dropped from
/// each); `None` when it has none.
fn event_data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    for line in event.split(|&b| b == b'\n' || b == b'\r') {
        let Some(value) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match value.first() {
            Some(b':') => value.get(1..).unwrap_or_default(),
            None => value,
            Some(_) => continue,
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// The usage object after the last `"usage"` key in `text`, parsed with a real JSON parser
/// (so key order, whitespace and nested details do not matter).
fn usage_after_key(text: &[u8]) -> Option<Usage> {
    let mut end = text.len();
    while let Some(at) = memchr::memmem::rfind(text.get(..end)?, b"\"usage\"") {
        end = at;
        let rest = text.get(at + 7..)?;
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        if rest.get(colon) != Some(&b':') {
            continue;
        }
        let value = rest.get(colon + 1..)?;
        let mut values = serde_json::Deserializer::from_slice(value).into_iter::<UsageJson>();
        if let Some(Ok(u)) = values.next() {
            return Some(u.into());
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
        let mut meter = Meter::new(mode, &mut buf);
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
                prompt_tokens: 12,
                completion_tokens: 34
            })
        );
        // Usage first and a long answer after it: found by parsing the whole answer.
        let long = format!(
            r#"{{"usage":{{"prompt_tokens":1,"completion_tokens":2}},"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
            "y".repeat(10_000)
        );
        assert_eq!(
            run(Mode::Json, &[long.as_bytes()])
                .1
                .unwrap()
                .completion_tokens,
            2
        );
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
                    prompt_tokens: 7,
                    completion_tokens: 6
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
    }

    #[test]
    fn event_boundaries() {
        assert_eq!(event_len(b"data: x\n\nrest"), Some(9));
        assert_eq!(event_len(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_len(b"data: x\r\rrest"), Some(9));
        assert_eq!(event_len(b"data: x\r\n\r"), None);
        assert_eq!(event_len(b"data: x\n"), None);
        assert_eq!(event_len(b"data: x\r"), None);
        assert_eq!(event_len(b": comment\ndata: y\n\n"), Some(19));
        assert_eq!(
            event_data(b"event: e\ndata: a\ndata:b\n\n").as_deref(),
            Some(&b"a\nb"[..])
        );
    }

    #[test]
    fn an_endless_event_is_passed_on_unread() {
        let big = vec![b'x'; MAX_EVENT + 10];
        let (out, usage, _) = run(Mode::Events { strip_usage: true }, &[&big, STREAM]);
        assert_eq!(out.len(), big.len() + STREAM.len());
        assert_eq!(usage, None);
    }
}
