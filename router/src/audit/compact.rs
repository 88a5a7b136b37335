//! `switchyard audit compact TARGET --tenant T --hour YYYY-MM-DDTHH`: merges one tenant-hour's
//! small shards (one per host per seal) into one file, in an audit directory or in the
//! bucket the shards were shipped to.
//!
//! The output's name is derived from its inputs' names (`compacted-<digest>.parquet`), and
//! the inputs' names are in its key-value metadata (`switchyard.compacted_from`). Steps, each
//! safe to crash after:
//!
//! 1. Finish what an earlier run left: an existing `compacted-*` whose inputs are all still
//!    there is checked (its row count against theirs; a mismatch deletes it), and then its
//!    inputs are deleted; one whose inputs are partly gone was checked before the first was
//!    deleted, so the rest are deleted.
//! 2. Read every remaining shard (and earlier compacted files), write the merged file (a
//!    temporary file renamed into place, or a create-only upload), read it back and compare
//!    row counts.
//! 3. Only then delete the inputs.
//!
//! Between 2 and 3 a reader sees rows twice (once in the inputs, once in the output); the
//! Athena view in `tools/audit/athena.sql` reads each `request_id` once for that window.
//! In a local directory only shards that stay local are merged: one bound for object
//! storage (a destination recorded beside it) is compacted there, after it is shipped; the
//! merged file is recorded as local, so a router's shipper never uploads it.

use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use policyc::store::Remote;

use super::Record;

/// The metadata key listing a compacted file's inputs (comma-separated names).
pub const COMPACTED_FROM: &str = "switchyard.compacted_from";
/// Rows per row group in a compacted file.
const GROUP_ROWS: usize = 65_536;

/// What to compact.
#[derive(Clone, Debug)]
pub struct Request {
    /// An audit directory, or `s3://bucket/prefix` (where shards are shipped).
    pub target: String,
    pub tenant: String,
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub dry_run: bool,
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files merged into `output`.
    pub inputs: usize,
    pub rows: u64,
    pub output: Option<String>,
    /// Files deleted (inputs of this run and of an earlier, interrupted one).
    pub deleted: usize,
    /// Local shards left alone because they are bound for object storage.
    pub elsewhere: usize,
}

/// Where the partition is.
enum Place {
    Local(PathBuf),
    Remote {
        remote: Remote,
        dir: String,
        scratch: tempfile::TempDir,
    },
}

impl Place {
    fn open(req: &Request, partition: &str) -> Result<Self, String> {
        if req.target.starts_with("s3://") {
            let remote = Remote::open(&req.target, std::time::Duration::from_secs(60))?;
            let scratch = tempfile::tempdir().map_err(|e| format!("no scratch directory: {e}"))?;
            Ok(Self::Remote {
                remote,
                dir: partition.to_owned(),
                scratch,
            })
        } else {
            Ok(Self::Local(Path::new(&req.target).join(partition)))
        }
    }

    /// Shard names (`*.parquet`, not hidden), sorted.
    fn names(&self) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = match self {
            Self::Local(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(format!("cannot list `{}`: {e}", dir.display())),
            },
            Self::Remote { remote, dir, .. } => remote
                .list(dir)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
        };
        names.retain(|n| n.ends_with(".parquet") && !n.starts_with('.'));
        names.sort();
        Ok(names)
    }

    /// A local path holding `name`'s bytes.
    fn fetch(&self, name: &str) -> Result<PathBuf, String> {
        match self {
            Self::Local(dir) => Ok(dir.join(name)),
            Self::Remote {
                remote,
                dir,
                scratch,
            } => {
                let path = scratch.path().join(name);
                if !path.exists() {
                    let bytes = match remote
                        .get_if_changed(&format!("{dir}/{name}"), None)
                        .map_err(|e| e.to_string())?
                    {
                        policyc::store::Fetched::Found(b, _) => b,
                        _ => return Err(format!("`{dir}/{name}` disappeared while compacting")),
                    };
                    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
                }
                Ok(path)
            }
        }
    }

    /// Puts the file at `from` in place as `name` unless `name` exists; whether it did.
    fn put_new(&self, name: &str, from: &Path) -> Result<bool, String> {
        match self {
            Self::Local(dir) => {
                let to = dir.join(name);
                if to.exists() {
                    return Ok(false);
                }
                // Recorded as local first: a router's shipper never uploads the merged rows
                // a second time.
                std::fs::write(dir.join(format!(".{name}.dest")), b"local\n")
                    .map_err(|e| format!("cannot write beside `{}`: {e}", to.display()))?;
                std::fs::rename(from, &to)
                    .and_then(|()| std::fs::File::open(dir)?.sync_all())
                    .map_err(|e| {
                        format!("cannot move the merged file to `{}`: {e}", to.display())
                    })?;
                Ok(true)
            }
            Self::Remote { remote, dir, .. } => {
                let bytes = std::fs::read(from).map_err(|e| e.to_string())?;
                remote
                    .create(&format!("{dir}/{name}"), bytes)
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Local(dir) => {
                let path = dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("cannot delete `{}`: {e}", path.display())),
                }
                for sidecar in [format!(".{name}.dest"), format!(".{name}.shipped")] {
                    let _ = std::fs::remove_file(dir.join(sidecar));
                }
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| e.to_string())
            }
            Self::Remote { remote, dir, .. } => remote
                .delete(&format!("{dir}/{name}"))
                .map_err(|e| e.to_string()),
        }
    }

    /// A local shard bound for object storage (its recorded destination is a bucket).
    fn elsewhere(&self, name: &str) -> bool {
        let Self::Local(dir) = self else {
            return false;
        };
        let dest = std::fs::read_to_string(dir.join(format!(".{name}.dest"))).unwrap_or_default();
        let dest = dest.trim();
        !dest.is_empty() && dest != "local"
    }
}

/// The partition directory of a tenant-hour: `tenant=…/dt=YYYY-MM-DD/hour=HH`.
pub fn partition(tenant: &str, hour: &str) -> Result<String, String> {
    let bad =
        || format!("`--hour {hour}` is not an hour as YYYY-MM-DDTHH (UTC), e.g. 2026-12-01T07");
    let (day, hh) = hour.split_once('T').ok_or_else(bad)?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = day.split('-').collect();
    if parts.len() != 3
        || !digits(parts[0], 4)
        || !digits(parts[1], 2)
        || !digits(parts[2], 2)
        || !digits(hh, 2)
        || hh > "23"
        || !("01"..="12").contains(&parts[1])
        || !("01"..="31").contains(&parts[2])
    {
        return Err(bad());
    }
    if tenant.is_empty() {
        return Err("`--tenant` is empty".to_owned());
    }
    Ok(format!(
        "tenant={}/dt={day}/hour={hh}",
        super::writer::escape_path_value(tenant)
    ))
}

/// Rows of a Parquet file and the inputs it names as a compacted file.
fn describe(path: &Path) -> Result<(u64, Option<Vec<String>>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let meta = reader.metadata().file_metadata();
    let rows = u64::try_from(meta.num_rows()).unwrap_or(0);
    let from = meta.key_value_metadata().and_then(|kv| {
        kv.iter()
            .find(|k| k.key == COMPACTED_FROM)
            .and_then(|k| k.value.as_ref())
            .map(|v| v.split(',').map(str::to_owned).collect())
    });
    Ok((rows, from))
}

fn read_records(path: &Path, out: &mut Vec<Record>) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let mut n = 0;
    for row in reader
        .get_row_iter(None)
        .map_err(|e| format!("`{}`: {e}", path.display()))?
    {
        out.push(super::query::from_row(
            &row.map_err(|e| format!("`{}`: {e}", path.display()))?,
        ));
        n += 1;
    }
    Ok(n)
}

fn write_merged(path: &Path, rows: &[Record], inputs: &[String]) -> Result<(), String> {
    let schema = parse_message_type(super::SCHEMA).map_err(|e| e.to_string())?;
    let props = super::columns::properties(Some(vec![parquet::file::metadata::KeyValue::new(
        COMPACTED_FROM.to_owned(),
        inputs.join(","),
    )]));
    let file = std::fs::File::create(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let mut writer = SerializedFileWriter::new(
        file,
        std::sync::Arc::new(schema),
        std::sync::Arc::new(props),
    )
    .map_err(|e| e.to_string())?;
    let mut pending = super::columns::Pending::default();
    for group in rows.chunks(GROUP_ROWS) {
        for r in group {
            pending.push(r);
        }
        pending.write(&mut writer).map_err(|e| e.to_string())?;
    }
    let file = writer.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

/// A test hook: the process aborts at the named point (`SWITCHYARD_FAILPOINT`), as a crash
/// would stop it there.
fn failpoint(name: &str) {
    if std::env::var("SWITCHYARD_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}

/// Runs one compaction.
pub fn run(req: &Request) -> Result<Report, String> {
    let partition = partition(&req.tenant, &req.hour)?;
    let place = Place::open(req, &partition)?;
    let mut report = Report::default();
    let mut names = place.names()?;

    // 1. What an earlier run left.
    for done in names
        .iter()
        .filter(|n| n.starts_with("compacted-"))
        .cloned()
        .collect::<Vec<_>>()
    {
        let (rows, from) = describe(&place.fetch(&done)?)?;
        let Some(from) = from else { continue };
        let present: Vec<&String> = from.iter().filter(|n| names.contains(n)).collect();
        if present.is_empty() {
            continue;
        }
        if present.len() == from.len() {
            let mut theirs = 0;
            for n in &present {
                theirs += describe(&place.fetch(n)?)?.0;
            }
            if theirs != rows {
                tracing::warn!(
                    file = done,
                    rows,
                    inputs = theirs,
                    "an interrupted compaction's output does not match its inputs; deleting it"
                );
                if !req.dry_run {
                    place.remove(&done)?;
                }
                names.retain(|n| *n != done);
                continue;
            }
        }
        let present: Vec<String> = present.into_iter().cloned().collect();
        tracing::info!(
            file = done,
            inputs = present.len(),
            "finishing an interrupted compaction"
        );
        for n in &present {
            if !req.dry_run {
                place.remove(n)?;
            }
            report.deleted += 1;
        }
        names.retain(|n| !present.contains(n));
    }

    // 2. Merge what is left.
    let (elsewhere, inputs): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| place.elsewhere(n));
    report.elsewhere = elsewhere.len();
    if inputs.len() < 2 {
        return Ok(report);
    }
    let mut records = Vec::new();
    let mut expected = 0;
    for n in &inputs {
        expected += read_records(&place.fetch(n)?, &mut records)?;
    }
    records.sort_by_key(|r| r.ts_ms);
    let name = format!(
        "compacted-{}.parquet",
        &policyc::store::sha256_hex(inputs.join("\n").as_bytes())[..20]
    );
    report.inputs = inputs.len();
    report.rows = expected;
    report.output = Some(name.clone());
    if req.dry_run {
        return Ok(report);
    }
    // Beside the inputs (hidden, so nothing scans it; renamed into place on one file system).
    let merged = match &place {
        Place::Local(dir) => dir.join(format!(".{name}.tmp")),
        Place::Remote { scratch, .. } => scratch.path().join(format!(".{name}.tmp")),
    };
    write_merged(&merged, &records, &inputs)?;
    if !place.put_new(&name, &merged)? {
        tracing::info!(
            file = name,
            "the merged file is there already (an earlier run's)"
        );
    }
    failpoint("compact-after-write");
    let (rows, _) = describe(&place.fetch(&name)?)?;
    if rows != expected {
        place.remove(&name)?;
        return Err(format!(
            "the merged file has {rows} rows, its inputs {expected}; deleted it, inputs kept"
        ));
    }

    // 3. The inputs, now that their rows are in the merged file.
    for (i, n) in inputs.iter().enumerate() {
        place.remove(n)?;
        report.deleted += 1;
        if i == 0 {
            failpoint("compact-after-first-delete");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn partitions_are_named_as_the_writer_names_them() {
        assert_eq!(
            partition("acme/eu", "2026-12-01T07").unwrap(),
            "tenant=acme%2Feu/dt=2026-12-01/hour=07"
        );
        for bad in [
            "2026-12-01",
            "2026-12-01T24",
            "2026-13-01T00",
            "26-12-01T00",
            "2026-12-01T7",
        ] {
            assert!(partition("t", bad).is_err(), "{bad}");
        }
        assert!(partition("", "2026-12-01T00").is_err());
    }
}
