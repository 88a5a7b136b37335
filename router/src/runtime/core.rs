//! What each core owns and what all of them share.
//!
//! [`Core`] is one executor's state: its upstream pool, its cached table and keys, its
//! tenant handles, never touched by another thread. [`Shared`] is what every core reads:
//! the configuration, the table and key cells, per-core counters ([`Metrics`], one cache
//! line each), the audit gates, the body budget, the worker pools. ARCHITECTURE.md lists
//! exactly which of these a request touches.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::Config;
use crate::control::table::{Loaded, TableCell};
use crate::upstream::pool::Pool;

/// One core's counters, reported (summed over cores) on `/metrics`. Each core writes only
/// its own, cache-line aligned so that counting never bounces a line between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Metrics {
    pub requests: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub panics: AtomicU64,
    /// Unauthenticated refusals left out of the audit trail (past the per-core sample).
    pub unaudited_refusals: AtomicU64,
    /// Pooled connections found closed by the upstream, the request resent on a new one.
    pub stale_connections: AtomicU64,
    /// This core's labelled series (requests, attempts, fallbacks, limit refusals).
    pub families: crate::observe::metrics::CoreFamilies,
}

impl Metrics {
    pub fn count_status(&self, status: u16) {
        let slot = match status {
            200..=399 => &self.responses_2xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// State every core reads.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub tables: Arc<TableCell>,
    pub shutdown: AtomicBool,
    /// Indexed by core id.
    pub metrics: Box<[Metrics]>,
    pub audit: Option<crate::audit::AuditSink>,
    pub audit_stats: Arc<crate::audit::AuditStats>,
    /// Client keys (issued by the admin API, persisted under `<data-dir>/admin`).
    pub keys: Arc<crate::control::keys::KeyStore>,
    /// Per-tenant rate limits and daily budgets (one set of counters for all cores).
    pub limits: crate::control::limits::Limits,
    /// With `--redis`: the fleet the tenant limits hold across.
    pub fleet: Option<Arc<crate::control::fleet::Fleet>>,
    /// `--state`: admin state shared through object storage.
    pub state: Option<Arc<crate::control::shared::SharedState>>,
    /// Endpoint health observed from traffic.
    pub health: Arc<crate::control::health::Health>,
    /// The admin API (served on the main listener off the executors, and on `--admin-listen`).
    pub admin: Arc<crate::control::admin::Admin>,
    /// Request-body bytes buffered beyond the connections' initial buffers, node-wide.
    pub body_budget: crate::runtime::core::BodyBudget,
    /// Each core's hand-over to the audit writer, by core id (empty when auditing is off).
    pub audit_gates: Box<[crate::audit::gate::Gate]>,
    /// Upstream name resolution (its own worker threads).
    pub resolver: Arc<crate::upstream::resolve::Resolver>,
    /// The admin API's worker threads (compiles, Parquet reads, fsyncs).
    pub admin_pool: crate::runtime::offload::Offload,
    /// The OTLP span exporter (`--otlp-endpoint`).
    pub tracer: Option<Arc<crate::observe::export::Exporter>>,
}

impl Shared {
    /// A counter summed over cores.
    pub fn sum(&self, counter: impl Fn(&Metrics) -> &AtomicU64) -> u64 {
        self.metrics
            .iter()
            .map(|m| counter(m).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// One core's state: owned by its executor thread, never shared.
#[derive(Debug)]
pub struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// An `Rc` around the shared `Arc`: handing the table to each request clones the `Rc`
    /// (a plain increment on this core) instead of the `Arc` (an atomic on a cache line
    /// every core would contend for).
    #[expect(clippy::redundant_allocation, reason = "see the field comment")]
    table: RefCell<(u64, Rc<Arc<Loaded>>)>,
    /// The client keys, cached like the table.
    #[expect(clippy::redundant_allocation, reason = "as for `table`")]
    keys: RefCell<(u64, Rc<Arc<crate::control::keys::KeySet>>)>,
    /// This core's handles on tenants' shared counters.
    tenant_states:
        RefCell<std::collections::HashMap<String, Arc<crate::control::limits::TenantState>>>,
    /// This core's handles on the endpoints of the table in `table`, by endpoint index
    /// (made at an endpoint's first use, dropped when the table changes): an attempt finds
    /// its endpoint's breaker and load without hashing or comparing its id. (Handed out as
    /// `Rc`s: taking one never writes a count another core shares.)
    endpoints: RefCell<Vec<Option<Rc<EndpointHandles>>>>,
    pub pool: Pool,
    /// This core's handles on its labelled series (no lock once a series exists).
    pub observed: crate::observe::metrics::CoreLocal,
    /// This core's load per endpoint (registered with `shared.health.loads`), and its
    /// lock-free handles on it.
    load_family: Arc<crate::observe::metrics::Family<crate::control::balance::Load, 1>>,
    loads: crate::observe::metrics::Local<crate::control::balance::Load, 1>,
    /// The audit writer's sink (`None` when auditing is off); records go through
    /// [`Core::audit_gate`].
    pub audit: Option<crate::audit::AuditSink>,
    /// This second (since the epoch) and how many unauthenticated refusals were audited in
    /// it on this core.
    unauthenticated_audited: Cell<(u64, u64)>,
    pub connections: Cell<usize>,
    next_id: Cell<u64>,
    /// Closed when shutdown starts: idle connections wait on it instead of polling.
    pub(crate) shutdown_gate: glommio::sync::Semaphore,
}

/// One core's handles on one endpoint: its breaker (shared by the host's cores), this
/// core's load at it (in flight, retries, recent time to first token), and when this core
/// last reported it healthy (`None`: not since it last failed).
#[derive(Debug)]
pub struct EndpointHandles {
    pub breaker: Arc<crate::control::breaker::Breaker>,
    pub load: Arc<crate::observe::metrics::Entry<crate::control::balance::Load, 1>>,
    reported_ok: Cell<Option<i64>>,
}

impl Core {
    pub(crate) fn new(id: usize, shared: Arc<Shared>) -> Self {
        let (generation, table) = shared.tables.load();
        let (key_generation, keys) = shared.keys.cell.load();
        let seed = SystemTimeSeed::now() ^ ((id as u64) << 56);
        Self {
            id,
            pool: Pool::new(&shared.config, Arc::clone(&shared.resolver)),
            observed: crate::observe::metrics::CoreLocal::default(),
            load_family: shared.health.loads.register(),
            loads: crate::observe::metrics::Local::default(),
            audit: shared.audit.clone(),
            unauthenticated_audited: Cell::new((0, 0)),
            shared,
            table: RefCell::new((generation, Rc::new(table))),
            keys: RefCell::new((key_generation, Rc::new(keys))),
            tenant_states: RefCell::new(std::collections::HashMap::new()),
            endpoints: RefCell::default(),
            connections: Cell::new(0),
            next_id: Cell::new(seed),
            shutdown_gate: glommio::sync::Semaphore::new(0),
        }
    }

    /// Resolves once this core has seen shutdown start (the accept loop closes the gate).
    pub async fn shutdown_started(&self) {
        if self.shutting_down() {
            return;
        }
        // Never signalled, only closed: `acquire` returns (with an error) at close.
        let _ = self.shutdown_gate.acquire(1).await;
    }

    /// The current table. One atomic load when nothing changed; the returned handle keeps
    /// this table alive for the whole request even if a reload swaps it meanwhile.
    pub fn table(&self) -> Rc<Arc<Loaded>> {
        let generation = self.shared.tables.generation();
        let mut slot = self.table.borrow_mut();
        if slot.0 != generation {
            let (g, t) = self.shared.tables.load();
            *slot = (g, Rc::new(t));
            self.endpoints.borrow_mut().clear();
        }
        Rc::clone(&slot.1)
    }

    /// The client keys in force: one atomic load when nothing changed, so a revoked key is
    /// refused from the next request on.
    pub fn keys(&self) -> Rc<Arc<crate::control::keys::KeySet>> {
        let generation = self.shared.keys.cell.generation();
        let mut slot = self.keys.borrow_mut();
        if slot.0 != generation {
            let (g, k) = self.shared.keys.cell.load();
            *slot = (g, Rc::new(k));
        }
        Rc::clone(&slot.1)
    }

    /// A tenant's limit counters (shared by all cores; looked up here without a lock after
    /// the first request of the tenant on this core).
    pub fn tenant_state(&self, tenant: &str) -> Arc<crate::control::limits::TenantState> {
        if let Some(s) = self.tenant_states.borrow().get(tenant) {
            return Arc::clone(s);
        }
        let s = self.shared.limits.state(tenant);
        self.tenant_states
            .borrow_mut()
            .insert(tenant.to_owned(), Arc::clone(&s));
        s
    }

    /// This core's handles on endpoint `e` of table `loaded` (a request's table: when a
    /// reload replaced it on this core meanwhile, the handles are looked up by id).
    pub fn endpoint(
        &self,
        loaded: &Loaded,
        e: &switchyard_table::EndpointView<'_>,
    ) -> Rc<EndpointHandles> {
        let current = std::ptr::eq(&**self.table.borrow().1, loaded);
        let index = e.index() as usize;
        if current && let Some(Some(h)) = self.endpoints.borrow().get(index) {
            return Rc::clone(h);
        }
        let made = Rc::new(EndpointHandles {
            breaker: self.shared.health.breakers.get(e.id()),
            load: self.loads.get(&self.load_family, [e.id()], || {
                crate::control::balance::Load::new(self.config().retry_budget)
            }),
            reported_ok: Cell::new(None),
        });
        if current {
            let mut slots = self.endpoints.borrow_mut();
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(Rc::clone(&made));
            }
        }
        made
    }

    /// An attempt at endpoint `id` got an answer (at `now`, ms since the epoch). Reported to
    /// the shared map at most once a second per endpoint and core while it keeps answering
    /// (see [`crate::control::health`]).
    pub fn endpoint_answered(&self, h: &EndpointHandles, id: &str, now: i64) {
        if h.reported_ok
            .get()
            .is_some_and(|at| now - at < crate::control::health::SUCCESS_REPORT_MS)
        {
            return;
        }
        h.reported_ok.set(Some(now));
        self.shared.health.success(id, now);
    }

    /// An attempt at endpoint `id` failed (at `now`, ms since the epoch).
    pub fn endpoint_failed(&self, h: &EndpointHandles, id: &str, error: &str, now: i64) {
        h.reported_ok.set(None);
        self.shared.health.failure(id, now, error);
    }

    /// A fresh request id number (unique per process run with high probability: a
    /// time-seeded counter per core, core id in the top bits).
    pub fn next_request_number(&self) -> u64 {
        let n = self.next_id.get().wrapping_add(1);
        self.next_id.set(n);
        n
    }

    /// This core's hand-over to the audit writer (`None` when auditing is off).
    pub fn audit_gate(&self) -> Option<&crate::audit::gate::Gate> {
        self.shared.audit_gates.get(self.id)
    }

    /// Whether an unauthenticated refusal gets its audit record: the first
    /// [`UNAUTHENTICATED_AUDITED_PER_SECOND`] a second on each core do; the rest are counted
    /// (`switchyard_audit_unauthenticated_unrecorded_total`) so that a flood of bad keys
    /// cannot turn into a flood of audit rows.
    pub fn audit_unauthenticated(&self) -> bool {
        let now = u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0);
        let (second, n) = self.unauthenticated_audited.get();
        let n = if second == now { n } else { 0 };
        self.unauthenticated_audited.set((now, n + 1));
        if n < UNAUTHENTICATED_AUDITED_PER_SECOND {
            return true;
        }
        self.metrics()
            .unaudited_refusals
            .fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) =
            crate::runtime::logging::allow(&crate::runtime::logging::UNAUDITED_REFUSALS)
        {
            tracing::warn!(
                core = self.id,
                suppressed,
                "unauthenticated requests beyond {UNAUTHENTICATED_AUDITED_PER_SECOND} a second per core are refused without an audit record (counted in switchyard_audit_unauthenticated_unrecorded_total)"
            );
        }
        false
    }

    pub fn shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// This core's counters.
    pub fn metrics(&self) -> &Metrics {
        // `Shared::metrics` has one entry per core, so `id` is always in range.
        &self.shared.metrics[self.id % self.shared.metrics.len().max(1)]
    }
}

struct SystemTimeSeed;

impl SystemTimeSeed {
    fn now() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Keep the low bits (they change fastest) in the counter's range; the top byte is
        // the core id.
        let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
        low.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8
    }
}

/// Unauthenticated refusals audited per second on each core (see
/// [`Core::audit_unauthenticated`]).
pub const UNAUTHENTICATED_AUDITED_PER_SECOND: u64 = 10;

/// Bytes of request bodies buffered on this node beyond the connections' initial buffers,
/// against one cap (`--max-pending-body-bytes`). Touched only by bodies larger than the
/// initial buffer, when their buffer grows.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    cap: u64,
}

impl BodyBudget {
    #[must_use]
    pub fn new(cap: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            cap,
        }
    }

    /// Takes `n` bytes of the budget; `false` (nothing taken) when they do not fit.
    pub(crate) fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.cap)
            })
            .is_ok()
    }

    pub(crate) fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Bytes reserved now (for `/metrics`).
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}
