//! API keys over real sockets: the 401 codes, a key fixing its tenant, the key calls of the
//! admin API (issue, list, revoke), admin-only access, persistence across a restart, and
//! no raw key in logs, audit records or state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;

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
  - id: globex
rules:
  - name: acme-small
    match:
      tenant: acme
    route_to: small
  - default:
      route_to: big
";

struct Setup {
    _dir: tempfile::TempDir,
    table: std::path::PathBuf,
    data: std::path::PathBuf,
}

fn setup() -> Setup {
    let (dir, table) = compiled(POLICY);
    let data = dir.path().join("data");
    Setup {
        _dir: dir,
        table,
        data,
    }
}

fn start(s: &Setup) -> Proc {
    router_with_auth(
        &[
            "--table",
            s.table.to_str().unwrap(),
            "--data-dir",
            s.data.to_str().unwrap(),
            "--cores",
            "2",
        ],
        &[],
    )
}

fn chat_as(r: &Proc, key: Option<&str>, extra: &[(&str, &str)]) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        &chat_body("auto", false),
    )
}

fn assert_error(resp: &Response, status: u16, kind: &str, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
}

#[test]
fn keys_fix_the_tenant_and_every_refusal_has_its_code() {
    let s = setup();
    let r = start(&s);
    let (acme_id, acme_key) = issue_key(&r, "acme", "{}");
    let (_, globex_key) = issue_key(&r, "globex", r#"{"name": "ci", "role": "batch"}"#);

    // 401s, each with its code.
    assert_error(
        &chat_as(&r, None, &[]),
        401,
        "authentication_error",
        "missing_api_key",
    );
    assert_error(
        &chat_as(
            &r,
            Some("sk-swy-000000000000000000000000000000000000000000000000"),
            &[],
        ),
        401,
        "authentication_error",
        "invalid_api_key",
    );
    let basic = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Basic YWNtZTpzZWNyZXQ=")],
        &chat_body("auto", false),
    );
    assert_error(&basic, 401, "authentication_error", "invalid_api_key");

    // The key's tenant routes: acme's rule, without any X-Tenant.
    let ok = chat_as(&r, Some(&acme_key), &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.route().0, "small");
    // Repeating the key's own tenant is fine; naming another is 403.
    assert_eq!(
        chat_as(&r, Some(&acme_key), &[("X-Tenant", "acme")]).status,
        200
    );
    let cross = chat_as(&r, Some(&acme_key), &[("X-Tenant", "globex")]);
    assert_error(&cross, 403, "access_denied", "tenant_mismatch");
    let cross = chat_as(&r, Some(&globex_key), &[("X-Tenant", "acme")]);
    assert_error(&cross, 403, "access_denied", "tenant_mismatch");
    // A key with a role fixes the role too.
    let role = chat_as(&r, Some(&globex_key), &[("X-User-Role", "admin")]);
    assert_error(&role, 403, "access_denied", "tenant_mismatch");
    let ok = chat_as(&r, Some(&globex_key), &[]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.route().0, "big");

    // /v1/models: only what the key's tenant may use.
    let models = |key: &str| {
        let resp = call(
            r.addr,
            "GET",
            "/v1/models",
            &[("Authorization", &format!("Bearer {key}"))],
            b"",
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let mut ids: Vec<String> = resp.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(models(&acme_key), ["small-model"]);
    assert_eq!(models(&globex_key), ["big-model", "small-model"]);
    let anon = call(r.addr, "GET", "/v1/models", &[], b"");
    assert_error(&anon, 401, "authentication_error", "missing_api_key");

    // Listing shows records, never secrets.
    let list = admin(&r, "GET", "/v1/tenants/acme/keys", b"");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(!list.text().contains(&acme_key));
    assert_eq!(list.json()["data"][0]["id"], acme_id.as_str());

    // Revoked: refused within 5 s (at once here) with `key_disabled`.
    let del = admin(
        &r,
        "DELETE",
        &format!("/v1/tenants/acme/keys/{acme_id}"),
        b"",
    );
    assert_eq!(del.status, 200, "{}", del.text());
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = chat_as(&r, Some(&acme_key), &[]);
        if resp.status == 401 {
            assert_error(&resp, 401, "authentication_error", "key_disabled");
            break;
        }
        assert!(Instant::now() < until, "revoked key still served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        admin(&r, "DELETE", "/v1/tenants/globex/keys/key_nope", b"").status,
        404
    );

    // Expired.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let (_, short_key) = issue_key(&r, "globex", &format!(r#"{{"expires_at": {soon}}}"#));
    assert_eq!(chat_as(&r, Some(&short_key), &[]).status, 200);
    // Refused from its expiry on (within a few seconds of wall-clock time).
    let until = Instant::now() + Duration::from_secs(10);
    while chat_as(&r, Some(&short_key), &[]).status == 200 {
        assert!(Instant::now() < until, "expired key still served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_error(
        &chat_as(&r, Some(&short_key), &[]),
        401,
        "authentication_error",
        "key_expired",
    );

    // Audit records name the key by its id, and no record holds a key.
    let until = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let resp = admin(&r, "GET", "/v1/audit?limit=1000", b"");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v = resp.json();
        let with_acme_key = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rec| rec["key_id"] == acme_id.as_str() && rec["status"] == 200)
            .count();
        if with_acme_key >= 2 {
            break v;
        }
        assert!(
            Instant::now() < until,
            "no audit record with key_id {acme_id}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let unauthenticated = records["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rec| rec["status"] == 401)
        .expect("a refused request has a record");
    assert!(unauthenticated["key_id"].is_null(), "{unauthenticated}");
    let all = records.to_string();
    for key in [&acme_key, &globex_key, &short_key] {
        assert!(!all.contains(key.as_str()), "raw key in an audit record");
    }

    // No raw key in the log or in any file under --data-dir.
    for key in [&acme_key, &globex_key, &short_key] {
        assert!(!r.log().contains(key.as_str()), "key in the log");
        for file in files(&s.data) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "raw key in {}",
                file.display()
            );
        }
    }
}

#[test]
fn the_admin_api_takes_only_admin_keys_and_checks_its_input() {
    let s = setup();
    let r = start(&s);
    let admin_addr = r.admin.unwrap();
    let (_, client_key) = issue_key(&r, "acme", "{}");

    // No key: 401; a client key: 403; a wrong key: 401.
    let none = call(admin_addr, "GET", "/v1/tenants/acme/keys", &[], b"");
    assert_error(&none, 401, "authentication_error", "missing_api_key");
    let client = call(
        admin_addr,
        "GET",
        "/v1/tenants/acme/keys",
        &[("Authorization", &format!("Bearer {client_key}"))],
        b"",
    );
    assert_error(&client, 403, "access_denied", "admin_key_required");
    let wrong = call(
        admin_addr,
        "GET",
        "/v1/audit",
        &[("Authorization", "Bearer not-the-admin-key-at-all")],
        b"",
    );
    assert_error(&wrong, 401, "authentication_error", "invalid_api_key");

    // Bad input: 400 naming the problem; unknown tenant 404; wrong method 405.
    for (body, what) in [
        ("{not json", "not valid JSON"),
        ("[1]", "JSON object"),
        (r#"{"tenant": "globex"}"#, "unknown field `tenant`"),
        (r#"{"role": 5}"#, "`role`"),
        (r#"{"expires_at": "yesterday"}"#, "`expires_at`"),
        (r#"{"expires_at": 1000}"#, "in the future"),
    ] {
        let resp = admin(&r, "POST", "/v1/tenants/acme/keys", body.as_bytes());
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(resp.text().contains(what), "{body}: {}", resp.text());
    }
    let unknown = admin(&r, "POST", "/v1/tenants/initech/keys", b"{}");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert!(unknown.text().contains("initech"));
    let put = admin(&r, "PUT", "/v1/tenants/acme/keys", b"{}");
    assert_eq!(put.status, 405, "{}", put.text());
    assert_eq!(admin(&r, "GET", "/v1/nothing", b"").status, 404);
}

#[test]
fn keys_survive_a_restart() {
    let s = setup();
    let mut r = start(&s);
    let (revoked_id, revoked) = issue_key(&r, "acme", "{}");
    let (_, kept) = issue_key(&r, "acme", "{}");
    assert_eq!(
        admin(
            &r,
            "DELETE",
            &format!("/v1/tenants/acme/keys/{revoked_id}"),
            b""
        )
        .status,
        200
    );
    r.signal(15);
    assert!(r.wait_exit(Duration::from_secs(30)).is_some());
    drop(r);
    let r = start(&s);
    assert_eq!(chat_as(&r, Some(&kept), &[]).status, 200);
    assert_error(
        &chat_as(&r, Some(&revoked), &[]),
        401,
        "authentication_error",
        "key_disabled",
    );
    let list = admin(&r, "GET", "/v1/tenants/acme/keys", b"").json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn without_auth_the_router_says_so_and_trusts_x_tenant() {
    let s = setup();
    let r = router(&["--table", s.table.to_str().unwrap()]);
    assert!(r.log().contains("AUTHENTICATION IS OFF"), "{}", r.log());
    let resp = chat_as(&r, None, &[("X-Tenant", "acme")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.route().0, "small");
}

/// Sends `n` chat requests from `threads` threads (so both cores take some) and returns the
/// answers.
fn burst(r: &Proc, key: &str, n: usize, threads: usize) -> Vec<Response> {
    let addr = r.addr;
    let auth = format!("Bearer {key}");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let auth = auth.clone();
                s.spawn(move || {
                    (0..n)
                        .filter(|i| i % threads == t)
                        .map(|_| {
                            call(
                                addr,
                                "POST",
                                "/v1/chat/completions",
                                &[("Authorization", &auth)],
                                &chat_body("auto", false),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn rate_limits_and_daily_budgets_hold_across_cores() {
    let (dir, table) = compiled(
        "version: v1
endpoints:
  - id: m
    type: mock
    models: [m1]
    pricing: { input_per_1k: 1.0, output_per_1k: 1.0 }
tenants:
  - id: rpm
    rate_limit_rpm: 20
  - id: tpm
    rate_limit_tpm: 600
  - id: daily
    daily_token_budget: 400
  - id: spend
    daily_spend_usd: 0.5
  - id: free
rules:
  - default:
      route_to: m
",
    );
    let r = router_with_auth(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--cores",
            "2",
        ],
        &[],
    );
    let check_429 = |resp: &Response, code: &str| {
        assert_eq!(resp.status, 429, "{}", resp.text());
        let v = resp.json();
        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        let after: u64 = resp.header("retry-after").unwrap().parse().unwrap();
        assert!(after >= 1, "{after}");
        after
    };

    // rpm 20, 40 requests from 4 threads on 2 cores: 20 pass (21 if a 3 s refill fell
    // inside the burst), the rest are 429 with Retry-After.
    let (_, key) = issue_key(&r, "rpm", "{}");
    let answers = burst(&r, &key, 40, 4);
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!((20..=21).contains(&ok), "{ok} passed");
    for a in answers.iter().filter(|a| a.status != 200) {
        let after = check_429(a, "rate_limit_exceeded");
        assert!(after <= 3, "{after}");
    }

    // tpm 600: the mock reports ~(body bytes / 4) prompt + completion tokens per request;
    // a few requests spend the minute's tokens, then 429 until they come back.
    let (_, key) = issue_key(&r, "tpm", "{}");
    let answers = burst(&r, &key, 30, 2);
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!((1..30).contains(&ok), "{ok} passed");
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(!limited.is_empty());
    for a in limited {
        assert!(a.text().contains("tokens per minute"), "{}", a.text());
        check_429(a, "rate_limit_exceeded");
    }

    // Daily token budget 400 and daily spend $0.50 (at $1 per 1k tokens): spent after a few
    // requests, then 429 `daily_budget_exceeded` until UTC midnight.
    for tenant in ["daily", "spend"] {
        let (_, key) = issue_key(&r, tenant, "{}");
        let answers = burst(&r, &key, 40, 1);
        let ok = answers.iter().take_while(|a| a.status == 200).count();
        assert!((1..40).contains(&ok), "{tenant}: {ok} passed");
        for a in &answers[ok..] {
            let after = check_429(a, "daily_budget_exceeded");
            assert!(after <= 86_400, "{after}");
        }
    }

    // A tenant without limits is untouched by the others.
    let (_, key) = issue_key(&r, "free", "{}");
    assert!(burst(&r, &key, 40, 4).iter().all(|a| a.status == 200));
}

#[test]
fn a_cost_budget_picks_a_fallback_that_fits_or_refuses() {
    let (_dir, table) = compiled(
        "version: v1
endpoints:
  - id: premium
    type: mock
    models: [big]
    pricing: { input_per_1k: 10, output_per_1k: 30 }
  - id: cheap
    type: mock
    models: [small]
    pricing: { input_per_1k: 0.1, output_per_1k: 0.2 }
rules:
  - default:
      route_to: premium
      fallback: [cheap]
",
    );
    let r = router(&["--table", table.to_str().unwrap()]);
    let body =
        br#"{"model": "auto", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}"#;
    let send = |budget: &str| {
        call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Cost-Budget-Usd", budget)],
            body,
        )
    };
    // premium's worst case: ~22 prompt tokens at $10/1k + 100 at $30/1k ≈ $3.22.
    assert_eq!(send("10").route().0, "premium");
    let fell_back = send("0.10");
    assert_eq!(fell_back.status, 200, "{}", fell_back.text());
    assert_eq!(fell_back.route().0, "cheap");
    assert_eq!(fell_back.json()["model"], "small");
    let refused = send("0.01");
    assert_eq!(refused.status, 400, "{}", refused.text());
    let v = refused.json();
    assert_eq!(v["error"]["code"], "cost_budget_exceeded", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`premium`") && message.contains("`cheap`"),
        "{message}"
    );
    // No budget: the rule's endpoint.
    let plain = call(r.addr, "POST", "/v1/chat/completions", &[], body);
    assert_eq!(plain.route().0, "premium");
}

#[test]
fn the_allowlist_bounds_auto_resolution_and_fallbacks() {
    let (_dir, table) = compiled(
        "version: v1
endpoints:
  - id: shared
    type: mock
    models: [big-model, small-model]
  - id: only-big
    type: mock
    models: [big-model]
tenants:
  - id: acme
    model_allowlist: [small-model]
  - id: globex
rules:
  - name: big-first
    match:
      tenant: [acme, globex]
    route_to: only-big
    fallback: [shared]
  - default:
      route_to: shared
",
    );
    let r = router(&["--table", table.to_str().unwrap()]);
    let send = |tenant: &str, model: &str| {
        call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Tenant", tenant)],
            &chat_body(model, false),
        )
    };
    // auto: globex takes the rule's endpoint and its default model; acme may not use
    // `big-model`, so `only-big` is skipped and `shared` resolves to acme's allowed model.
    let g = send("globex", "auto");
    assert_eq!(
        (g.route().0.as_str(), g.json()["model"].clone()),
        ("only-big", "big-model".into())
    );
    let a = send("acme", "auto");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        (a.route().0.as_str(), a.json()["model"].clone()),
        ("shared", "small-model".into())
    );
    // Pinned: a model off the allowlist is 403 naming it, even though an endpoint serves it.
    let denied = send("acme", "big-model");
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("big-model"));
    // Pinned allowed model: the fallback that serves it.
    let pinned = send("acme", "small-model");
    assert_eq!(pinned.route().0, "shared");
}
