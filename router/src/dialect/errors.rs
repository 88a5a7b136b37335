//! Error bodies across dialects. An upstream's error is read whatever its shape — OpenAI's
//! `{"error": {"message", "type"}}`, Anthropic's `{"type": "error", "error": {"type",
//! "message"}}`, vLLM's `{"object": "error", "message", "type"}`, FastAPI's `{"detail"}` —
//! and written again in the client's dialect, with the status kept.

use serde::Deserialize;

use crate::dialect::Wire;
use crate::dialect::json::Obj;

/// The Anthropic error type for an HTTP status (`research/dialects.md` §A5).
#[must_use]
pub fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The OpenAI error type for an HTTP status.
#[must_use]
pub fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The status an error event inside a stream stands for, from its error type (Anthropic's
/// names, which the decoders map every dialect's errors to; OpenAI's `type`) or `code`:
/// what the router does with a stream whose first event is an error (`falls_back`).
#[must_use]
pub fn event_status(kind: Option<&str>, code: Option<&str>) -> u16 {
    match (kind.unwrap_or_default(), code.unwrap_or_default()) {
        ("overloaded_error", _) => 529,
        ("rate_limit_error" | "rate_limit_exceeded" | "requests", _)
        | (_, "rate_limit_exceeded") => 429,
        ("authentication_error", _) => 401,
        ("permission_error", _) => 403,
        ("timeout_error", _) => 504,
        ("invalid_request_error", _) => 400,
        ("not_found_error", _) => 404,
        _ => 500,
    }
}

/// Whether an error body says the prompt does not fit the model's context window, in the
/// words each provider uses: OpenAI's `context_length_exceeded` code, Anthropic's "prompt is
/// too long", vLLM's "maximum context length", Bedrock's "Input is too long", Gemini's
/// "exceeds the maximum number of tokens".
#[must_use]
pub fn says_context_overflow(body: &[u8]) -> bool {
    const SIGNS: [&[u8]; 5] = [
        b"context_length_exceeded",
        b"prompt is too long",
        b"maximum context length",
        b"nput is too long",
        b"exceeds the maximum number of tokens",
    ];
    SIGNS
        .iter()
        .any(|sign| memchr::memmem::find(body, sign).is_some())
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    error: Option<Inner>,
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Inner {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    },
    Text(String),
}

/// The type and message of an error body, when it says them.
#[must_use]
pub fn read(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    match b.error {
        Some(Inner::Object { message, kind }) => (kind, message),
        Some(Inner::Text(message)) => (None, Some(message)),
        None => {
            let detail = b.detail.map(|d| match d {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
            let kind = b.kind.filter(|k| k != "error");
            (kind, b.message.or(detail))
        }
    }
}

/// Writes the error an upstream answered with `status` and `body` as the client's dialect
/// says errors. `endpoint` names it in a message made up for a body that says nothing.
pub fn translate(status: u16, body: &[u8], to: Wire, endpoint: &str, out: &mut Vec<u8>) {
    let (kind, message) = read(body);
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default())
            .trim()
            .to_owned();
        if text.is_empty() {
            format!("endpoint `{endpoint}` answered {status}")
        } else {
            format!("endpoint `{endpoint}` answered {status}: {text}")
        }
    });
    match to {
        Wire::Anthropic => {
            let kind = kind
                .as_deref()
                .map(crate::dialect::anthropic::encode::error_type)
                .filter(|k| *k != "api_error" || status >= 500)
                .unwrap_or_else(|| anthropic_type(status));
            crate::dialect::anthropic::encode::write_error_body(out, kind, &message);
        }
        // (No client speaks Bedrock.)
        Wire::OpenAi
        | Wire::Bedrock
        | Wire::BedrockInvoke
        | Wire::Gemini
        | Wire::VertexAnthropic => {
            let kind = kind.as_deref().unwrap_or_else(|| openai_type(status));
            write_openai_error(out, kind, &message, None, None);
        }
    }
}

/// An OpenAI error body: `{"error":{"message","type","param","code"}}`.
pub fn write_openai_error(
    out: &mut Vec<u8>,
    kind: &str,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) {
    let mut o = Obj::new(out);
    let mut e = Obj::new(o.key("error"));
    e.str("message", message)
        .str("type", kind)
        .opt_str("param", param)
        .opt_str("code", code);
    e.end();
    o.end();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn to(wire: Wire, status: u16, body: &str) -> serde_json::Value {
        let mut out = Vec::new();
        translate(status, body.as_bytes(), wire, "e1", &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn every_shape_is_read_and_rewritten() {
        let v = to(
            Wire::OpenAi,
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let v = to(
            Wire::Anthropic,
            400,
            r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "bad");
        // vLLM's shape, and a type Anthropic clients do not know: typed by status.
        let v = to(
            Wire::Anthropic,
            404,
            r#"{"object":"error","message":"no such model","type":"NotFoundError","code":404}"#,
        );
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["message"], "no such model");
        let v = to(Wire::Anthropic, 529, "<html>busy</html>");
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(
            v["error"]["message"],
            "endpoint `e1` answered 529: <html>busy</html>"
        );
        let v = to(Wire::OpenAi, 502, r#"{"detail":"gateway"}"#);
        assert_eq!(v["error"]["message"], "gateway");
        assert_eq!(v["error"]["type"], "server_error");
    }

    #[test]
    fn context_overflow_is_read_in_each_providers_words() {
        for body in [
            &br#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#[..],
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            br#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","code":400}"#,
            br#"{"message":"Input is too long for requested model."}"#,
            br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
        ] {
            assert!(says_context_overflow(body), "{}", String::from_utf8_lossy(body));
        }
        assert!(!says_context_overflow(
            br#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","code":"invalid_value"}}"#
        ));
    }

    #[test]
    fn error_events_stand_for_the_status_the_router_acts_on() {
        assert_eq!(event_status(Some("overloaded_error"), None), 529);
        assert_eq!(event_status(Some("rate_limit_error"), None), 429);
        assert_eq!(
            event_status(Some("server_error"), Some("rate_limit_exceeded")),
            429
        );
        assert_eq!(event_status(Some("api_error"), None), 500);
        assert_eq!(event_status(None, None), 500);
        assert_eq!(event_status(Some("invalid_request_error"), None), 400);
        assert_eq!(event_status(Some("authentication_error"), None), 401);
    }
}
