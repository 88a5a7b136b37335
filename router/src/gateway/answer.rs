//! Phase 5 of a request, answering it: each candidate endpoint of the decision in order,
//! with the body it gets — the client's, byte for byte but for `model` (and, on an OpenAI
//! stream, the usage request), when the endpoint speaks the client's dialect; else the request
//! parsed once into the intermediate form and written in the endpoint's dialect — then
//! answered in-process (`mock`) or forwarded ([`crate::upstream::forward::forward`]).
//!
//! A candidate that fails before anything reached an upstream (connect refused, missing
//! secret, an API or a field its dialect cannot take) passes the request to the next; any
//! other failure is answered. A body that is wrong in its own dialect is refused at once.

use std::borrow::Cow;

use crate::control::breaker::{Admit, Seen};
use crate::control::table::Plan;
use crate::dialect::openai::write::Limit;
use crate::dialect::{Api, Refusal, Wire, anthropic, ir, openai};
use crate::gateway::body;
use crate::gateway::draft::{Draft, refuse, requested};
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{RequestId, RouteReport, elapsed_ms};
use crate::gateway::route::{self, Attrs};
use crate::observe::metrics::Outcome as AttemptOutcome;
use crate::runtime::client::{Client, Next, Request};
use crate::runtime::core::Core;
use crate::upstream::exchange::{Exchange, Outcome, Translation};

/// What the decision phases established, for the candidate phase.
pub(super) struct Routed<'a, 'r> {
    pub(super) loaded: &'a crate::control::table::Loaded,
    pub(super) choice: &'a route::Choice<'a>,
    pub(super) attrs: &'a Attrs<'r>,
    pub(super) fields: &'a body::Fields<'r>,
}

/// The dialect an endpoint's plan speaks for `model` (its provider id, found only where the
/// dialect depends on it; `None`: answered in-process, or not at all).
fn wire_of<'m>(plan: &Plan, model: impl FnOnce() -> &'m str) -> Option<Wire> {
    match plan {
        Plan::Forward(up) => Some(up.wire_for(model)),
        _ => None,
    }
}

/// Phase 5, answer: each candidate in order until one answers; a candidate that fails
/// before anything could have reached an upstream passes the request to the next.
pub(super) async fn candidates<'r>(
    core: &Core,
    req: &'r Request<'r>,
    client: &mut Client<'_>,
    id: RequestId<'r>,
    draft: &mut Draft,
    route: &Routed<'_, 'r>,
) -> (Next, Outcome) {
    let api = draft.api;
    let table = route.loaded.table();
    let requested = requested(route.fields);
    let stream = route.fields.stream && api != Api::CountTokens;
    let usage_edit = if stream && api == Api::Chat {
        body::ask_for_usage(req.body, route.fields)
    } else {
        None
    };
    // Whether the client asked for the usage chunk itself (then it is relayed as it comes).
    let asked_usage = stream && usage_edit.is_none();
    // The request in the intermediate form, parsed once if some candidate needs it.
    let needs_translation = api.generates()
        && route.choice.candidates(requested).any(|(index, send)| {
            let (Some(endpoint), Some(plan)) = (
                table.endpoint(index),
                route.loaded.plans.get(index as usize),
            ) else {
                return false;
            };
            wire_of(plan, || endpoint.upstream_model(send.as_str(requested)))
                .is_some_and(|w| w != api.wire())
        });
    let mut parse_buf = core.pool.bytes.take();
    let mut parser = core.pool.parsers.take();
    let parsed = if needs_translation {
        parse_buf.clear();
        parse_buf.extend_from_slice(req.body);
        let read = match api.wire() {
            // (No client speaks Bedrock: its arm is the OpenAI reader's.)
            Wire::OpenAi
            | Wire::Bedrock
            | Wire::BedrockInvoke
            | Wire::Gemini
            | Wire::VertexAnthropic => openai::read::read(&mut parse_buf, &mut parser),
            Wire::Anthropic => anthropic::read::read(&mut parse_buf, &mut parser),
        };
        match read {
            Err(r) if r.invalid => {
                let err = refusal_error(&r, None);
                return refuse(core, client, id, &err, &RouteReport::none(req.started), api);
            }
            other => Some(other),
        }
    } else {
        None
    };
    let mut last: Option<(Error, &str)> = None;
    let mut over_budget: Vec<String> = Vec::new();
    // The candidates that may be tried: `X-Cost-Budget-Usd` passes over an endpoint whose
    // worst case exceeds it.
    // (Inline: a rule names a few candidates, and this runs per request.)
    let mut viable: smallvec::SmallVec<[_; 4]> = route
        .choice
        .candidates(requested)
        .filter_map(|(index, send)| {
            let endpoint = table.endpoint(index)?;
            let plan = route.loaded.plans.get(index as usize)?;
            if let Some(budget) = route.attrs.cost_budget {
                let worst = route::worst_case_cost(
                    req.body.len(),
                    route.fields.max_tokens,
                    endpoint.input_per_1k(),
                    endpoint.output_per_1k(),
                );
                if worst > budget {
                    over_budget.push(format!("`{}` (up to ${worst})", endpoint.id()));
                    return None;
                }
            }
            Some((endpoint, plan, send))
        })
        .collect();
    // A balanced `route_to` set (its members come first): ordered by power of two choices
    // on this core's load.
    let members = viable
        .iter()
        .take_while(|(e, _, _)| route.choice.balanced(e.index()))
        .count();
    if members > 1 {
        let scored: Vec<(u32, u64)> = viable
            .iter()
            .take(members)
            .map(|(e, _, _)| {
                let load = &core.endpoint(route.loaded, e).load;
                (e.weight(), load.series.score(e.weight()))
            })
            .collect();
        let random = crate::control::balance::mix(core.next_request_number());
        let set: smallvec::SmallVec<[_; 4]> = crate::control::balance::order(&scored, random)
            .into_iter()
            .filter_map(|i| viable.get(i).copied())
            .collect();
        // (`order` is a permutation of the members: the set's places are refilled.)
        for (place, member) in viable.iter_mut().zip(set) {
            *place = member;
        }
    }
    // The trace context upstreams get: the client's parent span when it sent one (the
    // router is transparent to the trace), else a span id of this request's own.
    let traceparent = draft.trace.map(|t| {
        t.header(
            t.parent
                .unwrap_or_else(|| crate::observe::trace::span_id(core.next_request_number())),
        )
    });
    let max_attempts = core.config().max_attempts;
    // The request's deadline (`--request-timeout-ms`): no attempt starts after it.
    let deadline = core.config().request_timeout.map(|t| req.started + t);
    let mut past_deadline = false;
    let mut attempts = 0;
    // Candidates are taken in the rule's order; when the breakers skipped every one, the
    // one that recovers first is taken last, forced.
    let mut forced_extra: Option<usize> = None;
    let mut skipped: Option<(i64, usize)> = None;
    // The load of the endpoint whose failure the next attempt retries (its budget pays).
    let mut failed: Option<std::rc::Rc<crate::runtime::core::EndpointHandles>> = None;
    let mut k = 0;
    while let Some((i, forced)) = if k < viable.len() {
        Some((k, false))
    } else {
        forced_extra.take().map(|i| (i, true))
    } {
        k += 1;
        let Some((endpoint, plan, send)) = viable.get(i) else {
            break;
        };
        if attempts >= max_attempts {
            break;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            past_deadline = true;
            break;
        }
        let now = crate::clock::now_ms();
        let policy = core.config().retry_budget;
        let handles = core.endpoint(route.loaded, endpoint);
        let forwarded = matches!(plan, Plan::Forward(_));
        let load = forwarded.then_some(&handles.load);
        let breaker = forwarded.then_some(&handles.breaker);
        if let Some(load) = load {
            if attempts == 0 {
                load.series.retries.deposit(policy);
            } else if let Some(failed) = failed.as_ref().map(|h| &h.load)
                && !failed.series.retries.withdraw(now, policy)
            {
                // The failed endpoint's retries are at their budget: a failing endpoint
                // must not multiply the traffic the others get.
                // (Spent by other requests while this one's attempt ran; the check before
                // it usually makes that attempt the last instead.)
                let spent = failed.labels.first().map_or("", |l| &**l);
                crate::observe::record::retry_refused(core, spent);
                push_reason(&mut draft.retry_reasons, spent, "retry_budget");
                break;
            }
        }
        let probe = match (breaker, forced) {
            (Some(b), false) => match b.admit(now) {
                Admit::Yes => false,
                Admit::Probe => true,
                Admit::No { until_ms } => {
                    if skipped.is_none_or(|(t, _)| until_ms < t) {
                        skipped = Some((until_ms, i));
                    }
                    if k == viable.len() && attempts == 0 && last.is_none() {
                        // Every candidate is open or cooling: rather than fail, the one
                        // that recovers first is tried.
                        forced_extra = skipped.map(|(_, first)| first);
                    }
                    continue;
                }
            },
            _ => false,
        };
        // No candidate after this one will be tried: its error answer is the client's.
        let later = !forced
            && viable.get(k..).unwrap_or_default().iter().any(|(e, p, _)| {
                !matches!(p, Plan::Forward(_))
                    || core.endpoint(route.loaded, e).breaker.admissible(now)
            });
        // A failure here could not be retried: this endpoint's retry budget is spent.
        let budget_spent = load.is_some_and(|l| !l.series.retries.available(now, policy));
        let last_chance = !later || budget_spent || attempts + 1 >= max_attempts;
        let withheld = later && budget_spent && attempts + 1 < max_attempts;
        let send_model = send.as_str(requested);
        // The provider's id for the model (`models: [{ name, upstream }]`); the name is what
        // policies, allowlists and the audit's `model` use.
        let upstream_model = endpoint.upstream_model(send_model);
        let wire = wire_of(plan, || upstream_model);
        let mut scratch = (core.pool.bytes.take(), core.pool.bytes.take());
        let mut dropped = String::new();
        let translated = wire.filter(|w| *w != api.wire());
        let body = match (translated, &parsed) {
            (Some(_), _) if !api.generates() => {
                Err(unserved(api, endpoint.id(), endpoint.kind().as_str()))
            }
            (Some(to), Some(Ok(ir))) => {
                let limit = match plan {
                    Plan::Forward(up) => up.limit,
                    _ => Limit::MaxTokens,
                };
                let (_, out) = &mut scratch;
                out.clear();
                write_request(ir, to, upstream_model, limit, out, &mut dropped)
                    .map(|()| out.as_slice())
                    .map_err(|r| refusal_error(&r, Some((endpoint.id(), to))))
            }
            (Some(to), Some(Err(r))) => Err(refusal_error(r, Some((endpoint.id(), to)))),
            (Some(_), None) => Err(Error::new(
                ErrorKind::Internal,
                "the request was not parsed for translation",
            )),
            (None, _) => {
                // Usage is asked for on a stream to an OpenAI-compatible upstream (the relay
                // takes the usage chunk out again when the client had not asked for it).
                let edit = usage_edit.as_ref().filter(|_| wire.is_some());
                Ok(endpoint_body(
                    req.body,
                    route.fields,
                    upstream_model,
                    edit,
                    &mut scratch,
                ))
            }
        };
        if let Some(previous) = &draft.endpoint_id {
            crate::observe::record::fallback(core, previous, endpoint.id());
            draft.fallback_from = draft.fallback_from.take().or(draft.endpoint_id.take());
        }
        let declared = endpoint.default_model() == Some(send_model)
            || endpoint.models().any(|m| m == send_model);
        draft.measured.provider = crate::observe::record::provider_name(endpoint.kind());
        draft.measured.model_declared = declared;
        draft.endpoint_id = Some(endpoint.id().to_owned());
        if send_model != requested {
            // `draft.model` already holds the requested model; only a resolved one differs.
            draft.model = Some(send_model.to_owned());
        }
        draft.upstream_model = Some(upstream_model.to_owned());
        draft.pricing = Some((endpoint.input_per_1k(), endpoint.output_per_1k()));
        // Exported spans: this attempt's own span, which the upstream gets as its parent.
        let attempt_span = draft.span.map(|_| {
            crate::observe::trace::span_id(crate::control::balance::mix(core.next_request_number()))
        });
        let attempt_traceparent = attempt_span
            .zip(draft.trace)
            .map(|(span, trace)| trace.header(span));
        let result = match body {
            Ok(body) => {
                let x = Exchange {
                    core,
                    req,
                    id,
                    rule: route.choice.rule_index,
                    endpoint: endpoint.id(),
                    model: upstream_model,
                    stream,
                    body,
                    strip_usage: stream && !asked_usage && api == Api::Chat,
                    hold_last: core.config().audit_strict,
                    api,
                    translation: translated.map(|from| Translation {
                        from,
                        to: api.wire(),
                        include_usage: matches!(&parsed, Some(Ok(ir)) if ir.include_usage),
                    }),
                    dropped: &dropped,
                    attempt: attempts + 1,
                    last_chance,
                    waited_us: std::cell::Cell::new(0),
                    traceparent: attempt_traceparent
                        .as_ref()
                        .or(traceparent.as_ref())
                        .map_or(&[][..], |t| t.as_bytes()),
                    give_up_at: std::cell::Cell::new(deadline),
                };
                attempts += 1;
                // One clock reading before the attempt and one after serve every figure
                // below (its duration, a time-out's TTFT, the breaker's and health's time).
                let started = std::time::Instant::now();
                let start_unix_ns = attempt_span.map(|_| crate::observe::export::now_unix_ns());
                let offset_us = micros(started.saturating_duration_since(req.started));
                let flight = load.map(|l| l.series.start());
                let result = attempt(&x, plan, client).await;
                drop(flight);
                let ended = std::time::Instant::now();
                let took = micros(ended.saturating_duration_since(started));
                let now_ms = crate::clock::now_ms();
                let outcome = outcome_of(&result);
                if withheld
                    && matches!(&result, Ok((_, o)) if o.upstream_status.is_some_and(crate::upstream::exchange::falls_back))
                {
                    // Its answer was relayed as the last: the budget kept it from moving on.
                    crate::observe::record::retry_refused(core, endpoint.id());
                    push_reason(&mut draft.retry_reasons, endpoint.id(), "retry_budget");
                }
                if let Some(load) = load {
                    match (&result, outcome) {
                        (Ok((_, o)), _) => {
                            if let Some(first) = o.first_byte_us {
                                load.series.observe_ttft(first.saturating_sub(offset_us));
                            }
                        }
                        // A member that times out scores as slow as it was.
                        (Err(_), AttemptOutcome::TtftTimeout) => {
                            load.series.observe_ttft(took);
                        }
                        _ => {}
                    }
                }
                draft.attempts = attempts;
                draft.measured.waited_us =
                    draft.measured.waited_us.saturating_add(x.waited_us.get());
                draft.measured.interrupted = outcome == AttemptOutcome::Interrupted;
                if matches!(plan, Plan::Forward(_)) {
                    let labels = [
                        draft.measured.operation,
                        draft.measured.provider,
                        crate::observe::record::model_label(declared, send_model),
                        endpoint.id(),
                    ];
                    crate::observe::record::attempt(core, labels, outcome, took);
                    if let (Some(tracer), Some(trace), Some(parent), Some(span), Some(start)) = (
                        &core.shared.tracer,
                        draft.trace,
                        draft.span,
                        attempt_span,
                        start_unix_ns,
                    ) {
                        let status = match &result {
                            Ok((_, o)) => o.upstream_status,
                            Err(e) => e.upstream_status,
                        };
                        let a = crate::observe::spans::Attempt {
                            labels,
                            number: attempts,
                            outcome,
                            status,
                            start_unix_ns: start,
                            end_unix_ns: crate::observe::export::now_unix_ns(),
                        };
                        tracer.send(crate::observe::spans::attempt(&trace, parent, span, &a));
                    }
                }
                if let Some(b) = breaker {
                    let seen = seen(&result);
                    // A forced attempt (every candidate was skipped) decides like a probe.
                    b.record(now_ms, probe || forced, seen);
                    // An endpoint failing half the time never fails five times in a row.
                    if let (Some(load), Some(failed)) = (load, seen.failed())
                        && load.series.failure_ratio_trips(now_ms, failed)
                    {
                        b.force_open(now_ms);
                    }
                }
                match &result {
                    Ok(_) => core.endpoint_answered(&handles, endpoint.id(), now_ms),
                    Err(e) if e.kind.retry_safe() || e.kind == ErrorKind::UpstreamTimeout => {
                        core.endpoint_failed(&handles, endpoint.id(), &e.for_log(), now_ms);
                    }
                    Err(_) => {}
                }
                let latency_ms = ended.saturating_duration_since(req.started).as_millis();
                result.map_err(|e| (e, u64::try_from(latency_ms).unwrap_or(u64::MAX), outcome))
            }
            Err(e) => Err((e, elapsed_ms(req.started), AttemptOutcome::NotSent)),
        };
        match result {
            Ok(done) => return done,
            Err((e, _, outcome))
                if e.kind.try_next()
                    || (e.kind == ErrorKind::UpstreamBadResponse
                        && route.choice.resend_on_reset()) =>
            {
                push_reason(&mut draft.retry_reasons, endpoint.id(), outcome.as_str());
                failed = forwarded.then_some(handles);
                if let Some(suppressed) =
                    crate::runtime::logging::allow(&crate::runtime::logging::CANDIDATE_FAILED)
                {
                    tracing::warn!(
                        request_id = id.as_str(),
                        endpoint = endpoint.id(),
                        error = e.for_log(),
                        suppressed,
                        "endpoint cannot take the request; trying the next candidate"
                    );
                }
                last = Some((e, endpoint.id()));
            }
            Err((e, latency_ms, _)) => {
                let report = RouteReport {
                    endpoint: Some(endpoint.id()),
                    rule: Some(route.choice.rule_index),
                    latency_ms,
                };
                return refuse(core, client, id, &e, &report, api);
            }
        }
    }
    let (mut err, endpoint) = exhausted(last, &over_budget, route.attrs);
    if past_deadline {
        err = Error::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "the request's deadline ({} ms, --request-timeout-ms) passed after {attempts} attempt(s); the last: {}",
                core.config()
                    .request_timeout
                    .unwrap_or_default()
                    .as_millis(),
                err.message
            ),
        );
    }
    err.no_retry |= attempts >= 2;
    let report = RouteReport {
        endpoint: Some(endpoint),
        rule: Some(route.choice.rule_index),
        latency_ms: elapsed_ms(req.started),
    };
    refuse(core, client, id, &err, &report, api)
}

/// Appends `endpoint:reason` to the audit's `retry_reasons`.
fn push_reason(reasons: &mut String, endpoint: &str, reason: &str) {
    if !reasons.is_empty() {
        reasons.push(',');
    }
    reasons.push_str(endpoint);
    reasons.push(':');
    reasons.push_str(reason);
}

/// A duration in whole µs.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How an attempt ended, in the one taxonomy of metrics and the audit's `retry_reasons`.
fn outcome_of(result: &Result<(Next, Outcome), Error>) -> AttemptOutcome {
    match result {
        Ok((_, o)) => match o.upstream_status {
            Some(_) if o.context_overflow => AttemptOutcome::ContextOverflow,
            Some(status) if !(200..300).contains(&status) => AttemptOutcome::of_status(status),
            _ if o.client_gone => AttemptOutcome::ClientGone,
            _ if o.error.is_some() => AttemptOutcome::Interrupted,
            _ => AttemptOutcome::Ok,
        },
        Err(e) => match e.kind {
            ErrorKind::UpstreamRefused if e.quota_exhausted => AttemptOutcome::QuotaExhausted,
            ErrorKind::UpstreamRefused => e
                .upstream_status
                .map_or(AttemptOutcome::Overloaded, AttemptOutcome::of_status),
            ErrorKind::UpstreamUnavailable => AttemptOutcome::ConnectError,
            ErrorKind::UpstreamTimeout => AttemptOutcome::TtftTimeout,
            ErrorKind::UpstreamBadResponse => AttemptOutcome::ResetAfterSend,
            ErrorKind::UpstreamCredentials => AttemptOutcome::Credentials,
            ErrorKind::ClientClosed => AttemptOutcome::ClientGone,
            _ => AttemptOutcome::NotSent,
        },
    }
}

/// What an attempt showed of its endpoint, for the endpoint's breaker.
fn seen(result: &Result<(Next, Outcome), Error>) -> Seen {
    match result {
        Ok((_, o)) => o
            .upstream_status
            .map_or(Seen::Nothing, |status| Seen::Answer {
                status,
                retry_ms: o.retry_after_ms,
            }),
        Err(e) => match (e.kind, e.upstream_status) {
            (ErrorKind::UpstreamRefused, Some(status)) => Seen::Answer {
                status,
                // An empty account does not refill in seconds: the longest cooldown.
                retry_ms: if e.quota_exhausted {
                    Some(crate::control::breaker::MAX_COOLDOWN_MS)
                } else {
                    e.upstream_retry_ms.map(i64::from)
                },
            },
            (
                ErrorKind::UpstreamUnavailable
                | ErrorKind::UpstreamTimeout
                | ErrorKind::UpstreamBadResponse,
                _,
            ) => Seen::Broken,
            _ => Seen::Nothing,
        },
    }
}

/// Writes the request in `to`'s dialect; `dropped` gets the fields left out, comma-separated.
fn write_request(
    ir: &ir::Request<'_>,
    to: Wire,
    model: &str,
    limit: Limit,
    out: &mut Vec<u8>,
    dropped: &mut String,
) -> Result<(), Refusal> {
    let mut left_out: Vec<Cow<'static, str>> = Vec::new();
    match to {
        Wire::Anthropic => anthropic::write::write(ir, model, out, &mut left_out)?,
        Wire::OpenAi => openai::write::write(ir, model, limit, out, &mut left_out)?,
        Wire::Bedrock => crate::dialect::bedrock::write::write(ir, model, out, &mut left_out)?,
        Wire::BedrockInvoke => anthropic::write::write_invoke(ir, out, &mut left_out)?,
        Wire::Gemini => crate::dialect::gemini::write::write(ir, out, &mut left_out)?,
        Wire::VertexAnthropic => anthropic::write::write_vertex(ir, out, &mut left_out)?,
    }
    let names = ir
        .dropped
        .iter()
        .map(|d| &**d)
        .chain(left_out.iter().map(|d| &**d));
    for name in names {
        if dropped.split(", ").any(|d| d == name) {
            continue;
        }
        if !dropped.is_empty() {
            dropped.push_str(", ");
        }
        // A header value: field names are printable ASCII, anything else is left out.
        dropped.extend(name.chars().filter(|c| c.is_ascii_graphic()));
    }
    Ok(())
}

/// The error for a request the dialect layer refused; `at`: the endpoint and its dialect,
/// when the refusal is about translating for it.
fn refusal_error(r: &Refusal, at: Option<(&str, Wire)>) -> Error {
    let mut err = match at {
        Some((endpoint, wire)) if !r.invalid => Error::new(
            ErrorKind::Untranslatable,
            format!(
                "{} (the policy chose endpoint `{endpoint}`, which speaks the {} API)",
                r.message,
                wire.as_str()
            ),
        ),
        _ => Error::new(ErrorKind::InvalidBody, r.message.clone()),
    };
    if !r.param.is_empty() {
        err.param = Some(r.param);
    }
    err
}

/// The error for an API an endpoint's dialect does not have.
fn unserved(api: Api, endpoint: &str, kind: &str) -> Error {
    match api {
        Api::CountTokens => Error::new(
            ErrorKind::ApiNotServed,
            format!(
                "token counting (`/v1/messages/count_tokens`) is served by Anthropic endpoints; the policy chose endpoint `{endpoint}` of type `{kind}`"
            ),
        ),
        _ => Error::new(
            ErrorKind::Untranslatable,
            format!(
                "embeddings are served by OpenAI-compatible and Azure OpenAI endpoints; the policy chose endpoint `{endpoint}` of type `{kind}`, which has no embeddings API"
            ),
        )
        .with_param("model"),
    }
}

/// The body an endpoint gets: the client's unchanged, or (in `scratch`) with `model`
/// replaced by `send_model` and the usage edit applied.
fn endpoint_body<'a>(
    body: &'a [u8],
    fields: &body::Fields<'_>,
    send_model: &str,
    usage_edit: Option<&(std::ops::Range<usize>, std::borrow::Cow<'static, [u8]>)>,
    scratch: &'a mut (
        crate::runtime::recycle::Recycled<'_, Vec<u8>>,
        crate::runtime::recycle::Recycled<'_, Vec<u8>>,
    ),
) -> &'a [u8] {
    let model = fields.model.as_ref();
    let rewrite_model = model.filter(|m| m.value != send_model);
    if rewrite_model.is_none() && usage_edit.is_none() {
        return body;
    }
    let (token, out) = scratch;
    token.clear();
    out.clear();
    let mut edits: [(std::ops::Range<usize>, &[u8]); 2] = [(0..0, &[]), (0..0, &[])];
    let mut n = 0;
    if let Some(m) = rewrite_model {
        body::write_json_string(token, send_model);
        edits[0] = (m.span.clone(), token.as_slice());
        n += 1;
    }
    if let Some((range, bytes)) = usage_edit {
        edits[n] = (range.clone(), bytes.as_ref());
        n += 1;
    }
    body::apply_edits(body, edits.get_mut(..n).unwrap_or_default(), out);
    out.as_slice()
}

/// One candidate's answer: in-process, forwarded, or why it cannot take the request.
async fn attempt(
    x: &Exchange<'_>,
    plan: &Plan,
    client: &mut Client<'_>,
) -> Result<(Next, Outcome), Error> {
    match plan {
        Plan::Mock => Ok(crate::upstream::mock::respond(x, client).await),
        Plan::Broken(why) => Err(Error::new(
            ErrorKind::UpstreamCredentials,
            format!(
                "endpoint `{}` is misconfigured on this router (its operator finds why in the router's log)",
                x.endpoint
            ),
        )
        .with_internal(why.as_str())),
        Plan::Forward(up) => crate::upstream::forward::forward(x, up, client).await,
    }
}

/// The answer when no candidate took the request: the last failure, or that none fit the
/// cost budget.
fn exhausted<'e>(
    last: Option<(Error, &'e str)>,
    over_budget: &[String],
    attrs: &Attrs<'_>,
) -> (Error, &'e str) {
    if let Some(failed) = last {
        return failed;
    }
    if over_budget.is_empty() {
        return (
            Error::new(ErrorKind::Internal, "no endpoint candidate was tried"),
            "none",
        );
    }
    let budget = attrs.cost_budget.unwrap_or_default();
    (
        Error::new(
            ErrorKind::CostBudgetExceeded,
            format!(
                "no endpoint fits `X-Cost-Budget-Usd: {budget}`: worst-case cost (estimated prompt plus `max_tokens`) at {}",
                over_budget.join(", ")
            ),
        ),
        "none",
    )
}
