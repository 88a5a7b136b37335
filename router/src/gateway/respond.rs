//! Writing responses to the client: status line, the headers every response carries, and
//! error bodies. Everything is written into the connection's reusable output buffer and sent
//! with one write.

use std::time::{Instant, SystemTime};

use crate::clock::civil_from_days;
use crate::dialect::Wire;
use crate::gateway::error::Error;

/// The `x-switchyard-route` report: which endpoint and rule served the request.
#[derive(Clone, Copy, Debug)]
pub struct RouteReport<'a> {
    pub endpoint: Option<&'a str>,
    pub rule: Option<u32>,
    pub latency_ms: u64,
}

impl RouteReport<'_> {
    /// Before any routing decision.
    #[must_use]
    pub fn none(started: Instant) -> Self {
        RouteReport {
            endpoint: None,
            rule: None,
            latency_ms: elapsed_ms(started),
        }
    }
}

/// Milliseconds since `t`.
#[must_use]
pub fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request id: the client's `X-Request-Id`, or one generated for it.
#[derive(Clone, Copy, Debug)]
pub enum RequestId<'b> {
    Given(&'b [u8]),
    Generated([u8; 20]),
}

impl RequestId<'_> {
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Given(b) => b,
            Self::Generated(b) => b,
        }
    }

    /// `swy-` and 16 hex digits of `n`.
    #[must_use]
    pub fn generate(n: u64) -> RequestId<'static> {
        let mut digits = [0u8; 16];
        crate::codec::push_hex16(&mut digits, n);
        let mut b = *b"swy-0000000000000000";
        for (slot, d) in b.iter_mut().skip(4).zip(digits) {
            *slot = d;
        }
        RequestId::Generated(b)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

/// Appends the status line and the headers every response carries.
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&http_date(SystemTime::now()));
    out.extend_from_slice(b"\r\nserver: switchyard\r\n");
}

/// Appends `x-request-id` and `x-switchyard-route`.
pub fn ids(out: &mut Vec<u8>, id: &RequestId<'_>, route: &RouteReport<'_>) {
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\nx-switchyard-route: endpoint=");
    out.extend_from_slice(route.endpoint.unwrap_or("none").as_bytes());
    out.extend_from_slice(b"; rule=");
    match route.rule {
        Some(r) => push_u64(out, u64::from(r)),
        None => out.extend_from_slice(b"none"),
    }
    out.extend_from_slice(b"; latency_ms=");
    push_u64(out, route.latency_ms);
    out.extend_from_slice(b"\r\n");
}

/// A complete response with a fixed body.
#[expect(
    clippy::too_many_arguments,
    reason = "one flat call per response kind reads best"
)]
pub fn full(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    id: &RequestId<'_>,
    route: &RouteReport<'_>,
    close: bool,
    extra: &[(&str, &str)],
) {
    status_line(out, status);
    ids(out, id, route);
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A complete error response in the client's dialect; returns the body's length.
pub fn error(
    out: &mut Vec<u8>,
    err: &Error,
    id: &RequestId<'_>,
    route: &RouteReport<'_>,
    close: bool,
    wire: Wire,
) -> usize {
    let mut body = Vec::with_capacity(160 + err.message.len());
    err.write_body_in(&mut body, wire);
    let retry_after = err.retry_after.map(|s| s.to_string());
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(allow) = err.allow {
        extra.push(("allow", allow));
    } else if let Some(s) = &retry_after {
        extra.push(("retry-after", s));
    }
    if err.no_retry {
        extra.push(("x-should-retry", "false"));
    }
    full(
        out,
        err.kind.status(),
        "application/json",
        &body,
        id,
        route,
        close,
        &extra,
    );
    body.len()
}

pub use crate::codec::push_u64;

/// Appends `n` in lowercase hex (chunk sizes).
pub fn push_hex(out: &mut Vec<u8>, n: usize) {
    crate::codec::push_hex(out, n as u64);
}

/// An IMF-fixdate (RFC 9110 §5.6.7), cached per thread for the current second.
#[must_use]
pub fn http_date(now: SystemTime) -> [u8; 29] {
    thread_local! {
        static CACHE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let text = format_date(secs);
        c.set((secs, text));
        text
    })
}

fn format_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = [0u8; 29];
    let mut w = Vec::with_capacity(29);
    w.extend_from_slice(DAYS[usize::try_from(days % 7).unwrap_or(0)]);
    w.extend_from_slice(b", ");
    two(&mut w, day);
    w.push(b' ');
    w.extend_from_slice(MONTHS[usize::try_from(month - 1).unwrap_or(0) % 12]);
    w.push(b' ');
    push_u64(&mut w, year);
    w.push(b' ');
    two(&mut w, rem / 3600);
    w.push(b':');
    two(&mut w, rem % 3600 / 60);
    w.push(b':');
    two(&mut w, rem % 60);
    w.extend_from_slice(b" GMT");
    for (o, b) in out.iter_mut().zip(w) {
        *o = b;
    }
    out
}

fn two(w: &mut Vec<u8>, n: u64) {
    w.push(b'0' + (n / 10 % 10) as u8);
    w.push(b'0' + (n % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(&format_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_date(1_784_764_800),
            b"Thu, 23 Jul 2026 00:00:00 GMT"
        );
        assert_eq!(&format_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, 18_446_744_073_709_551_615);
        out.push(b' ');
        push_hex(&mut out, 0x1a2b);
        assert_eq!(out, b"0 18446744073709551615 1a2b");
        assert_eq!(RequestId::generate(0xabc).as_str(), "swy-0000000000000abc");
    }
}
