//! Files the router keeps under `--data-dir`: written whole, atomically; and the lock that
//! gives one process the directory.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Name of the admin API's persisted table under the admin directory.
pub const TABLE_FILE: &str = "policy.swt";
/// Name of the admin change log under the admin directory.
pub const LOG_FILE: &str = "changes.jsonl";

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one
/// (temporary file, fsync, rename, directory fsync: [`policyc::write_file_atomic`]),
/// creating the directory first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// [`write_atomic`], the file created with `mode` (e.g. `0o600` for a secret).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    policyc::write_file_atomic(path, bytes, mode)
}

/// Appends one line to `<dir>/changes.jsonl` (a failure to write it is logged, not fatal:
/// the change itself is already persisted).
pub fn append_log(dir: &Path, line: &serde_json::Value) {
    let path = dir.join(LOG_FILE);
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()
    });
    if let Err(e) = result {
        tracing::error!(error = %e, path = %path.display(), "cannot append to the admin change log");
    }
}

/// An exclusive lock on a directory for the life of the process: `.switchyard.lock` inside
/// it, locked with `flock` (released by the kernel when the process ends, however it ends),
/// holding the owner's pid for the message a second process gets.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Why a directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Busy(String),
    /// It cannot be created or written.
    Unusable(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Busy(m) | Self::Unusable(m) => f.write_str(m),
        }
    }
}

impl DirLock {
    /// Locks `dir` (created if missing), or says which process holds it.
    pub fn acquire(dir: &Path, flag: &str) -> Result<Self, LockError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LockError::Unusable(format!("cannot create `{}` ({flag}): {e}", dir.display()))
        })?;
        let path = dir.join(".switchyard.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LockError::Unusable(format!("cannot open `{}`: {e}", path.display())))?;
        if !try_lock(&file) {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(LockError::Busy(format!(
                "`{}` ({flag}) is in use by another switchyard process{}; two routers on one directory would delete each other's audit logs and overwrite each other's keys — give each its own {flag}",
                dir.display(),
                if owner.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {owner})")
                }
            )));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        let _ = file.sync_all();
        Ok(Self { _file: file, path })
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: whether this process now holds the lock.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    #[expect(unsafe_code, reason = "flock on a descriptor this function borrows")]
    // SAFETY: the descriptor belongs to `file`, which outlives the call; flock takes no
    // pointers.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn a_directory_is_locked_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "--data-dir").unwrap();
        // flock locks belong to the open file description: a second open, even in the same
        // process, is refused as another process would be.
        let second = DirLock::acquire(dir.path(), "--data-dir")
            .unwrap_err()
            .to_string();
        assert!(
            second.contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        drop(first);
        DirLock::acquire(dir.path(), "--data-dir").unwrap();
    }
}
