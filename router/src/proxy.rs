//! `POST /v1/chat/completions` and `POST /v1/route`: the request phases in order.
//!
//! 1. routing headers ([`Attrs::from_headers`]) — bad values are a 400 naming the header;
//! 2. body scan ([`json::scan`]) — not JSON, no `messages`, no `model`: 400, nothing sent;
//! 3. decision ([`route::choose`]) — deny: 403 naming the rule; model not served: 400;
//! 4. for each candidate endpoint in order: rewrite `model` if it changed, then answer
//!    in-process (`mock`) or forward ([`crate::upstream::forward`]). A candidate that fails
//!    before anything reached an upstream (connect refused, missing secret, dialect not
//!    served) passes the request to the next; any other failure is answered.

use crate::api;
use crate::conn::{Client, Next, Request};
use crate::error::{Error, ErrorKind};
use crate::json;
use crate::respond::{RequestId, RouteReport, elapsed_ms};
use crate::route::{self, Attrs};
use crate::server::Core;
use crate::table::Plan;

/// One request on its way to one endpoint.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub core: &'a Core,
    pub req: &'a Request<'a>,
    pub id: RequestId<'a>,
    pub rule: u32,
    pub endpoint: &'a str,
    pub model: &'a str,
    pub stream: bool,
    /// The body to send (the client's, with `model` rewritten if needed).
    pub body: &'a [u8],
}

impl Exchange<'_> {
    /// The routing report for this exchange, with latency measured now.
    #[must_use]
    pub fn report(&self) -> RouteReport<'_> {
        RouteReport {
            endpoint: Some(self.endpoint),
            rule: Some(self.rule),
            latency_ms: elapsed_ms(self.req.started),
        }
    }
}

/// Whether the next candidate may take a request that failed this way.
fn try_next(kind: ErrorKind) -> bool {
    kind.retry_safe() || kind == ErrorKind::NotImplemented
}

/// Routes and answers a chat request.
pub async fn chat<'r>(core: &Core, req: &'r Request<'r>, client: &mut Client<'_>) -> Next {
    let next = chat_inner(core, req, client).await;
    if client.out.is_empty() {
        return next;
    }
    if client.flush().await.is_err() {
        return Next::Close;
    }
    next
}

async fn chat_inner<'r>(core: &Core, req: &'r Request<'r>, client: &mut Client<'_>) -> Next {
    let none = RouteReport::none(req.started);
    let attrs = match Attrs::from_headers(req.buf, req.headers) {
        Ok(a) => a,
        Err(e) => return api::error_routed(core, req, client, &e, &none),
    };
    if let Some(coding) = req.header(b"content-encoding")
        && !coding.eq_ignore_ascii_case(b"identity")
    {
        let err = Error::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "request bodies with `Content-Encoding: {}` are not accepted; send the JSON uncompressed",
                String::from_utf8_lossy(coding)
            ),
        );
        return api::error_routed(core, req, client, &err, &none);
    }
    let fields = match json::scan(req.body) {
        Ok(f) => f,
        Err(e) => {
            let mut err = Error::new(ErrorKind::InvalidBody, e.to_string());
            err.param = e.param();
            return api::error_routed(core, req, client, &err, &none);
        }
    };
    if !fields.has_messages {
        let err = Error::new(
            ErrorKind::MissingMessages,
            "request body has no `messages` array",
        )
        .with_param("messages");
        return api::error_routed(core, req, client, &err, &none);
    }
    let Some(model) = fields.model.as_ref() else {
        let err = Error::new(
            ErrorKind::BadRequest,
            "request body has no `model`: send a model id, or \"auto\" to let the policy choose",
        )
        .with_param("model");
        return api::error_routed(core, req, client, &err, &none);
    };
    let requested: &str = &model.value;

    let loaded = core.table();
    let table = loaded.table();
    let treq = route::attributes(table, &attrs, &fields, requested, req.body.len());
    let choice = match route::choose(table, &treq, requested) {
        Ok(c) => c,
        Err(refusal) => {
            let report = RouteReport {
                endpoint: None,
                rule: refusal.rule,
                latency_ms: elapsed_ms(req.started),
            };
            return api::error_routed(core, req, client, &refusal.error, &report);
        }
    };

    let id = api::request_id(core, req);
    let mut last: Option<(Error, &str)> = None;
    for (index, send) in choice.candidates(requested) {
        let send_model = send.as_str(requested);
        let Some(endpoint) = table.endpoint(index) else {
            continue;
        };
        let Some(plan) = loaded.plans.get(index as usize) else {
            continue;
        };
        let mut rewritten = core.pool.bytes.take();
        let body: &[u8] = if send_model == requested {
            req.body
        } else {
            rewritten.clear();
            json::rewrite_model(req.body, model.span.clone(), send_model, &mut rewritten);
            &rewritten
        };
        let x = Exchange {
            core,
            req,
            id,
            rule: choice.rule_index,
            endpoint: endpoint.id(),
            model: send_model,
            stream: fields.stream,
            body,
        };
        let result = match plan {
            Plan::Mock => Ok(crate::mock::respond(&x, client).await),
            Plan::Unsupported(kind) => Err(Error::new(
                ErrorKind::NotImplemented,
                format!(
                    "endpoint `{}` has type `{kind}`, which this router does not serve yet (it serves OpenAI-compatible endpoints and `mock`)",
                    endpoint.id()
                ),
            )),
            Plan::Broken(why) => Err(Error::new(ErrorKind::UpstreamCredentials, why.clone())),
            Plan::Forward(up) => crate::upstream::forward(&x, up, client).await,
        };
        match result {
            Ok(next) => return next,
            Err(e) if try_next(e.kind) => {
                tracing::warn!(
                    request_id = id.as_str(),
                    endpoint = endpoint.id(),
                    error = %e,
                    "endpoint unavailable; trying the next candidate"
                );
                last = Some((e, endpoint.id()));
            }
            Err(e) => {
                let report = x.report();
                return api::error_routed(core, req, client, &e, &report);
            }
        }
    }
    let (err, endpoint) = last.unwrap_or_else(|| {
        (
            Error::new(ErrorKind::Internal, "no endpoint candidate was tried"),
            "none",
        )
    });
    let report = RouteReport {
        endpoint: Some(endpoint),
        rule: Some(choice.rule_index),
        latency_ms: elapsed_ms(req.started),
    };
    api::error_routed(core, req, client, &err, &report)
}
