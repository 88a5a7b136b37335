//! What the router says about itself: `GET /v1/models` (the models a tenant may use) and
//! `GET /metrics` (Prometheus text).

use std::fmt::Write as _;

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

pub fn metrics(core: &Core) -> String {
    let shared = &core.shared;
    let loaded = core.table();
    let mut s = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    metric(
        "switchyard_requests_total",
        "Requests whose head was read.",
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
        "switchyard_table_revision",
        "Revision of the table being served.",
        "gauge",
        loaded.table().revision(),
    );
    let _ = writeln!(
        s,
        "# HELP switchyard_responses_total Responses by status class.\n# TYPE switchyard_responses_total counter"
    );
    for (class, total) in [
        ("2xx", shared.sum(|m| &m.responses_2xx)),
        ("4xx", shared.sum(|m| &m.responses_4xx)),
        ("5xx", shared.sum(|m| &m.responses_5xx)),
    ] {
        let _ = writeln!(s, "switchyard_responses_total{{class=\"{class}\"}} {total}");
    }
    s
}
