//! Anthropic Messages requests, written from the intermediate form (`research/dialects.md`
//! §B1): `max_tokens` is always sent (Anthropic requires it; the default is
//! [`DEFAULT_MAX_TOKENS`]), temperatures are clamped to Anthropic's 0–1, empty text blocks
//! are left out (Anthropic refuses them), and tool-call ids are made to match
//! `^[a-zA-Z0-9_-]+$` (Anthropic's pattern; OpenAI-compatible servers mint ids such as
//! `functions.Bash:0`).

use std::borrow::Cow;

use crate::dialect::ir::{Block, Image, Request, Role, Thinking, ToolChoice};
use crate::dialect::json::{Obj, sep, string};
use crate::dialect::{DEFAULT_MAX_TOKENS, Refusal};

/// Writes `req` as an Anthropic Messages request for `model`. Hints Anthropic cannot take
/// are added to `dropped`.
pub fn write(
    req: &Request<'_>,
    model: &str,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    write_with(req, Envelope::Messages(model), out, dropped)
}

/// The version Bedrock's InvokeModel takes Anthropic bodies at.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Writes `req` as a Bedrock InvokeModel body for an Anthropic model: the Messages body
/// without `model` and `stream` (the path says both), with `anthropic_version`.
pub fn write_invoke(
    req: &Request<'_>,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    write_with(req, Envelope::BedrockInvoke, out, dropped)
}

/// The version Vertex AI takes Anthropic bodies at.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Writes `req` as a Vertex AI `rawPredict` / `streamRawPredict` body for a Claude model:
/// the Messages body without `model` (the path names it), with `anthropic_version`; `stream`
/// stays in the body.
pub fn write_vertex(
    req: &Request<'_>,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    write_with(req, Envelope::Vertex, out, dropped)
}

/// Where the body goes: the Messages API (with its model), Bedrock's InvokeModel or Vertex
/// AI's rawPredict.
#[derive(Clone, Copy)]
enum Envelope<'m> {
    Messages(&'m str),
    BedrockInvoke,
    Vertex,
}

fn write_with(
    req: &Request<'_>,
    envelope: Envelope<'_>,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    let mut thinking = req.thinking;
    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(Thinking::Enabled { budget_tokens }) = thinking {
        // The budget must be below `max_tokens` and at least 1024 (Anthropic's rules).
        match req.max_tokens {
            None => max_tokens = max_tokens.max(budget_tokens.saturating_add(DEFAULT_MAX_TOKENS)),
            Some(m) if m <= 1024 => {
                thinking = None;
                dropped.push(Cow::Borrowed("reasoning_effort"));
            }
            Some(m) => {
                thinking = Some(Thinking::Enabled {
                    budget_tokens: budget_tokens.min(m - 1),
                });
            }
        }
    }
    let mut o = Obj::new(out);
    match envelope {
        Envelope::Messages(model) => {
            o.str("model", model);
        }
        Envelope::BedrockInvoke => {
            o.str("anthropic_version", BEDROCK_ANTHROPIC_VERSION);
        }
        Envelope::Vertex => {
            o.str("anthropic_version", VERTEX_ANTHROPIC_VERSION);
        }
    }
    o.u64("max_tokens", max_tokens);
    if !req.system.is_empty() {
        let s = o.key("system");
        s.push(b'[');
        let mut first = true;
        for text in &req.system {
            sep(s, &mut first);
            let mut b = Obj::new(s);
            b.str("type", "text").str("text", text);
            b.end();
        }
        s.push(b']');
    }
    let msgs = o.key("messages");
    msgs.push(b'[');
    let mut first = true;
    for m in &req.messages {
        let mut blocks = m.content.iter().filter(|b| !is_blank(b)).peekable();
        if blocks.peek().is_none() {
            continue;
        }
        sep(msgs, &mut first);
        let mut w = Obj::new(msgs);
        w.str(
            "role",
            match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            },
        );
        let c = w.key("content");
        c.push(b'[');
        let mut bf = true;
        for b in blocks {
            sep(c, &mut bf);
            write_block(c, b);
        }
        c.push(b']');
        w.end();
    }
    msgs.push(b']');
    if !req.stop.is_empty() {
        let s = o.key("stop_sequences");
        s.push(b'[');
        let mut first = true;
        for stop in req.stop.iter().filter(|s| !s.trim().is_empty()) {
            sep(s, &mut first);
            string(s, stop);
        }
        s.push(b']');
    }
    match (req.temperature, thinking) {
        (Some(t), Some(Thinking::Enabled { .. })) if (t - 1.0).abs() > f64::EPSILON => {
            // Anthropic accepts only the default temperature with thinking on.
            dropped.push(Cow::Borrowed("temperature"));
        }
        (Some(t), _) => {
            o.f64("temperature", t.clamp(0.0, 1.0));
        }
        (None, _) => {}
    }
    if let Some(p) = req.top_p {
        o.f64("top_p", p);
    }
    if let Some(k) = req.top_k {
        o.u64("top_k", k);
    }
    if req.stream && !matches!(envelope, Envelope::BedrockInvoke) {
        o.bool("stream", true);
    }
    if !req.tools.is_empty() {
        let t = o.key("tools");
        t.push(b'[');
        let mut first = true;
        for tool in &req.tools {
            sep(t, &mut first);
            let mut w = Obj::new(t);
            w.str("name", tool.name);
            if let Some(d) = tool.description {
                w.str("description", d);
            }
            w.raw("input_schema", tool.schema.as_bytes());
            if let Some(strict) = tool.strict {
                w.bool("strict", strict);
            }
            w.end();
        }
        t.push(b']');
    }
    let single = req.parallel_tool_calls == Some(false) && !req.tools.is_empty();
    let choice = match req.tool_choice {
        None if single => Some(ToolChoice::Auto),
        c => c,
    };
    if let Some(choice) = choice {
        let mut c = Obj::new(o.key("tool_choice"));
        match choice {
            ToolChoice::Auto => c.str("type", "auto"),
            ToolChoice::Any => c.str("type", "any"),
            ToolChoice::None => c.str("type", "none"),
            ToolChoice::Tool(name) => c.str("type", "tool").str("name", name),
        };
        if single && choice != ToolChoice::None {
            c.bool("disable_parallel_tool_use", true);
        }
        c.end();
    }
    if let Some(user) = req.user {
        let mut m = Obj::new(o.key("metadata"));
        m.str("user_id", user);
        m.end();
    }
    match thinking {
        Some(Thinking::Enabled { budget_tokens }) => {
            let mut t = Obj::new(o.key("thinking"));
            t.str("type", "enabled").u64("budget_tokens", budget_tokens);
            t.end();
        }
        Some(Thinking::Adaptive) => {
            o.raw("thinking", br#"{"type":"adaptive"}"#);
        }
        Some(Thinking::Disabled) => {
            o.raw("thinking", br#"{"type":"disabled"}"#);
        }
        None => {}
    }
    if let Some(schema) = &req.output_schema {
        let mut c = Obj::new(o.key("output_config"));
        let mut f = Obj::new(c.key("format"));
        f.str("type", "json_schema")
            .raw("schema", schema.as_bytes());
        f.end();
        c.end();
    }
    o.end();
    Ok(())
}

/// Text blocks Anthropic refuses: empty or only whitespace.
fn is_blank(b: &Block<'_>) -> bool {
    matches!(b, Block::Text(t) if t.trim().is_empty())
}

fn write_block(out: &mut Vec<u8>, b: &Block<'_>) {
    let mut w = Obj::new(out);
    match b {
        Block::Text(t) => {
            w.str("type", "text").str("text", t);
        }
        Block::Image(image) => {
            w.str("type", "image");
            let mut s = Obj::new(w.key("source"));
            match image {
                Image::Base64 { media_type, data } => {
                    s.str("type", "base64")
                        .str("media_type", media_type)
                        .str("data", data);
                }
                Image::Url(url) => {
                    s.str("type", "url").str("url", url);
                }
            }
            s.end();
        }
        Block::ToolUse { id, name, input } => {
            w.str("type", "tool_use");
            write_tool_id(w.key("id"), id);
            w.str("name", name).raw("input", input.as_bytes());
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            w.str("type", "tool_result");
            write_tool_id(w.key("tool_use_id"), tool_use_id);
            let c = w.key("content");
            c.push(b'[');
            let mut first = true;
            for part in content.iter().filter(|b| !is_blank(b)) {
                sep(c, &mut first);
                write_block(c, part);
            }
            c.push(b']');
            if *is_error {
                w.bool("is_error", true);
            }
        }
        Block::Thinking {
            thinking,
            signature,
        } => {
            w.str("type", "thinking")
                .str("thinking", thinking)
                .str("signature", signature);
        }
        Block::RedactedThinking { data } => {
            w.str("type", "redacted_thinking").str("data", data);
        }
    }
    w.end();
}

/// Writes a tool-call id as a JSON string matching `^[a-zA-Z0-9_-]+$`: every other character
/// becomes `_` (the same id always maps to the same result, so calls and results still
/// pair up).
pub fn write_tool_id(out: &mut Vec<u8>, id: &str) {
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.is_empty()
    {
        string(out, id);
        return;
    }
    out.push(b'"');
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c as u8);
        } else {
            out.push(b'_');
        }
    }
    if id.is_empty() {
        out.push(b'_');
    }
    out.push(b'"');
}
