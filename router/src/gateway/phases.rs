//! The request phases of every model API — OpenAI chat (`/v1/chat/completions`,
//! `/v1/route`), Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) and OpenAI
//! embeddings (`/v1/embeddings`) — in order, each a small function over the request and the
//! audit [`Draft`] it fills in:
//!
//! 1. [`identify`] — the key and the routing headers ([`Attrs::from_headers`]); the key
//!    fixes the tenant and the role. Bad values: 400 naming the header; bad keys: 401/403;
//! 2. [`admit`] — the tenant is declared (for a key) and within its limits and budgets: 429;
//! 3. [`body_fields`] — the body scanned once ([`body::scan`]): not JSON, or without the
//!    fields its API requires (`model`; `messages`; `max_tokens` for Messages; `input` for
//!    embeddings): 400 naming the field, nothing sent;
//! 4. [`decide`] — the table's decision ([`route::choose`]): deny 403 naming the rule; model
//!    not served 400;
//! 5. [`answer::candidates`] — each candidate endpoint in order, with the body it gets (the
//!    client's, or translated into the endpoint's dialect), answered in-process or forwarded.
//!
//! [`serve`] wraps them: it owes the request's audit record from the start
//! ([`crate::audit::gate`]) and builds it from the draft and the answer's [`Outcome`]. Every
//! error is answered in the dialect of the request's path.

use crate::audit::{self, Record};
use crate::dialect::Api;
use crate::gateway::answer::{self, Routed};
use crate::gateway::body;
use crate::gateway::draft::{Draft, refuse, requested};
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{RequestId, RouteReport, elapsed_ms};
use crate::gateway::route::{self, Attrs};
use crate::runtime::client::{Client, Next, Request};
use crate::runtime::core::Core;
use crate::upstream::exchange::Outcome;

/// Routes and answers a model API request, then appends its audit record.
pub async fn serve<'r>(
    core: &Core,
    req: &'r Request<'r>,
    client: &mut Client<'_>,
    api: Api,
) -> Next {
    let id = crate::gateway::reply::request_id(core, req);
    // Owed from here: whatever happens below, this request leaves a record or is counted.
    let due = core.audit_gate().map(crate::audit::gate::Gate::begin);
    let mut draft = Draft::new(api);
    draft.trace = Some(
        req.header(b"traceparent")
            .and_then(crate::observe::trace::Context::parse)
            .unwrap_or_else(|| {
                let hi = u128::from(core.next_request_number());
                let lo = u128::from(core.next_request_number().rotate_left(32));
                crate::observe::trace::Context::start((hi << 64) | lo)
            }),
    );
    let exporting = core.shared.tracer.is_some() && draft.trace.is_some_and(|t| t.flags & 1 == 1);
    draft.span = exporting.then(|| {
        crate::observe::trace::span_id(crate::control::balance::mix(core.next_request_number()))
    });
    let strict = core.config().audit_strict;
    let (mut next, outcome) = match &core.audit {
        Some(sink) if strict && !sink.healthy() => {
            let err = Error::new(
                ErrorKind::AuditUnavailable,
                "the audit trail cannot be written on this node (strict durability); retry later",
            );
            refuse(core, client, id, &err, &RouteReport::none(req.started), api)
        }
        _ => phases(core, req, client, id, &mut draft).await,
    };
    let limit = draft.limit.take();
    let measured = crate::observe::record::Measured {
        first_byte_us: outcome.first_byte_us,
        ..draft.measured
    };
    let (trace, span) = (draft.trace, draft.span);
    // The request's end: its latency for the record, the metrics and the span.
    let took = std::time::Instant::now().saturating_duration_since(req.started);
    let record = record(req, id, draft, outcome, took);
    if let (Some(tracer), Some(trace), Some(span)) = (&core.shared.tracer, trace, span) {
        let end = crate::observe::export::now_unix_ns();
        let took = u64::try_from(took.as_nanos()).unwrap_or(0);
        let path = String::from_utf8_lossy(req.head.path(req.buf));
        tracer.send(crate::observe::spans::request(
            &trace,
            span,
            &path,
            end.saturating_sub(took),
            end,
            &record,
        ));
    }
    crate::observe::record::request(
        core,
        &record,
        &measured,
        u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    );
    if let Some((state, tpm)) = limit {
        let tokens = record
            .tokens_in
            .unwrap_or(0)
            .saturating_add(record.tokens_out.unwrap_or(0));
        state.charge(
            tpm,
            u64::try_from(tokens).unwrap_or(0),
            record
                .cost_micros
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(0),
            core.shared.limits.now_ns(),
            crate::clock::now_ms(),
        );
    }
    let unauthenticated = record.status == 401;
    match due {
        Some(due) if strict => {
            // The end of the response waits for the record to be durable.
            let durable = match due.finish_durable(record) {
                Some(ack) => ack.await.unwrap_or(false),
                None => false,
            };
            if !durable {
                if let Some(suppressed) =
                    crate::runtime::logging::allow(&crate::runtime::logging::NOT_DURABLE)
                {
                    tracing::error!(
                        request_id = id.as_str(),
                        suppressed,
                        "audit record not durable (strict): response withheld"
                    );
                }
                client.out.clear();
                if client.sent {
                    return Next::Close;
                }
                let err = Error::new(
                    ErrorKind::AuditUnavailable,
                    "the audit record of this request could not be made durable (strict durability); the request may have reached the upstream",
                );
                crate::gateway::reply::error_with_id(
                    core,
                    client,
                    &id,
                    &err,
                    &RouteReport::none(req.started),
                    api.wire(),
                );
                next = Next::Close;
            }
            if !client.out.is_empty() && client.flush().await.is_err() {
                next = Next::Close;
            }
        }
        due => {
            if !client.out.is_empty() && client.flush().await.is_err() {
                next = Next::Close;
            }
            match due {
                Some(due) if unauthenticated && !core.audit_unauthenticated() => due.skip(),
                Some(due) => due.finish(record),
                None => {}
            }
        }
    }
    next
}

/// The audit record of a finished request that took `took`.
fn record(
    req: &Request<'_>,
    id: RequestId<'_>,
    d: Draft,
    o: Outcome,
    took: std::time::Duration,
) -> Record {
    let latency_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    let answered = (200..300).contains(&o.status) && d.endpoint_id.is_some();
    let (tokens_in, tokens_out, estimated) = match o.usage {
        Some(u) => (Some(u.input), Some(u.output), false),
        // No usage block: estimated from the text of the prompt and of the answer (README,
        // "Token counts"), and flagged as an estimate.
        None if answered => (
            Some(crate::upstream::meter::estimate_prompt_tokens(req.body)),
            Some(o.estimated_completion.unwrap_or_else(|| {
                o.response_bytes
                    .div_ceil(crate::upstream::meter::CHARS_PER_TOKEN)
            })),
            true,
        ),
        None => (None, None, false),
    };
    let cost_micros = match (d.pricing, tokens_in, tokens_out) {
        (Some((input, output)), Some(i), Some(out)) => {
            let micros = u128::from(i)
                .saturating_mul(u128::from(input.0))
                .saturating_add(u128::from(out).saturating_mul(u128::from(output.0)));
            Some(i64::try_from(micros.saturating_add(500) / 1000).unwrap_or(i64::MAX))
        }
        _ => None,
    };
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Record {
        ts_ms: crate::clock::now_ms() - signed(latency_ms),
        request_id: audit::text(id.as_bytes()),
        tenant: d.tenant,
        tenant_claimed: d.tenant_claimed,
        data_class: d.data_class,
        user_role: d.user_role,
        rule_index: d.rule_index.and_then(|r| i32::try_from(r).ok()),
        rule_name: d.rule_name,
        endpoint_id: d.endpoint_id,
        model: d.model,
        status: i32::from(o.status),
        latency_ms: signed(latency_ms),
        upstream_latency_ms: o.upstream_latency_ms.map(signed),
        tokens_in: tokens_in.map(signed),
        tokens_out: tokens_out.map(signed),
        tokens_estimated: estimated,
        cost_micros,
        stream: d.stream,
        error: o.error,
        request_bytes: signed(req.body.len() as u64),
        response_bytes: signed(o.response_bytes),
        upstream_status: o.upstream_status.map(i32::from),
        fallback_from: d.fallback_from,
        key_id: d.key_id,
        api: Some(d.api.as_str().to_owned()),
        upstream_model: d.upstream_model,
        cache_read_tokens: o.usage.map(|u| signed(u.cache_read)),
        cache_write_tokens: o.usage.map(|u| signed(u.cache_write)),
        stop_reason: o.stop_reason.map(std::borrow::Cow::into_owned),
        attempts: i32::try_from(d.attempts).ok(),
        retry_reasons: (!d.retry_reasons.is_empty()).then_some(d.retry_reasons),
        trace_id: d.trace.map(|t| t.id()),
        limit_mode: d.limit_mode,
        requested_model: d.requested_model,
        latency_budget_ms: d.latency_budget_ms.map(signed),
        cost_budget_micros: d.cost_budget.map(|m| signed(m.0)),
        cost_cap_per_1k_micros: d.cost_cap_per_1k.map(|m| signed(m.0)),
        policy_revision: d.policy_revision.map(signed),
    }
}

async fn phases<'r>(
    core: &Core,
    req: &'r Request<'r>,
    client: &mut Client<'_>,
    id: RequestId<'r>,
    draft: &mut Draft,
) -> (Next, Outcome) {
    let none = RouteReport::none(req.started);
    let keys = core.keys();
    let loaded = core.table();
    let table = loaded.table();
    let before_decision = identify(core, req, &keys, draft).and_then(|(attrs, who)| {
        admit(core, table, &attrs, who, draft)?;
        Ok((attrs, body_fields(req, draft)?))
    });
    let api = draft.api;
    let (attrs, fields) = match before_decision {
        Ok(v) => v,
        Err(e) => return refuse(core, client, id, &e, &none, api),
    };
    if let Err(e) = fleet_admit(core, table, draft).await {
        return refuse(core, client, id, &e, &none, api);
    }
    let choice = match decide(table, req, &attrs, &fields, draft) {
        Ok(c) => c,
        Err(refusal) => {
            let report = RouteReport {
                endpoint: None,
                rule: refusal.rule,
                latency_ms: elapsed_ms(req.started),
            };
            return refuse(core, client, id, &refusal.error, &report, api);
        }
    };
    let route = Routed {
        loaded: &loaded,
        choice: &choice,
        attrs: &attrs,
        fields: &fields,
    };
    answer::candidates(core, req, client, id, draft, &route).await
}

/// Phase 1, who is asking: the key (when authentication is on) and the routing headers. A
/// key fixes the tenant and the role: headers may repeat them, never change them.
fn identify<'a, 'k: 'a, 'r: 'a>(
    core: &Core,
    req: &Request<'r>,
    keys: &'k crate::control::keys::KeySet,
    draft: &mut Draft,
) -> Result<(Attrs<'a>, Option<&'k crate::control::keys::KeyRecord>), Error> {
    let who = crate::gateway::identity::principal(core, req, keys)?;
    let mut attrs = Attrs::from_headers(req.buf, req.headers)?;
    let Some(key) = who else {
        return Ok((attrs, None));
    };
    draft.key_id = Some(key.id.clone());
    if let Some(claimed) = attrs.tenant
        && claimed != key.tenant.as_bytes()
    {
        draft.tenant_claimed = Some(audit::text(claimed));
        return Err(Error::new(
            ErrorKind::TenantMismatch,
            format!(
                "this API key belongs to tenant `{}`; `X-Tenant: {}` names another tenant",
                key.tenant,
                String::from_utf8_lossy(claimed)
            ),
        ));
    }
    attrs.tenant = Some(key.tenant.as_bytes());
    // A key without a role has none, unless it was issued to let its requests say their
    // role (`assert_roles`).
    match (&key.role, attrs.user_role) {
        (Some(role), Some(claimed)) if claimed != role.as_bytes() => Err(Error::new(
            ErrorKind::TenantMismatch,
            format!(
                "this API key has role `{role}`; `X-User-Role: {}` names another role",
                String::from_utf8_lossy(claimed)
            ),
        )),
        (Some(role), _) => {
            attrs.user_role = Some(role.as_bytes());
            Ok((attrs, who))
        }
        (None, Some(claimed)) if !key.assert_roles => Err(Error::new(
            ErrorKind::RoleNotAssertable,
            format!(
                "this API key has no role, so `X-User-Role: {}` cannot give it one; issue a key with that role (or with `assert_roles: true` for a front end that vouches for its users' roles)",
                String::from_utf8_lossy(claimed)
            ),
        )),
        (None, _) => Ok((attrs, who)),
    }
}

/// Phase 2, may the tenant send now: declared (for a keyed request), within its rate limits
/// and daily budgets — checked before any other work.
fn admit(
    core: &Core,
    table: &switchyard_table::Table<'_>,
    attrs: &Attrs<'_>,
    who: Option<&crate::control::keys::KeyRecord>,
    draft: &mut Draft,
) -> Result<(), Error> {
    let tenant = attrs
        .tenant
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| table.tenant_by_id(t));
    draft.tenant = tenant.map(|t| t.id().to_owned());
    draft.data_class = attrs.data_class.map(audit::text);
    draft.user_role = attrs.user_role.map(audit::text);
    draft.latency_budget_ms = attrs.latency_budget_ms;
    draft.cost_budget = attrs.cost_budget;
    let Some(t) = tenant else {
        if let Some(key) = who {
            // Removed from the policy after the key was issued: an undeclared tenant has no
            // allowlist or limits, so serving it would widen the key's access.
            draft.tenant_claimed = Some(key.tenant.clone());
            return Err(Error::new(
                ErrorKind::TenantUnknown,
                format!(
                    "this API key belongs to tenant `{}`, which the serving policy does not declare",
                    key.tenant
                ),
            ));
        }
        draft.tenant_claimed = attrs.tenant.map(audit::text);
        return Ok(());
    };
    let limited = t.rate_limit_rpm() > 0
        || t.rate_limit_tpm() > 0
        || t.daily_token_budget() > 0
        || t.daily_budget().0 > 0;
    if limited {
        let state = core.tenant_state(t.id());
        state
            .admit(&t, core.shared.limits.now_ns(), crate::clock::now_ms())
            .inspect_err(|e| {
                if let Some(limit) = e.limit {
                    crate::observe::record::limited(core, t.id(), limit.as_str());
                }
            })?;
        draft.limit = Some((state, t.rate_limit_tpm()));
        draft.limit_mode = Some(core.shared.fleet.as_ref().map_or("local", |f| f.mode()));
    }
    Ok(())
}

/// Phase 2 across the fleet (`--redis`): the tenant's share of its fleet-wide rate limits,
/// after this host's own limits admitted the request.
async fn fleet_admit(
    core: &Core,
    table: &switchyard_table::Table<'_>,
    draft: &mut Draft,
) -> Result<(), Error> {
    let (Some(fleet), Some((state, _)), Some(t)) = (
        &core.shared.fleet,
        &draft.limit,
        draft
            .tenant
            .as_deref()
            .and_then(|id| table.tenant_by_id(id)),
    ) else {
        return Ok(());
    };
    let state = std::sync::Arc::clone(state);
    let (rpm, tpm) = (u64::from(t.rate_limit_rpm()), t.rate_limit_tpm());
    let decided = fleet
        .admit(&state, t.id(), rpm, tpm, crate::clock::now_ms())
        .await
        .inspect_err(|e| {
            if let Some(limit) = e.limit {
                crate::observe::record::limited(core, t.id(), limit.as_str());
            }
        });
    // (The mode the request was decided in: a wait may have found Redis gone.)
    draft.limit_mode = Some(fleet.mode());
    decided
}

/// Phase 3, what is asked: the body, scanned once (well-formed JSON and the fields the API
/// requires).
fn body_fields<'r>(req: &Request<'r>, draft: &mut Draft) -> Result<body::Fields<'r>, Error> {
    if let Some(coding) = req.header(b"content-encoding")
        && !coding.eq_ignore_ascii_case(b"identity")
    {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "request bodies with `Content-Encoding: {}` are not accepted; send the JSON uncompressed",
                String::from_utf8_lossy(coding)
            ),
        ));
    }
    let fields = body::scan(req.body).map_err(|e| {
        let mut err = Error::new(ErrorKind::InvalidBody, e.to_string());
        err.param = e.param();
        err
    })?;
    draft.stream = fields.stream && draft.api != Api::CountTokens;
    let api = draft.api;
    match api {
        Api::Embeddings if !fields.has_input => {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "request body has no `input`: send the text (or texts) to embed",
            )
            .with_param("input"));
        }
        Api::Embeddings => {}
        _ if !fields.has_messages => {
            return Err(Error::new(
                ErrorKind::MissingMessages,
                "request body has no `messages` array",
            )
            .with_param("messages"));
        }
        Api::Messages | Api::CountTokens if fields.messages_empty => {
            return Err(Error::new(
                ErrorKind::MissingMessages,
                "`messages` is empty: send at least one message",
            )
            .with_param("messages"));
        }
        Api::Messages if fields.max_tokens.is_none() => {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "`max_tokens` is required: the most tokens to generate",
            )
            .with_param("max_tokens"));
        }
        _ => {}
    }
    let Some(model) = &fields.model else {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "request body has no `model`: send a model id, or \"auto\" to let the policy choose",
        )
        .with_param("model"));
    };
    let model = audit::text(model.value.as_bytes());
    draft.requested_model = Some(model.clone());
    draft.model = Some(model);
    Ok(fields)
}

/// Phase 4, where it may go: the table's decision and its candidate endpoints.
fn decide<'t>(
    table: &'t switchyard_table::Table<'_>,
    req: &Request<'_>,
    attrs: &Attrs<'_>,
    fields: &body::Fields<'_>,
    draft: &mut Draft,
) -> Result<route::Choice<'t>, route::Refusal> {
    let requested = requested(fields);
    let treq = route::attributes(table, attrs, fields, requested, req.body.len());
    draft.policy_revision = Some(table.revision());
    // Recorded whether or not this table reads it, so a replay under a policy that does
    // can evaluate it.
    draft.cost_cap_per_1k = treq.cost_cap_per_1k.or_else(|| {
        attrs
            .cost_budget
            .map(|b| route::cost_cap_per_1k(b, req.body.len(), fields.max_tokens))
    });
    match route::choose(table, &treq, requested) {
        Ok(choice) => {
            draft.rule_index = Some(choice.rule_index);
            draft.rule_name = Some(choice.rule_name.to_owned());
            Ok(choice)
        }
        Err(refusal) => {
            draft.rule_index = refusal.rule;
            draft.rule_name = refusal
                .rule
                .and_then(|r| table.rule(r).or(Some(table.default_rule())))
                .map(|r| r.name().to_owned());
            Err(refusal)
        }
    }
}
