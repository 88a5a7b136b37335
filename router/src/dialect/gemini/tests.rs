//! The Gemini writer and decoder on the shapes of `research/dialects.md` §D2.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::write;
use crate::dialect::Wire;
use crate::dialect::de::Parser;
use crate::dialect::translate::{Options, Translator};
use crate::dialect::{anthropic, openai};

/// An OpenAI chat request, read into the intermediate form and written for Gemini.
fn gemini(openai_body: &Value) -> Result<(Value, Vec<String>), String> {
    let mut body = serde_json::to_vec(openai_body).unwrap_or_default();
    let mut parser = Parser::default();
    let ir = openai::read::read(&mut body, &mut parser).map_err(|r| r.message)?;
    let mut out = Vec::new();
    let mut dropped: Vec<Cow<'static, str>> = Vec::new();
    write::write(&ir, &mut out, &mut dropped).map_err(|r| r.message)?;
    let v = serde_json::from_slice(&out)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out)))?;
    Ok((v, dropped.into_iter().map(Cow::into_owned).collect()))
}

#[test]
fn a_tool_round_trip_is_written_as_gemini_wants_it() {
    let req = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in SF and Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a__thought__c2lnLWE=", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"SF\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            // Answered out of order: Gemini pairs by position, so they are put back in call order.
            {"role": "tool", "tool_call_id": "call_b", "content": "09:00"},
            {"role": "tool", "tool_call_id": "call_a__thought__c2lnLWE=", "content": "{\"temp\":18}"},
            {"role": "user", "content": "Thanks."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
                "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "additionalProperties": false,
                    "properties": {"location": {"$ref": "#/$defs/place"}, "unit": {"type": ["string", "null"], "enum": ["C", "F"]}},
                    "required": ["location"],
                    "$defs": {"place": {"type": "string", "description": "a city"}}}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 300, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "user": "u-1"
    });
    let (v, dropped) = gemini(&req).unwrap();
    assert_eq!(dropped, ["user"]);
    assert_eq!(
        v["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}, {"text": "Use metric units."}]})
    );
    let contents = v["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{v:#}");
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0],
        json!({"functionCall": {"name": "get_weather", "args": {"location": "SF"}}, "thoughtSignature": "c2lnLWE="})
    );
    assert_eq!(
        contents[1]["parts"][1],
        json!({"functionCall": {"name": "get_time", "args": {}}})
    );
    // Both results in one user turn, in call order, named; no ids (Vertex refuses them).
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        contents[2]["parts"],
        json!([
            {"functionResponse": {"name": "get_weather", "response": {"output": {"temp": 18}}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "09:00"}}},
            {"text": "Thanks."}
        ])
    );
    let decl = &v["tools"][0]["functionDeclarations"];
    assert_eq!(
        decl[0]["parameters"],
        json!({"type": "object", "required": ["location"], "properties": {
            "location": {"type": "string", "description": "a city"},
            "unit": {"type": "string", "nullable": true, "enum": ["C", "F"]}}})
    );
    // A function of no parameters has none.
    assert_eq!(decl[1], json!({"name": "get_time"}));
    assert_eq!(
        v["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        v["generationConfig"],
        json!({"maxOutputTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
}

#[test]
fn what_gemini_cannot_take_is_refused_by_name() {
    let orphan = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_zz", "content": "18C"}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {}}}]});
    let err = gemini(&orphan).unwrap_err();
    assert!(err.contains("call_zz") && err.contains("name"), "{err}");
    let remote = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]});
    let err = gemini(&remote).unwrap_err();
    assert!(err.contains("URL") || err.contains("gs://"), "{err}");
    let recursive = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {
            "type": "object", "properties": {"n": {"$ref": "#/$defs/node"}},
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}}}}]});
    let err = gemini(&recursive).unwrap_err();
    assert!(
        err.contains("tool `t`") && err.contains("recursive"),
        "{err}"
    );
    // Structured output and thinking have Gemini equivalents.
    let shaped = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}}}});
    let (v, _) = gemini(&shaped).unwrap();
    assert_eq!(
        v["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        v["generationConfig"]["responseSchema"],
        json!({"type": "object", "properties": {"a": {"type": "integer"}}})
    );
    assert_eq!(
        v["generationConfig"]["thinkingConfig"]["includeThoughts"],
        true
    );
}

fn options(stream: bool) -> Options<'static> {
    Options {
        stream,
        include_usage: true,
        created: 1_700_000_000,
        id: "fallback-id",
        model: "fallback-model",
        error_status: None,
        endpoint: "vertex",
    }
}

/// Translates a Gemini answer for a client of `to`, fed `split` bytes at a time.
fn translate(to: Wire, stream: bool, body: &[u8], split: usize) -> (String, Result<(), String>) {
    let mut parser = Parser::default();
    let o = options(stream);
    let mut t = Translator::new(Wire::Gemini, to, &o, &mut parser);
    let mut out = Vec::new();
    for piece in body.chunks(split) {
        if let Err(e) = t.push(piece, &mut out) {
            return (String::from_utf8_lossy(&out).into_owned(), Err(e));
        }
    }
    let done = t.finish(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), done)
}

fn sse(chunks: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(c.to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
    out
}

fn stream_with_a_call() -> Vec<u8> {
    sse(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me ", "thought": true}]}}],
               "responseId": "r1", "modelVersion": "gemini-2.5-flash",
               "usageMetadata": {"promptTokenCount": 120, "cachedContentTokenCount": 20}}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "check.", "thought": true, "thoughtSignature": "c2ln"}]}}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking "}, {"text": "now."}]}}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLWE="}]},
            "finishReason": "STOP"}]}),
        json!({"usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 9, "thoughtsTokenCount": 4,
                                 "cachedContentTokenCount": 20, "totalTokenCount": 133}}),
    ])
}

#[test]
fn a_gemini_stream_translates_the_same_at_every_split() {
    let body = stream_with_a_call();
    let (whole, done) = translate(Wire::OpenAi, true, &body, body.len());
    assert_eq!(done, Ok(()));
    for split in 1..40 {
        assert_eq!(
            translate(Wire::OpenAi, true, &body, split).0,
            whole,
            "split {split}"
        );
    }
    let chunks: Vec<Value> = whole
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Checking now.");
    let call = chunks
        .iter()
        .find_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .cloned()
        })
        .unwrap();
    // The minted id carries the signature back on the next turn.
    assert_eq!(call["id"], "call_r1_1__thought__c2lnLWE=");
    assert_eq!(call["function"]["name"], "get_weather");
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 120);
    assert_eq!(usage["completion_tokens"], 13);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 20);
    assert!(whole.ends_with("data: [DONE]\n\n"), "{whole}");

    // For an Anthropic client: thinking with its signature, text, tool use; cache apart.
    let (out, done) = translate(Wire::Anthropic, true, &body, 7);
    assert_eq!(done, Ok(()));
    assert!(
        out.contains(r#""type":"thinking_delta","thinking":"Let me ""#),
        "{out}"
    );
    assert!(
        out.contains(r#""type":"signature_delta","signature":"c2ln""#),
        "{out}"
    );
    assert!(out.contains(r#""stop_reason":"tool_use""#), "{out}");
    assert!(out.contains(r#""input_tokens":100"#), "{out}");
    assert!(out.contains(r#""cache_read_input_tokens":20"#), "{out}");
    assert!(out.contains("event: message_stop"), "{out}");
}

#[test]
fn errors_and_cuts_are_never_a_short_answer() {
    let body = sse(&[
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
        json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}),
    ]);
    let (out, _) = translate(Wire::Anthropic, true, &body, 5);
    assert!(out.contains("event: error"), "{out}");
    assert!(
        out.contains("rate_limit_error") && out.contains("Resource has been exhausted"),
        "{out}"
    );
    assert!(!out.contains("message_stop"), "{out}");
    // No finishReason before the end: cut short.
    let body = sse(&[json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]})]);
    let (out, done) = translate(Wire::OpenAi, true, &body, 3);
    assert!(done.unwrap_err().contains("finishReason"));
    assert!(!out.contains("[DONE]"), "{out}");
}

#[test]
fn whole_answers_map_finishes_and_usage() {
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me check."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-2.5-flash", "responseId": "r9"});
    let (out, done) = translate(Wire::OpenAi, false, answer.to_string().as_bytes(), 1000);
    assert_eq!(done, Ok(()));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["content"], "Let me check.");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let blocked = json!({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]});
    let (out, _) = translate(Wire::Anthropic, false, blocked.to_string().as_bytes(), 1000);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    let prompt_blocked = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
    let (out, _) = translate(
        Wire::OpenAi,
        false,
        prompt_blocked.to_string().as_bytes(),
        1000,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let long = json!({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]});
    let (out, _) = translate(Wire::OpenAi, false, long.to_string().as_bytes(), 1000);
    assert!(out.contains(r#""finish_reason":"length""#), "{out}");
}

#[test]
fn claude_on_vertex_gets_its_version_and_no_model() {
    let mut body =
        br#"{"model":"claude-x","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
            .to_vec();
    let mut parser = Parser::default();
    let ir = anthropic::read::read(&mut body, &mut parser).unwrap();
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    anthropic::write::write_vertex(&ir, &mut out, &mut dropped).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(v["stream"], true);
    assert!(v.get("model").is_none(), "{v}");
}

proptest::proptest! {
    /// Any bytes, and any cut or corruption of a real stream: no panic, and the client gets
    /// the same bytes however the input is split.
    #[test]
    fn any_input_decodes_the_same_at_any_split(
        noise in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        cut in proptest::num::usize::ANY,
        flip in proptest::num::usize::ANY,
        split in 1usize..64,
        anthropic in proptest::bool::ANY,
    ) {
        let to = if anthropic { Wire::Anthropic } else { Wire::OpenAi };
        let mut real = stream_with_a_call();
        real.truncate(cut % (real.len() + 1));
        let at = flip % (real.len() + 1);
        if let Some(b) = real.get_mut(at) {
            *b ^= 0x20;
        }
        for input in [noise, real] {
            let whole = translate(to, true, &input, input.len().max(1));
            let pieces = translate(to, true, &input, split);
            proptest::prop_assert_eq!(whole, pieces);
            let _ = translate(to, false, &input, split);
        }
    }
}
