//! The Anthropic dialect and embeddings end to end: the router binary between raw HTTP
//! clients and the mock upstream (both dialects), with keys, limits and the audit trail on.
//! The official SDKs drive the same paths in `sdk.rs`.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    Conn, Proc, admin, call, compile, issue_key, mock, mock_requests, request, router_with_auth,
};

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Two endpoints of each dialect on the mock, one dead, and a tenant limited to one request
/// a minute.
fn policy(mock: SocketAddr, dead: u16) -> String {
    format!(
        r#"
version: v1
endpoints:
  - id: claude
    type: anthropic
    url: http://{mock}
    models: [claude-sonnet-4-5, claude-haiku-4-5]
    api_key_env: T_ANTHROPIC_KEY
    pricing: {{ input_per_1k: 0.003, output_per_1k: 0.015 }}
  - id: gpu
    type: vllm
    url: http://{mock}/v1
    models: [text-embedding-3-small, llama-3.1-70b]
    api_key_env: T_GPU_KEY
    pricing: {{ input_per_1k: 0.001, output_per_1k: 0.002 }}
  - id: claude-down
    type: anthropic
    url: http://127.0.0.1:{dead}
    models: [claude-down]
    api_key_env: T_ANTHROPIC_KEY
tenants:
  - id: acme
    model_allowlist: [claude-sonnet-4-5, claude-haiku-4-5, llama-3.1-70b, text-embedding-3-small, claude-down]
  - id: tiny
    rate_limit_rpm: 1
rules:
  - name: claude-first
    match:
      data_class: claude-first
    route_to: claude
    fallback: [gpu]
  - name: claude-only
    match:
      data_class: claude-only
    route_to: claude
  - name: llama
    match:
      model: [llama-3.1-70b, text-embedding-3-small]
    route_to: gpu
  - name: down
    match:
      model: claude-down
    route_to: claude-down
  - default:
      route_to: claude
"#
    )
}

const ENV: [(&str, &str); 2] = [
    ("T_ANTHROPIC_KEY", "sk-ant-upstream-secret"),
    ("T_GPU_KEY", "sk-gpu-upstream-secret"),
];

struct Setup {
    _dir: tempfile::TempDir,
    mock: Proc,
    router: Proc,
    key: String,
}

fn setup(extra: &[&str]) -> Setup {
    let mock = mock(&["--chunks", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(&policy(mock.addr, dead_port()), &table, 1);
    let mut args = vec!["--table", table.to_str().unwrap(), "--cores", "2"];
    args.extend_from_slice(extra);
    let router = router_with_auth(&args, &ENV);
    let (_, key) = issue_key(&router, "acme", "{}");
    Setup {
        _dir: dir,
        mock,
        router,
        key,
    }
}

fn messages_body(model: &str, stream: bool) -> Vec<u8> {
    serde_json::json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hello from the test"}],
    })
    .to_string()
    .into_bytes()
}

/// The last request the mock received.
fn last_upstream(mock: &Proc) -> serde_json::Value {
    mock_requests(mock).last().cloned().unwrap()
}

fn upstream_header(req: &serde_json::Value, name: &str) -> Option<String> {
    req["headers"].as_array().unwrap().iter().find_map(|h| {
        h[0].as_str()
            .unwrap()
            .eq_ignore_ascii_case(name)
            .then(|| h[1].as_str().unwrap().to_owned())
    })
}

/// The audit records of `ids`, polled until every one has reached the trail.
fn audit_rows(r: &Proc, ids: &[&str]) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = admin(r, "GET", "/v1/audit?limit=1000", b"");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let rows = resp.json()["data"].as_array().unwrap().clone();
        let found: Vec<serde_json::Value> = ids
            .iter()
            .filter_map(|id| rows.iter().find(|row| row["request_id"] == *id).cloned())
            .collect();
        if found.len() == ids.len() {
            return found;
        }
        assert!(
            Instant::now() < until,
            "records missing: {ids:?} in {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Server-Sent Events as (name, data) pairs.
fn events(body: &[u8]) -> Vec<(Option<String>, serde_json::Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
            let value = if data == "[DONE]" {
                serde_json::Value::String(data.to_owned())
            } else {
                serde_json::from_str(data).unwrap()
            };
            Some((name, value))
        })
        .collect()
}

#[test]
fn messages_pass_through_to_anthropic_with_the_endpoint_key_and_the_clients_version() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.key);
    // Current SDKs send the key as a bearer token and their own API version.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages",
        &[
            ("Authorization", &auth),
            ("anthropic-version", "2026-10-21"),
            (
                "anthropic-beta",
                "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19",
            ),
        ],
        &messages_body("claude-sonnet-4-5", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(r.route().0, "claude");
    let up = last_upstream(&s.mock);
    assert_eq!(up["target"], "/v1/messages");
    assert_eq!(
        upstream_header(&up, "x-api-key").as_deref(),
        Some("sk-ant-upstream-secret"),
        "the endpoint's key, never the client's"
    );
    assert_eq!(upstream_header(&up, "authorization"), None);
    assert_eq!(
        upstream_header(&up, "anthropic-version").as_deref(),
        Some("2026-10-21")
    );
    assert_eq!(
        upstream_header(&up, "anthropic-beta").as_deref(),
        Some("prompt-caching-2024-07-31,token-efficient-tools-2025-02-19")
    );
    // Byte for byte but for the model (here the same).
    assert_eq!(
        up["body"].as_str().unwrap().as_bytes(),
        messages_body("claude-sonnet-4-5", false)
    );

    // Older SDKs and Claude Code send `x-api-key`; without a version the default goes up.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", &s.key)],
        &messages_body("claude-sonnet-4-5", true),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = events(&r.body);
    assert_eq!(ev.first().unwrap().0.as_deref(), Some("message_start"));
    assert_eq!(ev.last().unwrap().0.as_deref(), Some("message_stop"));
    let up = last_upstream(&s.mock);
    assert_eq!(
        upstream_header(&up, "anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(
        upstream_header(&up, "x-api-key").as_deref(),
        Some("sk-ant-upstream-secret")
    );

    // `x-api-key` is the Messages API's: the OpenAI paths want a bearer token.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-api-key", &s.key)],
        &common::chat_body("claude-sonnet-4-5", false),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "missing_api_key");

    // count_tokens goes to Anthropic as it is.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages/count_tokens",
        &[("x-api-key", &s.key)],
        br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"count me"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        last_upstream(&s.mock)["target"],
        "/v1/messages/count_tokens"
    );
}

#[test]
fn openai_clients_reach_claude_and_anthropic_clients_reach_openai_servers() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.key);
    // OpenAI chat → Anthropic upstream, streamed, with two tool calls.
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "stream": true,
        "stream_options": {"include_usage": true},
        "seed": 7,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "tool_0", "parameters": {"type": "object"}}}],
    });
    let r = call(
        s.router.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &auth), ("x-mock-tools", "2")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-dropped"), Some("seed"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let up = last_upstream(&s.mock);
    assert_eq!(up["target"], "/v1/messages");
    let sent: serde_json::Value = serde_json::from_str(up["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["system"][0]["text"], "Be brief.");
    assert_eq!(
        sent["max_tokens"], 4096,
        "Anthropic requires it: the default"
    );
    let ev = events(&r.body);
    let mut args = [String::new(), String::new()];
    let mut finish = None;
    let mut usage = None;
    for (_, e) in &ev {
        if let Some(calls) = e["choices"][0]["delta"]["tool_calls"].as_array() {
            for c in calls {
                let i = usize::try_from(c["index"].as_u64().unwrap()).unwrap();
                args[i].push_str(c["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        if let Some(f) = e["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
        if e["usage"].is_object() {
            usage = Some(e["usage"].clone());
        }
    }
    assert_eq!(
        args.map(|a| serde_json::from_str::<serde_json::Value>(&a).unwrap()),
        [
            serde_json::json!({"city": "Paris", "call": 0}),
            serde_json::json!({"city": "Paris", "call": 1})
        ]
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(ev.last().unwrap().1, "[DONE]");

    // Anthropic Messages → OpenAI-compatible upstream, JSON, with a tool call.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", &s.key), ("x-mock-tools", "1")],
        &messages_body("llama-3.1-70b", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-length").is_some());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    let blocks = v["content"].as_array().unwrap();
    assert_eq!(blocks.last().unwrap()["type"], "tool_use");
    assert_eq!(blocks.last().unwrap()["input"]["city"], "Paris");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let up = last_upstream(&s.mock);
    assert_eq!(up["target"], "/v1/chat/completions");
    assert_eq!(
        upstream_header(&up, "authorization").as_deref(),
        Some("Bearer sk-gpu-upstream-secret")
    );
    assert_eq!(upstream_header(&up, "anthropic-version"), None);
}

/// Reads a chunked response's head and first chunk; returns how long the first chunk took
/// and how long the whole body took.
fn first_and_last(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Duration, Duration, Vec<u8>) {
    let started = Instant::now();
    let mut c = Conn::open(addr);
    c.send(&request("POST", path, headers, body));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let mut all = c.read_chunk().unwrap();
    let first = started.elapsed();
    while let Some(chunk) = c.read_chunk() {
        all.extend_from_slice(&chunk);
    }
    (first, started.elapsed(), all)
}

#[test]
fn translated_streams_reach_the_client_before_the_upstream_finishes() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.key);
    // Eight events 250 ms apart: the upstream takes about two seconds.
    let pace = [("x-mock-chunk-delay-ms", "250"), ("x-mock-chunks", "4")];
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(&pace);
    let (first, whole, body) = first_and_last(
        s.router.addr,
        "/v1/chat/completions",
        &headers,
        &common::chat_body("claude-sonnet-4-5", true),
    );
    assert!(
        whole >= Duration::from_millis(1500) && first < whole - Duration::from_millis(1000),
        "OpenAI client, Anthropic upstream: first chunk at {first:?}, end at {whole:?}"
    );
    assert!(String::from_utf8_lossy(&body).contains("[DONE]"));
    let mut headers = vec![("x-api-key", s.key.as_str())];
    headers.extend_from_slice(&pace);
    let (first, whole, body) = first_and_last(
        s.router.addr,
        "/v1/messages",
        &headers,
        &messages_body("llama-3.1-70b", true),
    );
    assert!(
        whole >= Duration::from_millis(1000) && first < whole - Duration::from_millis(700),
        "Anthropic client, OpenAI upstream: first chunk at {first:?}, end at {whole:?}"
    );
    assert!(String::from_utf8_lossy(&body).contains("message_stop"));
}

/// Every refusal on `/v1/messages` is in Anthropic's error shape, with the status its type
/// goes with.
#[test]
fn every_refusal_on_messages_is_anthropic_shaped() {
    let s = setup(&["--max-body-bytes", "4096"]);
    let (_, tiny) = issue_key(&s.router, "tiny", "{}");
    let check = |r: &common::Response, status: u16, kind: &str, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{what}: {v}");
        assert_eq!(v["error"]["type"], kind, "{what}: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap().is_empty(),
            "{what}: {v}"
        );
    };
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        call(s.router.addr, "POST", "/v1/messages", headers, body)
    };
    let key = [("x-api-key", s.key.as_str())];
    let ok = messages_body("claude-sonnet-4-5", false);

    check(&post(&[], &ok), 401, "authentication_error", "no key");
    check(
        &post(&[("x-api-key", "sk-swy-not-a-key")], &ok),
        401,
        "authentication_error",
        "unknown key",
    );
    check(
        &post(&[("x-api-key", &s.key), ("X-Tenant", "tiny")], &ok),
        403,
        "permission_error",
        "a key of another tenant",
    );
    check(
        &post(
            &key,
            br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"x"}]}"#,
        ),
        400,
        "invalid_request_error",
        "no max_tokens",
    );
    check(
        &post(
            &key,
            br#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}"#,
        ),
        400,
        "invalid_request_error",
        "empty messages",
    );
    check(
        &post(&key, b"{not json"),
        400,
        "invalid_request_error",
        "not JSON",
    );
    check(
        &post(&key, &messages_body("gpt-9", false)),
        403,
        "permission_error",
        "a model the tenant may not use",
    );
    check(
        &post(&key, &vec![b' '; 8192]),
        413,
        "request_too_large",
        "too large",
    );
    check(
        &call(s.router.addr, "GET", "/v1/messages", &key, b""),
        405,
        "invalid_request_error",
        "wrong method",
    );
    check(
        &call(s.router.addr, "POST", "/v1/messages/batches", &key, b"{}"),
        404,
        "not_found_error",
        "unknown path",
    );
    check(
        &call(
            s.router.addr,
            "POST",
            "/v1/messages/count_tokens",
            &key,
            br#"{"model":"llama-3.1-70b","messages":[{"role":"user","content":"x"}]}"#,
        ),
        404,
        "not_found_error",
        "count_tokens on an OpenAI-compatible endpoint",
    );
    // The tenant's limit: one request a minute.
    let tiny_key = [("x-api-key", tiny.as_str())];
    let _ = post(&tiny_key, &ok);
    let limited = post(&tiny_key, &ok);
    check(&limited, 429, "rate_limit_error", "rate limited");
    assert!(limited.header("retry-after").is_some());
    // The upstream's own errors: passed through from Anthropic, translated from OpenAI.
    check(
        &post(&[("x-api-key", &s.key), ("x-mock-status", "429")], &ok),
        429,
        "rate_limit_error",
        "Anthropic upstream 429",
    );
    check(
        &post(&[("x-api-key", &s.key), ("x-mock-status", "529")], &ok),
        529,
        "overloaded_error",
        "Anthropic upstream 529",
    );
    check(
        &post(
            &[("x-api-key", &s.key), ("x-mock-status", "429")],
            &messages_body("llama-3.1-70b", false),
        ),
        429,
        "rate_limit_error",
        "OpenAI upstream 429, translated",
    );
    check(
        &post(
            &[("x-api-key", &s.key), ("x-mock-status", "500")],
            &messages_body("llama-3.1-70b", false),
        ),
        500,
        "api_error",
        "OpenAI upstream 500, translated",
    );
    check(
        &post(&key, &messages_body("claude-down", false)),
        503,
        "overloaded_error",
        "endpoint down",
    );
    check(
        &post(
            &[("x-api-key", &s.key), ("x-mock-fault", "reset")],
            &messages_body("llama-3.1-70b", false),
        ),
        502,
        "api_error",
        "upstream reset",
    );
    // Untranslatable fields: 400 naming the field, nothing sent upstream.
    let before = mock_requests(&s.mock).len();
    let doc = br#"{"model":"llama-3.1-70b","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0x"}}]}]}"#;
    let r = post(&key, doc);
    check(
        &r,
        400,
        "invalid_request_error",
        "a document for an OpenAI endpoint",
    );
    assert!(r.text().contains("document"), "{}", r.text());
    assert_eq!(mock_requests(&s.mock).len(), before);
}

#[test]
fn streams_cut_or_failing_upstream_end_with_an_error_event_in_the_clients_dialect() {
    let s = setup(&[]);
    let key = [("x-api-key", s.key.as_str())];
    for fault in ["truncate", "drop-after-3", "stream-error"] {
        // Anthropic client, OpenAI upstream.
        let r = call(
            s.router.addr,
            "POST",
            "/v1/messages",
            &[key[0], ("x-mock-fault", fault)],
            &messages_body("llama-3.1-70b", true),
        );
        assert_eq!(r.status, 200, "{fault}");
        let ev = events(&r.body);
        let (name, last) = ev.last().unwrap();
        assert_eq!(name.as_deref(), Some("error"), "{fault}: {}", r.text());
        assert_eq!(last["type"], "error", "{fault}");
        assert!(!ev.iter().any(|(n, _)| n.as_deref() == Some("message_stop")));
        // OpenAI client, Anthropic upstream.
        let r = call(
            s.router.addr,
            "POST",
            "/v1/chat/completions",
            &[
                ("Authorization", &format!("Bearer {}", s.key)),
                ("x-mock-fault", fault),
            ],
            &common::chat_body("claude-sonnet-4-5", true),
        );
        assert_eq!(r.status, 200, "{fault}");
        let ev = events(&r.body);
        let (_, last) = ev.last().unwrap();
        assert!(
            last["error"]["message"].is_string(),
            "{fault}: {}",
            r.text()
        );
        assert!(!ev.iter().any(|(_, e)| e == "[DONE]"), "{fault}");
    }
    // An event type no client knows, and pings: tolerated.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {}", s.key)),
            ("x-mock-fault", "unknown-event"),
            ("x-mock-thinking", "1"),
        ],
        &common::chat_body("claude-sonnet-4-5", true),
    );
    let ev = events(&r.body);
    assert_eq!(ev.last().unwrap().1, "[DONE]", "{}", r.text());
    assert!(
        ev.iter()
            .any(|(_, e)| e["choices"][0]["delta"]["reasoning_content"].is_string())
    );
}

#[test]
fn embeddings_are_routed_limited_and_audited() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.key);
    let body = br#"{"model":"text-embedding-3-small","input":["one","two"]}"#;
    let r = call(
        s.router.addr,
        "POST",
        "/v1/embeddings",
        &[("Authorization", &auth), ("x-request-id", "emb-1")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.route().0, "gpu");
    assert_eq!(last_upstream(&s.mock)["target"], "/v1/embeddings");
    // A rule that picks an Anthropic endpoint: served by its fallback, else refused naming
    // the endpoint's type.
    let body = br#"{"model":"auto","input":"three"}"#;
    let r = call(
        s.router.addr,
        "POST",
        "/v1/embeddings",
        &[
            ("Authorization", &auth),
            ("X-Data-Class", "claude-first"),
            ("x-request-id", "emb-2"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.route().0, "gpu");
    let r = call(
        s.router.addr,
        "POST",
        "/v1/embeddings",
        &[("Authorization", &auth), ("X-Data-Class", "claude-only")],
        body,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("anthropic"), "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "untranslatable");
    // No input: 400 naming it.
    let r = call(
        s.router.addr,
        "POST",
        "/v1/embeddings",
        &[("Authorization", &auth)],
        br#"{"model":"text-embedding-3-small"}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "input");

    // The audit trail has each with its API, tokens and cost.
    for r in audit_rows(&s.router, &["emb-1", "emb-2"]) {
        assert_eq!(r["api"], "embeddings", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert!(r["tokens_in"].as_i64().unwrap() > 0, "{r}");
        assert_eq!(r["tokens_out"], 0, "{r}");
        assert!(r["cost_micros"].as_i64().unwrap() > 0, "{r}");
        assert_eq!(r["upstream_model"], "text-embedding-3-small");
    }
}

#[test]
fn the_audit_trail_records_api_upstream_model_cache_tokens_and_stop_reason() {
    let s = setup(&[]);
    let auth = format!("Bearer {}", s.key);
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages",
        &[
            ("x-api-key", &s.key),
            ("x-mock-cache-read", "100"),
            ("x-mock-cache-write", "20"),
            ("x-request-id", "msg-cache"),
        ],
        &messages_body("claude-sonnet-4-5", true),
    );
    assert_eq!(r.status, 200);
    let r = call(
        s.router.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &auth),
            ("x-mock-tools", "1"),
            ("x-request-id", "chat-tools"),
        ],
        &common::chat_body("claude-sonnet-4-5", false),
    );
    assert_eq!(r.status, 200);
    let r = call(
        s.router.addr,
        "POST",
        "/v1/messages",
        &[
            ("x-api-key", &s.key),
            ("x-mock-cache-read", "50"),
            ("x-request-id", "msg-openai"),
        ],
        &messages_body("llama-3.1-70b", true),
    );
    assert_eq!(r.status, 200);
    let rows = audit_rows(&s.router, &["msg-cache", "chat-tools", "msg-openai"]);
    let row = |id: &str| rows.iter().find(|r| r["request_id"] == id).unwrap().clone();
    let m = row("msg-cache");
    assert_eq!(m["api"], "messages");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["cache_read_tokens"], 100);
    assert_eq!(m["cache_write_tokens"], 20);
    // Anthropic's `input_tokens` excludes the cached tokens; `tokens_in` counts them all.
    let sent = mock_requests(&s.mock)
        .into_iter()
        .find(|r| upstream_header(r, "x-request-id").as_deref() == Some("msg-cache"))
        .unwrap();
    let uncached = sent["body"].as_str().unwrap().len().div_ceil(4) as i64;
    assert_eq!(m["tokens_in"], uncached + 120);
    assert_eq!(m["tokens_estimated"], false);
    let c = row("chat-tools");
    assert_eq!(c["api"], "chat");
    assert_eq!(c["stop_reason"], "tool_calls");
    assert_eq!(c["upstream_model"], "claude-sonnet-4-5");
    let o = row("msg-openai");
    assert_eq!(o["stop_reason"], "end_turn");
    assert_eq!(o["cache_read_tokens"], 50);
}

/// The seed's policy and DESIGN.md's example send their default to `anthropic`: served, with
/// the endpoint declared in a catalogue pointing at the mock.
#[test]
fn the_seed_and_design_example_policies_serve_their_anthropic_default() {
    let mock = mock(&["--chunks", "2"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/policies/good");
    let catalogue = std::fs::read_to_string(root.join("seed-full-routing-policy.catalogue.yaml"))
        .unwrap()
        .replace(
            "https://api.anthropic.com/v1",
            &format!("http://{}/v1", mock.addr),
        )
        .replace(
            "https://gpu.internal.acme.com/v1",
            &format!("http://{}/v1", mock.addr),
        );
    let seed = std::fs::read_to_string(root.join("seed-full-routing-policy.yaml")).unwrap();
    let design = std::fs::read_to_string(root.join("design-example.yaml"))
        .unwrap()
        .replace("https://gpu.internal.acme.com/v1", &format!("http://{}/v1", mock.addr))
        .replace(
            "endpoints:\n",
            &format!(
                "endpoints:\n  - id: anthropic\n    type: anthropic\n    url: http://{}\n    api_key_env: ANTHROPIC_API_KEY\n    models: [claude-3-5-haiku]\n",
                mock.addr
            ),
        );
    for (name, yaml) in [("seed", format!("{seed}\n{catalogue}")), ("design", design)] {
        let (_dir, table) = common::compiled(&yaml);
        let r = common::router_env(
            &["--table", table.to_str().unwrap()],
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-from-env"),
                ("GPU_TOKEN", "gpu"),
            ],
        );
        for (path, body) in [
            (
                "/v1/chat/completions",
                common::chat_body("claude-3-5-haiku", false),
            ),
            ("/v1/messages", messages_body("claude-3-5-haiku", false)),
        ] {
            let resp = call(r.addr, "POST", path, &[("X-Tenant", "someone")], &body);
            assert_eq!(resp.status, 200, "{name} {path}: {}", resp.text());
            assert_eq!(resp.route().0, "anthropic", "{name} {path}");
            let up = last_upstream(&mock);
            assert_eq!(up["target"], "/v1/messages", "{name} {path}");
            assert_eq!(
                upstream_header(&up, "x-api-key").as_deref(),
                Some("sk-ant-from-env")
            );
        }
        // The enterprise tenant within its latency budget: rule 1, also `anthropic`.
        let resp = call(
            r.addr,
            "POST",
            "/v1/messages",
            &[
                ("X-Tenant", "enterprise-acme"),
                ("X-Latency-Budget-Ms", "300"),
            ],
            &messages_body("claude-3-5-haiku", true),
        );
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        assert_eq!(resp.route(), ("anthropic".into(), "1".into()), "{name}");
    }
}
