//! The OpenAI-compatible side of the mock: chat completions (JSON and SSE, with tool calls)
//! and embeddings.

use futures_lite::AsyncWriteExt as _;
use futures_lite::io::AsyncWrite;
use switchyard::gateway::body::write_json_string;

use crate::{Plan, chunked_events, response, send_error_status, tool_arguments};

/// Answers a chat completion; `false` when the connection must end.
pub(crate) async fn chat<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    body: &[u8],
) -> bool {
    let request = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let model = request
        .get("model")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let stream = request.get("stream") == Some(&serde_json::Value::Bool(true));
    let no_usage = plan.fault.as_deref() == Some("no-usage");
    let include_usage = !no_usage
        && request.pointer("/stream_options/include_usage") == Some(&serde_json::Value::Bool(true));
    let prompt_tokens = body.len().div_ceil(4) as u64;
    if plan.status >= 400 {
        let err = error_body(plan);
        return send_error_status(s, plan, &err).await;
    }
    let piece = "x".repeat(plan.chunk_bytes);
    let finish = plan
        .finish
        .clone()
        .unwrap_or_else(|| if plan.tools > 0 { "tool_calls" } else { "stop" }.to_owned());
    let cached = plan.cache_read;
    let usage_json = |completion: usize| {
        format!(
            "{{\"prompt_tokens_details\":{{\"cached_tokens\":{cached}}},\"completion_tokens\":{completion},\"prompt_tokens\":{},\"total_tokens\":{}}}",
            prompt_tokens + cached,
            prompt_tokens + cached + completion as u64
        )
    };
    let completion = plan.chunks + plan.tools * 3;
    if !stream {
        let mut b = Vec::new();
        b.extend_from_slice(b"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":");
        write_json_string(&mut b, &model);
        b.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
        );
        write_json_string(&mut b, &piece.repeat(plan.chunks));
        if plan.tools > 0 {
            b.extend_from_slice(b",\"tool_calls\":[");
            for i in 0..plan.tools {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(
                    format!(
                        "{{\"id\":\"call_mock_{i}\",\"type\":\"function\",\"function\":{{\"name\":\"tool_{i}\",\"arguments\":"
                    )
                    .as_bytes(),
                );
                write_json_string(&mut b, &tool_arguments(i).concat());
                b.extend_from_slice(b"}}");
            }
            b.push(b']');
        }
        b.extend_from_slice(b"},\"finish_reason\":");
        write_json_string(&mut b, &finish);
        b.extend_from_slice(b"}]");
        if no_usage {
            b.push(b'}');
        } else {
            b.extend_from_slice(b",\"usage\":");
            b.extend_from_slice(usage_json(completion).as_bytes());
            b.push(b'}');
        }
        if plan.fault.as_deref() == Some("no-length") {
            let mut resp =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                    .to_vec();
            resp.extend_from_slice(&b);
            let _ = s.write_all(&resp).await;
            let _ = s.flush().await;
            return false;
        }
        if plan.fault.as_deref() == Some("short-body") {
            let resp = response(200, "application/json", &b, Some(b.len() + 100));
            let _ = s.write_all(&resp).await;
            let _ = s.flush().await;
            return false;
        }
        let mut resp = Vec::new();
        if plan.fault.as_deref() == Some("early-hints") {
            resp.extend_from_slice(
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
            );
        }
        resp.extend_from_slice(&response(200, "application/json", &b, None));
        let _ = s.write_all(&resp).await;
        return s.flush().await.is_ok();
    }
    let event = |delta: &str, finish: &str| {
        let mut e = Vec::new();
        e.extend_from_slice(b"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":");
        write_json_string(&mut e, &model);
        e.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        e.extend_from_slice(delta.as_bytes());
        e.extend_from_slice(b",\"finish_reason\":");
        e.extend_from_slice(finish.as_bytes());
        e.extend_from_slice(b"}]");
        if include_usage {
            e.extend_from_slice(b",\"usage\":null");
        }
        e.extend_from_slice(b"}\n\n");
        e
    };
    let mut events = vec![event("{\"role\":\"assistant\",\"content\":\"\"}", "null")];
    let mut delta = Vec::new();
    delta.extend_from_slice(b"{\"content\":");
    write_json_string(&mut delta, &piece);
    delta.push(b'}');
    let delta = String::from_utf8_lossy(&delta).into_owned();
    for _ in 0..plan.chunks {
        events.push(event(&delta, "null"));
    }
    // Tool calls one after the other, each started with its id and name, then its
    // arguments in pieces, as OpenAI streams them.
    for i in 0..plan.tools {
        events.push(event(
            &format!(
                "{{\"tool_calls\":[{{\"index\":{i},\"id\":\"call_mock_{i}\",\"type\":\"function\",\"function\":{{\"name\":\"tool_{i}\",\"arguments\":\"\"}}}}]}}"
            ),
            "null",
        ));
        for piece in tool_arguments(i) {
            let mut args = Vec::new();
            write_json_string(&mut args, &piece);
            events.push(event(
                &format!(
                    "{{\"tool_calls\":[{{\"index\":{i},\"function\":{{\"arguments\":{}}}}}]}}",
                    String::from_utf8_lossy(&args)
                ),
                "null",
            ));
        }
    }
    if plan.fault.as_deref() == Some("stream-error") {
        events.push(
            b"data: {\"error\":{\"message\":\"mock upstream failed mid-stream\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"
                .to_vec(),
        );
        return chunked_events(s, fd, plan, &events).await;
    }
    if plan.fault.as_deref() == Some("truncate") {
        // A clean end of the body, without a finish or `[DONE]`.
        return chunked_events(s, fd, plan, &events).await;
    }
    let mut finish_json = Vec::new();
    write_json_string(&mut finish_json, &finish);
    events.push(event("{}", &String::from_utf8_lossy(&finish_json)));
    if include_usage {
        events.push(
            format!(
                "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"{model}\",\"choices\":[],\"usage\":{}}}\n\n",
                usage_json(completion)
            )
            .into_bytes(),
        );
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    chunked_events(s, fd, plan, &events).await
}

/// Answers an embeddings request: 8 numbers per input.
pub(crate) async fn embeddings<S: AsyncWrite + Unpin>(s: &mut S, plan: &Plan, body: &[u8]) -> bool {
    if plan.status >= 400 {
        let err = error_body(plan);
        return send_error_status(s, plan, &err).await;
    }
    let request = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let inputs = match request.get("input") {
        Some(serde_json::Value::Array(a)) => a.len(),
        _ => 1,
    };
    let model = request
        .get("model")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown");
    let data: Vec<serde_json::Value> = (0..inputs)
        .map(|i| {
            serde_json::json!({
                "object": "embedding",
                "index": i,
                "embedding": (0..8).map(|j| f64::from(u32::try_from(i * 8 + j).unwrap_or(0)) / 100.0).collect::<Vec<_>>(),
            })
        })
        .collect();
    let tokens = body.len().div_ceil(4);
    let answer = serde_json::json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    let b = answer.to_string();
    let _ = s
        .write_all(&response(200, "application/json", b.as_bytes(), None))
        .await;
    s.flush().await.is_ok()
}

/// An OpenAI error body with the plan's `code` (`--error-code`, `x-mock-error-code`).
fn error_body(plan: &Plan) -> Vec<u8> {
    let mut err =
        br#"{"error":{"message":"mock upstream error","type":"server_error","param":null,"code":"#
            .to_vec();
    write_json_string(&mut err, &plan.error_code);
    err.extend_from_slice(b"}}");
    err
}
