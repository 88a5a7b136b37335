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

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::respond::civil_from_days;

mod columns;
pub mod gate;
pub mod query;
pub mod ship;
mod wal;

use self::columns::write_row_group;

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
}

/// Longest string stored from client input (tenant, data class, role, request id).
const MAX_TEXT: usize = 256;

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

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
    pub tables: Arc<crate::table::TableCell>,
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
const CHANNEL_MESSAGES: usize = 4096;
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
        if let Some(suppressed) = crate::logging::allow(&crate::logging::AUDIT_OVERFLOW) {
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
    writer.recover();
    let handle = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            background_priority("audit-writer");
            writer.run(&rx);
        })?;
    Ok((AuditSink { tx, stats, queued }, handle))
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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Partition {
    tenant: Option<String>,
    /// Days since the epoch and hour of day, UTC.
    day: i64,
    hour: i64,
}

impl Partition {
    fn of(r: &Record) -> Self {
        let secs = r.ts_ms.div_euclid(1000);
        Self {
            tenant: r.tenant.clone(),
            day: secs.div_euclid(86_400),
            hour: secs.rem_euclid(86_400) / 3600,
        }
    }

    fn dir(&self, root: &Path) -> PathBuf {
        let tenant = match &self.tenant {
            Some(t) => escape_path_value(t),
            None => "__HIVE_DEFAULT_PARTITION__".to_owned(),
        };
        let (y, m, d) = civil_from_days(u64::try_from(self.day).unwrap_or(0));
        root.join(format!("tenant={tenant}"))
            .join(format!("dt={y:04}-{m:02}-{d:02}"))
            .join(format!("hour={:02}", self.hour))
    }
}

/// Hive-style escaping of a partition value: anything but `[A-Za-z0-9._-]` as `%XX` (and a
/// leading `.`, so no value names a hidden or parent directory).
pub(crate) fn escape_path_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    crate::codec::percent_encode(
        v,
        |i, b| b.is_ascii_alphanumeric() || b == b'.' && i > 0 || b == b'_' || b == b'-',
        &mut out,
    );
    out
}

struct Shard {
    tmp: PathBuf,
    path: PathBuf,
    writer: SerializedFileWriter<File>,
    pending: Vec<Record>,
    /// Estimated bytes of `pending`.
    pending_bytes: usize,
    rows: u64,
    opened: Instant,
    wal_path: PathBuf,
    wal: File,
    /// Frames not yet written to `wal`.
    wal_buf: Vec<u8>,
    /// Written but not yet fsynced.
    wal_dirty: bool,
}

struct Writer {
    config: WriterConfig,
    stats: Arc<AuditStats>,
    open: HashMap<Partition, Shard>,
    seq: u64,
    /// A write failed since the last sync: records acknowledged now would not be durable.
    failed_since_sync: bool,
    props: Arc<WriterProperties>,
    schema: Arc<parquet::schema::types::Type>,
    /// Records in the channel (shared with the sinks; decremented as they are taken).
    queued: Arc<AtomicU64>,
    /// Estimated bytes of records waiting in open shards for their row group.
    pending_bytes: usize,
}

/// Bytes of records the writer holds before encoding (they wait for a row group of
/// `row_group_rows`); past it the fullest shard's row group is written early, so many open
/// partitions cannot add up to unbounded memory.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// A record's size in memory, roughly: the fixed fields plus its strings.
fn record_bytes(r: &Record) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    160 + r.request_id.len()
        + [
            &r.tenant,
            &r.tenant_claimed,
            &r.data_class,
            &r.user_role,
            &r.rule_name,
            &r.endpoint_id,
            &r.model,
            &r.error,
            &r.fallback_from,
            &r.key_id,
        ]
        .iter()
        .map(|s| text(s))
        .sum::<usize>()
}

impl Writer {
    fn new(
        config: WriterConfig,
        stats: Arc<AuditStats>,
        schema: Arc<parquet::schema::types::Type>,
    ) -> Self {
        use parquet::file::properties::EnabledStatistics;
        use parquet::schema::types::ColumnPath;
        // Statistics where queries prune (time, tenant, endpoint, status); no dictionary for
        // columns that are unique per row (it would only cost hashing).
        let chunk_stats = ["ts", "tenant", "data_class", "endpoint_id", "status"];
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by("switchyard".to_owned())
            .set_statistics_enabled(EnabledStatistics::None);
        for column in chunk_stats {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
        }
        for column in [
            "request_id",
            "ts",
            "latency_ms",
            "upstream_latency_ms",
            "request_bytes",
            "response_bytes",
        ] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        let props = props.build();
        Self {
            config,
            stats,
            open: HashMap::new(),
            seq: 0,
            failed_since_sync: false,
            props: Arc::new(props),
            schema,
            queued: Arc::new(AtomicU64::new(0)),
            pending_bytes: 0,
        }
    }

    /// Takes one message off the channel; `true` for the stop message.
    fn receive(
        &mut self,
        msg: Msg,
        acks: &mut Vec<(futures_channel::oneshot::Sender<bool>, bool)>,
    ) -> bool {
        self.queued
            .fetch_sub(msg.records() as u64, Ordering::AcqRel);
        match msg {
            Msg::Record(record, ack) => self.take(*record, ack, acks),
            Msg::Batch(records) => records.into_iter().for_each(|r| {
                self.add(r);
            }),
            Msg::Stop => return true,
        }
        false
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        let tick = self.config.flush_interval.min(Duration::from_millis(500));
        let mut synced = Instant::now();
        let mut acks = Vec::new();
        'run: loop {
            match rx.recv_timeout(tick) {
                Ok(msg) => {
                    if self.receive(msg, &mut acks) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Drain what is queued before looking at the clock: one write (and, for
            // `strict` records, one fsync) per batch — group commit.
            while let Ok(msg) = rx.try_recv() {
                if self.receive(msg, &mut acks) {
                    break 'run;
                }
            }
            self.write_wals();
            if !acks.is_empty() || synced.elapsed() >= self.config.flush_interval {
                let ok = self.sync_wals();
                synced = Instant::now();
                for (ack, added) in acks.drain(..) {
                    let _ = futures_channel::oneshot::Sender::send(ack, ok && added);
                }
            }
            self.rotate_aged();
        }
        // Everything sent before the stop (the cores' gates are closed by then) is here.
        while let Ok(msg) = rx.try_recv() {
            self.receive(msg, &mut acks);
        }
        self.write_wals();
        let ok = self.sync_wals();
        for (ack, added) in acks.drain(..) {
            let _ = futures_channel::oneshot::Sender::send(ack, ok && added);
        }
        let partitions: Vec<Partition> = self.open.keys().cloned().collect();
        for p in partitions {
            self.seal(&p);
        }
    }

    fn take(
        &mut self,
        record: Record,
        ack: Option<futures_channel::oneshot::Sender<bool>>,
        acks: &mut Vec<(futures_channel::oneshot::Sender<bool>, bool)>,
    ) {
        let added = self.add(record);
        if let Some(ack) = ack {
            acks.push((ack, added));
        }
    }

    /// Adds a record to its shard (and log); false if it could not be.
    fn add(&mut self, record: Record) -> bool {
        let partition = Partition::of(&record);
        if !self.open.contains_key(&partition) && !self.open_shard(&partition) {
            self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(shard) = self.open.get_mut(&partition) else {
            return false;
        };
        wal::append(&record, &mut shard.wal_buf);
        let size = record_bytes(&record);
        shard.pending_bytes += size;
        self.pending_bytes += size;
        shard.pending.push(record);
        if self.pending_bytes > MAX_PENDING_BYTES {
            self.flush_fullest();
        }
        let Some(shard) = self.open.get_mut(&partition) else {
            return true;
        };
        if shard.pending.len() >= self.config.row_group_rows {
            self.flush_row_group(&partition);
            if self
                .open
                .get(&partition)
                .is_some_and(|s| s.writer.bytes_written() as u64 >= self.config.max_shard_bytes)
            {
                self.seal(&partition);
            }
        }
        true
    }

    fn open_shard(&mut self, partition: &Partition) -> bool {
        let dir = partition.dir(&self.config.dir);
        if let Err(e) = create_dirs_durably(&dir) {
            self.write_error(&dir, &e.to_string());
            return false;
        }
        self.seq += 1;
        let name = format!("part-{}-{:06}.parquet", self.config.node, self.seq);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let wal_path = dir.join(format!(".{name}.wal"));
        // The new log's directory entry is made durable before any record in it is
        // acknowledged: an fsynced log that a crash unlinks (its entry never reached the
        // disk) would lose acknowledged records.
        let created = File::create(&tmp)
            .and_then(|f| Ok((f, File::create(&wal_path)?)))
            .and_then(|files| {
                File::open(&dir)?.sync_all()?;
                Ok(files)
            });
        let (file, wal) = match created {
            Ok(files) => files,
            Err(e) => {
                self.write_error(&tmp, &e.to_string());
                let _ = std::fs::remove_file(&tmp);
                return false;
            }
        };
        match SerializedFileWriter::new(file, Arc::clone(&self.schema), Arc::clone(&self.props)) {
            Ok(writer) => {
                self.open.insert(
                    partition.clone(),
                    Shard {
                        tmp,
                        path,
                        writer,
                        pending: Vec::new(),
                        pending_bytes: 0,
                        rows: 0,
                        opened: Instant::now(),
                        wal_path,
                        wal,
                        wal_buf: Vec::new(),
                        wal_dirty: false,
                    },
                );
                true
            }
            Err(e) => {
                self.write_error(&tmp, &e.to_string());
                false
            }
        }
    }

    /// Writes every shard's pending log frames (one write per shard per batch).
    fn write_wals(&mut self) {
        let mut failed = Vec::new();
        for shard in self.open.values_mut() {
            if shard.wal_buf.is_empty() {
                continue;
            }
            match std::io::Write::write_all(&mut shard.wal, &shard.wal_buf) {
                Ok(()) => shard.wal_dirty = true,
                Err(e) => failed.push((shard.wal_path.clone(), e.to_string())),
            }
            shard.wal_buf.clear();
        }
        for (path, e) in failed {
            self.write_error(&path, &e);
        }
    }

    /// fsyncs every log written since the last sync (the flush-interval bound); returns
    /// whether every sync (and every write since the last one) succeeded.
    fn sync_wals(&mut self) -> bool {
        let mut failed = Vec::new();
        for shard in self.open.values_mut() {
            if shard.wal_dirty {
                match shard.wal.sync_data() {
                    Ok(()) => shard.wal_dirty = false,
                    Err(e) => failed.push((shard.wal_path.clone(), e.to_string())),
                }
            }
        }
        let ok = failed.is_empty() && !self.failed_since_sync;
        for (path, e) in failed {
            self.write_error(&path, &e);
        }
        self.failed_since_sync = false;
        self.stats.healthy.store(ok, Ordering::Relaxed);
        ok
    }

    /// Seals the records of write-ahead logs a previous run left behind into new shards,
    /// and removes temporary shard files (their records are all in a log).
    fn recover(&mut self) {
        let mut logs = Vec::new();
        let mut temps = Vec::new();
        collect_leftovers(&self.config.dir, &mut logs, &mut temps);
        for tmp in temps {
            let _ = std::fs::remove_file(&tmp);
        }
        let mut recovered = 0usize;
        for log in &logs {
            // A log whose shard was sealed (the crash came between rename and delete) is
            // already in the shard; sealing it again would duplicate its records.
            if sealed_shard_of(log).is_some_and(|p| p.exists()) {
                let _ = std::fs::remove_file(log);
                continue;
            }
            let records = match std::fs::read(log) {
                Ok(bytes) => wal::read(&bytes),
                Err(e) => {
                    self.write_error(log, &e.to_string());
                    continue;
                }
            };
            recovered += records.len();
            for r in records {
                self.add(r);
            }
            self.write_wals();
            let partitions: Vec<Partition> = self.open.keys().cloned().collect();
            let mut ok = true;
            for p in partitions {
                ok &= self.seal(&p);
            }
            if ok {
                let _ = std::fs::remove_file(log);
            }
        }
        if !logs.is_empty() {
            tracing::info!(
                logs = logs.len(),
                records = recovered,
                "recovered audit records left by a previous run into sealed shards"
            );
        }
    }

    fn write_error(&mut self, path: &Path, what: &str) {
        self.failed_since_sync = true;
        self.stats.healthy.store(false, Ordering::Relaxed);
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(path = %path.display(), error = what, "audit write failed");
    }

    /// Writes the row groups of the shards holding the most pending records until the
    /// writer is back under [`MAX_PENDING_BYTES`].
    fn flush_fullest(&mut self) {
        while self.pending_bytes > MAX_PENDING_BYTES / 2 {
            let Some(fullest) = self
                .open
                .iter()
                .filter(|(_, s)| !s.pending.is_empty())
                .max_by_key(|(_, s)| s.pending_bytes)
                .map(|(p, _)| p.clone())
            else {
                return;
            };
            self.flush_row_group(&fullest);
        }
    }

    fn flush_row_group(&mut self, partition: &Partition) {
        let Some(shard) = self.open.get_mut(partition) else {
            return;
        };
        self.pending_bytes = self.pending_bytes.saturating_sub(shard.pending_bytes);
        shard.pending_bytes = 0;
        if shard.pending.is_empty() {
            return;
        }
        let mut rows = std::mem::take(&mut shard.pending);
        match write_row_group(&mut shard.writer, &mut rows) {
            Ok(()) => {
                shard.rows += rows.len() as u64;
            }
            Err(e) => {
                let tmp = shard.tmp.clone();
                self.stats
                    .records_failed
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.write_error(&tmp, &e.to_string());
            }
        }
    }

    fn rotate_aged(&mut self) {
        let aged: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, s)| s.opened.elapsed() >= self.config.max_shard_age)
            .map(|(p, _)| p.clone())
            .collect();
        for p in aged {
            self.seal(&p);
        }
    }

    /// Writes the last row group and the footer, syncs, and renames the shard into place;
    /// then its log is no longer needed. Returns whether the shard is safely sealed.
    fn seal(&mut self, partition: &Partition) -> bool {
        self.flush_row_group(partition);
        let Some(shard) = self.open.remove(partition) else {
            return true;
        };
        let Shard {
            tmp,
            path,
            writer,
            rows,
            wal_path,
            wal,
            ..
        } = shard;
        drop(wal);
        if rows == 0 {
            drop(writer);
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&wal_path);
            return true;
        }
        // The destination is fixed now and written beside the shard before it appears, so a
        // later policy change or a restart never sends these records elsewhere.
        let destination = self.config.ship.as_ref().and_then(|s| {
            ship::Destination::for_tenant(&s.tables, s.sink.as_ref(), partition.tenant.as_deref())
        });
        let record_destination = || -> std::io::Result<()> {
            // Only a shard that ships records where to: one that stays local is shipped by
            // whatever destination applies when shipping is configured later.
            match ship::destination_file(&path) {
                Some(file) if destination.is_some() => {
                    let mut f = File::create(file)?;
                    std::io::Write::write_all(
                        &mut f,
                        ship::destination_text(destination.as_ref()).as_bytes(),
                    )?;
                    f.sync_all()
                }
                _ => Ok(()),
            }
        };
        let sealed = writer
            .into_inner()
            .map_err(|e| e.to_string())
            .and_then(|file| file.sync_all().map_err(|e| e.to_string()))
            .and_then(|()| record_destination().map_err(|e| e.to_string()))
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()))
            .and_then(|()| sync_dir(&path).map_err(|e| e.to_string()));
        match sealed {
            Ok(()) => {
                let _ = std::fs::remove_file(&wal_path);
                if let Some(ship) = &self.config.ship {
                    let _ = ship
                        .tx
                        .send(ship::ShipMsg::Sealed(path.clone(), destination));
                }
                self.stats
                    .records_written
                    .fetch_add(rows, Ordering::Relaxed);
                self.stats.shards_sealed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(shard = %path.display(), rows, "audit shard sealed");
                true
            }
            Err(e) => {
                // The records stay in the log; the next start seals them.
                self.write_error(&tmp, &e);
                false
            }
        }
    }
}

/// Write-ahead logs and temporary shards under `dir`.
fn collect_leftovers(dir: &Path, logs: &mut Vec<PathBuf>, temps: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_leftovers(&path, logs, temps);
        } else if path.extension().is_some_and(|e| e == "wal") {
            logs.push(path);
        } else if path.extension().is_some_and(|e| e == "tmp") {
            temps.push(path);
        }
    }
}

/// The sealed shard a log belongs to: `.part-X.parquet.wal` → `part-X.parquet`.
fn sealed_shard_of(log: &Path) -> Option<PathBuf> {
    let name = log.file_name()?.to_str()?;
    let shard = name.strip_prefix('.')?.strip_suffix(".wal")?;
    Some(log.with_file_name(shard))
}

/// Creates `dir` and its missing parents, fsyncing each parent after its new entry, so the
/// whole path survives a machine crash once this returns.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            // Another thread or process made it meanwhile: fine, it is synced below too.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        sync_dir(d)?;
    }
    Ok(())
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
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
        assert_eq!(t.get_fields().len(), 24);
    }

    #[test]
    fn partitions() {
        let r = Record {
            ts_ms: 1_795_332_412_000,
            tenant: Some("acme/eu".into()),
            ..Record::default()
        };
        let dir = Partition::of(&r).dir(Path::new("/a"));
        assert_eq!(dir, Path::new("/a/tenant=acme%2Feu/dt=2026-11-22/hour=07"));
        let none = Record::default();
        assert!(
            Partition::of(&none)
                .dir(Path::new("/a"))
                .starts_with("/a/tenant=__HIVE_DEFAULT_PARTITION__/dt=1970-01-01/hour=00")
        );
        assert_eq!(escape_path_value(".."), "%2E.");
        assert_eq!(text(&[b'a'; 1000]).len(), MAX_TEXT);
    }
}
