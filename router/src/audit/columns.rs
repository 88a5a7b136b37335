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

/// Records waiting for their row group, column by column: each record is copied into
/// per-column buffers as it arrives (its strings' bytes into one buffer per column), so a
/// waiting record costs its values and a few bytes of bookkeeping — not a struct and a heap
/// string per field — and encoding walks flat arrays, with one allocation per string
/// column per row group instead of one per value.
#[derive(Debug, Default)]
pub(super) struct Pending {
    rows: usize,
    /// Bytes held by the buffers' contents (not their spare capacity).
    bytes: usize,
    ts: Vec<i64>,
    request_id: Text,
    tenant: Text,
    data_class: Text,
    user_role: Text,
    rule_index: Opt<i32>,
    rule_name: Text,
    endpoint_id: Text,
    model: Text,
    status: Vec<i32>,
    latency_ms: Vec<i64>,
    upstream_latency_ms: Opt<i64>,
    tokens_in: Opt<i64>,
    tokens_out: Opt<i64>,
    tokens_estimated: Vec<bool>,
    cost_micros: Opt<i64>,
    stream: Vec<bool>,
    error: Text,
    request_bytes: Vec<i64>,
    response_bytes: Vec<i64>,
    upstream_status: Opt<i32>,
    fallback_from: Text,
    tenant_claimed: Text,
    key_id: Text,
    api: Text,
    upstream_model: Text,
    cache_read_tokens: Opt<i64>,
    cache_write_tokens: Opt<i64>,
    stop_reason: Text,
    attempts: Opt<i32>,
    retry_reasons: Text,
    trace_id: Text,
    limit_mode: Text,
    requested_model: Text,
    latency_budget_ms: Opt<i64>,
    cost_budget_micros: Opt<i64>,
    cost_cap_per_1k_micros: Opt<i64>,
    policy_revision: Opt<i64>,
}

/// Bytes a row costs in [`Pending`] besides its strings' bytes: 8 per `i64`, 4 per `i32`,
/// 1 per `bool`, 2 per optional column's level and 4 per string's end offset.
const ROW_BYTES: usize = 8 * 14 + 4 * 4 + 2 + 2 * 31 + 4 * 18;

impl Pending {
    /// Rows waiting.
    pub(super) fn len(&self) -> usize {
        self.rows
    }

    /// Bytes the waiting rows take.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `r` as the next row.
    pub(super) fn push(&mut self, r: &Record) {
        let before = self.text_bytes();
        self.ts.push(r.ts_ms);
        self.request_id.push(Some(&r.request_id));
        self.tenant.push(r.tenant.as_deref());
        self.data_class.push(r.data_class.as_deref());
        self.user_role.push(r.user_role.as_deref());
        self.rule_index.push(r.rule_index);
        self.rule_name.push(r.rule_name.as_deref());
        self.endpoint_id.push(r.endpoint_id.as_deref());
        self.model.push(r.model.as_deref());
        self.status.push(r.status);
        self.latency_ms.push(r.latency_ms);
        self.upstream_latency_ms.push(r.upstream_latency_ms);
        self.tokens_in.push(r.tokens_in);
        self.tokens_out.push(r.tokens_out);
        self.tokens_estimated.push(r.tokens_estimated);
        self.cost_micros.push(r.cost_micros);
        self.stream.push(r.stream);
        self.error.push(r.error.as_deref());
        self.request_bytes.push(r.request_bytes);
        self.response_bytes.push(r.response_bytes);
        self.upstream_status.push(r.upstream_status);
        self.fallback_from.push(r.fallback_from.as_deref());
        self.tenant_claimed.push(r.tenant_claimed.as_deref());
        self.key_id.push(r.key_id.as_deref());
        self.api.push(r.api.as_deref());
        self.upstream_model.push(r.upstream_model.as_deref());
        self.cache_read_tokens.push(r.cache_read_tokens);
        self.cache_write_tokens.push(r.cache_write_tokens);
        self.stop_reason.push(r.stop_reason.as_deref());
        self.attempts.push(r.attempts);
        self.retry_reasons.push(r.retry_reasons.as_deref());
        let hex = r.trace_id.map(|t| t.hex());
        self.trace_id
            .push_bytes(hex.as_ref().map(<[u8; 32]>::as_slice));
        self.limit_mode.push(r.limit_mode);
        self.requested_model.push(r.requested_model.as_deref());
        self.latency_budget_ms.push(r.latency_budget_ms);
        self.cost_budget_micros.push(r.cost_budget_micros);
        self.cost_cap_per_1k_micros.push(r.cost_cap_per_1k_micros);
        self.policy_revision.push(r.policy_revision);
        self.rows += 1;
        self.bytes += ROW_BYTES + (self.text_bytes() - before);
    }

    fn text_bytes(&self) -> usize {
        self.texts().iter().map(|t| t.bytes.len()).sum()
    }

    fn texts(&self) -> [&Text; 18] {
        [
            &self.request_id,
            &self.tenant,
            &self.data_class,
            &self.user_role,
            &self.rule_name,
            &self.endpoint_id,
            &self.model,
            &self.error,
            &self.fallback_from,
            &self.tenant_claimed,
            &self.key_id,
            &self.api,
            &self.upstream_model,
            &self.stop_reason,
            &self.retry_reasons,
            &self.trace_id,
            &self.limit_mode,
            &self.requested_model,
        ]
    }

    /// Encodes the waiting rows as one row group (columns in [`SCHEMA`](super::SCHEMA)
    /// order) and empties `self` — written or not —, keeping its buffers' capacity for the
    /// next group.
    pub(super) fn write<W: std::io::Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let written = self.encode(writer);
        self.clear();
        written
    }

    fn encode<W: std::io::Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        let mut rg = writer.next_row_group()?;
        let mut index = 0usize;
        while let Some(mut col) = rg.next_column()? {
            let c = &mut col;
            match index {
                0 => c.typed::<Int64Type>().write_batch(&self.ts, None, None),
                1 => self.request_id.write(c, true),
                2 => self.tenant.write(c, false),
                3 => self.data_class.write(c, false),
                4 => self.user_role.write(c, false),
                5 => self.rule_index.write::<Int32Type>(c),
                6 => self.rule_name.write(c, false),
                7 => self.endpoint_id.write(c, false),
                8 => self.model.write(c, false),
                9 => c.typed::<Int32Type>().write_batch(&self.status, None, None),
                10 => c
                    .typed::<Int64Type>()
                    .write_batch(&self.latency_ms, None, None),
                11 => self.upstream_latency_ms.write::<Int64Type>(c),
                12 => self.tokens_in.write::<Int64Type>(c),
                13 => self.tokens_out.write::<Int64Type>(c),
                14 => c
                    .typed::<BoolType>()
                    .write_batch(&self.tokens_estimated, None, None),
                15 => self.cost_micros.write::<Int64Type>(c),
                16 => c.typed::<BoolType>().write_batch(&self.stream, None, None),
                17 => self.error.write(c, false),
                18 => c
                    .typed::<Int64Type>()
                    .write_batch(&self.request_bytes, None, None),
                19 => c
                    .typed::<Int64Type>()
                    .write_batch(&self.response_bytes, None, None),
                20 => self.upstream_status.write::<Int32Type>(c),
                21 => self.fallback_from.write(c, false),
                22 => self.tenant_claimed.write(c, false),
                23 => self.key_id.write(c, false),
                24 => self.api.write(c, false),
                25 => self.upstream_model.write(c, false),
                26 => self.cache_read_tokens.write::<Int64Type>(c),
                27 => self.cache_write_tokens.write::<Int64Type>(c),
                28 => self.stop_reason.write(c, false),
                29 => self.attempts.write::<Int32Type>(c),
                30 => self.retry_reasons.write(c, false),
                31 => self.trace_id.write(c, false),
                32 => self.limit_mode.write(c, false),
                33 => self.requested_model.write(c, false),
                34 => self.latency_budget_ms.write::<Int64Type>(c),
                35 => self.cost_budget_micros.write::<Int64Type>(c),
                36 => self.cost_cap_per_1k_micros.write::<Int64Type>(c),
                37 => self.policy_revision.write::<Int64Type>(c),
                _ => Err(parquet::errors::ParquetError::General(
                    "audit schema has more columns than the writer".into(),
                )),
            }?;
            col.close()?;
            index += 1;
        }
        rg.close()?;
        Ok(())
    }

    fn clear(&mut self) {
        let Self {
            rows,
            bytes,
            ts,
            request_id,
            tenant,
            data_class,
            user_role,
            rule_index,
            rule_name,
            endpoint_id,
            model,
            status,
            latency_ms,
            upstream_latency_ms,
            tokens_in,
            tokens_out,
            tokens_estimated,
            cost_micros,
            stream,
            error,
            request_bytes,
            response_bytes,
            upstream_status,
            fallback_from,
            tenant_claimed,
            key_id,
            api,
            upstream_model,
            cache_read_tokens,
            cache_write_tokens,
            stop_reason,
            attempts,
            retry_reasons,
            trace_id,
            limit_mode,
            requested_model,
            latency_budget_ms,
            cost_budget_micros,
            cost_cap_per_1k_micros,
            policy_revision,
        } = self;
        *rows = 0;
        *bytes = 0;
        for v in [ts, latency_ms, request_bytes, response_bytes] {
            v.clear();
        }
        status.clear();
        tokens_estimated.clear();
        stream.clear();
        for o in [rule_index, upstream_status, attempts] {
            o.clear();
        }
        for o in [
            upstream_latency_ms,
            tokens_in,
            tokens_out,
            cost_micros,
            cache_read_tokens,
            cache_write_tokens,
            latency_budget_ms,
            cost_budget_micros,
            cost_cap_per_1k_micros,
            policy_revision,
        ] {
            o.clear();
        }
        for t in [
            request_id,
            tenant,
            data_class,
            user_role,
            rule_name,
            endpoint_id,
            model,
            error,
            fallback_from,
            tenant_claimed,
            key_id,
            api,
            upstream_model,
            stop_reason,
            retry_reasons,
            trace_id,
            limit_mode,
            requested_model,
        ] {
            t.clear();
        }
    }
}

type Col<'a> = parquet::file::writer::SerializedColumnWriter<'a>;

/// An optional numeric column: the present values and every row's definition level.
#[derive(Debug)]
struct Opt<T> {
    values: Vec<T>,
    defs: Vec<i16>,
}

impl<T> Default for Opt<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            defs: Vec::new(),
        }
    }
}

impl<T: Copy> Opt<T> {
    fn push(&mut self, v: Option<T>) {
        if let Some(v) = v {
            self.values.push(v);
        }
        self.defs.push(i16::from(v.is_some()));
    }

    fn clear(&mut self) {
        self.values.clear();
        self.defs.clear();
    }

    fn write<D>(&self, col: &mut Col<'_>) -> parquet::errors::Result<usize>
    where
        D: parquet::data_type::DataType<T = T>,
    {
        col.typed::<D>()
            .write_batch(&self.values, Some(&self.defs), None)
    }
}

/// A string column: every present value's bytes in one buffer, where each ends, and every
/// row's definition level.
#[derive(Debug, Default)]
struct Text {
    bytes: Vec<u8>,
    /// End of each present value in `bytes`. (A row group's strings stay far below 4 GiB:
    /// the writer holds at most `MAX_PENDING_BYTES` of rows.)
    ends: Vec<u32>,
    defs: Vec<i16>,
}

impl Text {
    fn push(&mut self, s: Option<&str>) {
        self.push_bytes(s.map(str::as_bytes));
    }

    fn push_bytes(&mut self, s: Option<&[u8]>) {
        if let Some(s) = s {
            self.bytes.extend_from_slice(s);
            self.ends
                .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
        }
        self.defs.push(i16::from(s.is_some()));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.defs.clear();
    }

    /// Writes the column: each value a slice of one shared buffer (the buffer moves into
    /// it; the next row group starts a new one).
    fn write(&mut self, col: &mut Col<'_>, required: bool) -> parquet::errors::Result<usize> {
        let all = bytes::Bytes::from(std::mem::take(&mut self.bytes));
        let mut start = 0;
        let values: Vec<ByteArray> = self
            .ends
            .iter()
            .map(|&end| {
                let end = (end as usize).min(all.len());
                let v = ByteArray::from(all.slice(start.min(end)..end));
                start = end;
                v
            })
            .collect();
        let defs = (!required).then_some(self.defs.as_slice());
        col.typed::<ByteArrayType>()
            .write_batch(&values, defs, None)
    }
}
