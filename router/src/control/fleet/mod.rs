//! Tenant limits that hold across a fleet of routers, on Redis (`--redis`).
//!
//! One side thread per process — the **coordinator** — owns the only Redis connection. It
//! leases small shares of each tenant's `rate_limit_rpm` / `rate_limit_tpm` from one GCRA per
//! limit kept in Redis (a Lua script; Redis `TIME` is the clock, so hosts' clocks do not
//! matter), and the cores spend those shares from atomics in [`TenantState`]: the request path
//! never waits on Redis, except when a tenant's share is dry — then the core asks the
//! coordinator and waits at most `--limits-acquire-timeout-ms`. A "nothing left until T"
//! answer is remembered, so later requests are refused (429, `Retry-After`) without asking
//! again. Unused shares go back after 2 s without use.
//!
//! Daily token and spend budgets are pushed every second as each host's **absolute** total
//! for the day (a script keeps `max(stored, sent)` per host and adds the difference to the
//! fleet total), so a replayed push never counts twice, a restarted host takes its own total
//! back from Redis, and after a Redis data loss every host asserts its total again.
//!
//! The host's own per-host limits keep running beside the fleet's (a host over a limit alone
//! is over it fleet-wide too). When Redis cannot be reached the router keeps serving with
//! them (`local`, the default), with the limit divided by the live hosts (`share`), or refuses
//! limited tenants' requests with 503 (`closed`); each transition is logged once, and
//! `/metrics` says which mode is in force.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

pub mod coordinator;
pub mod share;

use crate::control::limits::TenantState;
use crate::control::redis::RedisUrl;
use crate::gateway::error::{Error, ErrorKind, Limit};

/// What limited tenants get while Redis is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownMode {
    /// Each host enforces the full limits on its own (fail open: the seed's rule).
    Local,
    /// Each host enforces the limits divided by the hosts last seen live.
    Share,
    /// Requests of tenants with fleet limits are refused (503).
    Closed,
}

impl DownMode {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(Self::Local),
            "share" => Ok(Self::Share),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "`{other}` is not a mode for an unreachable limits store (local, share or closed)"
            )),
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Share => "share",
            Self::Closed => "closed",
        }
    }
}

/// The fleet settings (from flags).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub redis: RedisUrl,
    /// This host's name in Redis (stable across restarts: its daily totals are kept under it).
    pub node: String,
    /// Prefix of every key (one Redis may serve several fleets).
    pub prefix: String,
    pub on_down: DownMode,
    pub acquire_timeout: Duration,
}

/// What the coordinator answers a core whose tenant's lease was dry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    Granted,
    Refused { retry_ms: i64 },
    Unavailable,
}

pub(super) struct Need {
    pub(super) tenant: String,
    pub(super) state: Arc<TenantState>,
    pub(super) rpm: u64,
    pub(super) tpm: u64,
    pub(super) reply: futures_channel::oneshot::Sender<Answer>,
}

/// Bounds of the lease-wait histogram, µs (the wait is capped by
/// `--limits-acquire-timeout-ms`, at most 10 s).
pub const WAIT_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    10_000_000,
];

/// Counters for `/metrics`.
#[derive(Debug)]
pub struct FleetStats {
    pub lease_calls: AtomicU64,
    pub store_errors: AtomicU64,
    pub waits_granted: AtomicU64,
    pub waits_refused: AtomicU64,
    pub waits_timed_out: AtomicU64,
    pub waits_unavailable: AtomicU64,
    /// Sum and count of lease round trips, µs.
    pub round_trip_us: AtomicU64,
    pub round_trips: AtomicU64,
    /// How long requests waited for their tenant's share, µs (a wait happens only when a
    /// share is dry; the lock is taken once per wait, never on the fast path).
    pub wait_us: Mutex<crate::observe::metrics::Histogram>,
}

impl Default for FleetStats {
    fn default() -> Self {
        Self {
            lease_calls: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            waits_granted: AtomicU64::new(0),
            waits_refused: AtomicU64::new(0),
            waits_timed_out: AtomicU64::new(0),
            waits_unavailable: AtomicU64::new(0),
            round_trip_us: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            wait_us: Mutex::new(crate::observe::metrics::Histogram::new(WAIT_US)),
        }
    }
}

/// The fleet's shared state: the store's health, live hosts, the cores' requests.
pub struct Fleet {
    pub config: FleetConfig,
    pub(super) up: AtomicBool,
    /// Live hosts, as last counted in Redis (at least 1).
    pub(super) hosts: AtomicU64,
    pub(super) needs: Mutex<Vec<Need>>,
    pub(super) wake: Condvar,
    pub(super) stopping: AtomicBool,
    pub stats: FleetStats,
    /// 0: never connected yet; 1: up; 2: down (for logging transitions once).
    pub(super) logged: AtomicU8,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("redis", &self.config.redis)
            .field("node", &self.config.node)
            .field("up", &self.up())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    #[must_use]
    pub fn new(config: FleetConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            up: AtomicBool::new(false),
            hosts: AtomicU64::new(1),
            needs: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            stats: FleetStats::default(),
            logged: AtomicU8::new(0),
        })
    }

    /// Whether Redis answered the last round.
    #[must_use]
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Live hosts last counted.
    #[must_use]
    pub fn hosts(&self) -> u64 {
        self.hosts.load(Ordering::Relaxed).max(1)
    }

    /// The mode limits are enforced in now: `fleet`, or the down mode.
    #[must_use]
    pub fn mode(&self) -> &'static str {
        if self.up() {
            "fleet"
        } else {
            self.config.on_down.as_str()
        }
    }

    /// Stops the coordinator (at shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// The fleet's word on one request of a tenant with `rpm` / `tpm` limits, after the
    /// host's own limits admitted it.
    pub async fn admit(
        &self,
        state: &Arc<TenantState>,
        tenant: &str,
        rpm: u64,
        tpm: u64,
        now_ms: i64,
    ) -> Result<(), Error> {
        if rpm == 0 && tpm == 0 {
            return Ok(());
        }
        if !self.up() {
            return self.degraded(state, tenant, rpm, now_ms);
        }
        state.fleet.last_used_ms.store(now_ms, Ordering::Relaxed);
        if state.fleet.take(rpm, tpm) {
            return Ok(());
        }
        let empty_until = state.fleet.empty_until_ms.load(Ordering::Relaxed);
        if empty_until > now_ms {
            return Err(over(tenant, rpm, tpm, empty_until - now_ms));
        }
        // One deadline for the whole wait: a grant that other requests drained before this
        // one could take its part is asked again, never turned into a refusal (only Redis
        // says a tenant is over its limit).
        let waited = std::time::Instant::now();
        let deadline = waited + self.config.acquire_timeout;
        let outcome = loop {
            let (tx, rx) = futures_channel::oneshot::channel();
            {
                let mut needs = self.needs.lock().unwrap_or_else(PoisonError::into_inner);
                needs.push(Need {
                    tenant: tenant.to_owned(),
                    state: Arc::clone(state),
                    rpm,
                    tpm,
                    reply: tx,
                });
            }
            self.wake.notify_one();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let answer = glommio::timer::timeout(left, async {
                rx.await
                    .map_err(|_| glommio::GlommioError::from(std::io::Error::other("dropped")))
            })
            .await;
            match answer {
                Ok(Answer::Granted) if state.fleet.take(rpm, tpm) => {
                    self.stats.waits_granted.fetch_add(1, Ordering::Relaxed);
                    break Ok(());
                }
                // Other requests took the share first: ask again while there is time.
                Ok(Answer::Granted) if std::time::Instant::now() < deadline => {}
                Ok(Answer::Refused { retry_ms }) => {
                    self.stats.waits_refused.fetch_add(1, Ordering::Relaxed);
                    break Err(over(tenant, rpm, tpm, retry_ms));
                }
                Ok(Answer::Unavailable) => {
                    self.stats.waits_unavailable.fetch_add(1, Ordering::Relaxed);
                    break self.degraded(state, tenant, rpm, now_ms);
                }
                Ok(Answer::Granted) | Err(_) => {
                    // Redis is slow: this request is not kept waiting longer (fail open).
                    self.stats.waits_timed_out.fetch_add(1, Ordering::Relaxed);
                    break self.degraded(state, tenant, rpm, now_ms);
                }
            }
        };
        let us = u64::try_from(waited.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats
            .wait_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(us);
        outcome
    }

    /// A request while the store cannot answer, by the down mode.
    fn degraded(
        &self,
        state: &TenantState,
        tenant: &str,
        rpm: u64,
        now_ms: i64,
    ) -> Result<(), Error> {
        match self.config.on_down {
            DownMode::Local => Ok(()),
            DownMode::Share => state.fleet.share_admit(tenant, rpm, self.hosts(), now_ms),
            DownMode::Closed => Err(Error::new(
                ErrorKind::LimitsUnavailable,
                format!(
                    "tenant `{tenant}` has fleet-wide limits and the limits store (Redis) cannot be reached; this router refuses such requests while it is down (--limits-on-store-down closed)"
                ),
            )
            .with_retry_after(1)),
        }
    }
}

fn over(tenant: &str, rpm: u64, tpm: u64, retry_ms: i64) -> Error {
    let (what, limit) = if rpm > 0 {
        (format!("{rpm} requests per minute"), Limit::Rpm)
    } else {
        (format!("{tpm} tokens per minute"), Limit::Tpm)
    };
    let secs = u64::try_from(retry_ms.max(1)).unwrap_or(1).div_ceil(1000);
    Error::new(
        ErrorKind::RateLimited,
        format!("tenant `{tenant}` is over its fleet-wide rate limit of {what}"),
    )
    .with_retry_after(secs.max(1))
    .with_limit(limit)
}
