//! The `mock` endpoint type: canned answers made in-process, for demos and load tests that
//! need no upstream and no keys — in the dialect of the API asked for: an OpenAI chat
//! completion (or stream), an Anthropic message (or event stream, written by the dialect
//! layer's encoder), a token count, or embeddings (unit vectors derived from the input text,
//! so equal texts get equal vectors; `encoding_format: "base64"` and `dimensions` honoured).
//!
//! Its OpenAI stream carries the usage chunk only when the client asked for it
//! (`stream_options.include_usage`), as OpenAI's does; the audit record has the mock's token
//! counts either way.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::dialect::Api;
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};
use crate::gateway::body::write_json_string;
use crate::gateway::respond::{self, push_hex, push_u64};
use crate::gateway::route::BYTES_PER_TOKEN;
use crate::runtime::client::{Client, Next};
use crate::upstream::exchange::{Exchange, Outcome};
use crate::upstream::meter::Usage;

const WORDS: [&str; 12] = [
    "This ",
    "is ",
    "a ",
    "mock ",
    "completion ",
    "from ",
    "switchyard: ",
    "the ",
    "policy ",
    "routed ",
    "this ",
    "request.",
];

/// Dimensions of a mock embedding when the request does not ask for a number.
const EMBEDDING_DIMENSIONS: usize = 16;
/// Most dimensions a mock embedding is given.
const MAX_DIMENSIONS: usize = 4096;

/// A mock answer before it is written.
struct Answer {
    body: Vec<u8>,
    usage: Usage,
    stop: Option<&'static str>,
}

/// Writes the mock answer to `client.out`.
pub async fn respond(x: &Exchange<'_>, client: &mut Client<'_>) -> (Next, Outcome) {
    let prompt_tokens = (x.body.len() as u64).div_ceil(BYTES_PER_TOKEN);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stream = x.stream && matches!(x.api, Api::Chat | Api::Messages);
    let answer = match x.api {
        Api::Chat => chat(x, created, prompt_tokens),
        Api::Messages => messages(x, prompt_tokens),
        Api::CountTokens => {
            let mut body = b"{\"input_tokens\":".to_vec();
            push_u64(&mut body, prompt_tokens);
            body.push(b'}');
            Answer {
                body,
                usage: Usage::default(),
                stop: None,
            }
        }
        Api::Embeddings => embeddings(x),
    };
    x.core.metrics().count_status(200);
    let report = x.report();
    // HTTP/1.0 has no chunked coding: its stream is the body up to the close.
    let chunked = client.minor >= 1;
    if stream && !chunked {
        client.must_close = true;
    }
    let out = &mut *client.out;
    if stream {
        respond::status_line(out, 200);
        respond::ids(out, &x.id, &report);
        out.extend_from_slice(b"content-type: text/event-stream\r\ncache-control: no-cache\r\n");
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if client.must_close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if chunked {
            push_hex(out, answer.body.len());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&answer.body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            out.extend_from_slice(&answer.body);
        }
    } else {
        respond::full(
            out,
            200,
            "application/json",
            &answer.body,
            &x.id,
            &report,
            client.must_close,
            &[],
        );
    }
    tracing::debug!(
        request_id = x.id.as_str(),
        endpoint = x.endpoint,
        rule = x.rule,
        model = x.model,
        stream = x.stream,
        "answered by mock endpoint"
    );
    let outcome = Outcome {
        status: 200,
        response_bytes: answer.body.len() as u64,
        usage: Some(answer.usage),
        stop_reason: answer.stop.map(std::borrow::Cow::Borrowed),
        first_byte_us: u64::try_from(x.req.started.elapsed().as_micros()).ok(),
        ..Outcome::default()
    };
    let next = if client.must_close {
        Next::Close
    } else {
        Next::KeepAlive
    };
    (next, outcome)
}

/// An OpenAI chat completion, or its chunks.
fn chat(x: &Exchange<'_>, created: u64, prompt_tokens: u64) -> Answer {
    let completion_tokens = WORDS.len() as u64;
    let mut body = Vec::with_capacity(1024);
    if x.stream {
        let event = |body: &mut Vec<u8>, delta: &str, finish: Option<&str>| {
            body.extend_from_slice(b"data: ");
            prefix(body, x, created, "chat.completion.chunk");
            body.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
            body.extend_from_slice(delta.as_bytes());
            body.extend_from_slice(b",\"finish_reason\":");
            match finish {
                Some(f) => write_json_string(body, f),
                None => body.extend_from_slice(b"null"),
            }
            body.extend_from_slice(b"}]}\n\n");
        };
        event(&mut body, r#"{"role":"assistant","content":""}"#, None);
        for word in WORDS {
            let mut delta = Vec::with_capacity(32);
            delta.extend_from_slice(b"{\"content\":");
            write_json_string(&mut delta, word);
            delta.push(b'}');
            event(&mut body, std::str::from_utf8(&delta).unwrap_or("{}"), None);
        }
        event(&mut body, "{}", Some("stop"));
        // Like OpenAI: the usage chunk only for a client that asked for it.
        if !x.strip_usage {
            body.extend_from_slice(b"data: ");
            prefix(&mut body, x, created, "chat.completion.chunk");
            body.extend_from_slice(b",\"choices\":[],");
            usage(&mut body, prompt_tokens, completion_tokens);
            body.extend_from_slice(b"}\n\n");
        }
        body.extend_from_slice(b"data: [DONE]\n\n");
    } else {
        prefix(&mut body, x, created, "chat.completion");
        body.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
        );
        write_json_string(&mut body, &WORDS.concat());
        body.extend_from_slice(b"},\"finish_reason\":\"stop\"}],");
        usage(&mut body, prompt_tokens, completion_tokens);
        body.push(b'}');
    }
    Answer {
        body,
        usage: Usage {
            input: prompt_tokens,
            output: completion_tokens,
            ..Usage::default()
        },
        stop: Some("stop"),
    }
}

/// An Anthropic message, or its event stream: the same words, told as events to the
/// dialect layer's encoder.
fn messages(x: &Exchange<'_>, prompt_tokens: u64) -> Answer {
    let id = format!(
        "msg_{}",
        x.id.as_str()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    let mut encoder = crate::dialect::anthropic::encode::Encoder::new(x.stream, &id, x.model);
    let mut body = Vec::with_capacity(2048);
    let output = WORDS.len() as u64;
    let mut events = vec![
        Event::Start {
            id: &id,
            model: x.model,
            usage: Counts {
                input: Some(prompt_tokens),
                output: Some(1),
                cache_read: Some(0),
                cache_write: Some(0),
            },
        },
        Event::BlockStart {
            index: 0,
            block: BlockKind::Text,
        },
    ];
    events.extend(WORDS.iter().map(|w| Event::Delta {
        index: 0,
        delta: Delta::Text(w),
    }));
    events.extend([
        Event::BlockStop { index: 0 },
        Event::Finish {
            stop: Some(Stop::EndTurn),
            usage: Counts {
                output: Some(output),
                ..Counts::default()
            },
        },
        Event::End,
    ]);
    for e in events {
        encoder.event(e, &mut body);
    }
    Answer {
        body,
        usage: Usage {
            input: prompt_tokens,
            output,
            ..Usage::default()
        },
        stop: encoder.stop_reason(),
    }
}

/// OpenAI embeddings: one unit vector per input, derived from its text.
fn embeddings(x: &Exchange<'_>) -> Answer {
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(default)]
        input: serde_json::Value,
        #[serde(default)]
        encoding_format: Option<String>,
        #[serde(default)]
        dimensions: Option<usize>,
    }
    let req = serde_json::from_slice::<Req>(x.body).unwrap_or(Req {
        input: serde_json::Value::Null,
        encoding_format: None,
        dimensions: None,
    });
    // A string, a list of strings, a list of token ids, or a list of lists of them.
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let inputs: Vec<String> = match &req.input {
        serde_json::Value::Array(items) if items.iter().all(|v| !v.is_number()) => {
            items.iter().map(text).collect()
        }
        other => vec![text(other)],
    };
    let dims = req
        .dimensions
        .unwrap_or(EMBEDDING_DIMENSIONS)
        .clamp(1, MAX_DIMENSIONS);
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let tokens = inputs
        .iter()
        .map(|t| (t.len() as u64).div_ceil(BYTES_PER_TOKEN))
        .sum::<u64>();
    let mut body = b"{\"object\":\"list\",\"data\":[".to_vec();
    for (i, text) in inputs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        push_u64(&mut body, i as u64);
        body.extend_from_slice(b",\"embedding\":");
        let vector = unit_vector(text, dims);
        if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            body.push(b'"');
            body.extend_from_slice(crate::codec::base64(&bytes).as_bytes());
            body.push(b'"');
        } else {
            body.push(b'[');
            for (j, v) in vector.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                use std::io::Write as _;
                let _ = write!(body, "{v}");
            }
            body.push(b']');
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"],\"model\":");
    write_json_string(&mut body, x.model);
    body.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    push_u64(&mut body, tokens);
    body.extend_from_slice(b",\"total_tokens\":");
    push_u64(&mut body, tokens);
    body.extend_from_slice(b"}}");
    Answer {
        body,
        usage: Usage {
            input: tokens,
            ..Usage::default()
        },
        stop: None,
    }
}

/// A unit vector of `dims` numbers drawn from `text` (FNV-1a seeding an xorshift).
fn unit_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 24 random bits as a number in [-1, 1).
            ((state >> 40) as f32 / 8_388_608.0) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

fn prefix(body: &mut Vec<u8>, x: &Exchange<'_>, created: u64, object: &str) {
    body.extend_from_slice(b"{\"id\":");
    write_json_string(body, &format!("chatcmpl-{}", x.id.as_str()));
    body.extend_from_slice(b",\"object\":\"");
    body.extend_from_slice(object.as_bytes());
    body.extend_from_slice(b"\",\"created\":");
    push_u64(body, created);
    body.extend_from_slice(b",\"model\":");
    write_json_string(body, x.model);
    body.extend_from_slice(b",\"system_fingerprint\":\"switchyard-mock\"");
}

fn usage(body: &mut Vec<u8>, prompt: u64, completion: u64) {
    body.extend_from_slice(b"\"usage\":{\"prompt_tokens\":");
    push_u64(body, prompt);
    body.extend_from_slice(b",\"completion_tokens\":");
    push_u64(body, completion);
    body.extend_from_slice(b",\"total_tokens\":");
    push_u64(body, prompt + completion);
    body.push(b'}');
}
