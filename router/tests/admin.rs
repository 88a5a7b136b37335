//! The admin API's policy, endpoint and tenant calls over real sockets, on the main listener:
//! valid and invalid input for each, a bad policy leaving the old one serving, changes
//! taking effect at once and surviving a restart, the change log, observed endpoint health,
//! and a newer `--table` superseding admin changes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const POLICY: &str = "version: v1
endpoints:
  - id: small
    type: mock
    models: [small-model]
  - id: big
    type: mock
    models: [big-model]
tenants:
  - id: acme
    model_allowlist: [small-model]
rules:
  - name: acme-small
    match:
      tenant: acme
    route_to: small
  - default:
      route_to: big
";

/// An admin call on the router's main listener.
fn on_main(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Response {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    call(
        addr,
        method,
        path,
        &[
            ("Authorization", &format!("Bearer {ADMIN_KEY}")),
            ("Content-Type", "application/json"),
        ],
        &bytes,
    )
}

fn raw(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    call(
        addr,
        method,
        path,
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        body,
    )
}

fn assert_error(resp: &Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status, status, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{v}");
    v
}

fn start(table: &std::path::Path, data: &std::path::Path) -> Proc {
    router_with_auth(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--cores",
            "2",
        ],
        &[],
    )
}

fn key_for(r: &Proc, tenant: &str) -> String {
    let resp = on_main(
        r.addr,
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        &Value::Null,
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()["key"].as_str().unwrap().to_owned()
}

fn chat_with(r: &Proc, key: &str, model: &str) -> Response {
    call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &format!("Bearer {key}"))],
        &chat_body(model, false),
    )
}

fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no `{id}` in {list}"))
}

fn revision(r: &Proc) -> u64 {
    call(r.addr, "GET", "/healthz", &[], &[]).json()["revision"]
        .as_u64()
        .unwrap()
}

#[test]
fn endpoints_tenants_and_policies_change_validate_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    let data = dir.path().join("data");
    compile(POLICY, &table, 7);
    let mut r = start(&table, &data);
    assert_eq!(revision(&r), 7);

    // Only admin keys: none → 401, a client key → 403, on every admin path of the main port.
    let acme_key = key_for(&r, "acme");
    for path in [
        "/v1/policies",
        "/v1/endpoints",
        "/v1/tenants",
        "/v1/changes",
    ] {
        let none = call(r.addr, "GET", path, &[], &[]);
        assert_error(&none, 401, "missing_api_key");
        let client = call(
            r.addr,
            "GET",
            path,
            &[("Authorization", &format!("Bearer {acme_key}"))],
            &[],
        );
        assert_error(&client, 403, "admin_key_required");
    }

    // GET reports the serving state.
    let policy = on_main(r.addr, "GET", "/v1/policies", &Value::Null);
    assert_eq!(policy.status, 200, "{}", policy.text());
    let policy = policy.json();
    assert_eq!(policy["rules"][0]["name"], "acme-small", "{policy}");
    assert_eq!(policy["tenants"][0]["id"], "acme", "{policy}");
    let endpoints = on_main(r.addr, "GET", "/v1/endpoints", &Value::Null).json();
    assert_eq!(
        endpoints["data"].as_array().unwrap().len(),
        2,
        "{endpoints}"
    );
    assert_eq!(by_id(&endpoints, "small")["health"]["status"], "unknown");

    // POST /v1/endpoints: created (201), then updated (200); bad input is a 400 naming it.
    let created = on_main(
        r.addr,
        "POST",
        "/v1/endpoints",
        &json!({"id": "spare", "type": "mock", "models": ["spare-model"]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["id"], "spare");
    assert_eq!(created["revision"], 8, "{created}");
    let updated = on_main(
        r.addr,
        "POST",
        "/v1/endpoints",
        &json!({"id": "spare", "models": ["spare-model", "spare-large"]}),
    );
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(
        updated.json()["models"],
        json!(["spare-model", "spare-large"])
    );
    assert_eq!(updated.json()["type"], "mock", "fields not given are kept");
    let bad_type = on_main(
        r.addr,
        "POST",
        "/v1/endpoints",
        &json!({"id": "odd", "type": "carrier-pigeon", "url": "http://x"}),
    );
    let v = assert_error(&bad_type, 400, "invalid_policy");
    assert!(v["errors"].as_u64().unwrap() >= 1, "{v}");
    let text = v["diagnostics"].to_string();
    assert!(text.contains("carrier-pigeon"), "{v}");
    assert_error(
        &on_main(r.addr, "POST", "/v1/endpoints", &json!({"type": "mock"})),
        400,
        "bad_request",
    );
    assert_error(
        &raw(r.addr, "POST", "/v1/endpoints", b"{not json"),
        400,
        "invalid_json",
    );
    assert_error(
        &on_main(r.addr, "POST", "/v1/endpoints", &json!(["spare"])),
        400,
        "invalid_json",
    );
    assert_error(
        &on_main(r.addr, "DELETE", "/v1/endpoints", &Value::Null),
        405,
        "method_not_allowed",
    );
    assert_error(
        &on_main(r.addr, "GET", "/v1/endpoints/nope", &Value::Null),
        404,
        "unknown_url",
    );
    assert_eq!(revision(&r), 9, "refused changes leave the revision alone");

    // POST /v1/tenants: create, update keeping what is not given, refuse bad values.
    let beta = on_main(
        r.addr,
        "POST",
        "/v1/tenants",
        &json!({"id": "beta", "model_allowlist": ["spare-model"], "rate_limit_rpm": 5000,
                "audit_bucket": "s3://beta-audit"}),
    );
    assert_eq!(beta.status, 201, "{}", beta.text());
    let beta = on_main(
        r.addr,
        "POST",
        "/v1/tenants",
        &json!({"id": "beta", "rate_limit_rpm": 6000}),
    );
    assert_eq!(beta.status, 200, "{}", beta.text());
    let beta = beta.json();
    assert_eq!(beta["rate_limit_rpm"], 6000);
    assert_eq!(beta["model_allowlist"], json!(["spare-model"]), "{beta}");
    assert_eq!(beta["audit_bucket"], "s3://beta-audit");
    let bad = on_main(
        r.addr,
        "POST",
        "/v1/tenants",
        &json!({"id": "gamma", "rate_limit_rpm": "lots"}),
    );
    let v = assert_error(&bad, 400, "invalid_policy");
    assert!(
        v["diagnostics"].to_string().contains("rate_limit_rpm"),
        "{v}"
    );
    let tenants = on_main(r.addr, "GET", "/v1/tenants", &Value::Null).json();
    assert_eq!(tenants["data"].as_array().unwrap().len(), 2, "{tenants}");
    assert_eq!(
        on_main(r.addr, "GET", "/v1/tenants/beta", &Value::Null).json()["rate_limit_rpm"],
        6000
    );

    // The new tenant works at once: a key, a request, its allowlist.
    let beta_key = key_for(&r, "beta");
    let denied = chat_with(&r, &beta_key, "big-model");
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("big-model"));

    // POST /v1/policies (YAML, rules only: endpoints and tenants stay) takes effect within 5 s.
    let deployed = on_main(
        r.addr,
        "POST",
        "/v1/policies",
        &json!({"yaml": "version: v1\nrules:\n  - default:\n      route_to: spare\n"}),
    );
    assert_eq!(deployed.status, 200, "{}", deployed.text());
    let rev = deployed.json()["revision"].as_u64().unwrap();
    let t0 = Instant::now();
    loop {
        let resp = chat_with(&r, &beta_key, "auto");
        if resp.status == 200 && resp.route().0 == "spare" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the deployed policy did not serve within 5 s: {} {}",
            resp.status,
            resp.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(revision(&r), rev);

    // Bad policies: a syntax error and an unknown endpoint; each a 400 with diagnostics
    // (line numbers in the posted YAML), and the last good policy keeps serving.
    let syntax = on_main(
        r.addr,
        "POST",
        "/v1/policies",
        &json!({"yaml": "version: v1\nrules:\n  - default: {route_to: [spare\n"}),
    );
    let v = assert_error(&syntax, 400, "invalid_policy");
    assert!(v["diagnostics"][0]["line"].as_u64().is_some(), "{v}");
    let unknown = on_main(
        r.addr,
        "POST",
        "/v1/policies",
        &json!({"yaml": "version: v1\nrules:\n  - default:\n      route_to: nowhere\n"}),
    );
    let v = assert_error(&unknown, 400, "invalid_policy");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nowhere"),
        "{v}"
    );
    assert_eq!(v["diagnostics"][0]["line"], 4, "{v}");
    assert_error(
        &on_main(r.addr, "POST", "/v1/policies", &json!({"yaml": 5})),
        400,
        "bad_request",
    );
    assert_error(
        &on_main(
            r.addr,
            "POST",
            "/v1/policies",
            &json!({"yaml": "x", "rules": []}),
        ),
        400,
        "bad_request",
    );
    assert_eq!(revision(&r), rev, "a refused policy changes nothing");
    assert_eq!(chat_with(&r, &beta_key, "auto").route().0, "spare");

    // A JSON policy object: a dead endpoint first, the spare as its fallback. The request
    // still succeeds, and GET /v1/endpoints reports what traffic saw.
    let object = json!({
        "version": "v1",
        "endpoints": [
            {"id": "dead", "type": "vllm", "url": "http://127.0.0.1:9/v1", "models": ["spare-model"]},
            {"id": "spare", "type": "mock", "models": ["spare-model", "spare-large"]},
            {"id": "small", "type": "mock", "models": ["small-model"]},
            {"id": "big", "type": "mock", "models": ["big-model"]}
        ],
        "rules": [{"default": {"route_to": "dead", "fallback": ["spare"]}}]
    });
    let deployed = on_main(r.addr, "POST", "/v1/policies", &object);
    assert_eq!(deployed.status, 200, "{}", deployed.text());
    let via = chat_with(&r, &beta_key, "auto");
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(via.route().0, "spare");
    let endpoints = on_main(r.addr, "GET", "/v1/endpoints", &Value::Null).json();
    let dead = &by_id(&endpoints, "dead")["health"];
    assert_eq!(dead["status"], "unhealthy", "{endpoints}");
    assert!(dead["last_error"].as_str().is_some(), "{dead}");
    assert_eq!(by_id(&endpoints, "spare")["health"]["status"], "healthy");
    assert_eq!(by_id(&endpoints, "big")["health"]["status"], "unknown");

    // The change log: who (the admin key's id, never the key), what, when.
    let changes = on_main(r.addr, "GET", "/v1/changes", &Value::Null).json();
    let actions: Vec<&str> = changes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "policy.deploy",
            "policy.deploy",
            "key.issue",
            "tenant.update",
            "tenant.create",
            "endpoint.update",
            "endpoint.create",
            "key.issue"
        ],
        "{changes}"
    );
    assert_eq!(
        on_main(r.addr, "GET", "/v1/changes?limit=2", &Value::Null).json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for bad in [
        "/v1/changes?limit=0",
        "/v1/changes?limit=many",
        "/v1/changes?since=1",
    ] {
        assert_error(
            &on_main(r.addr, "GET", bad, &Value::Null),
            400,
            "bad_request",
        );
    }
    assert_error(
        &on_main(r.addr, "GET", "/v1/tenants/nobody", &Value::Null),
        404,
        "unknown_url",
    );
    assert_error(
        &on_main(r.addr, "POST", "/v1/tenants/nobody/keys", &Value::Null),
        404,
        "unknown_url",
    );
    assert_error(
        &on_main(r.addr, "PUT", "/v1/policies", &json!({})),
        405,
        "method_not_allowed",
    );
    let first = &changes["data"][0];
    assert!(
        first["admin"].as_str().unwrap().starts_with("admin-"),
        "{first}"
    );
    assert!(first["ts"].as_str().unwrap().ends_with('Z'), "{first}");
    assert!(!changes.to_string().contains(ADMIN_KEY));

    // A restart keeps every change (and the tenant's key).
    let before = on_main(r.addr, "GET", "/v1/policies", &Value::Null).json();
    let rev = revision(&r);
    for secret in [beta_key.as_str(), acme_key.as_str(), ADMIN_KEY] {
        assert!(!r.log().contains(secret), "a key in the log");
    }
    r.signal(15);
    r.wait_exit(Duration::from_secs(10)).unwrap();
    let r = start(&table, &data);
    assert_eq!(revision(&r), rev);
    assert_eq!(
        on_main(r.addr, "GET", "/v1/policies", &Value::Null).json(),
        before
    );
    assert_eq!(chat_with(&r, &beta_key, "auto").route().0, "spare");
    drop(r);

    // CI publishes a newer table: it supersedes the admin changes.
    compile(POLICY, &table, rev + 10);
    let r = start(&table, &data);
    assert_eq!(revision(&r), rev + 10);
    let tenants = on_main(r.addr, "GET", "/v1/tenants", &Value::Null).json();
    assert_eq!(tenants["data"].as_array().unwrap().len(), 1, "{tenants}");
    // `beta` is gone from the policy: its key no longer routes (an undeclared tenant has no
    // allowlist, so serving it would widen the key) and sees no models.
    let orphan = chat_with(&r, &beta_key, "auto");
    let v = assert_error(&orphan, 403, "unknown_tenant");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("beta"),
        "{v}"
    );
    let models = call(
        r.addr,
        "GET",
        "/v1/models",
        &[("Authorization", &format!("Bearer {beta_key}"))],
        &[],
    );
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"], json!([]));

    // No key — client or admin — in the log or in any file the router wrote (persisted
    // tables, change log, key store, audit logs and shards).
    for secret in [beta_key.as_str(), acme_key.as_str(), ADMIN_KEY] {
        assert!(!r.log().contains(secret), "a key in the log");
        for file in files(&data) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a key in {}",
                file.display()
            );
        }
    }
    assert!(data.join("admin/policy.swt").exists());
}

#[test]
fn the_admin_listener_and_the_main_listener_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(POLICY, &table, 1);
    let r = start(&table, &dir.path().join("data"));
    let via_admin = admin(&r, "GET", "/v1/tenants", &[]);
    let via_main = on_main(r.addr, "GET", "/v1/tenants", &Value::Null);
    assert_eq!(via_admin.status, 200);
    assert_eq!(via_admin.json(), via_main.json());
    // A change on one is seen on the other.
    let created = admin(
        &r,
        "POST",
        "/v1/tenants",
        br#"{"id": "delta", "rate_limit_tpm": 1000}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        on_main(r.addr, "GET", "/v1/tenants/delta", &Value::Null).json()["rate_limit_tpm"],
        1000
    );
}

#[test]
fn cloud_endpoints_and_model_names_are_accepted_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(POLICY, &table, 1);
    let r = start(&table, &dir.path().join("data"));
    let bedrock = json!({
        "id": "claude-aws", "type": "bedrock", "region": "us-east-1", "bedrock_api": "invoke",
        "aws_access_key_id_env": "TEAM_KEY_ID", "aws_secret_access_key_env": "TEAM_SECRET",
        "models": [{"name": "sonnet", "upstream": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"}, "plain"]
    });
    let created = on_main(r.addr, "POST", "/v1/endpoints", &bedrock);
    assert_eq!(created.status, 201, "{}", created.text());
    let got = on_main(r.addr, "GET", "/v1/endpoints/claude-aws", &Value::Null).json();
    assert_eq!(got["region"], "us-east-1", "{got}");
    assert_eq!(got["bedrock_api"], "invoke", "{got}");
    assert_eq!(got["aws_secret_access_key_env"], "TEAM_SECRET", "{got}");
    assert_eq!(
        got["models"],
        json!([{"name": "sonnet", "upstream": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"}, "plain"])
    );
    let vertex = json!({"id": "gem", "type": "vertex", "project": "acme-ml",
        "credentials_file": "/etc/switchyard/sa.json", "models": ["gemini-2.0-flash"]});
    let v = assert_error(
        &on_main(r.addr, "POST", "/v1/endpoints", &vertex),
        400,
        "invalid_policy",
    );
    assert!(v["diagnostics"].to_string().contains("location"), "{v}");
    let typo = json!({"id": "claude-aws", "bedrock_api": "invok"});
    let v = assert_error(
        &on_main(r.addr, "POST", "/v1/endpoints", &typo),
        400,
        "invalid_policy",
    );
    assert!(
        v["diagnostics"]
            .to_string()
            .contains("did you mean `invoke`"),
        "{v}"
    );
}
