//! Anthropic answers as events: a message, or the events of a streamed one — which are the
//! intermediate form's events already, so decoding is reading them (`ping` and event types
//! this router does not know are skipped, as Anthropic asks clients to).

use std::borrow::Cow;

use serde::Deserialize;

use crate::dialect::de::{Json, Parser};
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};

#[derive(Debug, Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    message: Option<RawMessage<'a>>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    content_block: Option<RawBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<RawDelta<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<RawError<'a>>,
}

#[derive(Debug, Deserialize)]
struct RawMessage<'a> {
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    model: Option<&'a str>,
    #[serde(default, borrow)]
    content: Option<Vec<RawBlock<'a>>>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a str>,
    #[serde(default, borrow)]
    stop_sequence: Option<&'a str>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct RawBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    input: Option<Json<'a>>,
    #[serde(default, borrow)]
    thinking: Option<&'a str>,
    #[serde(default, borrow)]
    signature: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct RawDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    partial_json: Option<&'a str>,
    #[serde(default, borrow)]
    thinking: Option<&'a str>,
    #[serde(default, borrow)]
    signature: Option<&'a str>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a str>,
    #[serde(default, borrow)]
    stop_sequence: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct RawError<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    message: Option<&'a str>,
}

/// An Anthropic `usage` object (`input_tokens` excludes the cache counts).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}

impl Usage {
    #[must_use]
    pub fn counts(&self) -> Counts {
        Counts {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_input_tokens,
            cache_write: self.cache_creation_input_tokens,
        }
    }
}

/// An Anthropic `stop_reason` as a stop.
#[must_use]
pub fn stop_of<'a>(reason: &'a str, sequence: Option<&'a str>) -> Stop<'a> {
    match reason {
        "end_turn" => Stop::EndTurn,
        "max_tokens" => Stop::MaxTokens,
        "stop_sequence" => Stop::StopSequence(sequence),
        "tool_use" => Stop::ToolUse,
        "refusal" => Stop::Refusal,
        "pause_turn" => Stop::PauseTurn,
        "model_context_window_exceeded" => Stop::ContextWindow,
        other => Stop::Other(other),
    }
}

/// The decoder's state for one answer.
#[derive(Debug, Default)]
pub struct Decoder {
    done: bool,
}

impl Decoder {
    /// Decodes the data of one stream event (rewritten in place by the parser).
    pub fn event(
        &mut self,
        data: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        if self.done || data.trim_ascii().is_empty() {
            return Ok(());
        }
        let e: RawEvent<'_> = parser.parse(data)?;
        match e.kind {
            "message_start" => {
                let m = e.message.unwrap_or(RawMessage {
                    id: None,
                    model: None,
                    content: None,
                    stop_reason: None,
                    stop_sequence: None,
                    usage: None,
                });
                emit(Event::Start {
                    id: m.id.unwrap_or_default(),
                    model: m.model.unwrap_or_default(),
                    usage: m.usage.unwrap_or_default().counts(),
                });
            }
            "content_block_start" => {
                let index = e.index.unwrap_or(0);
                if let Some(b) = &e.content_block {
                    start_block(index, b, true, emit);
                }
            }
            "content_block_delta" => {
                let index = e.index.unwrap_or(0);
                let Some(d) = &e.delta else { return Ok(()) };
                let delta = match (d.kind.unwrap_or_default(), d) {
                    ("text_delta", RawDelta { text: Some(t), .. }) => Delta::Text(t),
                    (
                        "input_json_delta",
                        RawDelta {
                            partial_json: Some(j),
                            ..
                        },
                    ) => Delta::Json(j),
                    (
                        "thinking_delta",
                        RawDelta {
                            thinking: Some(t), ..
                        },
                    ) => Delta::Thinking(t),
                    (
                        "signature_delta",
                        RawDelta {
                            signature: Some(s), ..
                        },
                    ) => Delta::Signature(s),
                    // `citations_delta` and kinds added later: nothing to translate.
                    _ => return Ok(()),
                };
                emit(Event::Delta { index, delta });
            }
            "content_block_stop" => emit(Event::BlockStop {
                index: e.index.unwrap_or(0),
            }),
            "message_delta" => {
                let stop = e
                    .delta
                    .as_ref()
                    .and_then(|d| Some(stop_of(d.stop_reason?, d.stop_sequence)));
                emit(Event::Finish {
                    stop,
                    usage: e.usage.unwrap_or_default().counts(),
                });
            }
            "message_stop" => {
                self.done = true;
                emit(Event::End);
            }
            "error" => {
                self.done = true;
                let err = e.error.as_ref();
                emit(Event::Error {
                    kind: err.and_then(|e| e.kind).unwrap_or("api_error"),
                    message: err
                        .and_then(|e| e.message)
                        .unwrap_or("the upstream reported an error"),
                });
            }
            // `ping`, and event types added later.
            _ => {}
        }
        Ok(())
    }

    /// Decodes a whole message.
    pub fn whole(
        &mut self,
        body: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        let m: RawMessage<'_> = parser.parse(body)?;
        let usage = m.usage.unwrap_or_default().counts();
        emit(Event::Start {
            id: m.id.unwrap_or_default(),
            model: m.model.unwrap_or_default(),
            usage,
        });
        for (index, b) in m.content.iter().flatten().enumerate() {
            start_block(index, b, false, emit);
            emit(Event::BlockStop { index });
        }
        emit(Event::Finish {
            stop: m.stop_reason.map(|r| stop_of(r, m.stop_sequence)),
            usage,
        });
        self.done = true;
        emit(Event::End);
        Ok(())
    }

    /// The stream ended without `message_stop`: it was cut short.
    pub fn close(&mut self, _emit: &mut dyn FnMut(Event<'_>)) -> Result<(), &'static str> {
        if self.done {
            Ok(())
        } else {
            Err("ended before the answer was complete (no message_stop)")
        }
    }
}

/// A block start, and (for a whole block, or a start that already holds content) its content
/// as one delta.
fn start_block(index: usize, b: &RawBlock<'_>, stream: bool, emit: &mut dyn FnMut(Event<'_>)) {
    let block = match b.kind {
        "text" => BlockKind::Text,
        "tool_use" => BlockKind::ToolUse {
            id: Cow::Borrowed(b.id.unwrap_or_default()),
            name: b.name.unwrap_or_default(),
        },
        "thinking" => BlockKind::Thinking,
        "redacted_thinking" => BlockKind::RedactedThinking {
            data: b.data.unwrap_or_default(),
        },
        _ => BlockKind::Other,
    };
    emit(Event::BlockStart { index, block });
    if let Some(t) = b.text.filter(|t| !t.is_empty()) {
        emit(Event::Delta {
            index,
            delta: Delta::Text(t),
        });
    }
    if let Some(t) = b.thinking.filter(|t| !t.is_empty()) {
        emit(Event::Delta {
            index,
            delta: Delta::Thinking(t),
        });
    }
    if let Some(s) = b.signature.filter(|s| !s.is_empty()) {
        emit(Event::Delta {
            index,
            delta: Delta::Signature(s),
        });
    }
    // A streamed tool call starts with an empty `input` and sends it in pieces; a whole one
    // has it here.
    if b.kind == "tool_use"
        && let Some(input) = &b.input
    {
        let text = input.text();
        if !(stream && text == "{}") {
            emit(Event::Delta {
                index,
                delta: Delta::Json(&text),
            });
        }
    }
}
