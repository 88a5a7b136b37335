//! Reloading the table from its file: a thread polls the file's identity (device, inode,
//! length, modification time) every `--reload-interval-ms` and on SIGHUP, loads and prepares
//! a changed file off the executors, and swaps it in only if it is valid and not older
//! ([`not_older`], decided under the table cell's lock).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::control::table::{LoadError, Loaded, Origin, PlanSettings, TableCell};

/// Accepts `next` (a file) to replace `current`: not an older revision. The same revision
/// may be re-published over a file's table, but replaces an admin change only when higher
/// (the change was made on top of that revision; an equal file must not silently undo it).
pub fn not_older(current: &Loaded, next: &Loaded) -> Result<(), LoadError> {
    let (found, have) = (next.table().revision(), current.table().revision());
    let admin = matches!(current.origin, Origin::Admin(_));
    if found < have || (admin && found == have) {
        return Err(LoadError::Older {
            path: next.origin.to_string(),
            found,
            current: have,
        });
    }
    Ok(())
}

/// What identifies a version of the table file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Watches the table file and swaps in each valid new version. Runs on its own thread:
/// reading, validating and preparing a table (which may read secret files and CA bundles)
/// never happens on a request executor.
#[derive(Debug)]
pub struct Watcher {
    pub path: PathBuf,
    pub cell: Arc<TableCell>,
    pub settings: PlanSettings,
    pub interval: Duration,
}

/// Messages to the watcher thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// SIGHUP: reload now, even if the file looks unchanged.
    Reload,
    Stop,
}

impl Watcher {
    /// Runs until `Stop` arrives or the sender is dropped.
    pub fn run(self, events: &std::sync::mpsc::Receiver<WatchEvent>) {
        let mut seen = stamp(&self.path);
        loop {
            let forced = match events.recv_timeout(self.interval) {
                Ok(WatchEvent::Reload) => true,
                Ok(WatchEvent::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            };
            let now = stamp(&self.path);
            if !forced && now == seen {
                continue;
            }
            // A stamp that changed but is still being written (non-atomic writers) settles
            // by the next tick; atomic renames (policyc compile) are complete at once.
            seen = now;
            // Loading and preparing is slow (secrets, CA files); the revision check is made
            // against the table serving at the moment of the swap, under its lock, so an
            // admin change that landed meanwhile is never replaced by an older file.
            let loaded = Loaded::from_file(&self.path, &self.settings).and_then(|next| {
                let (revision, rules) = (next.table().revision(), next.table().rule_count());
                self.cell.replace_if(next, not_older)?;
                Ok((revision, rules))
            });
            match loaded {
                Ok((revision, rules)) => {
                    tracing::info!(
                        table = %self.path.display(),
                        revision,
                        rules,
                        generation = self.cell.generation(),
                        "table reloaded"
                    );
                }
                Err(err) => {
                    tracing::error!(
                        error = %err,
                        revision = self.cell.load().1.table().revision(),
                        "new table refused; still serving the last good one"
                    );
                }
            }
        }
    }
}
