//! OpenTelemetry traces over OTLP/HTTP (`--otlp-endpoint`), exported from one side thread.
//!
//! Cores hand finished spans to a bounded channel ([`QUEUE`]) with `try_send`: a full queue
//! drops the span and counts it (`switchyard_trace_spans_dropped_total`), so tracing never
//! makes a request wait. The thread sends batches of up to [`BATCH`] spans, at least once a
//! second, as OTLP/HTTP JSON (`POST <endpoint>/v1/traces`, ids in hex as the OTLP JSON
//! encoding asks) through the side threads' blocking HTTP client; a failed export is counted
//! and the batch dropped (no retry queue grows behind a dead collector).
//!
//! Spans follow the OTel GenAI conventions: one SERVER span per request, its parent the
//! client's `traceparent` span, and one CLIENT span per upstream attempt (`chat {model}`),
//! whose id the upstream receives as its parent in `traceparent`. Message content is never
//! recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::codec::hex;
use crate::http::url::{Url, parse_url};

/// Spans waiting for the exporter, at most.
pub const QUEUE: usize = 4096;
/// Spans per export, at most.
pub const BATCH: usize = 512;
/// Longest a span waits for its batch.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// One export's deadline.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// OTel span kinds (OTLP's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// A finished span.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, Attr)>,
    /// `Some(message)`: the span ended in error.
    pub error: Option<String>,
}

/// The exporter: the cores' side of the channel and its counters.
#[derive(Debug)]
pub struct Exporter {
    tx: Mutex<Option<SyncSender<Span>>>,
    pub dropped: AtomicU64,
    pub exported: AtomicU64,
    pub failed: AtomicU64,
}

impl Exporter {
    /// Starts the export thread for `endpoint` (`http(s)://host[:port][/prefix]`; spans go to
    /// `<prefix>/v1/traces` unless the URL already ends with it).
    pub fn start(endpoint: &str, service: &str) -> Result<Arc<Self>, String> {
        let mut url = parse_url(endpoint.trim_end_matches('/')).ok_or_else(|| {
            format!("`--otlp-endpoint {endpoint}` is not an http:// or https:// URL")
        })?;
        if !url.path.ends_with("/v1/traces") {
            url.path.push_str("/v1/traces");
        }
        let tls = url
            .tls
            .then(crate::control::table::default_client_tls)
            .transpose()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let exporter = Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let shared = Arc::clone(&exporter);
        let service = service.to_owned();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&rx, &url, tls.as_ref(), &service, &shared))
            .map_err(|e| format!("cannot start the OTLP export thread: {e}"))?;
        Ok(exporter)
    }

    /// Queues a span; drops (and counts) it when the queue is full.
    pub fn send(&self, span: Span) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(span) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Shutdown: no more spans; the thread sends what is queued and stops.
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

fn run(
    rx: &Receiver<Span>,
    url: &Url,
    tls: Option<&Arc<rustls::ClientConfig>>,
    service: &str,
    counters: &Exporter,
) {
    let mut batch: Vec<Span> = Vec::with_capacity(BATCH);
    let mut due = Instant::now() + FLUSH_EVERY;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        let closed = match rx.recv_timeout(wait) {
            Ok(span) => {
                batch.push(span);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if batch.len() >= BATCH || Instant::now() >= due || closed {
            if !batch.is_empty() {
                let body = request_json(service, &batch).to_string();
                let sent = crate::upstream::blocking::call_within(
                    url,
                    tls.cloned(),
                    "POST",
                    "content-type: application/json\r\n",
                    body.as_bytes(),
                    EXPORT_TIMEOUT,
                );
                let n = batch.len() as u64;
                match sent {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        counters.exported.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok((status, _)) => {
                        fail(counters, n, &format!("the collector answered {status}"));
                    }
                    Err(e) => fail(counters, n, &e),
                }
                batch.clear();
            }
            due = Instant::now() + FLUSH_EVERY;
        }
        if closed {
            return;
        }
    }
}

fn fail(counters: &Exporter, n: u64, why: &str) {
    counters.failed.fetch_add(n, Ordering::Relaxed);
    if let Some(suppressed) = crate::runtime::logging::allow(&crate::runtime::logging::OTLP_EXPORT)
    {
        tracing::warn!(
            spans = n,
            error = why,
            suppressed,
            "OTLP trace export failed; spans dropped"
        );
    }
}

/// An OTLP `ExportTraceServiceRequest` in its JSON encoding.
#[must_use]
pub fn request_json(service: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans.iter().map(span_json).collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [attr_json("service.name", &Attr::Str(service.to_owned()))]},
            "scopeSpans": [{
                "scope": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
}

fn span_json(s: &Span) -> Value {
    let mut v = json!({
        "traceId": hex(&s.trace_id),
        "spanId": hex(&s.span_id),
        "name": s.name,
        "kind": s.kind as u8,
        "startTimeUnixNano": s.start_unix_ns.to_string(),
        "endTimeUnixNano": s.end_unix_ns.to_string(),
        "attributes": s.attributes.iter().map(|(k, a)| attr_json(k, a)).collect::<Vec<_>>(),
        "status": match &s.error {
            None => json!({"code": 1}),
            Some(m) => json!({"code": 2, "message": m}),
        },
    });
    if let Some(p) = s.parent {
        v["parentSpanId"] = hex(&p).into();
    }
    v
}

fn attr_json(key: &str, a: &Attr) -> Value {
    let value = match a {
        Attr::Str(s) => json!({"stringValue": s}),
        Attr::Int(i) => json!({"intValue": i.to_string()}),
        Attr::Bool(b) => json!({"boolValue": b}),
    };
    json!({"key": key, "value": value})
}

/// Wall-clock time now, ns since the Unix epoch.
#[must_use]
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let span = Span {
            trace_id: [0x4b; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent: Some([9; 8]),
            name: "chat m".into(),
            kind: Kind::Client,
            start_unix_ns: 1,
            end_unix_ns: 2,
            attributes: vec![
                ("gen_ai.request.model", Attr::Str("m".into())),
                ("switchyard.attempt", Attr::Int(2)),
            ],
            error: Some("boom".into()),
        };
        let v = request_json("svc", &[span]);
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4b".repeat(16));
        assert_eq!(s["spanId"], "0102030405060708");
        assert_eq!(s["parentSpanId"], "0909090909090909");
        assert_eq!(s["kind"], 3);
        assert_eq!(s["startTimeUnixNano"], "1");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "2");
        assert_eq!(s["status"]["code"], 2);
    }
}
