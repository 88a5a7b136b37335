//! `--table s3://bucket/key.swt`: the decision table read from object storage and polled
//! like a file — a conditional GET on its ETag every `--reload-interval-ms` (and on
//! SIGHUP), the same validation and revision rule as a file ([`not_older`]). Each table
//! read is kept at `<data-dir>/admin/table-cache.swt`, which the router starts from when the
//! store cannot be read at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use policyc::store::{Fetched, Location, Remote};

use crate::control::table::{Loaded, Origin, PlanSettings, TableCell};
use crate::control::watcher::{WatchEvent, not_older};

/// The cached copy's name under the admin directory.
pub const CACHE_FILE: &str = "table-cache.swt";

/// The table object and what was last read of it.
#[derive(Debug)]
pub struct RemoteTable {
    remote: Remote,
    name: String,
    url: String,
    cache: PathBuf,
    etag: Option<String>,
    settings: PlanSettings,
    up: AtomicBool,
}

impl RemoteTable {
    /// Reads the table at `url` for the start, or the cached copy when the store cannot be
    /// read; neither is an error naming both.
    pub fn open(
        url: &str,
        admin_dir: &Path,
        settings: &PlanSettings,
        timeout: Duration,
    ) -> Result<(Self, Loaded), String> {
        let (dir, name) = Location::parse(url)?.split_object();
        let remote = Remote::open(&dir.to_string(), timeout)?;
        let mut table = Self {
            remote,
            name,
            url: url.to_owned(),
            cache: admin_dir.join(CACHE_FILE),
            etag: None,
            settings: settings.clone(),
            up: AtomicBool::new(true),
        };
        let fetched = match table.remote.get_if_changed(&table.name, None) {
            Ok(Fetched::Found(bytes, etag)) => table.load(bytes).map(|l| (l, Some(etag))),
            Ok(Fetched::Absent | Fetched::Unchanged) => Err(format!("`{url}` does not exist")),
            Err(e) => Err(e.to_string()),
        };
        match fetched {
            Ok((loaded, etag)) => {
                table.etag = etag;
                table.keep(&loaded);
                Ok((table, loaded))
            }
            Err(why) => {
                let bytes = std::fs::read(&table.cache).map_err(|e| {
                    format!(
                        "cannot read the table at {url} ({why}) and there is no cached copy at `{}` ({e})",
                        table.cache.display()
                    )
                })?;
                let loaded = table.load(bytes).map_err(|e| {
                    format!("cannot read the table at {url} ({why}), and the cached copy is unusable: {e}")
                })?;
                tracing::error!(
                    table = url,
                    error = %why,
                    cached = %table.cache.display(),
                    revision = loaded.table().revision(),
                    "cannot read the table from object storage: starting from the cached copy"
                );
                table.up.store(false, Ordering::Relaxed);
                Ok((table, loaded))
            }
        }
    }

    fn load(&self, bytes: Vec<u8>) -> Result<Loaded, String> {
        Loaded::from_bytes(
            bytes,
            Origin::File(PathBuf::from(&self.url)),
            &self.settings,
        )
        .map_err(|e| e.to_string())
    }

    /// Keeps the table just read as the copy a restart can start from.
    fn keep(&self, loaded: &Loaded) {
        if let Err(e) = crate::control::state::write_atomic(&self.cache, loaded.bytes()) {
            tracing::warn!(error = %e, cache = %self.cache.display(), "cannot keep a copy of the table");
        }
    }

    /// Polls until `Stop` arrives or the sender is dropped.
    pub fn run(
        mut self,
        cell: &Arc<TableCell>,
        interval: Duration,
        events: &std::sync::mpsc::Receiver<WatchEvent>,
    ) {
        loop {
            let forced = match events.recv_timeout(interval) {
                Ok(WatchEvent::Reload) => true,
                Ok(WatchEvent::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            };
            let known = if forced { None } else { self.etag.clone() };
            let fetched = match self.remote.get_if_changed(&self.name, known.as_deref()) {
                Ok(f) => {
                    if !self.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(table = self.url, "table store reachable again");
                    }
                    f
                }
                Err(e) => {
                    if self.up.swap(false, Ordering::Relaxed) {
                        tracing::error!(table = self.url, error = %e, "cannot poll the table; still serving the last good one");
                    }
                    continue;
                }
            };
            let Fetched::Found(bytes, etag) = fetched else {
                continue;
            };
            if self.etag.as_deref() == Some(etag.as_str()) && !forced {
                continue;
            }
            self.etag = Some(etag);
            let result = self.load(bytes).and_then(|next| {
                let (revision, rules) = (next.table().revision(), next.table().rule_count());
                let bytes = next.bytes().to_vec();
                cell.replace_if(next, not_older)
                    .map_err(|e| e.to_string())?;
                if let Err(e) = crate::control::state::write_atomic(&self.cache, &bytes) {
                    tracing::warn!(error = %e, "cannot keep a copy of the table");
                }
                Ok((revision, rules))
            });
            match result {
                Ok((revision, rules)) => tracing::info!(
                    table = self.url,
                    revision,
                    rules,
                    generation = cell.generation(),
                    "table reloaded"
                ),
                Err(err) => tracing::error!(
                    table = self.url,
                    error = %err,
                    revision = cell.load().1.table().revision(),
                    "new table refused; still serving the last good one"
                ),
            }
        }
    }
}
