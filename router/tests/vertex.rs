//! `type: vertex` end to end: the router binary gets its access token from the test server's
//! token endpoint (`tools/gcp/vertex_mock.py` verifies every JWT assertion with the service
//! account's public key) or from its metadata-server path, and calls Gemini and Claude
//! models — whole and streamed, OpenAI and Anthropic clients, tool round trips, errors. Tokens
//! are fetched once per expiry window under load across cores, refreshed once on a 401, and
//! appear in no log line and no file the router writes.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Proc, call, compiled, files, mock_requests, router_env, vertex_mock};
use serde_json::{Value, json};

const CLAUDE_ID: &str = "claude-sonnet-4-5@20250929";

fn policy(mock: &Proc, credentials: Option<&str>) -> String {
    let credentials = credentials.map_or(String::new(), |c| format!("credentials_file: {c}"));
    format!(
        r#"
version: v1
endpoints:
  - id: gcp
    type: vertex
    project: acme-ml
    location: us-east5
    url: http://{mock}
    {credentials}
    models:
      - gemini-2.5-flash
      - {{ name: claude-sonnet, upstream: "{CLAUDE_ID}" }}
rules:
  - default:
      route_to: gcp
"#,
        mock = mock.addr
    )
}

struct Setup {
    mock: Proc,
    router: Proc,
    _dir: tempfile::TempDir,
    key: String,
}

fn setup(mock_args: &[&str], router_args: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vertex-sa.json");
    let key = key.to_str().unwrap().to_owned();
    let mut args = vec!["--key-file", key.as_str()];
    args.extend_from_slice(mock_args);
    let mock = vertex_mock(&args);
    let (table_dir, table) = compiled(&policy(&mock, Some(&key)));
    let mut rargs = vec!["--table", table.to_str().unwrap()];
    rargs.extend_from_slice(router_args);
    let router = router_env(&rargs, &[]);
    drop(table_dir);
    Setup {
        mock,
        router,
        _dir: dir,
        key,
    }
}

fn tokens_issued(mock: &Proc) -> u64 {
    call(mock.addr, "GET", "/__mock/tokens", &[], b"").json()["issued"]
        .as_u64()
        .unwrap()
}

fn post(r: &Proc, path: &str, body: &Value, headers: &[(&str, &str)]) -> common::Response {
    call(r.addr, "POST", path, headers, body.to_string().as_bytes())
}

/// `data:` payloads of an SSE body, as JSON (`[DONE]` left out).
fn data(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}}])
}

#[test]
fn gemini_and_claude_on_vertex_for_both_clients() {
    let s = setup(&[], &["--log", "debug"]);
    let (mock, router) = (&s.mock, &s.router);

    // OpenAI client → Gemini, whole.
    let r = post(
        router,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from Gemini gemini-2.5-flash"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 7);
    let sent = mock_requests(mock).last().cloned().unwrap();
    assert_eq!(
        sent["target"],
        "/v1/projects/acme-ml/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent["signature_ok"], true, "{sent}");
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert!(body.get("model").is_none(), "{body}");

    // OpenAI client → Gemini, streamed, with a tool call.
    let r = post(
        router,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "stream": true, "tools": tools(),
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let chunks = data(&r.body);
    let call_part = chunks
        .iter()
        .find_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .cloned()
        })
        .unwrap_or_else(|| panic!("no tool call: {}", r.text()));
    assert_eq!(call_part["function"]["name"], "get_weather");
    let id = call_part["id"].as_str().unwrap().to_owned();
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    let sent = mock_requests(mock).last().cloned().unwrap();
    assert!(
        sent["target"]
            .as_str()
            .unwrap()
            .ends_with("/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        "{sent}"
    );
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    // The schema cut to Vertex's subset.
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"city": {"type": "string"}}})
    );

    // The round trip: the call (its thought signature riding in the id) and its result.
    let r = post(
        router,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "tools": tools(), "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": id, "content": "18C"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    let sent = mock_requests(mock).last().cloned().unwrap();
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLW1vY2s="})
    );
    assert_eq!(
        body["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}})
    );

    // Anthropic client → Claude on Vertex, streamed; its beta header goes along.
    let r = post(
        router,
        "/v1/messages",
        &json!({"model": "claude-sonnet", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(&format!("Hello from Claude {CLAUDE_ID}")),
        "{text}"
    );
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(r.route().0, "gcp");
    let sent = mock_requests(mock).last().cloned().unwrap();
    assert_eq!(
        sent["target"],
        format!(
            "/v1/projects/acme-ml/locations/us-east5/publishers/anthropic/models/{CLAUDE_ID}:streamRawPredict"
        )
    );
    let headers = sent["headers"].to_string().to_ascii_lowercase();
    assert!(
        headers.contains("interleaved-thinking-2025-05-14"),
        "{headers}"
    );
    assert!(!headers.contains("\"anthropic-version\""), "{headers}");
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");

    // OpenAI client → Claude on Vertex, whole.
    let r = post(
        router,
        "/v1/chat/completions",
        &json!({"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        mock_requests(mock).last().unwrap()["target"]
            .as_str()
            .unwrap()
            .ends_with(":rawPredict")
    );

    // Errors in Google's shape reach each client in its own.
    let r = post(
        router,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-status", "429")],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let r = post(
        router,
        "/v1/messages",
        &json!({"model": "gemini-2.5-flash", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-exception", "RESOURCE_EXHAUSTED")],
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains("event: error") && text.contains("rate_limit_error"),
        "{text}"
    );
    assert!(!text.contains("message_stop"), "{text}");

    // Every model request carried a token the server issued; one token served them all.
    assert!(
        mock_requests(mock)
            .iter()
            .all(|r| r["signature_ok"] == true)
    );
    assert_eq!(tokens_issued(mock), 1);

    // Neither the token nor the key reached the log (at debug level) or any file written.
    let issued_token = mock_requests(mock)[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
        .map(|h| {
            h[1].as_str()
                .unwrap()
                .trim_start_matches("Bearer ")
                .to_owned()
        })
        .unwrap();
    assert!(issued_token.starts_with("ya29.mock-"));
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&s.key).unwrap()).unwrap();
    let pem_line = key["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let log = router.log();
    assert!(
        log.contains("\"DEBUG\"") || log.contains("debug"),
        "not a debug log: {log}"
    );
    assert!(
        !log.contains(&issued_token) && !log.contains(&pem_line),
        "{log}"
    );
    for f in files(router.data.as_ref().unwrap().path()) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&issued_token) && !text.contains("ya29."),
            "{} holds the token",
            f.display()
        );
    }
}

#[test]
fn an_expired_token_is_refreshed_once_and_the_request_served() {
    let s = setup(&[], &[]);
    let hi = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        post(&s.router, "/v1/chat/completions", &hi, &[]).status,
        200
    );
    assert_eq!(tokens_issued(&s.mock), 1);
    // The server forgets its tokens (revoked, or expired early): the router's cached one is
    // refused with 401, dropped, and the request sent again with a new one.
    call(s.mock.addr, "POST", "/__mock/expire", &[], b"");
    let r = post(&s.router, "/v1/chat/completions", &hi, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tokens_issued(&s.mock), 2);
    let seen: Vec<bool> = mock_requests(&s.mock)
        .iter()
        .map(|r| r["signature_ok"].as_bool().unwrap())
        .collect();
    assert_eq!(seen, [true, false, true]);
    // And the new token serves the next requests.
    assert_eq!(
        post(&s.router, "/v1/chat/completions", &hi, &[]).status,
        200
    );
    assert_eq!(tokens_issued(&s.mock), 2);
}

#[test]
fn tokens_are_fetched_once_per_expiry_window_under_load() {
    // Tokens live 6 s; the router renews 1.5 s before expiry, in the background.
    let s = setup(&["--expires-in", "6"], &["--cores", "2"]);
    let stop_at = Instant::now() + Duration::from_secs(10);
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let addr = s.router.addr;
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let served = Arc::clone(&served);
            let failed = Arc::clone(&failed);
            std::thread::spawn(move || {
                let body = json!({"model": "gemini-2.5-flash", "stream": i % 2 == 0,
                                  "messages": [{"role": "user", "content": "hi"}]})
                .to_string();
                while Instant::now() < stop_at {
                    let r = call(addr, "POST", "/v1/chat/completions", &[], body.as_bytes());
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.lock().unwrap().push(r.text());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let served = served.load(Ordering::Relaxed);
    let issued = tokens_issued(&s.mock);
    // One at start (however many requests waited for it), then one per 4.5 s window.
    assert!(
        (2..=4).contains(&issued),
        "{issued} tokens for {served} requests over 10 s"
    );
    assert!(served > 100, "only {served} requests served");
    assert!(
        mock_requests(&s.mock)
            .iter()
            .all(|r| r["signature_ok"] == true)
    );
}

#[test]
fn the_metadata_server_is_the_source_without_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("unused.json");
    let mock = vertex_mock(&["--key-file", key.to_str().unwrap()]);
    let (_t, table) = compiled(&policy(&mock, None));
    let host = mock.addr.to_string();
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[("GCE_METADATA_HOST", host.as_str())],
    );
    let r = post(
        &router,
        "/v1/chat/completions",
        &json!({"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tokens_issued(&mock), 1);
    assert_eq!(mock_requests(&mock)[0]["signature_ok"], true);
}

#[test]
fn credential_failures_are_503s_that_name_the_cause_in_the_log_only() {
    let s = setup(&[], &[]);
    // A key file for another key, pointing at the same token endpoint: the assertion's
    // signature does not verify there.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.json");
    let made = std::process::Command::new("python3")
        .arg(format!(
            "{}/../tools/gcp/jwt_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["keyfile", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success());
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    let ours: Value = serde_json::from_slice(&std::fs::read(&s.key).unwrap()).unwrap();
    forged["token_uri"] = ours["token_uri"].clone();
    forged["private_key_id"] = ours["private_key_id"].clone();
    std::fs::write(&other, forged.to_string()).unwrap();
    let missing = dir.path().join("missing.json");
    for (file, why) in [
        (other.to_str().unwrap(), "Invalid JWT Signature"),
        (missing.to_str().unwrap(), "missing.json"),
    ] {
        let (_t, table) = compiled(&policy(&s.mock, Some(file)));
        let router = router_env(&["--table", table.to_str().unwrap()], &[]);
        let r = post(
            &router,
            "/v1/chat/completions",
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        );
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error_code(), "upstream_credentials_missing");
        assert!(!r.text().contains(why), "{}", r.text());
        let until = Instant::now() + Duration::from_secs(5);
        while !router.log().contains(why) {
            assert!(Instant::now() < until, "{}", router.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let refused = call(s.mock.addr, "GET", "/__mock/tokens", &[], b"").json()["refused"].clone();
    assert_eq!(refused, json!(["Invalid JWT Signature."]));
}

#[test]
fn an_api_key_goes_as_x_goog_api_key_and_no_token_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("unused.json");
    let mock = vertex_mock(&[
        "--key-file",
        key.to_str().unwrap(),
        "--api-key",
        "vx-express-key",
    ]);
    let yaml = policy(&mock, None).replace(
        "    models:\n",
        "    api_key_env: VERTEX_EXPRESS_KEY\n    models:\n",
    );
    let (_t, table) = compiled(&yaml);
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[("VERTEX_EXPRESS_KEY", "vx-express-key")],
    );
    let r = post(
        &router,
        "/v1/chat/completions",
        &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert_eq!(sent["signature_ok"], true, "{sent}");
    let headers = sent["headers"].to_string().to_ascii_lowercase();
    assert!(!headers.contains("authorization"), "{headers}");
    assert_eq!(tokens_issued(&mock), 0);
    assert!(!router.log().contains("vx-express-key"));
}
