//! The admin listener (`--admin-listen`, loopback by default): `GET /v1/audit`, until admin
//! keys arrive (issue 5) and it moves behind them.
//!
//! It runs on its own threads with blocking I/O: answering it reads Parquet files from disk,
//! which must never happen on a request executor. One request per connection.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::audit::query::{self, Query};
use crate::error::{Error, ErrorKind};
use crate::http::request::{Limits, Method, parse_head};
use crate::respond::{self, RequestId, RouteReport};

/// Concurrent admin connections; more are refused.
const MAX_CONNECTIONS: usize = 16;

/// Binds the admin listener and serves it on a background thread; returns the bound address.
pub fn start(addr: SocketAddr, audit_dir: Option<PathBuf>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let audit_dir = Arc::new(audit_dir);
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
                let audit_dir = Arc::clone(&audit_dir);
                let spawned =
                    std::thread::Builder::new()
                        .name("admin-conn".into())
                        .spawn(move || {
                            serve(stream, audit_dir.as_ref().as_deref());
                            active.fetch_sub(1, Ordering::Relaxed);
                        });
                if spawned.is_err() {
                    tracing::warn!("cannot start an admin connection thread");
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut stream: TcpStream, audit_dir: Option<&std::path::Path>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let limits = Limits {
        max_body_bytes: 0,
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
    let id = RequestId::generate(crate::audit::now_ms().unsigned_abs());
    let route = RouteReport::none(std::time::Instant::now());
    let mut out = Vec::new();
    let answer = head.and_then(|head| {
        let target =
            String::from_utf8_lossy(buf.get(head.target.clone()).unwrap_or_default()).into_owned();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        match (head.method, path) {
            (Method::Get, "/v1/audit") => audit(audit_dir, query),
            (Method::Get, "/healthz") => Ok(serde_json::json!({"status": "ok"})),
            (_, "/v1/audit" | "/healthz") => Err(Error::new(
                ErrorKind::MethodNotAllowed,
                format!("method not allowed on `{path}`"),
            )),
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("unknown admin path `{path}`; the admin listener serves GET /v1/audit"),
            )),
        }
    });
    match answer {
        Ok(body) => {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            respond::full(
                &mut out,
                200,
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

fn audit(dir: Option<&std::path::Path>, raw_query: &str) -> Result<serde_json::Value, Error> {
    let q = Query::parse(raw_query).map_err(|e| Error::new(ErrorKind::BadRequest, e.0))?;
    let Some(dir) = dir else {
        return Err(Error::new(
            ErrorKind::NotFound,
            "auditing is off on this node (--no-audit)",
        ));
    };
    let records = query::run(dir, &q);
    let data: Vec<serde_json::Value> = records.iter().map(query::to_json).collect();
    Ok(serde_json::json!({ "object": "list", "data": data }))
}
