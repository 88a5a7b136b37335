//! Provider dialects: the wire formats the router speaks and the translation between them.
//!
//! A request has two dialects: the client's, fixed by the path ([`Api`]), and the upstream's,
//! fixed by the endpoint's type ([`Wire`]). When they are equal nothing here runs: the body goes
//! byte for byte and the answer is relayed as it arrives. When they differ, the request is
//! parsed once (`simd-json`, strings borrowed from the body) into the intermediate form
//! ([`ir`]) and written in the upstream's dialect; the answer is decoded event by event into
//! [`ir::Event`]s and encoded in the client's dialect as each event completes ([`translate`]).
//! Nothing here does I/O: every function takes bytes and returns bytes, so each rule is
//! tested on fixtures split at every byte.
//!
//! - [`openai`], [`anthropic`]: per dialect, the request reader and writer, the answer decoder
//!   (stream and whole) and the answer encoder;
//! - [`sse`]: Server-Sent Events framing, shared by both;
//! - [`eventstream`]: the AWS binary event-stream framing Bedrock streams in;
//! - [`bedrock`]: the Converse request writer and answer decoder;
//! - [`gemini`]: the Gemini (Vertex AI) request writer and answer decoder;
//! - [`translate`]: a decoder and an encoder joined, fed the upstream's body bytes;
//! - [`errors`]: error bodies in either dialect, and from one into the other;
//! - [`json`]: the small JSON writer the encoders share.

pub mod anthropic;
pub mod bedrock;
pub mod de;
pub mod errors;
pub mod eventstream;
pub mod gemini;
pub mod ir;
pub mod json;
pub mod openai;
pub mod sse;
pub mod translate;

/// A wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions and embeddings (OpenAI, Azure OpenAI, vLLM, Ollama, any
    /// OpenAI-compatible server).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// AWS Bedrock Converse (an upstream's only: no client speaks it, and client-side
    /// matches give every upstream-only wire the OpenAI arm).
    Bedrock,
    /// AWS Bedrock InvokeModel with Anthropic Messages bodies (`bedrock_api: invoke`):
    /// Anthropic's dialect in AWS's envelope (streams in event-stream `chunk` frames).
    BedrockInvoke,
    /// Google Gemini on Vertex AI (an upstream's only).
    Gemini,
    /// Claude on Vertex AI: Anthropic Messages bodies with `anthropic_version`
    /// `vertex-2023-10-16` and the model in the path; answers as Anthropic's.
    VertexAnthropic,
}

impl Wire {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "OpenAI",
            Self::Anthropic => "Anthropic",
            Self::Bedrock => "Bedrock",
            Self::BedrockInvoke => "Bedrock InvokeModel",
            Self::Gemini => "Gemini",
            Self::VertexAnthropic => "Vertex AI Anthropic",
        }
    }
}

/// What a client asks for, fixed by the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`, `POST /v1/route`.
    Chat,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Api {
    /// The client's dialect.
    #[must_use]
    pub fn wire(self) -> Wire {
        match self {
            Self::Chat | Self::Embeddings => Wire::OpenAi,
            Self::Messages | Self::CountTokens => Wire::Anthropic,
        }
    }

    /// The audit trail's `api` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Messages | Self::CountTokens => "messages",
            Self::Embeddings => "embeddings",
        }
    }

    /// Whether a request of this kind generates text (and is routed by `messages`).
    #[must_use]
    pub fn generates(self) -> bool {
        matches!(self, Self::Chat | Self::Messages)
    }
}

/// The dialect a path speaks (its errors are in that dialect's shape): Anthropic's for the
/// Messages API's paths (`/v1/messages` and below it), OpenAI's for every other.
#[must_use]
pub fn of_path(path: &[u8]) -> Wire {
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/v1/messages" || path.starts_with(b"/v1/messages/") {
        Wire::Anthropic
    } else {
        Wire::OpenAi
    }
}

/// The dialect a request speaks, from its head: its path's, except that `GET /v1/models`
/// with an `anthropic-version` header (the Anthropic SDKs' `models.list`) is Anthropic's —
/// its key may come as `x-api-key`, and its answer and errors are Anthropic-shaped.
#[must_use]
pub fn of_request(path: &[u8], buf: &[u8], headers: &[crate::http::HeaderIdx]) -> Wire {
    let bare = path.split(|&b| b == b'?').next().unwrap_or_default();
    if bare == b"/v1/models"
        && headers
            .iter()
            .any(|h| h.name(buf).eq_ignore_ascii_case(b"anthropic-version"))
    {
        return Wire::Anthropic;
    }
    of_path(path)
}

/// `given`, or `fallback` when the upstream left it empty (an answer's id or model).
#[must_use]
pub fn given_or<'a>(given: &'a str, fallback: &'a str) -> &'a str {
    if given.is_empty() { fallback } else { given }
}

/// Why a request cannot go to an upstream in its dialect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Names the field and says why.
    pub message: String,
    /// The top-level request field it is about.
    pub param: &'static str,
    /// The body is wrong in its own dialect (rather than right but untranslatable).
    pub invalid: bool,
}

impl Refusal {
    /// A field that is fine in the client's dialect but has no equivalent upstream.
    pub fn untranslatable(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param,
            invalid: false,
        }
    }

    /// A field that is wrong in the client's own dialect.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param,
            invalid: true,
        }
    }
}

/// The `max_tokens` sent to Anthropic when an OpenAI client set none (Anthropic requires
/// it; OpenAI's default is "as many as the model allows"). LiteLLM and agentgateway use the
/// same figure.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
