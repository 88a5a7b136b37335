//! `type: bedrock` end to end: the router binary signs every request with SigV4 and the test
//! server (`tools/aws/bedrock_mock.py`) recomputes each signature with botocore's signer and
//! refuses a mismatch. OpenAI and Anthropic clients, whole and streamed answers (AWS
//! event-stream frames, translated as they arrive), tool calls, model ids with `:` and `/`,
//! session tokens, HTTP errors and an exception frame after a 200.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::time::{Duration, Instant};

use common::{Proc, admin, bedrock_mock, call, compiled, mock_requests, router_env};

const KEY: &str = "AKIDBEDROCKTEST";
const SECRET: &str = "bedrock/test+secret";
const TOKEN: &str = "FQoGZXIvYXdzEXAMPLE//TOKEN=";
const SONNET: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";

fn policy(mock: &Proc) -> String {
    format!(
        r#"
version: v1
endpoints:
  - id: aws
    type: bedrock
    region: us-east-1
    url: http://{mock}
    aws_access_key_id_env: BR_KEY
    aws_secret_access_key_env: BR_SECRET
    aws_session_token_env: BR_TOKEN
    models:
      - {{ name: claude-sonnet, upstream: "{SONNET}" }}
      - {{ name: claude-arn, upstream: "{ARN}" }}
rules:
  - default:
      route_to: aws
"#,
        mock = mock.addr
    )
}

/// The test server (with `extra` flags) and a router signing with `secret`.
fn setup_with(secret: &str, extra: &[&str]) -> (Proc, Proc, tempfile::TempDir) {
    let mut args = vec![
        "--access-key",
        KEY,
        "--secret-key",
        SECRET,
        "--session-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    let mock = bedrock_mock(&args);
    let (dir, table) = compiled(&policy(&mock));
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[("BR_KEY", KEY), ("BR_SECRET", secret), ("BR_TOKEN", TOKEN)],
    );
    (mock, router, dir)
}

fn setup(secret: &str) -> (Proc, Proc, tempfile::TempDir) {
    setup_with(secret, &[])
}

fn post(
    r: &Proc,
    path: &str,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> common::Response {
    call(r.addr, "POST", path, headers, body.to_string().as_bytes())
}

/// `data:` payloads of an SSE body, as JSON (`[DONE]` left out).
fn data(body: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]"#;

#[test]
fn openai_and_anthropic_clients_reach_bedrock_signed() {
    let (mock, router, _dir) = setup(SECRET);

    // OpenAI chat, whole.
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "claude-sonnet", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("Hello from Bedrock {SONNET}")
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 7);
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert_eq!(
        sent["target"],
        "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    );
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["system"], serde_json::json!([{"text": "Be brief."}]));
    assert!(body.get("model").is_none(), "{body}");

    // OpenAI chat, streamed, with a tool call, to a model id that is an ARN.
    let tools: serde_json::Value = serde_json::from_str(TOOLS).unwrap();
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "claude-arn", "stream": true, "stream_options": {"include_usage": true},
            "tools": tools, "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chunks = data(&r.body);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Let me check.");
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    let call_head = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .unwrap();
    assert_eq!(
        call_head["choices"][0]["delta"]["tool_calls"][0]["id"],
        "tooluse_mock1"
    );
    assert_eq!(
        call_head["choices"][0]["delta"]["tool_calls"][0]["index"],
        0
    );
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 7);
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert_eq!(
        sent["target"],
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/converse-stream"
    );

    // The tool result goes back in one user turn, with the call it answers.
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "claude-sonnet", "tools": tools, "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "tooluse_mock1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_mock1", "content": "18C"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    let sent = mock_requests(&mock).last().cloned().unwrap();
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["messages"][2]["content"][0]["toolResult"],
        serde_json::json!({"toolUseId": "tooluse_mock1", "content": [{"text": "18C"}]})
    );

    // Anthropic Messages, streamed.
    let r = post(
        &router,
        "/v1/messages",
        &serde_json::json!({"model": "claude-sonnet", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events = data(&r.body);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 7);

    // Every request carried the session token and verified under botocore's signer.
    let all = mock_requests(&mock);
    assert_eq!(all.len(), 4);
    for req in &all {
        assert_eq!(req["signature_ok"], true, "{req}");
    }

    // The audit trail: the name, the provider id, tokens.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin(&router, "GET", "/v1/audit?limit=100", b"").json()["data"]
            .as_array()
            .unwrap()
            .clone();
        if rows.len() >= 4 {
            let arn = rows.iter().find(|r| r["model"] == "claude-arn").unwrap();
            assert_eq!(arn["upstream_model"], ARN);
            assert_eq!(arn["endpoint_id"], "aws");
            assert_eq!(arn["tokens_out"], 7);
            assert_eq!(arn["stop_reason"], "tool_calls");
            break;
        }
        assert!(Instant::now() < until, "records missing: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // No credential reached the log.
    let log = router.log();
    assert!(!log.contains(SECRET) && !log.contains(TOKEN), "{log}");
}

#[test]
fn bedrock_errors_reach_the_client_in_its_dialect() {
    let (mock, router, _dir) = setup(SECRET);
    let hi = serde_json::json!({"model": "claude-sonnet", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});

    // An HTTP 429 (ThrottlingException), both dialects.
    let r = post(
        &router,
        "/v1/chat/completions",
        &hi,
        &[("x-mock-status", "429")],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ThrottlingException"),
        "{}",
        r.text()
    );
    let r = post(&router, "/v1/messages", &hi, &[("x-mock-status", "429")]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");

    // An exception frame after a 200: an error event, not a short answer.
    let mut stream = hi;
    stream["stream"] = serde_json::json!(true);
    let r = post(
        &router,
        "/v1/messages",
        &stream,
        &[("x-mock-exception", "throttlingException")],
    );
    assert_eq!(r.status, 200);
    let events = data(&r.body);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(last["error"]["type"], "rate_limit_error");
    assert!(
        !events.iter().any(|e| e["type"] == "message_stop"),
        "{events:?}"
    );
    let r = post(
        &router,
        "/v1/chat/completions",
        &stream,
        &[("x-mock-exception", "throttlingException")],
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    drop(mock);
}

#[test]
fn a_wrong_secret_is_refused_by_the_signature_check() {
    let (mock, router, _dir) = setup("not-the-secret");
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("signature"), "{}", r.text());
    let sent = mock_requests(&mock);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["signature_ok"], false);
}

#[test]
fn a_bedrock_api_key_goes_as_a_bearer_token_instead_of_a_signature() {
    let mock = bedrock_mock(&[
        "--access-key",
        KEY,
        "--secret-key",
        SECRET,
        "--api-key",
        "bedrock-api-key-123",
    ]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: aws
    type: bedrock
    region: eu-west-3
    url: http://{mock}
    api_key_env: BR_API_KEY
    models: [anthropic.claude-3-haiku-20240307-v1:0]
rules:
  - default:
      route_to: aws
"#,
        mock = mock.addr
    );
    let (_dir, table) = compiled(&yaml);
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[("BR_API_KEY", "bedrock-api-key-123")],
    );
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "anthropic.claude-3-haiku-20240307-v1:0", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = mock_requests(&mock);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["signature_ok"], true, "{}", sent[0]);
    let headers = sent[0]["headers"].as_array().unwrap();
    let auth = headers
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
        .unwrap();
    assert_eq!(auth[1], "Bearer bedrock-api-key-123");
    assert!(
        !headers
            .iter()
            .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("x-amz-date")),
        "no signature with an API key"
    );
}

#[test]
fn the_design_example_serves_its_bedrock_route_and_fallback() {
    let mock = bedrock_mock(&["--access-key", KEY, "--secret-key", SECRET]);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/policies/good");
    // The example as written, with `anthropic` unreachable and `bedrock` on the test server.
    let design = std::fs::read_to_string(root.join("design-example.yaml"))
        .unwrap()
        .replace(
            "endpoints:\n",
            &format!(
                "endpoints:\n  - id: anthropic\n    type: anthropic\n    url: http://{dead}\n    api_key_env: ANTHROPIC_API_KEY\n  - id: bedrock\n    type: bedrock\n    region: us-east-1\n    url: http://{}\n    models: [{{ name: claude-3-5-haiku, upstream: anthropic.claude-3-5-haiku-20241022-v1:0 }}]\n",
                mock.addr
            ),
        );
    let (_dir, table) = compiled(&design);
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("GPU_TOKEN", "gpu"),
            ("AWS_ACCESS_KEY_ID", KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let body = serde_json::json!({"model": "claude-3-5-haiku", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    // The enterprise tenant within its latency budget: `anthropic` is down, `bedrock` answers.
    let r = post(
        &router,
        "/v1/messages",
        &body,
        &[
            ("X-Tenant", "enterprise-acme"),
            ("X-Latency-Budget-Ms", "300"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.route(), ("bedrock".into(), "1".into()));
    assert_eq!(r.json()["type"], "message");
    // A tight cost cap: rule 2 routes to `bedrock` itself.
    let r = post(
        &router,
        "/v1/chat/completions",
        &body,
        &[("X-Cost-Budget-Usd", "0.000001")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.route(), ("bedrock".into(), "2".into()));
    let sent = mock_requests(&mock);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| s["signature_ok"] == true), "{sent:?}");
    assert_eq!(
        sent[0]["target"],
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
}

#[test]
fn bedrock_invoke_carries_anthropic_bodies_both_ways() {
    let mock = bedrock_mock(&["--access-key", KEY, "--secret-key", SECRET]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: aws-invoke
    type: bedrock
    region: us-east-1
    bedrock_api: invoke
    url: http://{mock}
    models: [{{ name: claude-sonnet, upstream: "{SONNET}" }}]
rules:
  - default:
      route_to: aws-invoke
"#,
        mock = mock.addr
    );
    let (_dir, table) = compiled(&yaml);
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[
            ("AWS_ACCESS_KEY_ID", KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let hi = serde_json::json!({"model": "claude-sonnet", "max_tokens": 64, "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}]});
    // Anthropic client, whole: the body goes with `anthropic_version`, without model/stream.
    let r = post(&router, "/v1/messages", &hi, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["content"][0]["text"],
        format!("Hello from Bedrock invoke {SONNET}")
    );
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert_eq!(
        sent["target"],
        "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/invoke"
    );
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert!(
        body.get("model").is_none() && body.get("stream").is_none(),
        "{body}"
    );
    // OpenAI client, streamed: `chunk` frames unwrapped into Anthropic events, translated.
    let r = post(
        &router,
        "/v1/chat/completions",
        &serde_json::json!({"model": "claude-sonnet", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text: String = data(&r.body)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, format!("Hello from Bedrock invoke {SONNET}"));
    assert!(r.text().contains("data: [DONE]"));
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert!(
        sent["target"]
            .as_str()
            .unwrap()
            .ends_with("/invoke-with-response-stream")
    );
    // Anthropic client, streamed, throttled after two events: an error event at the end.
    let mut stream = hi;
    stream["stream"] = serde_json::json!(true);
    let r = post(
        &router,
        "/v1/messages",
        &stream,
        &[("x-mock-exception", "throttlingException")],
    );
    let events = data(&r.body);
    assert_eq!(events.last().unwrap()["type"], "error", "{events:?}");
    assert_eq!(events.last().unwrap()["error"]["type"], "rate_limit_error");
    assert!(
        mock_requests(&mock)
            .iter()
            .all(|s| s["signature_ok"] == true)
    );
}

#[test]
fn expired_temporary_credentials_are_a_permission_error_in_each_dialect() {
    let (mock, router, _dir) = setup_with(SECRET, &["--expired"]);
    let hi = serde_json::json!({"model": "claude-sonnet", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&router, "/v1/chat/completions", &hi, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    let r = post(
        &router,
        "/v1/messages",
        &hi,
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    // The signature itself verified: the token was sent and signed; it had run out.
    assert!(
        mock_requests(&mock)
            .iter()
            .all(|s| s["signature_ok"] == true)
    );
}
