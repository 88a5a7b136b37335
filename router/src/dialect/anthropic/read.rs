//! Anthropic Messages requests, read into the intermediate form (`research/dialects.md` §B2):
//! `system` becomes the system prompt; thinking blocks in the history are kept (an OpenAI
//! writer leaves them out); `document` blocks, server tools, MCP servers and containers are
//! refused — no OpenAI-compatible endpoint can honour them; `top_k`, `service_tier` and other
//! hints are dropped and named.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::dialect::Refusal;
use crate::dialect::de::Parser;
use crate::dialect::de::{Content, Json, OneOrMany};
use crate::dialect::ir::{Block, Image, Message, Request, Role, Thinking, Tool, ToolChoice};

#[derive(Debug, Default)]
struct Raw<'a> {
    model: &'a str,
    max_tokens: Option<u64>,
    messages: Vec<RawMessage<'a>>,
    system: Option<Content<'a, RawBlock<'a>>>,
    stop_sequences: OneOrMany<'a>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    stream: bool,
    tools: Vec<RawTool<'a>>,
    tool_choice: Option<RawToolChoice<'a>>,
    thinking: Option<RawThinking>,
    user_id: Option<&'a str>,
    output_schema: Option<Json<'a>>,
    refused: Vec<(&'static str, &'static str)>,
    dropped: Vec<&'a str>,
}

/// Fields refused whatever their value: they need Anthropic's own servers.
const REFUSED: [(&str, &str); 3] = [
    (
        "mcp_servers",
        "MCP servers are run by Anthropic's API, not by an OpenAI-compatible endpoint",
    ),
    (
        "container",
        "code execution containers exist only on Anthropic's API",
    ),
    (
        "context_management",
        "context management is done by Anthropic's API",
    ),
];

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Messages request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
                let mut r = Raw::default();
                while let Some(key) = map.next_key::<&'de str>()? {
                    match key {
                        "model" => r.model = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "system" => r.system = map.next_value()?,
                        "stop_sequences" => r.stop_sequences = map.next_value()?,
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "top_k" => r.top_k = map.next_value()?,
                        "stream" => r.stream = map.next_value::<Option<bool>>()?.unwrap_or(false),
                        "tools" => r.tools = map.next_value::<Option<_>>()?.unwrap_or_default(),
                        "tool_choice" => r.tool_choice = map.next_value()?,
                        "thinking" => r.thinking = map.next_value()?,
                        "metadata" => {
                            #[derive(Deserialize)]
                            struct Metadata<'a> {
                                #[serde(default, borrow)]
                                user_id: Option<&'a str>,
                            }
                            let m: Option<Metadata<'de>> = map.next_value()?;
                            r.user_id = m.and_then(|m| m.user_id);
                        }
                        "output_config" => {
                            #[derive(Deserialize)]
                            struct Output<'a> {
                                #[serde(default, borrow)]
                                format: Option<Format<'a>>,
                                #[serde(default)]
                                effort: Option<IgnoredAny>,
                            }
                            #[derive(Deserialize)]
                            struct Format<'a> {
                                #[serde(default, borrow)]
                                schema: Option<Json<'a>>,
                            }
                            let o: Option<Output<'de>> = map.next_value()?;
                            if let Some(o) = o {
                                r.output_schema = o.format.and_then(|f| f.schema);
                                if o.effort.is_some() {
                                    r.dropped.push("output_config.effort");
                                }
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
    #[serde(borrow)]
    content: Content<'a, RawBlock<'a>>,
}

/// A content block of any type: the fields of every type, checked once the type is known.
#[derive(Debug, Deserialize)]
struct RawBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    text: Option<&'a str>,
    #[serde(default, borrow)]
    source: Option<RawSource<'a>>,
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    input: Option<Json<'a>>,
    #[serde(default, borrow)]
    tool_use_id: Option<&'a str>,
    #[serde(default, borrow)]
    content: Option<Content<'a, RawBlock<'a>>>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default, borrow)]
    thinking: Option<&'a str>,
    #[serde(default, borrow)]
    signature: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct RawSource<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    media_type: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a str>,
    #[serde(default, borrow)]
    url: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct RawTool<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    name: &'a str,
    #[serde(default, borrow)]
    description: Option<&'a str>,
    #[serde(default, borrow)]
    input_schema: Option<Json<'a>>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawThinking {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<u64>,
}

/// Reads a Messages request (`body` is rewritten in place, and padded, by the parser).
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
        max_tokens: raw.max_tokens,
        temperature: raw.temperature,
        top_p: raw.top_p,
        top_k: raw.top_k,
        stop: raw.stop_sequences.0,
        stream: raw.stream,
        user: raw.user_id,
        output_schema: raw.output_schema.as_ref().map(Json::text),
        dropped: raw.dropped.into_iter().map(Cow::Borrowed).collect(),
        ..Request::default()
    };
    match raw.system {
        None => {}
        Some(Content::Text(t)) => req.system.push(Cow::Borrowed(t)),
        Some(Content::Parts(blocks)) => {
            for (j, b) in blocks.into_iter().enumerate() {
                match (b.kind, b.text) {
                    ("text", Some(t)) => req.system.push(Cow::Borrowed(t)),
                    (kind, _) => {
                        return Err(Refusal::invalid(
                            "system",
                            format!("system[{j}] has type `{kind}`; system blocks are text"),
                        ));
                    }
                }
            }
        }
    }
    for (i, t) in raw.tools.into_iter().enumerate() {
        if let Some(kind) = t.kind.filter(|k| *k != "custom") {
            return Err(Refusal::untranslatable(
                "tools",
                format!(
                    "tools[{i}] is the server tool `{kind}`, which only Anthropic's API runs; it cannot be translated"
                ),
            ));
        }
        let schema = match &t.input_schema {
            Some(s) if s.is_object() => s.text(),
            _ => {
                return Err(Refusal::invalid(
                    "tools",
                    format!("tools[{i}].input_schema must be a JSON Schema object"),
                ));
            }
        };
        req.tools.push(Tool {
            name: t.name,
            description: t.description,
            schema,
            strict: t.strict,
        });
    }
    if let Some(c) = raw.tool_choice {
        req.tool_choice = Some(match (c.kind, c.name) {
            ("auto", _) => ToolChoice::Auto,
            ("any", _) => ToolChoice::Any,
            ("none", _) => ToolChoice::None,
            ("tool", Some(name)) => ToolChoice::Tool(name),
            _ => {
                return Err(Refusal::invalid(
                    "tool_choice",
                    "`tool_choice.type` must be `auto`, `any`, `none` or `tool` (with a `name`)",
                ));
            }
        });
        if c.disable_parallel_tool_use == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.thinking = match raw.thinking {
        None => None,
        Some(t) => Some(match (t.kind.as_str(), t.budget_tokens) {
            ("enabled", Some(budget_tokens)) => Thinking::Enabled { budget_tokens },
            ("adaptive", _) => Thinking::Adaptive,
            ("disabled", _) => Thinking::Disabled,
            _ => {
                return Err(Refusal::invalid(
                    "thinking",
                    "`thinking` must be {\"type\": \"enabled\", \"budget_tokens\": N}, adaptive or disabled",
                ));
            }
        }),
    };
    for (i, m) in raw.messages.into_iter().enumerate() {
        let role = match m.role {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(Refusal::invalid(
                    "messages",
                    format!("messages[{i}].role `{other}` is not `user` or `assistant`"),
                ));
            }
        };
        let content = match m.content {
            Content::Text(t) => vec![Block::Text(Cow::Borrowed(t))],
            Content::Parts(blocks) => blocks
                .into_iter()
                .enumerate()
                .map(|(j, b)| block(&format!("messages[{i}].content[{j}]"), b))
                .collect::<Result<_, _>>()?,
        };
        req.messages.push(Message { role, content });
    }
    Ok(req)
}

fn block<'a>(at: &str, b: RawBlock<'a>) -> Result<Block<'a>, Refusal> {
    let missing = |field: &str| {
        Refusal::invalid(
            "messages",
            format!("{at}: a `{}` block needs `{field}`", b.kind),
        )
    };
    Ok(match b.kind {
        "text" => Block::Text(Cow::Borrowed(b.text.ok_or_else(|| missing("text"))?)),
        "image" => {
            let s = b.source.as_ref().ok_or_else(|| missing("source"))?;
            Block::Image(match (s.kind, s.media_type, s.data, s.url) {
                ("base64", Some(media_type), Some(data), _) => Image::Base64 { media_type, data },
                ("url", _, _, Some(url)) => Image::Url(url),
                (kind, ..) => {
                    return Err(Refusal::untranslatable(
                        "messages",
                        format!(
                            "{at}: an image source of type `{kind}` cannot be translated (base64 and url can)"
                        ),
                    ));
                }
            })
        }
        "tool_use" => Block::ToolUse {
            id: Cow::Borrowed(b.id.ok_or_else(|| missing("id"))?),
            name: b.name.ok_or_else(|| missing("name"))?,
            input: match &b.input {
                Some(input) if input.is_object() => input.text(),
                _ => return Err(missing("input (an object)")),
            },
        },
        "tool_result" => Block::ToolResult {
            tool_use_id: Cow::Borrowed(b.tool_use_id.ok_or_else(|| missing("tool_use_id"))?),
            content: match b.content {
                None => Vec::new(),
                Some(Content::Text(t)) => vec![Block::Text(Cow::Borrowed(t))],
                Some(Content::Parts(parts)) => parts
                    .into_iter()
                    .enumerate()
                    .map(|(k, p)| block(&format!("{at}.content[{k}]"), p))
                    .collect::<Result<_, _>>()?,
            },
            is_error: b.is_error.unwrap_or(false),
        },
        "thinking" => Block::Thinking {
            thinking: b.thinking.ok_or_else(|| missing("thinking"))?,
            signature: b.signature.unwrap_or_default(),
        },
        "redacted_thinking" => Block::RedactedThinking {
            data: b.data.ok_or_else(|| missing("data"))?,
        },
        other => {
            return Err(Refusal::untranslatable(
                "messages",
                format!(
                    "{at}: `{other}` blocks cannot be translated for this endpoint (text, image, tool_use, tool_result and thinking can)"
                ),
            ));
        }
    })
}
