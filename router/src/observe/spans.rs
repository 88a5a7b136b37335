//! The spans a request leaves (see [`crate::observe::export`]): one SERVER span for the
//! request and one CLIENT span per upstream attempt, with the OTel GenAI attributes.

use crate::audit::Record;
use crate::observe::export::{Attr, Kind, Span};
use crate::observe::metrics::Outcome;
use crate::observe::trace::Context;

/// What an attempt's span says.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model` (as the
    /// metrics label it), `switchyard.endpoint`.
    pub labels: [&'a str; 4],
    /// Which attempt of the request (1 for the first).
    pub number: u32,
    pub outcome: Outcome,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

/// The CLIENT span of one attempt (`chat {model}`), child of the request's span.
#[must_use]
pub fn attempt(trace: &Context, parent: [u8; 8], span_id: [u8; 8], a: &Attempt<'_>) -> Span {
    let [operation, provider, model, endpoint] = a.labels;
    let mut attributes = vec![
        ("gen_ai.operation.name", Attr::Str(operation.to_owned())),
        ("gen_ai.provider.name", Attr::Str(provider.to_owned())),
        ("gen_ai.request.model", Attr::Str(model.to_owned())),
        ("switchyard.endpoint", Attr::Str(endpoint.to_owned())),
        ("switchyard.attempt", Attr::Int(i64::from(a.number))),
        (
            "switchyard.outcome",
            Attr::Str(a.outcome.as_str().to_owned()),
        ),
    ];
    if let Some(status) = a.status {
        attributes.push(("http.response.status_code", Attr::Int(i64::from(status))));
    }
    let failed = a.outcome != Outcome::Ok;
    if failed {
        attributes.push(("error.type", Attr::Str(a.outcome.as_str().to_owned())));
    }
    Span {
        trace_id: trace.trace_id,
        span_id,
        parent: Some(parent),
        name: format!("{operation} {model}"),
        kind: Kind::Client,
        start_unix_ns: a.start_unix_ns,
        end_unix_ns: a.end_unix_ns,
        attributes,
        error: failed.then(|| a.outcome.as_str().to_owned()),
    }
}

/// The SERVER span of a request, from its audit record.
#[must_use]
pub fn request(
    trace: &Context,
    span_id: [u8; 8],
    path: &str,
    start_unix_ns: u64,
    end_unix_ns: u64,
    r: &Record,
) -> Span {
    let mut attributes = vec![
        ("http.request.method", Attr::Str("POST".to_owned())),
        ("url.path", Attr::Str(path.to_owned())),
        ("http.response.status_code", Attr::Int(i64::from(r.status))),
        ("gen_ai.request.stream", Attr::Bool(r.stream)),
        (
            "switchyard.attempts",
            Attr::Int(i64::from(r.attempts.unwrap_or(0))),
        ),
        ("switchyard.request_id", Attr::Str(r.request_id.clone())),
    ];
    let texts = [
        ("gen_ai.request.model", &r.model),
        ("switchyard.tenant", &r.tenant),
        ("switchyard.data_class", &r.data_class),
        ("switchyard.rule_name", &r.rule_name),
        ("switchyard.endpoint", &r.endpoint_id),
        ("switchyard.fallback_from", &r.fallback_from),
    ];
    for (key, value) in texts {
        if let Some(v) = value {
            attributes.push((key, Attr::Str(v.clone())));
        }
    }
    let ints = [
        ("switchyard.rule_index", r.rule_index.map(i64::from)),
        ("gen_ai.usage.input_tokens", r.tokens_in),
        ("gen_ai.usage.output_tokens", r.tokens_out),
        ("gen_ai.usage.cache_read.input_tokens", r.cache_read_tokens),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            r.cache_write_tokens,
        ),
    ];
    for (key, value) in ints {
        if let Some(v) = value {
            attributes.push((key, Attr::Int(v)));
        }
    }
    let failed = r.status >= 400 || r.error.is_some();
    Span {
        trace_id: trace.trace_id,
        span_id,
        parent: trace.parent,
        name: format!("POST {path}"),
        kind: Kind::Server,
        start_unix_ns,
        end_unix_ns,
        attributes,
        error: failed.then(|| {
            r.error
                .clone()
                .unwrap_or_else(|| format!("status {}", r.status))
        }),
    }
}
