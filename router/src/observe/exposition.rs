//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the router's counters and of
//! the per-core labelled series ([`crate::observe::metrics`]) merged over cores. Names
//! follow the OpenTelemetry GenAI semantic conventions where they apply
//! (`gen_ai_server_request_duration_seconds`, `gen_ai_client_token_usage`, …; OTel → Prometheus
//! naming: dots to `_`, unit suffix, `_total` on counters); the rest are `switchyard_*`.
//! README.md ("Metrics") lists every series with its labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::observe::metrics::{
    ATTEMPT_LABELS, AttemptSeries, Counter, Entry, FALLBACK_LABELS, Family, Histogram,
    LIMIT_LABELS, Merged, Outcome, REQUEST_LABELS, RequestSeries,
};
use crate::runtime::core::Core;

/// The whole exposition.
pub fn render(core: &Core) -> String {
    let mut s = String::with_capacity(16 * 1024);
    scalars(core, &mut s);
    requests(core, &mut s);
    attempts(core, &mut s);
    counters(
        core,
        &mut s,
        |f| &f.fallbacks,
        "switchyard_fallbacks_total",
        "Requests that moved from one endpoint (`from`) to the next candidate (`to`) before anything reached the client.",
        FALLBACK_LABELS,
    );
    counters(
        core,
        &mut s,
        |f| &f.limited,
        "switchyard_rate_limited_total",
        "Requests refused by a tenant limit (`limit`: rpm, tpm, daily_tokens, daily_spend).",
        LIMIT_LABELS,
    );
    counters(
        core,
        &mut s,
        |f| &f.retry_budget,
        "switchyard_retry_budget_exhausted_total",
        "Failures not passed to the next candidate because the failing endpoint's retry budget was spent (per core: by default a fifth of its requests, 10 a second, bursts up to 1000).",
        ["switchyard_endpoint"],
    );
    endpoints(core, &mut s);
    fleet(core, &mut s);
    state(core, &mut s);
    family(
        &mut s,
        "switchyard_io_uring_coop_taskrun",
        "Whether every io_uring ring of the executors was created with IORING_SETUP_COOP_TASKRUN (1), or some or all without it (0: slower under load; see router/uring-coop/README.md).",
        "gauge",
    );
    let _ = writeln!(
        s,
        "switchyard_io_uring_coop_taskrun {}",
        u8::from(crate::runtime::uring::cooperative())
    );
    s
}

/// The fleet limits' store (with `--redis`).
/// `--state`: the shared admin state.
fn state(core: &Core, s: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(state) = &core.shared.state else {
        return;
    };
    family(
        s,
        "switchyard_state_store_up",
        "Whether the shared admin state store (--state) answered the last poll or write (1) or not (0: admin changes answer 503, serving goes on).",
        "gauge",
    );
    let _ = writeln!(
        s,
        "switchyard_state_store_up {}",
        u8::from(state.up.load(Relaxed))
    );
    family(
        s,
        "switchyard_state_revision",
        "The shared admin state revision installed on this host.",
        "gauge",
    );
    let _ = writeln!(
        s,
        "switchyard_state_revision {}",
        state.revision.load(Relaxed)
    );
    family(
        s,
        "switchyard_state_errors_total",
        "Polls and writes of the shared admin state that failed (store unreachable, corrupt or older revision refused).",
        "counter",
    );
    let _ = writeln!(
        s,
        "switchyard_state_errors_total {}",
        state.errors.load(Relaxed)
    );
}

fn fleet(core: &Core, s: &mut String) {
    let Some(fleet) = &core.shared.fleet else {
        return;
    };
    let st = &fleet.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    family(
        s,
        "switchyard_limits_store_up",
        "Whether the fleet's limits store (Redis, --redis) answered the coordinator's last round (1) or not (0).",
        "gauge",
    );
    let _ = writeln!(s, "switchyard_limits_store_up {}", u8::from(fleet.up()));
    family(
        s,
        "switchyard_limits_mode",
        "How tenant limits are enforced now: fleet (Redis leases), or while Redis is down local, share or closed (--limits-on-store-down).",
        "gauge",
    );
    for mode in ["fleet", "local", "share", "closed"] {
        let _ = writeln!(
            s,
            "switchyard_limits_mode{{mode=\"{mode}\"}} {}",
            u8::from(fleet.mode() == mode)
        );
    }
    family(
        s,
        "switchyard_limits_hosts",
        "Routers of the fleet seen in Redis in the last 10 s (this one included).",
        "gauge",
    );
    let _ = writeln!(s, "switchyard_limits_hosts {}", fleet.hosts());
    family(
        s,
        "switchyard_limits_leases_total",
        "Lease calls to Redis (one per tenant per coordinator round that needed one).",
        "counter",
    );
    let _ = writeln!(s, "switchyard_limits_leases_total {}", get(&st.lease_calls));
    family(
        s,
        "switchyard_limits_store_errors_total",
        "Failed connections and rounds to the limits store.",
        "counter",
    );
    let _ = writeln!(
        s,
        "switchyard_limits_store_errors_total {}",
        get(&st.store_errors)
    );
    family(
        s,
        "switchyard_limits_lease_waits_total",
        "Requests that waited for their tenant's share because this host's was used up, by outcome (granted, refused, timeout, unavailable).",
        "counter",
    );
    for (outcome, n) in [
        ("granted", &st.waits_granted),
        ("refused", &st.waits_refused),
        ("timeout", &st.waits_timed_out),
        ("unavailable", &st.waits_unavailable),
    ] {
        let _ = writeln!(
            s,
            "switchyard_limits_lease_waits_total{{outcome=\"{outcome}\"}} {}",
            get(n)
        );
    }
    family(
        s,
        "switchyard_limits_round_trip_seconds",
        "Time of the coordinator's rounds to Redis (sum and count).",
        "summary",
    );
    let _ = writeln!(
        s,
        "switchyard_limits_round_trip_seconds_sum {}\nswitchyard_limits_round_trip_seconds_count {}",
        micros(get(&st.round_trip_us)),
        get(&st.round_trips)
    );
    family(
        s,
        "switchyard_limits_lease_wait_seconds",
        "How long requests waited for their tenant's fleet share when this host's was used up (at most --limits-acquire-timeout-ms).",
        "histogram",
    );
    let mut waits = Merged::default();
    st.wait_us
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .merge_into(&mut waits);
    histogram_lines(
        s,
        "switchyard_limits_lease_wait_seconds",
        "",
        &waits,
        Unit::Micros,
    );
}

fn family(s: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `{a="x",b="y"}` (values escaped as the text format asks).
fn label_set(names: &[&str], values: &[&str], extra: Option<(&str, &str)>) -> String {
    let mut out = String::from("{");
    let pairs = names
        .iter()
        .zip(values.iter())
        .map(|(n, v)| (*n, *v))
        .chain(extra);
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// How a stored integer is exposed.
#[derive(Clone, Copy)]
enum Unit {
    /// Millionths (µs as seconds, micro-dollars as USD), printed as an exact decimal.
    Micros,
    /// As it is (tokens).
    Count,
}

impl Unit {
    fn show(self, v: u64) -> String {
        match self {
            Self::Count => v.to_string(),
            Self::Micros => micros(v),
        }
    }
}

/// Millionths as an exact decimal (`1500000` → `1.5`), never a binary float's noise.
fn micros(v: u64) -> String {
    let whole = v / 1_000_000;
    let frac = v % 1_000_000;
    if frac == 0 {
        return format!("{whole}");
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// One histogram's `_bucket`, `_sum` and `_count` lines.
fn histogram_lines(s: &mut String, name: &str, labels: &str, h: &Merged, unit: Unit) {
    let inner = labels.trim_start_matches('{').trim_end_matches('}');
    let sep = if inner.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative = cumulative.wrapping_add(*c);
        let le = match h.bounds.get(i) {
            Some(&b) => unit.show(b),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(s, "{name}_bucket{{{inner}{sep}le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(s, "{name}_sum{labels} {}", unit.show(h.sum));
    let _ = writeln!(s, "{name}_count{labels} {cumulative}");
}

/// Merges one family's series over the cores, by label values.
fn merged<S, T: Default, const N: usize>(
    core: &Core,
    pick: impl Fn(&crate::observe::metrics::CoreFamilies) -> &Family<S, N>,
    mut add: impl FnMut(&mut T, &S),
) -> BTreeMap<[Box<str>; N], T> {
    let mut out: BTreeMap<[Box<str>; N], T> = BTreeMap::new();
    for m in core.shared.metrics.iter() {
        pick(&m.families).each(|e: &Entry<S, N>| {
            add(out.entry(e.labels.clone()).or_default(), &e.series);
        });
    }
    out
}

fn as_strs<const N: usize>(labels: &[Box<str>; N]) -> Vec<&str> {
    labels.iter().map(|l| &**l).collect()
}

#[derive(Default)]
struct RequestTotals {
    by_class: [u64; 5],
    duration: Merged,
    ttft: Merged,
    tpot: Merged,
    tokens_input: Merged,
    tokens_output: Merged,
    cost_micros: u64,
    overhead: Merged,
    interrupted: u64,
}

fn add_histogram(into: &mut Merged, h: &Histogram) {
    h.merge_into(into);
}

fn requests(core: &Core, s: &mut String) {
    let all = merged(
        core,
        |f| &f.requests,
        |t: &mut RequestTotals, r: &RequestSeries| {
            for (a, c) in t.by_class.iter_mut().zip(r.by_class.iter()) {
                *a = a.wrapping_add(c.get());
            }
            add_histogram(&mut t.duration, &r.duration);
            add_histogram(&mut t.ttft, &r.ttft);
            add_histogram(&mut t.tpot, &r.tpot);
            add_histogram(&mut t.tokens_input, &r.tokens_input);
            add_histogram(&mut t.tokens_output, &r.tokens_output);
            t.cost_micros = t.cost_micros.wrapping_add(r.cost_micros.get());
            add_histogram(&mut t.overhead, &r.overhead);
            t.interrupted = t.interrupted.wrapping_add(r.interrupted.get());
        },
    );
    family(
        s,
        "switchyard_requests_total",
        "Model API requests (chat, messages, embeddings, count_tokens) by where they went and the status class sent to the client.",
        "counter",
    );
    for (labels, t) in &all {
        let values = as_strs(labels);
        for (i, n) in t.by_class.iter().enumerate() {
            if *n > 0 {
                let class = format!("{}xx", i + 1);
                let set = label_set(&REQUEST_LABELS, &values, Some(("status_class", &class)));
                let _ = writeln!(s, "switchyard_requests_total{set} {n}");
            }
        }
    }
    let seconds = Unit::Micros;
    let hist = |s: &mut String,
                name: &str,
                help: &str,
                get: &dyn Fn(&RequestTotals) -> &Merged,
                unit: Unit,
                routed_only: bool| {
        family(s, name, help, "histogram");
        for (labels, t) in &all {
            if routed_only && labels[3].is_empty() {
                continue;
            }
            let set = label_set(&REQUEST_LABELS, &as_strs(labels), None);
            histogram_lines(s, name, &set, get(t), unit);
        }
    };
    hist(
        s,
        "gen_ai_server_request_duration_seconds",
        "Request duration as the client sees it: head read to last byte sent.",
        &|t| &t.duration,
        seconds,
        false,
    );
    hist(
        s,
        "gen_ai_server_time_to_first_token_seconds",
        "Time to the commit point: the upstream's response head, or on a stream its first body bytes (answered requests).",
        &|t| &t.ttft,
        seconds,
        true,
    );
    hist(
        s,
        "gen_ai_server_time_per_output_token_seconds",
        "Streamed requests: (duration - time to first token) / (output tokens - 1).",
        &|t| &t.tpot,
        seconds,
        true,
    );
    family(
        s,
        "gen_ai_client_token_usage",
        "Tokens per request by gen_ai_token_type (input counts cached prompt tokens too); sums equal the audit records' tokens_in / tokens_out.",
        "histogram",
    );
    for (labels, t) in &all {
        if labels[3].is_empty() {
            continue;
        }
        let values = as_strs(labels);
        for (kind, h) in [("input", &t.tokens_input), ("output", &t.tokens_output)] {
            let set = label_set(&REQUEST_LABELS, &values, Some(("gen_ai_token_type", kind)));
            histogram_lines(s, "gen_ai_client_token_usage", &set, h, Unit::Count);
        }
    }
    hist(
        s,
        "switchyard_overhead_seconds",
        "The router's own time per answered request: duration minus the time spent waiting on the upstream and on the client.",
        &|t| &t.overhead,
        seconds,
        true,
    );
    family(
        s,
        "switchyard_cost_usd_total",
        "Cost in USD (tokens x the endpoint's pricing), as in the audit records' cost_usd.",
        "counter",
    );
    for (labels, t) in &all {
        if labels[3].is_empty() {
            continue;
        }
        let set = label_set(&REQUEST_LABELS, &as_strs(labels), None);
        let _ = writeln!(
            s,
            "switchyard_cost_usd_total{set} {}",
            micros(t.cost_micros)
        );
    }
    family(
        s,
        "switchyard_stream_interrupted_total",
        "Answers cut short after their head reached the client (a broken or idle stream; no retry is possible then).",
        "counter",
    );
    for (labels, t) in &all {
        if labels[3].is_empty() {
            continue;
        }
        let set = label_set(&REQUEST_LABELS, &as_strs(labels), None);
        let _ = writeln!(
            s,
            "switchyard_stream_interrupted_total{set} {}",
            t.interrupted
        );
    }
}

#[derive(Default)]
struct AttemptTotals {
    outcomes: [u64; Outcome::ALL.len()],
    duration: Merged,
}

fn attempts(core: &Core, s: &mut String) {
    let all = merged(
        core,
        |f| &f.attempts,
        |t: &mut AttemptTotals, a: &AttemptSeries| {
            for (x, c) in t.outcomes.iter_mut().zip(a.outcomes.iter()) {
                *x = x.wrapping_add(c.get());
            }
            add_histogram(&mut t.duration, &a.duration);
        },
    );
    family(
        s,
        "switchyard_upstream_attempts_total",
        "Upstream attempts by outcome (ok, connect_error, reset_after_send, ttft_timeout, rate_limited, quota_exhausted, overloaded, credentials, context_overflow, client_error, interrupted, client_gone, not_sent).",
        "counter",
    );
    for (labels, t) in &all {
        let values = as_strs(labels);
        for (o, n) in Outcome::ALL.iter().zip(t.outcomes.iter()) {
            if *n > 0 {
                let set = label_set(&ATTEMPT_LABELS, &values, Some(("outcome", o.as_str())));
                let _ = writeln!(s, "switchyard_upstream_attempts_total{set} {n}");
            }
        }
    }
    family(
        s,
        "gen_ai_client_operation_duration_seconds",
        "Duration of each upstream attempt, from its start to its end (the whole relayed answer when it was answered).",
        "histogram",
    );
    for (labels, t) in &all {
        let set = label_set(&ATTEMPT_LABELS, &as_strs(labels), None);
        histogram_lines(
            s,
            "gen_ai_client_operation_duration_seconds",
            &set,
            &t.duration,
            Unit::Micros,
        );
    }
}

fn counters<const N: usize>(
    core: &Core,
    s: &mut String,
    pick: impl Fn(&crate::observe::metrics::CoreFamilies) -> &Family<Counter, N>,
    name: &str,
    help: &str,
    names: [&str; N],
) {
    let all = merged(core, pick, |t: &mut u64, c: &Counter| {
        *t = t.wrapping_add(c.get());
    });
    family(s, name, help, "counter");
    for (labels, n) in &all {
        let set = label_set(&names, &as_strs(labels), None);
        let _ = writeln!(s, "{name}{set} {n}");
    }
}

/// Per-endpoint state of the serving table's endpoints (shared by the cores).
fn endpoints(core: &Core, s: &mut String) {
    let loaded = core.table();
    let now = crate::clock::now_ms();
    let breakers: Vec<_> = loaded
        .table()
        .endpoints()
        .map(|e| (e.id().to_owned(), core.shared.health.breakers.get(e.id())))
        .collect();
    family(
        s,
        "switchyard_endpoint_state",
        "Circuit state: 0 closed, 1 half-open (one probe request allowed), 2 open (skipped), 3 cooling (skipped until a Retry-After passes).",
        "gauge",
    );
    for (id, b) in &breakers {
        let _ = writeln!(
            s,
            "switchyard_endpoint_state{} {}",
            label_set(&["switchyard_endpoint"], &[id], None),
            b.state_code(now)
        );
    }
    family(
        s,
        "switchyard_endpoint_ejections_total",
        "Times the endpoint's breaker opened.",
        "counter",
    );
    for (id, b) in &breakers {
        let _ = writeln!(
            s,
            "switchyard_endpoint_ejections_total{} {}",
            label_set(&["switchyard_endpoint"], &[id], None),
            b.ejected_total()
        );
    }
}

fn scalars(core: &Core, s: &mut String) {
    let shared = &core.shared;
    let loaded = core.table();
    let mut metric = |name: &str, help: &str, kind: &str, v: u64| {
        family(s, name, help, kind);
        let _ = writeln!(s, "{name} {v}");
    };
    metric(
        "switchyard_http_requests_total",
        "HTTP requests whose head was read (every path).",
        "counter",
        shared.sum(|m| &m.requests),
    );
    metric(
        "switchyard_upstream_errors_total",
        "Upstream connect, reset, timeout and protocol errors.",
        "counter",
        shared.sum(|m| &m.upstream_errors),
    );
    metric(
        "switchyard_connections",
        "Open client connections.",
        "gauge",
        shared.sum(|m| &m.connections),
    );
    metric(
        "switchyard_connections_refused_total",
        "Connections refused over the per-core limit.",
        "counter",
        shared.sum(|m| &m.connections_refused),
    );
    metric(
        "switchyard_request_body_bytes_buffered",
        "Request-body bytes buffered beyond the connections' initial buffers (--max-pending-body-bytes caps it).",
        "gauge",
        shared.body_budget.used(),
    );
    metric(
        "switchyard_panics_total",
        "Connection tasks that panicked (each dropped its connection only).",
        "counter",
        shared.sum(|m| &m.panics),
    );
    let audit = &shared.audit_stats;
    metric(
        "switchyard_audit_records_written_total",
        "Audit records in sealed shards.",
        "counter",
        audit
            .records_written
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_records_failed_total",
        "Audit records that could not be written (counted, never silently dropped).",
        "counter",
        audit
            .records_failed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_write_errors_total",
        "Audit write failures (full disk, unwritable directory...).",
        "counter",
        audit
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_shards_sealed_total",
        "Audit shards sealed.",
        "counter",
        audit
            .shards_sealed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_shards_shipped_total",
        "Audit shards uploaded to object storage.",
        "counter",
        audit
            .shards_shipped
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_ship_errors_total",
        "Failed audit shard uploads (each is retried).",
        "counter",
        audit.ship_errors.load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_shards_pending_upload",
        "Sealed audit shards waiting for upload.",
        "gauge",
        audit
            .ship_pending
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_audit_unauthenticated_unrecorded_total",
        "Unauthenticated refusals left out of the audit trail (beyond 10 a second per core).",
        "counter",
        shared.sum(|m| &m.unaudited_refusals),
    );
    metric(
        "switchyard_audit_records_queued",
        "Audit records waiting on the cores for the writer.",
        "gauge",
        shared.audit_gates.iter().map(|g| g.queued() as u64).sum(),
    );
    metric(
        "switchyard_audit_shards_held",
        "Sealed audit shards whose destination answered with a permanent error (no such bucket, access denied); kept on disk, retried every --audit-ship-hold-retry-s.",
        "gauge",
        audit.ship_held.load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        "switchyard_log_lines_dropped_total",
        "Log lines dropped because stderr could not keep up (logging never blocks a request).",
        "counter",
        crate::runtime::logging::dropped_lines(),
    );
    metric(
        "switchyard_upstream_stale_connections_total",
        "Pooled upstream connections found closed by the upstream; the request was sent again on a new one.",
        "counter",
        shared.sum(|m| &m.stale_connections),
    );
    let spans = |get: fn(&crate::observe::export::Exporter) -> &std::sync::atomic::AtomicU64| {
        shared
            .tracer
            .as_ref()
            .map_or(0, |t| get(t).load(std::sync::atomic::Ordering::Relaxed))
    };
    metric(
        "switchyard_trace_spans_exported_total",
        "Spans the OTLP collector accepted (--otlp-endpoint).",
        "counter",
        spans(|t| &t.exported),
    );
    metric(
        "switchyard_trace_spans_dropped_total",
        "Spans dropped because the export queue was full (tracing never makes a request wait).",
        "counter",
        spans(|t| &t.dropped),
    );
    metric(
        "switchyard_trace_spans_failed_total",
        "Spans in exports the collector refused or could not be reached for (not retried).",
        "counter",
        spans(|t| &t.failed),
    );
    metric(
        "switchyard_table_revision",
        "Revision of the table being served.",
        "gauge",
        loaded.table().revision(),
    );
    family(
        s,
        "switchyard_http_responses_total",
        "HTTP responses by status class (every path).",
        "counter",
    );
    for (class, total) in [
        ("2xx", shared.sum(|m| &m.responses_2xx)),
        ("4xx", shared.sum(|m| &m.responses_4xx)),
        ("5xx", shared.sum(|m| &m.responses_5xx)),
    ] {
        let _ = writeln!(
            s,
            "switchyard_http_responses_total{{class=\"{class}\"}} {total}"
        );
    }
}
