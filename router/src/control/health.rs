//! Endpoint health as this node observes it from real traffic (passive: no probes).
//!
//! After each attempt at an endpoint the core reports whether the endpoint answered. A
//! failure is always recorded; a success only when the core last saw a failure or has not
//! reported one for a second, so a busy endpoint costs the shared map one write per core per
//! second, not one per request. `GET /v1/endpoints` shows the result.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// How often a core reports an endpoint that keeps answering.
pub const SUCCESS_REPORT_MS: i64 = 1000;

/// What is known about one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The last active health check: when, and why it failed (`None`: it passed).
    pub last_probe: Option<(i64, Option<String>)>,
    pub last_success_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u64,
}

/// Every endpoint's observations, by id (shared by all cores and the admin API), and its
/// circuit breaker.
#[derive(Debug, Default)]
pub struct Health {
    by_id: Mutex<HashMap<String, Observed>>,
    pub breakers: crate::control::breaker::Breakers,
    /// Each core's load per endpoint.
    pub loads: crate::control::balance::Loads,
}

impl Health {
    pub fn success(&self, endpoint: &str, now_ms: i64) {
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let o = map.entry(endpoint.to_owned()).or_default();
        o.last_success_ms = Some(o.last_success_ms.map_or(now_ms, |t| t.max(now_ms)));
        o.consecutive_failures = 0;
    }

    pub fn failure(&self, endpoint: &str, now_ms: i64, error: &str) {
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let o = map.entry(endpoint.to_owned()).or_default();
        o.last_failure_ms = Some(now_ms);
        o.last_error = Some(error.chars().take(300).collect());
        o.consecutive_failures += 1;
    }

    /// An active health check ran (`error`: why it failed).
    pub fn probed(&self, endpoint: &str, now_ms: i64, error: Option<&str>) {
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let o = map.entry(endpoint.to_owned()).or_default();
        o.last_probe = Some((now_ms, error.map(|e| e.chars().take(300).collect())));
    }

    #[must_use]
    pub fn get(&self, endpoint: &str) -> Option<Observed> {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .cloned()
    }

    /// The `health` object of `GET /v1/endpoints`: `status` is `unhealthy` while the
    /// endpoint's breaker is open or the last thing known of it (an attempt or an active
    /// check, whichever is later) failed; `healthy` when that succeeded; `unknown` before
    /// either. Beside it: what traffic showed, the last check (`probe`) and the `breaker`.
    #[must_use]
    pub fn to_json(&self, endpoint: &str) -> Value {
        let iso = |ms: Option<i64>| ms.map(crate::clock::iso8601);
        let now = crate::clock::now_ms();
        let breaker = self.breakers.get(endpoint);
        let o = self.get(endpoint).unwrap_or_default();
        let traffic_failed = o.consecutive_failures > 0 && o.last_failure_ms >= o.last_success_ms;
        let traffic_at = o.last_success_ms.max(o.last_failure_ms);
        let status = match (&o.last_probe, traffic_at) {
            _ if breaker.is_open() => "unhealthy",
            (Some((at, error)), t) if Some(*at) > t => {
                if error.is_some() {
                    "unhealthy"
                } else {
                    "healthy"
                }
            }
            (_, Some(_)) if traffic_failed => "unhealthy",
            (_, Some(_)) => "healthy",
            _ => "unknown",
        };
        let mut v = json!({
            "status": status,
            "source": match (traffic_at, &o.last_probe) {
                (None, None) => "no request has reached it yet and it has no health check",
                (None, Some(_)) => "active health checks",
                (Some(_), None) => "observed traffic",
                (Some(_), Some(_)) => "observed traffic and active health checks",
            },
            "last_success_at": iso(o.last_success_ms),
            "last_failure_at": iso(o.last_failure_ms),
            "last_error": o.last_error,
            "consecutive_failures": o.consecutive_failures,
        });
        if let Some((at, error)) = &o.last_probe {
            v["probe"] = json!({"last_at": crate::clock::iso8601(*at), "ok": error.is_none(), "error": error});
        }
        v["breaker"] = breaker.to_json(now);
        let (in_flight, ttft_us) = self.loads.summary(endpoint);
        v["in_flight"] = in_flight.into();
        v["recent_ttft_ms"] = if ttft_us == 0 {
            Value::Null
        } else {
            json!(ttft_us as f64 / 1000.0)
        };
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_last_attempt() {
        let h = Health::default();
        assert_eq!(h.to_json("a")["status"], "unknown");
        h.failure("a", 10, "connection refused");
        h.failure("a", 20, "connection refused");
        assert_eq!(h.to_json("a")["status"], "unhealthy");
        assert_eq!(h.to_json("a")["consecutive_failures"], 2);
        h.success("a", 30);
        let j = h.to_json("a");
        assert_eq!(j["status"], "healthy");
        assert_eq!(j["last_error"], "connection refused");
        assert_eq!(j["consecutive_failures"], 0);
    }
}
