//! Events as an OpenAI answer: chat completion chunks (`research/dialects.md` §B6), or one chat
//! completion.
//!
//! The rules other gateways got wrong, kept here: the first chunk carries
//! `role: "assistant"`; `tool_calls[].index` counts tool calls only (0, 1, … — never the
//! block index, which text and thinking blocks also take); a tool call whose arguments never
//! came gets `"{}"`; a turn that called a tool finishes with `tool_calls` even when the
//! upstream said `stop`; the usage chunk (`choices: []`) goes out only when the client asked
//! for it (`stream_options.include_usage`), and `prompt_tokens` counts cached tokens too.

use crate::dialect::given_or;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};
use crate::dialect::json::{Obj, sep, string};
use crate::dialect::sse::write_event;

/// An OpenAI `finish_reason` for a stop (`tool` when the turn called a tool).
#[must_use]
pub fn finish_reason(stop: Option<Stop<'_>>, tool: bool) -> &'static str {
    match stop {
        Some(Stop::MaxTokens | Stop::ContextWindow) => "length",
        Some(Stop::ToolUse) => "tool_calls",
        Some(Stop::Refusal) => "content_filter",
        _ if tool => "tool_calls",
        _ => "stop",
    }
}

/// Writes an OpenAI `usage` object.
pub fn write_usage(out: &mut Vec<u8>, c: &Counts) {
    let prompt = c.prompt_total();
    let completion = c.output.unwrap_or(0);
    let mut u = Obj::new(out);
    u.u64("prompt_tokens", prompt)
        .u64("completion_tokens", completion)
        .u64("total_tokens", prompt.saturating_add(completion));
    let mut d = Obj::new(u.key("prompt_tokens_details"));
    d.u64("cached_tokens", c.cache_read.unwrap_or(0));
    if let Some(w) = c.cache_write.filter(|w| *w > 0) {
        d.u64("cache_write_tokens", w);
    }
    d.end();
    u.end();
}

/// A tool call being written.
#[derive(Debug)]
struct Call {
    block: usize,
    /// Its OpenAI `index`.
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// The encoder's state for one answer.
#[derive(Debug)]
pub struct Encoder<'a> {
    stream: bool,
    include_usage: bool,
    created: u64,
    /// Used when the upstream gives none.
    fallback_id: &'a str,
    fallback_model: &'a str,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[`
    prefix: Vec<u8>,
    id: String,
    model: String,
    usage: Counts,
    calls: Vec<Call>,
    text: String,
    reasoning: String,
    started: bool,
    finish: Option<&'static str>,
    ended: bool,
}

impl<'a> Encoder<'a> {
    /// An encoder for a stream or a whole answer; `id` and `model` are used when the
    /// upstream's answer does not say.
    #[must_use]
    pub fn new(
        stream: bool,
        include_usage: bool,
        created: u64,
        id: &'a str,
        model: &'a str,
    ) -> Self {
        Self {
            stream,
            include_usage,
            created,
            fallback_id: id,
            fallback_model: model,
            prefix: Vec::new(),
            id: String::new(),
            model: String::new(),
            usage: Counts::default(),
            calls: Vec::new(),
            text: String::new(),
            reasoning: String::new(),
            started: false,
            finish: None,
            ended: false,
        }
    }

    /// The `finish_reason` written, once written.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&'static str> {
        self.finish
    }

    /// Appends what `e` becomes to `out`.
    pub fn event(&mut self, e: Event<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match e {
            Event::Start { id, model, usage } => self.start(id, model, usage, out),
            Event::BlockStart {
                index,
                block: BlockKind::ToolUse { id, name },
            } => {
                self.start("", "", Counts::default(), out);
                let call = Call {
                    block: index,
                    index: self.calls.len(),
                    id: id.into_owned(),
                    name: name.to_owned(),
                    arguments: String::new(),
                };
                if self.stream {
                    self.chunk(out, |d| {
                        tool_delta(d, call.index, Some((&call.id, &call.name)), "");
                    });
                }
                self.calls.push(call);
            }
            Event::BlockStart { .. } => {}
            Event::Delta { index, delta } => self.delta(index, delta, out),
            Event::BlockStop { index } => {
                let Some(call) = self.calls.iter_mut().find(|c| c.block == index) else {
                    return;
                };
                if call.arguments.is_empty() {
                    // A call without arguments: clients parse `arguments`, so it is `{}`.
                    call.arguments.push_str("{}");
                    let k = call.index;
                    if self.stream {
                        self.chunk(out, |d| tool_delta(d, k, None, "{}"));
                    }
                }
            }
            Event::Finish { stop, usage } => {
                self.usage = self.usage.updated(usage);
                self.write_finish(stop, out);
            }
            Event::End => {
                self.write_finish(None, out);
                self.ended = true;
                if self.stream {
                    out.extend_from_slice(b"data: [DONE]\n\n");
                } else {
                    self.whole(out);
                }
            }
            Event::Error { kind, message } => {
                self.ended = true;
                write_error_event(out, kind, message);
            }
        }
    }

    /// The upstream broke off: the client gets an error event (a stream) instead of a silent
    /// end. Nothing is written once the answer ended.
    pub fn cut(&mut self, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        write_error_event(out, "provider_error", message);
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
        self.prefix.extend_from_slice(b"data: {\"id\":");
        string(&mut self.prefix, &self.id);
        self.prefix
            .extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        crate::codec::push_u64(&mut self.prefix, self.created);
        self.prefix.extend_from_slice(b",\"model\":");
        string(&mut self.prefix, &self.model);
        self.prefix.extend_from_slice(b",\"choices\":[");
        self.chunk(out, |d| {
            d.str("role", "assistant").str("content", "");
        });
    }

    fn delta(&mut self, index: usize, delta: Delta<'_>, out: &mut Vec<u8>) {
        match delta {
            Delta::Text(t) => {
                if self.stream {
                    self.chunk(out, |d| {
                        d.str("content", t);
                    });
                } else {
                    self.text.push_str(t);
                }
            }
            Delta::Thinking(t) => {
                if self.stream {
                    self.chunk(out, |d| {
                        d.str("reasoning_content", t);
                    });
                } else {
                    self.reasoning.push_str(t);
                }
            }
            Delta::Json(j) if !j.is_empty() => {
                let Some(call) = self.calls.iter_mut().find(|c| c.block == index) else {
                    return;
                };
                call.arguments.push_str(j);
                let k = call.index;
                if self.stream {
                    self.chunk(out, |d| tool_delta(d, k, None, j));
                }
            }
            Delta::Json(_) | Delta::Signature(_) => {}
        }
    }

    fn write_finish(&mut self, stop: Option<Stop<'_>>, out: &mut Vec<u8>) {
        if self.finish.is_some() {
            return;
        }
        self.start("", "", Counts::default(), out);
        let reason = finish_reason(stop, !self.calls.is_empty());
        self.finish = Some(reason);
        if !self.stream {
            return;
        }
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"{\"index\":0,\"delta\":{},\"finish_reason\":\"");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\"}]}\n\n");
        if self.include_usage {
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(b"],\"usage\":");
            write_usage(out, &self.usage);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// One chunk whose `delta` object `write` fills.
    fn chunk(&self, out: &mut Vec<u8>, write: impl FnOnce(&mut Obj<'_>)) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"{\"index\":0,\"delta\":");
        let mut d = Obj::new(out);
        write(&mut d);
        d.end();
        out.extend_from_slice(b",\"finish_reason\":null}]}\n\n");
    }

    /// The whole chat completion.
    fn whole(&self, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        o.str("id", &self.id)
            .str("object", "chat.completion")
            .u64("created", self.created)
            .str("model", &self.model);
        let choices = o.key("choices");
        choices.push(b'[');
        let mut c = Obj::new(choices);
        c.u64("index", 0);
        let mut m = Obj::new(c.key("message"));
        m.str("role", "assistant");
        if self.text.is_empty() {
            m.raw("content", b"null");
        } else {
            m.str("content", &self.text);
        }
        if !self.reasoning.is_empty() {
            m.str("reasoning_content", &self.reasoning);
        }
        if !self.calls.is_empty() {
            let calls = m.key("tool_calls");
            calls.push(b'[');
            let mut first = true;
            for call in &self.calls {
                sep(calls, &mut first);
                let mut w = Obj::new(calls);
                w.str("id", &call.id).str("type", "function");
                let mut f = Obj::new(w.key("function"));
                f.str("name", &call.name).str("arguments", &call.arguments);
                f.end();
                w.end();
            }
            calls.push(b']');
        }
        m.raw("refusal", b"null");
        m.end();
        c.raw("logprobs", b"null")
            .str("finish_reason", self.finish.unwrap_or("stop"));
        c.end();
        choices.push(b']');
        write_usage(o.key("usage"), &self.usage);
        o.end();
    }
}

/// A delta's `tool_calls`: one call, with its id and name when it starts.
fn tool_delta(d: &mut Obj<'_>, index: usize, head: Option<(&str, &str)>, arguments: &str) {
    let out = d.key("tool_calls");
    out.push(b'[');
    let mut c = Obj::new(&mut *out);
    c.u64("index", index as u64);
    if let Some((id, _)) = head {
        c.str("id", id).str("type", "function");
    }
    let mut f = Obj::new(c.key("function"));
    if let Some((_, name)) = head {
        f.str("name", name);
    }
    f.str("arguments", arguments);
    f.end();
    c.end();
    out.push(b']');
}

/// An error inside a stream, as OpenAI sends one: `data: {"error": {…}}`.
pub fn write_error_event(out: &mut Vec<u8>, kind: &str, message: &str) {
    write_event(out, None, |d| {
        let mut o = Obj::new(d);
        let mut e = Obj::new(o.key("error"));
        e.str("message", message)
            .str("type", kind)
            .raw("param", b"null")
            .raw("code", b"null");
        e.end();
        o.end();
    });
}
