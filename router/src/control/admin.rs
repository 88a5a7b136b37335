//! The admin API, behind admin keys: served on the main listener (handed off the request
//! executors to a blocking thread) and on the admin listener (`--admin-listen`, loopback by
//! default, its own threads).
//!
//! | path | method | what |
//! | --- | --- | --- |
//! | `/v1/endpoints` | GET | endpoints of the serving policy, with observed health |
//! | `/v1/endpoints` | POST | create an endpoint, or update the fields given |
//! | `/v1/endpoints/{id}` | GET | one endpoint |
//! | `/v1/policies` | GET | the serving policy as a JSON policy object |
//! | `/v1/policies` | POST | deploy a policy (`{"yaml": …}` or a JSON policy object) |
//! | `/v1/tenants` | GET | tenants: allowlist, limits, budgets, audit bucket |
//! | `/v1/tenants` | POST | create a tenant, or update the fields given |
//! | `/v1/tenants/{id}` | GET | one tenant |
//! | `/v1/tenants/{id}/keys` | POST | issue a client key (`{"id", "key"}`, the key shown once) |
//! | `/v1/tenants/{id}/keys` | GET | the tenant's keys, without secrets |
//! | `/v1/tenants/{id}/keys/{key_id}` | DELETE | revoke a key |
//! | `/v1/audit` | GET | audit records of this node ([`crate::audit::query`]) |
//! | `/v1/changes` | GET | the admin change log, newest first |
//! | `/healthz` | GET | liveness (admin listener only; no key needed) |
//!
//! Answering reads Parquet files, compiles policies and writes state to disk, none of which
//! may happen on a request executor. Policy, endpoint and tenant changes go through
//! [`crate::control::changes`]; every change (keys included) is logged with the admin key's id, never
//! the key.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::audit::query::{self, Query};
use crate::control::changes::{Change, Manager, Rejected};
use crate::control::health::Health;
use crate::control::keys::{AdminKeys, KeyRecord, KeyStore, Refused};
use crate::control::shared::{Edit, store_error};
use crate::control::table::TableCell;
use crate::dialect::Wire;
use crate::gateway::error::{Error, ErrorKind};
use crate::gateway::respond::{self, RequestId, RouteReport};
use crate::http::HeaderIdx;
use crate::http::request::{Framing, Limits, Method, parse_head};
use policyc::store::StoreError;

/// Concurrent admin connections; more are refused.
const MAX_CONNECTIONS: usize = 16;
/// Largest admin request body.
pub const MAX_BODY: u64 = 4 * 1024 * 1024;

/// What the admin API works on.
#[derive(Debug)]
pub struct Admin {
    /// `None` when auditing is off.
    pub audit_dir: Option<PathBuf>,
    pub keys: Arc<KeyStore>,
    pub admin_keys: AdminKeys,
    pub tables: Arc<TableCell>,
    pub manager: Manager,
    pub health: Arc<Health>,
}

/// Whether `path` belongs to the admin API (on the main listener).
#[must_use]
pub fn is_admin_path(path: &[u8]) -> bool {
    let rest = |p: &[u8], prefix: &[u8]| {
        p.strip_prefix(prefix)
            .is_some_and(|r| r.is_empty() || r.first() == Some(&b'/'))
    };
    [
        &b"/v1/endpoints"[..],
        b"/v1/policies",
        b"/v1/tenants",
        b"/v1/audit",
        b"/v1/changes",
    ]
    .iter()
    .any(|prefix| rest(path, prefix))
}

/// One admin request, owned: it crosses to a blocking thread.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The bearer token, or why the `Authorization` header was refused.
    pub token: Result<Option<Vec<u8>>, Refused>,
    pub body: Vec<u8>,
}

impl Call {
    /// From a parsed request: `target` is the request target, `buf` the bytes the header
    /// ranges index.
    pub fn new(
        method: Method,
        target: &[u8],
        buf: &[u8],
        headers: &[HeaderIdx],
        body: &[u8],
    ) -> Result<Self, Error> {
        let target = std::str::from_utf8(target)
            .map_err(|_| Error::new(ErrorKind::BadRequest, "request target is not UTF-8"))?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            token: crate::control::keys::bearer(buf, headers).map(|t| t.map(<[u8]>::to_vec)),
            body: body.to_vec(),
        })
    }
}

/// Binds the admin listener and serves it on a background thread; returns the bound address.
pub fn start(addr: SocketAddr, admin: Arc<Admin>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let active = Arc::clone(&active);
                let admin = Arc::clone(&admin);
                let spawned =
                    std::thread::Builder::new()
                        .name("admin-conn".into())
                        .spawn(move || {
                            // A panic ends this connection only, and frees its slot.
                            let served =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    serve(stream, &admin);
                                }));
                            if served.is_err() {
                                tracing::error!("an admin connection panicked; it was dropped");
                            }
                            active.fetch_sub(1, Ordering::Relaxed);
                        });
                if spawned.is_err() {
                    tracing::warn!("cannot start an admin connection thread");
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut stream: TcpStream, admin: &Admin) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        ..Limits::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut headers = Vec::new();
    let head = loop {
        match parse_head(buf.get(..filled).unwrap_or_default(), &limits, &mut headers) {
            Ok(Some(h)) => break Ok(h),
            Ok(None) => {}
            Err(e) => break Err(Error::new(ErrorKind::BadRequest, e.to_string())),
        }
        if filled == buf.len() {
            break Err(Error::new(
                ErrorKind::HeadersTooLarge,
                "request head too large",
            ));
        }
        match stream.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    };
    // The body: Content-Length only (admin clients are curl and SDKs).
    let head = head.and_then(|h| match h.framing {
        Framing::Empty => Ok((h, 0)),
        Framing::Length(n) if n <= MAX_BODY => Ok((h, usize::try_from(n).unwrap_or(0))),
        Framing::Length(_) => Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("admin request bodies are limited to {MAX_BODY} bytes"),
        )),
        Framing::Chunked => Err(Error::new(
            ErrorKind::LengthRequired,
            "send admin request bodies with Content-Length",
        )),
    });
    if let Ok((h, len)) = &head {
        let need = h.len + len;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        while filled < need {
            match stream.read(buf.get_mut(filled..need).unwrap_or_default()) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
    }
    let id = RequestId::generate(crate::clock::now_ms().unsigned_abs());
    let route = RouteReport::none(std::time::Instant::now());
    let answer = head.and_then(|(head, len)| {
        let target = buf.get(head.target.clone()).unwrap_or_default();
        if target == b"/healthz" {
            return Ok((200, json!({"status": "ok"})));
        }
        let body = buf.get(head.len..head.len + len).unwrap_or_default();
        let call = Call::new(head.method, target, &buf, &headers, body)?;
        admin.answer(&call)
    });
    let mut out = Vec::new();
    match answer {
        Ok((status, body)) => {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            respond::full(
                &mut out,
                status,
                "application/json",
                &bytes,
                &id,
                &route,
                true,
                &[],
            );
        }
        Err(err) => {
            respond::error(&mut out, &err, &id, &route, true, Wire::OpenAi);
        }
    }
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

impl Admin {
    /// Answers one admin call: authenticates it, then routes it.
    pub fn answer(&self, call: &Call) -> Result<(u16, Value), Error> {
        let who = self.authenticate(call.token.as_ref().map(Option::as_deref).map_err(|r| *r))?;
        self.route(call, who)
    }

    /// The admin key's id for a request's bearer token (as [`crate::control::keys::bearer`] read it),
    /// or why not: no key or an unknown one is 401, a client key is 403.
    pub fn authenticate(&self, token: Result<Option<&[u8]>, Refused>) -> Result<&str, Error> {
        let token = token.map_err(Refused::error)?.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingApiKey,
                "the admin API needs an admin key: send `Authorization: Bearer <admin key>`",
            )
        })?;
        if let Some(who) = self.admin_keys.verify(token) {
            return Ok(who);
        }
        let (_, client_keys) = self.keys.cell.load();
        if client_keys.verify(token, crate::clock::now_ms()).is_ok() {
            return Err(Error::new(
                ErrorKind::AdminOnly,
                "client keys cannot use the admin API; use an admin key",
            ));
        }
        Err(Refused::Invalid.error())
    }

    fn route(&self, call: &Call, who: &str) -> Result<(u16, Value), Error> {
        let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
        match (call.method, segments.as_slice()) {
            (Method::Get, ["v1", "audit"]) => self.audit(&call.query).map(|v| (200, v)),
            (Method::Get, ["v1", "changes"]) => {
                let limit = match call.query.split_once('=') {
                    None if call.query.is_empty() => 100,
                    Some(("limit", n)) => n
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::BadRequest,
                                "`limit` must be a whole number from 1 to 1000",
                            )
                            .with_param("limit")
                        })?,
                    _ => {
                        return Err(Error::new(
                            ErrorKind::BadRequest,
                            "`/v1/changes` takes only `limit`",
                        ));
                    }
                };
                Ok((200, list(self.manager.changes(limit))))
            }
            (Method::Get, ["v1", "endpoints"]) => Ok((200, list(self.endpoints()))),
            (Method::Get, ["v1", "endpoints", id]) => self.endpoint(id).map(|e| (200, e)),
            (Method::Post, ["v1", "endpoints"]) => self.upsert(call, who, Section::Endpoints),
            (Method::Get, ["v1", "tenants"]) => Ok((200, list(self.tenants()))),
            (Method::Get, ["v1", "tenants", id]) => self.tenant(id).map(|t| (200, t)),
            (Method::Post, ["v1", "tenants"]) => self.upsert(call, who, Section::Tenants),
            (Method::Get, ["v1", "policies"]) => {
                let (_, loaded) = self.tables.load();
                Ok((200, policyc::json::table_to_json(loaded.table())))
            }
            (Method::Post, ["v1", "policies"]) => self.deploy(call, who),
            (Method::Post, ["v1", "tenants", tenant, "keys"]) => self.issue_key(call, who, tenant),
            (Method::Get, ["v1", "tenants", tenant, "keys"]) => {
                self.known_tenant(tenant)?;
                let data: Vec<Value> = self.keys.list(tenant).iter().map(key_json).collect();
                Ok((200, list(data)))
            }
            (Method::Delete, ["v1", "tenants", tenant, "keys", key_id]) => {
                let target = format!("{tenant}/{key_id}");
                let revoked = match &self.manager.shared {
                    Some(shared) => shared
                        .write(who, |_, records| {
                            let mut keys = records.to_vec();
                            let found = crate::control::keys::disable(&mut keys, tenant, key_id);
                            let edit = Edit {
                                table: None,
                                keys: found.then_some(keys),
                                action: "key.revoke",
                                target: target.clone(),
                            };
                            if found {
                                Ok((edit, true))
                            } else {
                                Err(Refusal::NoKey)
                            }
                        })
                        .map(|(revoked, _)| revoked)
                        .or_else(|e| match e {
                            Refusal::NoKey => Ok(false),
                            Refusal::Store(e) => Err(store_error(&e)),
                        })?,
                    None => {
                        let revoked = self.keys.revoke(tenant, key_id)?;
                        if revoked {
                            self.manager.log(who, "key.revoke", &target, None);
                        }
                        revoked
                    }
                };
                if revoked {
                    tracing::info!(admin = who, tenant, key_id, "admin: client key revoked");
                    Ok((200, json!({"id": key_id, "object": "key", "deleted": true})))
                } else {
                    Err(Error::new(
                        ErrorKind::NotFound,
                        format!("tenant `{tenant}` has no key `{key_id}`"),
                    ))
                }
            }
            (_, path) if allowed(path).is_some() => {
                let allow = allowed(path).unwrap_or_default();
                Err(Error::new(
                    ErrorKind::MethodNotAllowed,
                    format!("method not allowed on `{}`; it takes {allow}", call.path),
                )
                .with_allow(allow))
            }
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("unknown admin path `{}`", call.path),
            )),
        }
    }

    fn known_tenant(&self, tenant: &str) -> Result<(), Error> {
        let (_, loaded) = self.tables.load();
        if loaded.table().tenant_by_id(tenant).is_some() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("unknown tenant `{tenant}`: create it with `POST /v1/tenants` first"),
            ))
        }
    }

    /// A section of the serving policy, as JSON objects.
    fn section(&self, name: &str) -> Vec<Value> {
        let (_, loaded) = self.tables.load();
        match policyc::json::table_to_json(loaded.table()).get_mut(name) {
            Some(Value::Array(items)) => std::mem::take(items),
            _ => Vec::new(),
        }
    }

    fn endpoints(&self) -> Vec<Value> {
        let mut items = self.section("endpoints");
        for e in &mut items {
            let id = e
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(o) = e.as_object_mut() {
                o.insert("object".into(), "endpoint".into());
                o.insert("health".into(), self.health.to_json(&id));
            }
        }
        items
    }

    fn endpoint(&self, id: &str) -> Result<Value, Error> {
        self.endpoints()
            .into_iter()
            .find(|e| e.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no endpoint `{id}`")))
    }

    fn tenants(&self) -> Vec<Value> {
        let mut items = self.section("tenants");
        for t in &mut items {
            if let Some(o) = t.as_object_mut() {
                o.insert("object".into(), "tenant".into());
            }
        }
        items
    }

    fn tenant(&self, id: &str) -> Result<Value, Error> {
        self.tenants()
            .into_iter()
            .find(|t| t.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no tenant `{id}`")))
    }

    /// `POST /v1/endpoints` and `POST /v1/tenants`: 201 when created, 200 when updated, with
    /// the item as it now serves.
    fn upsert(&self, call: &Call, who: &str, section: Section) -> Result<(u16, Value), Error> {
        let mut item = object_body(&call.body)?;
        // `object` is what GET adds; accept it back so a GET result can be edited and posted.
        item.remove("object");
        if matches!(section, Section::Endpoints) {
            item.remove("health");
        }
        let id = match item.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("the {} needs an `id` (a non-empty string)", section.noun()),
                )
                .with_param("id"));
            }
        };
        let change = match section {
            Section::Endpoints => Change::Endpoint(item),
            Section::Tenants => Change::Tenant(item),
        };
        let applied = self.manager.apply(who, &change).map_err(rejected)?;
        let mut now = match section {
            Section::Endpoints => self.endpoint(&id)?,
            Section::Tenants => self.tenant(&id)?,
        };
        if let Some(o) = now.as_object_mut() {
            o.insert("revision".into(), applied.revision.into());
            o.insert("warnings".into(), warnings(&applied.report));
        }
        Ok((if applied.created { 201 } else { 200 }, now))
    }

    /// `POST /v1/policies`: `{"yaml": "…"}` or a JSON policy object.
    fn deploy(&self, call: &Call, who: &str) -> Result<(u16, Value), Error> {
        let body = object_body(&call.body)?;
        let change = if let Some(yaml) = body.get("yaml") {
            let Value::String(text) = yaml else {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    "`yaml` must be the policy as a string",
                )
                .with_param("yaml"));
            };
            if let Some(other) = body.keys().find(|k| *k != "yaml") {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!(
                        "unexpected `{other}` beside `yaml`: send `{{\"yaml\": …}}` or a JSON policy object, not both"
                    ),
                ));
            }
            Change::Policy {
                doc: policyc::json::yaml_to_json("policy", text).ok(),
                text: text.clone(),
            }
        } else {
            let doc = Value::Object(body);
            Change::Policy {
                text: serde_json::to_string_pretty(&doc).unwrap_or_default(),
                doc: Some(doc),
            }
        };
        let applied = self.manager.apply(who, &change).map_err(rejected)?;
        Ok((
            200,
            json!({
                "object": "policy",
                "status": "deployed",
                "revision": applied.revision,
                "warnings": warnings(&applied.report),
            }),
        ))
    }

    /// `POST /v1/tenants/{id}/keys`, body optional: `{"role"?, "name"?, "expires_at"?,
    /// "assert_roles"?}` with `expires_at` in Unix seconds or ISO 8601.
    fn issue_key(&self, call: &Call, who: &str, tenant: &str) -> Result<(u16, Value), Error> {
        self.known_tenant(tenant)?;
        let obj = if call.body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            object_body(&call.body)?
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "role" | "name" | "expires_at" | "assert_roles"
            ) {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!(
                        "unknown field `{key}`: a key takes `role`, `name`, `expires_at` and `assert_roles`"
                    ),
                ));
            }
        }
        let text = |field: &'static str| -> Result<Option<String>, Error> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => Ok(Some(s.clone())),
                Some(_) => Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("`{field}` must be a non-empty string of at most 200 characters"),
                )
                .with_param(field)),
            }
        };
        let role = text("role")?;
        let name = text("name")?;
        let now = crate::clock::now_ms();
        let expires_ms = match obj.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|s| s.checked_mul(1000))
                .map(Some)
                .ok_or_else(|| bad_expiry("a whole number of Unix seconds"))?,
            Some(Value::String(s)) => Some(
                query::parse_time(s, "expires_at")
                    .map_err(|_| bad_expiry("an ISO 8601 time, e.g. 2027-01-31T00:00:00Z"))?,
            ),
            Some(_) => return Err(bad_expiry("Unix seconds or an ISO 8601 time")),
        };
        if expires_ms.is_some_and(|e| e <= now) {
            return Err(bad_expiry("in the future"));
        }
        let assert_roles = match obj.get("assert_roles") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    "`assert_roles` must be true or false",
                )
                .with_param("assert_roles"));
            }
        };
        if assert_roles && role.is_some() {
            return Err(Error::new(
                ErrorKind::BadRequest,
                "a key has a `role` or `assert_roles: true` (its requests say their role), not both",
            )
            .with_param("assert_roles"));
        }
        let spec = crate::control::keys::KeySpec {
            role,
            name,
            expires_ms,
            assert_roles,
        };
        let (record, key) = match &self.manager.shared {
            Some(shared) => {
                let (record, key) = crate::control::keys::mint(tenant, spec, now)?;
                let target = format!("{tenant}/{}", record.id);
                shared
                    .write(who, |_, records| {
                        let mut keys = records.to_vec();
                        keys.push(record.clone());
                        let edit = Edit {
                            table: None,
                            keys: Some(keys),
                            action: "key.issue",
                            target: target.clone(),
                        };
                        Ok::<_, StoreError>((edit, ()))
                    })
                    .map_err(|e| store_error(&e))?;
                (record, key)
            }
            None => {
                let (record, key) = self.keys.issue(tenant, spec, now)?;
                self.manager
                    .log(who, "key.issue", &format!("{tenant}/{}", record.id), None);
                (record, key)
            }
        };
        tracing::info!(
            admin = who,
            tenant,
            key_id = record.id.as_str(),
            "admin: client key issued"
        );
        let mut out = key_json(&record);
        if let Some(o) = out.as_object_mut() {
            o.insert("key".into(), Value::String(key));
        }
        Ok((201, out))
    }

    fn audit(&self, raw_query: &str) -> Result<Value, Error> {
        let q = Query::parse(raw_query).map_err(|e| Error::new(ErrorKind::BadRequest, e.0))?;
        let Some(dir) = &self.audit_dir else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "auditing is off on this node (--no-audit)",
            ));
        };
        let records = query::run(dir, &q);
        let data: Vec<Value> = records.iter().map(query::to_json).collect();
        Ok(list(data))
    }
}

/// The methods an admin path takes (for `405` and its `Allow`), if it is one.
fn allowed(path: &[&str]) -> Option<&'static str> {
    match path {
        ["v1", "audit" | "changes"] | ["v1", "endpoints" | "tenants", _] => Some("GET"),
        ["v1", "endpoints" | "tenants" | "policies"] | ["v1", "tenants", _, "keys"] => {
            Some("GET, POST")
        }
        ["v1", "tenants", _, "keys", _] => Some("DELETE"),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug)]
enum Section {
    Endpoints,
    Tenants,
}

impl Section {
    fn noun(self) -> &'static str {
        match self {
            Self::Endpoints => "endpoint",
            Self::Tenants => "tenant",
        }
    }
}

fn list(data: Vec<Value>) -> Value {
    let mut o = Map::new();
    o.insert("object".into(), "list".into());
    o.insert("data".into(), Value::Array(data));
    Value::Object(o)
}

/// The request body as a JSON object.
fn object_body(body: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Error::new(
            ErrorKind::InvalidBody,
            "request body must be a JSON object",
        )),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidBody,
            format!("request body is not valid JSON: {e}"),
        )),
    }
}

/// The compiler's warnings from its JSON report.
fn warnings(report: &Value) -> Value {
    report
        .get("diagnostics")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()))
}

/// A refused change as an error; compile errors carry the compiler's report (`errors`,
/// `warnings`, `diagnostics`) beside `error` in the 400.
fn rejected(r: Rejected) -> Error {
    match r {
        Rejected::Invalid { report, errors } => {
            let first = report
                .get("diagnostics")
                .and_then(Value::as_array)
                .and_then(|d| {
                    d.iter()
                        .find(|d| d.get("severity") == Some(&json!("error")))
                })
                .and_then(|d| d.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("invalid policy")
                .to_owned();
            Error::new(
                ErrorKind::InvalidPolicy,
                format!("the change was not applied: {errors} error(s) compiling the policy; first: {first}"),
            )
            .with_details(report)
        }
        Rejected::Secret(why) => Error::new(
            ErrorKind::InvalidPolicy,
            format!("the change was not applied: {why}"),
        ),
        Rejected::Failed(why) => Error::new(ErrorKind::Internal, why),
        Rejected::Conflict => Error::new(
            ErrorKind::Internal,
            "the serving table changed while this change compiled; retry",
        ),
        Rejected::Store(e) => store_error(&e),
    }
}

/// Why a key revocation through the shared state did not happen.
enum Refusal {
    NoKey,
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn key_json(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "object": "key",
        "tenant": k.tenant,
        "role": k.role,
        "name": k.name,
        "created_at": k.created_ms / 1000,
        "expires_at": k.expires_ms.map(|ms| ms / 1000),
        "disabled": k.disabled,
        "assert_roles": k.assert_roles,
    })
}

fn bad_expiry(what: &str) -> Error {
    Error::new(
        ErrorKind::BadRequest,
        format!("`expires_at` must be {what}"),
    )
    .with_param("expires_at")
}
