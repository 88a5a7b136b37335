//! The public API: which handler answers which method and path.
//!
//! | path | method | handler |
//! | --- | --- | --- |
//! | `/v1/chat/completions`, `/v1/route` | POST | [`crate::gateway::phases::serve`] (OpenAI chat) |
//! | `/v1/messages`, `/v1/messages/count_tokens` | POST | the same (Anthropic Messages) |
//! | `/v1/embeddings` | POST | the same (OpenAI embeddings) |
//! | `/v1/models` | GET | models of the endpoints in the table |
//! | `/healthz` | GET | liveness and the table revision |
//! | `/v1/health` | GET | the tenant's endpoints and their state (no key needed) |
//! | `/metrics` | GET | Prometheus counters |
//! | `/v1/endpoints`, `/v1/policies`, `/v1/tenants…`, `/v1/audit`, `/v1/changes` | any | the admin API ([`crate::control::admin`], admin key) |

use crate::dialect::Api;
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::identity::{principal, principal_of};
use crate::gateway::info::{health, models};
use crate::gateway::reply::{error_reply, json, simple};
use crate::http::HeaderIdx;
use crate::http::request::{Head, Method};
use crate::runtime::client::{Client, Next, Request};
use crate::runtime::core::Core;

/// What a request's path and method ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Api(Api),
    Healthz,
    Health,
    Models,
    Metrics,
    Admin,
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
    let post = |api| only(method == Method::Post, Target::Api(api), "POST");
    match path {
        b"/v1/chat/completions" | b"/v1/route" => post(Api::Chat),
        b"/v1/messages" => post(Api::Messages),
        b"/v1/messages/count_tokens" => post(Api::CountTokens),
        b"/v1/embeddings" => post(Api::Embeddings),
        b"/healthz" => only(get, Target::Healthz, "GET, HEAD"),
        b"/v1/health" => only(get, Target::Health, "GET, HEAD"),
        b"/v1/models" => only(get, Target::Models, "GET, HEAD"),
        b"/metrics" => only(get, Target::Metrics, "GET, HEAD"),
        p if crate::control::admin::is_admin_path(p) => Target::Admin,
        #[cfg(debug_assertions)]
        b"/__switchyard/panic" if get && fault_injection() => Target::Panic,
        _ => Target::NotFound,
    }
}

/// The answer for a target that is refused whatever the request says.
fn refusal(target: Target, path: &[u8]) -> Option<Error> {
    match target {
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
                "unknown path `{}`; this router serves POST /v1/chat/completions, POST /v1/route, POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/embeddings, GET /v1/models, GET /v1/health, GET /healthz, GET /metrics, and (with an admin key) /v1/endpoints, /v1/policies, /v1/tenants, /v1/audit, /v1/changes",
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
        Target::Api(_) | Target::Models => {
            let keys = core.keys();
            principal_of(
                core,
                buf,
                headers,
                &keys,
                crate::dialect::of_request(path, buf, headers),
            )
            .map(|_| ())
        }
        Target::Admin => core
            .shared
            .admin
            .authenticate(crate::control::keys::bearer(buf, headers))
            .map(|_| ()),
        _ => Ok(()),
    }
}

/// Answers one request.
pub async fn handle(core: &Core, req: &Request<'_>, client: &mut Client<'_>) -> Next {
    let path = req.head.path(req.buf);
    let target = target(path, req.head.method);
    let next = match target {
        Target::Api(api) => return crate::gateway::phases::serve(core, req, client, api).await,
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
        Target::Health => {
            let keys = core.keys();
            // No key needed; one that is sent must be good, and fixes the tenant (else
            // `X-Tenant` says whose view this is).
            let key_tenant = match principal(core, req, &keys) {
                Ok(who) => Ok(who.map(|k| k.tenant.clone())),
                Err(e) if e.kind == ErrorKind::MissingApiKey => Ok(None),
                Err(e) => Err(e),
            };
            match key_tenant {
                Ok(tenant) => {
                    let claimed = req
                        .header(b"x-tenant")
                        .and_then(|t| std::str::from_utf8(t).ok());
                    let (status, body) = health(core, tenant.as_deref().or(claimed));
                    json(core, req, client, status, &body)
                }
                Err(e) => error_reply(core, req, client, &e),
            }
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
                    let wire = crate::dialect::of_request(path, req.buf, req.headers);
                    let body = models(core, tenant.as_deref(), who.is_some(), wire);
                    json(core, req, client, 200, &body)
                }
                Err(e) => error_reply(core, req, client, &e),
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
            let text = crate::observe::exposition::render(core);
            simple(
                core,
                req,
                client,
                200,
                "text/plain; version=0.0.4",
                text.as_bytes(),
            )
        }
        Target::WrongMethod(_) | Target::NotFound => match refusal(target, path) {
            Some(err) => error_reply(core, req, client, &err),
            None => Next::Close,
        },
    };
    if client.flush().await.is_err() {
        return Next::Close;
    }
    next
}

/// The admin API on the main listener: answered on the admin worker threads
/// ([`crate::runtime::offload`]; it reads files and compiles policies), never on the executor.
async fn admin(core: &Core, req: &Request<'_>, client: &mut Client<'_>) -> Next {
    let call = crate::control::admin::Call::new(
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
        Err(e) => error_reply(core, req, client, &e),
    }
}

#[cfg(debug_assertions)]
fn fault_injection() -> bool {
    std::env::var_os("SWITCHYARD_FAULT_INJECTION").is_some_and(|v| v == "1")
}
