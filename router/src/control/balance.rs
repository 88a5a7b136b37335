//! Load per endpoint, for balanced `route_to` sets and retry budgets.
//!
//! Each core keeps its own [`Load`] of every endpoint it sends to — requests in flight, of
//! them retries, and a moving average of time to first token — written only by that core
//! (relaxed atomics on memory no other core writes; the admin API sums them for
//! `GET /v1/endpoints`). A core balances its own traffic:
//!
//! - **Power of two choices**: two members of the set are drawn (by `weight`), and the one
//!   with the lower `(in flight + 1) × recent TTFT / weight` goes first; the others follow
//!   by the same score, then the rule's fallbacks. Open or cooling members are skipped as
//!   any candidate is.
//! - **Retry budget** ([`RetryBudget`], per endpoint in each core's [`Load`], a token bucket
//!   as Finagle's, terms in [`RetryPolicy`]): every request whose first attempt goes to the
//!   endpoint deposits a share of a retry (20 %), every retry its failure causes (the next
//!   candidate) withdraws one, and some trickle in regardless (10 a second); the bucket
//!   holds at most a burst's worth (1,000). A burst of failures (an upstream restarting under its
//!   in-flight requests) is retried in full; a sustained failure of one endpoint can add at
//!   most a fifth of its own traffic to the others, so a failing region cannot turn every
//!   request into several.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::observe::metrics::Family;

/// Every core's [`Load`]s, for `GET /v1/endpoints` (a core registers its family once, at
/// start; the request path never takes this lock).
#[derive(Debug, Default)]
pub struct Loads {
    cores: Mutex<Vec<Arc<Family<Load, 1>>>>,
}

impl Loads {
    /// A new core's family.
    pub fn register(&self) -> Arc<Family<Load, 1>> {
        let family = Arc::new(Family::default());
        self.cores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&family));
        family
    }

    /// Requests in flight at `endpoint` over all cores, and the mean of the cores' recent
    /// time to first token (µs; 0: none yet).
    #[must_use]
    pub fn summary(&self, endpoint: &str) -> (i64, u64) {
        let cores = self.cores.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut in_flight, mut ttft_sum, mut ttft_n) = (0i64, 0u64, 0u64);
        for family in cores.iter() {
            family.each(|e| {
                if e.labels.first().is_some_and(|l| &**l == endpoint) {
                    in_flight += e.series.in_flight();
                    if e.series.ttft_us() > 0 {
                        ttft_sum += e.series.ttft_us();
                        ttft_n += 1;
                    }
                }
            });
        }
        (in_flight, ttft_sum.checked_div(ttft_n).unwrap_or(0))
    }
}

/// A retry budget's terms (flags `--retry-budget-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed as a share of an endpoint's requests, per core (percent).
    pub percent: u64,
    /// Retries allowed per second, endpoint and core whatever the traffic.
    pub per_second: u64,
    /// Most retries saved up for a burst, per endpoint and core (a tenth at start).
    pub burst: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            percent: 20,
            per_second: 10,
            burst: 1_000,
        }
    }
}
/// Weight of a new TTFT sample in the moving average, in 1/16ths.
const EWMA_NEW_SIXTEENTHS: u64 = 4;

/// One endpoint's retry budget on one core, in thousandths of a retry (only that core
/// writes it: relaxed loads and stores, no read-modify-write).
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicU64,
    /// When the trickle was last added, ms.
    refilled_ms: AtomicI64,
}

impl RetryBudget {
    /// A budget holding a tenth of `policy`'s burst.
    #[must_use]
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            balance: AtomicU64::new(policy.burst.saturating_mul(1_000) / 10),
            refilled_ms: AtomicI64::new(0),
        }
    }

    /// A request arrived: it earns its share of a retry.
    pub fn deposit(&self, policy: RetryPolicy) {
        self.add(policy.percent.saturating_mul(10), policy);
    }

    /// Whether a retry could be taken now (nothing changes).
    #[must_use]
    pub fn available(&self, now_ms: i64, policy: RetryPolicy) -> bool {
        let trickle = self.trickle(now_ms, policy);
        self.balance.load(Ordering::Relaxed).saturating_add(trickle) >= 1_000
    }

    /// Thousandths of a retry trickled in since the last refill (none before the first).
    fn trickle(&self, now_ms: i64, policy: RetryPolicy) -> u64 {
        match self.refilled_ms.load(Ordering::Relaxed) {
            0 => 0,
            refilled => u64::try_from(now_ms - refilled)
                .unwrap_or(0)
                .saturating_mul(policy.per_second),
        }
    }

    /// Takes one retry from the budget; `false` (nothing taken) when it is spent.
    pub fn withdraw(&self, now_ms: i64, policy: RetryPolicy) -> bool {
        let trickle = self.trickle(now_ms, policy);
        if now_ms > self.refilled_ms.load(Ordering::Relaxed) {
            self.refilled_ms.store(now_ms, Ordering::Relaxed);
            self.add(trickle, policy);
        }
        let b = self.balance.load(Ordering::Relaxed);
        if b < 1_000 {
            return false;
        }
        self.balance.store(b - 1_000, Ordering::Relaxed);
        true
    }

    fn add(&self, thousandths: u64, policy: RetryPolicy) {
        let b = self
            .balance
            .load(Ordering::Relaxed)
            .saturating_add(thousandths);
        self.balance
            .store(b.min(policy.burst.saturating_mul(1_000)), Ordering::Relaxed);
    }
}

/// Attempts in a window before its failure ratio can open a breaker.
pub const RATIO_MIN_ATTEMPTS: u64 = 20;
/// The failure share (percent) that opens it.
pub const RATIO_OPENS_PERCENT: u64 = 50;
/// The window's length.
pub const RATIO_WINDOW_MS: i64 = 10_000;

/// One endpoint's load as one core sees it.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicI64,
    /// Moving average of time to first token, µs (0: none yet).
    ttft_us: AtomicU64,
    /// The failure-ratio window: its start (ms), attempts and failures in it.
    window_start_ms: AtomicI64,
    window_attempts: AtomicU64,
    window_failures: AtomicU64,
    /// The retries this endpoint's failures may cause.
    pub retries: RetryBudget,
}

impl Load {
    /// No load yet; a retry budget on `policy`'s terms.
    #[must_use]
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            in_flight: AtomicI64::new(0),
            ttft_us: AtomicU64::new(0),
            window_start_ms: AtomicI64::new(0),
            window_attempts: AtomicU64::new(0),
            window_failures: AtomicU64::new(0),
            retries: RetryBudget::new(policy),
        }
    }

    /// A request starts at the endpoint. Returns the guard that ends it.
    #[must_use]
    pub fn start(&self) -> InFlight<'_> {
        // (Only this core writes it: a load and a store, no locked read-modify-write.)
        let n = self.in_flight.load(Ordering::Relaxed);
        self.in_flight.store(n + 1, Ordering::Relaxed);
        InFlight { load: self }
    }

    /// Counts an attempt in the failure-ratio window; `true` when the window's failures reach
    /// [`RATIO_OPENS_PERCENT`] of at least [`RATIO_MIN_ATTEMPTS`] attempts (the window then
    /// starts again): the caller opens the endpoint's breaker.
    pub fn failure_ratio_trips(&self, now_ms: i64, failed: bool) -> bool {
        if now_ms - self.window_start_ms.load(Ordering::Relaxed) > RATIO_WINDOW_MS {
            self.window_start_ms.store(now_ms, Ordering::Relaxed);
            self.window_attempts.store(0, Ordering::Relaxed);
            self.window_failures.store(0, Ordering::Relaxed);
        }
        let attempts = self.window_attempts.load(Ordering::Relaxed) + 1;
        let failures = self.window_failures.load(Ordering::Relaxed) + u64::from(failed);
        self.window_attempts.store(attempts, Ordering::Relaxed);
        self.window_failures.store(failures, Ordering::Relaxed);
        let trips =
            attempts >= RATIO_MIN_ATTEMPTS && failures * 100 >= attempts * RATIO_OPENS_PERCENT;
        if trips {
            self.window_start_ms.store(now_ms, Ordering::Relaxed);
            self.window_attempts.store(0, Ordering::Relaxed);
            self.window_failures.store(0, Ordering::Relaxed);
        }
        trips
    }

    /// Adds a time-to-first-token sample.
    pub fn observe_ttft(&self, us: u64) {
        let old = self.ttft_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us.max(1)
        } else {
            (old * (16 - EWMA_NEW_SIXTEENTHS) + us * EWMA_NEW_SIXTEENTHS) / 16
        };
        self.ttft_us.store(new.max(1), Ordering::Relaxed);
    }

    #[must_use]
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn ttft_us(&self) -> u64 {
        self.ttft_us.load(Ordering::Relaxed)
    }

    /// Lower is better: `(in flight + 1) × TTFT / weight`. An endpoint with no TTFT yet
    /// counts 1 ms, so it is tried soon but in-flight requests still spread the load.
    #[must_use]
    pub fn score(&self, weight: u32) -> u64 {
        let ttft = match self.ttft_us() {
            0 => 1_000,
            t => t,
        };
        let busy = u64::try_from(self.in_flight().max(0)).unwrap_or(0) + 1;
        busy.saturating_mul(ttft) / u64::from(weight.max(1))
    }
}

/// A request in flight at an endpoint; dropping it ends it.
#[derive(Debug)]
pub struct InFlight<'a> {
    load: &'a Load,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let n = self.load.in_flight.load(Ordering::Relaxed);
        self.load.in_flight.store(n - 1, Ordering::Relaxed);
    }
}

/// The order to try the members of a balanced set in: `members[i] = (weight, score)`;
/// returns indices into `members`. Two are drawn by weight (with `random`) and the lower
/// score goes first; the rest follow by score.
#[must_use]
pub fn order(members: &[(u32, u64)], random: u64) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..members.len()).collect();
    rest.sort_by_key(|&i| members.get(i).map_or(u64::MAX, |m| m.1));
    if members.len() < 2 {
        return rest;
    }
    let first = draw(members, random, None);
    let second = draw(
        members,
        random.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15,
        Some(first),
    );
    let score = |i: usize| members.get(i).map_or(u64::MAX, |m| m.1);
    let pick = if score(second) < score(first) {
        second
    } else {
        first
    };
    rest.retain(|&i| i != pick);
    rest.insert(0, pick);
    rest
}

/// A member drawn with probability proportional to its weight (`not`: excluded).
fn draw(members: &[(u32, u64)], random: u64, not: Option<usize>) -> usize {
    let weight = |i: usize, w: u32| {
        if Some(i) == not {
            0
        } else {
            u64::from(w.max(1))
        }
    };
    let total: u64 = members
        .iter()
        .enumerate()
        .map(|(i, m)| weight(i, m.0))
        .sum();
    if total == 0 {
        return 0;
    }
    let mut at = random % total;
    for (i, m) in members.iter().enumerate() {
        let w = weight(i, m.0);
        if at < w {
            return i;
        }
        at -= w;
    }
    0
}

/// A per-core random number (xorshift64*), from `seed`.
#[must_use]
pub fn mix(seed: u64) -> u64 {
    let mut x = seed | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_less_loaded_of_two_goes_first() {
        // Two members: both are always drawn, so the lower score always wins.
        for r in 0..100 {
            assert_eq!(order(&[(1, 50), (1, 10)], mix(r))[0], 1);
        }
        // Three: the worst is never first (it loses to whichever other is drawn).
        for r in 0..200 {
            assert_ne!(order(&[(1, 10), (1, 1000), (1, 20)], mix(r))[0], 1);
        }
    }

    #[test]
    fn weights_share_the_draws() {
        // Equal scores: the first drawn wins, so the shares follow the weights.
        let mut firsts = [0u32; 2];
        for r in 0..10_000 {
            let o = order(&[(3, 5), (1, 5)], mix(r + 1));
            firsts[o[0]] += 1;
        }
        assert!(firsts[0] > 6_500 && firsts[0] < 8_500, "{firsts:?}");
    }

    #[test]
    fn the_retry_budget_allows_bursts_and_a_fifth_of_the_traffic() {
        let policy = RetryPolicy::default();
        let budget = RetryBudget::new(policy);
        let now = 1_000_000;
        let _ = budget.withdraw(now, policy);
        // A tenth of the burst to start with.
        let mut taken = 1;
        while budget.withdraw(now, policy) {
            taken += 1;
        }
        assert_eq!(taken, policy.burst / 10);
        assert!(!budget.available(now, policy));
        assert!(
            budget.available(now + 100, policy),
            "a retry trickles in each 100 ms"
        );
        // Sustained failure: 100 requests earn 20 retries.
        for _ in 0..100 {
            budget.deposit(policy);
        }
        let mut more = 0;
        while budget.withdraw(now, policy) {
            more += 1;
        }
        assert_eq!(more, 20);
        // A second later, the trickle.
        let mut trickle = 0;
        while budget.withdraw(now + 1_000, policy) {
            trickle += 1;
        }
        assert_eq!(trickle, policy.per_second);
        let load = Load::new(policy);
        let guard = load.start();
        assert_eq!(load.in_flight(), 1);
        drop(guard);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn half_failing_trips_after_enough_attempts_in_the_window() {
        let load = Load::new(RetryPolicy::default());
        let t = 1_000_000;
        let mut tripped = None;
        for i in 0..RATIO_MIN_ATTEMPTS {
            if load.failure_ratio_trips(t, i % 2 == 0) {
                tripped = Some(i + 1);
            }
        }
        assert_eq!(tripped, Some(RATIO_MIN_ATTEMPTS));
        // One failure in four never does.
        for i in 0..100 {
            assert!(!load.failure_ratio_trips(t, i % 4 == 0));
        }
        // An old window is forgotten.
        for _ in 0..15 {
            assert!(!load.failure_ratio_trips(t, true));
        }
        assert!(!load.failure_ratio_trips(t + RATIO_WINDOW_MS + 1, true));
    }

    #[test]
    fn ttft_is_a_moving_average() {
        let load = Load::new(RetryPolicy::default());
        load.observe_ttft(1_000);
        assert_eq!(load.ttft_us(), 1_000);
        load.observe_ttft(5_000);
        assert_eq!(load.ttft_us(), 2_000);
    }
}
