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
}
