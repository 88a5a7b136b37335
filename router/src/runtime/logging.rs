//! Logging that never blocks an executor, and per-site rate limits for lines a request can
//! cause.
//!
//! Log lines go to stderr through a bounded queue and a writer thread
//! (`tracing-appender`'s non-blocking writer): an executor formats its line and moves on.
//! When stderr is slow or stuck (a full pipe nobody reads, a blocked terminal), the queue
//! fills and further lines are dropped and counted (`switchyard_log_lines_dropped_total`)
//! rather than stalling requests. Lines a request can cause (upstream failures, refused
//! audit records) go through a [`Throttle`]: at most [`PER_SECOND`] a second per site, the
//! rest counted and reported with the next line that passes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines queued for stderr before more are dropped.
const QUEUED_LINES: usize = 65_536;
/// Lines a throttled site may log each second.
pub const PER_SECOND: u64 = 10;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Installs the subscriber (`format`: `json` or `text`; `filter` as for `RUST_LOG`, which
/// wins when set). Keep the guard until exit: dropping it flushes the queue.
pub fn init(format: &str, filter: &str) -> WorkerGuard {
    // The S3 client logs each retry at info; the shipper and the shared state log their
    // own outages once per transition, so its lines stay quiet unless asked for by name.
    let quiet = |f: &str| {
        if f.contains("object_store") {
            f.to_owned()
        } else {
            format!("{f},object_store=warn")
        }
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(quiet(&f)).ok())
        .or_else(|| EnvFilter::try_new(quiet(filter)).ok())
        .unwrap_or_else(|| EnvFilter::new("info,object_store=warn"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
}

/// Lines dropped because stderr could not keep up.
#[must_use]
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// One log site's budget: [`PER_SECOND`] lines per wall-clock second, shared by all cores.
#[derive(Debug)]
pub struct Throttle {
    /// The second (since the epoch) the count is for.
    second: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    #[must_use]
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a line may be logged at `site` now. When it may, `Some(n)`: `n` lines were
/// suppressed there since the last one logged (put it in the line).
pub fn allow(site: &Throttle) -> Option<u64> {
    let now = u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0);
    if site.second.swap(now, Ordering::AcqRel) != now {
        site.count.store(0, Ordering::Release);
    }
    if site.count.fetch_add(1, Ordering::AcqRel) < PER_SECOND {
        Some(site.suppressed.swap(0, Ordering::AcqRel))
    } else {
        site.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// Audit records refused by the writer's queue.
pub static AUDIT_OVERFLOW: Throttle = Throttle::new();
/// An endpoint failed and the next candidate is tried.
pub static CANDIDATE_FAILED: Throttle = Throttle::new();
/// An upstream response was cut after its head.
pub static UPSTREAM_CUT: Throttle = Throttle::new();
/// A request failed for a reason kept from the client (logged with its detail).
pub static INTERNAL_DETAIL: Throttle = Throttle::new();
/// A `strict` audit record could not be made durable.
pub static NOT_DURABLE: Throttle = Throttle::new();
/// Unauthenticated refusals left out of the audit trail (sampled).
pub static UNAUDITED_REFUSALS: Throttle = Throttle::new();
/// An OTLP trace export failed.
pub static OTLP_EXPORT: Throttle = Throttle::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_logs_at_most_its_budget_a_second_and_counts_the_rest() {
        let site = Throttle::new();
        let allowed = (0..100).filter(|_| allow(&site).is_some()).count() as u64;
        // The test may straddle a second boundary: then two budgets.
        assert!(
            (PER_SECOND..=2 * PER_SECOND).contains(&allowed),
            "{allowed}"
        );
        let suppressed = site.suppressed.load(Ordering::Relaxed);
        assert_eq!(allowed + suppressed, 100);
    }
}
