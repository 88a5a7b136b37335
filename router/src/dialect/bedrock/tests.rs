//! The Converse writer and decoder on the shapes of `research/dialects.md` §C2–C3.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::{decode, write};
use crate::dialect::de::Parser;
use crate::dialect::eventstream::{self, Decoder as Frames};
use crate::dialect::ir::{BlockKind, Counts, Delta, Event, Stop};
use crate::dialect::openai;

/// An OpenAI chat request, read into the intermediate form and written as Converse.
fn converse(openai_body: &Value, model: &str) -> Result<(Value, Vec<String>), String> {
    let mut body = serde_json::to_vec(openai_body).unwrap_or_default();
    let mut parser = Parser::default();
    let ir = openai::read::read(&mut body, &mut parser).map_err(|r| r.message)?;
    let mut out = Vec::new();
    let mut dropped: Vec<Cow<'static, str>> = Vec::new();
    write::write(&ir, model, &mut out, &mut dropped).map_err(|r| r.message)?;
    let v = serde_json::from_slice(&out)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out)))?;
    Ok((v, dropped.into_iter().map(Cow::into_owned).collect()))
}

const CLAUDE: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";

#[test]
fn a_tool_round_trip_is_written_as_converse_wants_it() {
    let req = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in SF and Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"SF\"}"}},
                {"id": "functions.get_weather:2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "functions.get_weather:2", "content": "21C"},
            {"role": "user", "content": "Thanks. And tomorrow?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}],
        "tool_choice": "required",
        "max_tokens": 300, "temperature": 1.5, "top_p": 0.9, "stop": ["END"]
    });
    let (v, dropped) = converse(&req, CLAUDE).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(v["system"], json!([{"text": "You are terse."}]));
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{v:#}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(
        msgs[0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
    assert_eq!(msgs[1]["content"][0], json!({"text": "Checking."}));
    assert_eq!(
        msgs[1]["content"][2]["toolUse"],
        json!({"toolUseId": "functions.get_weather:2", "name": "get_weather", "input": {"location": "Paris"}})
    );
    // Both results, then the text, in one user message; no forced status.
    let results = msgs[2]["content"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0]["toolResult"],
        json!({"toolUseId": "call_1", "content": [{"text": "18C"}]})
    );
    assert_eq!(
        results[1]["toolResult"]["toolUseId"],
        "functions.get_weather:2"
    );
    assert_eq!(results[2], json!({"text": "Thanks. And tomorrow?"}));
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 1, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(v["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        v["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["location"],
        json!({"type": "string"})
    );
    assert!(v.get("model").is_none() && v.get("stream").is_none());
}

#[test]
fn what_converse_cannot_take_is_refused_or_dropped() {
    let url_image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    assert!(converse(&url_image, CLAUDE).unwrap_err().contains("inline"));
    let bad_tool = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a.b", "parameters": {"type": "object"}}}]});
    assert!(converse(&bad_tool, CLAUDE).unwrap_err().contains("`a.b`"));
    let schema = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}});
    assert!(
        converse(&schema, CLAUDE)
            .unwrap_err()
            .contains("structured output")
    );
    // Claude knobs: kept for Claude, dropped and named for another model.
    let effort = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "low", "user": "u-1", "max_tokens": 5000});
    let (v, dropped) = converse(&effort, CLAUDE).unwrap();
    assert_eq!(
        v["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(dropped, ["user"]);
    let (v, dropped) = converse(&effort, "meta.llama3-70b-instruct-v1:0").unwrap();
    assert!(v.get("additionalModelRequestFields").is_none());
    assert_eq!(dropped, ["thinking", "user"]);
    // `tool_choice: none` without tool calls in the history: no tools at all.
    let none = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]});
    let (v, _) = converse(&none, CLAUDE).unwrap();
    assert!(v.get("toolConfig").is_none(), "{v}");
}

fn collect(events: &mut Vec<String>) -> impl FnMut(Event<'_>) + '_ {
    move |e| events.push(describe(&e))
}

fn describe(e: &Event<'_>) -> String {
    match e {
        Event::Start { .. } => "start".into(),
        Event::BlockStart { index, block } => match block {
            BlockKind::Text => format!("open {index} text"),
            BlockKind::ToolUse { id, name } => format!("open {index} tool {id} {name}"),
            BlockKind::Thinking => format!("open {index} thinking"),
            BlockKind::RedactedThinking { .. } => format!("open {index} redacted"),
            BlockKind::Other => format!("open {index} other"),
        },
        Event::Delta { index, delta } => match delta {
            Delta::Text(t) => format!("{index} text {t}"),
            Delta::Json(j) => format!("{index} json {j}"),
            Delta::Thinking(t) => format!("{index} thinking {t}"),
            Delta::Signature(s) => format!("{index} signature {s}"),
        },
        Event::BlockStop { index } => format!("close {index}"),
        Event::Finish { stop, usage } => format!("finish {stop:?} {usage:?}"),
        Event::End => "end".into(),
        Event::Error { kind, message } => format!("error {kind} {message}"),
    }
}

/// A ConverseStream as event-stream frames: `(event type, payload)`, or an exception.
fn frames(events: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, payload) in events {
        if let Some(exception) = kind.strip_prefix('!') {
            eventstream::encode(
                &[
                    (":message-type", "exception"),
                    (":exception-type", exception),
                ],
                payload.as_bytes(),
                &mut out,
            );
        } else {
            eventstream::encode(
                &[
                    (":message-type", "event"),
                    (":event-type", kind),
                    (":content-type", "application/json"),
                ],
                payload.as_bytes(),
                &mut out,
            );
        }
    }
    out
}

fn decode_stream(bytes: &[u8], split: usize) -> Vec<String> {
    let mut frames_in = Frames::default();
    let mut d = decode::Decoder::default();
    let mut parser = Parser::default();
    let mut scratch = Vec::new();
    let mut events = Vec::new();
    {
        let mut emit = collect(&mut events);
        for piece in bytes.chunks(split) {
            let mut failed = None;
            frames_in
                .push(piece, |f| {
                    if let Err(e) = d.frame(&f, &mut scratch, &mut parser, &mut emit) {
                        failed = Some(e);
                    }
                })
                .unwrap();
            assert_eq!(failed, None);
        }
        frames_in.finish().unwrap();
        if let Err(e) = d.close(&mut emit) {
            emit(Event::Error {
                kind: "cut",
                message: e,
            });
        }
    }
    events
}

#[test]
fn a_stream_decodes_the_same_at_every_split() {
    let bytes = frames(&[
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Let me think"}},"p":"abcdef"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"EqQB"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Hel"}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"lo"}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_abc123","name":"get_weather"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"location\":\"S"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"F\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":2}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"usage":{"inputTokens":120,"outputTokens":41,"totalTokens":161,"cacheReadInputTokens":7},"metrics":{"latencyMs":1290}}"#,
        ),
    ]);
    let expected = vec![
        "start",
        "open 0 thinking",
        "0 thinking Let me think",
        "0 signature EqQB",
        "close 0",
        "open 1 text",
        "1 text Hel",
        "1 text lo",
        "close 1",
        "open 2 tool tooluse_abc123 get_weather",
        "2 json {\"location\":\"S",
        "2 json F\"}",
        "close 2",
        "finish Some(ToolUse) Counts { input: Some(120), output: Some(41), cache_read: Some(7), cache_write: None }",
        "end",
    ];
    for split in 1..=bytes.len() {
        assert_eq!(decode_stream(&bytes, split), expected, "split {split}");
    }
}

#[test]
fn an_exception_after_a_200_is_an_error_not_a_short_answer() {
    let bytes = frames(&[
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ),
        (
            "!throttlingException",
            r#"{"message":"Too many requests, please wait before trying again."}"#,
        ),
    ]);
    let got = decode_stream(&bytes, 5);
    assert_eq!(
        got.last().map(String::as_str),
        Some("error rate_limit_error Too many requests, please wait before trying again.")
    );
    assert!(!got.iter().any(|e| e.starts_with("finish")));
}

#[test]
fn a_cut_stream_is_reported_and_a_missing_metadata_is_not() {
    let cut = frames(&[
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ),
    ]);
    assert!(
        decode_stream(&cut, 9)
            .last()
            .unwrap()
            .starts_with("error cut")
    );
    let no_usage = frames(&[
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ),
        ("messageStop", r#"{"stopReason":"max_tokens"}"#),
    ]);
    let got = decode_stream(&no_usage, 9);
    assert_eq!(
        &got[got.len() - 3..],
        [
            "close 0",
            "finish Some(MaxTokens) Counts { input: None, output: None, cache_read: None, cache_write: None }",
            "end"
        ]
    );
}

#[test]
fn a_whole_answer_decodes_to_events() {
    let mut body = serde_json::to_vec(&json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
            {"text": "It is 18°C."},
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"location": "SF"}}}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 120, "outputTokens": 9, "totalTokens": 129, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 3},
        "metrics": {"latencyMs": 812}
    }))
    .unwrap_or_default();
    let mut events = Vec::new();
    decode::Decoder::default()
        .whole(&mut body, &mut Parser::default(), &mut collect(&mut events))
        .unwrap();
    assert_eq!(
        events,
        [
            "start",
            "open 0 thinking",
            "0 thinking hmm",
            "0 signature sig",
            "close 0",
            "open 1 text",
            "1 text It is 18°C.",
            "close 1",
            "open 2 tool t1 get_weather",
            "2 json {\"location\":\"SF\"}",
            "close 2",
            "finish Some(Refusal) Counts { input: Some(120), output: Some(9), cache_read: Some(0), cache_write: Some(3) }",
            "end",
        ]
    );
}

#[test]
fn stop_reasons_and_exceptions_map_to_the_clients_terms() {
    assert_eq!(decode::stop_of("end_turn"), Stop::EndTurn);
    assert_eq!(decode::stop_of("stop_sequence"), Stop::StopSequence(None));
    assert_eq!(
        decode::stop_of("model_context_window_exceeded"),
        Stop::ContextWindow
    );
    assert_eq!(decode::stop_of("content_filtered"), Stop::Refusal);
    assert_eq!(decode::stop_of("malformed_tool_use"), Stop::EndTurn);
    assert_eq!(
        decode::error_kind("ThrottlingException"),
        "rate_limit_error"
    );
    assert_eq!(
        decode::error_kind("validationException"),
        "invalid_request_error"
    );
    assert_eq!(
        decode::error_kind("serviceUnavailableException"),
        "overloaded_error"
    );
    assert_eq!(decode::error_kind("modelStreamErrorException"), "api_error");
    assert_eq!(
        decode::Usage {
            input: Some(1),
            ..Default::default()
        }
        .counts(),
        Counts {
            input: Some(1),
            ..Counts::default()
        }
    );
}
