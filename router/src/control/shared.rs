//! Admin state shared by a fleet through object storage (`--state s3://bucket/prefix`):
//! the policy the admin API changes and the client keys, in the layout and with the
//! compare-and-swap protocol of [`policyc::store`].
//!
//! - **Writes.** An admin change made on any host reads the latest manifest first (and
//!   installs it here), computes the change on top, writes its objects, claims the next
//!   revision and swaps the manifest ([`SharedState::write`]). A lost race is redone on the
//!   new manifest, up to [`MAX_ATTEMPTS`] times, then answered 409. The store unreachable:
//!   503, and nothing changes — not even on this host. A change is never local-only.
//! - **Reads.** A thread polls the manifest (conditional GET, `--state-poll-ms`), refuses a
//!   revision older than the one installed or one whose objects do not match their digests,
//!   and installs the rest: the table (unless a newer `--table` file serves), the key set,
//!   and the change log mirrored into `<data-dir>/admin/changes.jsonl`.
//! - **Last good copy.** What was installed is on local disk (`policy.swt`, `keys.json`,
//!   `state.json` under `<data-dir>/admin`), so a host restarted while the store is down
//!   starts from it and serves.
//! - **Start.** The store must honour conditional writes ([`policyc::store::Remote::probe`]);
//!   one that does not is refused with a clear error. One that is unreachable is probed
//!   again in the background; admin writes answer 503 until it passes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use policyc::store::{self, Current, Fetched, Manifest, ProbeError, Remote, StoreError};
use serde_json::{Value, json};

use crate::control::keys::{KeyRecord, KeyStore};
use crate::control::table::{Loaded, Origin, PlanSettings, TableCell};

/// Times a change is redone on a newer manifest before the writer gets 409.
pub const MAX_ATTEMPTS: usize = 5;
/// The installed manifest's copy under the admin directory.
const STATE_FILE: &str = "state.json";
/// Most change objects fetched to mirror the log in one poll (a host far behind mirrors the
/// newest ones; the store keeps all).
const MIRROR_MAX: u64 = 200;

/// `--state` and its settings.
#[derive(Clone, Debug)]
pub struct StateConfig {
    pub url: String,
    pub node: String,
    pub poll: Duration,
    pub timeout: Duration,
}

/// What a change does to the shared state.
#[derive(Debug)]
pub struct Edit {
    /// A new table: its bytes and policy revision.
    pub table: Option<(Vec<u8>, u64)>,
    /// A new key set.
    pub keys: Option<Vec<KeyRecord>>,
    pub action: &'static str,
    pub target: String,
}

/// The last installed revision, with what it named.
#[derive(Debug, Default)]
struct Installed {
    current: Option<Current>,
    /// An ETag whose manifest was refused (logged once).
    refused_etag: Option<String>,
}

/// The shared state of this host: the store, what is installed, and the cells it installs
/// into.
#[derive(Debug)]
pub struct SharedState {
    remote: Remote,
    pub config: StateConfig,
    dir: PathBuf,
    tables: Arc<TableCell>,
    keys: Arc<KeyStore>,
    settings: PlanSettings,
    installed: Mutex<Installed>,
    /// One write at a time from this host.
    writing: Mutex<()>,
    probed: AtomicBool,
    /// The store answered the last call (`switchyard_state_store_up`).
    pub up: AtomicBool,
    /// The installed manifest revision (`switchyard_state_revision`).
    pub revision: AtomicU64,
    /// Polls or writes that failed (`switchyard_state_errors_total`).
    pub errors: AtomicU64,
}

impl SharedState {
    /// Opens the store and the last good copy; at start, a store that answers but does not
    /// honour conditional writes is an error.
    pub fn open(
        config: StateConfig,
        dir: PathBuf,
        tables: Arc<TableCell>,
        keys: Arc<KeyStore>,
        settings: PlanSettings,
    ) -> Result<Self, String> {
        let remote = Remote::open(&config.url, config.timeout)?;
        let local = std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| {
                let manifest = Manifest::parse(v.get("manifest")?.to_string().as_bytes()).ok()?;
                let etag = v.get("etag")?.as_str()?.to_owned();
                Some(Current { manifest, etag })
            });
        let state = Self {
            remote,
            config,
            dir,
            tables,
            keys,
            settings,
            revision: AtomicU64::new(local.as_ref().map_or(0, |c| c.manifest.revision)),
            installed: Mutex::new(Installed {
                current: local,
                refused_etag: None,
            }),
            writing: Mutex::new(()),
            probed: AtomicBool::new(false),
            up: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        };
        match state.remote.probe(&state.config.node) {
            Ok(()) => {
                state.probed.store(true, Ordering::Release);
                state.up.store(true, Ordering::Release);
                if let Err(e) = state.sync() {
                    tracing::warn!(state = %state.config.url, error = %e, "shared state: first read failed; serving the last good copy");
                }
            }
            Err(ProbeError::Unsupported(why)) => return Err(why),
            Err(ProbeError::Unreachable(why)) => {
                tracing::error!(
                    state = %state.config.url,
                    error = %why,
                    revision = state.revision.load(Ordering::Relaxed),
                    "shared state store unreachable at start: serving the last good copy; admin changes answer 503 until it is back"
                );
            }
        }
        Ok(state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Installed> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the manifest every `--state-poll-ms` on its own thread, for the life of the
    /// process.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let state = Arc::clone(self);
        std::thread::Builder::new()
            .name("state-sync".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(state.config.poll);
                    if let Err(e) = state.sync() {
                        tracing::debug!(error = %e, "shared state poll failed");
                    }
                }
            })
            .map(drop)
    }

    /// Marks the store up or down, logging once per transition.
    fn reachable(&self, result: &Result<(), StoreError>) {
        let up = !matches!(result, Err(StoreError::Unavailable(_)));
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                tracing::info!(state = %self.config.url, "shared state store reachable again");
            } else if let Err(e) = result {
                tracing::error!(
                    state = %self.config.url,
                    error = %e,
                    "shared state store unreachable: serving revision {} (the last good copy); admin changes answer 503 until it is back",
                    self.revision.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Probes the store if it has not passed yet.
    fn ensure_probed(&self) -> Result<(), StoreError> {
        if self.probed.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.remote.probe(&self.config.node) {
            Ok(()) => {
                self.probed.store(true, Ordering::Release);
                Ok(())
            }
            Err(ProbeError::Unreachable(why)) => Err(StoreError::Unavailable(why)),
            Err(ProbeError::Unsupported(why)) => {
                tracing::error!(state = %self.config.url, error = %why, "shared state store refused");
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// One poll: reads the manifest if it changed and installs it.
    pub fn sync(&self) -> Result<(), StoreError> {
        let result = self.ensure_probed().and_then(|()| {
            // A manifest refused once is not fetched (nor logged) again until it changes.
            let known = {
                let installed = self.lock();
                installed
                    .refused_etag
                    .clone()
                    .or_else(|| installed.current.as_ref().map(|c| c.etag.clone()))
            };
            let (bytes, etag) = match self.remote.get_if_changed(store::MANIFEST, known.as_deref()) {
                Ok(Fetched::Found(bytes, etag)) => (bytes, etag),
                Ok(Fetched::Unchanged | Fetched::Absent) => return Ok(()),
                Err(e) => return Err(e),
            };
            let installed = Manifest::parse(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", store::MANIFEST)))
                .and_then(|manifest| {
                    self.install(&Current {
                        manifest,
                        etag: etag.clone(),
                    })
                });
            if let Err(StoreError::Corrupt(why)) = &installed {
                tracing::error!(state = %self.config.url, error = %why, "shared state revision refused; still serving the last good one");
                self.lock().refused_etag = Some(etag);
            }
            installed
        });
        self.reachable(&result);
        result
    }

    /// Makes `next` serve here, unless it is older than what is installed or its objects
    /// are not what it names. Persists it as the last good copy.
    fn install(&self, next: &Current) -> Result<(), StoreError> {
        let mut installed = self.lock();
        let have = installed.current.as_ref();
        if have.is_some_and(|h| h.etag == next.etag) {
            return Ok(());
        }
        let have_revision = have.map_or(0, |h| h.manifest.revision);
        if next.manifest.revision < have_revision {
            if installed.refused_etag.as_deref() != Some(&next.etag) {
                tracing::error!(
                    state = %self.config.url,
                    found = next.manifest.revision,
                    installed = have_revision,
                    "shared state manifest is older than the installed revision; refused (someone rolled the bucket back?)"
                );
                installed.refused_etag = Some(next.etag.clone());
            }
            return Ok(());
        }
        let same_table =
            have.and_then(|h| h.manifest.table.as_ref()) == next.manifest.table.as_ref();
        let same_keys = have.and_then(|h| h.manifest.keys.as_ref()) == next.manifest.keys.as_ref();
        // Everything fetched and checked before anything is installed.
        let table = match (&next.manifest.table, same_table) {
            (Some(blob), false) => {
                let bytes = self.remote.get_blob(blob)?;
                let path = self.dir.join(crate::control::state::TABLE_FILE);
                let loaded =
                    Loaded::from_bytes(bytes.clone(), Origin::Admin(path.clone()), &self.settings)
                        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", blob.object)))?;
                Some((loaded, bytes, path))
            }
            _ => None,
        };
        // A manifest without keys (or a table) does not manage them yet: each host keeps its
        // own until the first key change publishes a set.
        let keys = match (&next.manifest.keys, same_keys) {
            (Some(blob), false) => Some(
                crate::control::keys::parse_key_set(&self.remote.get_blob(blob)?)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", blob.object)))?,
            ),
            _ => None,
        };
        if let Some((loaded, bytes, path)) = table {
            let revision = loaded.table().revision();
            let swapped = self.tables.replace_if(loaded, |serving, candidate| {
                crate::control::watcher::not_older(serving, candidate)
                    .map_err(|e| e.to_string())?;
                crate::control::state::write_atomic(&path, &bytes)
                    .map_err(|e| format!("cannot persist `{}`: {e}", path.display()))
            });
            match swapped {
                Ok(()) => tracing::info!(
                    revision,
                    state_revision = next.manifest.revision,
                    "shared state: table installed"
                ),
                // A newer `--table` file serves: it wins, as it would over a local admin change.
                Err(why) => {
                    tracing::info!(revision, reason = %why, "shared state: table not installed");
                }
            }
        }
        if let Some(keys) = keys {
            let count = keys.len();
            self.keys
                .install(keys, next.manifest.revision)
                .map_err(StoreError::Unavailable)?;
            tracing::info!(
                keys = count,
                state_revision = next.manifest.revision,
                "shared state: key set installed"
            );
        }
        self.mirror_log(have_revision, &next.manifest);
        let copy = json!({"manifest": next.manifest, "etag": next.etag});
        if let Err(e) = crate::control::state::write_atomic(
            &self.dir.join(STATE_FILE),
            &serde_json::to_vec_pretty(&copy).unwrap_or_default(),
        ) {
            tracing::error!(error = %e, "cannot persist the shared state's last good copy");
        }
        self.revision
            .store(next.manifest.revision, Ordering::Release);
        installed.current = Some(next.clone());
        installed.refused_etag = None;
        Ok(())
    }

    /// Appends the changes from `after` (exclusive) to `next` to the local change log, so
    /// `GET /v1/changes` shows every host's changes (and still answers while the store is
    /// down).
    fn mirror_log(&self, after: u64, next: &Manifest) {
        let from = (after + 1).max(next.revision.saturating_sub(MIRROR_MAX - 1));
        let mut changes = if from < next.revision {
            self.remote
                .changes(from, next.revision - 1)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        changes.push(next.clone());
        for m in changes {
            let c = &m.change;
            let line = json!({
                "ts": c.ts,
                "admin": c.admin,
                "action": c.action,
                "target": c.target,
                "revision": m.table.as_ref().and_then(|t| t.revision).filter(|_| !c.action.starts_with("key.")),
                "state_revision": m.revision,
                "host": c.host,
            });
            crate::control::state::append_log(&self.dir, &line);
        }
    }

    /// Makes one change through the store: `make` computes it on the serving table and key
    /// set after the latest manifest is installed; it is then published and installed
    /// here. Redone on a newer manifest when another writer wins; 409 after
    /// [`MAX_ATTEMPTS`]. `make`'s own refusal is returned as is.
    pub fn write<T, E: From<StoreError>>(
        &self,
        who: &str,
        mut make: impl FnMut(&Loaded, &[KeyRecord]) -> Result<(Edit, T), E>,
    ) -> Result<(T, u64), E> {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.write_locked(who, &mut make);
        match &result {
            Ok(_) => self.reachable(&Ok(())),
            Err(Attempt::Store(e)) => self.reachable(&Err(e.clone())),
            Err(Attempt::Refused(_)) => {}
        }
        result.map_err(|e| match e {
            Attempt::Store(e) => E::from(e),
            Attempt::Refused(e) => e,
        })
    }

    fn write_locked<T, E>(
        &self,
        who: &str,
        make: &mut impl FnMut(&Loaded, &[KeyRecord]) -> Result<(Edit, T), E>,
    ) -> Result<(T, u64), Attempt<E>> {
        self.ensure_probed().map_err(Attempt::Store)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Writers that lost together should not collide again in step.
                let jitter = u64::from(std::process::id() % 40);
                std::thread::sleep(Duration::from_millis((10 + jitter) * attempt as u64));
            }
            let base = self.remote.current().map_err(Attempt::Store)?;
            if let Some(b) = &base {
                match self.install(b) {
                    // A revision whose objects are bad is replaced by this change, made on
                    // what this host serves.
                    Err(StoreError::Corrupt(why)) => {
                        tracing::warn!(error = %why, "shared state: the current revision is unusable; this change replaces it");
                    }
                    other => other.map_err(Attempt::Store)?,
                }
            }
            let (_, serving) = self.tables.load();
            let (edit, out) = make(&serving, &self.keys.records()).map_err(Attempt::Refused)?;
            let base_manifest = base.as_ref().map(|c| &c.manifest);
            let table = match &edit.table {
                Some((bytes, revision)) => Some(
                    self.remote
                        .put_blob("tables", "swt", bytes, Some(*revision))
                        .map_err(Attempt::Store)?,
                ),
                None => base_manifest.and_then(|m| m.table.clone()),
            };
            let keys = match &edit.keys {
                Some(records) => Some(
                    self.remote
                        .put_blob(
                            "keys",
                            "json",
                            &crate::control::keys::key_set_bytes(records),
                            None,
                        )
                        .map_err(Attempt::Store)?,
                ),
                None => base_manifest.and_then(|m| m.keys.clone()),
            };
            let ms = crate::clock::now_ms();
            let next = Manifest {
                format: store::FORMAT,
                // Above what this host installed too: a bucket emptied or rolled back is
                // reseeded from here rather than refused by every host as older.
                revision: base_manifest
                    .map_or(0, |m| m.revision)
                    .max(self.revision.load(Ordering::Acquire))
                    + 1,
                table,
                keys,
                change: store::ChangeRecord {
                    ts: crate::clock::iso8601(ms),
                    ms,
                    host: self.config.node.clone(),
                    admin: who.to_owned(),
                    action: edit.action.to_owned(),
                    target: edit.target.clone(),
                },
            };
            match self.remote.commit(base.as_ref(), &next) {
                Ok(etag) => {
                    let revision = next.revision;
                    if let Err(e) = self.install(&Current {
                        manifest: next,
                        etag,
                    }) {
                        // Published for the fleet; this host picks it up on its next poll.
                        tracing::error!(error = %e, revision, "shared state: change published but not installed here yet");
                    }
                    return Ok((out, revision));
                }
                Err(StoreError::Conflict) => {
                    tracing::info!(
                        attempt,
                        "shared state: another host changed the state first; redoing the change on top"
                    );
                }
                Err(e) => return Err(Attempt::Store(e)),
            }
        }
        Err(Attempt::Store(StoreError::Conflict))
    }
}

/// Why one write failed: the store, or the change itself.
enum Attempt<E> {
    Store(StoreError),
    Refused(E),
}

/// The admin API's error for a store failure.
#[must_use]
pub fn store_error(e: &StoreError) -> crate::gateway::error::Error {
    use crate::gateway::error::{Error, ErrorKind};
    match e {
        StoreError::Conflict => Error::new(
            ErrorKind::Conflict,
            format!("other hosts kept changing the shared state while this change was made ({MAX_ATTEMPTS} attempts); nothing was changed — retry"),
        ),
        StoreError::Unavailable(why) | StoreError::Corrupt(why) => Error::new(
            ErrorKind::StateUnavailable,
            format!("the shared state store is unavailable ({why}); nothing was changed, on this host or any other — retry when it is back"),
        )
        .with_retry_after(5),
    }
}
