//! Gemini answers as events: a whole `GenerateContentResponse`, or the chunks of a
//! `streamGenerateContent?alt=sse` stream — each chunk a complete response object holding the
//! next parts (`research/dialects.md` §D2). What drives the decoder:
//!
//! - Gemini has no blocks: a text or thought block opens with the first part of its kind and
//!   closes when another kind comes; a `functionCall` is a whole block (its arguments come
//!   at once);
//! - calls come without ids: `call_<response>_<n>` is minted, with the part's
//!   `thoughtSignature` appended after `__thought__` so that it comes back with the call;
//! - a `STOP` after a function call is `tool_use` (Gemini never says so itself); safety and
//!   recitation stops, and a prompt blocked before any candidate, are refusals;
//! - usage may come on a chunk without candidates, after the finish: the finish is held until
//!   the stream ends; `promptTokenCount` includes the cached tokens, which the intermediate
//!   form counts apart, and thinking tokens are output tokens;
//! - an error object inside the stream (`{"error": {"code", "message", "status"}}`) is an
//!   error event, never a short successful answer.

use std::borrow::Cow;

use serde::Deserialize;

use crate::dialect::de::{Json, Parser};
use crate::dialect::gemini::write::THOUGHT_SEPARATOR;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};

#[derive(Debug, Default, Deserialize)]
struct Response<'a> {
    #[serde(default, borrow)]
    candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default, rename = "usageMetadata")]
    usage: Option<Usage>,
    #[serde(default, rename = "modelVersion", borrow)]
    model: Option<&'a str>,
    #[serde(default, rename = "responseId", borrow)]
    id: Option<&'a str>,
    #[serde(default, rename = "promptFeedback", borrow)]
    feedback: Option<Feedback<'a>>,
    #[serde(default, borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Candidate<'a> {
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, rename = "finishReason", borrow)]
    finish: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Part<'a> {
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, rename = "thoughtSignature", borrow)]
    signature: Option<&'a str>,
    #[serde(default, rename = "functionCall", borrow)]
    call: Option<Call<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Call<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    args: Option<Json<'a>>,
    #[serde(default, borrow)]
    id: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct Feedback<'a> {
    #[serde(default, rename = "blockReason", borrow)]
    block_reason: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody<'a> {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default, borrow)]
    message: Option<&'a str>,
    #[serde(default, borrow)]
    status: Option<&'a str>,
}

/// A Gemini `usageMetadata` object.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Usage {
    #[serde(default, rename = "promptTokenCount")]
    pub prompt: Option<u64>,
    #[serde(default, rename = "candidatesTokenCount")]
    pub candidates: Option<u64>,
    #[serde(default, rename = "thoughtsTokenCount")]
    pub thoughts: Option<u64>,
    #[serde(default, rename = "cachedContentTokenCount")]
    pub cached: Option<u64>,
}

impl Usage {
    /// As counts: the prompt without its cached part, and output with thinking.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let cached = self.cached.unwrap_or(0);
        let output = match (self.candidates, self.thoughts) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0).saturating_add(t.unwrap_or(0))),
        };
        Counts {
            input: self.prompt.map(|p| p.saturating_sub(cached)),
            output,
            cache_read: self.cached,
            cache_write: None,
        }
    }
}

/// A `finishReason` as a stop (`call`: the answer made a function call).
#[must_use]
pub fn stop_of(reason: &str, call: bool) -> Stop<'static> {
    match reason {
        "STOP" if call => Stop::ToolUse,
        "MAX_TOKENS" => Stop::MaxTokens,
        "SAFETY" | "RECITATION" | "LANGUAGE" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
            Stop::Refusal
        }
        r if r.starts_with("IMAGE_") => Stop::Refusal,
        _ if call => Stop::ToolUse,
        // STOP, MALFORMED_FUNCTION_CALL, OTHER, FINISH_REASON_UNSPECIFIED: the turn is over.
        _ => Stop::EndTurn,
    }
}

/// The client dialects' error type (Anthropic's names) for a Google status.
#[must_use]
pub fn error_kind(code: Option<u16>, status: Option<&str>) -> &'static str {
    match (status.unwrap_or_default(), code) {
        ("RESOURCE_EXHAUSTED", _) | (_, Some(429)) => "rate_limit_error",
        ("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE", _) | (_, Some(400)) => {
            "invalid_request_error"
        }
        ("UNAUTHENTICATED", _) | (_, Some(401)) => "authentication_error",
        ("PERMISSION_DENIED", _) | (_, Some(403)) => "permission_error",
        ("NOT_FOUND", _) | (_, Some(404)) => "not_found_error",
        ("DEADLINE_EXCEEDED", _) | (_, Some(504)) => "timeout_error",
        ("UNAVAILABLE", _) | (_, Some(503)) => "overloaded_error",
        _ => "api_error",
    }
}

/// What kind of block is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// The decoder's state for one answer.
#[derive(Debug, Default)]
pub struct Decoder {
    started: bool,
    /// The open text or thought block: its index and kind.
    open: Option<(usize, Open)>,
    next_index: usize,
    calls: usize,
    /// The first chunk's `responseId`, for the ids minted for calls.
    response_id: String,
    finish: Option<Stop<'static>>,
    usage: Usage,
    done: bool,
}

impl Decoder {
    /// Decodes the data of one stream event (a response chunk, parsed in place).
    pub fn event(
        &mut self,
        data: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        if self.done || data.trim_ascii().is_empty() {
            return Ok(());
        }
        let r: Response<'_> = parser.parse(data)?;
        self.chunk(&r, emit);
        Ok(())
    }

    /// Decodes a whole `generateContent` response.
    pub fn whole(
        &mut self,
        body: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        let r: Response<'_> = parser.parse(body)?;
        self.chunk(&r, emit);
        if self.done {
            return Ok(());
        }
        self.close(emit).map_err(str::to_owned)
    }

    fn chunk(&mut self, r: &Response<'_>, emit: &mut dyn FnMut(Event<'_>)) {
        if let Some(e) = &r.error {
            self.done = true;
            emit(Event::Error {
                kind: error_kind(e.code, e.status),
                message: e
                    .message
                    .unwrap_or("Vertex AI reported an error in the stream"),
            });
            return;
        }
        if let Some(u) = r.usage {
            self.usage = u;
        }
        if !self.started {
            self.started = true;
            r.id.unwrap_or("gemini").clone_into(&mut self.response_id);
            emit(Event::Start {
                id: r.id.unwrap_or_default(),
                model: r.model.unwrap_or_default(),
                usage: Counts {
                    output: None,
                    ..self.usage.counts()
                },
            });
        }
        if r.feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some())
        {
            // The prompt was blocked: no candidate will come.
            self.finish = Some(Stop::Refusal);
        }
        let Some(c) = r.candidates.as_ref().and_then(|c| c.first()) else {
            return;
        };
        for part in c.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.call {
                self.close_open(emit);
                let index = self.take_index();
                self.calls += 1;
                let mut id = match call.id.filter(|id| !id.is_empty()) {
                    Some(given) => given.to_owned(),
                    None => format!("call_{}_{}", self.response_id, self.calls),
                };
                if let Some(sig) = part.signature.filter(|s| !s.is_empty()) {
                    id.push_str(THOUGHT_SEPARATOR);
                    id.push_str(sig);
                }
                emit(Event::BlockStart {
                    index,
                    block: BlockKind::ToolUse {
                        id: Cow::Owned(id),
                        name: call.name.unwrap_or_default(),
                    },
                });
                let args = call.args.as_ref().map_or(Cow::Borrowed("{}"), Json::text);
                emit(Event::Delta {
                    index,
                    delta: Delta::Json(&args),
                });
                emit(Event::BlockStop { index });
                continue;
            }
            let thought = part.thought == Some(true);
            let kind = if thought { Open::Thinking } else { Open::Text };
            let text = part.text.unwrap_or_default();
            if text.is_empty() && !(thought && part.signature.is_some()) {
                continue;
            }
            let index = match self.open {
                Some((index, open)) if open == kind => index,
                _ => {
                    self.close_open(emit);
                    let index = self.take_index();
                    self.open = Some((index, kind));
                    emit(Event::BlockStart {
                        index,
                        block: if thought {
                            BlockKind::Thinking
                        } else {
                            BlockKind::Text
                        },
                    });
                    index
                }
            };
            if !text.is_empty() {
                emit(Event::Delta {
                    index,
                    delta: if thought {
                        Delta::Thinking(text)
                    } else {
                        Delta::Text(text)
                    },
                });
            }
            if let Some(sig) = part.signature.filter(|_| thought) {
                emit(Event::Delta {
                    index,
                    delta: Delta::Signature(sig),
                });
            }
        }
        if let Some(reason) = c.finish {
            self.finish = Some(stop_of(reason, self.calls > 0));
        }
    }

    fn take_index(&mut self) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn close_open(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if let Some((index, _)) = self.open.take() {
            emit(Event::BlockStop { index });
        }
    }

    /// The stream ended (Gemini's have no end marker): the answer is complete when a finish
    /// reason came; else it was cut short.
    pub fn close(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> Result<(), &'static str> {
        if self.done {
            return Ok(());
        }
        let Some(stop) = self.finish else {
            return Err("ended before the answer was complete (no finishReason)");
        };
        self.close_open(emit);
        emit(Event::Finish {
            stop: Some(stop),
            usage: self.usage.counts(),
        });
        self.done = true;
        emit(Event::End);
        Ok(())
    }
}
