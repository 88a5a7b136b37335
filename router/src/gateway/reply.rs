//! Answering a request from a handler: the request id it answers under, and complete JSON,
//! plain or error responses written to the client's buffer — each counted in the core's
//! status metrics, refusals logged (the wire format itself is [`respond`]'s).

use crate::dialect::Wire;
use crate::gateway::error::Error;
use crate::gateway::respond::{self, RequestId, RouteReport};
use crate::gateway::route::MAX_REQUEST_ID;
use crate::http::request::Method;
use crate::runtime::client::{Client, Next, Request};
use crate::runtime::core::Core;

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

pub fn json(
    core: &Core,
    req: &Request<'_>,
    client: &mut Client<'_>,
    status: u16,
    body: &serde_json::Value,
) -> Next {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    simple(core, req, client, status, "application/json", &bytes)
}

pub fn simple(
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

/// Writes an error response for a request (not flushed).
pub fn error_reply(core: &Core, req: &Request<'_>, client: &mut Client<'_>, err: &Error) -> Next {
    error_routed(core, req, client, err, &RouteReport::none(req.started))
}

/// Writes an error response with a routing report (not flushed), in the dialect of the
/// request's path.
pub fn error_routed(
    core: &Core,
    req: &Request<'_>,
    client: &mut Client<'_>,
    err: &Error,
    route: &RouteReport<'_>,
) -> Next {
    let id = request_id(core, req);
    let wire = crate::dialect::of_request(req.head.path(req.buf), req.buf, req.headers);
    error_with_id(core, client, &id, err, route, wire);
    Next::KeepAlive
}

/// Writes an error response for a request whose id is already known (not flushed), in
/// `wire`'s dialect; returns the body's length.
pub fn error_with_id(
    core: &Core,
    client: &mut Client<'_>,
    id: &RequestId<'_>,
    err: &Error,
    route: &RouteReport<'_>,
    wire: Wire,
) -> u64 {
    core.metrics().count_status(err.kind.status());
    if let Some(detail) = &err.internal {
        // Held back from the client; the operator gets it here, by request id.
        if let Some(suppressed) =
            crate::runtime::logging::allow(&crate::runtime::logging::INTERNAL_DETAIL)
        {
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
    respond::error(client.out, err, id, route, client.must_close, wire) as u64
}
