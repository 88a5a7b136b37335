//! Observability over real sockets: `/metrics` read by the official Prometheus client's
//! parser (`prometheus_client`, through `tools/metrics/read_metrics.py`) and compared with
//! the requests made, the upstreams' own request logs and the audit records; the audit's
//! `attempts`, `retry_reasons` and `trace_id`; `traceparent` carried upstream; and
//! `GET /v1/health` as a tenant sees it.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, admin, call, chat_body, compiled, mock, mock_requests, router};
use serde_json::Value;

/// One sample as the Prometheus client parsed it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// `GET /metrics`, parsed by `prometheus_client`.
fn scrape(r: &Proc) -> Vec<Sample> {
    let resp = call(r.addr, "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let script = format!(
        "{}/../tools/metrics/read_metrics.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 with prometheus_client is needed (tools/test-all installs tools/sdk/requirements.txt): {e}"));
    child.stdin.take().unwrap().write_all(&resp.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        resp.text()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_owned(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: match &v["value"] {
                    Value::String(s) if s == "+Inf" => f64::INFINITY,
                    n => n.as_f64().unwrap(),
                },
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// The audit records of tenant `tenant`, polled until there are `n`.
fn audit_rows(r: &Proc, tenant: &str, n: usize) -> Vec<Value> {
    at_least(n, "records", || {
        let resp = admin(
            r,
            "GET",
            &format!("/v1/audit?tenant={tenant}&limit=1000"),
            b"",
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["data"].as_array().unwrap().clone()
    })
}

/// `fetch`'s list, polled for up to 10 s until it holds `n` items (`what` they are).
fn at_least(n: usize, what: &str, mut fetch: impl FnMut() -> Vec<Value>) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = fetch();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < until,
            "{} of {n} {what}: {got:?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn policy(down: &Proc, up: &Proc) -> String {
    format!(
        r"
version: v1
endpoints:
  - id: down
    type: vllm
    url: http://{}/v1
    transport: privatelink
    models: [m]
  - id: up
    type: vllm
    url: http://{}/v1
    transport: privatelink
    models: [m]
    pricing: {{ input_per_1k: 0.5, output_per_1k: 1.5 }}
tenants:
  - id: acme
  - id: tiny
    rate_limit_rpm: 1
rules:
  - default:
      route_to: down
      fallback: [up]
",
        down.addr, up.addr
    )
}

/// A router behind a failing and a working upstream, after traffic that gives every labelled
/// family a series: fallbacks, an opened breaker, a limit refusal, a bad body, streams.
fn busy_router() -> (Proc, Proc, Proc, tempfile::TempDir) {
    let down = mock(&["--status", "503"]);
    let up = mock(&[]);
    let (dir, table) = compiled(&policy(&down, &up));
    let r = router(&["--table", table.to_str().unwrap()]);
    for stream in [false, false, false, true, true] {
        let resp = common::chat_streamed(r.addr, "m", stream, &[("x-tenant", "acme")]);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // One request served, one refused by the tenant's limit; one body that is not JSON.
    let tiny: Vec<u16> = (0..2)
        .map(|_| chat_with(&r, "tiny", &chat_body("m", false)).status)
        .collect();
    assert_eq!(tiny, vec![200, 429]);
    assert_eq!(chat_with(&r, "acme", b"{not json").status, 400);

    (r, down, up, dir)
}

#[test]
fn metrics_read_by_prometheus_client_match_the_traffic_and_the_audit() {
    let (r, down, up, _dir) = busy_router();
    let m = scrape(&r);
    let acme_up = [("switchyard_endpoint", "up"), ("tenant", "acme")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = acme_up.to_vec();
        l.extend_from_slice(extra);
        l
    };
    assert_eq!(
        total(
            &m,
            "switchyard_requests_total",
            &with(&[("status_class", "2xx")])
        ),
        5.0
    );
    assert_eq!(
        total(
            &m,
            "switchyard_requests_total",
            &[("tenant", "tiny"), ("status_class", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        total(&m, "switchyard_requests_total", &[("status_class", "4xx")]),
        2.0
    );
    assert_eq!(
        total(
            &m,
            "switchyard_rate_limited_total",
            &[("tenant", "tiny"), ("limit", "rpm")]
        ),
        1.0
    );
    // Attempts and fallbacks agree with what each upstream received.
    let (hits_down, hits_up) = (mock_requests(&down).len(), mock_requests(&up).len());
    assert_eq!(hits_up, 6);
    assert!(hits_down >= 1);
    assert_eq!(
        total(
            &m,
            "switchyard_upstream_attempts_total",
            &[("switchyard_endpoint", "down"), ("outcome", "overloaded")]
        ),
        hits_down as f64
    );
    assert_eq!(
        total(
            &m,
            "switchyard_upstream_attempts_total",
            &[("switchyard_endpoint", "up"), ("outcome", "ok")]
        ),
        hits_up as f64
    );
    assert_eq!(
        total(
            &m,
            "switchyard_fallbacks_total",
            &[("from", "down"), ("to", "up")]
        ),
        hits_down as f64
    );
    assert_eq!(
        total(
            &m,
            "gen_ai_client_operation_duration_seconds_count",
            &[("switchyard_endpoint", "down")]
        ),
        hits_down as f64
    );
    // Five 503s in a row opened the dead endpoint's breaker.
    assert_eq!(hits_down, 5, "the breaker opens after five failures");
    assert_eq!(
        total(
            &m,
            "switchyard_endpoint_state",
            &[("switchyard_endpoint", "down")]
        ),
        2.0
    );
    assert_eq!(
        total(
            &m,
            "switchyard_endpoint_ejections_total",
            &[("switchyard_endpoint", "down")]
        ),
        1.0
    );

    // Tokens, cost and durations agree with the audit records.
    let rows = audit_rows(&r, "acme", 6);
    let served: Vec<&Value> = rows.iter().filter(|row| row["status"] == 200).collect();
    assert_eq!(served.len(), 5);
    let sum = |field: &str| {
        served
            .iter()
            .map(|row| row[field].as_i64().unwrap())
            .sum::<i64>()
    };
    for (kind, field) in [("input", "tokens_in"), ("output", "tokens_out")] {
        let l = with(&[("gen_ai_token_type", kind)]);
        assert_eq!(
            total(&m, "gen_ai_client_token_usage_sum", &l),
            sum(field) as f64
        );
        assert_eq!(total(&m, "gen_ai_client_token_usage_count", &l), 5.0);
    }
    let cost = total(&m, "switchyard_cost_usd_total", &acme_up);
    assert_eq!((cost * 1e6).round(), sum("cost_micros") as f64);
    assert!(cost > 0.0);
    let duration_count = total(&m, "gen_ai_server_request_duration_seconds_count", &acme_up);
    assert_eq!(duration_count, 5.0);
    let duration_ms = total(&m, "gen_ai_server_request_duration_seconds_sum", &acme_up) * 1000.0;
    let audit_ms = sum("latency_ms") as f64;
    assert!(
        duration_ms >= audit_ms && duration_ms <= audit_ms + 5.0 * 5.0,
        "{duration_ms} ms against the audit's {audit_ms} ms"
    );
    // Buckets are cumulative and end at the count.
    let buckets: Vec<&Sample> = m
        .iter()
        .filter(|s| s.name == "gen_ai_server_request_duration_seconds_bucket")
        .filter(|s| s.labels.get("tenant").and_then(Value::as_str) == Some("acme"))
        .filter(|s| s.labels.get("switchyard_endpoint").and_then(Value::as_str) == Some("up"))
        .collect();
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    let inf = buckets.iter().find(|s| s.labels["le"] == "+Inf").unwrap();
    assert_eq!(inf.value, 5.0);
    assert_eq!(
        total(
            &m,
            "gen_ai_server_time_to_first_token_seconds_count",
            &acme_up
        ),
        5.0
    );
    assert_eq!(
        total(&m, "switchyard_overhead_seconds_count", &acme_up),
        5.0
    );
    let overhead = total(&m, "switchyard_overhead_seconds_sum", &acme_up);
    assert!(
        overhead > 0.0 && overhead < duration_ms / 1000.0,
        "{overhead}"
    );

    // The audit says how many attempts each request took, and why it moved on.
    for row in &served {
        assert_eq!(row["attempts"], 2, "{row}");
        assert_eq!(row["retry_reasons"], "down:overloaded", "{row}");
        assert_eq!(row["fallback_from"], "down");
        let trace = row["trace_id"].as_str().unwrap();
        assert_eq!(trace.len(), 32);
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32));
    }
    let refused = rows.iter().find(|row| row["status"] == 400).unwrap();
    assert_eq!(refused["attempts"], 0);
    assert_eq!(refused["retry_reasons"], Value::Null);
}

fn chat_with(r: &Proc, tenant: &str, body: &[u8]) -> common::Response {
    call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-tenant", tenant)],
        body,
    )
}

#[test]
fn the_clients_trace_is_continued_upstream_and_recorded() {
    let up = mock(&[]);
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n  - id: up\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\ntenants:\n  - id: acme\nrules:\n  - default:\n      route_to: up\n",
        up.addr
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = common::chat_streamed(
        r.addr,
        "m",
        false,
        &[("x-tenant", "acme"), ("traceparent", parent)],
    );
    assert_eq!(resp.status, 200);
    // A malformed one starts a new trace (and is not passed on as if valid).
    let resp = common::chat_streamed(
        r.addr,
        "m",
        false,
        &[
            ("x-tenant", "acme"),
            ("traceparent", "00-zz-00f067aa0ba902b7-01"),
        ],
    );
    assert_eq!(resp.status, 200);
    let sent = mock_requests(&up);
    let header = |req: &Value| {
        req["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("traceparent"))
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    // (No exporter is configured: the router passes the client's span on as the parent.)
    assert_eq!(header(&sent[0]).unwrap(), parent);
    let second = header(&sent[1]).unwrap();
    assert_eq!(second.len(), 55, "{second}");
    assert!(!second.contains("zz"));

    let rows = audit_rows(&r, "acme", 2);
    let traces: Vec<&str> = rows
        .iter()
        .map(|row| row["trace_id"].as_str().unwrap())
        .collect();
    assert!(
        traces.contains(&"4bf92f3577b34da6a3ce929d0e0e4736"),
        "{traces:?}"
    );
    let other = traces
        .iter()
        .find(|t| **t != "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(&second[3..35], *other);
}

#[test]
fn v1_health_shows_the_tenants_endpoints_and_degrades_when_one_is_down() {
    // Nothing listens on `dead`'s port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let up = mock(&[]);
    let (_dir, table) = compiled(&format!(
        r"
version: v1
endpoints:
  - id: dead
    type: vllm
    url: http://127.0.0.1:{dead_port}/v1
    transport: privatelink
    models: [m-dead]
  - id: up
    type: vllm
    url: http://{}/v1
    transport: privatelink
    models: [m]
tenants:
  - id: acme
  - id: narrow
    model_allowlist: [m]
rules:
  - name: dead-first
    match:
      model: m-dead
    route_to: dead
    fallback: [up]
  - default:
      route_to: up
",
        up.addr
    ));
    let r = router(&["--table", table.to_str().unwrap()]);
    let resp = common::chat_streamed(r.addr, "m", false, &[("x-tenant", "acme")]);
    assert_eq!(resp.status, 200);
    let health = |tenant: &str| {
        let resp = call(r.addr, "GET", "/v1/health", &[("x-tenant", tenant)], b"");
        (resp.status, resp.json())
    };
    let (status, body) = health("acme");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["tenant"], "acme");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let names: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["dead", "up"]);

    // Requests that find `dead` refusing connections open its breaker.
    for _ in 0..5 {
        let resp = common::chat_streamed(r.addr, "m-dead", false, &[("x-tenant", "acme")]);
        assert_eq!(resp.status, 503, "{}", resp.text());
    }
    let (status, body) = health("acme");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    let dead = &body["providers"][0];
    assert_eq!(dead["status"], "error");
    assert_eq!(dead["error"], "circuit open after repeated failures");
    // No address or internal detail reaches this unauthenticated path.
    assert!(!body.to_string().contains(&dead_port.to_string()), "{body}");
    assert_eq!(body["providers"][1]["status"], "ok");

    // A tenant that may not use `dead`'s model does not depend on it.
    let (status, body) = health("narrow");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["providers"].as_array().unwrap().len(), 1);
    assert_eq!(body["providers"][0]["name"], "up");
    assert_eq!(body["providers"][0]["models"], 1);
}

/// Metric names and `by (…)` labels of a PromQL expression (or a Grafana `label_values`
/// query): identifiers outside label matchers and strings; those in `by`/`without` lists, and
/// `label_values`' second argument, are labels.
fn promql_names(expr: &str) -> (Vec<String>, Vec<String>) {
    let (mut metrics, mut labels) = (Vec::new(), Vec::new());
    let bytes = expr.as_bytes();
    let (mut i, mut braces, mut quoted) = (0, 0, false);
    // Inside `by (` … `)`, or `label_values(` (how many identifiers seen).
    let (mut label_list, mut label_values, mut pending_by) = (false, None::<usize>, false);
    while i < bytes.len() {
        let c = bytes[i];
        if quoted {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                quoted = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => quoted = true,
            b'{' => braces += 1,
            b'}' => braces -= 1,
            b'(' if pending_by => {
                label_list = true;
                pending_by = false;
            }
            b')' => {
                label_list = false;
                label_values = None;
            }
            b'[' => {
                // A range: skip to its end.
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            c if braces == 0 && (c.is_ascii_alphabetic() || c == b'_') => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &expr[start..i];
                if word == "by" || word == "without" {
                    pending_by = true;
                } else if word == "label_values" {
                    label_values = Some(0);
                } else if label_list {
                    labels.push(word.to_owned());
                } else if let Some(n) = label_values {
                    if n == 0 {
                        metrics.push(word.to_owned());
                    } else {
                        labels.push(word.to_owned());
                    }
                    label_values = Some(n + 1);
                } else if word.starts_with("gen_ai_") || word.starts_with("switchyard_") {
                    metrics.push(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (metrics, labels)
}

#[test]
fn the_grafana_dashboard_queries_only_what_a_live_router_serves() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let fresh = Command::new("python3")
        .args([&format!("{root}/tools/grafana/generate.py"), "--check"])
        .output()
        .unwrap();
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/tools/grafana/switchyard.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            queries.push(q.to_owned());
        }
    }
    assert!(queries.len() > 20, "{queries:?}");
    let (r, _down, _up, _dir) = busy_router();
    let m = scrape(&r);
    let mut checked = std::collections::BTreeSet::new();
    for q in &queries {
        let (metrics, labels) = promql_names(q);
        assert!(!metrics.is_empty(), "no metric found in `{q}`");
        for name in &metrics {
            let samples: Vec<&Sample> = m.iter().filter(|s| &s.name == name).collect();
            assert!(
                !samples.is_empty(),
                "`{q}` uses `{name}`, which /metrics does not serve"
            );
            checked.insert(name.clone());
        }
        for label in labels.iter().filter(|l| *l != "le" && *l != "instance") {
            assert!(
                m.iter()
                    .filter(|s| metrics.contains(&s.name))
                    .any(|s| s.labels.contains_key(label)),
                "`{q}` groups by `{label}`, which none of {metrics:?} has"
            );
        }
    }
    // The seed's view: latency by endpoint, cost by tenant, usage by endpoint/model/rule,
    // failover.
    for needed in [
        "gen_ai_server_request_duration_seconds_bucket",
        "switchyard_cost_usd_total",
        "gen_ai_client_token_usage_sum",
        "switchyard_fallbacks_total",
        "switchyard_endpoint_state",
    ] {
        assert!(
            checked.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn the_promql_reader_tells_metrics_from_labels() {
    let (m, l) = promql_names(
        r#"histogram_quantile(0.95, sum by (le, switchyard_endpoint) (rate(gen_ai_server_request_duration_seconds_bucket{tenant=~"$tenant", switchyard_endpoint="a{b"}[5m])))"#,
    );
    assert_eq!(m, vec!["gen_ai_server_request_duration_seconds_bucket"]);
    assert_eq!(l, vec!["le", "switchyard_endpoint"]);
    let (m, l) = promql_names("label_values(switchyard_requests_total, tenant)");
    assert_eq!(
        (m, l),
        (
            vec!["switchyard_requests_total".to_owned()],
            vec!["tenant".to_owned()]
        )
    );
}

/// The spans the collector has, polled until there are `n`.
fn spans(collector: &Proc, n: usize) -> Vec<Value> {
    at_least(n, "spans", || {
        let got = call(collector.addr, "GET", "/__spans", &[], b"").json();
        got.as_array().unwrap().clone()
    })
}

#[test]
fn spans_go_to_an_otlp_collector_and_the_upstream_gets_its_attempts_span() {
    let collector = common::otlp_collector();
    let down = mock(&["--status", "503"]);
    let up = mock(&[]);
    let (_dir, table) = compiled(&policy(&down, &up));
    let endpoint = format!("http://{}", collector.addr);
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--otlp-endpoint",
        &endpoint,
        "--otlp-service-name",
        "gateway-test",
    ]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = common::chat_streamed(
        r.addr,
        "m",
        false,
        &[("x-tenant", "acme"), ("traceparent", parent)],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // One SERVER span for the request, one CLIENT span per attempt.
    let got = spans(&collector, 3);
    assert_eq!(got.len(), 3, "{got:?}");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert!(
        got.iter()
            .all(|s| s["trace_id"] == trace && s["service"] == "gateway-test")
    );
    let server = got.iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["name"], "POST /v1/chat/completions");
    let a = &server["attributes"];
    assert_eq!(a["switchyard.tenant"], "acme");
    assert_eq!(a["switchyard.endpoint"], "up");
    assert_eq!(a["switchyard.attempts"], 2);
    assert_eq!(a["http.response.status_code"], 200);
    assert!(a["gen_ai.usage.input_tokens"].as_i64().unwrap() > 0);
    let mut attempts: Vec<&Value> = got.iter().filter(|s| s["kind"] == 3).collect();
    attempts.sort_by_key(|s| s["attributes"]["switchyard.attempt"].as_i64());
    assert_eq!(attempts.len(), 2);
    for s in &attempts {
        assert_eq!(s["parent_span_id"], server["span_id"]);
        assert_eq!(s["name"], "chat m");
        assert_eq!(s["attributes"]["gen_ai.provider.name"], "vllm");
        assert!(s["end"].as_u64().unwrap() >= s["start"].as_u64().unwrap());
    }
    assert_eq!(attempts[0]["attributes"]["switchyard.endpoint"], "down");
    assert_eq!(
        attempts[0]["attributes"]["switchyard.outcome"],
        "overloaded"
    );
    assert_eq!(attempts[0]["attributes"]["http.response.status_code"], 503);
    assert_eq!(attempts[0]["status"], 2);
    assert_eq!(attempts[1]["attributes"]["switchyard.outcome"], "ok");
    // Each upstream was told its attempt's span as the parent.
    let sent_parent = |m: &Proc| {
        let reqs = mock_requests(m);
        let h = reqs.last().unwrap()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "traceparent")
            .map(|h| h[1].as_str().unwrap().to_owned())
            .unwrap();
        h.split('-').nth(2).unwrap().to_owned()
    };
    assert_eq!(sent_parent(&down), attempts[0]["span_id"].as_str().unwrap());
    assert_eq!(sent_parent(&up), attempts[1]["span_id"].as_str().unwrap());

    // A client that does not sample its trace: nothing exported, its parent passed on.
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let resp = common::chat_streamed(
        r.addr,
        "m",
        false,
        &[("x-tenant", "acme"), ("traceparent", unsampled)],
    );
    assert_eq!(resp.status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(spans(&collector, 3).len(), 3);
    assert_eq!(sent_parent(&up), "00f067aa0ba902b7");
    let m = scrape(&r);
    assert_eq!(total(&m, "switchyard_trace_spans_exported_total", &[]), 3.0);
    assert_eq!(total(&m, "switchyard_trace_spans_dropped_total", &[]), 0.0);
}

#[test]
fn a_spent_retry_budget_keeps_an_endpoints_failures_from_being_retried() {
    // A budget of one retry (a tenth of a burst of 10), none earned, none trickling in.
    let down = mock(&["--status", "503"]);
    let spare = mock(&[]);
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n  - id: down\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\n  - id: spare\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\ntenants:\n  - id: acme\nrules:\n  - default:\n      route_to: down\n      fallback: [spare]\n",
        down.addr, spare.addr
    ));
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--cores",
        "1",
        "--retry-budget-percent",
        "0",
        "--retry-budget-per-second",
        "0",
        "--retry-budget-burst",
        "10",
    ]);
    let body = chat_body("m", false);
    let first = chat_with(&r, "acme", &body);
    assert_eq!(first.status, 200, "{}", first.text());
    // The budget is spent: `down`'s next failure is relayed as the client's answer (as a
    // last candidate's is), and `spare` is not asked.
    let second = chat_with(&r, "acme", &body);
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(second.route().0, "down");
    assert_eq!(mock_requests(&down).len(), 2);
    assert_eq!(mock_requests(&spare).len(), 1);
    let rows = audit_rows(&r, "acme", 2);
    let served = rows.iter().find(|row| row["status"] == 200).unwrap();
    assert_eq!(served["retry_reasons"], "down:overloaded", "{served}");
    let refused = rows.iter().find(|row| row["status"] == 503).unwrap();
    assert_eq!(refused["attempts"], 1, "{refused}");
    assert_eq!(refused["retry_reasons"], "down:retry_budget", "{refused}");
    let m = scrape(&r);
    assert_eq!(
        total(
            &m,
            "switchyard_retry_budget_exhausted_total",
            &[("switchyard_endpoint", "down")]
        ),
        1.0
    );

    // Out-of-range terms are refused at start, naming the flag.
    let err = common::refused_at_start(&["--no-auth", "--retry-budget-percent", "101"]);
    assert!(
        err.contains("retry-budget-percent") && err.contains("0 to 100"),
        "{err}"
    );
}

#[test]
fn the_executors_rings_are_cooperative_in_this_build() {
    // Built in this workspace, glommio's liburing comes from router/uring-coop and every ring
    // has IORING_SETUP_COOP_TASKRUN; the router says so at start and on /metrics. (A build
    // that lost the shim — .cargo/config.toml not applied — fails here.)
    let r = router(&["--cores", "2"]);
    common::wait_for("the rings' log line", || {
        r.log()
            .contains("io_uring rings with IORING_SETUP_COOP_TASKRUN")
    });
    let samples = scrape(&r);
    assert_eq!(
        total(&samples, "switchyard_io_uring_coop_taskrun", &[]),
        1.0
    );
    // Turned off at run time: the router notices and says what it costs.
    let r = common::router_env(&["--cores", "1"], &[("SWITCHYARD_IO_URING_COOP", "0")]);
    common::wait_for("the warning about plain rings", || {
        r.log().contains("lack IORING_SETUP_COOP_TASKRUN")
    });
    assert_eq!(
        total(&scrape(&r), "switchyard_io_uring_coop_taskrun", &[]),
        0.0
    );
}
