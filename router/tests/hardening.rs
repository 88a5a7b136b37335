//! Regression tests for the defects a close review of the router found (issue 11), each named
//! after what broke and each against the real router over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The router's resident memory, KiB.
fn rss_kib(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

const DECLARED: usize = 16 * 1024 * 1024;

fn head_declaring(len: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

/// A counter or gauge from the router's `/metrics` (0 when absent).
fn metric(r: &Proc, name: &str) -> u64 {
    call(r.addr, "GET", "/metrics", &[], b"")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `check` until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Item 1: 60 heads declaring 16 MiB each took the router from 17 MB to 1.0 GB (the buffer
/// was zero-filled to the declared length before a byte arrived or the key was checked).
#[test]
fn heads_declaring_huge_bodies_do_not_allocate_them() {
    // With keys on, a head without a key is refused before any body is awaited.
    let r = router_with_auth(&["--cores", "2"], &[]);
    let before = rss_kib(&r);
    let mut conns = Vec::new();
    for _ in 0..60 {
        let mut c = Conn::open(r.addr);
        c.send(&head_declaring(DECLARED, ""));
        conns.push(c);
    }
    for c in &mut conns {
        let resp = c.read_response().expect("refused with an answer");
        assert_eq!(resp.status, 401, "{}", resp.text());
        assert_eq!(resp.error_code(), "missing_api_key");
        assert!(
            c.is_closed(Duration::from_secs(3)),
            "the unread body ends the connection"
        );
    }
    let grown = rss_kib(&r).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB for 60 refused heads"
    );
    drop(conns);

    // Without keys (or with a good one) the body is awaited, but memory grows only as bytes
    // arrive: 60 connections that send nothing after the head hold no body buffer.
    let r = router(&["--cores", "2", "--body-timeout-ms", "20000"]);
    let before = rss_kib(&r);
    let mut socks = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(r.addr).unwrap();
        s.write_all(&head_declaring(DECLARED, "")).unwrap();
        socks.push(s);
    }
    // Every one of them is open and waiting for its body.
    assert!(eventually(Duration::from_secs(10), || {
        metric(&r, "switchyard_connections") >= 60
    }));
    let grown = rss_kib(&r).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} KiB for 60 heads with no body byte"
    );
    // And a real 3 MiB body on one of them still works (the buffer grows to it).
    let body = big_chat_body(3 * 1024 * 1024);
    let mut c = Conn::open(r.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "demo")],
        &body,
    ));
    let resp = c.read_response().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A chat body of about `size` bytes (one long message).
fn big_chat_body(size: usize) -> Vec<u8> {
    serde_json::json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "x".repeat(size)}],
    })
    .to_string()
    .into_bytes()
}

/// Item 1: `100 Continue` went out before the key was checked, inviting the body.
#[test]
fn no_100_continue_before_the_key_is_checked() {
    let r = router_with_auth(&[], &[]);
    let mut c = Conn::open(r.addr);
    c.send(&head_declaring(1000, "Expect: 100-continue\r\n"));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(
        status, 401,
        "the first answer is the refusal, not 100 Continue"
    );

    // With a key, 100 Continue comes and the request is served.
    let r = router(&[]);
    let body = chat_body("auto", false);
    let mut c = Conn::open(r.addr);
    c.send(&head_declaring(
        body.len(),
        "Expect: 100-continue\r\nX-Tenant: demo\r\n",
    ));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 100);
    c.send(&body);
    let resp = c.read_response().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// Item 1: no cap on the bytes all unfinished bodies together may hold.
#[test]
fn bodies_in_progress_share_one_budget() {
    let r = router(&[
        "--max-pending-body-bytes",
        "1048576",
        "--body-timeout-ms",
        "20000",
    ]);
    let first = big_chat_body(700 * 1024);
    let mut a = TcpStream::connect(r.addr).unwrap();
    a.write_all(
        &request(
            "POST",
            "/v1/chat/completions",
            &[("X-Tenant", "demo")],
            &first,
        )[..first.len() / 2 + 200],
    )
    .unwrap();
    // The router buffers the first half (its buffer grows to hold it).
    assert!(eventually(Duration::from_secs(10), || {
        metric(&r, "switchyard_request_body_bytes_buffered") >= 300 * 1024
    }));
    let second = big_chat_body(700 * 1024);
    let mut b = Conn::open(r.addr);
    b.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "demo")],
        &second,
    ));
    let resp = b.read_response().expect("an answer");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.error_code(), "server_busy");
    assert_eq!(resp.header("retry-after"), Some("1"));
    // The first body completes within the budget and is served.
    let full = request(
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "demo")],
        &first,
    );
    a.write_all(&full[first.len() / 2 + 200..]).unwrap();
    let resp = Conn::from_stream(a).read_response().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Once it is done (its connection returns the buffer right after answering), the budget
    // is free again.
    let served = eventually(Duration::from_secs(3), || {
        call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Tenant", "demo")],
            &second,
        )
        .status
            == 200
    });
    assert!(served, "the budget was not released");
}

/// Item 8: a key issued without a role reached a rule gated on `user_role: admin` by sending
/// `X-User-Role: admin`.
#[test]
fn a_key_without_a_role_cannot_claim_one() {
    let (dir, table) = compiled(
        "version: v1
endpoints:
  - id: admin-only
    type: mock
    transport: privatelink
    models: [m]
  - id: everyone
    type: mock
    transport: privatelink
    models: [m]
tenants:
  - id: acme
rules:
  - name: admins
    match: { user_role: admin }
    route_to: admin-only
  - default:
      route_to: everyone
",
    );
    let r = router_with_auth(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    let chat_as = |key: &str, role: Option<&str>| {
        let auth = format!("Bearer {key}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(role.map(|r| ("X-User-Role", r)));
        chat(r.addr, "auto", &headers)
    };
    let (_, plain) = issue_key(&r, "acme", "{}");
    let resp = chat_as(&plain, Some("admin"));
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.error_code(), "role_not_assertable");
    assert_eq!(chat_as(&plain, None).route().0, "everyone");

    // A key with the role gets the rule; one issued to assert roles may say it.
    let (_, admin_key) = issue_key(&r, "acme", r#"{"role": "admin"}"#);
    assert_eq!(chat_as(&admin_key, None).route().0, "admin-only");
    let (_, front_end) = issue_key(&r, "acme", r#"{"assert_roles": true}"#);
    assert_eq!(chat_as(&front_end, Some("admin")).route().0, "admin-only");
    assert_eq!(chat_as(&front_end, None).route().0, "everyone");
    let both = admin(
        &r,
        "POST",
        "/v1/tenants/acme/keys",
        br#"{"role": "x", "assert_roles": true}"#,
    );
    assert_eq!(both.status, 400, "{}", both.text());
}

/// Routes every request to the mock upstream at `mock` (type `vllm`).
fn upstream_policy(mock: std::net::SocketAddr) -> String {
    format!(
        "version: v1
endpoints:
  - id: up
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [m]
    pricing: {{ input_per_1k: 1.0, output_per_1k: 2.0 }}
rules:
  - default:
      route_to: up
"
    )
}

/// The audit record of `request_id`, read back through `GET /v1/audit` once it is there.
fn audit_record(r: &Proc, request_id: &str) -> serde_json::Value {
    let mut found = None;
    let there = eventually(Duration::from_secs(10), || {
        let resp = admin(r, "GET", "/v1/audit?limit=1000", b"");
        assert_eq!(resp.status, 200, "{}", resp.text());
        found = resp.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["request_id"] == request_id)
            .cloned();
        found.is_some()
    });
    assert!(there, "no audit record for {request_id}");
    found.unwrap()
}

fn stream_request(r: &Proc, id: &str, body: &serde_json::Value, extra: &[(&str, &str)]) -> String {
    let mut headers = vec![
        ("X-Request-Id", id),
        ("x-mock-chunks", "6"),
        ("x-mock-chunk-bytes", "3"),
    ];
    headers.extend_from_slice(extra);
    let resp = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &headers,
        body.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

/// Item 2: a 6-token streamed answer without `stream_options.include_usage` (the SDK
/// default) was recorded as `tokens_out = 197`: SSE wire bytes divided by 4.
#[test]
fn a_stream_is_metered_by_the_upstreams_own_count() {
    let mock = mock(&[]);
    let (_dir, r) = router_to(&mock, &[]);
    let plain = serde_json::json!({
        "model": "m", "stream": true,
        "messages": [{"role": "user", "content": "count to six"}],
    });
    // The client did not ask: it gets no usage chunk, the record gets the upstream's count.
    let text = stream_request(&r, "plain", &plain, &[]);
    assert!(!text.contains("completion_tokens"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let row = audit_record(&r, "plain");
    assert_eq!(row["tokens_out"], 6, "{row}");
    assert_eq!(row["tokens_estimated"], false, "{row}");
    // The upstream was asked for usage (and the client's body otherwise left alone).
    let sent = mock_requests(&mock);
    let body: serde_json::Value =
        serde_json::from_str(sent.last().unwrap()["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    assert_eq!(body["messages"], plain["messages"]);

    // A client that asked gets the chunk, with its other options kept.
    let mut asked = plain.clone();
    asked["stream_options"] = serde_json::json!({"include_usage": true});
    let text = stream_request(&r, "asked", &asked, &[]);
    assert!(text.contains("\"completion_tokens\":6"), "{text}");
    assert_eq!(audit_record(&r, "asked")["tokens_out"], 6);

    // An upstream that never reports usage: estimated from the 18 characters it generated
    // (not from the bytes on the wire), and flagged as an estimate.
    let text = stream_request(&r, "no-usage", &plain, &[("x-mock-fault", "no-usage")]);
    assert!(text.contains("xxx"), "{text}");
    let row = audit_record(&r, "no-usage");
    assert_eq!(row["tokens_out"], 5, "ceil(18 / 4): {row}");
    assert_eq!(row["tokens_estimated"], true, "{row}");
}

/// Item 2: the usage object was read up to its first `}` taking the first digits after each
/// key, so nested details or another key order gave wrong counts. (The mock's JSON answer
/// carries `prompt_tokens_details` inside `usage`.)
#[test]
fn json_usage_is_parsed_not_scraped() {
    let mock = mock(&[]);
    let (_dir, r) = router_to(&mock, &[]);
    let resp = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "json"), ("x-mock-chunks", "9")],
        &chat_body("m", false),
    );
    assert_eq!(resp.status, 200);
    let usage = &resp.json()["usage"];
    let row = audit_record(&r, "json");
    assert_eq!(row["tokens_in"], usage["prompt_tokens"], "{row}");
    assert_eq!(row["tokens_out"], 9, "{row}");
    assert_eq!(row["tokens_estimated"], false);
    // Money is exact in the audit API: a decimal string and the integer micro-dollars
    // ($1 and $2 per 1k tokens).
    let micros = row["tokens_in"].as_i64().unwrap() * 1000 + 9 * 2000;
    assert_eq!(row["cost_micros"], micros, "{row}");
    let text = row["cost_usd"]
        .as_str()
        .expect("cost_usd is a decimal string");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let parsed =
        whole.parse::<i64>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i64>().unwrap();
    assert_eq!(parsed, micros, "{row}");
}

/// Starts the router (`--no-auth`) on `yaml` compiled, with `extra` flags; the directory
/// holds the table and the data directory.
fn router_on(yaml: &str, extra: &[&str]) -> (tempfile::TempDir, Proc) {
    let (dir, table) = compiled(yaml);
    let data = dir.path().join("data");
    let mut args = vec![
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = router(&args);
    (dir, r)
}

/// Starts the router on `upstream_policy(mock)` with `extra` flags.
fn router_to(mock: &Proc, extra: &[&str]) -> (tempfile::TempDir, Proc) {
    router_on(&upstream_policy(mock.addr), extra)
}

/// Item 11: an upstream that sent `103 Early Hints` and its `200` in one write left the
/// client waiting for the whole upstream timeout (then 504): the buffered final head was not
/// parsed before reading again.
#[test]
fn an_interim_response_and_the_final_head_in_one_read() {
    let mock = mock(&[]);
    let (_dir, r) = router_to(&mock, &["--upstream-timeout-ms", "5000"]);
    let started = Instant::now();
    let resp = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-fault", "early-hints")],
        &chat_body("m", false),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.json()["choices"].is_array());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
}

/// Item 12: a chunked body ending `0\r\n\n` (bare LF before the trailer section's end) was
/// accepted, and the pipelined `GET` behind it was swallowed as trailer bytes — the desync a
/// lenient front proxy turns into request smuggling.
#[test]
fn a_bare_lf_ending_a_chunked_body_is_refused() {
    let r = router(&[]);
    let body = chat_body("auto", false);
    let mut raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Tenant: demo\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n0\r\n\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut c = Conn::open(r.addr);
    c.send(&raw);
    let resp = c.read_response().unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "nothing after a refused framing is read"
    );
    // A head with a bare LF is refused the same way.
    let mut c = Conn::open(r.addr);
    c.send(b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 400);
}

/// Item 13: `POST /v1/policies` with `{"yaml": "- - - …"}` overflowed the stack and aborted
/// the whole process (the YAML reader had no depth cap; later stages recurse).
#[test]
fn a_deeply_nested_policy_is_refused_not_a_crash() {
    let r = router(&[]);
    for yaml in [
        format!("{}x", "- ".repeat(100_000)),
        format!("rules: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("rules: {}", "{a: ".repeat(50_000)),
    ] {
        let body = serde_json::json!({ "yaml": yaml }).to_string();
        let resp = admin(&r, "POST", "/v1/policies", body.as_bytes());
        assert_eq!(
            resp.status,
            400,
            "{}",
            &resp.text()[..resp.text().len().min(300)]
        );
        assert_eq!(resp.error_code(), "invalid_policy");
    }
    // A JSON policy object nested as deep is refused as JSON.
    let deep = format!(
        "{{\"rules\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let resp = admin(&r, "POST", "/v1/policies", deep.as_bytes());
    assert_eq!(resp.status, 400);
    assert_eq!(call(r.addr, "GET", "/healthz", &[], b"").status, 200);
}

/// Item 17: 503 bodies named a secret file's path, an environment variable and an internal
/// address; the unauthenticated `/healthz` named the table's path. The client gets which
/// step failed; the operator gets the detail in the log, by request id.
#[test]
fn client_errors_carry_no_internal_detail() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret-dir-7f3a/openai.key");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().port();
    drop(listener);
    let yaml = format!(
        "version: v1
endpoints:
  - id: by-file
    type: vllm
    url: http://127.0.0.1:{dead}/v1
    transport: privatelink
    models: [a]
    api_key_file: {secret}
  - id: by-env
    type: vllm
    url: http://127.0.0.1:{dead}/v1
    transport: privatelink
    models: [b]
    api_key_env: UNSET_SECRET_VARIABLE_7F3A
  - id: dead
    type: vllm
    url: http://127.0.0.1:{dead}/v1
    transport: privatelink
    models: [c]
rules:
  - match: {{ model: a }}
    route_to: by-file
  - match: {{ model: b }}
    route_to: by-env
  - default:
      route_to: dead
",
        secret = secret.display()
    );
    let table = dir.path().join("secret-table-path-9c1e.swt");
    compile(&yaml, &table, 1);
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let leaks = [
        "secret-dir-7f3a",
        "UNSET_SECRET_VARIABLE_7F3A",
        &format!(":{dead}"),
        "127.0.0.1",
        "secret-table-path-9c1e",
    ];
    for (model, id) in [("a", "file"), ("b", "env"), ("c", "dead")] {
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Request-Id", id)],
            &chat_body(model, false),
        );
        assert_eq!(resp.status, 503, "{}", resp.text());
        let text = resp.text();
        for leak in leaks {
            assert!(!text.contains(leak), "`{leak}` in {text}");
        }
        let row = audit_record(&r, id);
        for leak in leaks {
            assert!(
                !row.to_string().contains(leak),
                "`{leak}` in the audit record {row}"
            );
        }
    }
    let health = call(r.addr, "GET", "/healthz", &[], b"").text();
    assert!(!health.contains("secret-table-path-9c1e"), "{health}");
    // The operator still learns exactly what failed.
    let log = r.log();
    assert!(log.contains("secret-dir-7f3a") && log.contains("UNSET_SECRET_VARIABLE_7F3A"));
    assert!(log.contains(&format!("127.0.0.1:{dead}")), "{log}");
}

/// Item 7: a second router started on the same `--data-dir` ran beside the first, deleting
/// its live write-ahead logs and temporary shards at start and overwriting its keys.
#[test]
fn a_second_router_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = router(&["--data-dir", data.to_str().unwrap()]);
    let resp = chat(first.addr, "auto", &[("X-Request-Id", "before")]);
    assert_eq!(resp.status, 200);
    let wals = || -> Vec<_> {
        files(&data)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || !wals().is_empty()),
        "the first router has a live write-ahead log"
    );
    let wals_before = wals();
    let mut second = std::process::Command::new(binary("switchyard"))
        .args(["--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--log-format", "text"])
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(Duration::from_secs(10), || {
        second.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = second.kill();
        let _ = second.wait();
        panic!("the second router started beside the first");
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success(), "the second router must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another switchyard process")
            && stderr.contains(&format!("pid {}", first.child.id())),
        "{stderr}"
    );
    for wal in &wals_before {
        assert!(wal.exists(), "{} was deleted", wal.display());
    }
    assert_eq!(chat(first.addr, "auto", &[]).status, 200);
}

/// Item 9: client headers were forwarded unless on a denylist, so `OpenAI-Organization`,
/// `OpenAI-Project`, `x-goog-user-project` and headers the client named in `Connection:`
/// reached the upstream beside the operator's key.
#[test]
fn only_allowlisted_client_headers_reach_the_upstream() {
    let mock = mock(&[]);
    let (_dir, r) = router_to(&mock, &["--forward-header", "x-mock-*,x-team"]);
    let resp = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", "Bearer client-secret"),
            ("OpenAI-Organization", "org-attacker"),
            ("OpenAI-Project", "proj-attacker"),
            ("x-goog-user-project", "billing-attacker"),
            ("Cookie", "session=1"),
            ("X-Something-Else", "1"),
            ("Connection", "keep-alive, X-Team"),
            ("X-Team", "named-in-connection"),
            ("User-Agent", "OpenAI/Python 1.99"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-mock-chunks", "2"),
        ],
        &chat_body("m", false),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = mock_requests(&mock).pop().unwrap();
    let names: Vec<String> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for kept in [
        "user-agent",
        "traceparent",
        "x-mock-chunks",
        "host",
        "content-length",
    ] {
        assert!(
            names.contains(&kept.to_owned()),
            "{kept} missing: {names:?}"
        );
    }
    for dropped in [
        "authorization",
        "openai-organization",
        "openai-project",
        "x-goog-user-project",
        "cookie",
        "x-something-else",
        "connection",
        "x-team",
    ] {
        assert!(
            !names.contains(&dropped.to_owned()),
            "{dropped} forwarded: {names:?}"
        );
    }
    // Credentials cannot be put on the list.
    for bad in ["authorization", "x-*", "*", "cookie", "x-tenant"] {
        let out = std::process::Command::new(binary("switchyard"))
            .args(["--no-auth", "--forward-header", bad, "--data-dir"])
            .arg(tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "--forward-header {bad} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("forward-header"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Item 10: an endpoint posted through the admin API with `api_key_file: /etc/passwd` made
/// the router send that file upstream as its key; `api_key_env` could name any variable of
/// the router's environment; a secret with a line break injected header lines.
#[test]
fn admin_posted_endpoints_reach_only_scoped_secrets() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("ok.key"), "sk-file-secret\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", secrets.join("escape.key")).unwrap();
    let yaml = format!(
        "version: v1
endpoints:
  - id: reviewed
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [m]
    api_key_env: GPU_TOKEN_7F3A
  - id: injected
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [n]
    api_key_env: MULTILINE_SECRET_7F3A
rules:
  - match: {{ model: n }}
    route_to: injected
  - default:
      route_to: reviewed
",
        mock = mock.addr
    );
    let table = dir.path().join("t.swt");
    compile(&yaml, &table, 1);
    let r = router_env(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--secrets-dir",
            secrets.to_str().unwrap(),
            "--secret-env-prefix",
            "SWITCHYARD_SECRET_",
        ],
        &[
            ("GPU_TOKEN_7F3A", "sk-gpu"),
            ("MULTILINE_SECRET_7F3A", "sk-a\r\nX-Injected: 1"),
            ("SWITCHYARD_SECRET_EXTRA", "sk-extra"),
        ],
    );
    let post = |endpoint: serde_json::Value| {
        admin(&r, "POST", "/v1/endpoints", endpoint.to_string().as_bytes())
    };
    let base = |id: &str| {
        serde_json::json!({
            "id": id, "type": "vllm", "url": format!("http://{}/v1", mock.addr),
            "transport": "privatelink", "models": ["x"],
        })
    };
    for (field, value) in [
        ("api_key_file", "/etc/passwd".to_owned()),
        (
            "api_key_file",
            format!("{}/../../../etc/passwd", secrets.display()),
        ),
        (
            "api_key_file",
            secrets.join("escape.key").display().to_string(),
        ),
        ("api_key_env", "AWS_SECRET_ACCESS_KEY".to_owned()),
        ("api_key_env", "HOME".to_owned()),
    ] {
        let mut e = base("evil");
        e[field] = value.clone().into();
        let resp = post(e);
        assert_eq!(resp.status, 400, "{field}: {value}: {}", resp.text());
        assert_eq!(resp.error_code(), "invalid_policy");
        let message = resp.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("--secrets-dir") || message.contains("--secret-env-prefix"),
            "{message}"
        );
    }
    // Inside the scope, or already used by the serving policy: accepted.
    for (id, field, value) in [
        (
            "file",
            "api_key_file",
            secrets.join("ok.key").display().to_string(),
        ),
        ("env", "api_key_env", "SWITCHYARD_SECRET_EXTRA".to_owned()),
        ("reuse", "api_key_env", "GPU_TOKEN_7F3A".to_owned()),
    ] {
        let mut e = base(id);
        e[field] = value.into();
        let resp = post(e);
        assert_eq!(resp.status, 201, "{id}: {}", resp.text());
    }
    // A secret with a line break is never sent: the endpoint is refused as misconfigured.
    let before = mock_requests(&mock).len();
    let resp = chat(r.addr, "n", &[]);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(
        mock_requests(&mock).len(),
        before,
        "nothing reached the upstream"
    );
    assert!(r.log().contains("control character"), "{}", r.log());
}

/// Item 4: the table watcher and admin changes each compared against a snapshot taken
/// before their slow work, then swapped unconditionally: the serving revision could go
/// backwards, and an admin change could be replaced by an older file in memory. Here a
/// file is republished at rising revisions while admin changes land on top; a reader sees
/// the revision only ever rise, and each admin answer's revision is served until a file
/// with a higher one arrives.
#[test]
fn the_watcher_and_admin_changes_never_move_the_revision_back() {
    let policy = "version: v1
endpoints:
  - id: m
    type: mock
    transport: privatelink
    models: [m]
tenants:
  - id: acme
rules:
  - default:
      route_to: m
";
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(policy, &table, 1);
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--reload-interval-ms",
        "2",
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = r.addr;
    let monitor = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = 0u64;
            let mut samples = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = call(addr, "GET", "/healthz", &[], b"").json();
                let rev = v["revision"].as_u64().unwrap();
                assert!(rev >= seen, "revision went back from {seen} to {rev}");
                seen = rev;
                samples += 1;
            }
            samples
        })
    };
    let publisher = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rev = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                compile(policy, &table, rev);
                rev += 1000;
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    for i in 0..40 {
        let body = serde_json::json!({"id": "acme", "rate_limit_rpm": 1000 + i}).to_string();
        let resp = admin(&r, "POST", "/v1/tenants", body.as_bytes());
        assert_eq!(resp.status, 200, "{}", resp.text());
        let answered = resp.json()["revision"].as_u64().unwrap();
        let now = call(addr, "GET", "/healthz", &[], b"").json()["revision"]
            .as_u64()
            .unwrap();
        assert!(now >= answered, "admin change at {answered}, serving {now}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(monitor.join().unwrap() > 20);
}

/// Item 14: executors wrote log lines to stderr synchronously, so a stderr nobody reads (a
/// full pipe) stopped every request on the node. Here the router's stderr is read until it
/// listens and never again; thousands of requests that each log a line are still answered.
#[test]
fn a_stuck_stderr_does_not_stop_requests() {
    use std::io::BufRead as _;
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(binary("switchyard"))
        .args([
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--log", "debug", "--cores", "2"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr: std::net::SocketAddr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited at start");
        if let Some(at) = line.find("switchyard listening on http://") {
            let rest = &line[at + "switchyard listening on http://".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .unwrap();
            break rest[..end].parse().unwrap();
        }
    };
    // From here on nobody reads the pipe: it fills after a few hundred lines.
    let until = Instant::now() + Duration::from_secs(60);
    let mut c = Conn::open(addr);
    for i in 0..3000 {
        c.send(&request("GET", &format!("/no-such-path-{i}"), &[], b""));
        let resp = c.read_response().expect("answered");
        assert_eq!(resp.status, 404);
        assert!(Instant::now() < until, "only {i} answered in 60 s");
    }
    let metrics = call(addr, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains("switchyard_log_lines_dropped_total"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(stderr);
}

/// Item 6: every unauthenticated refusal became an audit row, so a client with a bad key
/// could flood the audit trail (and the unbounded channel behind it). Now each core audits
/// the first 10 a second and counts the rest.
#[test]
fn unauthenticated_refusals_are_sampled_in_the_audit_trail() {
    let r = router_with_auth(&["--cores", "1"], &[]);
    let started = Instant::now();
    let mut c = Conn::open(r.addr);
    for i in 0..200 {
        c.send(&request(
            "POST",
            "/v1/chat/completions",
            &[
                ("Authorization", "Bearer sk-swy-wrong"),
                ("X-Request-Id", &format!("bad-{i}")),
            ],
            &chat_body("auto", false),
        ));
        assert_eq!(c.read_response().unwrap().status, 401);
    }
    // Wall-clock seconds touched (the budget is per calendar second).
    let seconds = started.elapsed().as_secs() + 2;
    let counted = |name: &str| {
        call(r.addr, "GET", "/metrics", &[], b"")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let unrecorded = counted("switchyard_audit_unauthenticated_unrecorded_total");
    let mut rows = 0;
    let settled = eventually(Duration::from_secs(10), || {
        let resp = admin(&r, "GET", "/v1/audit?limit=1000", b"");
        rows = resp.json()["data"].as_array().unwrap().len() as u64;
        rows + unrecorded == 200
    });
    assert!(settled, "{rows} rows + {unrecorded} unrecorded != 200");
    assert!(
        rows >= 10 && rows <= 10 * seconds,
        "{rows} rows in {seconds} s"
    );
}

/// Item 5: one blocking thread per core served upstream DNS, the whole admin API and
/// compiles: a slow admin call (here a 6,000-rule policy compiling) held up every upstream
/// name lookup on that core. Now each has its own workers: the chat request to an upstream
/// named `localhost` is answered while the compile is still running.
#[test]
fn a_slow_admin_call_does_not_hold_up_upstream_dns() {
    let mock = mock(&[]);
    let port = mock.addr.port();
    let (_dir, r) = router_on(
        &format!(
            "version: v1
endpoints:
  - id: up
    type: vllm
    url: http://localhost:{port}/v1
    transport: privatelink
    models: [m]
rules:
  - default:
      route_to: up
"
        ),
        &["--cores", "1"],
    );
    let mut big = format!(
        "version: v1\nendpoints:\n  - id: up\n    type: vllm\n    url: http://localhost:{port}/v1\n    transport: privatelink\n    models: [m]\nrules:\n"
    );
    for i in 0..6000 {
        big.push_str(&format!(
            "  - match: {{tenant: \"t{i}-*\", latency_budget_ms: \"<{}\"}}\n    route_to: up\n",
            i + 10
        ));
    }
    big.push_str("  - default:\n      route_to: up\n");
    let body = serde_json::json!({ "yaml": big }).to_string();
    let addr = r.addr;
    let compile = std::thread::spawn(move || {
        let started = Instant::now();
        let resp = call(
            addr,
            "POST",
            "/v1/policies",
            &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
            body.as_bytes(),
        );
        (resp.status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        !compile.is_finished(),
        "the compile finished before the lookup: this machine compiles too fast to show anything"
    );
    let (status, took) = compile.join().unwrap();
    assert_eq!(status, 200);
    assert!(took > Duration::from_millis(300));
}

/// Item 15: a client that disconnected while the upstream was still thinking (before the
/// response head, or in a quiet gap of a stream) was noticed only at the next write: the
/// upstream kept generating, and the record said nothing useful. Now the client socket is
/// watched while the router waits: the upstream request is dropped at once and the record
/// says the client left.
#[test]
fn a_client_that_leaves_cancels_the_upstream_request() {
    let mock = mock(&[]);
    let (_dir, r) = router_to(&mock, &[]);
    // Before the head: the upstream takes 4 s; the client leaves after 300 ms.
    let mut c = Conn::open(r.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[
            ("X-Request-Id", "left-early"),
            ("x-mock-latency-ms", "4000"),
        ],
        &chat_body("m", false),
    ));
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    let row = audit_record(&r, "left-early");
    assert_eq!(row["status"], 499, "{row}");
    assert!(
        row["error"].as_str().unwrap().contains("client closed"),
        "{row}"
    );
    assert!(
        row["latency_ms"].as_i64().unwrap() < 3000,
        "noticed at once: {row}"
    );

    // In a quiet gap of a stream: chunks 4 s apart; the client leaves after the first.
    let mut c = Conn::open(r.addr);
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[
            ("X-Request-Id", "left-mid-stream"),
            ("x-mock-chunks", "3"),
            ("x-mock-chunk-delay-ms", "4000"),
        ],
        &chat_body("m", true),
    ));
    let (status, _) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let _first = c.read_chunk().unwrap();
    drop(c);
    let row = audit_record(&r, "left-mid-stream");
    assert!(
        row["error"].as_str().unwrap().contains("client closed"),
        "{row}"
    );
    assert!(
        row["latency_ms"].as_i64().unwrap() < 3000,
        "noticed at once: {row}"
    );
}

/// Item 18: `strict` durability acknowledged records whose new write-ahead log and
/// partition directories had never been fsynced into their parents — a machine crash could
/// unlink a log full of acknowledged records. Here the router runs under `strace`; before the
/// log's first `fdatasync` (which acknowledges the record), every directory it created has
/// had its parent fsynced, and so has the log's own directory.
#[test]
fn strict_records_are_acknowledged_only_after_their_directories_are_durable() {
    assert!(
        std::process::Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "strace is needed: apt-get install strace (tools/test-all does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (_t, table) = compiled(
        "version: v1\nendpoints:\n  - id: m\n    type: mock\n    models: [m]\ntenants:\n  - id: acme\nrules:\n  - default:\n      route_to: m\n",
    );
    let r = router_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-s",
            "512",
            "-e",
            "trace=mkdir,mkdirat,openat,fsync,fdatasync",
            "-o",
            trace.to_str().unwrap(),
        ],
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-durability",
            "strict",
        ],
    );
    let resp = chat(r.addr, "auto", &[("X-Tenant", "acme")]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Killing strace would leave the router running, detached: stop the router itself.
    let strace = r.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap();
    for pid in children.split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    drop(r);
    let text = std::fs::read_to_string(&trace).unwrap();
    // Replay the trace: descriptors → paths, and the order of creations and syncs.
    let mut fds: std::collections::HashMap<(String, String), String> = Default::default();
    let mut created_dirs: Vec<String> = Vec::new();
    let mut synced: Vec<String> = Vec::new();
    let mut wal: Option<(String, String)> = None;
    let quoted = |line: &str| line.split('"').nth(1).map(str::to_owned);
    let mut acknowledged = false;
    for line in text.lines() {
        let pid = line.split_whitespace().next().unwrap_or("").to_owned();
        let ret = line
            .rsplit(" = ")
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if line.contains("mkdir") && ret == "0" {
            created_dirs.push(quoted(line).unwrap());
        } else if line.contains("openat(") {
            if let (Some(path), Ok(fd)) = (quoted(line), ret.parse::<i32>()) {
                fds.insert((pid.clone(), fd.to_string()), path.clone());
                if path.ends_with(".wal") && line.contains("O_CREAT") {
                    wal = Some((pid, fd.to_string()));
                }
            }
        } else if line.contains("fsync(") || line.contains("fdatasync(") {
            // `fsync(12) = 0`, or `fsync(12 <unfinished ...>` when another thread's call
            // interleaves: the descriptor is the leading digits either way.
            let args = line.split('(').nth(1).unwrap_or("");
            let fd: String = args.chars().take_while(char::is_ascii_digit).collect();
            let key = (pid.clone(), fd);
            if line.contains("fdatasync(") && wal.as_ref() == Some(&key) {
                acknowledged = true;
                break;
            }
            if let Some(path) = fds.get(&key) {
                synced.push(path.clone());
            }
        }
    }
    assert!(acknowledged, "the log was never synced:\n{text}");
    let audit_dirs: Vec<&String> = created_dirs
        .iter()
        .filter(|d| d.contains("/audit"))
        .collect();
    assert!(
        audit_dirs.iter().any(|d| d.contains("hour=")),
        "the partition was created: {created_dirs:?}"
    );
    for d in &audit_dirs {
        let parent = std::path::Path::new(d).parent().unwrap().to_str().unwrap();
        assert!(
            synced.iter().any(|s| s == parent),
            "`{d}` was created but `{parent}` not fsynced before the record was acknowledged; synced: {synced:?}"
        );
    }
    let wal_dir = created_dirs.iter().find(|d| d.contains("hour=")).unwrap();
    let syncs_of_wal_dir = synced.iter().filter(|s| *s == wal_dir).count();
    assert!(
        syncs_of_wal_dir >= 1,
        "the log's directory was never fsynced: {synced:?}"
    );
}

/// The smaller items: `405` says which methods a path takes (it said `GET, HEAD, POST`
/// everywhere), `HEAD` answers with the length a `GET` would have (it said 0), and a
/// pinned `max_completion_tokens` wins over `max_tokens`, as at OpenAI and vLLM.
#[test]
fn allow_head_and_max_completion_tokens() {
    let r = router(&[]);
    for (method, path, allow) in [
        ("GET", "/v1/chat/completions", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("DELETE", "/v1/tenants", "GET, POST"),
        ("POST", "/v1/audit", "GET"),
        ("GET", "/v1/tenants/demo/keys/key_x", "DELETE"),
    ] {
        let resp = call(
            r.addr,
            method,
            path,
            &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
            b"",
        );
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
    let get = call(r.addr, "GET", "/healthz", &[], b"");
    let mut c = Conn::open(r.addr);
    c.send(&request("HEAD", "/healthz", &[], b""));
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.clone());
    assert_eq!(length, Some(get.body.len().to_string()));
    // No body follows the head: the next request on the connection is answered.
    c.send(&request("GET", "/healthz", &[], b""));
    assert_eq!(c.read_response().unwrap().status, 200);

    // `X-Cost-Budget-Usd` prices the worst case from the completion limit: with both
    // fields, the newer one decides whether the mock endpoint (priced) fits.
    let (_dir, r) = router_on(
        "version: v1
endpoints:
  - id: priced
    type: mock
    models: [m]
    pricing: { input_per_1k: 0, output_per_1k: 1.0 }
rules:
  - default:
      route_to: priced
",
        &[],
    );
    let body = |max_tokens: u64, max_completion: u64| {
        serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens, "max_completion_tokens": max_completion,
        })
        .to_string()
    };
    // $0.01 fits 10 completion tokens at $1/1k, not 1,000.
    let budget = [("X-Cost-Budget-Usd", "0.01")];
    let fits = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &budget,
        body(1000, 5).as_bytes(),
    );
    assert_eq!(fits.status, 200, "{}", fits.text());
    let over = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &budget,
        body(5, 1000).as_bytes(),
    );
    assert_eq!(over.status, 400, "{}", over.text());
    assert_eq!(over.error_code(), "cost_budget_exceeded");
}

/// The mock endpoint streamed to an HTTP/1.0 client with chunked framing, which HTTP/1.0 does
/// not have; now the stream is the body up to the close.
#[test]
fn an_http_1_0_client_gets_a_stream_it_can_read() {
    let r = router(&[]);
    let body = chat_body("auto", true);
    let mut c = Conn::open(r.addr);
    let mut wire = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nX-Tenant: demo\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(&body);
    c.send(&wire);
    let resp = c.read_response().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        resp.text().trim_end().ends_with("data: [DONE]"),
        "{}",
        resp.text()
    );
}
