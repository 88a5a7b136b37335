//! Falling back before the commit point, over real sockets: upstreams that answer 429, 503,
//! 529 or 401 for every request (`mock-upstream --status`) pass the request to the rule's next
//! candidate while nothing has reached the client; the last candidate's answer is relayed as it
//! is; a client error is never retried; `--max-attempts` bounds the work; and an error after
//! more than one attempt tells the SDKs not to retry (`x-should-retry: false`).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use common::{Proc, call, chat, chat_streamed, compiled, mock, mock_requests, router, wait_for};

/// A policy whose default rule tries `ids` in order, each a `vllm` endpoint on its mock.
fn chain(mocks: &[(&str, &Proc)]) -> String {
    let mut yaml = String::from("version: v1\nendpoints:\n");
    for (id, m) in mocks {
        yaml.push_str(&format!(
            "  - id: {id}\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\n",
            m.addr
        ));
    }
    let (first, rest) = mocks.split_first().unwrap();
    let fallback: Vec<&str> = rest.iter().map(|(id, _)| *id).collect();
    yaml.push_str(&format!(
        "rules:\n  - default:\n      route_to: {}\n      fallback: [{}]\n",
        first.0,
        fallback.join(", ")
    ));
    yaml
}

fn hits(m: &Proc) -> usize {
    mock_requests(m).len()
}

#[test]
fn upstream_errors_before_the_first_byte_go_to_the_next_candidate() {
    let limited = mock(&["--status", "429", "--retry-after", "7"]);
    let overloaded = mock(&["--status", "529"]);
    let locked = mock(&["--status", "401"]);
    let healthy = mock(&[]);
    let (_dir, table) = compiled(&chain(&[
        ("limited", &limited),
        ("overloaded", &overloaded),
        ("locked", &locked),
        ("healthy", &healthy),
    ]));
    let r = router(&["--table", table.to_str().unwrap(), "--max-attempts", "4"]);
    for stream in [false, true] {
        let resp = chat_streamed(r.addr, "m", stream, &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.route().0, "healthy");
        assert!(resp.header("x-should-retry").is_none());
        if stream {
            assert!(resp.text().ends_with("data: [DONE]\n\n"), "{}", resp.text());
        }
    }
    // The rate-limited endpoint was asked once: its `Retry-After: 7` cooled it down for the
    // second request. The others were asked once per request; the healthy one answered both.
    assert_eq!(hits(&limited), 1);
    for m in [&overloaded, &locked, &healthy] {
        assert_eq!(hits(m), 2);
    }
    // An Anthropic client is served the same way.
    let resp = call(
        r.addr,
        "POST",
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        br#"{"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["type"], "message");
    // Each step is logged with what the endpoint answered.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(r
        .log()
        .contains("endpoint `limited` answered 429, retry-after 7")
        && r.log().contains("endpoint `overloaded` answered 529"))
    {
        assert!(std::time::Instant::now() < until, "{}", r.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_last_candidate_answers_as_it_is_and_sdks_are_told_not_to_retry() {
    let first = mock(&["--status", "503"]);
    let last = mock(&["--status", "529", "--retry-after", "3"]);
    let (_dir, table) = compiled(&chain(&[("first", &first), ("last", &last)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 529, "{}", resp.text());
    assert_eq!(resp.route().0, "last");
    assert_eq!(resp.header("retry-after"), Some("3"));
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    assert_eq!((hits(&first), hits(&last)), (1, 1));

    // One candidate only: its error goes back as it is, and the SDK may retry.
    let (_d2, table) = compiled(&chain(&[("first", &first)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 503);
    assert!(resp.header("x-should-retry").is_none());
}

#[test]
fn client_errors_are_not_retried_and_max_attempts_bounds_the_work() {
    let bad = mock(&["--status", "400"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("bad", &bad), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!((hits(&bad), hits(&spare)), (1, 0));

    let down: Vec<Proc> = (0..4).map(|_| mock(&["--status", "503"])).collect();
    let ids = ["d0", "d1", "d2", "d3"];
    let named: Vec<(&str, &Proc)> = ids.iter().copied().zip(down.iter()).collect();
    let (_d2, table) = compiled(&chain(&named));
    let r = router(&["--table", table.to_str().unwrap(), "--max-attempts", "2"]);
    let resp = chat_streamed(r.addr, "m", true, &[]);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.route().0, "d1");
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    let asked: Vec<usize> = down.iter().map(hits).collect();
    assert_eq!(asked, [1, 1, 0, 0]);
}

#[test]
fn max_attempts_is_checked_at_start() {
    let err = common::refused_at_start(&["--no-auth", "--max-attempts", "0"]);
    assert!(
        err.contains("max-attempts") && err.contains("1 to 16"),
        "{err}"
    );
}

/// `GET /v1/endpoints`'s `health.breaker` of endpoint `id`.
fn breaker(r: &Proc, id: &str) -> serde_json::Value {
    common::endpoint_health(r, id)["breaker"].clone()
}

fn ok_chat(r: &Proc) -> common::Response {
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp
}

#[test]
fn a_failing_endpoint_is_ejected_then_probed_exactly_once() {
    let dead = mock(&["--status", "503"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("dead", &dead), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap(), "--cores", "2"]);
    // Five consecutive failures open the breaker; the spare answers every request.
    for _ in 0..5 {
        assert_eq!(ok_chat(&r).route().0, "spare");
    }
    let opened = std::time::Instant::now();
    assert_eq!(hits(&dead), 5);
    let b = breaker(&r, "dead");
    assert_eq!(b["state"], "open", "{b}");
    assert!(b["open_until"].is_string(), "{b}");
    // While it is open, the dead endpoint gets nothing.
    for _ in 0..10 {
        ok_chat(&r);
    }
    assert_eq!(hits(&dead), 5);
    // After the ejection (5 s ± 20%), concurrent requests send it exactly one probe; the
    // probe fails and the breaker opens again, for longer.
    std::thread::sleep(std::time::Duration::from_millis(6_300).saturating_sub(opened.elapsed()));
    let addr = r.addr;
    let clients: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || chat(addr, "m", &[]).status))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert_eq!(hits(&dead), 6);
    let b = breaker(&r, "dead");
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(b["ejections"], 2, "{b}");
    assert_eq!(breaker(&r, "spare")["state"], "closed");
}

#[test]
fn a_rate_limit_cools_an_endpoint_down_for_its_retry_after() {
    let limited = mock(&["--status", "429", "--retry-after", "2"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("limited", &limited), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let started = std::time::Instant::now();
    ok_chat(&r);
    assert_eq!(hits(&limited), 1);
    for _ in 0..5 {
        assert_eq!(ok_chat(&r).route().0, "spare");
    }
    assert_eq!(hits(&limited), 1, "asked during its cooldown");
    assert!(breaker(&r, "limited")["cooling_until"].is_string());
    std::thread::sleep(std::time::Duration::from_millis(2_200).saturating_sub(started.elapsed()));
    ok_chat(&r);
    assert_eq!(hits(&limited), 2);
    // A rate limit is not a failure: the breaker stays closed.
    assert_eq!(breaker(&r, "limited")["state"], "closed");
}

#[test]
fn when_every_candidate_is_open_the_first_to_recover_is_still_tried() {
    let dead = mock(&["--status", "503"]);
    let (_dir, table) = compiled(&chain(&[("dead", &dead)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    for n in 1..=8 {
        let resp = chat(r.addr, "m", &[]);
        // The upstream's own answer every time, never a router-made "no endpoint".
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(hits(&dead), n);
    }
    assert_eq!(breaker(&r, "dead")["state"], "open");
}

#[test]
fn health_checks_take_an_endpoint_out_and_back_without_traffic() {
    let listen = common::free_listen();
    let gpu = mock(&["--listen", &listen]);
    let spare = mock(&[]);
    let yaml = format!(
        "version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://{listen}/v1
    transport: privatelink
    models: [m]
    health_check_interval_ms: 100
  - id: spare
    type: vllm
    url: http://{}/v1
    transport: privatelink
    models: [m]
rules:
  - default:
      route_to: gpu
      fallback: [spare]
",
        spare.addr
    );
    let (_dir, table) = compiled(&yaml);
    let r = router(&["--table", table.to_str().unwrap()]);
    wait_for("a passing check", || {
        let h = common::endpoint_health(&r, "gpu");
        h["probe"]["ok"] == true && h["status"] == "healthy"
    });
    assert!(
        mock_requests(&gpu).iter().all(|q| q["target"] == "/health"),
        "vllm is probed at /health"
    );
    // The server goes away: three failed checks open its breaker, with no request sent.
    drop(gpu);
    wait_for("the breaker to open", || {
        breaker(&r, "gpu")["state"] == "open"
    });
    let h = common::endpoint_health(&r, "gpu");
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert_eq!(h["probe"]["ok"], false, "{h}");
    assert_eq!(ok_chat(&r).route().0, "spare");
    // It comes back: two passing checks close the breaker before its ejection ends.
    let gpu = mock(&["--listen", &listen]);
    wait_for("the breaker to close", || {
        breaker(&r, "gpu")["state"] == "closed"
    });
    assert_eq!(ok_chat(&r).route().0, "gpu");
    let chats = mock_requests(&gpu)
        .iter()
        .filter(|q| q["target"] == "/v1/chat/completions")
        .count();
    assert_eq!(chats, 1);
}

#[test]
fn a_reset_after_send_goes_to_the_next_candidate_only_when_the_rule_opts_in() {
    let flaky = mock(&["--fault", "reset"]);
    let spare = mock(&[]);
    let policy = |opt_in: bool| {
        let mut yaml = chain(&[("flaky", &flaky), ("spare", &spare)]);
        if opt_in {
            yaml.push_str("      resend_on_reset: true\n");
        }
        yaml
    };
    // The request reached `flaky`, which may have acted on it: by default it is not sent
    // again, and the client learns the upstream failed.
    let (_dir, table) = compiled(&policy(false));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(hits(&spare), 0);
    // A rule that says the request is safe to repeat sends it on.
    let (_d2, table) = compiled(&policy(true));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.route().0, "spare");
    assert_eq!(hits(&spare), 1);
}

#[test]
fn a_rate_limit_half_the_time_is_absorbed_by_the_next_candidate() {
    let limited = mock(&["--status", "429", "--status-every", "2"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("limited", &limited), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    for _ in 0..6 {
        let resp = chat(r.addr, "m", &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // The first 429 cooled `limited` down for 5 s (no Retry-After): the rest went to the spare.
    assert_eq!(hits(&limited), 2);
    assert_eq!(hits(&spare), 5);
}

#[test]
fn a_stream_commits_at_its_first_content_not_at_its_head() {
    // A role chunk, then an error event: nothing the client could use, so the request goes on.
    let erring = mock(&["--fault", "stream-error", "--chunks", "0"]);
    // A role chunk and one content chunk, then a reset: committed, so no second attempt.
    let cut = mock(&["--fault", "drop-after-1", "--chunks", "3"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("erring", &erring), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat_streamed(r.addr, "m", true, &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.route().0, "spare", "{}", resp.text());
    assert!(resp.text().ends_with("data: [DONE]\n\n"), "{}", resp.text());
    assert!(
        !resp.text().contains("mock upstream failed"),
        "{}",
        resp.text()
    );
    assert_eq!((hits(&erring), hits(&spare)), (1, 1));

    let (_d2, table) = compiled(&chain(&[("cut", &cut), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat_streamed(r.addr, "m", true, &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.route().0, "cut");
    let text = resp.text();
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(hits(&spare), 1, "no second attempt after the first content");
}

#[test]
fn an_empty_account_is_told_from_a_rate_limit_and_cooled_longest() {
    let broke = mock(&["--status", "429", "--error-code", "insufficient_quota"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("broke", &broke), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    assert_eq!(ok_chat(&r).route().0, "spare");
    let metrics = call(r.addr, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_upstream_attempts_total{")
                && l.contains("switchyard_endpoint=\"broke\"")
                && l.contains("outcome=\"quota_exhausted\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // Cooled for the longest cooldown (60 s), not the 5 s of a rate limit without
    // Retry-After.
    let b = breaker(&r, "broke");
    let until = b["cooling_until"].as_str().unwrap();
    let now = common::call(r.addr, "GET", "/v1/health", &[], b"").json()["timestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    let secs = |iso: &str| -> i64 {
        let t = &iso[11..19];
        let p: Vec<i64> = t.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600 + p[1] * 60 + p[2]
    };
    let left = (secs(until) - secs(&now)).rem_euclid(86_400);
    assert!(left >= 50, "cooling until {until}, now {now}");
    // A plain 429 (another code) is a rate limit.
    let limited = mock(&["--status", "429"]);
    let (_d2, table) = compiled(&chain(&[("limited", &limited), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    assert_eq!(ok_chat(&r).route().0, "spare");
    let metrics = call(r.addr, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("switchyard_endpoint=\"limited\"")
                && l.contains("outcome=\"rate_limited\"")),
        "{metrics}"
    );
}

#[test]
fn an_endpoint_failing_half_the_time_is_ejected_by_its_failure_ratio() {
    // Every second request fails: never five in a row, but half of twenty.
    let flaky = mock(&["--status", "503", "--status-every", "2"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("flaky", &flaky), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap(), "--cores", "1"]);
    for _ in 0..30 {
        ok_chat(&r);
    }
    assert_eq!(hits(&flaky), 20, "skipped once the ratio tripped");
    assert_eq!(hits(&spare), 20);
    let b = breaker(&r, "flaky");
    assert_eq!(b["state"], "open", "{b}");
    assert_eq!(b["ejections"], 1, "{b}");
}

/// `switchyard_upstream_attempts_total` of `endpoint` ending in `outcome`, from `/metrics`.
fn attempts(r: &Proc, endpoint: &str, outcome: &str) -> u64 {
    let metrics = call(r.addr, "GET", "/metrics", &[], b"").text();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_upstream_attempts_total{")
                && l.contains(&format!("switchyard_endpoint=\"{endpoint}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_prompt_too_long_is_relayed_and_counted_as_a_context_overflow() {
    let small = mock(&["--status", "400", "--error-code", "context_length_exceeded"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&chain(&[("small", &small), ("spare", &spare)]));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = chat(r.addr, "m", &[]);
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(attempts(&r, "small", "context_overflow"), 1);
    assert_eq!(attempts(&r, "small", "client_error"), 0);
    // Another 400 is the request's own fault, counted as such; neither is retried.
    let resp = chat(r.addr, "m", &[("x-mock-error-code", "invalid_value")]);
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(attempts(&r, "small", "client_error"), 1);
    assert_eq!(attempts(&r, "small", "context_overflow"), 1);
    assert_eq!((hits(&small), hits(&spare)), (2, 0));
}

#[test]
fn a_translated_stream_that_begins_with_an_error_goes_to_the_next_candidate() {
    // An Anthropic upstream and an OpenAI-compatible one, each beginning its stream with an
    // error event (`overloaded_error`, `server_error`) before any content; then a healthy one.
    let claude = mock(&["--fault", "stream-error", "--chunks", "0"]);
    let gpu = mock(&["--fault", "stream-error", "--chunks", "0"]);
    let spare = mock(&[]);
    let yaml = format!(
        "version: v1\nendpoints:\n  - id: claude\n    type: anthropic\n    url: http://{}\n    api_key_env: T_KEY\n    models: [m]\n  - id: gpu\n    type: vllm\n    url: http://{}/v1\n    models: [m]\n  - id: spare\n    type: vllm\n    url: http://{}/v1\n    models: [m]\nrules:\n  - default:\n      route_to: claude\n      fallback: [gpu, spare]\n",
        claude.addr, gpu.addr, spare.addr
    );
    let (_dir, table) = compiled(&yaml);
    let r = common::router_env(&["--table", table.to_str().unwrap()], &[("T_KEY", "k")]);
    // An OpenAI client: Anthropic's stream is translated, the vLLM one passed through.
    let resp = chat_streamed(r.addr, "m", true, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.route().0, "spare", "{}", resp.text());
    assert!(resp.text().ends_with("data: [DONE]\n\n"), "{}", resp.text());
    assert!(!resp.text().contains("error"), "{}", resp.text());
    // An Anthropic client: Anthropic's stream is passed through, the vLLM one translated.
    let resp = call(
        r.addr,
        "POST",
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        br#"{"model": "m", "max_tokens": 20, "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains("event: message_stop"),
        "{}",
        resp.text()
    );
    assert!(!resp.text().contains("event: error"), "{}", resp.text());
    assert_eq!((hits(&claude), hits(&gpu), hits(&spare)), (2, 2, 2));
    assert_eq!(attempts(&r, "claude", "overloaded"), 2);
    assert_eq!(attempts(&r, "gpu", "overloaded"), 2);
}
