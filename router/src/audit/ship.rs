//! Shipping sealed shards to S3-compatible object storage, on its own thread.
//!
//! Each sealed shard goes to the tenant's `audit_bucket` when the table sets one, else to
//! `--audit-sink`; its key is the sink's prefix plus the shard's path under the audit
//! directory (so the Hive layout is the same in the bucket). Uploads are create-only
//! (`If-None-Match: *`): a retry after an upload whose answer was lost finds the object there
//! and counts it as shipped, and no upload can overwrite another shard. Failures are retried
//! with exponential backoff, forever: during an outage shards wait on disk. A shard is deleted
//! locally only after its upload is confirmed, and then only once `--audit-local-retention-s`
//! has passed (it stays queryable by `GET /v1/audit` until then; a `.shipped` marker beside it
//! records the upload).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};

use super::AuditStats;
use crate::table::TableCell;

/// Where shards go: a bucket and a key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
}

impl Destination {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{url}` names no bucket"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

/// Messages to the shipper.
#[derive(Debug)]
pub enum ShipMsg {
    Sealed(PathBuf),
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
                stores: HashMap::new(),
                queue: VecDeque::new(),
            };
            shipper.run(&runtime, &rx);
        })
}

struct Shipper {
    config: ShipConfig,
    tables: Arc<TableCell>,
    stats: Arc<AuditStats>,
    stores: HashMap<String, Arc<dyn ObjectStore>>,
    queue: VecDeque<PathBuf>,
}

/// How long shutdown waits for the last shards to upload.
const LAST_ROUND: Duration = Duration::from_secs(10);

/// Backoff after a failed upload: 0.5 s doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
}

impl Shipper {
    fn run(&mut self, runtime: &tokio::runtime::Runtime, rx: &Receiver<ShipMsg>) {
        let mut pending = Vec::new();
        collect_unshipped(&self.config.root, &mut pending);
        pending.sort();
        self.queue.extend(pending);
        let mut failures = 0u32;
        let mut swept = Instant::now();
        loop {
            self.stats
                .ship_pending
                .store(self.queue.len() as u64, Ordering::Relaxed);
            if swept.elapsed() >= Duration::from_secs(10) {
                self.sweep();
                swept = Instant::now();
            }
            let wait = match (self.queue.is_empty(), failures) {
                (true, _) => Duration::from_secs(1),
                (false, 0) => Duration::ZERO,
                (false, n) => backoff(n),
            };
            match rx.recv_timeout(wait) {
                Ok(ShipMsg::Sealed(path)) => self.queue.push_back(path),
                Ok(ShipMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    return self.last_round(runtime, rx);
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    ShipMsg::Sealed(path) => self.queue.push_back(path),
                    ShipMsg::Stop => return self.last_round(runtime, rx),
                }
            }
            let Some(shard) = self.queue.pop_front() else {
                continue;
            };
            match self.ship(runtime, &shard) {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        shard = %shard.display(),
                        error = %e,
                        retry_in_ms = u64::try_from(backoff(failures).as_millis()).unwrap_or(u64::MAX),
                        "audit shard upload failed; kept on disk, will retry"
                    );
                    self.queue.push_front(shard);
                }
            }
        }
    }

    /// At shutdown: the shards sealed last (and any still queued) get one more try, for up
    /// to [`LAST_ROUND`]; what is left ships at the next start.
    fn last_round(&mut self, runtime: &tokio::runtime::Runtime, rx: &Receiver<ShipMsg>) {
        while let Ok(ShipMsg::Sealed(path)) = rx.try_recv() {
            self.queue.push_back(path);
        }
        let until = Instant::now() + LAST_ROUND;
        while Instant::now() < until {
            let Some(shard) = self.queue.pop_front() else {
                return;
            };
            if let Err(e) = self.ship(runtime, &shard) {
                self.stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = %shard.display(), error = %e, "audit shard not shipped before shutdown; it ships at the next start");
                return;
            }
        }
    }

    /// Uploads one shard (create-only), then marks or deletes it.
    fn ship(&mut self, runtime: &tokio::runtime::Runtime, shard: &Path) -> Result<(), String> {
        if !shard.exists() {
            return Ok(());
        }
        let relative = shard
            .strip_prefix(&self.config.root)
            .map_err(|_| "shard is outside the audit directory".to_owned())?
            .to_string_lossy()
            .into_owned();
        let Some(dest) = self.destination(&relative) else {
            // Nowhere to ship: the shard stays local (queryable, never deleted).
            return Ok(());
        };
        let store = self.store(&dest.bucket)?;
        let bytes = std::fs::read(shard).map_err(|e| format!("cannot read the shard: {e}"))?;
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
            Err(e) => return Err(e.to_string()),
        }
        self.stats.shards_shipped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(shard = %shard.display(), bucket = %dest.bucket, key = %key, "audit shard shipped");
        if self.config.retention.is_zero() {
            std::fs::remove_file(shard).map_err(|e| format!("shipped, but cannot delete: {e}"))?;
        } else if let Some(marker) = marker_of(shard) {
            std::fs::write(&marker, b"")
                .map_err(|e| format!("shipped, but cannot mark it shipped: {e}"))?;
        }
        Ok(())
    }

    /// The tenant's `audit_bucket`, else the sink.
    fn destination(&self, relative: &str) -> Option<Destination> {
        let tenant = relative
            .split('/')
            .next()
            .and_then(|d| d.strip_prefix("tenant="))
            .and_then(unescape);
        if let Some(tenant) = tenant {
            let (_, loaded) = self.tables.load();
            if let Some(t) = loaded.table().tenant_by_id(&tenant)
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
        self.config.sink.clone()
    }

    fn store(&mut self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        if let Some(s) = self.stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(self.config.timeout)
                    .with_connect_timeout(self.config.timeout.min(Duration::from_secs(5))),
            )
            // Our loop retries forever with its own backoff; one quick retry here covers a
            // connection the store closed.
            .with_retry(RetryConfig {
                max_retries: 1,
                retry_timeout: self.config.timeout,
                ..RetryConfig::default()
            });
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| format!("cannot configure S3 for bucket `{bucket}`: {e}"))?,
        );
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
                let _ = std::fs::remove_file(&shard);
                let _ = std::fs::remove_file(&marker);
            }
        }
    }
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
    let mut out = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    }
}
