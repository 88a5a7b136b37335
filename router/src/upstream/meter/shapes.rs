//! What the meter reads of an answer, in each dialect: `usage` objects, the generated text
//! of OpenAI chunks and completions, Anthropic stream events — each read with a real JSON
//! parse that skips what it does not need, and counts text without copying it.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use super::CHARS_PER_TOKEN;
use crate::dialect::Wire;
use crate::dialect::ir::Counts;

/// A `usage` object of either dialect (OpenAI's `prompt_tokens` include the cached tokens;
/// Anthropic's `input_tokens` do not); other fields (`total_tokens`, …) are ignored.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(super) struct UsageJson {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

impl UsageJson {
    /// The counts this object reports in `wire`'s terms; `None` when it reports none.
    pub(super) fn counts(&self, wire: Wire) -> Option<Counts> {
        match wire {
            // (A Bedrock answer is always translated, never metered here.)
            Wire::OpenAi
            | Wire::Bedrock
            | Wire::BedrockInvoke
            | Wire::Gemini
            | Wire::VertexAnthropic => {
                let prompt = self.prompt_tokens?;
                let details = self.prompt_tokens_details.unwrap_or_default();
                let read = details.cached_tokens.unwrap_or(0);
                let write = details.cache_write_tokens.unwrap_or(0);
                Some(Counts {
                    input: Some(prompt.saturating_sub(read).saturating_sub(write)),
                    output: Some(self.completion_tokens.unwrap_or(0)),
                    cache_read: Some(read),
                    cache_write: Some(write),
                })
            }
            Wire::Anthropic => {
                let c = Counts {
                    input: self.input_tokens,
                    output: self.output_tokens,
                    cache_read: self.cache_read_input_tokens,
                    cache_write: self.cache_creation_input_tokens,
                };
                c.any().then_some(c)
            }
        }
    }
}

/// An Anthropic stream event: what metering reads of it.
#[derive(Debug, Deserialize)]
pub(super) struct AnthropicEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(default)]
    pub(super) message: Option<AnthropicMessage>,
    #[serde(default)]
    pub(super) usage: Option<UsageJson>,
    #[serde(default, borrow)]
    pub(super) delta: Option<AnthropicDelta<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AnthropicMessage {
    #[serde(default)]
    pub(super) usage: Option<UsageJson>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AnthropicDelta<'a> {
    #[serde(default)]
    text: Text,
    #[serde(default)]
    partial_json: Text,
    #[serde(default)]
    thinking: Text,
    #[serde(default, borrow)]
    pub(super) stop_reason: Option<Cow<'a, str>>,
}

impl AnthropicDelta<'_> {
    pub(super) fn generated_chars(&self) -> u64 {
        self.text
            .0
            .saturating_add(self.partial_json.0)
            .saturating_add(self.thinking.0)
    }
}

/// An Anthropic message: its generated text (for an estimate without usage).
#[derive(Debug, Deserialize)]
pub(super) struct AnthropicAnswer {
    #[serde(default)]
    content: Vec<AnthropicBlock>,
}

#[derive(Debug, Deserialize)]
struct AnthropicBlock {
    #[serde(default)]
    text: Text,
    #[serde(default)]
    thinking: Text,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

impl AnthropicAnswer {
    pub(super) fn generated_chars(&self) -> u64 {
        self.content.iter().fold(0u64, |n, b| {
            let input = b
                .input
                .as_ref()
                .map_or(0, |i| i.to_string().chars().count() as u64);
            n.saturating_add(b.text.0)
                .saturating_add(b.thinking.0)
                .saturating_add(input)
        })
    }
}

/// A chat completion or one chunk of a streamed one: what metering reads of it.
#[derive(Debug, Deserialize)]
pub(super) struct Answer<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    pub(super) usage: Option<UsageJson>,
}

#[derive(Debug, Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
    #[serde(default, borrow)]
    delta: Option<Message<'a>>,
    /// Legacy completions.
    #[serde(default)]
    text: Text,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(default)]
    content: Text,
    #[serde(default)]
    reasoning_content: Text,
    #[serde(default)]
    reasoning: Text,
    #[serde(default)]
    refusal: Text,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    function_call: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
}

#[derive(Debug, Deserialize)]
struct Function<'a> {
    #[serde(default, borrow)]
    #[expect(dead_code, reason = "deserialized only to borrow the whole object")]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    arguments: Text,
}

/// The length in characters of a string field; anything else (null, an array of content
/// parts) counts as zero rather than failing the parse.
#[derive(Debug, Default)]
struct Text(u64);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or anything else")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.chars().count() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
                Ok(Text(0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(0))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(0))
            }
        }
        d.deserialize_any(V)
    }
}

impl Answer<'_> {
    /// The first choice's `finish_reason`, when it has one.
    pub(super) fn finish_reason(&self) -> Option<&str> {
        self.choices
            .iter()
            .flatten()
            .find_map(|c| c.finish_reason.as_deref())
    }

    /// Characters of generated text in this answer or chunk.
    pub(super) fn generated_chars(&self) -> u64 {
        let message = |m: &Message<'_>| {
            let calls = m
                .tool_calls
                .iter()
                .flatten()
                .filter_map(|c| c.function.as_ref())
                .chain(m.function_call.as_ref())
                .fold(0u64, |n, f| n.saturating_add(f.arguments.0));
            [
                m.content.0,
                m.reasoning_content.0,
                m.reasoning.0,
                m.refusal.0,
                calls,
            ]
            .iter()
            .fold(0u64, |n, &c| n.saturating_add(c))
        };
        self.choices
            .iter()
            .flatten()
            .map(|c| {
                let m = c.message.as_ref().map_or(0, message);
                let d = c.delta.as_ref().map_or(0, message);
                m.saturating_add(d).saturating_add(c.text.0)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// The extra usage chunk of a stream: no choices, a usage object.
    pub(super) fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.as_ref().is_none_or(Vec::is_empty)
    }
}

/// Prompt tokens of a request estimated from its messages' text (for when the upstream
/// reports no usage); from its size when it cannot be read.
#[must_use]
pub fn estimate_prompt_tokens(body: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Prompt {
        #[serde(default)]
        messages: Vec<PromptMessage>,
        /// Anthropic's system prompt.
        #[serde(default)]
        system: Parts,
        /// What an embeddings request embeds.
        #[serde(default)]
        input: Parts,
    }
    #[derive(Deserialize)]
    struct PromptMessage {
        #[serde(default)]
        content: Parts,
    }
    match serde_json::from_slice::<Prompt>(body) {
        Ok(p) => p
            .messages
            .iter()
            .fold(p.system.0.saturating_add(p.input.0), |n, m| {
                n.saturating_add(m.content.0)
            })
            .div_ceil(CHARS_PER_TOKEN),
        Err(_) => (body.len() as u64).div_ceil(CHARS_PER_TOKEN),
    }
}

/// The characters of a message's `content` (a string, or the `text` of its parts, tool
/// results' nested `content` included), of an Anthropic `system`, or of an embeddings `input`
/// (a string, strings, or token ids — each id counted as one token's worth of characters).
#[derive(Debug, Default)]
struct Parts(u64);

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Parts, E> {
                Ok(Parts(s.chars().count() as u64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Parts, E> {
                Ok(Parts(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Parts, E> {
                Ok(Parts(CHARS_PER_TOKEN))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Parts, E> {
                Ok(Parts(CHARS_PER_TOKEN))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Parts, E> {
                Ok(Parts(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Parts, E> {
                Ok(Parts(0))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
                let mut n = 0u64;
                while let Some(p) = seq.next_element::<Parts>()? {
                    n = n.saturating_add(p.0);
                }
                Ok(Parts(n))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
                let mut n = 0u64;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let chars = match key.as_ref() {
                        "text" => map.next_value::<Text>()?.0,
                        "content" => map.next_value::<Parts>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            0
                        }
                    };
                    n = n.saturating_add(chars);
                }
                Ok(Parts(n))
            }
        }
        d.deserialize_any(V)
    }
}
