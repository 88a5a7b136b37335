//! The writer thread: records into their Hive partition's open shard — each with its
//! write-ahead log, written per batch and fsynced every flush interval (or per batch for
//! `strict` records) — encoded into row groups, and sealed (footer, fsync, rename, the
//! directory fsynced) by size, age and at shutdown. At start it seals the logs a crash left.

use std::borrow::Borrow;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::columns::Pending;
use super::{AuditStats, Msg, Record, WriterConfig, ship, wal};
use crate::clock::civil_from_days;
use crate::hash::FxMap;

#[derive(Clone, Debug)]
struct Partition {
    tenant: Option<String>,
    /// Days since the epoch and hour of day, UTC.
    day: i64,
    hour: i64,
}

/// A partition's identity, owned ([`Partition`]) or borrowed from a record, so the open
/// shard of a record's partition is found without copying its tenant.
trait PartitionKey {
    fn key(&self) -> (Option<&str>, i64, i64);
}

impl PartitionKey for Partition {
    fn key(&self) -> (Option<&str>, i64, i64) {
        (self.tenant.as_deref(), self.day, self.hour)
    }
}

impl PartitionKey for (Option<&str>, i64, i64) {
    fn key(&self) -> (Option<&str>, i64, i64) {
        *self
    }
}

impl<'a> Borrow<dyn PartitionKey + 'a> for Partition {
    fn borrow(&self) -> &(dyn PartitionKey + 'a) {
        self
    }
}

impl Hash for dyn PartitionKey + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

impl PartialEq for dyn PartitionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn PartitionKey + '_ {}

// Hashed and compared as its key, so a borrowed key finds it.
impl Hash for Partition {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Partition {}

impl Partition {
    /// The partition of `r`, borrowed from it.
    fn key_of(r: &Record) -> (Option<&str>, i64, i64) {
        let secs = r.ts_ms.div_euclid(1000);
        (
            r.tenant.as_deref(),
            secs.div_euclid(86_400),
            secs.rem_euclid(86_400) / 3600,
        )
    }

    fn of(r: &Record) -> Self {
        let (tenant, day, hour) = Self::key_of(r);
        Self {
            tenant: tenant.map(str::to_owned),
            day,
            hour,
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
    /// Records waiting for the next row group.
    pending: Pending,
    rows: u64,
    opened: Instant,
    wal_path: PathBuf,
    wal: File,
    /// Frames not yet written to `wal`.
    wal_buf: Vec<u8>,
    /// Written but not yet fsynced.
    wal_dirty: bool,
}

pub(super) struct Writer {
    config: WriterConfig,
    stats: Arc<AuditStats>,
    /// Open shards by partition (Fx: partitions come from the table's tenants and the
    /// clock, and the map is looked up once per record).
    open: FxMap<Partition, Shard>,
    seq: u64,
    /// A write failed since the last sync: records acknowledged now would not be durable.
    failed_since_sync: bool,
    props: Arc<WriterProperties>,
    schema: Arc<parquet::schema::types::Type>,
    /// Records in the channel (shared with the sinks; decremented as they are taken).
    pub(super) queued: Arc<AtomicU64>,
    /// Emptied batch vectors, given back to the cores' gates (see [`super::Spares`]).
    pub(super) spares: Arc<super::Spares>,
    /// Estimated bytes of records waiting in open shards for their row group.
    pending_bytes: usize,
}

/// Bytes of records the writer holds before encoding (they wait for a row group of
/// `row_group_rows`); past it the fullest shard's row group is written early, so many open
/// partitions cannot add up to unbounded memory.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl Writer {
    pub(super) fn new(
        config: WriterConfig,
        stats: Arc<AuditStats>,
        schema: Arc<parquet::schema::types::Type>,
    ) -> Self {
        let props = super::columns::properties(None);
        Self {
            config,
            stats,
            open: FxMap::default(),
            seq: 0,
            failed_since_sync: false,
            props: Arc::new(props),
            schema,
            queued: Arc::new(AtomicU64::new(0)),
            spares: Arc::default(),
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
            Msg::Record(record, ack) => self.take(&record, ack, acks),
            Msg::Batch(mut records) => {
                for r in &records {
                    self.add(r);
                }
                records.clear();
                self.spares.give_back(records);
            }
            Msg::Stop => return true,
        }
        false
    }

    pub(super) fn run(mut self, rx: &Receiver<Msg>) {
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
        record: &Record,
        ack: Option<futures_channel::oneshot::Sender<bool>>,
        acks: &mut Vec<(futures_channel::oneshot::Sender<bool>, bool)>,
    ) {
        let added = self.add(record);
        if let Some(ack) = ack {
            acks.push((ack, added));
        }
    }

    /// Adds a record to its shard (and log); false if it could not be.
    fn add(&mut self, record: &Record) -> bool {
        let key = Partition::key_of(record);
        let key: &dyn PartitionKey = &key;
        if !self.open.contains_key(key) && !self.open_shard(&Partition::of(record)) {
            self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(shard) = self.open.get_mut(key) else {
            return false;
        };
        wal::append(record, &mut shard.wal_buf);
        let before = shard.pending.bytes();
        shard.pending.push(record);
        self.pending_bytes += shard.pending.bytes() - before;
        let full = shard.pending.len() >= self.config.row_group_rows
            || shard.pending.bytes() >= self.config.row_group_bytes;
        if self.pending_bytes > MAX_PENDING_BYTES {
            self.flush_fullest();
        }
        if full {
            let partition = Partition::of(record);
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
                        pending: Pending::default(),
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
    pub(super) fn recover(&mut self) {
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
            for r in &records {
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
                .filter(|(_, s)| s.pending.len() > 0)
                .max_by_key(|(_, s)| s.pending.bytes())
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
        self.pending_bytes = self.pending_bytes.saturating_sub(shard.pending.bytes());
        let rows = shard.pending.len() as u64;
        if rows == 0 {
            return;
        }
        match shard.pending.write(&mut shard.writer) {
            Ok(()) => {
                shard.rows += rows;
            }
            Err(e) => {
                let tmp = shard.tmp.clone();
                self.stats.records_failed.fetch_add(rows, Ordering::Relaxed);
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
            ship::destination_for(&s.tables, s.sink.as_ref(), partition.tenant.as_deref())
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
pub(super) fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
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
        assert_eq!(
            super::super::text(&[b'a'; 1000]).len(),
            super::super::MAX_TEXT
        );
    }

    /// Row groups are cut by memory as well as by rows: records waiting for a row group
    /// never hold more than `row_group_bytes` (plus one record).
    #[test]
    fn row_groups_are_cut_by_bytes() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let record = |i: i64| Record {
            ts_ms: 1_795_332_412_000 + i,
            request_id: format!("req-{i:04}"),
            tenant: Some("acme".into()),
            error: Some("x".repeat(200)),
            ..Record::default()
        };
        let mut one = Pending::default();
        one.push(&record(0));
        let per_record = one.bytes();
        let config = WriterConfig {
            dir: dir.path().to_owned(),
            max_shard_bytes: u64::MAX,
            max_shard_age: Duration::from_secs(3600),
            row_group_rows: 1000,
            row_group_bytes: 10 * per_record,
            node: "test".into(),
            flush_interval: Duration::from_secs(1),
            ship: None,
        };
        let schema = parquet::schema::parser::parse_message_type(super::super::SCHEMA).unwrap();
        let mut w = Writer::new(config, Arc::default(), Arc::new(schema));
        for i in 0..95 {
            assert!(w.add(&record(i)));
        }
        let partition = Partition::of(&record(0));
        assert!(w.seal(&partition));
        let shard = std::fs::read_dir(partition.dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let reader = SerializedFileReader::new(File::open(shard).unwrap()).unwrap();
        let rows: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(rows, [10, 10, 10, 10, 10, 10, 10, 10, 10, 5]);
    }
}
