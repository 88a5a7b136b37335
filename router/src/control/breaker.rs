//! Per-endpoint circuit breakers and rate-limit cooldowns, shared by the cores of a host
//! (atomics only: no lock on the request path once a core has the endpoint's [`Breaker`]).
//!
//! - **Closed**: every request may go. [`FAILURES_TO_OPEN`] consecutive failures (cannot
//!   connect, timeout, bad response, 5xx, 401/403) open it; so does a failure ratio of half
//!   or more over at least 20 attempts in 10 s on one core (`control::balance::Load`, kept
//!   per core so that a success writes no shared line), for an endpoint that fails often
//!   without failing five times in a row.
//! - **Open** for `BASE_EJECTION_MS × 2^(ejections − 1)`, capped at [`MAX_EJECTION_MS`],
//!   ±20% jitter (so hosts and endpoints do not come back in step): candidates skip it.
//! - **Half-open** when that time is up: exactly one request (a compare-and-swap on
//!   `probing`) goes as a probe; its success closes the breaker, its failure opens it again
//!   for the next, longer step. The ejection count is forgotten after
//!   [`EJECTIONS_FORGOTTEN_MS`] without one.
//! - **Cooling**: a 429 (or a 503/529 with `Retry-After`) sets a cooldown of its
//!   `Retry-After` / `retry-after-ms` (at most [`MAX_COOLDOWN_MS`]; [`DEFAULT_COOLDOWN_MS`]
//!   without one) during which the endpoint is skipped; a rate limit is not a failure.
//!
//! When every candidate of a request is skipped, the one that recovers first is tried rather
//! than failing outright (`gateway::answer`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

/// Consecutive failures that open a closed breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// The first ejection's length.
pub const BASE_EJECTION_MS: i64 = 5_000;
/// The longest ejection.
pub const MAX_EJECTION_MS: i64 = 300_000;
/// After this long without an ejection, the next one starts from the base again.
pub const EJECTIONS_FORGOTTEN_MS: i64 = 300_000;
/// A rate limit's cooldown when the upstream says none.
pub const DEFAULT_COOLDOWN_MS: i64 = 5_000;
/// The longest cooldown a `Retry-After` may set.
pub const MAX_COOLDOWN_MS: i64 = 60_000;

/// Whether a request may go to an endpoint now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// The one request of a half-open breaker: report how it went with `probe = true`.
    Probe,
    /// Skip it; it may take requests again at `until_ms`.
    No {
        until_ms: i64,
    },
}

/// What one attempt showed of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It answered with this status (and `Retry-After`, in ms).
    Answer { status: u16, retry_ms: Option<i64> },
    /// It could not be reached, timed out, or sent something that is not HTTP.
    Broken,
    /// Nothing about the endpoint (the client left, the request could not be translated, …).
    Nothing,
}

impl Seen {
    /// Whether the attempt counts as the endpoint failing (as [`Breaker::record`] judges):
    /// `Some(true)` failed, `Some(false)` answered, `None` nothing to judge.
    #[must_use]
    pub fn failed(self) -> Option<bool> {
        match self {
            Seen::Answer { status, .. } => {
                Some(matches!(status, 401 | 403 | 408) || (status >= 500 && status != 429))
            }
            Seen::Broken => Some(true),
            Seen::Nothing => None,
        }
    }
}

/// One endpoint's breaker and cooldown.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    /// 0: closed. Else the end of the current ejection (half-open once past).
    open_until: AtomicI64,
    ejections: AtomicU32,
    last_ejection: AtomicI64,
    probing: AtomicBool,
    cooling_until: AtomicI64,
    /// Every ejection since start (never forgotten).
    ejected_total: std::sync::atomic::AtomicU64,
}

impl Breaker {
    /// Whether a request may go now (taking the probe slot of a half-open breaker).
    pub fn admit(&self, now_ms: i64) -> Admit {
        let cooling = self.cooling_until.load(Ordering::Relaxed);
        if cooling > now_ms {
            return Admit::No { until_ms: cooling };
        }
        let open = self.open_until.load(Ordering::Acquire);
        if open == 0 {
            return Admit::Yes;
        }
        if open > now_ms {
            return Admit::No { until_ms: open };
        }
        match self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Admit::Probe,
            // Another request is the probe: its answer decides.
            Err(_) => Admit::No {
                until_ms: now_ms + 1_000,
            },
        }
    }

    /// Whether [`Breaker::admit`] would let a request go now (no probe slot taken).
    #[must_use]
    pub fn admissible(&self, now_ms: i64) -> bool {
        let open = self.open_until.load(Ordering::Acquire);
        self.cooling_until.load(Ordering::Relaxed) <= now_ms
            && (open == 0 || (open <= now_ms && !self.probing.load(Ordering::Relaxed)))
    }

    /// The endpoint answered (`probe`: the request was the half-open probe).
    pub fn success(&self, probe: bool) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if probe {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
    }

    /// The endpoint failed (`probe`: the request was the half-open probe).
    pub fn failure(&self, now_ms: i64, probe: bool) {
        if probe {
            self.eject(now_ms);
            self.probing.store(false, Ordering::Release);
            return;
        }
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= FAILURES_TO_OPEN
            && self
                .open_until
                .compare_exchange(0, now_ms + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // This core closed the gap (`now + 1` marks it open while the length is worked
            // out); other cores see it open at once.
            self.eject(now_ms);
        }
    }

    fn eject(&self, now_ms: i64) {
        if now_ms - self.last_ejection.load(Ordering::Relaxed) > EJECTIONS_FORGOTTEN_MS {
            self.ejections.store(0, Ordering::Relaxed);
        }
        self.last_ejection.store(now_ms, Ordering::Relaxed);
        self.ejected_total.fetch_add(1, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = BASE_EJECTION_MS
            .saturating_mul(1_i64 << n)
            .min(MAX_EJECTION_MS);
        self.failures.store(0, Ordering::Relaxed);
        self.open_until
            .store(now_ms + jittered(length, now_ms), Ordering::Release);
    }

    /// Records what an attempt showed (`probe`: it was the half-open probe): a 429 cools
    /// the endpoint down and is no failure; 5xx, 408, 401 and 403 are failures (a 503 or 529
    /// with `Retry-After` also cools it down); other answers are successes.
    pub fn record(&self, now_ms: i64, probe: bool, seen: Seen) {
        match seen {
            Seen::Answer {
                status: 429,
                retry_ms,
            } => {
                self.cool(now_ms, retry_ms);
                self.success(probe);
            }
            Seen::Answer { status, retry_ms }
                if matches!(status, 401 | 403 | 408) || status >= 500 =>
            {
                if retry_ms.is_some() && matches!(status, 503 | 529) {
                    self.cool(now_ms, retry_ms);
                }
                self.failure(now_ms, probe);
            }
            Seen::Answer { .. } => self.success(probe),
            Seen::Broken => self.failure(now_ms, probe),
            Seen::Nothing => {
                if probe {
                    // The probe told nothing: the next request may probe.
                    self.probing.store(false, Ordering::Release);
                }
            }
        }
    }

    /// An active health check found the endpoint down: open the breaker now, unless it is
    /// already open (the ejection under way keeps its length).
    pub fn force_open(&self, now_ms: i64) {
        if self
            .open_until
            .compare_exchange(0, now_ms + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.eject(now_ms);
        }
    }

    /// An active health check found the endpoint up again: close the breaker without waiting
    /// for the ejection to end.
    pub fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// Whether the breaker is open or half-open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// The upstream asked for a pause (a 429's `Retry-After`): skip it for `ms` (capped).
    pub fn cool(&self, now_ms: i64, ms: Option<i64>) {
        let ms = ms.unwrap_or(DEFAULT_COOLDOWN_MS).clamp(0, MAX_COOLDOWN_MS);
        self.cooling_until.fetch_max(now_ms + ms, Ordering::Relaxed);
    }

    /// When the current cooldown ends (ms since the epoch; in the past: none).
    #[must_use]
    pub fn cooling_until(&self) -> i64 {
        self.cooling_until.load(Ordering::Relaxed)
    }

    /// A cooldown another host of the fleet learned (`until_ms`, capped like a local one).
    pub fn cool_until(&self, now_ms: i64, until_ms: i64) {
        let until = until_ms.min(now_ms + MAX_COOLDOWN_MS);
        self.cooling_until.fetch_max(until, Ordering::Relaxed);
    }

    /// The state as `switchyard_endpoint_state` gives it: 0 closed, 1 half-open, 2 open,
    /// 3 cooling (closed, but skipped until a `Retry-After` passes).
    #[must_use]
    pub fn state_code(&self, now_ms: i64) -> u8 {
        let open = self.open_until.load(Ordering::Acquire);
        match open {
            0 if self.cooling_until.load(Ordering::Relaxed) > now_ms => 3,
            0 => 0,
            t if t > now_ms => 2,
            _ => 1,
        }
    }

    /// Every ejection since the router started.
    #[must_use]
    pub fn ejected_total(&self) -> u64 {
        self.ejected_total.load(Ordering::Relaxed)
    }

    /// The `breaker` object of `GET /v1/endpoints`.
    #[must_use]
    pub fn to_json(&self, now_ms: i64) -> Value {
        let open = self.open_until.load(Ordering::Acquire);
        let cooling = self.cooling_until.load(Ordering::Relaxed);
        let state = if open == 0 {
            "closed"
        } else if open > now_ms {
            "open"
        } else {
            "half_open"
        };
        json!({
            "state": state,
            "open_until": (open > now_ms).then(|| crate::clock::iso8601(open)),
            "cooling_until": (cooling > now_ms).then(|| crate::clock::iso8601(cooling)),
            "consecutive_failures": self.failures.load(Ordering::Relaxed),
            "ejections": self.ejections.load(Ordering::Relaxed),
        })
    }
}

/// `length` ± 20%, from a cheap hash of the time (no shared random state).
fn jittered(length: i64, now_ms: i64) -> i64 {
    let h = (now_ms as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29);
    // A fraction in [-0.2, 0.2], in thousandths.
    let thousandths = i64::try_from(h % 401).unwrap_or(200) - 200;
    length + length * thousandths / 1000
}

/// Every endpoint's breaker, by id: shared by the cores (which keep their own map of the
/// `Arc`s) and the admin API; kept across table reloads.
#[derive(Debug, Default)]
pub struct Breakers {
    by_id: Mutex<HashMap<String, Arc<Breaker>>>,
}

impl Breakers {
    /// The breaker of `endpoint` (made on first use).
    pub fn get(&self, endpoint: &str) -> Arc<Breaker> {
        let mut map = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(endpoint.to_owned()).or_default())
    }
}

/// A `Retry-After` (seconds) or `retry-after-ms` value, in ms; HTTP dates are not read.
#[must_use]
pub fn retry_after_ms(retry_after: Option<&str>, retry_after_ms: Option<&str>) -> Option<i64> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "bounded to 1e9 here and to a minute by the caller"
        )]
        return Some(ms.min(1e9) as i64);
    }
    retry_after
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(|s| s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_lets_one_probe_through() {
        let b = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            b.failure(1_000, false);
            assert_eq!(b.admit(1_000), Admit::Yes);
        }
        b.success(false);
        for _ in 0..FAILURES_TO_OPEN {
            assert_eq!(b.admit(2_000), Admit::Yes);
            b.failure(2_000, false);
        }
        let Admit::No { until_ms } = b.admit(2_001) else {
            panic!("not open")
        };
        assert!(
            (2_000 + 4_000..=2_000 + 6_000).contains(&until_ms),
            "{until_ms}"
        );
        // Half-open: one probe, the others wait for it.
        assert_eq!(b.admit(until_ms), Admit::Probe);
        assert!(matches!(b.admit(until_ms), Admit::No { .. }));
        // The probe fails: open again, for about twice as long.
        b.failure(until_ms, true);
        let Admit::No { until_ms: again } = b.admit(until_ms + 1) else {
            panic!("not reopened")
        };
        assert!(
            (8_000..=12_000).contains(&(again - until_ms)),
            "{}",
            again - until_ms
        );
        assert_eq!(b.admit(again), Admit::Probe);
        b.success(true);
        assert_eq!(b.admit(again + 1), Admit::Yes);
        assert_eq!(b.to_json(again + 1)["state"], "closed");
    }

    #[test]
    fn cooldowns_follow_retry_after_and_are_capped() {
        let b = Breaker::default();
        b.cool(0, retry_after_ms(Some("7"), None));
        assert_eq!(b.admit(6_999), Admit::No { until_ms: 7_000 });
        assert_eq!(b.admit(7_000), Admit::Yes);
        b.cool(10_000, retry_after_ms(Some("7"), Some("250")));
        assert_eq!(b.admit(10_100), Admit::No { until_ms: 10_250 });
        b.cool(20_000, retry_after_ms(Some("3600"), None));
        assert_eq!(b.admit(20_001), Admit::No { until_ms: 80_000 });
        b.cool(
            100_000,
            retry_after_ms(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
        );
        assert_eq!(
            b.admit(100_001),
            Admit::No {
                until_ms: 100_000 + DEFAULT_COOLDOWN_MS
            }
        );
    }
}
