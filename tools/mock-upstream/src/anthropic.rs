//! The Anthropic side of the mock: `POST …/v1/messages` (JSON and the Messages event stream:
//! text, `tool_use` with `input_json_delta` pieces, thinking with `signature_delta`, `ping`)
//! and `POST …/v1/messages/count_tokens`.

use futures_lite::AsyncWriteExt as _;
use futures_lite::io::AsyncWrite;
use serde_json::json;

use crate::{Plan, chunked_events, response, send_error_status, tool_arguments};

/// The Anthropic error type for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn event(name: &str, data: &serde_json::Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// Answers a Messages request; `false` when the connection must end.
pub(crate) async fn messages<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    body: &[u8],
) -> bool {
    if plan.status >= 400 {
        let err = json!({
            "type": "error",
            "error": {"type": error_type(plan.status), "message": "mock upstream error"},
        });
        return send_error_status(s, plan, err.to_string().as_bytes()).await;
    }
    let request = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let model = request
        .get("model")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let stream = request.get("stream") == Some(&serde_json::Value::Bool(true));
    let input = body.len().div_ceil(4) as u64;
    let text = "x".repeat(plan.chunk_bytes);
    let output = (plan.chunks + plan.tools * 3 + usize::from(plan.thinking) * 2) as u64;
    let stop = plan.finish.clone().unwrap_or_else(|| {
        if plan.tools > 0 {
            "tool_use"
        } else {
            "end_turn"
        }
        .to_owned()
    });
    let usage = json!({
        "input_tokens": input,
        "cache_creation_input_tokens": plan.cache_write,
        "cache_read_input_tokens": plan.cache_read,
        "output_tokens": output,
    });
    if !stream {
        let mut content = Vec::new();
        if plan.thinking {
            content.push(json!({"type": "thinking", "thinking": "Let me think. Yes.", "signature": "sig-mock"}));
        }
        if plan.chunks > 0 {
            content.push(json!({"type": "text", "text": text.repeat(plan.chunks)}));
        }
        for i in 0..plan.tools {
            let args: serde_json::Value =
                serde_json::from_str(&tool_arguments(i).concat()).unwrap_or_default();
            content.push(json!({"type": "tool_use", "id": format!("toolu_mock_{i}"), "name": format!("tool_{i}"), "input": args}));
        }
        let answer = json!({
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": null,
            "usage": usage,
        });
        let b = answer.to_string();
        let _ = s
            .write_all(&response(200, "application/json", b.as_bytes(), None))
            .await;
        return s.flush().await.is_ok();
    }
    let mut events = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": plan.cache_write,
                          "cache_read_input_tokens": plan.cache_read, "output_tokens": 1},
            }}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut index = 0;
    if plan.thinking {
        events.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})));
        for piece in ["Let me think.", " Yes."] {
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}})));
        }
        events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig-mock"}})));
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    if plan.chunks > 0 {
        events.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for _ in 0..plan.chunks {
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}})));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    if plan.fault.as_deref() == Some("unknown-event") {
        events.push(event(
            "future_event",
            &json!({"type": "future_event", "detail": "a type this router does not know"}),
        ));
    }
    for i in 0..plan.tools {
        events.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_mock_{i}"), "name": format!("tool_{i}"), "input": {}}})));
        events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}})));
        for piece in tool_arguments(i) {
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    match plan.fault.as_deref() {
        Some("stream-error") => {
            events.push(event("error", &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
        }
        Some("truncate") => {}
        _ => {
            events.push(event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}})));
            events.push(event("message_stop", &json!({"type": "message_stop"})));
        }
    }
    chunked_events(s, fd, plan, &events).await
}

/// Answers a token count.
pub(crate) async fn count_tokens<S: AsyncWrite + Unpin>(
    s: &mut S,
    plan: &Plan,
    body: &[u8],
) -> bool {
    if plan.status >= 400 {
        let err = json!({"type": "error", "error": {"type": error_type(plan.status), "message": "mock upstream error"}});
        return send_error_status(s, plan, err.to_string().as_bytes()).await;
    }
    let b = json!({"input_tokens": body.len().div_ceil(4)}).to_string();
    let _ = s
        .write_all(&response(200, "application/json", b.as_bytes(), None))
        .await;
    s.flush().await.is_ok()
}
