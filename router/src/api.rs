//! The public API: which handler answers which method and path.
//!
//! | path | method | handler |
//! | --- | --- | --- |
//! | `/v1/chat/completions`, `/v1/route` | POST | [`crate::proxy::chat`] |
//! | `/v1/models` | GET | models of the endpoints in the table |
//! | `/healthz` | GET | liveness and the table revision |
//! | `/metrics` | GET | Prometheus counters |
//! | `/v1/endpoints`, `/v1/policies`, `/v1/tenants…`, `/v1/audit`, `/v1/changes` | any | the admin API ([`crate::admin`], admin key) |

use std::fmt::Write as _;

use crate::conn::{Client, Next, Request};
use crate::error::{Error, ErrorKind};
use crate::http::HeaderIdx;
use crate::http::request::{Head, Method};
use crate::respond::{self, RequestId, RouteReport};
use crate::route::MAX_REQUEST_ID;
use crate::server::Core;

/// What a request's path and method ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Chat,
    Healthz,
    Models,
    Metrics,
    Admin,
    Messages,
    #[cfg(debug_assertions)]
    Panic,
    /// A path served with other methods: 405, these in `Allow`.
    WrongMethod(&'static str),
    NotFound,
}

fn target(path: &[u8], method: Method) -> Target {
    let get = matches!(method, Method::Get | Method::Head);
    let only = |ok: bool, t: Target, allow: &'static str| {
        if ok { t } else { Target::WrongMethod(allow) }
    };
    match path {
        b"/v1/chat/completions" | b"/v1/route" => {
            only(method == Method::Post, Target::Chat, "POST")
        }
        b"/healthz" => only(get, Target::Healthz, "GET, HEAD"),
        b"/v1/models" => only(get, Target::Models, "GET, HEAD"),
        b"/metrics" => only(get, Target::Metrics, "GET, HEAD"),
        b"/v1/messages" => Target::Messages,
        p if crate::admin::is_admin_path(p) => Target::Admin,
        #[cfg(debug_assertions)]
        b"/__switchyard/panic" if get && fault_injection() => Target::Panic,
        _ => Target::NotFound,
    }
}

/// The answer for a target that is refused whatever the request says.
fn refusal(target: Target, path: &[u8]) -> Option<Error> {
    match target {
        Target::Messages => Some(Error::new(
            ErrorKind::NotImplemented,
            "the Anthropic Messages API (`POST /v1/messages`) is not served yet; use `POST /v1/chat/completions`",
        )),
        Target::WrongMethod(allow) => Some(
            Error::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "method not allowed on `{}`; it takes {allow}",
                    String::from_utf8_lossy(path)
                ),
            )
            .with_allow(allow),
        ),
        Target::NotFound => Some(Error::new(
            ErrorKind::NotFound,
            format!(
                "unknown path `{}`; this router serves POST /v1/chat/completions, POST /v1/route, GET /v1/models, GET /healthz, GET /metrics, and (with an admin key) /v1/endpoints, /v1/policies, /v1/tenants, /v1/audit, /v1/changes",
                String::from_utf8_lossy(path)
            ),
        )),
        _ => None,
    }
}

/// Checks a request on its head alone, before its body is read: the path and method are
/// served and the caller's key is good. A request refused here never gets a body buffer (or
/// a `100 Continue`); the handlers check everything again on the whole request.
pub fn admit(core: &Core, buf: &[u8], head: &Head, headers: &[HeaderIdx]) -> Result<(), Error> {
    let path = head.path(buf);
    let target = target(path, head.method);
    if let Some(err) = refusal(target, path) {
        return Err(err);
    }
    match target {
        Target::Chat | Target::Models => {
            let keys = core.keys();
            principal_of(core, buf, headers, &keys).map(|_| ())
        }
        Target::Admin => core
            .shared
            .admin
            .authenticate(crate::auth::bearer(buf, headers))
            .map(|_| ()),
        _ => Ok(()),
    }
}

/// Answers one request.
pub async fn handle(core: &Core, req: &Request<'_>, client: &mut Client<'_>) -> Next {
    let path = req.head.path(req.buf);
    let target = target(path, req.head.method);
    let next = match target {
        Target::Chat => return crate::proxy::chat(core, req, client).await,
        Target::Healthz => {
            let loaded = core.table();
            let t = loaded.table();
            // Unauthenticated: liveness and the revision, nothing about the host.
            let body = serde_json::json!({
                "status": if core.shutting_down() { "draining" } else { "ok" },
                "revision": t.revision(),
                "rules": t.rule_count(),
            });
            let status = if core.shutting_down() { 503 } else { 200 };
            json(core, req, client, status, &body)
        }
        Target::Models => {
            let keys = core.keys();
            match principal(core, req, &keys) {
                Ok(who) => {
                    let tenant = match who {
                        Some(k) => Some(k.tenant.clone()),
                        // (A key's tenant missing from the policy sees nothing: `models`.)
                        // Without auth, `X-Tenant` says whose view this is.
                        None => req
                            .header(b"x-tenant")
                            .and_then(|t| std::str::from_utf8(t).ok())
                            .map(str::to_owned),
                    };
                    let body = models(core, tenant.as_deref(), who.is_some());
                    json(core, req, client, 200, &body)
                }
                Err(e) => error(core, req, client, &e),
            }
        }
        Target::Admin => admin(core, req, client).await,
        #[cfg(debug_assertions)]
        Target::Panic => {
            // Test-only (debug builds, SWITCHYARD_FAULT_INJECTION=1): proves a panicking
            // connection task takes down only its connection.
            #[expect(clippy::panic, reason = "fault injection for the isolation test")]
            {
                panic!("fault injection: panic requested on /__switchyard/panic");
            }
        }
        Target::Metrics => {
            let text = metrics(core);
            simple(
                core,
                req,
                client,
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
            )
        }
        Target::Messages | Target::WrongMethod(_) | Target::NotFound => {
            match refusal(target, path) {
                Some(err) => error(core, req, client, &err),
                None => Next::Close,
            }
        }
    };
    if client.flush().await.is_err() {
        return Next::Close;
    }
    next
}

/// The admin API on the main listener: answered on the admin worker threads
/// ([`crate::offload`]; it reads files and compiles policies), never on the executor.
async fn admin(core: &Core, req: &Request<'_>, client: &mut Client<'_>) -> Next {
    let call = crate::admin::Call::new(
        req.head.method,
        req.buf.get(req.head.target.clone()).unwrap_or_default(),
        req.buf,
        req.headers,
        req.body,
    );
    let answer = match call {
        Ok(call) => {
            let admin = std::sync::Arc::clone(&core.shared.admin);
            core.shared
                .admin_pool
                .run(move || admin.answer(&call))
                .await
                .and_then(|answer| answer)
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((status, body)) => json(core, req, client, status, &body),
        Err(e) => error(core, req, client, &e),
    }
}

#[cfg(debug_assertions)]
fn fault_injection() -> bool {
    std::env::var_os("SWITCHYARD_FAULT_INJECTION").is_some_and(|v| v == "1")
}

/// The request's id: the client's `X-Request-Id` when usable, else a generated one.
pub fn request_id<'b>(core: &Core, req: &Request<'b>) -> RequestId<'b> {
    match req.header(b"x-request-id") {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.iter().all(u8::is_ascii_graphic) =>
        {
            RequestId::Given(id)
        }
        _ => RequestId::generate(core.next_request_number()),
    }
}

fn json(
    core: &Core,
    req: &Request<'_>,
    client: &mut Client<'_>,
    status: u16,
    body: &serde_json::Value,
) -> Next {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    simple(core, req, client, status, "application/json", &bytes)
}

fn simple(
    core: &Core,
    req: &Request<'_>,
    client: &mut Client<'_>,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Next {
    core.metrics().count_status(status);
    let id = request_id(core, req);
    respond::full(
        client.out,
        status,
        content_type,
        body,
        &id,
        &RouteReport::none(req.started),
        client.must_close,
        &[],
    );
    if req.head.method == Method::Head {
        // The head a GET would get, `content-length` included (RFC 9110 §9.3.2), no body.
        let len = client.out.len() - body.len();
        client.out.truncate(len);
    }
    Next::KeepAlive
}

/// Writes an error response (not flushed).
pub fn error(core: &Core, req: &Request<'_>, client: &mut Client<'_>, err: &Error) -> Next {
    error_routed(core, req, client, err, &RouteReport::none(req.started))
}

/// Writes an error response with a routing report (not flushed).
pub fn error_routed(
    core: &Core,
    req: &Request<'_>,
    client: &mut Client<'_>,
    err: &Error,
    route: &RouteReport<'_>,
) -> Next {
    let id = request_id(core, req);
    error_with_id(core, client, &id, err, route);
    Next::KeepAlive
}

/// Writes an error response for a request whose id is already known (not flushed);
/// returns the body's length.
pub fn error_with_id(
    core: &Core,
    client: &mut Client<'_>,
    id: &RequestId<'_>,
    err: &Error,
    route: &RouteReport<'_>,
) -> u64 {
    core.metrics().count_status(err.kind.status());
    if let Some(detail) = &err.internal {
        // Held back from the client; the operator gets it here, by request id.
        if let Some(suppressed) = crate::logging::allow(&crate::logging::INTERNAL_DETAIL) {
            tracing::warn!(
                request_id = id.as_str(),
                status = err.kind.status(),
                code = err.kind.code(),
                error = %err,
                detail = &**detail,
                suppressed,
                "request failed"
            );
        }
    } else {
        tracing::debug!(
            request_id = id.as_str(),
            status = err.kind.status(),
            code = err.kind.code(),
            error = %err,
            "request failed"
        );
    }
    respond::error(client.out, err, id, route, client.must_close) as u64
}

/// Who is calling: the client key's record when authentication is on (`None` when it is
/// off). Missing, unknown, disabled and expired keys are 401 with the matching code.
pub fn principal<'k>(
    core: &Core,
    req: &Request<'_>,
    keys: &'k crate::auth::KeySet,
) -> Result<Option<&'k crate::auth::KeyRecord>, Error> {
    principal_of(core, req.buf, req.headers, keys)
}

fn principal_of<'k>(
    core: &Core,
    buf: &[u8],
    headers: &[HeaderIdx],
    keys: &'k crate::auth::KeySet,
) -> Result<Option<&'k crate::auth::KeyRecord>, Error> {
    if !core.config().auth {
        return Ok(None);
    }
    let token = crate::auth::bearer(buf, headers)
        .map_err(crate::auth::Refused::error)?
        .ok_or_else(|| crate::auth::Refused::Missing.error())?;
    keys.verify(token, crate::audit::now_ms())
        .map(Some)
        .map_err(crate::auth::Refused::error)
}

/// `GET /v1/models`: every model an endpoint of the table lists (or resolves `auto` to) that
/// the tenant may use (all of them for no tenant, or one without an allowlist). A key's
/// tenant (`keyed`) that the table does not declare may use none.
fn models(core: &Core, tenant: Option<&str>, keyed: bool) -> serde_json::Value {
    let loaded = core.table();
    let t = loaded.table();
    let declared = tenant.and_then(|id| t.tenant_by_id(id));
    if keyed && declared.is_none() {
        return serde_json::json!({ "object": "list", "data": [] });
    }
    let tenant = declared;
    let mut seen = std::collections::BTreeMap::new();
    for e in t.endpoints() {
        for m in e.models().chain(e.default_model()) {
            if tenant.as_ref().is_some_and(|t| !t.allows(m)) {
                continue;
            }
            seen.entry(m.to_owned())
                .or_insert_with(|| e.id().to_owned());
        }
    }
    let data: Vec<serde_json::Value> = seen
        .into_iter()
        .map(|(id, owner)| {
            serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
        })
        .collect();
    serde_json::json!({ "object": "list", "data": data })
}

fn metrics(core: &Core) -> String {
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
        crate::logging::dropped_lines(),
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
