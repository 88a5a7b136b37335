//! The Bedrock side of the mock, for load benchmarks: `POST …/model/{id}/converse` (a Converse
//! answer) and `…/converse-stream` (AWS event-stream frames: `messageStart`, a text delta per
//! chunk, `contentBlockStop`, `messageStop`, `metadata` with usage). Signatures are not
//! checked here; `tools/aws/bedrock_mock.py` checks them in the tests.

use futures_lite::AsyncWriteExt as _;
use futures_lite::io::AsyncWrite;
use serde_json::json;
use switchyard::dialect::eventstream;

use crate::{Plan, chunked_frames, response, send_error_status};

fn frame(kind: &str, payload: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    eventstream::encode(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload.to_string().as_bytes(),
        &mut out,
    );
    out
}

/// Answers a Converse or ConverseStream request; `false` when the connection must end.
pub(crate) async fn converse<S: AsyncWrite + Unpin>(
    s: &mut S,
    fd: Option<i32>,
    plan: &Plan,
    body: &[u8],
    stream: bool,
) -> bool {
    if plan.status >= 400 {
        let err = json!({"message": "mock upstream error"});
        return send_error_status(s, plan, err.to_string().as_bytes()).await;
    }
    let input = body.len().div_ceil(4) as u64;
    let output = plan.chunks as u64;
    let usage =
        json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output});
    let text = "x".repeat(plan.chunk_bytes);
    if !stream {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text.repeat(plan.chunks)}]}},
            "stopReason": "end_turn",
            "usage": usage,
            "metrics": {"latencyMs": 1},
        });
        let b = answer.to_string();
        let _ = s
            .write_all(&response(200, "application/json", b.as_bytes(), None))
            .await;
        return s.flush().await.is_ok();
    }
    let mut frames = vec![frame("messageStart", &json!({"role": "assistant"}))];
    for _ in 0..plan.chunks {
        frames.push(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": text}}),
        ));
    }
    frames.push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    frames.push(frame("messageStop", &json!({"stopReason": "end_turn"})));
    frames.push(frame(
        "metadata",
        &json!({"usage": usage, "metrics": {"latencyMs": 1}}),
    ));
    chunked_frames(s, fd, plan, &frames, "application/vnd.amazon.eventstream").await
}
