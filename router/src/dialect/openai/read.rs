//! OpenAI chat completion requests, read into the intermediate form (what cannot be said in
//! it refused or dropped).
//!
//! Reading follows the field table of `research/dialects.md` §B1: system and developer
//! messages become the system prompt; `tool` messages become tool results, merged into one
//! user turn with the user text that follows them; `n > 1`, log probabilities, audio and
//! predicted outputs are refused (the answer could not be what was asked); sampling hints
//! and bookkeeping (`seed`, penalties, `logit_bias`, `store`, …) are dropped and named.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use simd_json::prelude::*;

use crate::dialect::Refusal;
use crate::dialect::de::Parser;
use crate::dialect::de::{Content, Json, OneOrMany};
use crate::dialect::ir::{Block, Image, Message, Request, Role, Thinking, Tool, ToolChoice};

/// The top level of a chat request, every field the translation looks at.
#[derive(Debug, Default)]
struct Raw<'a> {
    model: &'a str,
    messages: Vec<RawMessage<'a>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: OneOrMany<'a>,
    stream: bool,
    include_usage: bool,
    tools: Vec<RawTool<'a>>,
    tool_choice: Option<Json<'a>>,
    parallel_tool_calls: Option<bool>,
    user: Option<&'a str>,
    reasoning_effort: Option<&'a str>,
    response_format: Option<Json<'a>>,
    /// Fields refused whatever their value, with why.
    refused: Vec<(&'static str, &'static str)>,
    dropped: Vec<&'a str>,
}

/// Fields that change what the answer is, which Anthropic cannot honour.
const REFUSED: [(&str, &str); 6] = [
    (
        "audio",
        "audio output is not available from Anthropic models",
    ),
    (
        "prediction",
        "predicted outputs are not available from Anthropic models",
    ),
    (
        "functions",
        "legacy function calling is not translated; declare `tools` instead",
    ),
    (
        "function_call",
        "legacy function calling is not translated; use `tool_choice` instead",
    ),
    (
        "web_search_options",
        "OpenAI's built-in web search is not available through Anthropic",
    ),
    (
        "top_logprobs",
        "log probabilities are not available from Anthropic models",
    ),
];

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a chat completion request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
                let mut r = Raw::default();
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "model" => r.model = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "max_completion_tokens" => r.max_completion_tokens = map.next_value()?,
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "stop" => r.stop = map.next_value()?,
                        "stream" => r.stream = map.next_value::<Option<bool>>()?.unwrap_or(false),
                        "stream_options" => {
                            #[derive(Deserialize)]
                            struct Options {
                                #[serde(default)]
                                include_usage: Option<bool>,
                            }
                            let o: Option<Options> = map.next_value()?;
                            r.include_usage = o.and_then(|o| o.include_usage).unwrap_or(false);
                        }
                        "tools" => r.tools = map.next_value::<Option<_>>()?.unwrap_or_default(),
                        "tool_choice" => r.tool_choice = map.next_value()?,
                        "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                        "user" => r.user = map.next_value()?,
                        "reasoning_effort" => r.reasoning_effort = map.next_value()?,
                        "response_format" => r.response_format = map.next_value()?,
                        "n" => {
                            if map.next_value::<Option<u64>>()?.is_some_and(|n| n > 1) {
                                r.refused.push((
                                    "n",
                                    "Anthropic models give one answer per request (`n` must be 1)",
                                ));
                            }
                        }
                        "logprobs" => {
                            if map.next_value::<Option<bool>>()? == Some(true) {
                                r.refused.push((
                                    "logprobs",
                                    "log probabilities are not available from Anthropic models",
                                ));
                            }
                        }
                        "modalities" => {
                            let m: Option<Vec<&'de str>> = map.next_value()?;
                            if m.is_some_and(|m| m.iter().any(|x| *x != "text")) {
                                r.refused
                                    .push(("modalities", "Anthropic models answer in text only"));
                            }
                        }
                        other => {
                            let value: Option<IgnoredAny> = map.next_value()?;
                            if let Some(&(name, why)) = REFUSED.iter().find(|(n, _)| *n == other) {
                                if value.is_some() {
                                    r.refused.push((name, why));
                                }
                            } else if value.is_some() {
                                r.dropped.push(other);
                            }
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    role: &'a str,
    #[serde(default, borrow)]
    content: Option<Content<'a, Part<'a>>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<RawToolCall<'a>>>,
    #[serde(default, borrow)]
    tool_call_id: Option<&'a str>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    image_url: Option<ImageUrl<'a>>,
}

#[derive(Debug, Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: &'a str,
}

#[derive(Debug, Deserialize)]
struct RawToolCall<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    function: RawFunction<'a>,
}

#[derive(Debug, Deserialize)]
struct RawFunction<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(default, borrow)]
    arguments: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct RawTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    function: Option<RawToolFunction<'a>>,
}

#[derive(Debug, Deserialize)]
struct RawToolFunction<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(default, borrow)]
    description: Option<&'a str>,
    #[serde(default, borrow)]
    parameters: Option<Json<'a>>,
    #[serde(default)]
    strict: Option<bool>,
}

/// The input schema of a tool declared without `parameters`.
const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

/// Thinking budgets for `reasoning_effort` (Anthropic's minimum budget is 1024 tokens).
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "low" => Some(1024),
        "medium" => Some(2048),
        "high" | "xhigh" => Some(4096),
        _ => None,
    }
}

/// Reads a chat completion request (`body` is rewritten in place, and padded, by the parser).
pub fn read<'a>(body: &'a mut Vec<u8>, parser: &mut Parser) -> Result<Request<'a>, Refusal> {
    let raw: Raw<'a> = parser.request(body)?;
    if let Some(&(param, why)) = raw.refused.first() {
        return Err(Refusal::untranslatable(
            param,
            format!("`{param}` cannot be translated: {why}"),
        ));
    }
    let mut req = Request {
        model: raw.model,
        max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
        temperature: raw.temperature,
        top_p: raw.top_p,
        stop: raw.stop.0,
        stream: raw.stream,
        include_usage: raw.stream && raw.include_usage,
        parallel_tool_calls: raw.parallel_tool_calls,
        user: raw.user,
        dropped: raw.dropped.into_iter().map(Cow::Borrowed).collect(),
        ..Request::default()
    };
    if let Some(effort) = raw.reasoning_effort {
        match thinking_budget(effort) {
            Some(budget_tokens) => req.thinking = Some(Thinking::Enabled { budget_tokens }),
            None => req.dropped.push(Cow::Borrowed("reasoning_effort")),
        }
    }
    if let Some(format) = &raw.response_format {
        req.output_schema = output_schema(format)?;
    }
    for (i, t) in raw.tools.into_iter().enumerate() {
        let Some(f) = t.function.filter(|_| t.kind == "function") else {
            return Err(Refusal::untranslatable(
                "tools",
                format!(
                    "tools[{i}] has type `{}`; only `function` tools can be translated",
                    t.kind
                ),
            ));
        };
        let schema = match &f.parameters {
            Some(p) if p.is_object() => p.text(),
            Some(_) => {
                return Err(Refusal::invalid(
                    "tools",
                    format!("tools[{i}].function.parameters must be a JSON Schema object"),
                ));
            }
            None => Cow::Borrowed(EMPTY_SCHEMA),
        };
        req.tools.push(Tool {
            name: f.name,
            description: f.description,
            schema,
            strict: f.strict,
        });
    }
    if let Some(choice) = &raw.tool_choice {
        req.tool_choice = Some(tool_choice(choice)?);
    }
    for (i, m) in raw.messages.into_iter().enumerate() {
        message(&mut req, i, m)?;
    }
    let uses_tools = req
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }));
    if uses_tools && req.tools.is_empty() {
        return Err(Refusal::untranslatable(
            "tools",
            "the conversation holds tool calls but the request declares no `tools`; Anthropic requires the tools to be declared",
        ));
    }
    Ok(req)
}

fn output_schema<'a>(format: &Json<'a>) -> Result<Option<Cow<'a, str>>, Refusal> {
    match format.0.get_str("type") {
        Some("text") | None => Ok(None),
        Some("json_schema") => match format.0.get("json_schema").and_then(|j| j.get("schema")) {
            Some(schema) if schema.is_object() => Ok(Some(Cow::Owned(schema.encode()))),
            _ => Err(Refusal::invalid(
                "response_format",
                "`response_format.json_schema.schema` must be a JSON Schema object",
            )),
        },
        Some(other) => Err(Refusal::untranslatable(
            "response_format",
            format!(
                "`response_format` of type `{other}` cannot be translated: Anthropic needs a schema (use `json_schema`)"
            ),
        )),
    }
}

fn tool_choice<'a>(choice: &Json<'a>) -> Result<ToolChoice<'a>, Refusal> {
    let bad = || {
        Refusal::invalid(
            "tool_choice",
            "`tool_choice` must be `auto`, `none`, `required` or {\"type\": \"function\", \"function\": {\"name\": …}}",
        )
    };
    if let Some(s) = choice.0.as_str() {
        return match s {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Any),
            _ => Err(bad()),
        };
    }
    let name = choice.0.get("function").and_then(|f| f.get("name"));
    match name {
        Some(simd_json::BorrowedValue::String(Cow::Borrowed(name))) => Ok(ToolChoice::Tool(name)),
        _ => Err(bad()),
    }
}

/// Adds message `i` to the request.
fn message<'a>(req: &mut Request<'a>, i: usize, m: RawMessage<'a>) -> Result<(), Refusal> {
    if m.function_call.is_some() {
        return Err(Refusal::untranslatable(
            "messages",
            format!(
                "messages[{i}] uses legacy `function_call`; it is not translated (use `tool_calls`)"
            ),
        ));
    }
    match m.role {
        "system" | "developer" => {
            for text in texts(i, m.content)? {
                if !text.trim().is_empty() {
                    req.system.push(Cow::Borrowed(text));
                }
            }
        }
        "user" => {
            let blocks = user_blocks(i, m.content)?;
            push_user(req, blocks, false);
        }
        "assistant" => {
            let mut blocks = Vec::new();
            for text in texts(i, m.content)? {
                if !text.trim().is_empty() {
                    blocks.push(Block::Text(Cow::Borrowed(text)));
                }
            }
            for call in m.tool_calls.unwrap_or_default() {
                let args = call.function.arguments.unwrap_or_default();
                let input = if args.trim().is_empty() {
                    Cow::Borrowed("{}")
                } else if crate::dialect::json::is_object(args) {
                    Cow::Borrowed(args)
                } else {
                    return Err(Refusal::invalid(
                        "messages",
                        format!(
                            "messages[{i}]: the arguments of tool call `{}` are not a JSON object",
                            call.id
                        ),
                    ));
                };
                blocks.push(Block::ToolUse {
                    id: Cow::Borrowed(call.id),
                    name: call.function.name,
                    input,
                });
            }
            if !blocks.is_empty() {
                req.messages.push(Message {
                    role: Role::Assistant,
                    content: blocks,
                });
            }
        }
        "tool" => {
            let Some(id) = m.tool_call_id else {
                return Err(Refusal::invalid(
                    "messages",
                    format!("messages[{i}] has role `tool` but no `tool_call_id`"),
                ));
            };
            let content = texts(i, m.content)?
                .into_iter()
                .map(|t| Block::Text(Cow::Borrowed(t)))
                .collect();
            let result = Block::ToolResult {
                tool_use_id: Cow::Borrowed(id),
                content,
                is_error: false,
            };
            push_user(req, vec![result], true);
        }
        "function" => {
            return Err(Refusal::untranslatable(
                "messages",
                format!(
                    "messages[{i}] has the legacy role `function`; it is not translated (use `tool`)"
                ),
            ));
        }
        other => {
            return Err(Refusal::invalid(
                "messages",
                format!(
                    "messages[{i}].role `{other}` is not one of system, developer, user, assistant, tool"
                ),
            ));
        }
    }
    Ok(())
}

/// Appends user content: tool results (`results`) join the user turn of the results just
/// before them, and so does the user text that follows them — one turn holds the answer
/// to every call of the assistant turn before it, and Anthropic wants it so.
fn push_user<'a>(req: &mut Request<'a>, blocks: Vec<Block<'a>>, results: bool) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = req.messages.last_mut()
        && last.role == Role::User
        && matches!(last.content.first(), Some(Block::ToolResult { .. }))
        && (results || !matches!(last.content.last(), Some(Block::Text(_) | Block::Image(_))))
    {
        last.content.extend(blocks);
        return;
    }
    req.messages.push(Message {
        role: Role::User,
        content: blocks,
    });
}

/// The text of a system, assistant or tool message (a string, or text parts).
fn texts<'a>(i: usize, content: Option<Content<'a, Part<'a>>>) -> Result<Vec<&'a str>, Refusal> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![t]),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .enumerate()
            .filter(|(_, p)| p.kind != "refusal")
            .map(|(j, p)| match (p.kind, p.text) {
                ("text", Some(t)) => Ok(t),
                (kind, _) => Err(Refusal::invalid(
                    "messages",
                    format!("messages[{i}].content[{j}] has type `{kind}`; only text parts are allowed in this message"),
                )),
            })
            .collect(),
    }
}

fn user_blocks<'a>(
    i: usize,
    content: Option<Content<'a, Part<'a>>>,
) -> Result<Vec<Block<'a>>, Refusal> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Content::Text(t)) if t.trim().is_empty() => return Ok(Vec::new()),
        Some(Content::Text(t)) => return Ok(vec![Block::Text(Cow::Borrowed(t))]),
        Some(Content::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        match (p.kind, p.text, p.image_url) {
            ("text", Some(t), _) => {
                if !t.trim().is_empty() {
                    blocks.push(Block::Text(Cow::Borrowed(t)));
                }
            }
            ("image_url", _, Some(image)) => blocks.push(Block::Image(image_of(i, j, image.url)?)),
            ("input_audio", ..) => {
                return Err(Refusal::untranslatable(
                    "messages",
                    format!(
                        "messages[{i}].content[{j}]: audio input is not available from Anthropic models"
                    ),
                ));
            }
            (kind, ..) => {
                return Err(Refusal::untranslatable(
                    "messages",
                    format!(
                        "messages[{i}].content[{j}] has type `{kind}`, which is not translated (text and image_url are)"
                    ),
                ));
            }
        }
    }
    Ok(blocks)
}

/// Media types Anthropic accepts for images.
pub const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// An `image_url` as an image: a `data:` URL inline, an http(s) URL by reference.
fn image_of(i: usize, j: usize, url: &str) -> Result<Image<'_>, Refusal> {
    if let Some(rest) = url.strip_prefix("data:") {
        let parsed = rest
            .split_once(',')
            .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)));
        let Some((media_type, data)) = parsed else {
            return Err(Refusal::invalid(
                "messages",
                format!(
                    "messages[{i}].content[{j}]: a data URL image must be `data:<media type>;base64,<data>`"
                ),
            ));
        };
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(Refusal::untranslatable(
                "messages",
                format!(
                    "messages[{i}].content[{j}]: image type `{media_type}` is not accepted by Anthropic (jpeg, png, gif, webp are)"
                ),
            ));
        }
        return Ok(Image::Base64 { media_type, data });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url));
    }
    Err(Refusal::invalid(
        "messages",
        format!("messages[{i}].content[{j}]: `image_url.url` must be an http(s) or data URL"),
    ))
}
