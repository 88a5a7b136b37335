//! The official `openai` and `anthropic` Python SDKs against the real router: the embedded
//! demo table, and a policy with an Anthropic and an OpenAI-compatible endpoint on the mock
//! upstream, keys required.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

mod common;

use std::process::Command;

fn require(package: &str) {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {package}")])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the `{package}` Python package is missing: run `python3 -m pip install -r tools/sdk/requirements.txt` (tools/test-all does)"
        ),
    }
}

/// Runs `tools/sdk/<script>` with `args`; fails with its output and the router's log.
fn run(script: &str, args: &[String], router: &common::Proc) {
    let path = format!("{}/../tools/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}\nrouter log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        router.log()
    );
}

/// A router with keys required, in front of the mock upstream speaking both dialects; returns
/// it, the mock, a client key and the directory holding the table.
fn two_dialects() -> (common::Proc, common::Proc, String, tempfile::TempDir) {
    let mock = common::mock(&["--chunks", "3"]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: claude
    type: anthropic
    url: http://{mock}
    models: [claude-sonnet-4-5]
    api_key_env: SDK_ANTHROPIC_KEY
  - id: gpu
    type: vllm
    url: http://{mock}/v1
    models: [llama-3.1-70b]
tenants:
  - id: acme
    model_allowlist: [claude-sonnet-4-5, llama-3.1-70b]
rules:
  - match:
      model: llama-3.1-70b
    route_to: gpu
  - default:
      route_to: claude
"#,
        mock = mock.addr
    );
    let (dir, table) = common::compiled(&yaml);
    let router = common::router_with_auth(
        &["--table", table.to_str().unwrap(), "--cores", "2"],
        &[("SDK_ANTHROPIC_KEY", "sk-ant-upstream")],
    );
    let (_, key) = common::issue_key(&router, "acme", "{}");
    (router, mock, key, dir)
}

#[test]
fn anthropic_python_sdk_against_anthropic_and_openai_compatible_upstreams() {
    require("anthropic");
    let (router, mock, key, _dir) = two_dialects();
    run(
        "anthropic_messages.py",
        &[
            format!("http://{}", router.addr),
            key,
            format!("http://{}", mock.addr),
        ],
        &router,
    );
}

#[test]
fn openai_python_sdk_against_an_anthropic_upstream() {
    require("openai");
    let (router, mock, key, _dir) = two_dialects();
    run(
        "openai_to_anthropic.py",
        &[
            format!("http://{}", router.addr),
            key,
            format!("http://{}", mock.addr),
        ],
        &router,
    );
}

#[test]
fn openai_python_sdk_completes_a_chat_and_a_stream() {
    require("openai");
    let router = common::router(&["--cores", "2"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/sdk/openai_chat.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}", router.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK check failed:\n{}\n{}\nrouter log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        router.log()
    );
}

#[test]
fn openai_and_anthropic_sdks_against_a_bedrock_endpoint() {
    require("openai");
    require("anthropic");
    let mock = common::bedrock_mock(&["--access-key", "AKIDSDK", "--secret-key", "sdk-secret"]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: aws
    type: bedrock
    region: us-east-1
    url: http://{mock}
    aws_access_key_id_env: SDK_AWS_KEY
    aws_secret_access_key_env: SDK_AWS_SECRET
    models: [{{ name: claude-sonnet, upstream: "us.anthropic.claude-3-7-sonnet-20250219-v1:0" }}]
tenants:
  - id: acme
    model_allowlist: [claude-sonnet]
rules:
  - default:
      route_to: aws
"#,
        mock = mock.addr
    );
    let (_dir, table) = common::compiled(&yaml);
    let router = common::router_with_auth(
        &["--table", table.to_str().unwrap(), "--cores", "2"],
        &[("SDK_AWS_KEY", "AKIDSDK"), ("SDK_AWS_SECRET", "sdk-secret")],
    );
    let (_, key) = common::issue_key(&router, "acme", "{}");
    run(
        "cloud_clients.py",
        &[
            format!("http://{}", router.addr),
            key,
            format!("http://{}", mock.addr),
            "claude-sonnet".to_owned(),
        ],
        &router,
    );
}

#[test]
fn openai_and_anthropic_sdks_against_vertex_gemini_and_claude() {
    require("openai");
    require("anthropic");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vertex-sa.json");
    let mock = common::vertex_mock(&["--key-file", key.to_str().unwrap()]);
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: gcp
    type: vertex
    project: acme-ml
    location: europe-west1
    url: http://{mock}
    credentials_file: {key}
    models:
      - gemini-2.5-flash
      - {{ name: claude-sonnet, upstream: "claude-sonnet-4-5@20250929" }}
tenants:
  - id: acme
    model_allowlist: [gemini-2.5-flash, claude-sonnet]
rules:
  - default:
      route_to: gcp
"#,
        mock = mock.addr,
        key = key.display()
    );
    let (_dir, table) = common::compiled(&yaml);
    let router =
        common::router_with_auth(&["--table", table.to_str().unwrap(), "--cores", "2"], &[]);
    let (_, client_key) = common::issue_key(&router, "acme", "{}");
    for model in ["gemini-2.5-flash", "claude-sonnet"] {
        run(
            "cloud_clients.py",
            &[
                format!("http://{}", router.addr),
                client_key.clone(),
                format!("http://{}", mock.addr),
                model.to_owned(),
            ],
            &router,
        );
    }
    let issued =
        common::call(mock.addr, "GET", "/__mock/tokens", &[], b"").json()["issued"].clone();
    assert_eq!(issued, 1, "one token for every request of both SDKs");
}
