//! Events as an Anthropic answer: the Messages event stream (`research/dialects.md` §A4, §B7),
//! or one message.
//!
//! Kept here: every event has its `event:` line (the SDKs skip data without one); blocks are
//! numbered 0, 1, … in the order they are written (blocks no Anthropic client knows are left
//! out without leaving a gap); a turn that called a tool stops with `tool_use` whatever the
//! upstream said (OpenAI-compatible servers often say `stop`, and Claude Code then loops);
//! `message_delta` carries the input counts when `message_start` could not (an OpenAI
//! upstream reports usage at the end); the stream always closes its blocks and ends with
//! `message_delta` and `message_stop` — or with an `error` event, never silently.

use crate::dialect::anthropic::write::write_tool_id;
use crate::dialect::given_or;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};
use crate::dialect::json::{Obj, sep};
use crate::dialect::sse::write_event;

/// An Anthropic `stop_reason` for a stop (`tool` when the turn called a tool).
#[must_use]
pub fn stop_reason(stop: Option<Stop<'_>>, tool: bool) -> &'static str {
    match stop {
        Some(Stop::MaxTokens) => "max_tokens",
        Some(Stop::StopSequence(_)) => "stop_sequence",
        Some(Stop::ToolUse) => "tool_use",
        Some(Stop::Refusal) => "refusal",
        Some(Stop::PauseTurn) => "pause_turn",
        Some(Stop::ContextWindow) => "model_context_window_exceeded",
        _ if tool => "tool_use",
        _ => "end_turn",
    }
}

/// Error types an Anthropic client knows; others are sent as `api_error`.
const ERROR_TYPES: [&str; 10] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
];

/// `kind` if Anthropic clients know it, else `api_error`.
#[must_use]
pub fn error_type(kind: &str) -> &str {
    if ERROR_TYPES.contains(&kind) {
        kind
    } else {
        "api_error"
    }
}

/// Writes an Anthropic `usage` object; `full`: every count (a message, `message_start`),
/// else the output count and the others only where known (`message_delta`).
fn write_usage(out: &mut Vec<u8>, c: &Counts, full: bool) {
    let mut u = Obj::new(out);
    if full || c.input.is_some() {
        u.u64("input_tokens", c.input.unwrap_or(0));
    }
    if full || c.cache_write.is_some() {
        u.u64("cache_creation_input_tokens", c.cache_write.unwrap_or(0));
    }
    if full || c.cache_read.is_some() {
        u.u64("cache_read_input_tokens", c.cache_read.unwrap_or(0));
    }
    u.u64("output_tokens", c.output.unwrap_or(0));
    u.end();
}

/// A block as a whole answer collects it.
#[derive(Debug)]
enum Whole {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    Redacted(String),
}

/// The encoder's state for one answer.
#[derive(Debug)]
pub struct Encoder<'a> {
    stream: bool,
    fallback_id: &'a str,
    fallback_model: &'a str,
    started: bool,
    id: String,
    model: String,
    usage: Counts,
    /// Block index in → block index out, and whether it is still open.
    blocks: Vec<(usize, usize, bool)>,
    whole: Vec<Whole>,
    tool: bool,
    stop: Option<&'static str>,
    stop_sequence: Option<String>,
    ended: bool,
}

impl<'a> Encoder<'a> {
    /// An encoder for a stream or a whole answer; `id` and `model` are used when the
    /// upstream's answer does not say.
    #[must_use]
    pub fn new(stream: bool, id: &'a str, model: &'a str) -> Self {
        Self {
            stream,
            fallback_id: id,
            fallback_model: model,
            started: false,
            id: String::new(),
            model: String::new(),
            usage: Counts::default(),
            blocks: Vec::new(),
            whole: Vec::new(),
            tool: false,
            stop: None,
            stop_sequence: None,
            ended: false,
        }
    }

    /// The `stop_reason` written, once written.
    #[must_use]
    pub fn stop_reason(&self) -> Option<&'static str> {
        self.stop
    }

    /// Appends what `e` becomes to `out`.
    pub fn event(&mut self, e: Event<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match e {
            Event::Start { id, model, usage } => self.start(id, model, usage, out),
            Event::BlockStart { index, block } => self.block_start(index, block, out),
            Event::Delta { index, delta } => self.delta(index, delta, out),
            Event::BlockStop { index } => self.block_stop(index, out),
            Event::Finish { stop, usage } => {
                self.usage = self.usage.updated(usage);
                self.finish(stop, Some(usage), out);
            }
            Event::End => {
                self.finish(None, None, out);
                self.ended = true;
                if self.stream {
                    write_event(out, Some("message_stop"), |d| {
                        d.extend_from_slice(br#"{"type":"message_stop"}"#);
                    });
                } else {
                    self.whole(out);
                }
            }
            Event::Error { kind, message } => {
                self.ended = true;
                write_error_event(out, error_type(kind), message);
            }
        }
    }

    /// The upstream broke off: the client gets an `error` event instead of a silent end.
    /// Nothing is written once the answer ended.
    pub fn cut(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        write_error_event(out, "api_error", message);
    }

    fn start(&mut self, id: &str, model: &str, usage: Counts, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = given_or(id, self.fallback_id).to_owned();
        self.model = given_or(model, self.fallback_model).to_owned();
        self.usage = usage;
        if !self.stream {
            return;
        }
        write_event(out, Some("message_start"), |d| {
            let mut o = Obj::new(d);
            o.str("type", "message_start");
            let mut m = Obj::new(o.key("message"));
            m.str("id", &self.id)
                .str("type", "message")
                .str("role", "assistant")
                .str("model", &self.model)
                .raw("content", b"[]")
                .raw("stop_reason", b"null")
                .raw("stop_sequence", b"null");
            write_usage(m.key("usage"), &usage, true);
            m.end();
            o.end();
        });
    }

    fn out_index(&self, index: usize) -> Option<usize> {
        self.blocks
            .iter()
            .find(|(i, _, open)| *i == index && *open)
            .map(|(_, o, _)| *o)
    }

    fn block_start(&mut self, index: usize, block: BlockKind<'_>, out: &mut Vec<u8>) {
        self.start("", "", Counts::default(), out);
        if matches!(block, BlockKind::Other) {
            return;
        }
        let n = self.blocks.len();
        self.blocks.push((index, n, true));
        if !self.stream {
            self.whole.push(match block {
                BlockKind::ToolUse { id, name } => {
                    self.tool = true;
                    Whole::ToolUse {
                        id: id.into_owned(),
                        name: name.to_owned(),
                        input: String::new(),
                    }
                }
                BlockKind::Thinking => Whole::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                },
                BlockKind::RedactedThinking { data } => Whole::Redacted(data.to_owned()),
                BlockKind::Text | BlockKind::Other => Whole::Text(String::new()),
            });
            return;
        }
        write_event(out, Some("content_block_start"), |d| {
            let mut o = Obj::new(d);
            o.str("type", "content_block_start").u64("index", n as u64);
            let mut b = Obj::new(o.key("content_block"));
            match &block {
                BlockKind::Text | BlockKind::Other => {
                    b.str("type", "text").str("text", "");
                }
                BlockKind::ToolUse { id, name } => {
                    self.tool = true;
                    b.str("type", "tool_use");
                    write_tool_id(b.key("id"), id);
                    b.str("name", name).raw("input", b"{}");
                }
                BlockKind::Thinking => {
                    b.str("type", "thinking")
                        .str("thinking", "")
                        .str("signature", "");
                }
                BlockKind::RedactedThinking { data } => {
                    b.str("type", "redacted_thinking").str("data", data);
                }
            }
            b.end();
            o.end();
        });
    }

    fn delta(&mut self, index: usize, delta: Delta<'_>, out: &mut Vec<u8>) {
        let Some(n) = self.out_index(index) else {
            return;
        };
        if !self.stream {
            match (self.whole.get_mut(n), delta) {
                (Some(Whole::Text(t)), Delta::Text(d)) => t.push_str(d),
                (Some(Whole::ToolUse { input, .. }), Delta::Json(d)) => input.push_str(d),
                (Some(Whole::Thinking { thinking, .. }), Delta::Thinking(d)) => {
                    thinking.push_str(d);
                }
                (Some(Whole::Thinking { signature, .. }), Delta::Signature(d)) => {
                    signature.push_str(d);
                }
                _ => {}
            }
            return;
        }
        let (kind, field, text) = match delta {
            Delta::Text(t) => ("text_delta", "text", t),
            Delta::Json(j) => ("input_json_delta", "partial_json", j),
            Delta::Thinking(t) => ("thinking_delta", "thinking", t),
            Delta::Signature(s) => ("signature_delta", "signature", s),
        };
        write_event(out, Some("content_block_delta"), |d| {
            let mut o = Obj::new(d);
            o.str("type", "content_block_delta").u64("index", n as u64);
            let mut w = Obj::new(o.key("delta"));
            w.str("type", kind).str(field, text);
            w.end();
            o.end();
        });
    }

    fn block_stop(&mut self, index: usize, out: &mut Vec<u8>) {
        let Some(slot) = self
            .blocks
            .iter_mut()
            .find(|(i, _, open)| *i == index && *open)
        else {
            return;
        };
        slot.2 = false;
        let n = slot.1;
        if self.stream {
            write_event(out, Some("content_block_stop"), |d| {
                let mut o = Obj::new(d);
                o.str("type", "content_block_stop").u64("index", n as u64);
                o.end();
            });
        }
    }

    /// `message_delta`, once: blocks still open are closed first.
    fn finish(&mut self, stop: Option<Stop<'_>>, usage: Option<Counts>, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            return;
        }
        self.start("", "", Counts::default(), out);
        let open: Vec<usize> = self.blocks.iter().filter(|b| b.2).map(|b| b.0).collect();
        for index in open {
            self.block_stop(index, out);
        }
        let reason = stop_reason(stop, self.tool);
        self.stop = Some(reason);
        if let Some(Stop::StopSequence(Some(s))) = stop {
            self.stop_sequence = Some(s.to_owned());
        }
        if !self.stream {
            return;
        }
        let counts = usage.unwrap_or_default();
        write_event(out, Some("message_delta"), |d| {
            let mut o = Obj::new(d);
            o.str("type", "message_delta");
            let mut w = Obj::new(o.key("delta"));
            w.str("stop_reason", reason)
                .opt_str("stop_sequence", self.stop_sequence.as_deref());
            w.end();
            // Cumulative counts; `output_tokens` is required.
            let c = Counts {
                output: counts.output.or(self.usage.output),
                ..counts
            };
            write_usage(o.key("usage"), &c, false);
            o.end();
        });
    }

    /// The whole message.
    fn whole(&self, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        o.str("id", &self.id)
            .str("type", "message")
            .str("role", "assistant")
            .str("model", &self.model);
        let content = o.key("content");
        content.push(b'[');
        let mut first = true;
        for b in &self.whole {
            sep(content, &mut first);
            let mut w = Obj::new(content);
            match b {
                Whole::Text(t) => {
                    w.str("type", "text").str("text", t);
                }
                Whole::ToolUse { id, name, input } => {
                    w.str("type", "tool_use");
                    write_tool_id(w.key("id"), id);
                    w.str("name", name);
                    let input = input.trim();
                    if crate::dialect::json::is_object(input) {
                        w.raw("input", input.as_bytes());
                    } else {
                        // Anthropic clients require an object; arguments that are not one
                        // (none, or malformed) cannot be passed as they are.
                        w.raw("input", b"{}");
                    }
                }
                Whole::Thinking {
                    thinking,
                    signature,
                } => {
                    w.str("type", "thinking")
                        .str("thinking", thinking)
                        .str("signature", signature);
                }
                Whole::Redacted(data) => {
                    w.str("type", "redacted_thinking").str("data", data);
                }
            }
            w.end();
        }
        content.push(b']');
        o.str("stop_reason", self.stop.unwrap_or("end_turn"))
            .opt_str("stop_sequence", self.stop_sequence.as_deref());
        write_usage(o.key("usage"), &self.usage, true);
        o.end();
    }
}

/// An `error` event.
pub fn write_error_event(out: &mut Vec<u8>, kind: &str, message: &str) {
    write_event(out, Some("error"), |d| write_error_body(d, kind, message));
}

/// An Anthropic error body: `{"type":"error","error":{"type":…,"message":…}}`.
pub fn write_error_body(out: &mut Vec<u8>, kind: &str, message: &str) {
    let mut o = Obj::new(out);
    o.str("type", "error");
    let mut e = Obj::new(o.key("error"));
    e.str("type", kind).str("message", message);
    e.end();
    o.end();
}
