//! `models: [{ name, upstream }]`: clients, policies, allowlists, `GET /v1/models` and the
//! audit's `model` use the name; the provider gets its own id (kept in `upstream_model`) —
//! passed through to an OpenAI-compatible server, and translated to an Anthropic one.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::time::{Duration, Instant};

use common::{admin, call, chat, compiled, mock, mock_requests, router_env};

#[test]
fn names_route_and_provider_ids_go_upstream() {
    let mock = mock(&["--chunks", "2"]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://{mock}/v1
    models:
      - {{ name: fast, upstream: meta-llama/Llama-3.1-8B-Instruct }}
      - plain-model
  - id: claude
    type: anthropic
    url: http://{mock}
    api_key_env: NAMES_ANTHROPIC_KEY
    models: [{{ name: sonnet, upstream: claude-sonnet-4-5-20250929 }}]
tenants:
  - id: acme
    model_allowlist: [fast, sonnet]
rules:
  - match:
      model: sonnet
    route_to: claude
  - default:
      route_to: gpu
"#,
        mock = mock.addr
    );
    let (_dir, table) = compiled(&yaml);
    let router = router_env(
        &["--table", table.to_str().unwrap()],
        &[("NAMES_ANTHROPIC_KEY", "sk-ant-test")],
    );
    let tenant = [("X-Tenant", "acme")];

    let r = chat(router.addr, "fast", &tenant);
    assert_eq!(r.status, 200, "{}", r.text());
    let fast_id = r.header("x-request-id").unwrap().to_owned();
    let sent = mock_requests(&mock).last().cloned().unwrap();
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "meta-llama/Llama-3.1-8B-Instruct");

    // Translated to Anthropic: the provider id is in the Messages body.
    let r = chat(router.addr, "sonnet", &tenant);
    assert_eq!(r.status, 200, "{}", r.text());
    let sonnet_id = r.header("x-request-id").unwrap().to_owned();
    let sent = mock_requests(&mock).last().cloned().unwrap();
    assert_eq!(sent["target"], "/v1/messages");
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4-5-20250929");

    // The allowlist is by name: the provider id itself is not a model a client may ask for.
    let r = chat(router.addr, "meta-llama/Llama-3.1-8B-Instruct", &tenant);
    assert_eq!(r.status, 403, "{}", r.text());

    // The model list shows names.
    let r = call(router.addr, "GET", "/v1/models", &tenant, b"");
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["fast", "sonnet"]);

    // The audit: `model` the name, `upstream_model` what was sent.
    let until = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let resp = admin(&router, "GET", "/v1/audit?limit=100", b"");
        let rows = resp.json()["data"].as_array().unwrap().clone();
        let mine: Vec<serde_json::Value> = [&fast_id, &sonnet_id]
            .iter()
            .filter_map(|id| rows.iter().find(|row| row["request_id"] == **id).cloned())
            .collect();
        if mine.len() == 2 {
            break mine;
        }
        assert!(Instant::now() < until, "records missing in {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(rows[0]["model"], "fast");
    assert_eq!(
        rows[0]["upstream_model"],
        "meta-llama/Llama-3.1-8B-Instruct"
    );
    assert_eq!(rows[1]["model"], "sonnet");
    assert_eq!(rows[1]["upstream_model"], "claude-sonnet-4-5-20250929");
}
