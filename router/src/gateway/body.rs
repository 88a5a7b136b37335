//! The request body: one validating pass that finds the routing fields, and the `model` rewrite.
//!
//! The router needs four top-level fields of a chat request (`model`, `max_tokens`, `stream`,
//! `messages`) and must refuse a body that is not well-formed JSON before anything goes
//! upstream. [`scan`] does both in one pass over the bytes without building a tree: it checks
//! the whole document against RFC 8259 (UTF-8, string escapes, number grammar, nesting) and
//! records where the top-level `model` string sits, so [`rewrite_model`] can replace exactly
//! those bytes and forward everything else unchanged.
//!
//! Keys are compared after unescaping (`"mod\u0065l"` is `model` to every JSON parser, so it is
//! to us), and a routing field given twice is refused: parsers disagree on which duplicate wins,
//! and the upstream must see the model we routed.

use std::borrow::Cow;
use std::ops::Range;

/// Deepest nesting accepted; deeper documents are refused rather than walked.
pub const MAX_DEPTH: usize = 256;

/// The routing fields of a request body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields<'b> {
    /// The `model` string: its token (quotes included) and its decoded value.
    pub model: Option<Model<'b>>,
    /// `max_completion_tokens`, else `max_tokens` (OpenAI and vLLM: the newer field wins).
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// Whether a `messages` array is present.
    pub has_messages: bool,
    /// Whether that array is empty.
    pub messages_empty: bool,
    /// Whether an `input` member is present (embeddings).
    pub has_input: bool,
    /// Byte range of the top-level `stream_options` value, when there is one.
    pub stream_options: Option<Range<usize>>,
}

/// Where the top-level `model` value is and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model<'b> {
    /// Byte range of the string token, quotes included.
    pub span: Range<usize>,
    pub value: Cow<'b, str>,
}

/// Why a body was refused; the message names the problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid JSON: {what} at byte {at}")]
    Syntax { what: &'static str, at: usize },
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("`{0}` appears more than once in the request body")]
    Duplicate(&'static str),
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

impl BodyError {
    /// The request parameter the error is about, for the error body's `param`.
    #[must_use]
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::Duplicate(f) => Some(f),
            Self::WrongType { field, .. } => Some(field),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Model,
    MaxTokens,
    MaxCompletionTokens,
    Stream,
    StreamOptions,
    Messages,
    Input,
    Other,
}

/// Scans and validates a request body, returning its routing fields.
pub fn scan(body: &[u8]) -> Result<Fields<'_>, BodyError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(BodyError::Syntax {
            what: "invalid UTF-8",
            at: e.valid_up_to(),
        });
    }
    let mut p = Cursor { b: body, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(if p.peek().is_none() {
            p.err("empty body")
        } else {
            BodyError::NotObject
        });
    }
    p.i += 1;
    let mut fields = Fields::default();
    let mut seen = [false; KEY_NAMES.len()];
    let mut max_completion = None;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.key()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            if let Some(slot) = key_slot(key)
                && std::mem::replace(&mut seen[slot], true)
            {
                return Err(BodyError::Duplicate(KEY_NAMES[slot]));
            }
            match key {
                Key::Model => {
                    if p.peek() != Some(b'"') {
                        p.value()?;
                        return Err(BodyError::WrongType {
                            field: "model",
                            expected: "a string",
                        });
                    }
                    let start = p.i;
                    let escaped = p.string()?;
                    let span = start..p.i;
                    let raw = body.get(start + 1..p.i - 1).unwrap_or_default();
                    let value = if escaped {
                        Cow::Owned(unescape(raw).ok_or(BodyError::WrongType {
                            field: "model",
                            expected: "a string of valid Unicode",
                        })?)
                    } else {
                        Cow::Borrowed(std::str::from_utf8(raw).unwrap_or_default())
                    };
                    fields.model = Some(Model { span, value });
                }
                Key::MaxTokens | Key::MaxCompletionTokens => {
                    let field = if key == Key::MaxTokens {
                        "max_tokens"
                    } else {
                        "max_completion_tokens"
                    };
                    let v = p.optional_count(field)?;
                    if key == Key::MaxTokens {
                        fields.max_tokens = v;
                    } else {
                        max_completion = v;
                    }
                }
                Key::Stream => {
                    fields.stream = match p.peek() {
                        Some(b't') => true,
                        Some(b'f' | b'n') => false,
                        _ => {
                            p.value()?;
                            return Err(BodyError::WrongType {
                                field: "stream",
                                expected: "a boolean",
                            });
                        }
                    };
                    p.value()?;
                }
                Key::StreamOptions => {
                    let start = p.i;
                    p.value()?;
                    fields.stream_options = Some(start..p.i);
                }
                Key::Messages => {
                    if p.peek() != Some(b'[') {
                        p.value()?;
                        return Err(BodyError::WrongType {
                            field: "messages",
                            expected: "an array",
                        });
                    }
                    fields.has_messages = true;
                    let start = p.i;
                    p.value()?;
                    fields.messages_empty = body
                        .get(start + 1..p.i - 1)
                        .unwrap_or_default()
                        .iter()
                        .all(u8::is_ascii_whitespace);
                }
                Key::Input => {
                    fields.has_input = true;
                    p.value()?;
                }
                Key::Other => p.value()?,
            }
            p.ws();
            match p.next() {
                Some(b',') => {}
                Some(b'}') => break,
                Some(_) => return Err(p.err_before("expected `,` or `}`")),
                None => return Err(p.err("unexpected end of input")),
            }
        }
    }
    p.ws();
    if p.i != body.len() {
        return Err(p.err("trailing characters after the JSON object"));
    }
    if max_completion.is_some() {
        fields.max_tokens = max_completion;
    }
    Ok(fields)
}

const KEY_NAMES: [&str; 7] = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "messages",
    "stream_options",
    "input",
];

fn key_slot(key: Key) -> Option<usize> {
    match key {
        Key::Model => Some(0),
        Key::MaxTokens => Some(1),
        Key::MaxCompletionTokens => Some(2),
        Key::Stream => Some(3),
        Key::Messages => Some(4),
        Key::StreamOptions => Some(5),
        Key::Input => Some(6),
        Key::Other => None,
    }
}

fn classify(name: &[u8]) -> Key {
    match name {
        b"model" => Key::Model,
        b"max_tokens" => Key::MaxTokens,
        b"max_completion_tokens" => Key::MaxCompletionTokens,
        b"stream" => Key::Stream,
        b"messages" => Key::Messages,
        b"stream_options" => Key::StreamOptions,
        b"input" => Key::Input,
        _ => Key::Other,
    }
}

/// Writes `body` to `out` with the `model` token at `span` replaced by `model` as a JSON
/// string; every other byte is copied unchanged.
pub fn rewrite_model(body: &[u8], span: Range<usize>, model: &str, out: &mut Vec<u8>) {
    let mut token = Vec::with_capacity(model.len() + 2);
    write_json_string(&mut token, model);
    apply_edits(body, &mut [(span, &token[..])], out);
}

/// Writes `body` to `out` with each range replaced by its bytes (an empty range inserts);
/// every other byte is copied unchanged. Ranges must not overlap.
pub fn apply_edits(body: &[u8], edits: &mut [(Range<usize>, &[u8])], out: &mut Vec<u8>) {
    edits.sort_by_key(|(r, _)| r.start);
    out.reserve(body.len() + edits.iter().map(|(_, b)| b.len()).sum::<usize>());
    let mut at = 0;
    for (range, bytes) in edits.iter() {
        out.extend_from_slice(body.get(at..range.start).unwrap_or_default());
        out.extend_from_slice(bytes);
        at = range.end.max(at);
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
}

/// How a streamed request's `stream_options` must change so that an OpenAI-compatible
/// upstream reports usage (`include_usage: true`), or `None` when the client already asked
/// for it (then its usage chunk is the client's) or the value is not an object we can
/// extend (the upstream judges it). `Some(edit)` replaces `range` with the bytes.
#[must_use]
pub fn ask_for_usage(
    body: &[u8],
    fields: &Fields<'_>,
) -> Option<(Range<usize>, Cow<'static, [u8]>)> {
    const ASK: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let Some(span) = fields.stream_options.clone() else {
        // Insert it as the first member (the body is an object with `messages`).
        let open = body.iter().position(|&b| b == b'{')? + 1;
        return Some((open..open, Cow::Borrowed(ASK)));
    };
    let value: serde_json::Value = serde_json::from_slice(body.get(span.clone())?).ok()?;
    let mut options = match value {
        serde_json::Value::Null => serde_json::Map::new(),
        serde_json::Value::Object(o) => o,
        _ => return None,
    };
    if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    let bytes = serde_json::to_vec(&options).ok()?;
    Some((span, Cow::Owned(bytes)))
}

pub use crate::codec::write_json_string;

/// Decodes the inside of a JSON string already validated by the scanner. `None` for a lone
/// surrogate, which has no Unicode value.
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let s = std::str::from_utf8(raw).ok()?;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v << 4 | chars.next()?.to_digit(16)?;
    }
    Some(v)
}

struct Cursor<'b> {
    b: &'b [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn err(&self, what: &'static str) -> BodyError {
        BodyError::Syntax { what, at: self.i }
    }

    fn err_before(&self, what: &'static str) -> BodyError {
        BodyError::Syntax {
            what,
            at: self.i.saturating_sub(1),
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), BodyError> {
        match self.next() {
            Some(x) if x == c => Ok(()),
            Some(_) => Err(self.err_before(match c {
                b':' => "expected `:`",
                _ => "unexpected character",
            })),
            None => Err(self.err("unexpected end of input")),
        }
    }

    /// An object key; returns which routing field it names.
    fn key(&mut self) -> Result<Key, BodyError> {
        if self.peek() != Some(b'"') {
            return Err(if self.peek().is_none() {
                self.err("unexpected end of input")
            } else {
                self.err("expected a string key")
            });
        }
        let start = self.i + 1;
        let escaped = self.string()?;
        let raw = self.b.get(start..self.i - 1).unwrap_or_default();
        Ok(if escaped {
            unescape(raw).map_or(Key::Other, |k| classify(k.as_bytes()))
        } else {
            classify(raw)
        })
    }

    /// A string token starting at `"`; returns whether it contains escapes.
    fn string(&mut self) -> Result<bool, BodyError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            // SIMD search for the next quote or backslash, then one vectorisable pass over
            // the run before it for control characters (which JSON strings may not hold).
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                let bad = rest.iter().position(|&c| c < 0x20);
                self.i += bad.unwrap_or(rest.len());
                return Err(if bad.is_some() {
                    self.err("control character in string")
                } else {
                    self.err("unterminated string")
                });
            };
            let run = rest.get(..at).unwrap_or_default();
            if run.iter().fold(false, |any, &c| any | (c < 0x20)) {
                let bad = run.iter().position(|&c| c < 0x20).unwrap_or(0);
                self.i += bad;
                return Err(self.err("control character in string"));
            }
            self.i += at;
            match self.next() {
                Some(b'"') => return Ok(escaped),
                Some(b'\\') => {
                    escaped = true;
                    match self.next() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            // RFC 8259 §7: a high surrogate must be followed by a low one; a
                            // lone surrogate is no character, and parsers disagree on it.
                            let unit = self.hex4()?;
                            if (0xDC00..0xE000).contains(&unit) {
                                return Err(self.err_before("lone surrogate in `\\u` escape"));
                            }
                            if (0xD800..0xDC00).contains(&unit) {
                                if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                                    return Err(self.err_before("lone surrogate in `\\u` escape"));
                                }
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.err_before("lone surrogate in `\\u` escape"));
                                }
                            }
                        }
                        Some(_) => return Err(self.err_before("invalid escape")),
                        None => return Err(self.err("unterminated string")),
                    }
                }
                _ => return Err(self.err_before("control character in string")),
            }
        }
    }

    /// Four hex digits of a `\\u` escape.
    fn hex4(&mut self) -> Result<u32, BodyError> {
        let mut v = 0;
        for _ in 0..4 {
            match self.next().and_then(|c| char::from(c).to_digit(16)) {
                Some(d) => v = v << 4 | d,
                None => return Err(self.err_before("invalid `\\u` escape")),
            }
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A number token; returns whether it is a plain non-negative integer.
    fn number(&mut self) -> Result<bool, BodyError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        let mut integer = !negative;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(integer)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), BodyError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// `null` (absent) or a non-negative integer.
    fn optional_count(&mut self, field: &'static str) -> Result<Option<u64>, BodyError> {
        let wrong = BodyError::WrongType {
            field,
            expected: "a non-negative integer",
        };
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                Ok(None)
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if !self.number()? {
                    return Err(wrong);
                }
                let digits = self.b.get(start..self.i).unwrap_or_default();
                std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u64>().ok())
                    .map(Some)
                    .ok_or(wrong)
            }
            _ => {
                self.value()?;
                Err(wrong)
            }
        }
    }

    /// Any JSON value, validated and skipped. Iterative, with the nesting kept in a bitmap,
    /// so hostile depth cannot overflow the stack.
    fn value(&mut self) -> Result<(), BodyError> {
        // Bit d set: the container at depth d is an array (else an object).
        let mut arrays = [0u64; MAX_DEPTH / 64];
        let mut depth = 0usize;
        'value: loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        if depth == MAX_DEPTH - 1 {
                            return Err(BodyError::TooDeep);
                        }
                        depth += 1;
                        arrays[depth / 64] &= !(1 << (depth % 64));
                        self.key()?;
                        self.ws();
                        self.expect(b':')?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        if depth == MAX_DEPTH - 1 {
                            return Err(BodyError::TooDeep);
                        }
                        depth += 1;
                        arrays[depth / 64] |= 1 << (depth % 64);
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.err("expected a value")),
                None => return Err(self.err("unexpected end of input")),
            }
            // After a complete value: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_array = arrays[depth / 64] & (1 << (depth % 64)) != 0;
                self.ws();
                match self.next() {
                    Some(b',') => {
                        if !in_array {
                            self.ws();
                            self.key()?;
                            self.ws();
                            self.expect(b':')?;
                        }
                        continue 'value;
                    }
                    Some(b']') if in_array => depth -= 1,
                    Some(b'}') if !in_array => depth -= 1,
                    Some(_) => {
                        return Err(self.err_before(if in_array {
                            "expected `,` or `]`"
                        } else {
                            "expected `,` or `}`"
                        }));
                    }
                    None => return Err(self.err("unexpected end of input")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test")]
    use super::*;

    #[test]
    fn finds_the_routing_fields() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\": x"}],"model" : "auto","stream":true,"max_tokens":512,"n":{"model":"inner"}}"#;
        let f = scan(body).unwrap();
        let m = f.model.unwrap();
        assert_eq!(m.value, "auto");
        assert_eq!(&body[m.span], br#""auto""#);
        assert!(f.stream);
        assert_eq!(f.max_tokens, Some(512));
        assert!(f.has_messages);
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let body = br#"{"mod\u0065l":"gpt\u002d4o","messages":[]}"#;
        let f = scan(body).unwrap();
        assert_eq!(f.model.unwrap().value, "gpt-4o");
    }

    #[test]
    fn refusals() {
        let cases: &[&[u8]] = &[
            b"",
            b"[]",
            b"{",
            b"{\"model\":\"a\",}",
            b"{\"model\":\"a\" \"x\":1}",
            b"{\"model\":\"a\"} x",
            b"{\"model\":1}",
            b"{\"model\":\"a\",\"model\":\"b\"}",
            b"{\"model\":\"a\",\"mode\\u006c\":\"b\"}",
            b"{\"max_tokens\":-1}",
            b"{\"max_tokens\":1.5}",
            b"{\"max_tokens\":\"5\"}",
            b"{\"stream\":\"yes\"}",
            b"{\"messages\":{}}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":.5}",
            b"{\"a\":tru}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12\"}",
            b"{\"a\":[1,]}",
            b"{\"a\":[1 2]}",
            b"{\"a\":{\"b\"}}",
            b"{\"a\":\"\xff\"}",
            b"{'a':1}",
        ];
        for body in cases {
            assert!(scan(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(scan(deep.as_bytes()), Err(BodyError::TooDeep));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(scan(ok.as_bytes()).is_ok());
    }

    #[test]
    fn rewrite_replaces_only_the_model_token() {
        let body = br#"{ "model" : "auto" , "messages": [] }"#;
        let f = scan(body).unwrap();
        let mut out = Vec::new();
        rewrite_model(body, f.model.unwrap().span, "llama \"3\"", &mut out);
        assert_eq!(
            out,
            br#"{ "model" : "llama \"3\"" , "messages": [] }"#.to_vec()
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let f = scan(br#"{"max_tokens":10,"max_completion_tokens":20}"#).unwrap();
        assert_eq!(f.max_tokens, Some(20));
        let f = scan(br#"{"max_completion_tokens":20,"max_tokens":10}"#).unwrap();
        assert_eq!(f.max_tokens, Some(20));
        let f = scan(br#"{"max_tokens":10}"#).unwrap();
        assert_eq!(f.max_tokens, Some(10));
    }

    #[test]
    fn usage_is_asked_for_without_losing_the_clients_options() {
        let ask = |body: &[u8]| {
            let f = scan(body).unwrap();
            ask_for_usage(body, &f).map(|(range, bytes)| {
                let mut out = Vec::new();
                apply_edits(body, &mut [(range, &bytes)], &mut out);
                serde_json::from_slice::<serde_json::Value>(&out).unwrap()
            })
        };
        let v = ask(br#"{"model":"m","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        let v = ask(br#"{"stream_options":{"include_obfuscation":false},"messages":[]}"#).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_obfuscation": false, "include_usage": true})
        );
        let v = ask(br#"{"stream_options":{"include_usage":false},"messages":[]}"#).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let v = ask(br#"{"stream_options":null,"messages":[]}"#).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        // Asked already: nothing to change (the usage chunk is the client's).
        assert!(ask(br#"{"stream_options":{"include_usage":true},"messages":[]}"#).is_none());
        // Not an object: left for the upstream to judge.
        assert!(ask(br#"{"stream_options":"x","messages":[]}"#).is_none());
        assert!(scan(br#"{"stream_options":{},"stream_options":{}}"#).is_err());
    }
}
