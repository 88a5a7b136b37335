//! OpenAI answers as events: a chat completion, or the chunks of a streamed one.
//!
//! A chunk stream has no blocks, so the decoder makes them (`research/dialects.md` §B7): a
//! block opens when a kind of content first appears — reasoning, text, or a tool call with a
//! new `index` — and the open block closes when another opens or the choice finishes. The
//! finish is held until the usage chunk that follows it (the router always asks for one) or
//! the `[DONE]` line, so that [`Event::Finish`] carries the counts. A stream that ends before
//! `[DONE]` without having finished is reported as cut short.

use std::borrow::Cow;

use serde::Deserialize;

use crate::dialect::de::Parser;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};

#[derive(Debug, Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    model: Option<&'a str>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Debug, Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<Message<'a>>,
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    content: Option<&'a str>,
    #[serde(default, borrow)]
    reasoning_content: Option<&'a str>,
    #[serde(default, borrow)]
    reasoning: Option<&'a str>,
    #[serde(default, borrow)]
    refusal: Option<&'a str>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
struct Function<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    arguments: Option<&'a str>,
}

/// An OpenAI `usage` object.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
}

impl Usage {
    /// As counts: OpenAI's `prompt_tokens` includes the cached tokens, which the
    /// intermediate form counts apart.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let details = self.prompt_tokens_details.unwrap_or_default();
        let read = details.cached_tokens.unwrap_or(0);
        let write = details.cache_write_tokens.unwrap_or(0);
        Counts {
            input: Some(
                self.prompt_tokens
                    .saturating_sub(read)
                    .saturating_sub(write),
            ),
            output: Some(self.completion_tokens),
            cache_read: Some(read),
            cache_write: Some(write),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody<'a> {
    #[serde(default, borrow)]
    message: Option<&'a str>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
}

/// An OpenAI `finish_reason` as a stop.
#[must_use]
pub fn stop_of(finish: &str) -> Stop<'static> {
    match finish {
        "length" => Stop::MaxTokens,
        "tool_calls" | "function_call" => Stop::ToolUse,
        "content_filter" => Stop::Refusal,
        // `stop`, and what some servers say instead (`eos`, `""`).
        _ => Stop::EndTurn,
    }
}

/// What kind of block is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call: its OpenAI `index`.
    Tool(u64),
}

/// The decoder's state for one answer.
#[derive(Debug, Default)]
pub struct Decoder {
    started: bool,
    /// The open block: its index in the answer and its kind.
    open: Option<(usize, Open)>,
    blocks: usize,
    /// OpenAI tool-call index → block index, for argument pieces.
    tools: Vec<(u64, usize)>,
    held: Option<Stop<'static>>,
    usage: Option<Counts>,
    finished: bool,
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
        if data.trim_ascii() == b"[DONE]" {
            self.end(emit);
            return Ok(());
        }
        if self.done || data.trim_ascii().is_empty() {
            return Ok(());
        }
        let chunk: Chunk<'_> = parser.parse(data)?;
        self.chunk(&chunk, true, emit);
        Ok(())
    }

    /// Decodes a whole chat completion.
    pub fn whole(
        &mut self,
        body: &mut Vec<u8>,
        parser: &mut Parser,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), String> {
        let chunk: Chunk<'_> = parser.parse(body)?;
        self.chunk(&chunk, false, emit);
        self.end(emit);
        Ok(())
    }

    /// The stream ended without `[DONE]`: `Err` unless it had finished (then it is closed
    /// as if `[DONE]` had come: some servers omit it).
    pub fn close(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> Result<(), &'static str> {
        if self.done {
            return Ok(());
        }
        if self.finished {
            self.end(emit);
            return Ok(());
        }
        Err("ended before the answer was complete (no finish_reason, no [DONE])")
    }

    fn chunk(&mut self, c: &Chunk<'_>, stream: bool, emit: &mut dyn FnMut(Event<'_>)) {
        if let Some(e) = &c.error {
            self.done = true;
            emit(Event::Error {
                kind: e.kind.unwrap_or("api_error"),
                message: e.message.unwrap_or("the upstream reported an error"),
            });
            return;
        }
        if !self.started {
            self.started = true;
            emit(Event::Start {
                id: c.id.unwrap_or_default(),
                model: c.model.unwrap_or_default(),
                usage: Counts::default(),
            });
        }
        // One answer per request is all that is translated (`n > 1` is refused).
        let choice = c
            .choices
            .iter()
            .flatten()
            .find(|ch| ch.index.unwrap_or(0) == 0);
        if let Some(ch) = choice.filter(|_| !self.finished) {
            let m = if stream {
                ch.delta.as_ref()
            } else {
                ch.message.as_ref()
            };
            if let Some(m) = m {
                self.message(m, emit);
            }
            if let Some(reason) = ch.finish_reason {
                self.close_block(emit);
                self.finished = true;
                self.held = Some(stop_of(reason));
            }
        }
        if let Some(u) = &c.usage {
            self.usage = Some(u.counts());
        }
        if self.finished && self.usage.is_some() {
            self.finish(emit);
        }
    }

    fn message(&mut self, m: &Message<'_>, emit: &mut dyn FnMut(Event<'_>)) {
        let thinking = m
            .reasoning_content
            .or(m.reasoning)
            .filter(|t| !t.is_empty());
        if let Some(t) = thinking {
            let index = self.ensure(Open::Thinking, BlockKind::Thinking, emit);
            emit(Event::Delta {
                index,
                delta: Delta::Thinking(t),
            });
        }
        let text = m.content.or(m.refusal).filter(|t| !t.is_empty());
        if let Some(t) = text {
            let index = self.ensure(Open::Text, BlockKind::Text, emit);
            emit(Event::Delta {
                index,
                delta: Delta::Text(t),
            });
        }
        for (position, call) in m.tool_calls.iter().flatten().enumerate() {
            let k = call.index.unwrap_or(position as u64);
            let f = call.function.as_ref();
            let index = match self.tools.iter().find(|(t, _)| *t == k) {
                Some(&(_, index)) => index,
                None => {
                    let id = match call.id {
                        Some(id) => Cow::Borrowed(id),
                        None => Cow::Owned(format!("call_{k}")),
                    };
                    let name = f.and_then(|f| f.name).unwrap_or_default();
                    let index =
                        self.open_block(Open::Tool(k), BlockKind::ToolUse { id, name }, emit);
                    self.tools.push((k, index));
                    index
                }
            };
            if let Some(args) = f.and_then(|f| f.arguments).filter(|a| !a.is_empty()) {
                emit(Event::Delta {
                    index,
                    delta: Delta::Json(args),
                });
            }
        }
    }

    /// The index of the open block of `kind`, opening one if another kind is open.
    fn ensure(
        &mut self,
        kind: Open,
        block: BlockKind<'_>,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> usize {
        match self.open {
            Some((index, open)) if open == kind => index,
            _ => self.open_block(kind, block, emit),
        }
    }

    fn open_block(
        &mut self,
        kind: Open,
        block: BlockKind<'_>,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> usize {
        self.close_block(emit);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((index, kind));
        emit(Event::BlockStart { index, block });
        index
    }

    fn close_block(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if let Some((index, _)) = self.open.take() {
            emit(Event::BlockStop { index });
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if let Some(stop) = self.held.take() {
            emit(Event::Finish {
                stop: Some(stop),
                usage: self.usage.unwrap_or_default(),
            });
        }
    }

    fn end(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if self.done {
            return;
        }
        if !self.started {
            self.started = true;
            emit(Event::Start {
                id: "",
                model: "",
                usage: Counts::default(),
            });
        }
        self.close_block(emit);
        if !self.finished {
            self.finished = true;
            self.held = Some(Stop::EndTurn);
        }
        self.finish(emit);
        self.done = true;
        emit(Event::End);
    }
}
