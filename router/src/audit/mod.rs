//! The audit trail: one record per API request, written as zstd Parquet shards.
//!
//! Cores append records to a channel (no I/O, no encoding on the request path); one writer
//! thread groups them by Hive partition (`tenant=<id>/dt=YYYY-MM-DD/hour=HH/`), encodes row
//! groups and seals a shard — footer written, fsync, rename from its temporary name — when it
//! reaches the size or age limit, and at shutdown. Readers (DuckDB, Athena) only ever see
//! complete files: temporary names end in `.tmp`, never `.parquet`.
//!
//! The `tenant` column and partition hold the tenant only when the table declares it; a
//! request claiming an unknown tenant is filed under `tenant=__HIVE_DEFAULT_PARTITION__`
//! (Hive's null), so a client cannot create directories by inventing tenants, and the claim
//! is kept in `tenant_claimed`.
//!
//! Durability (`buffered`): every record also goes to its shard's write-ahead log ([`wal`]),
//! written at once and fsynced every flush interval; sealing a shard deletes its log, and at
//! start the logs a crash left behind are sealed into new shards. A killed process loses no
//! record that reached the writer (cores hand records over in batches at most a fifth of the
//! flush interval old); a machine crash loses at most one flush interval.
//!
//! `strict` durability: a record sent with [`AuditSink::append_durable`] is acknowledged
//! after the batch it arrived in is written and fsynced (group commit); `proxy::chat` holds
//! the end of the response until then.
//!
//! Sealed shards are handed to [`ship`], which uploads them to S3-compatible storage.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(test)]
use std::sync::mpsc::Receiver;
use std::sync::mpsc::{Sender, SyncSender, TrySendError};
use std::time::Duration;

use parquet::schema::parser::parse_message_type;

mod columns;
pub mod compact;
pub mod gate;
pub mod query;
pub mod ship;
mod wal;
mod writer;

pub(crate) use self::writer::escape_path_value;
use self::writer::{Writer, create_dirs_durably};

/// The shard schema. Integers are signed; money is DECIMAL(18,6) in micro-dollars.
pub const SCHEMA: &str = "
message audit {
  REQUIRED INT64 ts (TIMESTAMP(MILLIS,true));
  REQUIRED BYTE_ARRAY request_id (STRING);
  OPTIONAL BYTE_ARRAY tenant (STRING);
  OPTIONAL BYTE_ARRAY data_class (STRING);
  OPTIONAL BYTE_ARRAY user_role (STRING);
  OPTIONAL INT32 rule_index;
  OPTIONAL BYTE_ARRAY rule_name (STRING);
  OPTIONAL BYTE_ARRAY endpoint_id (STRING);
  OPTIONAL BYTE_ARRAY model (STRING);
  REQUIRED INT32 status;
  REQUIRED INT64 latency_ms;
  OPTIONAL INT64 upstream_latency_ms;
  OPTIONAL INT64 tokens_in;
  OPTIONAL INT64 tokens_out;
  REQUIRED BOOLEAN tokens_estimated;
  OPTIONAL INT64 cost_usd (DECIMAL(18,6));
  REQUIRED BOOLEAN stream;
  OPTIONAL BYTE_ARRAY error (STRING);
  REQUIRED INT64 request_bytes;
  REQUIRED INT64 response_bytes;
  OPTIONAL INT32 upstream_status;
  OPTIONAL BYTE_ARRAY fallback_from (STRING);
  OPTIONAL BYTE_ARRAY tenant_claimed (STRING);
  OPTIONAL BYTE_ARRAY key_id (STRING);
  OPTIONAL BYTE_ARRAY api (STRING);
  OPTIONAL BYTE_ARRAY upstream_model (STRING);
  OPTIONAL INT64 cache_read_tokens;
  OPTIONAL INT64 cache_write_tokens;
  OPTIONAL BYTE_ARRAY stop_reason (STRING);
  OPTIONAL INT32 attempts;
  OPTIONAL BYTE_ARRAY retry_reasons (STRING);
  OPTIONAL BYTE_ARRAY trace_id (STRING);
  OPTIONAL BYTE_ARRAY limit_mode (STRING);
  OPTIONAL BYTE_ARRAY requested_model (STRING);
  OPTIONAL INT64 latency_budget_ms;
  OPTIONAL INT64 cost_budget_usd (DECIMAL(18,6));
  OPTIONAL INT64 cost_cap_per_1k (DECIMAL(18,6));
  OPTIONAL INT64 policy_revision;
}
";

/// One request's audit record.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// Wall-clock time the request head was complete, ms since the Unix epoch (UTC).
    pub ts_ms: i64,
    pub request_id: String,
    /// The request's tenant when the table declares it (also the partition).
    pub tenant: Option<String>,
    /// An `X-Tenant` value the table does not declare, as sent (lossy UTF-8, truncated).
    pub tenant_claimed: Option<String>,
    pub data_class: Option<String>,
    pub user_role: Option<String>,
    pub rule_index: Option<i32>,
    pub rule_name: Option<String>,
    pub endpoint_id: Option<String>,
    pub model: Option<String>,
    pub status: i32,
    pub latency_ms: i64,
    pub upstream_latency_ms: Option<i64>,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    /// The token counts are an estimate (no usage block from the upstream).
    pub tokens_estimated: bool,
    /// Micro-dollars.
    pub cost_micros: Option<i64>,
    pub stream: bool,
    pub error: Option<String>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub upstream_status: Option<i32>,
    pub fallback_from: Option<String>,
    /// The id of the client key that authenticated the request (never the key).
    pub key_id: Option<String>,
    /// The API asked for: `chat`, `messages` or `embeddings`.
    pub api: Option<String>,
    /// The model id sent upstream.
    pub upstream_model: Option<String>,
    /// Of `tokens_in`, how many were read from the provider's prompt cache.
    pub cache_read_tokens: Option<i64>,
    /// Of `tokens_in`, how many were written to it.
    pub cache_write_tokens: Option<i64>,
    /// Why generation stopped, as the client was told (`stop`, `tool_calls`, `end_turn`, …).
    pub stop_reason: Option<String>,
    /// Upstream attempts made (0 when none was: refused, answered in-process, over budget).
    pub attempts: Option<i32>,
    /// Why each attempt before the last moved on, in order: `endpoint:outcome`, comma
    /// separated (`gpu-a:overloaded,gpu-b:rate_limited`); outcomes as in
    /// `switchyard_upstream_attempts_total`.
    pub retry_reasons: Option<String>,
    /// The W3C trace id (32 hex digits) the request ran under: the client's `traceparent`'s,
    /// or one the router started.
    pub trace_id: Option<crate::observe::trace::TraceId>,
    /// How the tenant's limits were enforced for this request (tenants with limits only):
    /// `fleet` (Redis leases), `local` (this host alone: no `--redis`, or Redis down),
    /// `share` or `closed` (Redis down, as `--limits-on-store-down` says).
    pub limit_mode: Option<&'static str>,
    /// The model the client asked for, as sent (`auto` before it was resolved; `model` is
    /// the one used).
    pub requested_model: Option<String>,
    /// The request's `X-Latency-Budget-Ms`.
    pub latency_budget_ms: Option<i64>,
    /// The request's `X-Cost-Budget-Usd`, micro-dollars.
    pub cost_budget_micros: Option<i64>,
    /// The request's `cost_cap_per_1k` attribute as evaluated (its cost budget over its
    /// worst-case tokens), micro-dollars per 1,000 tokens; present whenever a cost budget
    /// was sent, whether or not the serving policy reads it.
    pub cost_cap_per_1k_micros: Option<i64>,
    /// The revision of the table that decided the request (absent when it was refused
    /// before the table was consulted).
    pub policy_revision: Option<i64>,
}

/// A `limit_mode` as read back (from a write-ahead log or a shard).
#[must_use]
pub fn limit_mode(text: &str) -> Option<&'static str> {
    ["fleet", "local", "share", "closed"]
        .into_iter()
        .find(|m| *m == text)
}

/// Longest string stored from client input (tenant, data class, role, request id).
pub(crate) const MAX_TEXT: usize = 256;

/// `bytes` as a string fit for a record: lossy UTF-8, at most [`MAX_TEXT`] bytes.
#[must_use]
pub fn text(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Counters the writer reports on `/metrics`.
#[derive(Debug)]
pub struct AuditStats {
    /// False from a failed write or sync until the next successful sync.
    pub healthy: std::sync::atomic::AtomicBool,
    pub records_written: AtomicU64,
    pub records_failed: AtomicU64,
    pub shards_sealed: AtomicU64,
    pub write_errors: AtomicU64,
    pub shards_shipped: AtomicU64,
    pub ship_errors: AtomicU64,
    /// Sealed shards waiting for upload.
    pub ship_pending: AtomicU64,
    /// Of those, shards whose destination is held (permanent error: no such bucket,
    /// access denied).
    pub ship_held: AtomicU64,
}

impl Default for AuditStats {
    fn default() -> Self {
        Self {
            healthy: std::sync::atomic::AtomicBool::new(true),
            records_written: AtomicU64::new(0),
            records_failed: AtomicU64::new(0),
            shards_sealed: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            shards_shipped: AtomicU64::new(0),
            ship_errors: AtomicU64::new(0),
            ship_pending: AtomicU64::new(0),
            ship_held: AtomicU64::new(0),
        }
    }
}

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Root of the Hive layout.
    pub dir: PathBuf,
    /// Seal a shard at about this many bytes (encoded row groups).
    pub max_shard_bytes: u64,
    /// Seal a shard this long after it was opened.
    pub max_shard_age: Duration,
    /// Rows per row group (the writer also cuts one when a shard is sealed).
    pub row_group_rows: usize,
    /// A row group is also cut when the records waiting for it hold this many bytes of
    /// memory: what bounds the writer's memory (and the time one encoding takes) when
    /// records are large.
    pub row_group_bytes: usize,
    /// Identifies this process in shard names: host, pid, start time.
    pub node: String,
    /// How often write-ahead logs are fsynced.
    pub flush_interval: Duration,
    /// Where sealed shards are announced for shipping, and what decides their destination.
    pub ship: Option<Shipping>,
}

/// How the writer hands sealed shards to the shipper.
#[derive(Clone, Debug)]
pub struct Shipping {
    pub tx: Sender<ship::ShipMsg>,
    /// The serving policy: a shard's destination is its tenant's `audit_bucket` when it is
    /// sealed.
    pub tables: Arc<crate::control::table::TableCell>,
    /// `--audit-sink`.
    pub sink: Option<ship::Destination>,
}

/// What cores send the writer.
#[derive(Debug)]
enum Msg {
    /// A record, and for `strict` durability where to say when it is durable.
    Record(Box<Record>, Option<futures_channel::oneshot::Sender<bool>>),
    /// A core's batch of `buffered` records.
    Batch(Vec<Record>),
    /// Seal every shard and stop (graceful shutdown).
    Stop,
}

impl Msg {
    fn records(&self) -> usize {
        match self {
            Self::Record(..) => 1,
            Self::Batch(b) => b.len(),
            Self::Stop => 0,
        }
    }
}

/// Messages the writer's channel holds; a core sends one per batch.
pub(crate) const CHANNEL_MESSAGES: usize = 4096;
/// Records waiting in the channel at most (about 100 MB); beyond it a core's records are
/// counted as failed (`switchyard_audit_records_failed_total`) instead of queueing without
/// bound while the writer cannot keep up.
pub const MAX_QUEUED_RECORDS: u64 = 262_144;

/// The sending side, one clone per core.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: SyncSender<Msg>,
    stats: Arc<AuditStats>,
    /// Records sent and not yet taken by the writer.
    queued: Arc<AtomicU64>,
    spares: Arc<Spares>,
}

/// Batch vectors the writer has emptied, for the gates to fill again: a batch is hundreds of
/// kilobytes, and allocating one per batch on a core (freed on the writer's thread) kept
/// glibc consolidating its heap on the request path.
#[derive(Debug, Default)]
pub struct Spares(std::sync::Mutex<Vec<Vec<Record>>>);

impl Spares {
    /// Most vectors kept.
    const KEEP: usize = 16;

    fn give_back(&self, mut batch: Vec<Record>) {
        batch.clear();
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < Self::KEEP {
            kept.push(batch);
        }
    }

    fn take(&self) -> Option<Vec<Record>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }
}

impl AuditSink {
    /// A sink whose receiving end is returned instead of given to a writer (tests).
    #[cfg(test)]
    fn detached(stats: Arc<AuditStats>) -> (Self, Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_MESSAGES);
        let sink = Self {
            tx,
            stats,
            queued: Arc::new(AtomicU64::new(0)),
            spares: Arc::default(),
        };
        (sink, rx)
    }

    /// Sends without blocking; a message over the caps, or one the writer can no longer
    /// take (it has stopped), is counted as failed, and said in the log (at most once a
    /// second).
    fn send(&self, msg: Msg) -> bool {
        let n = msg.records() as u64;
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        let refused = if before.saturating_add(n) > MAX_QUEUED_RECORDS {
            Some("the audit writer is behind (too many records queued)")
        } else {
            match self.tx.try_send(msg) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => {
                    Some("the audit writer is behind (its channel is full)")
                }
                Err(TrySendError::Disconnected(_)) => Some("the audit writer has stopped"),
            }
        };
        let Some(why) = refused else {
            return true;
        };
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.stats.records_failed.fetch_add(n, Ordering::Relaxed);
        if let Some(suppressed) =
            crate::runtime::logging::allow(&crate::runtime::logging::AUDIT_OVERFLOW)
        {
            tracing::error!(
                records = n,
                reason = why,
                suppressed,
                "audit records not written; counted as failed"
            );
        }
        false
    }

    /// Appends a core's batch of records; never blocks.
    /// An empty batch vector to fill (one the writer gave back, when there is one).
    #[must_use]
    pub fn empty_batch(&self) -> Vec<Record> {
        // Sized for a full batch up front: one grown by doubling reallocates a block of
        // hundreds of kilobytes several times on the request path.
        let mut batch = self.spares.take().unwrap_or_default();
        batch.reserve_exact(gate::BATCH);
        batch
    }

    pub fn append_batch(&self, records: Vec<Record>) {
        self.send(Msg::Batch(records));
    }

    /// Appends a record and returns a future that resolves to whether it is durable (in a
    /// write-ahead log that has been fsynced). Records arriving together share one fsync.
    pub fn append_durable(&self, record: Record) -> futures_channel::oneshot::Receiver<bool> {
        let (tx, rx) = futures_channel::oneshot::channel();
        // Refused: the sender is dropped with the message, and the request sees "not
        // durable".
        self.send(Msg::Record(Box::new(record), Some(tx)));
        rx
    }

    /// Whether the last write or sync succeeded (`strict` mode refuses requests when not).
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.stats.healthy.load(Ordering::Relaxed)
    }

    /// Asks the writer to seal every open shard and stop (waits for room in the channel:
    /// the stop must not be lost).
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

/// Starts the writer thread; returns the sink and the thread (which ends, after sealing
/// every shard, when every sink clone is dropped).
pub fn start(
    config: WriterConfig,
    stats: Arc<AuditStats>,
) -> std::io::Result<(AuditSink, std::thread::JoinHandle<()>)> {
    if let Err(e) = create_dirs_durably(&config.dir) {
        // Not fatal: the router keeps serving (buffered) or refuses (strict), the failure is
        // counted and logged, and every new shard retries the directory.
        stats.healthy.store(false, Ordering::Relaxed);
        stats.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(dir = %config.dir.display(), error = %e, "audit directory unusable");
    }
    let schema = parse_message_type(SCHEMA)
        .map_err(|e| std::io::Error::other(format!("audit schema: {e}")))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_MESSAGES);
    let queued = Arc::new(AtomicU64::new(0));
    let mut writer = Writer::new(config, Arc::clone(&stats), Arc::new(schema));
    writer.queued = Arc::clone(&queued);
    let spares: Arc<Spares> = Arc::default();
    writer.spares = Arc::clone(&spares);
    writer.recover();
    let handle = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            background_priority("audit-writer");
            writer.run(&rx);
        })?;
    Ok((
        AuditSink {
            tx,
            stats,
            queued,
            spares,
        },
        handle,
    ))
}

/// Niceness of the audit threads: when they and a request executor both want a CPU, the
/// executor goes first, so encoding a row group does not stall the requests on that core
/// (it would otherwise add milliseconds to their tail latency). At nice 10 a thread still gets
/// about a tenth of a saturated CPU, several times what encoding costs per request, so the
/// trail keeps up; in `strict` mode an executor waiting for durability is idle, so the writer
/// runs at once.
const BACKGROUND_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (Linux: per thread). Failure is logged,
/// not fatal: the trail is written either way.
pub(crate) fn background_priority(thread: &str) {
    // SAFETY: gettid and setpriority take and return plain integers; with PRIO_PROCESS and a
    // thread id, Linux changes only that thread.
    #[expect(unsafe_code, reason = "two libc calls without pointers")]
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid.cast_unsigned(), BACKGROUND_NICE)
    };
    if rc != 0 {
        tracing::warn!(thread, error = %std::io::Error::last_os_error(), "could not lower thread priority");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    /// Issue 11, item 6: the channel to the writer was unbounded (and unauthenticated
    /// refusals fed it too): a writer that falls behind grew memory without limit. Now a
    /// sink never blocks and never queues past its caps; what does not fit is counted.
    #[test]
    fn a_stalled_writer_bounds_the_queue_and_counts_what_does_not_fit() {
        let stats = Arc::new(AuditStats::default());
        let (sink, rx) = AuditSink::detached(Arc::clone(&stats));
        let batches = 600u64;
        for _ in 0..batches {
            sink.append_batch(vec![Record::default(); 512]);
        }
        let queued = rx.try_iter().map(|m| m.records() as u64).sum::<u64>();
        assert_eq!(queued, MAX_QUEUED_RECORDS);
        assert_eq!(
            stats.records_failed.load(Ordering::Relaxed),
            batches * 512 - MAX_QUEUED_RECORDS
        );
        // Taken by the writer, the room is back (the writer decrements as it receives).
        sink.queued.store(0, Ordering::Relaxed);
        for _ in 0..CHANNEL_MESSAGES + 10 {
            drop(sink.append_durable(Record::default()));
        }
        assert_eq!(
            stats.records_failed.load(Ordering::Relaxed),
            batches * 512 - MAX_QUEUED_RECORDS + 10,
            "a full channel refuses, without blocking"
        );
        drop(rx);
    }

    #[test]
    fn schema_parses() {
        let t = parse_message_type(SCHEMA).unwrap();
        assert_eq!(t.get_fields().len(), 38);
    }
}
