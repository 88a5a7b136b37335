//! The admin listener (`--admin-listen`, loopback by default): the admin API, behind admin
//! keys.
//!
//! | path | method | what |
//! | --- | --- | --- |
//! | `/v1/audit` | GET | audit records of this node ([`crate::audit::query`]) |
//! | `/v1/tenants/{id}/keys` | POST | issue a client key (`{"id", "key"}`, the key shown once) |
//! | `/v1/tenants/{id}/keys` | GET | the tenant's keys, without secrets |
//! | `/v1/tenants/{id}/keys/{key_id}` | DELETE | revoke a key |
//! | `/healthz` | GET | liveness (no key needed) |
//!
//! It runs on its own threads with blocking I/O: answering it reads Parquet files and
//! writes state to disk, which must never happen on a request executor. One request per
//! connection. Every change is logged with the admin key's id (never the key).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::audit::query::{self, Query};
use crate::auth::{AdminKeys, KeyRecord, KeyStore, Refused};
use crate::error::{Error, ErrorKind};
use crate::http::HeaderIdx;
use crate::http::request::{Framing, Limits, Method, parse_head};
use crate::respond::{self, RequestId, RouteReport};
use crate::table::TableCell;

/// Concurrent admin connections; more are refused.
const MAX_CONNECTIONS: usize = 16;
/// Largest admin request body.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// What the admin API works on.
#[derive(Debug)]
pub struct Admin {
    /// `None` when auditing is off.
    pub audit_dir: Option<PathBuf>,
    pub keys: Arc<KeyStore>,
    pub admin_keys: AdminKeys,
    pub tables: Arc<TableCell>,
}

/// Binds the admin listener and serves it on a background thread; returns the bound address.
pub fn start(addr: SocketAddr, admin: Admin) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let admin = Arc::new(admin);
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
                            serve(stream, &admin);
                            active.fetch_sub(1, Ordering::Relaxed);
                        });
                if spawned.is_err() {
                    tracing::warn!("cannot start an admin connection thread");
                }
            }
        })?;
    Ok(bound)
}

/// One parsed admin request.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a str,
    body: &'a [u8],
    /// The admin key's id.
    who: &'a str,
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
    let id = RequestId::generate(crate::audit::now_ms().unsigned_abs());
    let route = RouteReport::none(std::time::Instant::now());
    let answer = head.and_then(|(head, len)| {
        let target = std::str::from_utf8(buf.get(head.target.clone()).unwrap_or_default())
            .map_err(|_| Error::new(ErrorKind::BadRequest, "request target is not UTF-8"))?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path == "/healthz" {
            return Ok((200, json!({"status": "ok"})));
        }
        let who = authenticate(admin, &buf, &headers)?;
        let call = Call {
            method: head.method,
            path,
            query,
            body: buf.get(head.len..head.len + len).unwrap_or_default(),
            who,
        };
        route_call(admin, &call)
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
            respond::error(&mut out, &err, &id, &route, true);
        }
    }
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The admin key's id, or why not: no key or an unknown one is 401, a client key is 403.
fn authenticate<'a>(admin: &'a Admin, buf: &[u8], headers: &[HeaderIdx]) -> Result<&'a str, Error> {
    let token = crate::auth::bearer(buf, headers)
        .map_err(Refused::error)?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::MissingApiKey,
                "the admin API needs an admin key: send `Authorization: Bearer <admin key>`",
            )
        })?;
    if let Some(who) = admin.admin_keys.verify(token) {
        return Ok(who);
    }
    let (_, client_keys) = admin.keys.cell.load();
    if client_keys.verify(token, crate::audit::now_ms()).is_ok() {
        return Err(Error::new(
            ErrorKind::AdminOnly,
            "client keys cannot use the admin API; use an admin key",
        ));
    }
    Err(Refused::Invalid.error())
}

fn route_call(admin: &Admin, call: &Call<'_>) -> Result<(u16, Value), Error> {
    let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    match (call.method, segments.as_slice()) {
        (Method::Get, ["v1", "audit"]) => audit(admin, call.query).map(|v| (200, v)),
        (Method::Post, ["v1", "tenants", tenant, "keys"]) => issue_key(admin, call, tenant),
        (Method::Get, ["v1", "tenants", tenant, "keys"]) => {
            known_tenant(admin, tenant)?;
            let data: Vec<Value> = admin.keys.list(tenant).iter().map(key_json).collect();
            Ok((200, json!({"object": "list", "data": data})))
        }
        (Method::Delete, ["v1", "tenants", tenant, "keys", key_id]) => {
            if admin.keys.revoke(tenant, key_id)? {
                tracing::info!(
                    admin = call.who,
                    tenant,
                    key_id,
                    "admin: client key revoked"
                );
                Ok((200, json!({"id": key_id, "object": "key", "deleted": true})))
            } else {
                Err(Error::new(
                    ErrorKind::NotFound,
                    format!("tenant `{tenant}` has no key `{key_id}`"),
                ))
            }
        }
        (_, ["v1", "audit"] | ["v1", "tenants", _, "keys"] | ["v1", "tenants", _, "keys", _]) => {
            Err(Error::new(
                ErrorKind::MethodNotAllowed,
                format!("method not allowed on `{}`", call.path),
            ))
        }
        _ => Err(Error::new(
            ErrorKind::NotFound,
            format!("unknown admin path `{}`", call.path),
        )),
    }
}

fn known_tenant(admin: &Admin, tenant: &str) -> Result<(), Error> {
    let (_, loaded) = admin.tables.load();
    if loaded.table().tenant_by_id(tenant).is_some() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::NotFound,
            format!("unknown tenant `{tenant}`: declare it in the policy's `tenants` first"),
        ))
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
    })
}

/// `POST /v1/tenants/{id}/keys`, body optional: `{"role"?, "name"?, "expires_at"?}` with
/// `expires_at` in Unix seconds or ISO 8601.
fn issue_key(admin: &Admin, call: &Call<'_>, tenant: &str) -> Result<(u16, Value), Error> {
    known_tenant(admin, tenant)?;
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(call.body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidBody,
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    let Some(obj) = body.as_object() else {
        return Err(Error::new(
            ErrorKind::InvalidBody,
            "request body must be a JSON object",
        ));
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "role" | "name" | "expires_at") {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!("unknown field `{key}`: a key takes `role`, `name` and `expires_at`"),
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
    let now = crate::audit::now_ms();
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
    let (record, key) = admin.keys.issue(tenant, role, name, expires_ms, now)?;
    tracing::info!(
        admin = call.who,
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

fn bad_expiry(what: &str) -> Error {
    Error::new(
        ErrorKind::BadRequest,
        format!("`expires_at` must be {what}"),
    )
    .with_param("expires_at")
}

fn audit(admin: &Admin, raw_query: &str) -> Result<Value, Error> {
    let q = Query::parse(raw_query).map_err(|e| Error::new(ErrorKind::BadRequest, e.0))?;
    let Some(dir) = &admin.audit_dir else {
        return Err(Error::new(
            ErrorKind::NotFound,
            "auditing is off on this node (--no-audit)",
        ));
    };
    let records = query::run(dir, &q);
    let data: Vec<Value> = records.iter().map(query::to_json).collect();
    Ok(json!({ "object": "list", "data": data }))
}
