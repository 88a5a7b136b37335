//! A tenant's share of its fleet-wide limits: what the cores spend (see [`super`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::gateway::error::{Error, ErrorKind, Limit};

/// A tenant's fleet counters, inside its `TenantState`.
#[derive(Debug, Default)]
pub struct FleetShare {
    /// Requests leased from Redis and not yet spent.
    pub rpm_lease: AtomicI64,
    /// Tokens leased and not yet spent; below zero, tokens used beyond the lease (charged
    /// with the next lease).
    pub tpm_lease: AtomicI64,
    /// Redis said nothing is left before this (ms since the epoch).
    pub empty_until_ms: AtomicI64,
    /// Requests admitted and tokens charged, ever (the coordinator sizes leases by their
    /// rates).
    pub admitted: AtomicU64,
    pub tokens: AtomicU64,
    pub last_used_ms: AtomicI64,
    /// The other hosts' totals for the day (from Redis), added to this host's own.
    pub others_day_tokens: AtomicU64,
    pub others_day_micros: AtomicU64,
    /// `share` mode's own GCRA (requests), at the limit divided by the live hosts.
    pub(super) share_tat_ms: AtomicI64,
}

impl FleetShare {
    /// Spends one request of the lease (and checks the token lease is not spent).
    pub(super) fn take(&self, rpm: u64, tpm: u64) -> bool {
        if tpm > 0 && self.tpm_lease.load(Ordering::Relaxed) <= 0 {
            return false;
        }
        if rpm > 0 {
            let before = self.rpm_lease.fetch_sub(1, Ordering::AcqRel);
            if before < 1 {
                self.rpm_lease.fetch_add(1, Ordering::AcqRel);
                return false;
            }
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Tokens an answered request used (charged against the token lease).
    pub fn charge(&self, tokens: u64) {
        let t = i64::try_from(tokens).unwrap_or(i64::MAX);
        self.tpm_lease.fetch_sub(t, Ordering::AcqRel);
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    pub(super) fn share_admit(
        &self,
        tenant: &str,
        rpm: u64,
        hosts: u64,
        now_ms: i64,
    ) -> Result<(), Error> {
        if rpm == 0 {
            return Ok(());
        }
        let per_host = (rpm / hosts).max(1);
        let step = i64::try_from(60_000 / per_host).unwrap_or(1).max(1);
        let tau = 60_000 - step.min(60_000);
        let mut tat = self.share_tat_ms.load(Ordering::Acquire);
        loop {
            let base = tat.max(now_ms);
            if base - now_ms > tau {
                return Err(Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "tenant `{tenant}` is over its share of its fleet-wide rate limit ({per_host} of {rpm} requests per minute on each of {hosts} hosts, while the limits store is unreachable)"
                    ),
                )
                .with_retry_after(u64::try_from((base - now_ms - tau).max(1000) / 1000).unwrap_or(1))
                .with_limit(Limit::Rpm));
            }
            match self.share_tat_ms.compare_exchange_weak(
                tat,
                base + step,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn a_lease_is_spent_one_request_at_a_time() {
        let f = FleetShare::default();
        assert!(!f.take(10, 0));
        f.rpm_lease.store(2, Ordering::Relaxed);
        assert!(f.take(10, 0));
        assert!(f.take(10, 0));
        assert!(!f.take(10, 0));
        assert_eq!(f.rpm_lease.load(Ordering::Relaxed), 0);
        f.tpm_lease.store(5, Ordering::Relaxed);
        assert!(f.take(0, 100));
        f.charge(7);
        assert!(!f.take(0, 100), "the token lease is spent (in debt)");
    }
}
