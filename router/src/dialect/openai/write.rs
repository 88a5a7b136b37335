//! OpenAI chat completion requests, written from the intermediate form: system text as
//! system messages, tool results as `tool` messages ahead of the rest of their user turn,
//! tool uses as `tool_calls`, thinking left out (an OpenAI request cannot carry it), and
//! `stream_options.include_usage` always asked for on a stream — metering must not depend on
//! the client.

use std::borrow::Cow;

use crate::dialect::Refusal;
use crate::dialect::ir::{Block, Image, Request, Role, ToolChoice};
use crate::dialect::json::{Obj, sep, string};

/// How the written request names its token limit: OpenAI's own API takes
/// `max_completion_tokens` (reasoning models refuse `max_tokens`); OpenAI-compatible servers
/// know `max_tokens` best.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    MaxTokens,
    MaxCompletionTokens,
}

/// Writes `req` as an OpenAI chat completion request for `model`. Fields OpenAI has no use
/// for are added to `dropped`; what cannot be said at all is refused.
pub fn write(
    req: &Request<'_>,
    model: &str,
    limit: Limit,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    if req
        .messages
        .last()
        .is_some_and(|m| m.role == Role::Assistant)
    {
        return Err(Refusal::untranslatable(
            "messages",
            "the conversation ends with an assistant turn (a prefill); OpenAI-compatible endpoints cannot continue one",
        ));
    }
    let mut o = Obj::new(out);
    o.str("model", model);
    let msgs = o.key("messages");
    msgs.push(b'[');
    let mut first = true;
    for text in &req.system {
        sep(msgs, &mut first);
        let mut m = Obj::new(msgs);
        m.str("role", "system").str("content", text);
        m.end();
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::User => write_user(msgs, &mut first, i, &m.content)?,
            Role::Assistant => write_assistant(msgs, &mut first, &m.content),
        }
    }
    msgs.push(b']');
    if let Some(n) = req.max_tokens {
        o.u64(
            match limit {
                Limit::MaxTokens => "max_tokens",
                Limit::MaxCompletionTokens => "max_completion_tokens",
            },
            n,
        );
    }
    if let Some(t) = req.temperature {
        o.f64("temperature", t);
    }
    if let Some(p) = req.top_p {
        o.f64("top_p", p);
    }
    if req.top_k.is_some() {
        dropped.push(Cow::Borrowed("top_k"));
    }
    if req.thinking.is_some() {
        dropped.push(Cow::Borrowed("thinking"));
    }
    if !req.stop.is_empty() {
        let s = o.key("stop");
        s.push(b'[');
        let mut first = true;
        for stop in &req.stop {
            sep(s, &mut first);
            string(s, stop);
        }
        s.push(b']');
    }
    if req.stream {
        // Usage is always asked for: metering must not depend on the client.
        o.bool("stream", true)
            .raw("stream_options", br#"{"include_usage":true}"#);
    }
    if !req.tools.is_empty() {
        let t = o.key("tools");
        t.push(b'[');
        let mut first = true;
        for tool in &req.tools {
            sep(t, &mut first);
            let mut w = Obj::new(t);
            w.str("type", "function");
            let mut f = Obj::new(w.key("function"));
            f.str("name", tool.name);
            if let Some(d) = tool.description {
                f.str("description", d);
            }
            f.raw("parameters", tool.schema.as_bytes());
            if let Some(strict) = tool.strict {
                f.bool("strict", strict);
            }
            f.end();
            w.end();
        }
        t.push(b']');
    }
    match req.tool_choice {
        None => {}
        Some(ToolChoice::Auto) => {
            o.str("tool_choice", "auto");
        }
        Some(ToolChoice::Any) => {
            o.str("tool_choice", "required");
        }
        Some(ToolChoice::None) => {
            o.str("tool_choice", "none");
        }
        Some(ToolChoice::Tool(name)) => {
            let mut c = Obj::new(o.key("tool_choice"));
            c.str("type", "function");
            let mut f = Obj::new(c.key("function"));
            f.str("name", name);
            f.end();
            c.end();
        }
    }
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        o.bool("parallel_tool_calls", false);
    }
    if let Some(user) = req.user {
        o.str("user", user);
    }
    if let Some(schema) = &req.output_schema {
        let mut f = Obj::new(o.key("response_format"));
        f.str("type", "json_schema");
        let mut j = Obj::new(f.key("json_schema"));
        j.str("name", "output").raw("schema", schema.as_bytes());
        j.end();
        f.end();
    }
    o.end();
    Ok(())
}

/// A user turn: its tool results as `tool` messages first, then the rest as one user message.
fn write_user(
    out: &mut Vec<u8>,
    first: &mut bool,
    i: usize,
    blocks: &[Block<'_>],
) -> Result<(), Refusal> {
    let mut rest = Vec::new();
    for b in blocks {
        let Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } = b
        else {
            rest.push(b);
            continue;
        };
        let mut text = String::new();
        if *is_error {
            // OpenAI has no error flag on a tool message: the model reads it in the text.
            text.push_str("Error: ");
        }
        for c in content {
            match c {
                Block::Text(t) => text.push_str(t),
                _ => {
                    return Err(Refusal::untranslatable(
                        "messages",
                        format!(
                            "messages[{i}]: a tool result with an image cannot be translated (OpenAI tool messages are text)"
                        ),
                    ));
                }
            }
        }
        sep(out, first);
        let mut m = Obj::new(out);
        m.str("role", "tool")
            .str("tool_call_id", tool_use_id)
            .str("content", &text);
        m.end();
    }
    if rest.is_empty() {
        return Ok(());
    }
    sep(out, first);
    let mut m = Obj::new(out);
    m.str("role", "user");
    if let [Block::Text(t)] = rest.as_slice() {
        m.str("content", t);
    } else {
        let parts = m.key("content");
        parts.push(b'[');
        let mut pf = true;
        for b in rest {
            sep(parts, &mut pf);
            let mut p = Obj::new(parts);
            match b {
                Block::Text(t) => {
                    p.str("type", "text").str("text", t);
                }
                Block::Image(image) => {
                    p.str("type", "image_url");
                    let mut u = Obj::new(p.key("image_url"));
                    match image {
                        Image::Url(url) => {
                            u.str("url", url);
                        }
                        Image::Base64 { media_type, data } => {
                            let mut url = String::with_capacity(data.len() + 32);
                            url.push_str("data:");
                            url.push_str(media_type);
                            url.push_str(";base64,");
                            url.push_str(data);
                            u.str("url", &url);
                        }
                    }
                    u.end();
                }
                _ => {
                    return Err(Refusal::untranslatable(
                        "messages",
                        format!("messages[{i}]: this kind of user content cannot be translated"),
                    ));
                }
            }
            p.end();
        }
        parts.push(b']');
    }
    m.end();
    Ok(())
}

/// An assistant turn: its text as `content`, its tool calls as `tool_calls` (thinking is
/// not something an OpenAI request can carry, and is left out).
fn write_assistant(out: &mut Vec<u8>, first: &mut bool, blocks: &[Block<'_>]) {
    sep(out, first);
    let mut m = Obj::new(out);
    m.str("role", "assistant");
    let text: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(t) => Some(&**t),
            _ => None,
        })
        .collect();
    let calls: Vec<_> = blocks
        .iter()
        .filter(|b| matches!(b, Block::ToolUse { .. }))
        .collect();
    match text.as_slice() {
        [] if !calls.is_empty() => {
            m.raw("content", b"null");
        }
        [one] => {
            m.str("content", one);
        }
        many => {
            m.str("content", &many.concat());
        }
    }
    if !calls.is_empty() {
        let c = m.key("tool_calls");
        c.push(b'[');
        let mut cf = true;
        for b in calls {
            if let Block::ToolUse { id, name, input } = b {
                sep(c, &mut cf);
                let mut call = Obj::new(c);
                call.str("id", id).str("type", "function");
                let mut f = Obj::new(call.key("function"));
                f.str("name", name).str("arguments", input);
                f.end();
                call.end();
            }
        }
        c.push(b']');
    }
    m.end();
}
