//! Labelled metric series, kept per core and merged when `/metrics` is scraped.
//!
//! Each core writes only its own series: a series is found through the core's own map
//! ([`Local`], no lock) and counted with relaxed atomics on memory no other core writes, so
//! counting never moves a cache line between cores. A label set a core meets for the first
//! time is also registered in that core's [`Family`] (a mutex only the scrape contends for),
//! where the scrape finds it. Label values come from the serving table (endpoint ids,
//! tenants, rule names, declared model names) or from fixed vocabularies, never from client
//! input, so the number of series is bounded by the table.
//!
//! Latencies are kept in microseconds and token counts as they are, in fixed buckets (OTel
//! GenAI semantic conventions' advisory boundaries, widened as `README.md` says).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Request and attempt durations (µs): the semconv ×2 ladder 10 ms – 81.92 s, then 163.84 s
/// and 327.68 s for long reasoning calls.
pub const DURATION_US: &[u64] = &[
    10_000,
    20_000,
    40_000,
    80_000,
    160_000,
    320_000,
    640_000,
    1_280_000,
    2_560_000,
    5_120_000,
    10_240_000,
    20_480_000,
    40_960_000,
    81_920_000,
    163_840_000,
    327_680_000,
];

/// Time to first token (µs): semconv 1 ms – 10 s, then 15 – 60 s (reasoning models).
pub const TTFT_US: &[u64] = &[
    1_000, 5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 250_000, 500_000, 750_000,
    1_000_000, 2_500_000, 5_000_000, 7_500_000, 10_000_000, 15_000_000, 20_000_000, 30_000_000,
    45_000_000, 60_000_000,
];

/// Time per output token (µs): 1 ms (fast models), then semconv 10 ms – 2.5 s.
pub const TPOT_US: &[u64] = &[
    1_000, 10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000, 500_000,
    750_000, 1_000_000, 2_500_000,
];

/// Tokens per request: the semconv ×4 ladder.
pub const TOKENS: &[u64] = &[
    1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
    67_108_864,
];

/// The router's own time per request (µs): 5 µs – 10 ms.
pub const OVERHEAD_US: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// Adds `n` to a value only one thread writes: a load and a store, without the locked
/// read-modify-write of `fetch_add` (the series here are each written by their own core;
/// scrapes only read them).
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A histogram over fixed bucket bounds (in the unit observed), written by one core.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    #[must_use]
    pub fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: u64) {
        // The first bucket whose bound is ≥ v (Prometheus `le`).
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            bump(c, 1);
        }
        bump(&self.sum, v);
    }

    /// Adds this histogram's counts into `into`.
    pub fn merge_into(&self, into: &mut Merged) {
        if into.counts.len() != self.counts.len() {
            into.bounds = self.bounds;
            into.counts = vec![0; self.counts.len()];
        }
        for (m, c) in into.counts.iter_mut().zip(self.counts.iter()) {
            *m = m.wrapping_add(c.load(Ordering::Relaxed));
        }
        into.sum = into.sum.wrapping_add(self.sum.load(Ordering::Relaxed));
    }
}

/// A histogram summed over cores, for exposition.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl Merged {
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |a, &c| a.wrapping_add(c))
    }
}

/// A counter, written by one core.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        bump(&self.0, n);
    }
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One series with its label values (in the family's label order).
#[derive(Debug)]
pub struct Entry<S, const N: usize> {
    pub labels: [Box<str>; N],
    pub series: S,
}

impl<S, const N: usize> Entry<S, N> {
    fn has(&self, labels: &[&str; N]) -> bool {
        self.labels.iter().zip(labels).all(|(a, b)| **a == **b)
    }
}

/// One core's series of a family, as the scrape sees them.
#[derive(Debug)]
pub struct Family<S, const N: usize> {
    entries: Mutex<Vec<Arc<Entry<S, N>>>>,
}

impl<S, const N: usize> Default for Family<S, N> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<S, const N: usize> Family<S, N> {
    /// Calls `f` with each series (under this core's family lock).
    pub fn each(&self, mut f: impl FnMut(&Entry<S, N>)) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries.iter() {
            f(e);
        }
    }
}

/// One core's map from label values to its series of a family: a lookup is a hash of the
/// label values and a comparison, with no lock and no allocation once the series exists.
#[derive(Debug)]
pub struct Local<S, const N: usize> {
    by_hash: RefCell<ByHash<S, N>>,
    /// The series used last: traffic repeats its labels, and comparing them is cheaper than
    /// hashing them.
    last: RefCell<Option<Arc<Entry<S, N>>>>,
}

/// Series by the hash of their label values (a collision keeps several).
type ByHash<S, const N: usize> = HashMap<u64, Vec<Arc<Entry<S, N>>>, BuildHasherDefault<Prehashed>>;

/// The map's keys are hashes already: used as they are.
#[derive(Debug, Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The hash of label values (Fx: they come from the table, see [`crate::hash`]).
fn label_hash<const N: usize>(labels: &[&str; N]) -> u64 {
    use std::hash::Hash;
    let mut h = crate::hash::Fx::default();
    for l in labels {
        l.hash(&mut h);
    }
    h.finish()
}

impl<S, const N: usize> Default for Local<S, N> {
    fn default() -> Self {
        Self {
            by_hash: RefCell::new(HashMap::default()),
            last: RefCell::new(None),
        }
    }
}

impl<S, const N: usize> Local<S, N> {
    fn hash(labels: &[&str; N]) -> u64 {
        label_hash(labels)
    }

    fn find<'m>(
        bucket: &'m [Arc<Entry<S, N>>],
        labels: &[&str; N],
    ) -> Option<&'m Arc<Entry<S, N>>> {
        bucket.iter().find(|e| e.has(labels))
    }

    /// The series of `labels` itself (made by `make` and registered in `family` on first
    /// use).
    pub fn get(
        &self,
        family: &Family<S, N>,
        labels: [&str; N],
        make: impl FnOnce() -> S,
    ) -> Arc<Entry<S, N>> {
        let mut map = self.by_hash.borrow_mut();
        let bucket = map.entry(Self::hash(&labels)).or_default();
        if let Some(e) = Self::find(bucket, &labels) {
            *self.last.borrow_mut() = Some(Arc::clone(e));
            return Arc::clone(e);
        }
        let entry = Arc::new(Entry {
            labels: labels.map(Box::from),
            series: make(),
        });
        family
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&entry));
        bucket.push(Arc::clone(&entry));
        entry
    }

    /// Calls `f` with the series of `labels` (see [`Local::get`]); a series that exists is
    /// used without touching its reference count.
    pub fn with<R>(
        &self,
        family: &Family<S, N>,
        labels: [&str; N],
        make: impl FnOnce() -> S,
        f: impl FnOnce(&S) -> R,
    ) -> R {
        if let Some(e) = self.last.borrow().as_ref().filter(|e| e.has(&labels)) {
            return f(&e.series);
        }
        f(&self.get(family, labels, make).series)
    }
}

/// Labels of the per-request families, in order.
pub const REQUEST_LABELS: [&str; 6] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "switchyard_endpoint",
    "tenant",
    "rule",
];

/// What is counted once per request, by [`REQUEST_LABELS`].
#[derive(Debug)]
pub struct RequestSeries {
    /// By status class: 1xx … 5xx.
    pub by_class: [Counter; 5],
    pub duration: Histogram,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub tokens_input: Histogram,
    pub tokens_output: Histogram,
    pub cost_micros: Counter,
    pub overhead: Histogram,
    /// Answers cut short after their head (a broken stream, a short body).
    pub interrupted: Counter,
}

impl Default for RequestSeries {
    fn default() -> Self {
        Self {
            by_class: Default::default(),
            duration: Histogram::new(DURATION_US),
            ttft: Histogram::new(TTFT_US),
            tpot: Histogram::new(TPOT_US),
            tokens_input: Histogram::new(TOKENS),
            tokens_output: Histogram::new(TOKENS),
            cost_micros: Counter::default(),
            overhead: Histogram::new(OVERHEAD_US),
            interrupted: Counter::default(),
        }
    }
}

/// Labels of the per-attempt families, in order.
pub const ATTEMPT_LABELS: [&str; 4] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "switchyard_endpoint",
];

/// What is counted once per upstream attempt, by [`ATTEMPT_LABELS`].
#[derive(Debug)]
pub struct AttemptSeries {
    /// By [`Outcome`] index.
    pub outcomes: [Counter; Outcome::ALL.len()],
    pub duration: Histogram,
}

impl Default for AttemptSeries {
    fn default() -> Self {
        Self {
            outcomes: Default::default(),
            duration: Histogram::new(DURATION_US),
        }
    }
}

/// How one upstream attempt ended: the one taxonomy of metrics, logs and the audit's
/// `retry_reasons`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (2xx), whole.
    Ok,
    /// Could not resolve, connect or finish the TLS handshake (nothing was sent).
    ConnectError,
    /// The connection broke after the request was sent, before a response head.
    ResetAfterSend,
    /// No response head within the endpoint's time to first byte.
    TtftTimeout,
    /// 429.
    RateLimited,
    /// 429 saying the account is out of credit (OpenAI's `insufficient_quota`).
    QuotaExhausted,
    /// 5xx, Anthropic's 529.
    Overloaded,
    /// 401, 403, or credentials the router could not get (a missing secret, a token fetch).
    Credentials,
    /// A 400 or 413 whose body says the prompt does not fit the model's context window
    /// (`dialect::errors::says_context_overflow`).
    ContextOverflow,
    /// Any other 4xx: the request's own fault, relayed.
    ClientError,
    /// Answered, then cut short (a broken stream, an idle timeout mid-answer).
    Interrupted,
    /// The client left first.
    ClientGone,
    /// Not sent: the request cannot be put in the endpoint's dialect.
    NotSent,
}

impl Outcome {
    pub const ALL: [Self; 13] = [
        Self::Ok,
        Self::ConnectError,
        Self::ResetAfterSend,
        Self::TtftTimeout,
        Self::RateLimited,
        Self::QuotaExhausted,
        Self::Overloaded,
        Self::Credentials,
        Self::ContextOverflow,
        Self::ClientError,
        Self::Interrupted,
        Self::ClientGone,
        Self::NotSent,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ConnectError => "connect_error",
            Self::ResetAfterSend => "reset_after_send",
            Self::TtftTimeout => "ttft_timeout",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Overloaded => "overloaded",
            Self::Credentials => "credentials",
            Self::ContextOverflow => "context_overflow",
            Self::ClientError => "client_error",
            Self::Interrupted => "interrupted",
            Self::ClientGone => "client_gone",
            Self::NotSent => "not_sent",
        }
    }

    /// The outcome of an upstream's error status.
    #[must_use]
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => Self::Ok,
            429 => Self::RateLimited,
            401 | 403 => Self::Credentials,
            408 => Self::TtftTimeout,
            400..=499 => Self::ClientError,
            _ => Self::Overloaded,
        }
    }

    #[must_use]
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

/// Requests that moved from one endpoint to the next, by `from`, `to`.
pub const FALLBACK_LABELS: [&str; 2] = ["from", "to"];

/// Requests refused by a tenant limit, by `tenant`, `limit`.
pub const LIMIT_LABELS: [&str; 2] = ["tenant", "limit"];

/// Every family of one core, as the scrape reads them.
#[derive(Debug, Default)]
pub struct CoreFamilies {
    pub requests: Family<RequestSeries, 6>,
    pub attempts: Family<AttemptSeries, 4>,
    pub fallbacks: Family<Counter, 2>,
    pub limited: Family<Counter, 2>,
    /// Retries refused by an endpoint's retry budget, by `switchyard_endpoint`.
    pub retry_budget: Family<Counter, 1>,
}

/// One core's lock-free handles on its families.
#[derive(Debug, Default)]
pub struct CoreLocal {
    pub requests: Local<RequestSeries, 6>,
    pub attempts: Local<AttemptSeries, 4>,
    pub fallbacks: Local<Counter, 2>,
    pub limited: Local<Counter, 2>,
    pub retry_budget: Local<Counter, 1>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_prometheus_le() {
        let h = Histogram::new(&[10, 20]);
        for v in [0, 10, 11, 20, 21, 1000] {
            h.observe(v);
        }
        let mut m = Merged::default();
        h.merge_into(&mut m);
        h.merge_into(&mut m);
        assert_eq!(m.counts, vec![4, 4, 4]);
        assert_eq!(m.sum, 2 * 1062);
        assert_eq!(m.count(), 12);
    }

    #[test]
    fn one_series_per_label_set_registered_once() {
        let family: Family<Counter, 2> = Family::default();
        let local: Local<Counter, 2> = Local::default();
        for _ in 0..3 {
            local.with(&family, ["a", "b"], Counter::default, |c| c.add(1));
        }
        local.with(&family, ["a", "c"], Counter::default, |c| c.add(5));
        let mut seen = Vec::new();
        family.each(|e| seen.push((e.labels.clone(), e.series.get())));
        assert_eq!(
            seen,
            vec![
                ([Box::from("a"), Box::from("b")], 3),
                ([Box::from("a"), Box::from("c")], 5)
            ]
        );
    }

    #[test]
    fn every_outcome_has_its_index() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
