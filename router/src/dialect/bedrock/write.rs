//! Bedrock `Converse` / `ConverseStream` requests, written from the intermediate form
//! (`research/dialects.md` §C2). The model goes in the path, not the body. The rules the
//! field has learnt the hard way: turns of the same role are merged (Converse refuses two in
//! a row) and all tool results of a turn go in one user message; a tool result says
//! `status: error` only when it is one (never a forced `success`); images must be inline
//! (Converse has no URL source, and fetching one here would be a request forgery hazard);
//! `toolChoice` has no `none`; tool-use ids are made to match Bedrock's pattern and a tool
//! name outside it is refused (renaming it would change what the client sees); Claude's own knobs (`top_k`, `thinking`) ride in
//! `additionalModelRequestFields`, and only for Claude models.

use std::borrow::Cow;

use crate::dialect::Refusal;
use crate::dialect::ir::{Block, Image, Message, Request, Role, Thinking, ToolChoice};
use crate::dialect::json::{Obj, sep, string};

/// Writes `req` as a Converse request body for `model` (the Bedrock model id, used only to
/// decide what Claude-only fields may be sent). Hints Converse cannot take are added to
/// `dropped`.
pub fn write(
    req: &Request<'_>,
    model: &str,
    out: &mut Vec<u8>,
    dropped: &mut Vec<Cow<'static, str>>,
) -> Result<(), Refusal> {
    if req.output_schema.is_some() {
        return Err(Refusal::untranslatable(
            "response_format",
            "structured output (`response_format` / `output_config`) is not available through Bedrock Converse",
        ));
    }
    let claude = model.contains("anthropic") || model.contains("claude");
    if let Some(bad) = req.tools.iter().find(|t| !valid_name(t.name)) {
        return Err(Refusal::untranslatable(
            "tools",
            format!(
                "tool name `{}` is not accepted by Bedrock (1 to 64 of a-z, A-Z, 0-9, `_`, `-`)",
                bad.name
            ),
        ));
    }
    let mut o = Obj::new(out);
    if !req.system.is_empty() {
        let s = o.key("system");
        s.push(b'[');
        let mut first = true;
        for text in req.system.iter().filter(|t| !t.trim().is_empty()) {
            sep(s, &mut first);
            let mut b = Obj::new(s);
            b.str("text", text);
            b.end();
        }
        s.push(b']');
    }
    let msgs = o.key("messages");
    msgs.push(b'[');
    let mut first = true;
    for turn in turns(&req.messages) {
        sep(msgs, &mut first);
        let mut w = Obj::new(msgs);
        w.str(
            "role",
            match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            },
        );
        let c = w.key("content");
        c.push(b'[');
        let mut bf = true;
        for b in turn.blocks {
            sep(c, &mut bf);
            write_block(c, b)?;
        }
        c.push(b']');
        w.end();
    }
    msgs.push(b']');

    let stops: Vec<&str> = req.stop.iter().copied().filter(|s| !s.is_empty()).collect();
    let mut inference = Vec::new();
    {
        let mut i = Obj::new(&mut inference);
        if let Some(m) = req.max_tokens {
            i.u64("maxTokens", m.max(1));
        }
        if let Some(t) = req.temperature {
            if claude && matches!(req.thinking, Some(Thinking::Enabled { .. })) {
                // Claude takes only its default temperature with thinking on.
                dropped.push(Cow::Borrowed("temperature"));
            } else {
                i.f64("temperature", t.clamp(0.0, 1.0));
            }
        }
        if let Some(p) = req.top_p {
            i.f64("topP", p);
        }
        if !stops.is_empty() {
            let s = i.key("stopSequences");
            s.push(b'[');
            let mut first = true;
            for stop in &stops {
                sep(s, &mut first);
                string(s, stop);
            }
            s.push(b']');
        }
        i.end();
    }
    if inference.len() > 2 {
        o.raw("inferenceConfig", &inference);
    }

    let calls_tools = req.messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }))
    });
    if req.tool_choice == Some(ToolChoice::None) && !req.tools.is_empty() {
        // Converse has no `none`. Without tools the model cannot call one; but a history with
        // tool calls needs the tools declared, so then the choice is dropped instead.
        if calls_tools {
            dropped.push(Cow::Borrowed("tool_choice"));
        }
    }
    let keep_tools =
        !req.tools.is_empty() && (req.tool_choice != Some(ToolChoice::None) || calls_tools);
    if keep_tools {
        let mut tc = Obj::new(o.key("toolConfig"));
        let t = tc.key("tools");
        t.push(b'[');
        let mut first = true;
        for tool in &req.tools {
            sep(t, &mut first);
            let mut w = Obj::new(t);
            let mut spec = Obj::new(w.key("toolSpec"));
            write_name(spec.key("name"), tool.name);
            if let Some(d) = tool.description.filter(|d| !d.is_empty()) {
                spec.str("description", d);
            }
            let mut schema = Obj::new(spec.key("inputSchema"));
            schema.raw("json", tool.schema.as_bytes());
            schema.end();
            spec.end();
            w.end();
        }
        t.push(b']');
        match req.tool_choice {
            Some(ToolChoice::Auto) => {
                tc.raw("toolChoice", br#"{"auto":{}}"#);
            }
            Some(ToolChoice::Any) => {
                tc.raw("toolChoice", br#"{"any":{}}"#);
            }
            Some(ToolChoice::Tool(name)) => {
                let mut c = Obj::new(tc.key("toolChoice"));
                let mut n = Obj::new(c.key("tool"));
                write_name(n.key("name"), name);
                n.end();
                c.end();
            }
            Some(ToolChoice::None) | None => {}
        }
        tc.end();
    }
    if req.parallel_tool_calls == Some(false) && keep_tools {
        dropped.push(Cow::Borrowed("parallel_tool_calls"));
    }

    // Claude's own fields.
    let thinking = match req.thinking {
        Some(Thinking::Enabled { budget_tokens }) => Some(budget_tokens),
        _ => None,
    };
    if claude && (req.top_k.is_some() || thinking.is_some()) {
        let mut a = Obj::new(o.key("additionalModelRequestFields"));
        if let Some(k) = req.top_k {
            a.u64("top_k", k);
        }
        if let Some(budget) = thinking {
            let mut t = Obj::new(a.key("thinking"));
            t.str("type", "enabled").u64("budget_tokens", budget);
            t.end();
        }
        a.end();
    } else {
        if req.top_k.is_some() {
            dropped.push(Cow::Borrowed("top_k"));
        }
        if req.thinking.is_some() {
            dropped.push(Cow::Borrowed("thinking"));
        }
    }
    if req.user.is_some() {
        dropped.push(Cow::Borrowed("user"));
    }
    o.end();
    Ok(())
}

/// One Converse message: consecutive turns of a role merged, blank text left out.
struct Turn<'r, 'a> {
    role: Role,
    blocks: Vec<&'r Block<'a>>,
}

fn turns<'r, 'a>(messages: &'r [Message<'a>]) -> Vec<Turn<'r, 'a>> {
    let mut out: Vec<Turn<'r, 'a>> = Vec::new();
    for m in messages {
        let blocks = m.content.iter().filter(|b| !is_blank(b));
        match out.last_mut() {
            Some(last) if last.role == m.role => {
                last.blocks.extend(blocks);
                // Tool results first in a user turn (Converse wants them before other
                // content answering the same call).
                if m.role == Role::User {
                    last.blocks
                        .sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
                }
            }
            _ => out.push(Turn {
                role: m.role,
                blocks: blocks.collect(),
            }),
        }
    }
    out.retain(|t| !t.blocks.is_empty());
    out
}

fn is_blank(b: &Block<'_>) -> bool {
    matches!(b, Block::Text(t) if t.trim().is_empty())
}

fn write_block(out: &mut Vec<u8>, b: &Block<'_>) -> Result<(), Refusal> {
    let mut w = Obj::new(out);
    match b {
        Block::Text(t) => {
            w.str("text", t);
        }
        Block::Image(image) => write_image(&mut w, image)?,
        Block::ToolUse { id, name, input } => {
            let mut u = Obj::new(w.key("toolUse"));
            write_tool_id(u.key("toolUseId"), id);
            write_name(u.key("name"), name);
            u.raw("input", input.as_bytes());
            u.end();
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut r = Obj::new(w.key("toolResult"));
            write_tool_id(r.key("toolUseId"), tool_use_id);
            let c = r.key("content");
            c.push(b'[');
            let mut first = true;
            for part in content.iter().filter(|b| !is_blank(b)) {
                sep(c, &mut first);
                let mut p = Obj::new(c);
                match part {
                    Block::Text(t) => {
                        p.str("text", t);
                    }
                    Block::Image(image) => write_image(&mut p, image)?,
                    _ => {
                        return Err(Refusal::untranslatable(
                            "messages",
                            "a tool result holds a block other than text or an image",
                        ));
                    }
                }
                p.end();
            }
            if first {
                // Converse refuses an empty result.
                let mut p = Obj::new(c);
                p.str("text", "");
                p.end();
            }
            c.push(b']');
            if *is_error {
                r.str("status", "error");
            }
            r.end();
        }
        Block::Thinking {
            thinking,
            signature,
        } => {
            let mut rc = Obj::new(w.key("reasoningContent"));
            let mut t = Obj::new(rc.key("reasoningText"));
            t.str("text", thinking);
            if !signature.is_empty() {
                t.str("signature", signature);
            }
            t.end();
            rc.end();
        }
        Block::RedactedThinking { data } => {
            let mut rc = Obj::new(w.key("reasoningContent"));
            rc.str("redactedContent", data);
            rc.end();
        }
    }
    w.end();
    Ok(())
}

fn write_image(w: &mut Obj<'_>, image: &Image<'_>) -> Result<(), Refusal> {
    match image {
        Image::Base64 { media_type, data } => {
            let format = match *media_type {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(Refusal::untranslatable(
                        "messages",
                        format!(
                            "images of type `{other}` are not accepted by Bedrock (png, jpeg, gif, webp are)"
                        ),
                    ));
                }
            };
            let mut i = Obj::new(w.key("image"));
            i.str("format", format);
            let mut s = Obj::new(i.key("source"));
            s.str("bytes", data);
            s.end();
            i.end();
            Ok(())
        }
        Image::Url(_) => Err(Refusal::untranslatable(
            "messages",
            "Bedrock takes images inline only; send the image as base64 data, not a URL",
        )),
    }
}

/// A tool-use id matching Bedrock's `[a-zA-Z0-9_.:-]+`, at most 64 characters: other
/// characters become `_` (the same id always maps to the same result, so calls and results
/// still pair up).
fn write_tool_id(out: &mut Vec<u8>, id: &str) {
    write_restricted(out, id, |c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
}

/// Whether a tool name matches Bedrock's `[a-zA-Z0-9_-]{1,64}` (tools are checked before
/// anything is written; names in the history are written as they would have been declared).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    write_restricted(out, name, |c| c.is_ascii_alphanumeric() || "_-".contains(c));
}

fn write_restricted(out: &mut Vec<u8>, s: &str, ok: impl Fn(char) -> bool) {
    let mut clean: String = s
        .chars()
        .take(64)
        .map(|c| if ok(c) { c } else { '_' })
        .collect();
    if clean.is_empty() {
        clean.push('_');
    }
    string(out, &clean);
}
