//! Dialect-layer benchmarks: what translation costs per request and per streamed event,
//! beside what the passthrough path costs for the same bytes (the usage meter, which reads
//! every event of a relayed stream too). Inputs are built outside the timed loops and every
//! translation is checked once before timing. Results: benches/RESULTS.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use switchyard::dialect::openai::write::Limit;
use switchyard::dialect::translate::{Options, Translator};
use switchyard::dialect::{Wire, anthropic, openai};
use switchyard::upstream::meter::{Meter, Mode};

/// A ~1 KB OpenAI chat request, the load harness's body.
fn openai_request() -> Vec<u8> {
    let filler: String =
        "You are a careful assistant that answers questions about routing policies. "
            .repeat(11)
            .chars()
            .take(760)
            .collect();
    json!({
        "model": "bench-claude",
        "messages": [
            {"role": "system", "content": filler},
            {"role": "user", "content": "Summarise the routing decision for tenant acme in one line."},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": true,
    })
    .to_string()
    .into_bytes()
}

/// An agent's turn: a system prompt, tools, a tool call and its result (~3 KB).
fn openai_agent_request() -> Vec<u8> {
    json!({
        "model": "bench-claude",
        "messages": [
            {"role": "system", "content": "You are a coding agent. ".repeat(40)},
            {"role": "user", "content": "Find the failing test and fix it."},
            {"role": "assistant", "content": "Running the tests.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"cargo test --workspace 2>&1 | tail -40\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "test result: FAILED. 41 passed; 1 failed\n".repeat(20)},
        ],
        "tools": [
            {"type": "function", "function": {"name": "bash", "description": "Run a shell command",
             "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
            {"type": "function", "function": {"name": "edit", "description": "Replace text in a file",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}}}},
        ],
        "max_tokens": 4096,
        "stream": true,
    })
    .to_string()
    .into_bytes()
}

/// An Anthropic event stream of `n` text deltas of 24 bytes (the load harness's answer).
fn anthropic_stream(n: usize) -> Vec<u8> {
    let ev = |t: &str, d: serde_json::Value| format!("event: {t}\ndata: {d}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 300, "output_tokens": 1}}}),
    );
    s += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for _ in 0..n {
        s += &ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x".repeat(24)}}),
        );
    }
    s += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": n}}),
    );
    s += &ev("message_stop", json!({"type": "message_stop"}));
    s.into_bytes()
}

/// A Bedrock ConverseStream of `n` text deltas of 24 bytes, as AWS event-stream frames (with
/// the `p` padding member real frames carry).
fn bedrock_stream(n: usize) -> Vec<u8> {
    use switchyard::dialect::eventstream::encode;
    let mut out = Vec::new();
    let mut ev = |kind: &str, payload: serde_json::Value| {
        encode(
            &[
                (":message-type", "event"),
                (":event-type", kind),
                (":content-type", "application/json"),
            ],
            payload.to_string().as_bytes(),
            &mut out,
        );
    };
    ev("messageStart", json!({"role": "assistant"}));
    for _ in 0..n {
        ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "x".repeat(24)}, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}),
        );
    }
    ev("contentBlockStop", json!({"contentBlockIndex": 0}));
    ev("messageStop", json!({"stopReason": "end_turn"}));
    ev(
        "metadata",
        json!({"usage": {"inputTokens": 300, "outputTokens": n, "totalTokens": 300 + n}, "metrics": {"latencyMs": 900}}),
    );
    out
}

/// A Gemini `streamGenerateContent?alt=sse` stream of `n` text parts of 24 bytes, usage in
/// the last chunk (as Vertex sends it).
fn gemini_stream(n: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        let mut c = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x".repeat(24)}]}, "index": 0}],
                           "usageMetadata": {"promptTokenCount": 300},
                           "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"});
        if i + 1 == n {
            c["candidates"][0]["finishReason"] = json!("STOP");
            c["usageMetadata"] = json!({"promptTokenCount": 300, "candidatesTokenCount": n, "totalTokenCount": 300 + n});
        }
        s += &format!("data: {c}\r\n\r\n");
    }
    s.into_bytes()
}

/// An OpenAI chunk stream of `n` content deltas of 24 bytes, with the usage chunk.
fn openai_stream(n: usize) -> Vec<u8> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut s = chunk(json!({"role": "assistant", "content": ""}), json!(null));
    for _ in 0..n {
        s += &chunk(json!({"content": "x".repeat(24)}), json!(null));
    }
    s += &chunk(json!({}), json!("stop"));
    s += &format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 300, "completion_tokens": n, "total_tokens": 300 + n}})
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

fn options() -> Options<'static> {
    Options {
        stream: true,
        include_usage: false,
        created: 1_700_000_000,
        id: "id",
        model: "m",
        error_status: None,
        endpoint: "bench",
    }
}

/// Translates a whole stream fed in `read`-sized pieces; returns the client's byte count.
fn translate_stream(from: Wire, input: &[u8], read: usize) -> usize {
    let to = match from {
        Wire::OpenAi => Wire::Anthropic,
        Wire::Anthropic
        | Wire::Bedrock
        | Wire::BedrockInvoke
        | Wire::Gemini
        | Wire::VertexAnthropic => Wire::OpenAi,
    };
    let mut parser = switchyard::dialect::de::Parser::default();
    let mut t = Translator::new(from, to, &options(), &mut parser);
    let mut out = Vec::with_capacity(input.len() * 2);
    for piece in input.chunks(read) {
        t.push(piece, &mut out).unwrap();
    }
    t.finish(&mut out).unwrap();
    out.len()
}

/// The passthrough path over the same stream: the usage meter, events passed on.
fn meter_stream(wire: Wire, input: &[u8], read: usize) -> usize {
    let mut held = Vec::new();
    let mut meter = Meter::new(Mode::Events { strip_usage: true }, wire, &mut held);
    let mut n = 0;
    for piece in input.chunks(read) {
        meter.pass(piece, &mut |kept| n += kept.len());
    }
    meter.finish(&mut |kept| n += kept.len());
    assert!(meter.usage().is_some());
    n
}

/// A whole (non-streamed) answer of ~400 characters of text, in each dialect.
fn whole_answer(wire: Wire) -> Vec<u8> {
    let text = "The request goes to the private GPU pool because the tenant is acme. ".repeat(6);
    let v = match wire {
        Wire::Gemini => json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 243, "candidatesTokenCount": 96, "totalTokenCount": 339},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
        }),
        Wire::Bedrock | Wire::BedrockInvoke => json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 243, "outputTokens": 96, "totalTokens": 339},
            "metrics": {"latencyMs": 812}
        }),
        Wire::Anthropic | Wire::VertexAnthropic => json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 243, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 96}
        }),
        Wire::OpenAi => json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
            "created": 1_741_569_952, "model": "gpt-4.1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                         "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 243, "completion_tokens": 96, "total_tokens": 339,
                      "prompt_tokens_details": {"cached_tokens": 0}}
        }),
    };
    serde_json::to_vec(&v).unwrap()
}

/// Translates a whole answer (one read, as most arrive); returns the client's byte count.
fn translate_whole(
    from: Wire,
    input: &[u8],
    parser: &mut switchyard::dialect::de::Parser,
    out: &mut Vec<u8>,
) -> usize {
    let to = match from {
        Wire::OpenAi => Wire::Anthropic,
        Wire::Anthropic
        | Wire::Bedrock
        | Wire::BedrockInvoke
        | Wire::Gemini
        | Wire::VertexAnthropic => Wire::OpenAi,
    };
    let options = Options {
        stream: false,
        ..options()
    };
    let mut t = Translator::new(from, to, &options, parser);
    out.clear();
    t.push(input, out).unwrap();
    t.finish(out).unwrap();
    out.len()
}

/// The passthrough path over the same answer: the usage meter.
fn meter_whole(wire: Wire, input: &[u8], held: &mut Vec<u8>) -> usize {
    let mut meter = Meter::new(Mode::Json, wire, held);
    let mut n = 0;
    meter.pass(input, &mut |kept| n += kept.len());
    meter.finish(&mut |kept| n += kept.len());
    assert!(meter.usage().is_some());
    n
}

fn answers(c: &mut Criterion) {
    let mut g = c.benchmark_group("dialect_answer");
    let mut parser = switchyard::dialect::de::Parser::default();
    let mut out = Vec::new();
    let mut held = Vec::new();
    for (from, name) in [
        (Wire::Anthropic, "anthropic_to_openai"),
        (Wire::OpenAi, "openai_to_anthropic"),
    ] {
        let body = whole_answer(from);
        assert!(translate_whole(from, &body, &mut parser, &mut out) > 0);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| translate_whole(from, black_box(&body), &mut parser, &mut out));
        });
        let meter = match from {
            Wire::Anthropic
            | Wire::Bedrock
            | Wire::BedrockInvoke
            | Wire::Gemini
            | Wire::VertexAnthropic => "meter_anthropic_passthrough",
            Wire::OpenAi => "meter_openai_passthrough",
        };
        g.bench_function(meter, |b| {
            b.iter(|| meter_whole(from, black_box(&body), &mut held));
        });
    }
    g.finish();
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("dialect_request");
    for (name, body) in [
        ("chat_1kb", openai_request()),
        ("agent_3kb", openai_agent_request()),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        let mut parser = switchyard::dialect::de::Parser::default();
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        let mut dropped = Vec::new();
        // OpenAI → Anthropic: parse once (simd-json, in place), write the Anthropic body.
        g.bench_function(format!("openai_to_anthropic/{name}"), |b| {
            b.iter(|| {
                scratch.clear();
                scratch.extend_from_slice(black_box(&body));
                let ir = openai::read::read(&mut scratch, &mut parser).unwrap();
                out.clear();
                anthropic::write::write(&ir, "claude", &mut out, &mut dropped).unwrap();
                out.len()
            });
        });
        let mut anthropic_body = Vec::new();
        {
            scratch.clear();
            scratch.extend_from_slice(&body);
            let ir = openai::read::read(&mut scratch, &mut parser).unwrap();
            anthropic::write::write(&ir, "claude", &mut anthropic_body, &mut dropped).unwrap();
        }
        g.bench_function(format!("anthropic_to_openai/{name}"), |b| {
            b.iter(|| {
                scratch.clear();
                scratch.extend_from_slice(black_box(&anthropic_body));
                let ir = anthropic::read::read(&mut scratch, &mut parser).unwrap();
                out.clear();
                openai::write::write(&ir, "m", Limit::MaxTokens, &mut out, &mut dropped).unwrap();
                out.len()
            });
        });
        // The passthrough path's work on the same body: the validating scan and the
        // `model` rewrite.
        g.bench_function(format!("passthrough_scan_rewrite/{name}"), |b| {
            b.iter(|| {
                let fields = switchyard::gateway::body::scan(black_box(&body)).unwrap();
                out.clear();
                let span = fields.model.unwrap().span;
                switchyard::gateway::body::rewrite_model(&body, span, "m", &mut out);
                out.len()
            });
        });
    }
    g.finish();
}

fn streams(c: &mut Criterion) {
    const EVENTS: usize = 64;
    // Reads of 4 KiB, as the relay gets them from a socket.
    const READ: usize = 4096;
    let mut g = c.benchmark_group("dialect_stream");
    let anthropic = anthropic_stream(EVENTS);
    let openai = openai_stream(EVENTS);
    assert!(translate_stream(Wire::Anthropic, &anthropic, READ) > 0);
    assert!(translate_stream(Wire::OpenAi, &openai, READ) > 0);
    // Per event: the stream's events (deltas plus the frame around them).
    g.throughput(Throughput::Elements(EVENTS as u64 + 6));
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| translate_stream(Wire::Anthropic, black_box(&anthropic), READ));
    });
    g.bench_function("meter_anthropic_passthrough", |b| {
        b.iter(|| meter_stream(Wire::Anthropic, black_box(&anthropic), READ));
    });
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| translate_stream(Wire::OpenAi, black_box(&openai), READ));
    });
    g.bench_function("meter_openai_passthrough", |b| {
        b.iter(|| meter_stream(Wire::OpenAi, black_box(&openai), READ));
    });
    // Bedrock: event-stream frames (both CRCs checked) decoded and translated for an OpenAI
    // client; there is no Bedrock passthrough (no client speaks it), so the SSE meters above
    // are the comparison.
    let bedrock = bedrock_stream(EVENTS);
    assert!(translate_stream(Wire::Bedrock, &bedrock, READ) > 0);
    g.bench_function("bedrock_to_openai", |b| {
        b.iter(|| translate_stream(Wire::Bedrock, black_box(&bedrock), READ));
    });
    // Gemini (Vertex): SSE chunks, each a whole response object, for an OpenAI client.
    let gemini = gemini_stream(EVENTS);
    assert!(translate_stream(Wire::Gemini, &gemini, READ) > 0);
    g.bench_function("gemini_to_openai", |b| {
        b.iter(|| translate_stream(Wire::Gemini, black_box(&gemini), READ));
    });
    g.finish();
}

criterion_group!(benches, requests, answers, streams);
criterion_main!(benches);
