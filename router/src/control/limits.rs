//! Per-tenant rate limits and daily budgets, shared by every core of the node.
//!
//! **Rates** (`rate_limit_rpm`, `rate_limit_tpm`) use GCRA on one atomic per limit: a
//! tenant's "theoretical arrival time" (ns since the process started), advanced by a
//! compare-and-swap, so all cores see one exact count and nothing waits on a lock. A
//! request passes while the tenant is not more than a minute ahead: up to `rpm` requests
//! may arrive at once, then one every `60 s / rpm`. Tokens are charged when they are known
//! (the upstream's usage block, else the documented estimate), so `tpm` refuses the
//! requests that come after the minute's tokens are spent; a single request is never cut
//! off midway.
//!
//! **Daily budgets** (`daily_token_budget`, `daily_spend_usd`) count actual usage per UTC
//! day and refuse once spent. Counts live in memory: per node and restarted at zero with the
//! process — unless the router is part of a fleet (`--redis`, [`crate::control::fleet`]):
//! then the limits also hold across hosts, and the day's totals survive restarts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchyard_table::TenantView;

use crate::gateway::error::{Error, ErrorKind, Limit};

const MINUTE_NS: u64 = 60_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// One tenant's counters.
#[derive(Debug, Default)]
pub struct TenantState {
    rpm_tat: AtomicU64,
    tpm_tat: AtomicU64,
    day: AtomicI64,
    day_tokens: AtomicU64,
    day_micros: AtomicU64,
    /// The tenant's share of its fleet-wide limits (used with `--redis`).
    pub fleet: crate::control::fleet::share::FleetShare,
}

/// Every tenant's counters, by id (kept across table reloads).
#[derive(Debug)]
pub struct Limits {
    epoch: Instant,
    by_id: Arc<Mutex<HashMap<String, Arc<TenantState>>>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            by_id: Arc::default(),
        }
    }
}

/// A tenant's counters by id (made on first use), for the fleet coordinator's thread.
pub type States = Arc<dyn Fn(&str) -> Arc<TenantState> + Send + Sync>;

impl Limits {
    /// A function giving a tenant's counters (made on first use), for the fleet
    /// coordinator's thread.
    #[must_use]
    pub fn states(&self) -> States {
        let by_id = Arc::clone(&self.by_id);
        Arc::new(move |tenant: &str| {
            let mut map = by_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(map.entry(tenant.to_owned()).or_default())
        })
    }

    /// The tenant's counters (cores cache the `Arc`, so this lock is taken once per tenant
    /// and core).
    pub fn state(&self, tenant: &str) -> Arc<TenantState> {
        let mut map = self
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(tenant.to_owned()).or_default())
    }

    #[must_use]
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Nanoseconds of allowance one unit costs at `per_minute` units a minute.
fn interval(per_minute: u64) -> u64 {
    (MINUTE_NS / per_minute.max(1)).max(1)
}

fn retry_seconds(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).max(1)
}

impl TenantState {
    /// Admits one request now, or says when to come back.
    pub fn admit(&self, t: &TenantView<'_>, now_ns: u64, now_ms: i64) -> Result<(), Error> {
        self.roll_day(now_ms);
        let tokens_budget = t.daily_token_budget();
        let others = |n: &AtomicU64| n.load(Ordering::Relaxed);
        if tokens_budget > 0
            && self
                .day_tokens
                .load(Ordering::Relaxed)
                .saturating_add(others(&self.fleet.others_day_tokens))
                >= tokens_budget
        {
            return Err(budget(
                Limit::DailyTokens,
                format!(
                    "tenant `{}` has used its daily token budget ({tokens_budget} tokens) for today (UTC)",
                    t.id()
                ),
                now_ms,
            ));
        }
        let spend = t.daily_budget();
        if spend.0 > 0
            && self
                .day_micros
                .load(Ordering::Relaxed)
                .saturating_add(others(&self.fleet.others_day_micros))
                >= spend.0
        {
            return Err(budget(
                Limit::DailySpend,
                format!(
                    "tenant `{}` has spent its daily budget (${spend}) for today (UTC)",
                    t.id()
                ),
                now_ms,
            ));
        }
        let tpm = t.rate_limit_tpm();
        if tpm > 0 {
            let tat = self.tpm_tat.load(Ordering::Acquire);
            let ahead = tat.saturating_sub(now_ns);
            let tau = MINUTE_NS - interval(tpm).min(MINUTE_NS);
            if ahead > tau {
                return Err(Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "tenant `{}` is over its rate limit of {tpm} tokens per minute",
                        t.id()
                    ),
                )
                .with_retry_after(retry_seconds(ahead - tau))
                .with_limit(Limit::Tpm));
            }
        }
        let rpm = u64::from(t.rate_limit_rpm());
        if rpm > 0 {
            let step = interval(rpm);
            let tau = MINUTE_NS - step.min(MINUTE_NS);
            let mut tat = self.rpm_tat.load(Ordering::Acquire);
            loop {
                let base = tat.max(now_ns);
                let ahead = base - now_ns;
                if ahead > tau {
                    return Err(Error::new(
                        ErrorKind::RateLimited,
                        format!(
                            "tenant `{}` is over its rate limit of {rpm} requests per minute",
                            t.id()
                        ),
                    )
                    .with_retry_after(retry_seconds(ahead - tau))
                    .with_limit(Limit::Rpm));
                }
                match self.rpm_tat.compare_exchange_weak(
                    tat,
                    base + step,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => tat = actual,
                }
            }
        }
        Ok(())
    }

    /// Counts what a finished request used.
    pub fn charge(&self, tpm: u64, tokens: u64, micros: u64, now_ns: u64, now_ms: i64) {
        self.roll_day(now_ms);
        add_saturating(&self.day_tokens, tokens);
        add_saturating(&self.day_micros, micros);
        if tpm > 0 {
            self.fleet.charge(tokens);
        }
        if tpm > 0 && tokens > 0 {
            let cost = interval(tpm).saturating_mul(tokens);
            let mut tat = self.tpm_tat.load(Ordering::Acquire);
            loop {
                let next = tat.max(now_ns).saturating_add(cost);
                match self.tpm_tat.compare_exchange_weak(
                    tat,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => tat = actual,
                }
            }
        }
    }

    /// Starts a new day's counts at UTC midnight. Two cores crossing midnight together may
    /// each reset; the loss is the handful of requests between their two resets.
    /// This host's day (UTC, days since the epoch) and its totals for it.
    pub fn day_totals(&self, now_ms: i64) -> (i64, u64, u64) {
        self.roll_day(now_ms);
        (
            self.day.load(Ordering::Relaxed),
            self.day_tokens.load(Ordering::Relaxed),
            self.day_micros.load(Ordering::Relaxed),
        )
    }

    /// What Redis holds for `day`: the fleet's totals and this host's own (which a restarted
    /// host takes back: its counters start at zero).
    pub fn fleet_day(&self, day: i64, fleet: (u64, u64), mine: (u64, u64)) {
        if self.day.load(Ordering::Relaxed) != day {
            return;
        }
        self.day_tokens.fetch_max(mine.0, Ordering::Relaxed);
        self.day_micros.fetch_max(mine.1, Ordering::Relaxed);
        // (The fleet's total holds this host's stored total, which the host counts itself.)
        self.fleet
            .others_day_tokens
            .store(fleet.0.saturating_sub(mine.0), Ordering::Relaxed);
        self.fleet
            .others_day_micros
            .store(fleet.1.saturating_sub(mine.1), Ordering::Relaxed);
    }

    fn roll_day(&self, now_ms: i64) {
        let today = now_ms.div_euclid(DAY_MS);
        let seen = self.day.load(Ordering::Relaxed);
        if seen != today
            && self
                .day
                .compare_exchange(seen, today, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.day_tokens.store(0, Ordering::Relaxed);
            self.day_micros.store(0, Ordering::Relaxed);
            self.fleet.others_day_tokens.store(0, Ordering::Relaxed);
            self.fleet.others_day_micros.store(0, Ordering::Relaxed);
        }
    }
}

/// Adds without wrapping: a reported count near `u64::MAX` pins the counter at the top
/// (budget spent) instead of wrapping it back to a small number.
fn add_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(n))
    });
}

fn budget(limit: Limit, message: String, now_ms: i64) -> Error {
    let next_midnight = (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
    let wait = u64::try_from((next_midnight - now_ms).max(1000) / 1000).unwrap_or(1);
    Error::new(ErrorKind::BudgetExhausted, message)
        .with_retry_after(wait)
        .with_limit(limit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    fn table(tenant: &str) -> Vec<u8> {
        let text = format!(
            "version: v1\nendpoints:\n  - id: m\n    type: mock\n    models: [x]\ntenants:\n  - {tenant}\nrules:\n  - default:\n      route_to: m\n"
        );
        let (_, out) = policyc::compile_str("t.yaml", &text).unwrap();
        out.compiled.unwrap().table
    }

    #[test]
    fn rpm_allows_a_minute_at_once_then_one_per_interval() {
        let bytes = table("{id: a, rate_limit_rpm: 60}");
        let t = switchyard_table::Table::from_bytes(&bytes).unwrap();
        let tenant = t.tenant_by_id("a").unwrap();
        let s = TenantState::default();
        let now = 1_000 * MINUTE_NS;
        for _ in 0..60 {
            s.admit(&tenant, now, 0).unwrap();
        }
        let e = s.admit(&tenant, now, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(1));
        // One second later, one more.
        s.admit(&tenant, now + 1_000_000_000, 0).unwrap();
        assert!(s.admit(&tenant, now + 1_000_000_000, 0).is_err());
    }

    #[test]
    fn tpm_and_daily_budgets_count_usage() {
        let bytes =
            table("{id: a, rate_limit_tpm: 1000, daily_token_budget: 5000, daily_spend_usd: 1}");
        let t = switchyard_table::Table::from_bytes(&bytes).unwrap();
        let tenant = t.tenant_by_id("a").unwrap();
        let s = TenantState::default();
        let now = 1_000 * MINUTE_NS;
        s.admit(&tenant, now, 0).unwrap();
        s.charge(1000, 1200, 0, now, 0);
        let e = s.admit(&tenant, now, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(13));
        // A minute later the tokens are back; the day's count is not.
        let later = now + 2 * MINUTE_NS;
        s.admit(&tenant, later, 1).unwrap();
        s.charge(1000, 3800, 0, later, 1);
        let e = s.admit(&tenant, later + 10 * MINUTE_NS, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BudgetExhausted);
        // The next UTC day starts over.
        s.admit(&tenant, later + 10 * MINUTE_NS, DAY_MS + 5)
            .unwrap();
        s.charge(0, 0, 1_000_000, later, DAY_MS + 6);
        assert_eq!(
            s.admit(&tenant, later + 11 * MINUTE_NS, DAY_MS + 7)
                .unwrap_err()
                .kind,
            ErrorKind::BudgetExhausted
        );
    }

    #[test]
    fn huge_reported_usage_saturates_instead_of_wrapping() {
        let bytes = table("{id: a, daily_token_budget: 5000}");
        let t = switchyard_table::Table::from_bytes(&bytes).unwrap();
        let tenant = t.tenant_by_id("a").unwrap();
        let s = TenantState::default();
        s.charge(0, u64::MAX - 1, u64::MAX, 0, 0);
        s.charge(0, 10, 10, 0, 0);
        assert_eq!(s.day_tokens.load(Ordering::Relaxed), u64::MAX);
        assert_eq!(
            s.admit(&tenant, 0, 1).unwrap_err().kind,
            ErrorKind::BudgetExhausted
        );
    }
}
