//! Per-endpoint timeouts, the request deadline, balanced `route_to` sets and the
//! `health_check` block, over real sockets against `mock-upstream` (slowed by its
//! `--latency-ms`, `x-mock-latency-ms` and `x-mock-chunk-delay-ms`).
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::time::{Duration, Instant};

use common::{
    Proc, admin, call, chat_body, compiled, endpoint_health, mock, mock_requests, router, wait_for,
};

/// A `vllm` endpoint on `m` with extra YAML lines (already indented by four spaces).
fn endpoint(id: &str, m: &Proc, extra: &str) -> String {
    format!(
        "  - id: {id}\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\n{extra}",
        m.addr
    )
}

fn chats(m: &Proc) -> usize {
    mock_requests(m)
        .iter()
        .filter(|q| q["target"] == "/v1/chat/completions")
        .count()
}

fn post(r: &Proc, stream: bool, headers: &[(&str, &str)]) -> common::Response {
    common::chat_streamed(r.addr, "m", stream, headers)
}

#[test]
fn a_slow_first_byte_goes_to_the_next_candidate_and_a_stalled_stream_is_cut() {
    let slow = mock(&["--latency-ms", "3000"]);
    let quick = mock(&[]);
    let yaml = format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: slow\n      fallback: [quick]\n",
        endpoint("slow", &slow, "    timeouts: { ttft_ms: 300 }\n"),
        endpoint("quick", &quick, "    timeouts: { idle_ms: 400 }\n"),
    );
    let (_dir, table) = compiled(&yaml);
    let r = router(&["--table", table.to_str().unwrap()]);
    let started = Instant::now();
    let resp = post(&r, false, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.route().0, "quick");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(chats(&slow), 1);

    // After the commit point nothing is retried: a stream that stalls longer than `idle_ms`
    // after its first content ends with an error event, and the fallback never sees it.
    let spare = mock(&[]);
    let (_d2, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: quick\n      fallback: [spare]\n",
        endpoint("quick", &quick, "    timeouts: { idle_ms: 300 }\n"),
        endpoint("spare", &spare, ""),
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = post(
        &r,
        true,
        &[("x-mock-fault", "stall-after-1"), ("x-mock-chunks", "3")],
    );
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(text.contains("stopped sending for 300 ms"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(chats(&spare), 0, "no second attempt after the commit point");
    // A stall before the first token is a timeout like a missing head: the next candidate
    // takes the request, and the client never sees the stalled stream.
    let stalling = mock(&["--fault", "stall-after-0"]);
    let (_d3, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: stalling\n      fallback: [spare]\n",
        endpoint("stalling", &stalling, "    timeouts: { idle_ms: 300 }\n"),
        endpoint("spare", &spare, ""),
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = post(&r, true, &[]);
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert_eq!(resp.route().0, "spare", "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("stopped sending"), "{text}");
    assert_eq!((chats(&stalling), chats(&spare)), (1, 1));
}

#[test]
fn total_ms_bounds_an_attempt_and_the_request_deadline_bounds_them_all() {
    let dribble = mock(&[]);
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}rules:\n  - default:\n      route_to: dribble\n",
        endpoint(
            "dribble",
            &dribble,
            "    timeouts: { idle_ms: 5000, total_ms: 700 }\n"
        ),
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = post(
        &r,
        true,
        &[("x-mock-chunk-delay-ms", "200"), ("x-mock-chunks", "20")],
    );
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("ran out of time"), "{}", resp.text());

    // Two slow candidates and a 500 ms deadline: the first is given what is left of it, and
    // no second attempt starts once it has passed.
    let first = mock(&["--latency-ms", "2000"]);
    let second = mock(&["--latency-ms", "2000"]);
    let (_d2, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: first\n      fallback: [second]\n",
        endpoint("first", &first, ""),
        endpoint("second", &second, ""),
    ));
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--request-timeout-ms",
        "500",
    ]);
    let started = Instant::now();
    let resp = post(&r, false, &[]);
    assert_eq!(resp.status, 504, "{}", resp.text());
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(
        resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline (500 ms"),
        "{}",
        resp.text()
    );
    assert_eq!((chats(&first), chats(&second)), (1, 0));
}

#[test]
fn a_balanced_set_spreads_requests_and_avoids_a_slow_member() {
    let a = mock(&[]);
    let b = mock(&[]);
    let yaml = |extra_a: &str| {
        format!(
            "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: [a, b]\n",
            endpoint("a", &a, extra_a),
            endpoint("b", &b, ""),
        )
    };
    let (_dir, table) = compiled(&yaml(""));
    let r = router(&["--table", table.to_str().unwrap()]);
    // Concurrent clients: in-flight requests spread the load.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = r.addr;
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let resp = call(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        &[("x-mock-latency-ms", "20")],
                        &chat_body("m", false),
                    );
                    assert_eq!(resp.status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (na, nb) = (chats(&a), chats(&b));
    assert_eq!(na + nb, 40);
    assert!(na >= 5 && nb >= 5, "a {na}, b {nb}");
    // The admin API shows the set and each member's recent time to first token.
    let policy = admin(&r, "GET", "/v1/policies", b"").json();
    assert!(
        policy.to_string().contains(r#""route_to":["a","b"]"#),
        "{policy}"
    );
    assert!(endpoint_health(&r, "a")["recent_ttft_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(endpoint_health(&r, "a")["in_flight"], 0);

    // A member that got slow (every answer 300 ms late) is avoided once it has shown it.
    let slow = mock(&["--latency-ms", "300"]);
    let (_d2, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: [fast, slow]\n",
        endpoint("fast", &a, ""),
        endpoint("slow", &slow, ""),
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let before = chats(&a);
    for _ in 0..30 {
        assert_eq!(post(&r, false, &[]).status, 200);
    }
    let to_slow = chats(&slow);
    // At most its first request on each core before its time to first token is known.
    assert!(to_slow <= 2, "the slow member got {to_slow} of 30");
    assert_eq!(chats(&a) - before + to_slow, 30);
}

#[test]
fn weights_give_a_member_a_larger_share() {
    let a = mock(&[]);
    let b = mock(&[]);
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n{}{}rules:\n  - default:\n      route_to: [a, b]\n",
        endpoint("a", &a, "    weight: 4\n"),
        endpoint("b", &b, ""),
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    for _ in 0..40 {
        assert_eq!(post(&r, false, &[]).status, 200);
    }
    let (na, nb) = (chats(&a), chats(&b));
    assert_eq!(na + nb, 40);
    assert!(na > nb, "a (weight 4) {na}, b {nb}");
}

#[test]
fn a_health_check_block_probes_its_path_with_its_thresholds() {
    let listen = common::free_listen();
    let api = mock(&["--listen", &listen]);
    // An Anthropic-type endpoint has no default health path: this one names its own.
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n  - id: api\n    type: anthropic\n    url: http://{listen}\n    models: [m]\n    api_key_env: T_KEY\n    health_check: {{ path: /healthz, interval_ms: 100, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1 }}\nrules:\n  - default:\n      route_to: api\n"
    ));
    let r = common::router_env(&["--table", table.to_str().unwrap()], &[("T_KEY", "k")]);
    wait_for("a passing check", || {
        endpoint_health(&r, "api")["probe"]["ok"] == true
    });
    assert!(
        mock_requests(&api)
            .iter()
            .all(|q| q["target"] == "/healthz")
    );
    drop(api);
    // One failed check is enough to take it out.
    wait_for("the breaker to open", || {
        endpoint_health(&r, "api")["breaker"]["state"] == "open"
    });
    let _api = mock(&["--listen", &listen]);
    // And one passing check brings it back.
    wait_for("the breaker to close", || {
        endpoint_health(&r, "api")["breaker"]["state"] == "closed"
    });
}
