//! The `mock` endpoint type: a canned OpenAI chat completion (or stream) answered in-process,
//! for demos and load tests that need no upstream and no keys. Its stream carries the usage
//! chunk only when the client asked for it (`stream_options.include_usage`), as OpenAI's does;
//! the audit record has the mock's token counts either way.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Writes the mock answer to `client.out`.
pub async fn respond(x: &Exchange<'_>, client: &mut Client<'_>) -> (Next, Outcome) {
    let prompt_tokens = (x.body.len() as u64).div_ceil(BYTES_PER_TOKEN);
    let completion_tokens = WORDS.len() as u64;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    x.core.metrics().count_status(200);
    let report = x.report();
    let out = &mut *client.out;
    let mut body = Vec::with_capacity(1024);
    let response_bytes;
    // HTTP/1.0 has no chunked coding: its stream is the body up to the close.
    let chunked = client.minor >= 1;
    if x.stream && !chunked {
        client.must_close = true;
    }
    if x.stream {
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
        if chunked {
            push_hex(out, body.len());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            out.extend_from_slice(&body);
        }
        response_bytes = body.len() as u64;
    } else {
        prefix(&mut body, x, created, "chat.completion");
        body.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
        );
        write_json_string(&mut body, &WORDS.concat());
        body.extend_from_slice(b"},\"finish_reason\":\"stop\"}],");
        usage(&mut body, prompt_tokens, completion_tokens);
        body.push(b'}');
        response_bytes = body.len() as u64;
        respond::full(
            out,
            200,
            "application/json",
            &body,
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
        response_bytes,
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens,
        }),
        ..Outcome::default()
    };
    let next = if client.must_close {
        Next::Close
    } else {
        Next::KeepAlive
    };
    (next, outcome)
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
