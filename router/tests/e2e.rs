//! End to end: the real router in front of the real mock upstream, over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

mod common;

/// Request headers as name-value pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn policy(mock: SocketAddr, dead: u16) -> String {
    format!(
        r#"
version: v1
endpoints:
  - id: gpu-a
    type: vllm
    url: http://{mock}/a/v1
    transport: privatelink
    models: [llama-70b, llama-8b]
    default_model: llama-70b
  - id: gpu-b
    type: custom
    url: http://{mock}/b/v1
    transport: privatelink
    models: [mixtral, llama-8b]
    api_key_env: E2E_UPSTREAM_KEY
  - id: slow
    type: vllm
    url: http://{mock}/slow/v1
    transport: privatelink
    timeout_ms: 400
    models: [slow-model]
  - id: down
    type: vllm
    url: http://127.0.0.1:{dead}/v1
    transport: privatelink
    models: [llama-8b, mixtral]
  - id: azure
    type: azure_openai
    url: http://{mock}
    transport: private_endpoint
    deployment: gpt4o-prod
    api_version: "2024-06-01"
    api_key_env: E2E_AZURE_KEY
    models: [gpt-4o]
  - id: local
    type: mock
    transport: privatelink
    models: [mock-model]
tenants:
  - id: acme
    model_allowlist: [llama-70b, llama-8b, mixtral]
  - id: down-test
  - id: slow-test
  - id: claude-test
data_classes:
  - id: pii
    stays_private: true
rules:
  - name: pii-private
    match:
      data_class: pii
    route_to: gpu-a
  - name: fast-lane
    match:
      latency_budget_ms: "<200"
    route_to: gpu-b
  - name: acme
    match:
      tenant: acme
    route_to: gpu-a
    fallback: [gpu-b]
  - name: admins
    match:
      user_role: admin
    route_to: azure
  - name: down-first
    match:
      tenant: down-test
    route_to: down
    fallback: [gpu-b]
  - name: slow
    match:
      tenant: slow-test
    route_to: slow
  - name: claude
    match:
      tenant: claude-test
    route_to: anthropic
  - name: cheap
    match:
      tenant: cost-test
      cost_cap_per_1k: "<0.002"
    route_to: gpu-b
  - default:
      route_to: local
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    table: std::path::PathBuf,
    mock: Proc,
    router: Proc,
}

fn setup(router_args: &[&str]) -> Setup {
    let mock = mock(&["--chunks", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("policy.swt");
    compile(&policy(mock.addr, dead_port()), &table, 1);
    let mut args = vec!["--table", table.to_str().unwrap(), "--cores", "2"];
    args.extend_from_slice(router_args);
    let router = router_env(
        &args,
        &[
            ("E2E_UPSTREAM_KEY", "sk-upstream-secret-b"),
            ("E2E_AZURE_KEY", "azure-secret-key"),
        ],
    );
    Setup {
        _dir: dir,
        table,
        mock,
        router,
    }
}

#[test]
fn each_rule_is_reached_by_its_headers() {
    let s = setup(&[]);
    let cases: &[(Headers<'_>, &str, &str, &str)] = &[
        (
            &[("X-Data-Class", "pii")],
            "gpu-a",
            "0",
            "/a/v1/chat/completions",
        ),
        (
            &[("X-Latency-Budget-Ms", "150")],
            "gpu-b",
            "1",
            "/b/v1/chat/completions",
        ),
        (
            &[("X-Tenant", "acme")],
            "gpu-a",
            "2",
            "/a/v1/chat/completions",
        ),
        (
            &[("X-User-Role", "admin")],
            "azure",
            "3",
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01",
        ),
        (&[("X-Tenant", "nobody")], "local", "8", ""),
        // $0.0001 over ~100 worst-case tokens is ~$0.001 per 1k: under the rule's cap.
        (
            &[("X-Tenant", "cost-test"), ("X-Cost-Budget-Usd", "0.0001")],
            "gpu-b",
            "7",
            "/b/v1/chat/completions",
        ),
        // $1 over the same tokens is far over it: the default.
        (
            &[("X-Tenant", "cost-test"), ("X-Cost-Budget-Usd", "1")],
            "local",
            "8",
            "",
        ),
    ];
    for (headers, endpoint, rule, target) in cases {
        let model = if *endpoint == "azure" {
            "gpt-4o"
        } else {
            "auto"
        };
        let r = chat(s.router.addr, model, headers);
        assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
        assert_eq!(
            r.route(),
            ((*endpoint).to_owned(), (*rule).to_owned()),
            "{headers:?}"
        );
        assert!(r.header("x-request-id").is_some());
        if !target.is_empty() {
            let last = mock_requests(&s.mock).pop().unwrap();
            assert_eq!(last["target"], *target, "{headers:?}");
        }
    }
    // Credentials: the endpoint's own, never the client's.
    let r = chat(
        s.router.addr,
        "auto",
        &[
            ("X-Latency-Budget-Ms", "10"),
            ("Authorization", "Bearer client-key"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = mock_requests(&s.mock).pop().unwrap();
    let headers = seen["headers"].as_array().unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("authorization"), ["Bearer sk-upstream-secret-b"]);
    assert!(get("x-latency-budget-ms").is_empty());
    let r = chat(s.router.addr, "gpt-4o", &[("X-User-Role", "admin")]);
    assert_eq!(r.status, 200);
    let seen = mock_requests(&s.mock).pop().unwrap();
    let api_key: Vec<_> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "api-key")
        .collect();
    assert_eq!(api_key.len(), 1);
    assert_eq!(api_key[0][1], "azure-secret-key");
    // No secret in the router's log.
    let log = s.router.log();
    assert!(!log.contains("sk-upstream-secret-b") && !log.contains("azure-secret-key"));
}

#[test]
fn auto_is_rewritten_and_everything_else_forwarded_byte_for_byte() {
    let s = setup(&[]);
    let body = br#"{ "messages" : [ {"role":"user","content":"caf\u00e9 \"auto\" \ud83d\ude00"} ],
        "temperature": 0.25, "model":"auto" ,"stream":false, "n": 1, "extra": {"model": "nested"} }"#;
    let r = call(
        s.router.addr,
        "POST",
        "/v1/route",
        &[("X-Tenant", "acme"), ("X-Request-Id", "req-123")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("req-123"));
    assert_eq!(r.json()["model"], "llama-70b");
    let seen = mock_requests(&s.mock).pop().unwrap();
    let expected =
        String::from_utf8_lossy(body).replace(r#""model":"auto""#, r#""model":"llama-70b""#);
    assert_eq!(seen["body"].as_str().unwrap(), expected);

    // A pinned model the endpoint serves is forwarded unchanged.
    let r = chat(s.router.addr, "llama-8b", &[("X-Tenant", "acme")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.route().0, "gpu-a");
    assert_eq!(r.json()["model"], "llama-8b");
    // Served only by the fallback: the fallback takes it.
    let r = chat(s.router.addr, "mixtral", &[("X-Tenant", "acme")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.route(), ("gpu-b".to_owned(), "2".to_owned()));
    // Served by neither: 400 naming the model.
    let r = chat(s.router.addr, "gpt-4o", &[("X-Latency-Budget-Ms", "5")]);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "model_not_found");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gpt-4o`")
    );
    // Not on the tenant's allowlist: 403 naming it.
    let r = chat(s.router.addr, "gpt-4o", &[("X-Tenant", "acme")]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("gpt-4o"), "{}", r.text());
}

#[test]
fn bad_bodies_and_headers_are_refused_before_anything_is_sent() {
    let s = setup(&[]);
    let before = mock_requests(&s.mock).len();
    let cases: &[(&[u8], Headers<'_>, u16, &str)] = &[
        (b"{\"model\":\"auto\",", &[], 400, "invalid_json"),
        (b"not json", &[], 400, "invalid_json"),
        (b"{\"model\":\"auto\"}", &[], 400, "missing_messages"),
        (b"{\"messages\":[]}", &[], 400, "bad_request"),
        (
            b"{\"model\":\"auto\",\"model\":\"x\",\"messages\":[]}",
            &[],
            400,
            "invalid_json",
        ),
        (
            b"{\"model\":\"auto\",\"messages\":[]}",
            &[("X-Latency-Budget-Ms", "soon")],
            400,
            "invalid_header",
        ),
        (
            b"{\"model\":\"auto\",\"messages\":[]}",
            &[("X-Cost-Budget-Usd", "-1")],
            400,
            "invalid_header",
        ),
    ];
    for (body, headers, status, code) in cases {
        let mut h = vec![("X-Tenant", "acme")];
        h.extend_from_slice(headers);
        let r = call(s.router.addr, "POST", "/v1/chat/completions", &h, body);
        assert_eq!(r.status, *status, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.error_code(), *code, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(
        mock_requests(&s.mock).len(),
        before,
        "nothing reached the upstream"
    );
    let r = call(s.router.addr, "GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    let r = call(s.router.addr, "GET", "/v1/chat/completions", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn streams_are_relayed_chunk_by_chunk() {
    let s = setup(&[]);
    let mut c = Conn::open(s.router.addr);
    let started = Instant::now();
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[
            ("X-Tenant", "acme"),
            ("x-mock-chunks", "5"),
            ("x-mock-chunk-delay-ms", "300"),
        ],
        &chat_body("auto", true),
    ));
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream"))
    );
    let first = c.read_chunk().unwrap();
    let first_at = started.elapsed();
    let mut events = String::from_utf8(first).unwrap();
    while let Some(chunk) = c.read_chunk() {
        events.push_str(&String::from_utf8(chunk).unwrap());
    }
    let total = started.elapsed();
    // 8 events 300 ms apart: the first must arrive long before the last.
    assert!(
        first_at < Duration::from_millis(1000),
        "first chunk after {first_at:?}"
    );
    assert!(
        total >= Duration::from_millis(1800),
        "whole stream took {total:?}"
    );
    // The client did not ask for usage (`stream_options.include_usage`): no usage chunk.
    assert!(!events.contains("total_tokens"), "{events}");
    assert!(events.trim_end().ends_with("data: [DONE]"));
    // The connection is reusable after a stream.
    c.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(c.read_response().unwrap().status, 200);
}

#[test]
fn upstream_failures_map_to_502_503_504_and_fallbacks() {
    let s = setup(&[]);
    // Primary down (connection refused): the fallback serves.
    let r = chat(s.router.addr, "auto", &[("X-Tenant", "down-test")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.route(), ("gpu-b".to_owned(), "4".to_owned()));
    // Pinned model only the dead endpoint and the fallback serve: fallback.
    // Slow: past the endpoint's 400 ms timeout.
    let r = chat(
        s.router.addr,
        "auto",
        &[("X-Tenant", "slow-test"), ("x-mock-latency-ms", "3000")],
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_timeout");
    assert_eq!(r.json()["error"]["type"], "provider_error");
    // Reset and garbage: 502.
    for fault in ["reset", "close", "garbage"] {
        let r = chat(
            s.router.addr,
            "auto",
            &[("X-Tenant", "acme"), ("x-mock-fault", fault)],
        );
        assert_eq!(r.status, 502, "{fault}: {}", r.text());
        assert_eq!(r.error_code(), "upstream_bad_response", "{fault}");
    }
    // Upstream's own error status is relayed as is.
    let r = chat(
        s.router.addr,
        "auto",
        &[("X-Tenant", "acme"), ("x-mock-status", "429")],
    );
    assert_eq!(r.status, 429);
    // The built-in `anthropic` endpoint without `ANTHROPIC_API_KEY`: 503, and the router
    // says nothing about why to the client (its log does).
    let r = chat(s.router.addr, "auto", &[("X-Tenant", "claude-test")]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_credentials_missing");
    // The router is fine afterwards.
    assert_eq!(
        chat(s.router.addr, "auto", &[("X-Tenant", "acme")]).status,
        200
    );
}

#[test]
fn upstream_down_without_fallback_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    let yaml = format!(
        "version: v1\nendpoints:\n  - id: gone\n    type: vllm\n    url: http://127.0.0.1:{}/v1\n    models: [m]\nrules:\n  - default:\n      route_to: gone\n",
        dead_port()
    );
    compile(&yaml, &table, 1);
    let r = router(&["--table", table.to_str().unwrap(), "--cores", "1"]);
    let resp = chat(r.addr, "auto", &[]);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.error_code(), "upstream_unavailable");
    assert_eq!(resp.route().0, "gone");
}

#[test]
fn a_stream_cut_midway_ends_with_an_sse_error_event() {
    let s = setup(&[]);
    let mut c = Conn::open(s.router.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[
            ("X-Tenant", "acme"),
            ("x-mock-chunks", "6"),
            ("x-mock-fault", "drop-after-2"),
        ],
        &chat_body("auto", true),
    ));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("data: {\"error\""),
        "stream ends with: {last}"
    );
    let err: serde_json::Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(err["error"]["code"], "upstream_bad_response");
    // A fixed-length body cut short closes the connection rather than completing it.
    let mut c = Conn::open(s.router.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "acme"), ("x-mock-fault", "short-body")],
        &chat_body("auto", false),
    ));
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.stream, &mut got);
    assert!(got.len() < len, "short body must not look complete");
}

#[test]
fn https_upstream_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let m = mock(&["--tls", "--ca-out", ca.to_str().unwrap()]);
    let table = dir.path().join("t.swt");
    let yaml = |ca_line: &str| {
        format!(
            "version: v1\nendpoints:\n  - id: secure\n    type: vllm\n    url: https://localhost:{}/v1\n    models: [m]\n{ca_line}rules:\n  - default:\n      route_to: secure\n",
            m.addr.port()
        )
    };
    compile(
        &yaml(&format!("    ca_file: {}\n", ca.display())),
        &table,
        1,
    );
    let r = router(&["--table", table.to_str().unwrap(), "--cores", "1"]);
    for stream in [false, true] {
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[],
            &chat_body("auto", stream),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.route().0, "secure");
    }
    // Without the CA the certificate is refused: 503, naming the TLS failure.
    let table2 = dir.path().join("t2.swt");
    compile(&yaml(""), &table2, 1);
    let r2 = router(&["--table", table2.to_str().unwrap(), "--cores", "1"]);
    let resp = call(
        r2.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &chat_body("auto", false),
    );
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.text().contains("TLS"), "{}", resp.text());
}

#[test]
fn hot_reload_under_load_fails_no_request() {
    let s = setup(&[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = s.router.addr;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let (mut ok, mut failed, mut endpoints) = (0, 0, std::collections::BTreeSet::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.send(&request(
                        "POST",
                        "/v1/chat/completions",
                        &[("X-Tenant", "nobody")],
                        &chat_body("auto", false),
                    ));
                    match c.read_response() {
                        Some(r) if r.status == 200 => {
                            ok += 1;
                            endpoints.insert(r.route().0);
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed, endpoints)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // New revision: the default now goes to gpu-a instead of the in-process mock.
    let next = policy(s.mock.addr, dead_port()).replace(
        "  - default:\n      route_to: local",
        "  - default:\n      route_to: gpu-a",
    );
    compile(&next, &s.table, 2);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let r = chat(addr, "auto", &[("X-Tenant", "nobody")]);
        if r.route().0 == "gpu-a" {
            break;
        }
        assert!(Instant::now() < until, "new table not in effect within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A bad table is refused (the log says why) and the last good one keeps serving.
    let refusals = |what: &str| {
        s.router
            .log()
            .lines()
            .filter(|l| l.contains("new table refused") && l.contains(what))
            .count()
    };
    let waited_for = |what: &str| {
        let until = Instant::now() + Duration::from_secs(5);
        while refusals(what) == 0 {
            assert!(
                Instant::now() < until,
                "no refusal naming `{what}` within 5 s:\n{}",
                s.router.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::fs::write(s.table.with_extension("tmp"), b"SWYTABLE garbage").unwrap();
    std::fs::rename(s.table.with_extension("tmp"), &s.table).unwrap();
    waited_for("is not a valid decision table");
    assert_eq!(
        chat(addr, "auto", &[("X-Tenant", "nobody")]).route().0,
        "gpu-a"
    );
    // An older revision is refused too.
    compile(&policy(s.mock.addr, dead_port()), &s.table, 1);
    waited_for("has revision 1 and the serving table 2");
    assert_eq!(
        chat(addr, "auto", &[("X-Tenant", "nobody")]).route().0,
        "gpu-a"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut seen = std::collections::BTreeSet::new();
    for w in workers {
        let (ok, failed, endpoints) = w.join().unwrap();
        assert_eq!(failed, 0, "requests failed during reload");
        total += ok;
        seen.extend(endpoints);
    }
    assert!(total > 50, "only {total} requests under load");
    assert!(seen.contains("local") && seen.contains("gpu-a"), "{seen:?}");
}

#[test]
fn sighup_reloads_the_table() {
    let s = setup(&["--reload-interval-ms", "600000"]);
    let next = policy(s.mock.addr, dead_port()).replace(
        "  - default:\n      route_to: local",
        "  - default:\n      route_to: gpu-b",
    );
    compile(&next, &s.table, 5);
    s.router.signal(1);
    let until = Instant::now() + Duration::from_secs(5);
    while chat(s.router.addr, "auto", &[]).route().0 != "gpu-b" {
        assert!(Instant::now() < until, "SIGHUP did not reload within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut s = setup(&["--shutdown-timeout-ms", "10000"]);
    let addr = s.router.addr;
    let inflight: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                chat(
                    addr,
                    "auto",
                    &[("X-Tenant", "acme"), ("x-mock-latency-ms", "1500")],
                )
            })
        })
        .collect();
    // All three are waiting on the upstream before the stop signal.
    let until = Instant::now() + Duration::from_secs(10);
    while mock_requests(&s.mock).len() < 3 {
        assert!(
            Instant::now() < until,
            "the requests never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.router.signal(15);
    let until = Instant::now() + Duration::from_secs(10);
    while !s.router.log().contains("shutting down") {
        assert!(Instant::now() < until, "no shutdown log line");
        std::thread::sleep(Duration::from_millis(20));
    }
    // No new request is served while draining: the connection is refused, or (if it was
    // accepted just before the listener closed) closed or reset without an answer — never
    // left hanging.
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => {}
        Ok(mut c) => {
            let _ = c.write_all(&request("GET", "/healthz", &[], b""));
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            match std::io::Read::read(&mut c, &mut b) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("a new connection during the drain got {other:?}"),
            }
        }
    }
    for t in inflight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "in-flight request failed: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
    }
    // The drain deadline is 10 s; allow for a loaded CI machine beyond it, and show the
    // router's log if it still has not exited.
    let Some(status) = s.router.wait_exit(Duration::from_secs(15)) else {
        panic!("router did not exit; its log:\n{}", s.router.log());
    };
    assert!(status.success(), "{status:?}");
    assert!(s.router.log().contains("switchyard stopped"));
}

#[test]
fn default_deny_names_the_rule_and_other_paths_answer() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    let yaml = "version: v1\nendpoints:\n  - id: local\n    type: mock\n    models: [m1, m2]\n    default_model: m2\nrules:\n  - name: only-acme\n    match:\n      tenant: acme\n    route_to: local\n  - default: deny\n";
    compile(yaml, &table, 3);
    let r = router(&["--table", table.to_str().unwrap(), "--cores", "1"]);
    let denied = chat(r.addr, "auto", &[("X-Tenant", "other")]);
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.error_code(), "policy_denied");
    assert_eq!(denied.json()["error"]["type"], "access_denied");
    assert!(
        denied.text().contains("default rule (rule 1)"),
        "{}",
        denied.text()
    );
    assert_eq!(denied.route(), ("none".to_owned(), "1".to_owned()));
    let ok = chat(r.addr, "auto", &[("X-Tenant", "acme")]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["model"], "m2");
    assert_eq!(ok.route(), ("local".to_owned(), "0".to_owned()));

    let models = call(r.addr, "GET", "/v1/models", &[], b"").json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    let health = call(r.addr, "GET", "/healthz", &[], b"").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["revision"], 3);

    // The Messages API answers in Anthropic's error shape.
    let messages = call(r.addr, "POST", "/v1/messages", &[], b"{}");
    assert_eq!(messages.status, 400, "{}", messages.text());
    assert_eq!(messages.json()["type"], "error");
    assert_eq!(messages.json()["error"]["type"], "invalid_request_error");
    assert!(messages.text().contains("messages"));
    let gz = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Encoding", "gzip"), ("X-Tenant", "acme")],
        &chat_body("auto", false),
    );
    assert_eq!(gz.status, 415);
    assert_eq!(gz.error_code(), "unsupported_content_encoding");
}

#[test]
fn a_close_delimited_upstream_body_is_rechunked_once_and_the_connection_stays_usable() {
    let s = setup(&[]);
    let mut c = Conn::open(s.router.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "acme"), ("x-mock-fault", "no-length")],
        &chat_body("auto", false),
    ));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.json()["model"], "llama-70b");
    // The next response on the same connection must parse: nothing was left behind.
    c.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(c.read_response().unwrap().status, 200);
}
