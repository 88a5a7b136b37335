//! Shipping sealed shards to S3-compatible object storage, on its own thread.
//!
//! A shard's destination is fixed when it is sealed ([`destination_for`]: the
//! tenant's `audit_bucket` when the table sets one, else `--audit-sink`) and written beside
//! it (`.part-….parquet.dest`), so a policy change later never redirects records already
//! written, and a restart ships them where they were meant to go. Its key is the
//! destination's prefix plus the shard's path under the audit directory (the Hive layout is
//! the same in the bucket). Uploads are create-only (`If-None-Match: *`): a retry after an
//! upload whose answer was lost finds the object there and counts it as shipped, and no
//! upload can overwrite another shard.
//!
//! Each destination has its own queue and its own backoff (0.5 s doubling to 30 s), so one
//! tenant's unreachable bucket never holds back another's shards. A destination that
//! answers with a permanent error — no such bucket, access denied, bad credentials — is
//! *held*: its shards stay on disk, the error is logged once and counted
//! (`switchyard_audit_shards_held`), and it is tried again every
//! `--audit-ship-hold-retry-s` (60 s by default) until someone fixes the bucket. A shard is deleted locally only after its upload is confirmed,
//! and then only once `--audit-local-retention-s` has passed (it stays queryable by
//! `GET /v1/audit` until then; a `.shipped` marker beside it records the upload).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::AuditStats;
use crate::control::table::TableCell;

/// Where shards go: a bucket and a key prefix (`s3://bucket/prefix`).
pub type Destination = policyc::store::Location;

/// Where a shard of `tenant` goes under `tables`' current policy: the tenant's
/// `audit_bucket`, else the sink; `None`: it stays local.
#[must_use]
pub fn destination_for(
    tables: &TableCell,
    sink: Option<&Destination>,
    tenant: Option<&str>,
) -> Option<Destination> {
    if let Some(tenant) = tenant {
        let (_, loaded) = tables.load();
        if let Some(t) = loaded.table().tenant_by_id(tenant)
            && !t.audit_bucket().is_empty()
        {
            match Destination::parse(t.audit_bucket()) {
                Ok(d) => return Some(d),
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "tenant audit_bucket unusable; using --audit-sink");
                }
            }
        }
    }
    sink.cloned()
}

/// The sidecar that records a shard's destination: `.part-X.parquet.dest`.
#[must_use]
pub fn destination_file(shard: &Path) -> Option<PathBuf> {
    let name = shard.file_name()?.to_str()?;
    Some(shard.with_file_name(format!(".{name}.dest")))
}

/// What a destination sidecar holds: the URL, or `local` for a shard that is not shipped.
#[must_use]
pub fn destination_text(d: Option<&Destination>) -> String {
    d.map_or_else(|| "local".to_owned(), Destination::to_string)
}

/// Messages to the shipper.
#[derive(Debug)]
pub enum ShipMsg {
    /// A shard was sealed, bound for this destination (`None`: it stays local).
    Sealed(PathBuf, Option<Destination>),
    Stop,
}

/// Shipper settings.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub root: PathBuf,
    /// `--audit-sink`; tenants with an `audit_bucket` ship there instead.
    pub sink: Option<Destination>,
    /// How long a shipped shard stays on local disk.
    pub retention: Duration,
    /// Time allowed for one upload attempt.
    pub timeout: Duration,
    /// How long a held destination (permanent error) waits before it is tried again.
    pub hold_retry: Duration,
}

/// Starts the shipper thread.
pub fn start(
    config: ShipConfig,
    tables: Arc<TableCell>,
    stats: Arc<AuditStats>,
    rx: Receiver<ShipMsg>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit-shipper".into())
        .spawn(move || {
            super::background_priority("audit-shipper");
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "audit shipper cannot start; shards stay local");
                    return;
                }
            };
            let mut shipper = Shipper {
                config,
                tables,
                stats,
                stores: BTreeMap::new(),
                queues: BTreeMap::new(),
                queued: HashSet::new(),
            };
            shipper.run(&runtime, &rx);
        })
}

/// One destination's shards and its own backoff.
#[derive(Debug)]
struct Queue {
    shards: VecDeque<PathBuf>,
    failures: u32,
    next_try: Instant,
    /// The permanent error it is held for, if it is.
    held: Option<String>,
}

impl Queue {
    fn new() -> Self {
        Self {
            shards: VecDeque::new(),
            failures: 0,
            next_try: Instant::now(),
            held: None,
        }
    }
}

struct Shipper {
    config: ShipConfig,
    tables: Arc<TableCell>,
    stats: Arc<AuditStats>,
    stores: BTreeMap<String, Arc<dyn ObjectStore>>,
    queues: BTreeMap<Destination, Queue>,
    /// Every shard in some queue (a shard announced twice is queued once).
    queued: HashSet<PathBuf>,
}

/// How long shutdown waits for the last shards to upload.
const LAST_ROUND: Duration = Duration::from_secs(10);

/// Backoff after a failed upload: 0.5 s doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

/// Why an upload failed.
enum Failure {
    /// Worth retrying soon (timeouts, resets, 5xx).
    Transient(String),
    /// The destination itself is wrong (no such bucket, access denied, bad credentials):
    /// retrying soon cannot help.
    Permanent(String),
}

impl Shipper {
    fn run(&mut self, runtime: &tokio::runtime::Runtime, rx: &Receiver<ShipMsg>) {
        let mut pending = Vec::new();
        collect_unshipped(&self.config.root, &mut pending);
        pending.sort();
        for shard in pending {
            let dest = self.recorded_destination(&shard);
            self.enqueue(shard, dest);
        }
        let mut swept = Instant::now();
        loop {
            self.report();
            if swept.elapsed() >= Duration::from_secs(10) {
                self.sweep();
                swept = Instant::now();
            }
            let now = Instant::now();
            let due = self.next_due(now);
            let wait = match (&due, self.earliest()) {
                (Some(_), _) => Duration::ZERO,
                (None, Some(at)) => at
                    .saturating_duration_since(now)
                    .min(Duration::from_secs(1)),
                (None, None) => Duration::from_secs(1),
            };
            match rx.recv_timeout(wait) {
                Ok(ShipMsg::Sealed(path, dest)) => self.enqueue(path, dest),
                Ok(ShipMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    return self.last_round(runtime, rx);
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    ShipMsg::Sealed(path, dest) => self.enqueue(path, dest),
                    ShipMsg::Stop => return self.last_round(runtime, rx),
                }
            }
            if let Some(dest) = due {
                self.ship_next(runtime, &dest);
            }
        }
    }

    /// Queues a shard for `dest`; a shard that stays local is done at once.
    fn enqueue(&mut self, shard: PathBuf, dest: Option<Destination>) {
        let Some(dest) = dest else {
            return;
        };
        if !self.queued.insert(shard.clone()) {
            return;
        }
        self.queues
            .entry(dest)
            .or_insert_with(Queue::new)
            .shards
            .push_back(shard);
    }

    /// The destination whose turn it is: the earliest due with shards waiting.
    fn next_due(&self, now: Instant) -> Option<Destination> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.shards.is_empty() && q.next_try <= now)
            .min_by_key(|(_, q)| q.next_try)
            .map(|(d, _)| d.clone())
    }

    fn earliest(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter(|q| !q.shards.is_empty())
            .map(|q| q.next_try)
            .min()
    }

    fn report(&self) {
        let (mut pending, mut held) = (0u64, 0u64);
        for q in self.queues.values() {
            pending += q.shards.len() as u64;
            if q.held.is_some() {
                held += q.shards.len() as u64;
            }
        }
        self.stats.ship_pending.store(pending, Ordering::Relaxed);
        self.stats.ship_held.store(held, Ordering::Relaxed);
    }

    /// Uploads the front shard of `dest`'s queue, and sets the queue's next turn.
    fn ship_next(&mut self, runtime: &tokio::runtime::Runtime, dest: &Destination) {
        let Some(shard) = self
            .queues
            .get(dest)
            .and_then(|q| q.shards.front().cloned())
        else {
            return;
        };
        let result = self.ship(runtime, &shard, dest);
        let Some(queue) = self.queues.get_mut(dest) else {
            return;
        };
        match result {
            Ok(()) => {
                queue.shards.pop_front();
                self.queued.remove(&shard);
                if let Some(why) = queue.held.take() {
                    tracing::info!(destination = %dest, was = why, "audit shipping to this destination works again");
                }
                queue.failures = 0;
                queue.next_try = Instant::now();
            }
            Err(Failure::Transient(e)) => {
                queue.failures = queue.failures.saturating_add(1);
                let wait = backoff(queue.failures);
                queue.next_try = Instant::now() + wait;
                self.stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    shard = %shard.display(),
                    destination = %dest,
                    error = %e,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "audit shard upload failed; kept on disk, will retry"
                );
            }
            Err(Failure::Permanent(e)) => {
                queue.next_try = Instant::now() + self.config.hold_retry;
                self.stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                if queue.held.is_none() {
                    tracing::error!(
                        destination = %dest,
                        error = %e,
                        shards = queue.shards.len(),
                        retry_in_s = self.config.hold_retry.as_secs(),
                        "audit shipping to this destination is held: its shards stay on disk until the bucket or its credentials are fixed; other destinations keep shipping"
                    );
                }
                queue.held = Some(e);
            }
        }
    }

    /// At shutdown: every destination that is not held gets its queued shards tried, for up
    /// to [`LAST_ROUND`] in all; what is left ships at the next start.
    fn last_round(&mut self, runtime: &tokio::runtime::Runtime, rx: &Receiver<ShipMsg>) {
        while let Ok(ShipMsg::Sealed(path, dest)) = rx.try_recv() {
            self.enqueue(path, dest);
        }
        let until = Instant::now() + LAST_ROUND;
        let live: Vec<Destination> = self
            .queues
            .iter()
            .filter(|(_, q)| q.held.is_none())
            .map(|(d, _)| d.clone())
            .collect();
        for dest in live {
            while Instant::now() < until {
                let Some(shard) = self
                    .queues
                    .get_mut(&dest)
                    .and_then(|q| q.shards.pop_front())
                else {
                    break;
                };
                if let Err(Failure::Transient(e) | Failure::Permanent(e)) =
                    self.ship(runtime, &shard, &dest)
                {
                    self.stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %shard.display(), destination = %dest, error = %e, "audit shard not shipped before shutdown; it ships at the next start");
                    break;
                }
            }
        }
        self.report();
    }

    /// Uploads one shard (create-only), then marks or deletes it.
    fn ship(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        shard: &Path,
        dest: &Destination,
    ) -> Result<(), Failure> {
        if !shard.exists() {
            return Ok(());
        }
        let relative = shard
            .strip_prefix(&self.config.root)
            .map_err(|_| Failure::Permanent("shard is outside the audit directory".to_owned()))?
            .to_string_lossy()
            .into_owned();
        let store = self.store(&dest.bucket).map_err(Failure::Permanent)?;
        let bytes = std::fs::read(shard)
            .map_err(|e| Failure::Transient(format!("cannot read the shard: {e}")))?;
        let key = object_store::path::Path::from(dest.key(&relative));
        let put = store.put_opts(
            &key,
            PutPayload::from(bytes),
            PutOptions::from(PutMode::Create),
        );
        match runtime.block_on(put) {
            Ok(_) => {}
            // Already there: an earlier attempt of ours succeeded and its answer was lost
            // (names are unique to this node and shard, so it is no one else's object).
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(
                e @ (object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => return Err(Failure::Permanent(e.to_string())),
            Err(e) => return Err(Failure::Transient(e.to_string())),
        }
        self.stats.shards_shipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(shard = %shard.display(), bucket = %dest.bucket, key = %key, "audit shard shipped");
        if self.config.retention.is_zero() {
            remove_shard(shard)
                .map_err(|e| Failure::Transient(format!("shipped, but cannot delete: {e}")))?;
        } else if let Some(marker) = marker_of(shard) {
            std::fs::write(&marker, b"").map_err(|e| {
                Failure::Transient(format!("shipped, but cannot mark it shipped: {e}"))
            })?;
        }
        Ok(())
    }

    /// The destination recorded beside a shard when it was sealed; for a shard sealed by an
    /// older version (no record), its tenant's destination under the current policy.
    fn recorded_destination(&self, shard: &Path) -> Option<Destination> {
        if let Some(text) = destination_file(shard).and_then(|f| std::fs::read_to_string(f).ok()) {
            let text = text.trim();
            return match text {
                "local" => None,
                url => match Destination::parse(url) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        tracing::warn!(shard = %shard.display(), error = %e, "unreadable shard destination; using --audit-sink");
                        self.config.sink.clone()
                    }
                },
            };
        }
        let tenant = shard
            .strip_prefix(&self.config.root)
            .ok()
            .and_then(|r| r.components().next())
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|d| d.strip_prefix("tenant="))
            .and_then(unescape);
        destination_for(&self.tables, self.config.sink.as_ref(), tenant.as_deref())
    }

    fn store(&mut self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        if let Some(s) = self.stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        // Our loop retries with its own backoff; one quick retry in the client covers a
        // connection the store closed.
        let store = policyc::store::s3(bucket, self.config.timeout, 1)?;
        self.stores.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// Deletes shipped shards older than the retention.
    fn sweep(&self) {
        let mut markers = Vec::new();
        collect_markers(&self.config.root, &mut markers);
        for marker in markers {
            let old = std::fs::metadata(&marker)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age >= self.config.retention);
            if old && let Some(shard) = shard_of_marker(&marker) {
                let _ = remove_shard(&shard);
                let _ = std::fs::remove_file(&marker);
            }
        }
    }
}

/// Deletes a shard and its destination record.
fn remove_shard(shard: &Path) -> std::io::Result<()> {
    std::fs::remove_file(shard)?;
    if let Some(dest) = destination_file(shard) {
        let _ = std::fs::remove_file(dest);
    }
    Ok(())
}

/// `.part-X.parquet.shipped` beside `part-X.parquet`.
fn marker_of(shard: &Path) -> Option<PathBuf> {
    let name = shard.file_name()?.to_str()?;
    Some(shard.with_file_name(format!(".{name}.shipped")))
}

fn shard_of_marker(marker: &Path) -> Option<PathBuf> {
    let name = marker.file_name()?.to_str()?;
    let shard = name.strip_prefix('.')?.strip_suffix(".shipped")?;
    Some(marker.with_file_name(shard))
}

/// Sealed shards under `dir` with no `.shipped` marker.
fn collect_unshipped(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            collect_unshipped(&path, out);
        } else if name.ends_with(".parquet")
            && !name.starts_with('.')
            && marker_of(&path).is_some_and(|m| !m.exists())
        {
            out.push(path);
        }
    }
}

fn collect_markers(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markers(&path, out);
        } else if path.extension().is_some_and(|e| e == "shipped") {
            out.push(path);
        }
    }
}

/// Reverses the partition-value escaping (`%XX`).
fn unescape(v: &str) -> Option<String> {
    crate::codec::percent_decode(v, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("s3://bucket/a/b/").unwrap();
        assert_eq!((d.bucket.as_str(), d.prefix.as_str()), ("bucket", "a/b"));
        assert_eq!(d.key("tenant=x/f.parquet"), "a/b/tenant=x/f.parquet");
        let d = Destination::parse("s3://bucket").unwrap();
        assert_eq!(d.key("f"), "f");
        assert!(Destination::parse("gs://x").is_err());
        assert!(Destination::parse("s3:///x").is_err());
        assert_eq!(unescape("acme%2Feu").as_deref(), Some("acme/eu"));
        let m = marker_of(Path::new("/a/part-1.parquet")).unwrap();
        assert_eq!(m, Path::new("/a/.part-1.parquet.shipped"));
        assert_eq!(shard_of_marker(&m).unwrap(), Path::new("/a/part-1.parquet"));
        let d = Destination::parse("s3://b/p/q").unwrap();
        assert_eq!(Destination::parse(&d.to_string()).unwrap(), d);
        assert_eq!(destination_text(None), "local");
        assert_eq!(
            destination_file(Path::new("/a/part-1.parquet")).unwrap(),
            Path::new("/a/.part-1.parquet.dest")
        );
    }
}
