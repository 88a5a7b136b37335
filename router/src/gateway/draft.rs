//! What the request phases carry from one to the next: the audit record's [`Draft`], filled
//! in as the phases learn it, and the two helpers every phase answers with.

use switchyard_table::Micros;

use crate::dialect::Api;
use crate::gateway::body;
use crate::gateway::error::Error;
use crate::gateway::respond::{RequestId, RouteReport};
use crate::runtime::client::{Client, Next};
use crate::runtime::core::Core;
use crate::upstream::exchange::Outcome;

/// The parts of the audit record known before the answer.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) api: Api,
    pub(super) tenant: Option<String>,
    pub(super) tenant_claimed: Option<String>,
    pub(super) data_class: Option<String>,
    pub(super) user_role: Option<String>,
    pub(super) rule_index: Option<u32>,
    pub(super) rule_name: Option<String>,
    pub(super) endpoint_id: Option<String>,
    pub(super) model: Option<String>,
    /// The model as the client sent it (`model` becomes the resolved one).
    pub(super) requested_model: Option<String>,
    /// The request's budgets as sent, and its `cost_cap_per_1k` as evaluated.
    pub(super) latency_budget_ms: Option<u64>,
    pub(super) cost_budget: Option<Micros>,
    pub(super) cost_cap_per_1k: Option<Micros>,
    /// The revision of the table that decided the request.
    pub(super) policy_revision: Option<u64>,
    /// The model id sent upstream.
    pub(super) upstream_model: Option<String>,
    pub(super) stream: bool,
    pub(super) fallback_from: Option<String>,
    pub(super) key_id: Option<String>,
    pub(super) pricing: Option<(Micros, Micros)>,
    /// The tenant's limit counters and `rate_limit_tpm`, charged when the request ends.
    pub(super) limit: Option<(std::sync::Arc<crate::control::limits::TenantState>, u64)>,
    /// How the tenant's limits were enforced (the audit's `limit_mode`).
    pub(super) limit_mode: Option<&'static str>,
    /// Upstream attempts made.
    pub(super) attempts: u32,
    /// `endpoint:outcome` of each candidate the request moved on from, comma-separated.
    pub(super) retry_reasons: String,
    /// The trace the request runs under.
    pub(super) trace: Option<crate::observe::trace::Context>,
    /// The request's own span, when its spans are exported (`--otlp-endpoint`, sampled).
    pub(super) span: Option<[u8; 8]>,
    /// What the metrics need beside the record.
    pub(super) measured: crate::observe::record::Measured,
}

impl Draft {
    pub(super) fn new(api: Api) -> Self {
        Self {
            api,
            tenant: None,
            tenant_claimed: None,
            data_class: None,
            user_role: None,
            rule_index: None,
            rule_name: None,
            endpoint_id: None,
            model: None,
            upstream_model: None,
            requested_model: None,
            latency_budget_ms: None,
            cost_budget: None,
            cost_cap_per_1k: None,
            policy_revision: None,
            stream: false,
            fallback_from: None,
            key_id: None,
            pricing: None,
            limit: None,
            limit_mode: None,
            attempts: 0,
            retry_reasons: String::new(),
            trace: None,
            span: None,
            measured: crate::observe::record::Measured {
                operation: crate::observe::record::operation_name(api),
                ..Default::default()
            },
        }
    }
}

/// Answers with an error (in `api`'s dialect) and describes it for the audit record.
pub(super) fn refuse(
    core: &Core,
    client: &mut Client<'_>,
    id: RequestId<'_>,
    err: &Error,
    route: &RouteReport<'_>,
    api: Api,
) -> (Next, Outcome) {
    let response_bytes =
        crate::gateway::reply::error_with_id(core, client, &id, err, route, api.wire());
    (
        Next::KeepAlive,
        Outcome {
            status: err.kind.status(),
            response_bytes,
            error: Some(err.message.to_string()),
            ..Outcome::default()
        },
    )
}

/// The requested model (the body phase made sure there is one).
pub(super) fn requested<'a>(fields: &'a body::Fields<'_>) -> &'a str {
    fields.model.as_ref().map_or("", |m| &m.value)
}
