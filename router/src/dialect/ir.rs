//! The intermediate form every dialect translates through: one request shape and one stream of
//! events, so that a new wire format needs one decoder and one encoder, not a translator per
//! pair.
//!
//! Both are shaped after Anthropic Messages, the most expressive of the formats we speak: a
//! system prompt apart from the turns, ordered content blocks (text, image, tool use, tool
//! result, thinking), and a stream of block start / delta / stop events between a message
//! start and a message stop. An OpenAI answer, which has no blocks, is given them by its
//! decoder (a block opens when its kind of content first appears and closes when another kind
//! starts); an OpenAI encoder takes them away again.
//!
//! Strings borrow from the parsed body wherever they can (`simd-json` unescapes in place);
//! `Cow` marks the few that are built (a tool input serialised from an object, an id minted
//! for a tool call that came without one).

use std::borrow::Cow;

/// Who speaks a turn. System prompts are not turns ([`Request::system`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// A chat request in the intermediate form.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// The model the client asked for (the encoder is given the one to send).
    pub model: &'a str,
    /// System prompt text, in order (OpenAI system and developer messages, Anthropic `system`).
    pub system: Vec<Cow<'a, str>>,
    pub messages: Vec<Message<'a>>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<&'a str>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: the client wants the usage chunk.
    pub include_usage: bool,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    /// `false`: at most one tool call per turn (OpenAI `parallel_tool_calls: false`,
    /// Anthropic `disable_parallel_tool_use: true`).
    pub parallel_tool_calls: Option<bool>,
    /// An opaque end-user id (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<&'a str>,
    pub thinking: Option<Thinking>,
    /// A JSON schema the answer must follow (OpenAI `response_format` `json_schema`,
    /// Anthropic `output_config.format`).
    pub output_schema: Option<Cow<'a, str>>,
    /// Fields the client sent that the target dialect has no use for and that only hint
    /// (sampling knobs, bookkeeping): dropped, and named in `x-switchyard-dropped`.
    pub dropped: Vec<Cow<'a, str>>,
}

/// One turn.
#[derive(Debug, PartialEq)]
pub struct Message<'a> {
    pub role: Role,
    pub content: Vec<Block<'a>>,
}

/// One piece of a turn's content.
#[derive(Debug, PartialEq)]
pub enum Block<'a> {
    Text(Cow<'a, str>),
    Image(Image<'a>),
    /// A call the assistant made; `input` is its arguments as JSON object text.
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: Cow<'a, str>,
    },
    /// What a tool returned (text and images).
    ToolResult {
        tool_use_id: Cow<'a, str>,
        content: Vec<Block<'a>>,
        is_error: bool,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

/// An image, inline or by URL.
#[derive(Debug, PartialEq)]
pub enum Image<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url(&'a str),
}

/// A tool the model may call; `schema` is its input's JSON Schema as JSON object text.
#[derive(Debug, PartialEq)]
pub struct Tool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub schema: Cow<'a, str>,
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolChoice<'a> {
    Auto,
    /// Some tool (OpenAI `required`, Anthropic `any`).
    Any,
    None,
    Tool(&'a str),
}

/// Extended thinking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thinking {
    Enabled { budget_tokens: u64 },
    Adaptive,
    Disabled,
}

/// What kind of block a stream opens.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockKind<'a> {
    Text,
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
    },
    Thinking,
    RedactedThinking {
        data: &'a str,
    },
    /// A block no other dialect has (server tool results, …): its events are skipped by
    /// encoders that cannot say it.
    Other,
}

/// An increment of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta<'a> {
    Text(&'a str),
    /// A piece of a tool call's arguments (JSON text, cut anywhere).
    Json(&'a str),
    Thinking(&'a str),
    Signature(&'a str),
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop<'a> {
    EndTurn,
    MaxTokens,
    StopSequence(Option<&'a str>),
    ToolUse,
    Refusal,
    PauseTurn,
    ContextWindow,
    /// A value this router does not know, as the upstream said it.
    Other(&'a str),
}

/// Token counts as a stream reports them, Anthropic's way: `input` excludes the cached
/// tokens read (`cache_read`) and written (`cache_write`). A count the event does not carry is
/// `None`; counts are cumulative, so a later one replaces an earlier one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
}

impl Counts {
    /// These counts with `later`'s where it has them.
    #[must_use]
    pub fn updated(self, later: Self) -> Self {
        Self {
            input: later.input.or(self.input),
            output: later.output.or(self.output),
            cache_read: later.cache_read.or(self.cache_read),
            cache_write: later.cache_write.or(self.cache_write),
        }
    }

    /// All input tokens, cached ones included (OpenAI's `prompt_tokens`).
    #[must_use]
    pub fn prompt_total(&self) -> u64 {
        self.input
            .unwrap_or(0)
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_write.unwrap_or(0))
    }

    /// Whether any count is known.
    #[must_use]
    pub fn any(&self) -> bool {
        self.input.is_some()
            || self.output.is_some()
            || self.cache_read.is_some()
            || self.cache_write.is_some()
    }
}

/// One event of an answer (a streamed one, or a whole one told as events).
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    Start {
        id: &'a str,
        model: &'a str,
        usage: Counts,
    },
    BlockStart {
        index: usize,
        block: BlockKind<'a>,
    },
    Delta {
        index: usize,
        delta: Delta<'a>,
    },
    BlockStop {
        index: usize,
    },
    /// The end of generation: why, and the counts so far.
    Finish {
        stop: Option<Stop<'a>>,
        usage: Counts,
    },
    /// The answer is complete (Anthropic `message_stop`, OpenAI `[DONE]`).
    End,
    /// The upstream reported an error inside the answer; `kind` is its error type.
    Error {
        kind: &'a str,
        message: &'a str,
    },
}
