//! Reading audit shards for a replay: the shards of a directory or an `s3://bucket/prefix`,
//! pruned by their Hive partitions (`tenant=…/dt=…/hour=…`) and by each row group's `ts`
//! statistics, read one row group at a time and only the columns a replay needs.
//!
//! The audit schema is the router's (README, "Audit trail"); columns are found by name, so
//! shards written before a column existed are read, and their records reported as skipped
//! rather than guessed.

use std::path::{Path, PathBuf};

#[cfg(feature = "s3")]
use object_store::ObjectStoreExt as _;
use parquet::basic::{LogicalType, TimeUnit, Type as Physical};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

/// The time window and tenant a replay covers.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Inclusive, ms since the epoch (UTC).
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub to_ms: Option<i64>,
    pub tenant: Option<String>,
}

const HOUR_MS: i64 = 3_600_000;

impl Filter {
    /// Whether a shard under `path` (relative to the source root) may hold matching rows,
    /// judged by the partition directories in its path.
    fn keeps_path(&self, path: &str) -> bool {
        let mut day = None;
        let mut hour = None;
        for part in path.split('/') {
            if let Some(t) = part.strip_prefix("tenant=")
                && let Some(want) = &self.tenant
                && unescape(t) != *want
            {
                return false;
            }
            if let Some(d) = part.strip_prefix("dt=") {
                day = parse_day(d);
            }
            if let Some(h) = part.strip_prefix("hour=") {
                hour = h.parse::<i64>().ok().filter(|h| (0..24).contains(h));
            }
        }
        let Some(day) = day else { return true };
        let (start, len) = match hour {
            Some(h) => (day * 86_400_000 + h * HOUR_MS, HOUR_MS),
            None => (day * 86_400_000, 24 * HOUR_MS),
        };
        self.overlaps(start, start + len - 1)
    }

    /// Whether `[min, max]` (ms) overlaps the window.
    fn overlaps(&self, min: i64, max: i64) -> bool {
        self.from_ms.is_none_or(|f| max >= f) && self.to_ms.is_none_or(|t| min < t)
    }

    pub(super) fn keeps_ts(&self, ts: i64) -> bool {
        self.from_ms.is_none_or(|f| ts >= f) && self.to_ms.is_none_or(|t| ts < t)
    }
}

/// Hive's `%XX` escaping undone (the router escapes tenant ids that way in paths).
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(n) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(n);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Days since the epoch of `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: i64 = s.get(5..7)?.parse().ok()?;
    let d: i64 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Where the shards are.
#[derive(Debug)]
pub enum Source {
    Dir(PathBuf),
    #[cfg(feature = "s3")]
    S3(crate::store::Location),
}

impl Source {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("s3://") {
            #[cfg(feature = "s3")]
            return Ok(Self::S3(crate::store::Location::parse(s)?));
            #[cfg(not(feature = "s3"))]
            return Err("this policyc was built without S3 support".into());
        }
        let path = PathBuf::from(s);
        if !path.is_dir() {
            return Err(format!(
                "`{s}` is not a directory of audit shards (nor an s3:// URL)"
            ));
        }
        Ok(Self::Dir(path))
    }

    /// Reads every matching shard, handing `sink` every row group's batch of rows (and its
    /// request ids when it asks for them).
    /// Returns the number of shards read.
    pub fn read(&self, filter: &Filter, sink: &mut dyn Sink) -> Result<ReadStats, String> {
        let mut stats = ReadStats::default();
        match self {
            Self::Dir(root) => {
                let mut files = Vec::new();
                list_dir(root, root, filter, &mut files)?;
                files.sort();
                for path in files {
                    let file = std::fs::File::open(&path)
                        .map_err(|e| format!("`{}`: {e}", path.display()))?;
                    read_shard(file, &path.display().to_string(), filter, sink, &mut stats)?;
                }
            }
            #[cfg(feature = "s3")]
            Self::S3(location) => {
                let store =
                    crate::store::s3(&location.bucket, std::time::Duration::from_secs(60), 3)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the S3 client's runtime: {e}"))?;
                // Walked one level at a time, so pruned partitions are never listed.
                let root = location.prefix.trim_end_matches('/').to_owned();
                let mut keys = Vec::new();
                let mut dirs = vec![root.clone()];
                while let Some(dir) = dirs.pop() {
                    let prefix =
                        (!dir.is_empty()).then(|| object_store::path::Path::from(dir.as_str()));
                    let listed = runtime
                        .block_on(store.list_with_delimiter(prefix.as_ref()))
                        .map_err(|e| format!("cannot list s3://{}/{dir}: {e}", location.bucket))?;
                    let relative = |key: &str| {
                        key.strip_prefix(root.as_str())
                            .unwrap_or(key)
                            .trim_start_matches('/')
                            .to_owned()
                    };
                    for p in listed.common_prefixes {
                        let key = p.to_string();
                        if filter.keeps_path(&relative(&key)) {
                            dirs.push(key);
                        }
                    }
                    for o in listed.objects {
                        let key = o.location.to_string();
                        let rel = relative(&key);
                        if key.ends_with(".parquet")
                            && !rel.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
                            && filter.keeps_path(&rel)
                        {
                            keys.push(key);
                        }
                    }
                }
                keys.sort();
                for key in keys {
                    let path = object_store::path::Path::from(key.as_str());
                    let bytes = runtime.block_on(async {
                        store
                            .get(&path)
                            .await
                            .map_err(|e| {
                                format!("cannot read s3://{}/{key}: {e}", location.bucket)
                            })?
                            .bytes()
                            .await
                            .map_err(|e| format!("cannot read s3://{}/{key}: {e}", location.bucket))
                    })?;
                    let name = format!("s3://{}/{key}", location.bucket);
                    read_shard(bytes, &name, filter, sink, &mut stats)?;
                }
            }
        }
        Ok(stats)
    }
}

/// What reading found besides the rows.
#[derive(Debug, Default)]
pub struct ReadStats {
    pub shards: u64,
    pub row_groups: u64,
    /// Row groups left unread by their `ts` statistics.
    pub row_groups_pruned: u64,
}

fn list_dir(
    root: &Path,
    dir: &Path,
    filter: &Filter,
    out: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            // The router's open shards, logs and temporary files.
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = entry
            .file_type()
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        if kind.is_dir() {
            if filter.keeps_path(&rel) {
                list_dir(root, &path, filter, out)?;
            }
        } else if name.ends_with(".parquet") && filter.keeps_path(&rel) {
            out.push(path);
        }
    }
    Ok(())
}

/// What reads the batches: [`Sink::batch`] for every row group, and when it answers that
/// it wants them, [`Sink::ids`] with the group's request ids (unique per record, so the
/// most expensive column to decode: read only for the groups where an example is missing).
pub trait Sink {
    /// One row group; `true` to be given its request ids.
    fn batch(&mut self, b: &Batch<'_>) -> bool;
    /// The request ids of the group last given to `batch`, by row (`None` when absent).
    fn ids(&mut self, ids: &[Option<ByteArray>]);
    /// Whether the optional column is needed; one that is not is never decoded and is
    /// handed over as absent. (`ts`, `status`, `tenant`, `tenant_claimed`,
    /// `requested_model` and `policy_revision` are always read.)
    fn needs(&self, _column: &str) -> bool {
        true
    }
}

/// One row group's rows, column by column; `None` for a column the shard does not have.
#[derive(Debug)]
pub struct Batch<'a> {
    pub rows: usize,
    pub ts: &'a [i64],
    pub tenant: Option<&'a [Option<ByteArray>]>,
    pub tenant_claimed: Option<&'a [Option<ByteArray>]>,
    pub data_class: Option<&'a [Option<ByteArray>]>,
    pub user_role: Option<&'a [Option<ByteArray>]>,
    pub requested_model: Option<&'a [Option<ByteArray>]>,
    pub latency_budget_ms: Option<&'a [Option<i64>]>,
    pub cost_cap_per_1k: Option<&'a [Option<i64>]>,
    pub policy_revision: Option<&'a [Option<i64>]>,
    pub endpoint_id: Option<&'a [Option<ByteArray>]>,
    pub fallback_from: Option<&'a [Option<ByteArray>]>,
    pub status: &'a [Option<i64>],
    pub tokens_in: Option<&'a [Option<i64>]>,
    pub tokens_out: Option<&'a [Option<i64>]>,
    pub cost_usd: Option<&'a [Option<i64>]>,
}

fn read_shard<R: ChunkReader + 'static>(
    data: R,
    name: &str,
    filter: &Filter,
    sink: &mut dyn Sink,
    stats: &mut ReadStats,
) -> Result<(), String> {
    let fail = |e: parquet::errors::ParquetError| format!("`{name}`: {e}");
    let reader = SerializedFileReader::new(data).map_err(fail)?;
    stats.shards += 1;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let index = |column: &str| schema.columns().iter().position(|c| c.name() == column);
    let Some(ts_index) = index("ts") else {
        return Err(format!(
            "`{name}` is not an audit shard: it has no `ts` column"
        ));
    };
    // The router writes milliseconds; a copy made by another tool may use finer units.
    let per_ms = match schema.column(ts_index).logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => match t.unit {
            TimeUnit::MICROS => 1_000,
            TimeUnit::NANOS => 1_000_000,
            TimeUnit::MILLIS => 1,
        },
        _ => 1,
    };
    let declined: Vec<&str> = OPTIONAL
        .iter()
        .copied()
        .filter(|n| !sink.needs(n))
        .collect();
    let mut scratch = Scratch::default();
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(fail)?;
        let meta = group.metadata();
        if let Some(Statistics::Int64(s)) = meta.column(ts_index).statistics()
            && let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt())
            && !filter.overlaps(min.div_euclid(per_ms), max.div_euclid(per_ms))
        {
            stats.row_groups_pruned += 1;
            continue;
        }
        stats.row_groups += 1;
        let rows = usize::try_from(meta.num_rows()).unwrap_or(0);
        let g = &*group;
        let c = &mut scratch;
        c.ts_raw.fill(g, Some(ts_index), rows, name, "ts")?;
        c.ts.clear();
        c.ts.extend(
            c.ts_raw
                .out
                .iter()
                .map(|v| v.unwrap_or(0).div_euclid(per_ms)),
        );
        let wanted = |n: &str| index(n).filter(|_| !declined.contains(&n));
        let text = |col: &mut TextCol, n: &str| col.fill(g, wanted(n), rows, name, n);
        let long = |col: &mut IntCol, n: &str| col.fill(g, wanted(n), rows, name, n);
        long(&mut c.status, "status")?;
        text(&mut c.tenant, "tenant")?;
        text(&mut c.tenant_claimed, "tenant_claimed")?;
        text(&mut c.data_class, "data_class")?;
        text(&mut c.user_role, "user_role")?;
        text(&mut c.requested_model, "requested_model")?;
        long(&mut c.latency_budget_ms, "latency_budget_ms")?;
        long(&mut c.cost_cap_per_1k, "cost_cap_per_1k")?;
        long(&mut c.policy_revision, "policy_revision")?;
        text(&mut c.endpoint_id, "endpoint_id")?;
        text(&mut c.fallback_from, "fallback_from")?;
        long(&mut c.tokens_in, "tokens_in")?;
        long(&mut c.tokens_out, "tokens_out")?;
        long(&mut c.cost_usd, "cost_usd")?;
        if !c.status.present {
            c.status.out.clear();
            c.status.out.resize(rows, None);
        }
        let wants_ids = sink.batch(&Batch {
            rows,
            ts: &c.ts,
            tenant: c.tenant.get(),
            tenant_claimed: c.tenant_claimed.get(),
            data_class: c.data_class.get(),
            user_role: c.user_role.get(),
            requested_model: c.requested_model.get(),
            latency_budget_ms: c.latency_budget_ms.get(),
            cost_cap_per_1k: c.cost_cap_per_1k.get(),
            policy_revision: c.policy_revision.get(),
            endpoint_id: c.endpoint_id.get(),
            fallback_from: c.fallback_from.get(),
            status: &c.status.out,
            tokens_in: c.tokens_in.get(),
            tokens_out: c.tokens_out.get(),
            cost_usd: c.cost_usd.get(),
        });
        if wants_ids {
            text(&mut c.request_id, "request_id")?;
            if !c.request_id.present {
                c.request_id.out.clear();
                c.request_id.out.resize(rows, None);
            }
            sink.ids(&c.request_id.out);
        }
    }
    Ok(())
}

/// The columns a [`Sink`] may decline.
const OPTIONAL: &[&str] = &[
    "data_class",
    "user_role",
    "latency_budget_ms",
    "cost_cap_per_1k",
    "endpoint_id",
    "fallback_from",
    "tokens_in",
    "tokens_out",
    "cost_usd",
];

/// The columns of one row group, kept from group to group so their buffers are reused
/// (a fresh multi-megabyte vector per column per group costs more in page faults than the
/// decoding).
#[derive(Default)]
struct Scratch {
    ts_raw: IntCol,
    ts: Vec<i64>,
    request_id: TextCol,
    status: IntCol,
    tenant: TextCol,
    tenant_claimed: TextCol,
    data_class: TextCol,
    user_role: TextCol,
    requested_model: TextCol,
    latency_budget_ms: IntCol,
    cost_cap_per_1k: IntCol,
    policy_revision: IntCol,
    endpoint_id: TextCol,
    fallback_from: TextCol,
    tokens_in: IntCol,
    tokens_out: IntCol,
    cost_usd: IntCol,
}

/// Spreads the present values over the rows by their definition levels, into `out`.
fn spread<T>(
    values: impl Iterator<Item = T>,
    defs: &[i16],
    max_def: i16,
    out: &mut Vec<Option<T>>,
) {
    if max_def == 0 {
        out.extend(values.map(Some));
        return;
    }
    let mut values = values;
    for &d in defs {
        out.push(if d == max_def { values.next() } else { None });
    }
}

/// Reads up to `rows` records of a column chunk: the present values into `values`, the
/// definition levels appended to `defs`.
fn read_all<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    rows: usize,
    defs: &mut Vec<i16>,
    values: &mut Vec<T::T>,
) -> parquet::errors::Result<()> {
    values.clear();
    let mut read = 0;
    while read < rows {
        let (n, _, _) = reader.read_records(rows - read, Some(&mut *defs), None, values)?;
        if n == 0 {
            break;
        }
        read += n;
    }
    Ok(())
}

/// A string column's buffers.
#[derive(Default)]
struct TextCol {
    present: bool,
    values: Vec<ByteArray>,
    defs: Vec<i16>,
    out: Vec<Option<ByteArray>>,
}

impl TextCol {
    fn get(&self) -> Option<&[Option<ByteArray>]> {
        self.present.then_some(self.out.as_slice())
    }

    /// Reads column `i` (absent: `None`) of `group`.
    fn fill(
        &mut self,
        group: &dyn RowGroupReader,
        i: Option<usize>,
        rows: usize,
        file: &str,
        column: &str,
    ) -> Result<(), String> {
        self.out.clear();
        self.present = i.is_some();
        let Some(i) = i else { return Ok(()) };
        let fail = |e: parquet::errors::ParquetError| format!("`{file}`, column `{column}`: {e}");
        let max_def = group.metadata().column(i).column_descr().max_def_level();
        let ColumnReader::ByteArrayColumnReader(mut reader) =
            group.get_column_reader(i).map_err(fail)?
        else {
            return Err(format!(
                "`{file}`: column `{column}` is not a string column"
            ));
        };
        self.defs.clear();
        read_all(&mut reader, rows, &mut self.defs, &mut self.values).map_err(fail)?;
        spread(self.values.drain(..), &self.defs, max_def, &mut self.out);
        self.out.resize(rows, None);
        Ok(())
    }
}

/// An INT64, INT32 or (for decimals) fixed-length column's buffers, read as `i64`s; a
/// decimal is read in micro-units (its scale converted to 6), as the router writes money.
#[derive(Default)]
struct IntCol {
    present: bool,
    v64: Vec<i64>,
    v32: Vec<i32>,
    fixed: Vec<parquet::data_type::FixedLenByteArray>,
    defs: Vec<i16>,
    out: Vec<Option<i64>>,
}

impl IntCol {
    fn get(&self) -> Option<&[Option<i64>]> {
        self.present.then_some(self.out.as_slice())
    }

    fn fill(
        &mut self,
        group: &dyn RowGroupReader,
        i: Option<usize>,
        rows: usize,
        file: &str,
        column: &str,
    ) -> Result<(), String> {
        self.out.clear();
        self.present = i.is_some();
        let Some(i) = i else { return Ok(()) };
        let fail = |e: parquet::errors::ParquetError| format!("`{file}`, column `{column}`: {e}");
        let descr = group.metadata().column(i).column_descr();
        let max_def = descr.max_def_level();
        self.defs.clear();
        match (
            descr.physical_type(),
            group.get_column_reader(i).map_err(fail)?,
        ) {
            (Physical::INT64, ColumnReader::Int64ColumnReader(mut reader)) => {
                read_all(&mut reader, rows, &mut self.defs, &mut self.v64).map_err(fail)?;
                spread(self.v64.iter().copied(), &self.defs, max_def, &mut self.out);
            }
            (Physical::INT32, ColumnReader::Int32ColumnReader(mut reader)) => {
                read_all(&mut reader, rows, &mut self.defs, &mut self.v32).map_err(fail)?;
                spread(
                    self.v32.iter().map(|&v| i64::from(v)),
                    &self.defs,
                    max_def,
                    &mut self.out,
                );
            }
            (
                Physical::FIXED_LEN_BYTE_ARRAY,
                ColumnReader::FixedLenByteArrayColumnReader(mut reader),
            ) => {
                read_all(&mut reader, rows, &mut self.defs, &mut self.fixed).map_err(fail)?;
                // Big-endian two's complement, as Parquet stores a decimal's unscaled value.
                let ints = self.fixed.iter().map(|v| {
                    let b = v.data();
                    let mut x: i128 = if b.first().is_some_and(|&f| f & 0x80 != 0) {
                        -1
                    } else {
                        0
                    };
                    for &byte in b {
                        x = (x << 8) | i128::from(byte);
                    }
                    i64::try_from(x).unwrap_or(i64::MAX)
                });
                spread(ints, &self.defs, max_def, &mut self.out);
            }
            _ => {
                return Err(format!(
                    "`{file}`: column `{column}` is not an integer column"
                ));
            }
        }
        self.out.resize(rows, None);
        if let Some(LogicalType::Decimal(d)) = descr.logical_type_ref()
            && d.scale != 6
        {
            // Money is read in micro-units whatever scale another tool wrote it with.
            let scale = d.scale;
            for v in self.out.iter_mut().flatten() {
                *v = if scale < 6 {
                    v.saturating_mul(10_i64.saturating_pow(u32::try_from(6 - scale).unwrap_or(0)))
                } else {
                    *v / 10_i64.saturating_pow(u32::try_from(scale - 6).unwrap_or(0))
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_prune_by_tenant_and_window() {
        let day = parse_day("2026-11-30").unwrap_or(0);
        let f = Filter {
            from_ms: Some(day * 86_400_000 + 10 * HOUR_MS),
            to_ms: Some(day * 86_400_000 + 12 * HOUR_MS),
            tenant: Some("acme/eu".into()),
        };
        assert!(f.keeps_path("tenant=acme%2Feu/dt=2026-11-30/hour=10/part-a.parquet"));
        assert!(f.keeps_path("tenant=acme%2Feu/dt=2026-11-30/hour=11"));
        assert!(!f.keeps_path("tenant=acme%2Feu/dt=2026-11-30/hour=12"));
        assert!(!f.keeps_path("tenant=acme%2Feu/dt=2026-11-29"));
        assert!(!f.keeps_path("tenant=beta/dt=2026-11-30/hour=10"));
        assert!(f.keeps_path("tenant=acme%2Feu"));
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
    }
}
