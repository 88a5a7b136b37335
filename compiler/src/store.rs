//! Shared state in S3-compatible object storage: what `switchyard --state s3://…` and
//! `policyc publish` read and write, so that a fleet of routers serves one policy and one
//! key set.
//!
//! Layout under the state prefix:
//!
//! | object | written | what |
//! | --- | --- | --- |
//! | `tables/<sha256>.swt` | create-only | a compiled table, named by its content |
//! | `keys/<sha256>.json` | create-only | a client key set (hashes only), named by its content |
//! | `changes/<revision>.json` | create-only | revision N's manifest: who changed what, when |
//! | `manifest.json` | compare-and-swap (`If-Match`) | the current revision |
//!
//! A writer reads the manifest (revision N, ETag E), writes the objects its change needs,
//! claims revision N+1 by creating `changes/<N+1>.json` (`If-None-Match: *`: one writer
//! wins it), then swaps the manifest from E to N+1 (`If-Match: E`). A writer that loses
//! either step reads the manifest again and redoes its change on top (the caller decides
//! how often). The revision history is therefore linear and complete: every revision has
//! exactly one change object, made before any host could see the revision. A writer that
//! dies between claiming and swapping leaves a claim the next writer rolls forward once it
//! is [`STALE_CLAIM_MS`] old (the claim holds the whole manifest it meant to publish, whose
//! objects were written before it).
//!
//! Readers poll the manifest with a conditional GET and fetch only objects whose digest
//! changed, checking each against the digest the manifest names.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The manifest's object name under the prefix.
pub const MANIFEST: &str = "manifest.json";
/// Manifest format this build reads and writes.
pub const FORMAT: u32 = 1;
/// Age after which a claimed revision whose manifest swap never happened is rolled forward.
pub const STALE_CLAIM_MS: i64 = 10_000;

/// `s3://bucket[/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
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

    /// For a URL naming one object (`s3://bucket/dir/name.swt`): the location of its
    /// directory and its name there.
    #[must_use]
    pub fn split_object(&self) -> (Self, String) {
        let (dir, name) = self
            .prefix
            .rsplit_once('/')
            .map_or(("", self.prefix.as_str()), |(d, n)| (d, n));
        (
            Self {
                bucket: self.bucket.clone(),
                prefix: dir.to_owned(),
            },
            name.to_owned(),
        )
    }

    /// The object name of `relative` under the prefix.
    #[must_use]
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// An S3 client for `bucket`, configured from the standard AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, …), with
/// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / `AWS_ENDPOINT` naming an S3-compatible
/// server. `retries`: quick retries of one request inside the client.
pub fn s3(bucket: &str, timeout: Duration, retries: usize) -> Result<Arc<dyn ObjectStore>, String> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(
            ClientOptions::new()
                .with_timeout(timeout)
                .with_connect_timeout(timeout.min(Duration::from_secs(5))),
        )
        .with_retry(RetryConfig {
            max_retries: retries,
            retry_timeout: timeout,
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
    Ok(Arc::new(builder.build().map_err(|e| {
        format!("cannot configure S3 for bucket `{bucket}`: {e}")
    })?))
}

/// An object the manifest points at, with the digest its bytes must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Object name under the prefix.
    pub object: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// For a table: the policy revision stamped into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// Who made a revision, and what it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// When, ISO 8601.
    pub ts: String,
    /// When, Unix milliseconds.
    pub ms: i64,
    /// The host (`--node-id`) or tool that wrote it.
    pub host: String,
    /// The admin key's id, or the tool (`policyc`).
    pub admin: String,
    /// `policy.deploy`, `tenant.create`, `key.revoke`, `policy.publish`, …
    pub action: String,
    pub target: String,
}

/// One revision of the shared state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub revision: u64,
    /// The admin or published table; `None`: routers serve their own `--table`.
    #[serde(default)]
    pub table: Option<Blob>,
    /// The client key set; `None`: not shared yet (each host keeps its own).
    #[serde(default)]
    pub keys: Option<Blob>,
    /// What made this revision.
    pub change: ChangeRecord,
}

impl Manifest {
    /// Parses and checks a manifest (or a change object).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("not a state manifest: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest format {} (this build reads format {FORMAT})",
                m.format
            ));
        }
        Ok(m)
    }

    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The change object of `revision`: zero-padded, so names sort by revision.
#[must_use]
pub fn change_object(revision: u64) -> String {
    format!("changes/{revision:020}.json")
}

/// Hex SHA-256.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store did not answer, or answered with an error.
    Unavailable(String),
    /// Another writer got there first: read again and redo the change.
    Conflict,
    /// An object is not what the manifest says (digest, format).
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) => write!(f, "the state store is unavailable: {m}"),
            Self::Conflict => f.write_str("another writer changed the state first"),
            Self::Corrupt(m) => write!(f, "the state store holds a corrupt object: {m}"),
        }
    }
}

/// A manifest as read, with the ETag a swap must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub manifest: Manifest,
    pub etag: String,
}

/// What a conditional read found.
#[derive(Debug)]
pub enum Fetched<T> {
    /// Same ETag as the caller's.
    Unchanged,
    /// No such object.
    Absent,
    Found(T, String),
}

/// Why the start-up check of a store failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The store cannot be reached now (try again later).
    Unreachable(String),
    /// It answered, but does not honour conditional writes: it cannot hold shared state.
    Unsupported(String),
}

/// A state prefix in one bucket, with its own small runtime: callers are plain threads.
#[derive(Debug)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    pub location: Location,
    runtime: Mutex<tokio::runtime::Runtime>,
}

impl Remote {
    /// Opens `url` (`s3://bucket[/prefix]`); `timeout` bounds each request.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, String> {
        let location = Location::parse(url)?;
        let store = s3(&location.bucket, timeout, 1)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the S3 client's runtime: {e}"))?;
        Ok(Self {
            store,
            location,
            runtime: Mutex::new(runtime),
        })
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        let runtime = self.runtime.lock().unwrap_or_else(PoisonError::into_inner);
        runtime.block_on(f)
    }

    fn path(&self, relative: &str) -> Key {
        Key::from(self.location.key(relative))
    }

    /// Reads `relative` unless its ETag is still `known`.
    pub fn get_if_changed(
        &self,
        relative: &str,
        known: Option<&str>,
    ) -> Result<Fetched<Vec<u8>>, StoreError> {
        let options = GetOptions {
            if_none_match: known.map(str::to_owned),
            ..GetOptions::default()
        };
        let path = self.path(relative);
        let got = self.run(async {
            let r = self.store.get_opts(&path, options).await?;
            let etag = r.meta.e_tag.clone().unwrap_or_default();
            let bytes = r.bytes().await?;
            Ok::<_, object_store::Error>((bytes.to_vec(), etag))
        });
        match got {
            // Some servers ignore If-None-Match: compare the ETag here too.
            Ok((_, etag)) if known == Some(etag.as_str()) => Ok(Fetched::Unchanged),
            Ok((bytes, etag)) => Ok(Fetched::Found(bytes, etag)),
            Err(object_store::Error::NotModified { .. }) => Ok(Fetched::Unchanged),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Absent),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// The current manifest, unless its ETag is still `known`.
    pub fn manifest(&self, known: Option<&str>) -> Result<Fetched<Manifest>, StoreError> {
        match self.get_if_changed(MANIFEST, known)? {
            Fetched::Unchanged => Ok(Fetched::Unchanged),
            Fetched::Absent => Ok(Fetched::Absent),
            Fetched::Found(bytes, etag) => Manifest::parse(&bytes)
                .map(|m| Fetched::Found(m, etag))
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.location.key(MANIFEST)))),
        }
    }

    /// The current manifest, read unconditionally (`None`: there is none yet).
    pub fn current(&self) -> Result<Option<Current>, StoreError> {
        match self.manifest(None)? {
            Fetched::Found(manifest, etag) => Ok(Some(Current { manifest, etag })),
            Fetched::Absent | Fetched::Unchanged => Ok(None),
        }
    }

    /// The bytes of `blob`, checked against its digest.
    pub fn get_blob(&self, blob: &Blob) -> Result<Vec<u8>, StoreError> {
        let bytes = match self.get_if_changed(&blob.object, None)? {
            Fetched::Found(bytes, _) => bytes,
            Fetched::Absent | Fetched::Unchanged => {
                return Err(StoreError::Corrupt(format!(
                    "`{}` is named by the manifest but missing",
                    self.location.key(&blob.object)
                )));
            }
        };
        let digest = sha256_hex(&bytes);
        if digest != blob.sha256 {
            return Err(StoreError::Corrupt(format!(
                "`{}` has SHA-256 {digest}, the manifest says {}",
                self.location.key(&blob.object),
                blob.sha256
            )));
        }
        Ok(bytes)
    }

    /// Writes `bytes` as `<dir>/<sha256>.<ext>` (create-only; already there is fine: the
    /// name is the content).
    pub fn put_blob(
        &self,
        dir: &str,
        ext: &str,
        bytes: &[u8],
        revision: Option<u64>,
    ) -> Result<Blob, StoreError> {
        let sha256 = sha256_hex(bytes);
        let object = format!("{dir}/{sha256}.{ext}");
        match self.put(&object, bytes.to_vec(), PutMode::Create) {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(Blob {
                object,
                sha256,
                revision,
            }),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    fn put(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<Option<String>, object_store::Error> {
        let path = self.path(relative);
        self.run(
            self.store
                .put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode)),
        )
        .map(|r| r.e_tag)
    }

    /// Writes `bytes` at `relative` only if its ETag is still `etag` (`None`: only if there
    /// is no such object). The new ETag; [`StoreError::Conflict`] when the condition fails.
    pub fn swap(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<String, StoreError> {
        let mode = etag.map_or(PutMode::Create, |e| {
            PutMode::Update(UpdateVersion {
                e_tag: Some(e.to_owned()),
                version: None,
            })
        });
        match self.put(relative, bytes, mode) {
            Ok(etag) => Ok(etag.unwrap_or_default()),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Err(StoreError::Conflict),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Publishes `next` (revision `base + 1`) over `base`, the manifest it was computed on
    /// (`None`: there was none). The objects `next` names must be written already. Returns
    /// the new manifest's ETag.
    pub fn commit(&self, base: Option<&Current>, next: &Manifest) -> Result<String, StoreError> {
        let body = next.to_bytes();
        let claim = change_object(next.revision);
        match self.put(&claim, body.clone(), PutMode::Create) {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Ours (an earlier try whose answer was lost), or another writer's.
                match self.get_if_changed(&claim, None)? {
                    Fetched::Found(bytes, _) if bytes == body => {}
                    Fetched::Found(bytes, _) => {
                        self.roll_forward(base, &bytes);
                        return Err(StoreError::Conflict);
                    }
                    Fetched::Absent | Fetched::Unchanged => return Err(StoreError::Conflict),
                }
            }
            Err(e) => return Err(StoreError::Unavailable(e.to_string())),
        }
        match self.swap(MANIFEST, body, base.map(|c| c.etag.as_str())) {
            Ok(etag) => Ok(etag),
            Err(e) => {
                // The answer may have been lost, or a reader rolled our claim forward: the
                // manifest says whether `next` is what is published.
                match self.current() {
                    Ok(Some(now)) if now.manifest == *next => Ok(now.etag),
                    Ok(_) => Err(match e {
                        StoreError::Unavailable(_) => e,
                        _ => StoreError::Conflict,
                    }),
                    Err(read) => Err(read),
                }
            }
        }
    }

    /// A claim of the revision after `base` that never became the manifest: published now
    /// if its writer has had [`STALE_CLAIM_MS`] to do it (best effort; a failure leaves it
    /// for the next writer).
    fn roll_forward(&self, base: Option<&Current>, claim: &[u8]) {
        let Ok(claimed) = Manifest::parse(claim) else {
            return;
        };
        let base_revision = base.map_or(0, |c| c.manifest.revision);
        let age = now_ms() - claimed.change.ms;
        if claimed.revision == base_revision + 1 && age >= STALE_CLAIM_MS {
            let _ = self.swap(MANIFEST, claim.to_vec(), base.map(|c| c.etag.as_str()));
        }
    }

    /// The objects directly under `relative_dir`: name (without the directory) and size.
    pub fn list(&self, relative_dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let dir = self.path(relative_dir);
        let listed = self
            .run(self.store.list_with_delimiter(Some(&dir)))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_owned(), o.size)))
            .collect())
    }

    /// Writes `relative` unless it exists: whether this call created it.
    pub fn create(&self, relative: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        match self.put(relative, bytes, PutMode::Create) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Deletes `relative` (absent already is fine).
    pub fn delete(&self, relative: &str) -> Result<(), StoreError> {
        let path = self.path(relative);
        match self.run(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// The change objects of revisions `from..=to` that exist, oldest first.
    pub fn changes(&self, from: u64, to: u64) -> Result<Vec<Manifest>, StoreError> {
        let mut out = Vec::new();
        for revision in from..=to {
            if let Fetched::Found(bytes, _) = self.get_if_changed(&change_object(revision), None)?
                && let Ok(m) = Manifest::parse(&bytes)
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Checks that the store honours conditional writes (create-only and compare-and-swap),
    /// with a scratch object under `probe/` that is deleted after.
    pub fn probe(&self, who: &str) -> Result<(), ProbeError> {
        let object = format!(
            "probe/{}-{}-{}.txt",
            who.replace(['/', ':'], "_"),
            std::process::id(),
            now_ms()
        );
        let unreachable = |e: object_store::Error| ProbeError::Unreachable(e.to_string());
        let first = self
            .put(&object, b"1".to_vec(), PutMode::Create)
            .map_err(unreachable)?;
        let second = self.put(&object, b"2".to_vec(), PutMode::Create);
        let wrong = PutMode::Update(UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".to_owned()),
            version: None,
        });
        let third = self.put(&object, b"3".to_vec(), wrong);
        let path = self.path(&object);
        let _ = self.run(self.store.delete(&path));
        let _ = first;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(_) => {
                return Err(ProbeError::Unsupported(format!(
                    "{} overwrote an object a create-only write (`If-None-Match: *`) named; shared state needs a store that honours conditional writes (AWS S3 does since 2024; so do MinIO and Cloudflare R2)",
                    self.location
                )));
            }
            Err(e) => return Err(unreachable(e)),
        }
        match third {
            Err(object_store::Error::Precondition { .. }) => Ok(()),
            Ok(_) => Err(ProbeError::Unsupported(format!(
                "{} accepted a write whose `If-Match` named the wrong ETag; shared state needs a store that honours conditional writes (AWS S3 does since 2024; so do MinIO and Cloudflare R2)",
                self.location
            ))),
            Err(e) => Err(unreachable(e)),
        }
    }
}

/// Unix milliseconds now.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What `policyc publish` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Into a state prefix: the manifest revision it made.
    State { revision: u64 },
    /// As one object (`…/key.swt`, what `--table s3://…` polls).
    Object,
}

/// Publishes a compiled table (already validated) of policy revision `revision`: to a state
/// prefix (`s3://bucket/prefix`: the table as a create-only object, then the manifest), or
/// over one object (`s3://bucket/key.swt`, compare-and-swap on its ETag). Either way a
/// table whose revision is not above the published one is refused: routers would refuse it.
pub fn publish(
    url: &str,
    table: &[u8],
    revision: u64,
    who: &str,
    read_revision: impl Fn(&[u8]) -> Option<u64>,
) -> Result<Published, String> {
    let timeout = Duration::from_secs(30);
    if std::path::Path::new(url)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("swt"))
    {
        let (dir, name) = Location::parse(url)?.split_object();
        let remote = Remote::open(&dir.to_string(), timeout)?;
        let existing = remote
            .get_if_changed(&name, None)
            .map_err(|e| e.to_string())?;
        let etag = match existing {
            Fetched::Found(bytes, etag) => {
                if let Some(have) = read_revision(&bytes)
                    && have >= revision
                {
                    return Err(format!(
                        "{url} already holds revision {have}; routers refuse a table that is not newer: compile with --revision {} or higher",
                        have + 1
                    ));
                }
                Some(etag)
            }
            Fetched::Absent | Fetched::Unchanged => None,
        };
        return match remote.swap(&name, table.to_vec(), etag.as_deref()) {
            Ok(_) => Ok(Published::Object),
            Err(StoreError::Conflict) => Err(format!(
                "{url} changed while publishing (another publisher); run again"
            )),
            Err(e) => Err(e.to_string()),
        };
    }
    let remote = Remote::open(url, timeout)?;
    for _ in 0..5 {
        let base = remote.current().map_err(|e| e.to_string())?;
        if let Some(have) = base
            .as_ref()
            .and_then(|c| c.manifest.table.as_ref())
            .and_then(|t| t.revision)
            && have >= revision
        {
            return Err(format!(
                "{url} already serves policy revision {have}; routers refuse a table that is not newer: compile with --revision {} or higher",
                have + 1
            ));
        }
        let blob = remote
            .put_blob("tables", "swt", table, Some(revision))
            .map_err(|e| e.to_string())?;
        let ms = now_ms();
        let next = Manifest {
            format: FORMAT,
            revision: base.as_ref().map_or(0, |c| c.manifest.revision) + 1,
            table: Some(blob),
            keys: base.as_ref().and_then(|c| c.manifest.keys.clone()),
            change: ChangeRecord {
                ts: iso8601(ms),
                ms,
                host: who.to_owned(),
                admin: "policyc".to_owned(),
                action: "policy.publish".to_owned(),
                target: format!("revision {revision}"),
            },
        };
        match remote.commit(base.as_ref(), &next) {
            Ok(_) => {
                return Ok(Published::State {
                    revision: next.revision,
                });
            }
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "{url} kept changing while publishing (other writers); run again"
    ))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
#[must_use]
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn locations_and_names() {
        let l = Location::parse("s3://b/fleet/state/").unwrap();
        assert_eq!(l.key(MANIFEST), "fleet/state/manifest.json");
        assert_eq!(l.to_string(), "s3://b/fleet/state");
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("/tmp/x").is_err());
        assert_eq!(change_object(42), "changes/00000000000000000042.json");
        assert!(change_object(9) < change_object(10));
    }

    #[test]
    fn manifests_round_trip_and_refuse_other_formats() {
        let m = Manifest {
            format: FORMAT,
            revision: 3,
            table: Some(Blob {
                object: "tables/ab.swt".into(),
                sha256: "ab".into(),
                revision: Some(7),
            }),
            keys: None,
            change: ChangeRecord {
                ts: iso8601(0),
                ms: 0,
                host: "h".into(),
                admin: "a".into(),
                action: "policy.deploy".into(),
                target: String::new(),
            },
        };
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
        let mut other = m;
        other.format = 2;
        assert!(Manifest::parse(&other.to_bytes()).is_err());
        assert!(Manifest::parse(b"{").is_err());
    }

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }
}
