//! Routing: request attributes in, a decision and an ordered list of endpoint candidates out.
//!
//! Pure functions over the table and the parsed request; no I/O. The phases are:
//! 1. [`Attrs::from_headers`]: the routing headers, each at most once, parsed and checked;
//! 2. [`attributes`]: the table's [`Request`], reading only the fields the table uses;
//! 3. [`choose`]: evaluate, then resolve `auto` or check a pinned model against each candidate
//!    (the rule's endpoint, then its fallbacks) and the tenant's allowlist.

use switchyard_table::{Action, Field, Micros, Request, RuleView, Table, TenantView};

use crate::gateway::body::Fields;
use crate::gateway::error::{Error, ErrorKind};
use crate::http::HeaderIdx;

/// Worst-case completion length assumed when a request sets no `max_tokens`, for the
/// `cost_cap_per_1k` attribute.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Prompt tokens are estimated as body bytes divided by this (a common heuristic for
/// English text and JSON overhead; documented in the README).
pub const BYTES_PER_TOKEN: u64 = 4;

/// The routing headers of a request, borrowed from the connection buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attrs<'b> {
    pub tenant: Option<&'b [u8]>,
    pub data_class: Option<&'b [u8]>,
    pub user_role: Option<&'b [u8]>,
    pub latency_budget_ms: Option<u64>,
    pub cost_budget: Option<Micros>,
    pub request_id: Option<&'b [u8]>,
}

/// Longest `X-Request-Id` echoed; longer ones are refused.
pub const MAX_REQUEST_ID: usize = 200;

impl<'b> Attrs<'b> {
    /// Reads the routing headers. Each may appear once: two `X-Tenant` headers are refused
    /// rather than resolved, since any choice between them is a way to confuse the policy.
    pub fn from_headers(buf: &'b [u8], headers: &[HeaderIdx]) -> Result<Self, Error> {
        let mut a = Attrs::default();
        let mut latency = None;
        let mut cost = None;
        for h in headers {
            let name = h.name(buf);
            if name.len() < 8 || !name[..2].eq_ignore_ascii_case(b"x-") {
                continue;
            }
            let slot = match &name[2..] {
                n if n.eq_ignore_ascii_case(b"tenant") => &mut a.tenant,
                n if n.eq_ignore_ascii_case(b"data-class") => &mut a.data_class,
                n if n.eq_ignore_ascii_case(b"user-role") => &mut a.user_role,
                n if n.eq_ignore_ascii_case(b"request-id") => &mut a.request_id,
                n if n.eq_ignore_ascii_case(b"latency-budget-ms") => &mut latency,
                n if n.eq_ignore_ascii_case(b"cost-budget-usd") => &mut cost,
                _ => continue,
            };
            if slot.is_some() {
                return Err(Error::new(
                    ErrorKind::BadHeader,
                    format!(
                        "header `{}` appears more than once",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
            let value = h.value(buf);
            // An empty value is the attribute not given.
            *slot = Some(value).filter(|v| !v.is_empty());
        }
        if let Some(v) = latency {
            let ms = std::str::from_utf8(v)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            a.latency_budget_ms = Some(ms.ok_or_else(|| {
                Error::new(
                    ErrorKind::BadHeader,
                    format!(
                        "`X-Latency-Budget-Ms` must be a whole number of milliseconds, found `{}`",
                        String::from_utf8_lossy(v)
                    ),
                )
            })?);
        }
        if let Some(v) = cost {
            let usd = std::str::from_utf8(v)
                .ok()
                .and_then(|s| Micros::parse(s).ok());
            a.cost_budget = Some(usd.ok_or_else(|| {
                Error::new(
                    ErrorKind::BadHeader,
                    format!(
                        "`X-Cost-Budget-Usd` must be a non-negative USD amount with at most 6 decimals, found `{}`",
                        String::from_utf8_lossy(v)
                    ),
                )
            })?);
        }
        if let Some(id) = a.request_id
            && (id.len() > MAX_REQUEST_ID || !id.iter().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::new(
                ErrorKind::BadHeader,
                format!("`X-Request-Id` must be at most {MAX_REQUEST_ID} visible ASCII characters"),
            ));
        }
        Ok(a)
    }
}

/// `cost_cap_per_1k`: the request's budget spread over its worst-case token count
/// (estimated prompt tokens plus `max_tokens`), in micro-dollars per 1,000 tokens.
#[must_use]
pub fn cost_cap_per_1k(budget: Micros, body_len: usize, max_tokens: Option<u64>) -> Micros {
    let prompt = (body_len as u64).div_ceil(BYTES_PER_TOKEN);
    let worst = prompt
        .saturating_add(max_tokens.unwrap_or(DEFAULT_MAX_TOKENS))
        .max(1);
    let per_1k = u128::from(budget.0) * 1000 / u128::from(worst);
    Micros(u64::try_from(per_1k).unwrap_or(u64::MAX))
}

/// Worst-case cost of a request at an endpoint's prices: estimated prompt tokens at the input
/// price plus `max_tokens` (4096 when absent) at the output price.
#[must_use]
pub fn worst_case_cost(
    body_len: usize,
    max_tokens: Option<u64>,
    input_per_1k: Micros,
    output_per_1k: Micros,
) -> Micros {
    let prompt = u128::from((body_len as u64).div_ceil(BYTES_PER_TOKEN));
    let completion = u128::from(max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
    let micros = (prompt * u128::from(input_per_1k.0) + completion * u128::from(output_per_1k.0))
        .div_ceil(1000);
    Micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// The table request for these attributes, reading only what the table uses.
#[must_use]
pub fn attributes<'b>(
    table: &Table<'_>,
    attrs: &Attrs<'b>,
    fields: &Fields<'b>,
    model: &'b str,
    body_len: usize,
) -> Request<'b> {
    let cost = if table.reads(Field::CostCapPer1k) {
        attrs
            .cost_budget
            .map(|b| cost_cap_per_1k(b, body_len, fields.max_tokens))
    } else {
        None
    };
    Request {
        tenant: attrs.tenant,
        data_class: attrs.data_class,
        user_role: attrs.user_role,
        model: Some(model.as_bytes()),
        latency_budget_ms: attrs.latency_budget_ms,
        cost_cap_per_1k: cost,
    }
}

/// Where a request goes: the decided rule, whose endpoint and fallbacks are tried in order.
#[derive(Clone, Debug)]
pub struct Choice<'t> {
    pub rule_index: u32,
    pub rule_name: &'t str,
    rule: RuleView<'t>,
    tenant: Option<TenantView<'t>>,
    auto: bool,
}

impl<'t> Choice<'t> {
    /// The rule's `resend_on_reset`: a request whose connection broke after it was sent,
    /// before any answer, may go to the next candidate.
    #[must_use]
    pub fn resend_on_reset(&self) -> bool {
        self.rule.resend_on_reset()
    }

    /// Whether endpoint `index` is a member of the rule's balanced `route_to` set (the
    /// router orders those by load before the fallbacks).
    #[must_use]
    pub fn balanced(&self, index: u32) -> bool {
        self.rule.is_balanced() && self.rule.route_set().any(|e| e.index() == index)
    }

    /// Endpoint indices to try in order, each with the model to send it: the rule's
    /// `route_to` endpoint (or each member of its balanced set) then its fallbacks, skipping those that do not serve the requested model
    /// (or, for `auto`, have no default model the tenant may use). Computed lazily, so
    /// routing allocates nothing.
    pub fn candidates<'a>(
        &'a self,
        requested: &'a str,
    ) -> impl Iterator<Item = (u32, SendModel<'t>)> + 'a {
        self.rule
            .route_set()
            .chain(self.rule.fallback())
            .filter_map(move |endpoint| {
                let model = if self.auto {
                    // The endpoint's default model, or — for a tenant not allowed that one —
                    // the first of its models the tenant may use.
                    let allowed = |m: &&str| self.tenant.as_ref().is_none_or(|t| t.allows(m));
                    match endpoint
                        .default_model()
                        .filter(allowed)
                        .or_else(|| endpoint.models().find(allowed))
                    {
                        Some(m) => SendModel::Resolved(m),
                        None => return None,
                    }
                } else if endpoint.serves(requested) {
                    SendModel::AsRequested
                } else {
                    return None;
                };
                Some((endpoint.index(), model))
            })
    }
}

/// The model to send an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendModel<'t> {
    /// The pinned model, unchanged.
    AsRequested,
    /// What `auto` resolves to at this endpoint.
    Resolved(&'t str),
}

impl<'t> SendModel<'t> {
    /// The model id, given the requested one.
    #[must_use]
    pub fn as_str<'a>(self, requested: &'a str) -> &'a str
    where
        't: 'a,
    {
        match self {
            Self::AsRequested => requested,
            Self::Resolved(m) => m,
        }
    }
}

/// Whether the request asks the policy to pick the model.
#[must_use]
pub fn is_auto(model: &str) -> bool {
    model == "auto"
}

/// A request the policy refuses, with the rule that decided it when there was one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: Error,
    pub rule: Option<u32>,
}

/// Evaluates the table and lists the endpoints that can take the request, in order.
pub fn choose<'t>(
    table: &'t Table<'_>,
    req: &Request<'_>,
    requested_model: &str,
) -> Result<Choice<'t>, Refusal> {
    choose_inner(table, req, requested_model).map_err(|(error, rule)| Refusal { error, rule })
}

fn choose_inner<'t>(
    table: &'t Table<'_>,
    req: &Request<'_>,
    requested_model: &str,
) -> Result<Choice<'t>, (Error, Option<u32>)> {
    let decision = table.evaluate(req);
    let rule = table.decided(decision);
    let rule_index = rule.index();
    let rule_name = rule.name();
    if rule.action() == Action::Deny {
        return Err((
            Error::new(
                ErrorKind::PolicyDenied,
                format!(
                    "request denied by the routing policy: {} (rule {rule_index})",
                    describe_rule(rule_name, rule.is_default())
                ),
            ),
            Some(rule_index),
        ));
    }
    let tenant = req
        .tenant
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| table.tenant_by_id(t));
    let auto = is_auto(requested_model);
    if !auto
        && let Some(t) = &tenant
        && !t.allows(requested_model)
    {
        return Err((
            Error::new(
                ErrorKind::PolicyDenied,
                format!(
                    "model `{requested_model}` is not allowed for tenant `{}`",
                    t.id()
                ),
            )
            .with_param("model"),
            Some(rule_index),
        ));
    }
    let choice = Choice {
        rule_index,
        rule_name,
        rule,
        tenant,
        auto,
    };
    if choice.candidates(requested_model).next().is_none() {
        let targets: Vec<&str> = rule
            .route_set()
            .chain(rule.fallback())
            .map(|e| e.id())
            .collect();
        let message = if auto {
            format!(
                "`model: \"auto\"` has no model to resolve to: {} (rule {rule_index}) routes to {} and none has a default model{}",
                describe_rule(rule_name, rule.is_default()),
                join_ids(&targets),
                if tenant.is_some() {
                    " allowed for this tenant"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "model `{requested_model}` is not served by the endpoints of {} (rule {rule_index}): {}",
                describe_rule(rule_name, rule.is_default()),
                join_ids(&targets)
            )
        };
        return Err((
            Error::new(ErrorKind::ModelNotServed, message).with_param("model"),
            Some(rule_index),
        ));
    }
    Ok(choice)
}

fn describe_rule(name: &str, is_default: bool) -> String {
    if is_default {
        "the default rule".to_owned()
    } else if name.is_empty() {
        "an unnamed rule".to_owned()
    } else {
        format!("rule `{name}`")
    }
}

fn join_ids(ids: &[&str]) -> String {
    ids.iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn headers(raw: &[u8]) -> Vec<HeaderIdx> {
        let mut out = Vec::new();
        crate::http::request::parse_head(raw, &Default::default(), &mut out)
            .unwrap()
            .unwrap();
        out
    }

    #[test]
    fn routing_headers() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nx-tenant: acme\r\nX-Latency-Budget-Ms: 250\r\nX-Cost-Budget-Usd: 0.01\r\nX-Data-Class:\r\n\r\n";
        let a = Attrs::from_headers(raw, &headers(raw)).unwrap();
        assert_eq!(a.tenant, Some(&b"acme"[..]));
        assert_eq!(a.latency_budget_ms, Some(250));
        assert_eq!(a.cost_budget, Some(Micros(10_000)));
        assert_eq!(a.data_class, None);
    }

    #[test]
    fn bad_routing_headers() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-Tenant: a\r\nx-tenant: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Latency-Budget-Ms: -5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Latency-Budget-Ms: 1e3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Cost-Budget-Usd: lots\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Cost-Budget-Usd: 0.0000001\r\n\r\n",
        ] {
            let e = Attrs::from_headers(raw, &headers(raw)).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::BadHeader,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn cost_cap() {
        // $0.01 over (400/4 + 900) = 1000 tokens is $0.01 per 1k.
        assert_eq!(
            cost_cap_per_1k(Micros(10_000), 400, Some(900)),
            Micros(10_000)
        );
        assert_eq!(
            cost_cap_per_1k(Micros(10_000), 0, Some(0)),
            Micros(10_000_000)
        );
    }
}
