//! Bedrock Converse answers as events: a whole `Converse` response, or the frames of a
//! `ConverseStream` (`research/dialects.md` §C3). What drives the decoder:
//!
//! - text and reasoning blocks have no start event: the first delta for an index opens the
//!   block (its kind from the delta's);
//! - usage comes after `messageStop`, in `metadata`: the finish is held until then (or until
//!   the stream ends);
//! - an exception arrives as a frame inside an HTTP 200 (`:message-type: exception`, e.g.
//!   `throttlingException`): it becomes an error event, never a short successful answer;
//! - unknown JSON members (`p` padding, `performanceConfig`, …) and event types are skipped.

use std::borrow::Cow;

use serde::Deserialize;

use crate::dialect::de::{Json, Parser};
use crate::dialect::eventstream::Frame;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};

#[derive(Debug, Default, Deserialize)]
struct Response<'a> {
    #[serde(default, borrow)]
    output: Option<Output<'a>>,
    #[serde(default, rename = "stopReason", borrow)]
    stop_reason: Option<&'a str>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
struct Output<'a> {
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    content: Vec<Block<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Block<'a> {
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, rename = "toolUse", borrow)]
    tool_use: Option<ToolUse<'a>>,
    #[serde(default, rename = "reasoningContent", borrow)]
    reasoning: Option<Reasoning<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolUse<'a> {
    #[serde(default, rename = "toolUseId", borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    input: Option<Json<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Reasoning<'a> {
    #[serde(default, rename = "reasoningText", borrow)]
    text: Option<ReasoningText<'a>>,
    #[serde(default, rename = "redactedContent", borrow)]
    redacted: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct ReasoningText<'a> {
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    signature: Option<&'a str>,
}

/// A Converse `usage` object (`inputTokens` without the cached tokens, as Anthropic's).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Usage {
    #[serde(default, rename = "inputTokens")]
    pub input: Option<u64>,
    #[serde(default, rename = "outputTokens")]
    pub output: Option<u64>,
    #[serde(default, rename = "cacheReadInputTokens")]
    pub cache_read: Option<u64>,
    #[serde(default, rename = "cacheWriteInputTokens")]
    pub cache_write: Option<u64>,
}

impl Usage {
    #[must_use]
    pub fn counts(&self) -> Counts {
        Counts {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        }
    }
}

/// The payload of any `ConverseStream` event (each has a few of these members).
#[derive(Debug, Default, Deserialize)]
struct StreamEvent<'a> {
    #[serde(default, rename = "contentBlockIndex")]
    index: Option<usize>,
    #[serde(default, borrow)]
    start: Option<StartBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<StreamDelta<'a>>,
    #[serde(default, rename = "stopReason", borrow)]
    stop_reason: Option<&'a str>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    message: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct StartBlock<'a> {
    #[serde(default, rename = "toolUse", borrow)]
    tool_use: Option<ToolUse<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamDelta<'a> {
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, rename = "toolUse", borrow)]
    tool_use: Option<ToolInput<'a>>,
    #[serde(default, rename = "reasoningContent", borrow)]
    reasoning: Option<ReasoningDelta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolInput<'a> {
    #[serde(default, borrow)]
    input: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct ReasoningDelta<'a> {
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    signature: Option<&'a str>,
    #[serde(default, rename = "redactedContent", borrow)]
    redacted: Option<&'a str>,
}

/// A Converse `stopReason` as a stop.
#[must_use]
pub fn stop_of(reason: &str) -> Stop<'_> {
    match reason {
        "end_turn" => Stop::EndTurn,
        "max_tokens" => Stop::MaxTokens,
        "stop_sequence" => Stop::StopSequence(None),
        "tool_use" => Stop::ToolUse,
        "model_context_window_exceeded" => Stop::ContextWindow,
        "guardrail_intervened" | "content_filtered" => Stop::Refusal,
        // The model's output could not be parsed by Bedrock: the turn is over all the same.
        "malformed_model_output" | "malformed_tool_use" => Stop::EndTurn,
        other => Stop::Other(other),
    }
}

/// The client dialects' error type for a Bedrock exception (`throttlingException`,
/// `ThrottlingException`, …), Anthropic's names (the encoders map them on).
#[must_use]
pub fn error_kind(exception: &str) -> &'static str {
    let e = exception.to_ascii_lowercase();
    match e.trim_end_matches("exception") {
        "validation" => "invalid_request_error",
        "throttling" | "modelnotready" | "servicequotaexceeded" => "rate_limit_error",
        "accessdenied" => "permission_error",
        "resourcenotfound" => "not_found_error",
        "modeltimeout" => "timeout_error",
        "serviceunavailable" => "overloaded_error",
        _ => "api_error",
    }
}

/// The decoder's state for one answer.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Blocks opened and not yet stopped.
    open: Vec<usize>,
    started: bool,
    /// `messageStop` came; the finish waits for `metadata`'s usage.
    stop: Option<StopReason>,
    done: bool,
}

/// A stop reason kept past the frame it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Known(Stop<'static>),
    Other,
}

impl StopReason {
    fn of(reason: &str) -> Self {
        match stop_of(reason) {
            Stop::EndTurn => Self::Known(Stop::EndTurn),
            Stop::MaxTokens => Self::Known(Stop::MaxTokens),
            Stop::StopSequence(_) => Self::Known(Stop::StopSequence(None)),
            Stop::ToolUse => Self::Known(Stop::ToolUse),
            Stop::Refusal => Self::Known(Stop::Refusal),
            Stop::ContextWindow => Self::Known(Stop::ContextWindow),
            Stop::PauseTurn => Self::Known(Stop::PauseTurn),
            Stop::Other(_) => Self::Other,
        }
    }

    fn stop(self) -> Stop<'static> {
        match self {
            Self::Known(s) => s,
            Self::Other => Stop::EndTurn,
        }
    }
}

impl Decoder {
    /// Decodes one frame of a `ConverseStream`; its payload is copied into `scratch` to be
    /// parsed in place.
    pub fn frame(
        &mut self,
        frame: &Frame<'_>,
        scratch: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        scratch.clear();
        scratch.extend_from_slice(frame.payload);
        let e: StreamEvent<'_> = if scratch.trim_ascii().is_empty() {
            StreamEvent::default()
        } else {
            parser.parse(scratch)?
        };
        match frame.string(":message-type").unwrap_or("event") {
            "event" => {}
            kind => {
                // `exception` (named by `:exception-type`) or `error` (`:error-code`).
                let name = frame
                    .string(":exception-type")
                    .or_else(|| frame.string(":error-code"))
                    .unwrap_or(kind);
                let message = e
                    .message
                    .or_else(|| frame.string(":error-message"))
                    .unwrap_or("Bedrock reported an error in the stream");
                self.done = true;
                emit(Event::Error {
                    kind: error_kind(name),
                    message,
                });
                return Ok(());
            }
        }
        let index = e.index.unwrap_or(0);
        match frame.string(":event-type").unwrap_or_default() {
            "messageStart" => self.start(emit),
            "contentBlockStart" => {
                self.start(emit);
                if let Some(t) = e.start.as_ref().and_then(|s| s.tool_use.as_ref()) {
                    self.open.push(index);
                    emit(Event::BlockStart {
                        index,
                        block: BlockKind::ToolUse {
                            id: Cow::Borrowed(t.id.unwrap_or_default()),
                            name: t.name.unwrap_or_default(),
                        },
                    });
                }
            }
            "contentBlockDelta" => {
                self.start(emit);
                let Some(d) = &e.delta else { return Ok(()) };
                let (kind, delta) = if let Some(t) = d.text {
                    (BlockKind::Text, Delta::Text(t))
                } else if let Some(j) = d.tool_use.as_ref().and_then(|t| t.input) {
                    (BlockKind::Other, Delta::Json(j))
                } else if let Some(r) = &d.reasoning {
                    match (r.text, r.signature, r.redacted) {
                        (Some(t), _, _) => (BlockKind::Thinking, Delta::Thinking(t)),
                        (None, Some(s), _) => (BlockKind::Thinking, Delta::Signature(s)),
                        (None, None, Some(data)) => {
                            if !self.open.contains(&index) {
                                self.open.push(index);
                                emit(Event::BlockStart {
                                    index,
                                    block: BlockKind::RedactedThinking { data },
                                });
                            }
                            return Ok(());
                        }
                        (None, None, None) => return Ok(()),
                    }
                } else {
                    return Ok(());
                };
                if !self.open.contains(&index) {
                    // Text and reasoning blocks have no start event.
                    self.open.push(index);
                    emit(Event::BlockStart { index, block: kind });
                }
                emit(Event::Delta { index, delta });
            }
            "contentBlockStop" => {
                if let Some(at) = self.open.iter().position(|&i| i == index) {
                    self.open.swap_remove(at);
                    emit(Event::BlockStop { index });
                }
            }
            "messageStop" => {
                self.close_blocks(emit);
                self.stop = Some(StopReason::of(e.stop_reason.unwrap_or("end_turn")));
            }
            "metadata" => {
                let stop = self.stop.take().unwrap_or(StopReason::Known(Stop::EndTurn));
                self.finish(stop, e.usage.unwrap_or_default().counts(), emit);
            }
            _ => {}
        }
        Ok(())
    }

    fn start(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if !self.started {
            self.started = true;
            emit(Event::Start {
                id: "",
                model: "",
                usage: Counts::default(),
            });
        }
    }

    fn close_blocks(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        self.open.sort_unstable();
        for index in self.open.drain(..) {
            emit(Event::BlockStop { index });
        }
    }

    fn finish(&mut self, stop: StopReason, usage: Counts, emit: &mut dyn FnMut(Event<'_>)) {
        self.start(emit);
        self.close_blocks(emit);
        emit(Event::Finish {
            stop: Some(stop.stop()),
            usage,
        });
        self.done = true;
        emit(Event::End);
    }

    /// Decodes a whole `Converse` response.
    pub fn whole(
        &mut self,
        body: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        let r: Response<'_> = parser.parse(body)?;
        let usage = r.usage.unwrap_or_default().counts();
        emit(Event::Start {
            id: "",
            model: "",
            usage,
        });
        let blocks = r
            .output
            .and_then(|o| o.message)
            .map(|m| m.content)
            .unwrap_or_default();
        for (index, b) in blocks.iter().enumerate() {
            if let Some(t) = b.text {
                emit(Event::BlockStart {
                    index,
                    block: BlockKind::Text,
                });
                emit(Event::Delta {
                    index,
                    delta: Delta::Text(t),
                });
            } else if let Some(u) = &b.tool_use {
                emit(Event::BlockStart {
                    index,
                    block: BlockKind::ToolUse {
                        id: Cow::Borrowed(u.id.unwrap_or_default()),
                        name: u.name.unwrap_or_default(),
                    },
                });
                let input = u.input.as_ref().map_or(Cow::Borrowed("{}"), Json::text);
                emit(Event::Delta {
                    index,
                    delta: Delta::Json(&input),
                });
            } else if let Some(r) = &b.reasoning {
                if let Some(data) = r.redacted {
                    emit(Event::BlockStart {
                        index,
                        block: BlockKind::RedactedThinking { data },
                    });
                } else {
                    let text = r.text.as_ref();
                    emit(Event::BlockStart {
                        index,
                        block: BlockKind::Thinking,
                    });
                    if let Some(t) = text.and_then(|t| t.text) {
                        emit(Event::Delta {
                            index,
                            delta: Delta::Thinking(t),
                        });
                    }
                    if let Some(s) = text.and_then(|t| t.signature) {
                        emit(Event::Delta {
                            index,
                            delta: Delta::Signature(s),
                        });
                    }
                }
            } else {
                emit(Event::BlockStart {
                    index,
                    block: BlockKind::Other,
                });
            }
            emit(Event::BlockStop { index });
        }
        emit(Event::Finish {
            stop: Some(r.stop_reason.map_or(Stop::EndTurn, stop_of)),
            usage,
        });
        self.done = true;
        emit(Event::End);
        Ok(())
    }

    /// The stream ended. After `messageStop` without `metadata`, the answer is complete
    /// without usage; before it, the stream was cut short.
    pub fn close(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> Result<(), &'static str> {
        if self.done {
            return Ok(());
        }
        match self.stop.take() {
            Some(stop) => {
                self.finish(stop, Counts::default(), emit);
                Ok(())
            }
            None => Err("ended before the answer was complete (no messageStop)"),
        }
    }
}

/// What an InvokeModelWithResponseStream frame holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'f> {
    /// An Anthropic stream event's JSON, decoded into the caller's buffer.
    Event,
    /// An exception frame: the client dialects' error type and the message.
    Error { kind: &'static str, message: String },
    /// Nothing to translate (an event type this router does not know).
    Skip(&'f str),
}

/// Unwraps an InvokeModel stream frame: a `chunk` event's `bytes` (base64 of one Anthropic
/// stream event) decoded into `decoded`, or an exception.
pub fn invoke_chunk<'f>(frame: &Frame<'f>, decoded: &mut Vec<u8>) -> Result<Chunk<'f>, String> {
    #[derive(Deserialize)]
    struct Payload<'a> {
        #[serde(default, borrow)]
        bytes: Option<&'a str>,
        #[serde(default, borrow)]
        message: Option<Cow<'a, str>>,
    }
    let kind = frame.string(":message-type").unwrap_or("event");
    let payload: Payload<'_> = if frame.payload.trim_ascii().is_empty() {
        Payload {
            bytes: None,
            message: None,
        }
    } else {
        serde_json::from_slice(frame.payload).map_err(|e| e.to_string())?
    };
    if kind != "event" {
        let name = frame
            .string(":exception-type")
            .or_else(|| frame.string(":error-code"))
            .unwrap_or(kind);
        return Ok(Chunk::Error {
            kind: error_kind(name),
            message: payload
                .message
                .map(Cow::into_owned)
                .or_else(|| frame.string(":error-message").map(str::to_owned))
                .unwrap_or_else(|| "Bedrock reported an error in the stream".to_owned()),
        });
    }
    match (
        frame.string(":event-type").unwrap_or_default(),
        payload.bytes,
    ) {
        ("chunk", Some(b64)) => {
            decoded.clear();
            crate::codec::base64_decode(b64.as_bytes(), decoded)
                .ok_or("a chunk whose bytes are not base64")?;
            Ok(Chunk::Event)
        }
        (other, _) => Ok(Chunk::Skip(other)),
    }
}
