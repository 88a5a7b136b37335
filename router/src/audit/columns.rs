//! Encoding audit records as Parquet row groups (columns in [`SCHEMA`](super::SCHEMA) order).

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::Record;

/// How shards are written (the router's and `audit compact`'s alike), with `metadata` in the
/// file's key-value metadata.
pub(super) fn properties(metadata: Option<Vec<KeyValue>>) -> WriterProperties {
    // Statistics where queries prune (time, tenant, endpoint, status); no dictionary for
    // columns that are unique per row (it would only cost hashing).
    let chunk_stats = ["ts", "tenant", "data_class", "endpoint_id", "status"];
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("switchyard".to_owned())
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(metadata);
    for column in chunk_stats {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
    }
    for column in [
        "request_id",
        "ts",
        "latency_ms",
        "upstream_latency_ms",
        "request_bytes",
        "response_bytes",
    ] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    props.build()
}

/// Encodes `rows` as one row group, columns in [`SCHEMA`] order.
pub(super) fn write_row_group<W: std::io::Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    rows: &mut [Record],
) -> parquet::errors::Result<()> {
    let mut rg = writer.next_row_group()?;
    let mut index = 0usize;
    while let Some(mut col) = rg.next_column()? {
        match index {
            0 => i64s(&mut col, rows, |r| Some(r.ts_ms), true)?,
            1 => strings(
                &mut col,
                rows,
                |r| Some(std::mem::take(&mut r.request_id)),
                true,
            )?,
            2 => strings(&mut col, rows, |r| r.tenant.take(), false)?,
            3 => strings(&mut col, rows, |r| r.data_class.take(), false)?,
            4 => strings(&mut col, rows, |r| r.user_role.take(), false)?,
            5 => i32s(&mut col, rows, |r| r.rule_index, false)?,
            6 => strings(&mut col, rows, |r| r.rule_name.take(), false)?,
            7 => strings(&mut col, rows, |r| r.endpoint_id.take(), false)?,
            8 => strings(&mut col, rows, |r| r.model.take(), false)?,
            9 => i32s(&mut col, rows, |r| Some(r.status), true)?,
            10 => i64s(&mut col, rows, |r| Some(r.latency_ms), true)?,
            11 => i64s(&mut col, rows, |r| r.upstream_latency_ms, false)?,
            12 => i64s(&mut col, rows, |r| r.tokens_in, false)?,
            13 => i64s(&mut col, rows, |r| r.tokens_out, false)?,
            14 => bools(&mut col, rows, |r| r.tokens_estimated)?,
            15 => i64s(&mut col, rows, |r| r.cost_micros, false)?,
            16 => bools(&mut col, rows, |r| r.stream)?,
            17 => strings(&mut col, rows, |r| r.error.take(), false)?,
            18 => i64s(&mut col, rows, |r| Some(r.request_bytes), true)?,
            19 => i64s(&mut col, rows, |r| Some(r.response_bytes), true)?,
            20 => i32s(&mut col, rows, |r| r.upstream_status, false)?,
            21 => strings(&mut col, rows, |r| r.fallback_from.take(), false)?,
            22 => strings(&mut col, rows, |r| r.tenant_claimed.take(), false)?,
            23 => strings(&mut col, rows, |r| r.key_id.take(), false)?,
            24 => strings(&mut col, rows, |r| r.api.take(), false)?,
            25 => strings(&mut col, rows, |r| r.upstream_model.take(), false)?,
            26 => i64s(&mut col, rows, |r| r.cache_read_tokens, false)?,
            27 => i64s(&mut col, rows, |r| r.cache_write_tokens, false)?,
            28 => strings(&mut col, rows, |r| r.stop_reason.take(), false)?,
            29 => i32s(&mut col, rows, |r| r.attempts, false)?,
            30 => strings(&mut col, rows, |r| r.retry_reasons.take(), false)?,
            31 => trace_ids(&mut col, rows)?,
            32 => strings(&mut col, rows, |r| r.limit_mode.map(str::to_owned), false)?,
            _ => {
                return Err(parquet::errors::ParquetError::General(
                    "audit schema has more columns than the writer".into(),
                ));
            }
        }
        col.close()?;
        index += 1;
    }
    rg.close()?;
    Ok(())
}

type Col<'a, 'b> = parquet::file::writer::SerializedColumnWriter<'a>;

/// Values and definition levels for an optional column (levels omitted when required).
fn levels<T>(rows: &[Record], get: impl Fn(&Record) -> Option<T>) -> (Vec<T>, Vec<i16>) {
    let mut values = Vec::with_capacity(rows.len());
    let mut defs = Vec::with_capacity(rows.len());
    for r in rows {
        match get(r) {
            Some(v) => {
                values.push(v);
                defs.push(1);
            }
            None => defs.push(0),
        }
    }
    (values, defs)
}

fn i64s(
    col: &mut Col<'_, '_>,
    rows: &[Record],
    get: impl Fn(&Record) -> Option<i64>,
    required: bool,
) -> parquet::errors::Result<()> {
    let (values, defs) = levels(rows, get);
    let defs = (!required).then_some(defs.as_slice());
    col.typed::<Int64Type>().write_batch(&values, defs, None)?;
    Ok(())
}

fn i32s(
    col: &mut Col<'_, '_>,
    rows: &[Record],
    get: impl Fn(&Record) -> Option<i32>,
    required: bool,
) -> parquet::errors::Result<()> {
    let (values, defs) = levels(rows, get);
    let defs = (!required).then_some(defs.as_slice());
    col.typed::<Int32Type>().write_batch(&values, defs, None)?;
    Ok(())
}

fn bools(
    col: &mut Col<'_, '_>,
    rows: &[Record],
    get: impl Fn(&Record) -> bool,
) -> parquet::errors::Result<()> {
    let values: Vec<bool> = rows.iter().map(get).collect();
    col.typed::<BoolType>().write_batch(&values, None, None)?;
    Ok(())
}

/// A string column; the strings are moved out of the records (no copy).
fn strings(
    col: &mut Col<'_, '_>,
    rows: &mut [Record],
    take: impl Fn(&mut Record) -> Option<String>,
    required: bool,
) -> parquet::errors::Result<()> {
    let mut values = Vec::with_capacity(rows.len());
    let mut defs = Vec::with_capacity(rows.len());
    for r in rows.iter_mut() {
        match take(r) {
            Some(s) => {
                values.push(ByteArray::from(s.into_bytes()));
                defs.push(1);
            }
            None => defs.push(0),
        }
    }
    let defs = (!required).then_some(defs.as_slice());
    col.typed::<ByteArrayType>()
        .write_batch(&values, defs, None)?;
    Ok(())
}

/// The `trace_id` column: every id's hex in one buffer, each value a slice of it (one
/// allocation per row group, not one per row).
fn trace_ids(col: &mut Col<'_, '_>, rows: &[Record]) -> parquet::errors::Result<()> {
    let mut hex = Vec::with_capacity(rows.len() * 32);
    let mut defs = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(t) = r.trace_id {
            hex.extend_from_slice(&t.hex());
        }
        defs.push(i16::from(r.trace_id.is_some()));
    }
    let hex = bytes::Bytes::from(hex);
    let values: Vec<ByteArray> = (0..hex.len() / 32)
        .map(|i| ByteArray::from(hex.slice(i * 32..(i + 1) * 32)))
        .collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&defs), None)?;
    Ok(())
}
