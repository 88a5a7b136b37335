//! A translated answer: the upstream's body bytes in, the client's bytes out, event by event.
//!
//! A stream is cut into Server-Sent Events ([`Splitter`]); each event's data is copied once
//! into a scratch buffer (`simd-json` parses in place), decoded into [`Event`]s by the
//! upstream dialect's decoder, and each event is encoded at once by the client dialect's
//! encoder — so the first translated chunk leaves before the upstream has finished, and
//! nothing holds more than one event. A whole answer (JSON) is translated when it is
//! complete; an error answer (status ≥ 400) is rewritten in the client's error shape.
//!
//! All of one answer's state is in one [`Translator`], owned by the task relaying it: no
//! locks, no sharing.

use crate::dialect::de::Parser;
use crate::dialect::ir::{Counts, Delta, Event};
use crate::dialect::sse::{Splitter, event_data};
use crate::dialect::{Wire, anthropic, bedrock, errors, eventstream, gemini, openai};

/// Largest whole (non-streamed) answer translated; a larger one is refused as malformed.
pub const MAX_WHOLE: usize = 32 * 1024 * 1024;
/// Largest error body read; the rest is ignored.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the client asked for the answer.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// An event stream (else one JSON answer).
    pub stream: bool,
    /// OpenAI clients: send the usage chunk.
    pub include_usage: bool,
    /// Unix seconds, for OpenAI's `created`.
    pub created: u64,
    /// The answer's id when the upstream gives none.
    pub id: &'a str,
    /// The model named in the answer when the upstream names none.
    pub model: &'a str,
    /// The upstream's status when it is an error (≥ 400): its body is an error to rewrite.
    pub error_status: Option<u16>,
    /// The endpoint, to name it in error messages.
    pub endpoint: &'a str,
}

/// What the translator read of an answer, for the audit record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Counts as reported (cumulative: the latest wins).
    pub counts: Counts,
    /// Characters of generated text, tool arguments and thinking (for an estimate when the
    /// upstream reports no usage).
    pub chars: u64,
    /// The status of an error event that came before any content (`errors::event_status`).
    pub error_status: Option<u16>,
}

impl Tally {
    fn see(&mut self, e: &Event<'_>) {
        match e {
            Event::Start { usage, .. } => self.counts = self.counts.updated(*usage),
            Event::Finish { usage, .. } => self.counts = self.counts.updated(*usage),
            Event::Delta {
                delta: Delta::Text(t) | Delta::Json(t) | Delta::Thinking(t),
                ..
            } => self.chars = self.chars.saturating_add(t.chars().count() as u64),
            Event::Error { kind, .. } if self.chars == 0 && self.error_status.is_none() => {
                self.error_status = Some(super::errors::event_status(Some(kind), None));
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
enum Decoder {
    OpenAi(openai::decode::Decoder),
    Anthropic(anthropic::decode::Decoder),
    Bedrock(bedrock::decode::Decoder),
    /// Bedrock InvokeModel: Anthropic events inside event-stream `chunk` frames.
    BedrockInvoke(anthropic::decode::Decoder),
    Gemini(gemini::decode::Decoder),
}

#[derive(Debug)]
enum Encoder<'t> {
    OpenAi(openai::encode::Encoder<'t>),
    Anthropic(anthropic::encode::Encoder<'t>),
}

impl Encoder<'_> {
    fn event(&mut self, e: Event<'_>, out: &mut Vec<u8>) {
        match self {
            Self::OpenAi(enc) => enc.event(e, out),
            Self::Anthropic(enc) => enc.event(e, out),
        }
    }

    fn cut(&mut self, message: &str, out: &mut Vec<u8>) {
        match self {
            Self::OpenAi(enc) => enc.cut(message, out),
            Self::Anthropic(enc) => enc.cut(message, out),
        }
    }
}

/// What kind of body is being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stream,
    Whole,
    Error(u16),
}

/// One answer on its way from the upstream's dialect to the client's.
#[derive(Debug)]
pub struct Translator<'t> {
    kind: Kind,
    to: Wire,
    endpoint: &'t str,
    decoder: Decoder,
    encoder: Encoder<'t>,
    split: Splitter,
    /// A Bedrock stream's event-stream frames.
    frames: eventstream::Decoder,
    parser: &'t mut Parser,
    /// A whole answer or an error body, as it arrives; or a stream's event, copied to be
    /// parsed. The parser's spare buffer, given back on drop.
    body: Vec<u8>,
    tally: Tally,
    /// The answer was refused as untranslatable; what follows is ignored.
    broken: bool,
}

impl<'t> Translator<'t> {
    /// A translator for one answer, parsing with `parser` (a core's, reused).
    #[must_use]
    pub fn new(from: Wire, to: Wire, o: &Options<'t>, parser: &'t mut Parser) -> Self {
        let kind = match (o.error_status, o.stream) {
            (Some(status), _) => Kind::Error(status),
            (None, true) => Kind::Stream,
            (None, false) => Kind::Whole,
        };
        let decoder = match from {
            Wire::OpenAi => Decoder::OpenAi(openai::decode::Decoder::default()),
            // Claude on Vertex answers as Anthropic does.
            Wire::Anthropic | Wire::VertexAnthropic => {
                Decoder::Anthropic(anthropic::decode::Decoder::default())
            }
            Wire::Gemini => Decoder::Gemini(gemini::decode::Decoder::default()),
            Wire::Bedrock => Decoder::Bedrock(bedrock::decode::Decoder::default()),
            Wire::BedrockInvoke => Decoder::BedrockInvoke(anthropic::decode::Decoder::default()),
        };
        let stream = kind == Kind::Stream;
        let encoder = match to {
            // (No client speaks Bedrock.)
            Wire::OpenAi
            | Wire::Bedrock
            | Wire::BedrockInvoke
            | Wire::Gemini
            | Wire::VertexAnthropic => Encoder::OpenAi(openai::encode::Encoder::new(
                stream,
                o.include_usage,
                o.created,
                o.id,
                o.model,
            )),
            Wire::Anthropic => {
                Encoder::Anthropic(anthropic::encode::Encoder::new(stream, o.id, o.model))
            }
        };
        Self {
            kind,
            to,
            endpoint: o.endpoint,
            decoder,
            encoder,
            split: Splitter::default(),
            frames: eventstream::Decoder::default(),
            body: take_spare(parser),
            parser,
            tally: Tally::default(),
            broken: false,
        }
    }

    /// The client's content type.
    #[must_use]
    pub fn content_type(&self) -> &'static str {
        if self.kind == Kind::Stream {
            "text/event-stream"
        } else {
            "application/json"
        }
    }

    /// What was read of the answer.
    #[must_use]
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The stop reason written to the client, in its dialect.
    #[must_use]
    pub fn stop_reason(&self) -> Option<&'static str> {
        match &self.encoder {
            Encoder::OpenAi(e) => e.finish_reason(),
            Encoder::Anthropic(e) => e.stop_reason(),
        }
    }

    /// Takes the next bytes of the upstream's (decoded) body, appending what the client gets
    /// to `out`. `Err` says why the answer cannot be translated; the client has then been
    /// sent an error (a stream) and nothing more is taken.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if self.broken {
            return Ok(());
        }
        match self.kind {
            Kind::Stream
                if matches!(
                    self.decoder,
                    Decoder::Bedrock(_) | Decoder::BedrockInvoke(_)
                ) =>
            {
                let Self {
                    frames,
                    body: scratch,
                    parser,
                    decoder,
                    encoder,
                    tally,
                    ..
                } = self;
                let mut failed = None;
                let pushed = frames.push(data, |frame| {
                    if failed.is_some() {
                        return;
                    }
                    let mut emit = |e: Event<'_>| {
                        tally.see(&e);
                        encoder.event(e, out);
                    };
                    let decoded = match decoder {
                        Decoder::Bedrock(d) => d.frame(&frame, scratch, parser, &mut emit),
                        Decoder::BedrockInvoke(d) => {
                            match bedrock::decode::invoke_chunk(&frame, scratch) {
                                Ok(bedrock::decode::Chunk::Event) => {
                                    d.event(scratch, parser, &mut emit)
                                }
                                Ok(bedrock::decode::Chunk::Error { kind, message }) => {
                                    emit(Event::Error {
                                        kind,
                                        message: &message,
                                    });
                                    Ok(())
                                }
                                Ok(bedrock::decode::Chunk::Skip(_)) => Ok(()),
                                Err(e) => Err(e),
                            }
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = decoded {
                        failed = Some(format!("sent a stream event that is not valid: {e}"));
                    }
                });
                if let Err(e) = pushed {
                    failed = Some(format!("sent a stream that cannot be read: {e}"));
                }
                match failed {
                    Some(why) => Err(self.refuse(why, out)),
                    None => Ok(()),
                }
            }
            Kind::Stream => {
                let Self {
                    split,
                    body: scratch,
                    parser,
                    decoder,
                    encoder,
                    tally,
                    ..
                } = self;
                let mut failed = None;
                let pushed = split.push(data, |event| {
                    if failed.is_some() {
                        return;
                    }
                    let Some(payload) = event_data(event) else {
                        return;
                    };
                    scratch.clear();
                    scratch.extend_from_slice(&payload);
                    let mut emit = |e: Event<'_>| {
                        tally.see(&e);
                        encoder.event(e, out);
                    };
                    let decoded = match decoder {
                        Decoder::OpenAi(d) => d.event(scratch, parser, &mut emit),
                        Decoder::Anthropic(d) => d.event(scratch, parser, &mut emit),
                        Decoder::Gemini(d) => d.event(scratch, parser, &mut emit),
                        // (Bedrock streams are frames, decoded above.)
                        Decoder::Bedrock(_) | Decoder::BedrockInvoke(_) => Ok(()),
                    };
                    if let Err(e) = decoded {
                        failed = Some(format!("sent a stream event that is not valid: {e}"));
                    }
                });
                if let Err(len) = pushed {
                    failed = Some(format!(
                        "sent a stream event of more than {len} bytes; it is not followed"
                    ));
                }
                match failed {
                    Some(why) => Err(self.refuse(why, out)),
                    None => Ok(()),
                }
            }
            Kind::Whole => {
                if self.body.len() + data.len() > MAX_WHOLE {
                    let why = format!("sent an answer larger than {MAX_WHOLE} bytes");
                    return Err(self.refuse(why, out));
                }
                // Room for the parser's padding too, so that parsing does not move it.
                self.body.reserve(data.len() + simd_json::INPUT_PADDING);
                self.body.extend_from_slice(data);
                Ok(())
            }
            Kind::Error(_) => {
                let room = MAX_ERROR_BODY.saturating_sub(self.body.len());
                self.body
                    .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                Ok(())
            }
        }
    }

    /// The upstream's body ended where its framing says. `Err` when the answer was not
    /// complete (a stream without its end, a malformed whole answer); the client has then
    /// been sent an error event where it can take one.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if self.broken {
            return Ok(());
        }
        match self.kind {
            Kind::Stream => {
                if let Err(e) = self.frames.finish() {
                    return Err(self.refuse(format!("sent a stream that {e}"), out));
                }
                let rest = self.split.take_rest();
                if !rest.trim_ascii().is_empty() {
                    // An unterminated last event is still an event.
                    let mut terminated = rest;
                    terminated.extend_from_slice(b"\n\n");
                    self.push(&terminated, out)?;
                }
                let Self {
                    decoder,
                    encoder,
                    tally,
                    ..
                } = self;
                let mut emit = |e: Event<'_>| {
                    tally.see(&e);
                    encoder.event(e, out);
                };
                let closed = match decoder {
                    Decoder::OpenAi(d) => d.close(&mut emit),
                    Decoder::Anthropic(d) => d.close(&mut emit),
                    Decoder::Gemini(d) => d.close(&mut emit),
                    Decoder::Bedrock(d) => d.close(&mut emit),
                    Decoder::BedrockInvoke(d) => d.close(&mut emit),
                };
                closed.map_err(|why| self.refuse(why.to_owned(), out))
            }
            Kind::Whole => {
                let Self {
                    body,
                    parser,
                    decoder,
                    encoder,
                    tally,
                    ..
                } = self;
                let mut emit = |e: Event<'_>| {
                    tally.see(&e);
                    encoder.event(e, out);
                };
                let decoded = match decoder {
                    Decoder::OpenAi(d) => d.whole(body, parser, &mut emit),
                    Decoder::Anthropic(d) => d.whole(body, parser, &mut emit),
                    Decoder::Gemini(d) => d.whole(body, parser, &mut emit),
                    Decoder::Bedrock(d) => d.whole(body, parser, &mut emit),
                    // An InvokeModel answer is an Anthropic message.
                    Decoder::BedrockInvoke(d) => d.whole(body, parser, &mut emit),
                };
                decoded.map_err(|e| {
                    self.broken = true;
                    format!("sent an answer that is not valid: {e}")
                })
            }
            Kind::Error(status) => {
                errors::translate(status, &self.body, self.to, self.endpoint, out);
                Ok(())
            }
        }
    }

    /// The upstream's body broke off (`why` names how): a stream ends with an error event.
    pub fn cut(&mut self, why: &str, out: &mut Vec<u8>) {
        if self.kind == Kind::Stream && !self.broken {
            self.broken = true;
            self.encoder
                .cut(&format!("endpoint `{}` {why}", self.endpoint), out);
        }
    }

    fn refuse(&mut self, why: String, out: &mut Vec<u8>) -> String {
        if self.kind == Kind::Stream {
            self.encoder
                .cut(&format!("endpoint `{}` {why}", self.endpoint), out);
        }
        self.broken = true;
        why
    }
}

impl Drop for Translator<'_> {
    fn drop(&mut self) {
        self.body.clear();
        self.parser.spare = std::mem::take(&mut self.body);
    }
}

fn take_spare(parser: &mut Parser) -> Vec<u8> {
    let mut spare = std::mem::take(&mut parser.spare);
    spare.clear();
    spare
}
