//! Counting a request, an upstream attempt, a fallback and a limit refusal into this core's
//! series (see [`crate::observe::metrics`]).

use switchyard_table::EndpointKind;

use crate::audit::Record;
use crate::dialect::Api;
use crate::observe::metrics::{AttemptSeries, Counter, Outcome, RequestSeries};
use crate::runtime::core::Core;

/// The `gen_ai_provider_name` of an endpoint type (OTel GenAI's well-known values where one
/// fits, else the type).
#[must_use]
pub fn provider_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::OpenAi => "openai",
        EndpointKind::Anthropic => "anthropic",
        EndpointKind::AzureOpenAi => "azure.ai.openai",
        EndpointKind::Bedrock => "aws.bedrock",
        EndpointKind::Vertex => "gcp.vertex_ai",
        EndpointKind::Vllm => "vllm",
        EndpointKind::Ollama => "ollama",
        EndpointKind::Custom => "custom",
        EndpointKind::Mock => "switchyard.mock",
    }
}

/// The `gen_ai_operation_name` of an API.
#[must_use]
pub fn operation_name(api: Api) -> &'static str {
    match api {
        Api::Chat | Api::Messages => "chat",
        Api::Embeddings => "embeddings",
        Api::CountTokens => "count_tokens",
    }
}

/// The model label: a model the endpoint declares (by name), else `_OTHER` — an endpoint
/// without a `models` list serves any name a client sends, which must not become a series.
#[must_use]
pub fn model_label(declared: bool, model: &str) -> &str {
    if declared { model } else { "_OTHER" }
}

/// What the request phases measured beside the audit record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub operation: &'static str,
    /// The last endpoint's provider (empty: none was chosen).
    pub provider: &'static str,
    /// The record's model is one the endpoint declares.
    pub model_declared: bool,
    /// Request head to commit point (µs), for an answered request.
    pub first_byte_us: Option<u64>,
    /// Time spent waiting on upstreams and the client (µs).
    pub waited_us: u64,
    /// The answer was cut short after its head.
    pub interrupted: bool,
}

/// Counts a finished request: status class, duration, time to first token and per output
/// token, tokens (the audit record's own counts, so `_sum` equals the audit's), cost,
/// overhead.
pub fn request(core: &Core, r: &Record, m: &Measured, total_us: u64) {
    let routed = r.endpoint_id.is_some();
    let model = match (&r.model, routed) {
        (Some(model), true) => model_label(m.model_declared, model),
        _ => "",
    };
    let labels = [
        m.operation,
        m.provider,
        model,
        r.endpoint_id.as_deref().unwrap_or(""),
        r.tenant.as_deref().unwrap_or(""),
        if routed {
            r.rule_name.as_deref().unwrap_or("")
        } else {
            ""
        },
    ];
    let families = &core.metrics().families;
    core.observed
        .requests
        .with(&families.requests, labels, RequestSeries::default, |s| {
            let class = usize::try_from(r.status / 100).unwrap_or(5).clamp(1, 5) - 1;
            if let Some(c) = s.by_class.get(class) {
                c.add(1);
            }
            s.duration.observe(total_us);
            if !routed {
                return;
            }
            let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
            let answered = (200..300).contains(&r.status);
            if answered && let Some(ttft) = m.first_byte_us {
                s.ttft.observe(ttft);
                let out = unsigned(r.tokens_out).unwrap_or(0);
                if r.stream && out > 1 {
                    s.tpot.observe(total_us.saturating_sub(ttft) / (out - 1));
                }
            }
            if let Some(n) = unsigned(r.tokens_in) {
                s.tokens_input.observe(n);
            }
            if let Some(n) = unsigned(r.tokens_out) {
                s.tokens_output.observe(n);
            }
            if let Some(c) = unsigned(r.cost_micros) {
                s.cost_micros.add(c);
            }
            if answered {
                s.overhead.observe(total_us.saturating_sub(m.waited_us));
            }
            if m.interrupted {
                s.interrupted.add(1);
            }
        });
}

/// Counts one upstream attempt by its outcome, with its duration (µs).
pub fn attempt(core: &Core, labels: [&str; 4], outcome: Outcome, duration_us: u64) {
    let families = &core.metrics().families;
    core.observed
        .attempts
        .with(&families.attempts, labels, AttemptSeries::default, |s| {
            if let Some(c) = s.outcomes.get(outcome.index()) {
                c.add(1);
            }
            s.duration.observe(duration_us);
        });
}

/// Counts a request moving on from endpoint `from` to `to`.
pub fn fallback(core: &Core, from: &str, to: &str) {
    let families = &core.metrics().families;
    core.observed
        .fallbacks
        .with(&families.fallbacks, [from, to], Counter::default, |c| {
            c.add(1);
        });
}

/// Counts a request a tenant limit refused (`limit`: `rpm`, `tpm`, `daily_tokens`,
/// `daily_spend`).
pub fn limited(core: &Core, tenant: &str, limit: &'static str) {
    let families = &core.metrics().families;
    core.observed
        .limited
        .with(&families.limited, [tenant, limit], Counter::default, |c| {
            c.add(1);
        });
}

/// Counts a retry an endpoint's retry budget refused.
pub fn retry_refused(core: &Core, endpoint: &str) {
    let families = &core.metrics().families;
    core.observed
        .retry_budget
        .with(&families.retry_budget, [endpoint], Counter::default, |c| {
            c.add(1);
        });
}
