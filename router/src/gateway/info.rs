//! What the router says about itself: `GET /v1/models` (the models a tenant may use);
//! `GET /metrics` is [`crate::observe::exposition`].

use crate::dialect::Wire;
use crate::runtime::core::Core;

/// `GET /v1/models`: every model an endpoint of the table lists (or resolves `auto` to) that
/// the tenant may use (all of them for no tenant, or one without an allowlist). A key's
/// tenant (`keyed`) that the table does not declare may use none. OpenAI's list shape, or
/// Anthropic's for an Anthropic client (`wire`).
pub fn models(core: &Core, tenant: Option<&str>, keyed: bool, wire: Wire) -> serde_json::Value {
    let loaded = core.table();
    let t = loaded.table();
    let declared = tenant.and_then(|id| t.tenant_by_id(id));
    let mut seen = std::collections::BTreeMap::new();
    if keyed && declared.is_none() {
        return model_list(seen, wire);
    }
    let tenant = declared;
    for e in t.endpoints() {
        for m in e.models().chain(e.default_model()) {
            if tenant.as_ref().is_some_and(|t| !t.allows(m)) {
                continue;
            }
            seen.entry(m.to_owned())
                .or_insert_with(|| e.id().to_owned());
        }
    }
    model_list(seen, wire)
}

/// Models (by id, with the endpoint that serves each) as a list in `wire`'s shape.
fn model_list(models: std::collections::BTreeMap<String, String>, wire: Wire) -> serde_json::Value {
    match wire {
        // (No client speaks Bedrock.)
        Wire::OpenAi
        | Wire::Bedrock
        | Wire::BedrockInvoke
        | Wire::Gemini
        | Wire::VertexAnthropic => {
            let data: Vec<serde_json::Value> = models
                .into_iter()
                .map(|(id, owner)| {
                    serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
                })
                .collect();
            serde_json::json!({ "object": "list", "data": data })
        }
        Wire::Anthropic => {
            let first = models.keys().next().cloned();
            let last = models.keys().next_back().cloned();
            let data: Vec<serde_json::Value> = models
                .into_keys()
                .map(|id| {
                    serde_json::json!({
                        "type": "model",
                        "id": id,
                        "display_name": id,
                        "created_at": "1970-01-01T00:00:00Z",
                    })
                })
                .collect();
            serde_json::json!({ "data": data, "has_more": false, "first_id": first, "last_id": last })
        }
    }
}

/// `GET /v1/health` (the seed's tenant health check): the endpoints the policy can send the
/// tenant's requests to — every rule's `route_to` and `fallback`, less those serving no
/// model the tenant may use — each `ok`, `error` or `unknown` (nothing known yet), and
/// `status: degraded` (503) when any is `error`, else `ok` (200). Errors are described
/// generically (breaker open, failing health check, failing requests): the details stay in
/// the operator's `GET /v1/endpoints`, since this path needs no key.
pub fn health(core: &Core, tenant: Option<&str>) -> (u16, serde_json::Value) {
    let loaded = core.table();
    let t = loaded.table();
    let declared = tenant.and_then(|id| t.tenant_by_id(id));
    let now = crate::clock::now_ms();
    let mut seen = std::collections::BTreeSet::new();
    let mut providers = Vec::new();
    let mut degraded = false;
    for rule in t.rules() {
        for e in rule.endpoint().into_iter().chain(rule.fallback()) {
            if !seen.insert(e.index()) {
                continue;
            }
            let listed: Vec<&str> = e.models().collect();
            let usable = listed
                .iter()
                .filter(|m| declared.as_ref().is_none_or(|d| d.allows(m)))
                .count();
            if !listed.is_empty() && usable == 0 {
                continue;
            }
            let h = core.shared.health.to_json(e.id());
            let breaker = core.shared.health.breakers.get(e.id());
            let (status, error) = match (h["status"].as_str(), breaker.state_code(now)) {
                (_, 2) => ("error", Some("circuit open after repeated failures")),
                (_, 3) => ("error", Some("rate limited by the provider; cooling down")),
                (Some("unhealthy"), _) if h.get("probe").is_some_and(|p| p["ok"] == false) => {
                    ("error", Some("failing its health check"))
                }
                (Some("unhealthy"), _) => ("error", Some("recent requests to it failed")),
                (Some("healthy"), _) => ("ok", None),
                _ if e.kind() == switchyard_table::EndpointKind::Mock => ("ok", None),
                _ => ("unknown", None),
            };
            degraded |= status == "error";
            let mut p = serde_json::json!({
                "name": e.id(),
                "type": e.kind().as_str(),
                "status": status,
                "models": usable,
            });
            if let Some(error) = error {
                p["error"] = error.into();
            }
            providers.push(p);
        }
    }
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "tenant": declared.as_ref().map(switchyard_table::TenantView::id),
        "providers": providers,
        "timestamp": crate::clock::iso8601(now),
    });
    (if degraded { 503 } else { 200 }, body)
}
