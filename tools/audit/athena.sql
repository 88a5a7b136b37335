-- Athena (or Trino/Hive) table over switchyard audit shards shipped to S3, with partition
-- projection so new tenants, days and hours need no MSCK REPAIR / ALTER TABLE ADD PARTITION.
-- Replace s3://YOUR-BUCKET/switchyard-audit/ with the shipping prefix.
-- Tenant ids are partition values: list the tenants you have in `projection.tenant.values`
-- (or switch tenant to `injected` projection and always filter on it).

CREATE EXTERNAL TABLE IF NOT EXISTS switchyard_audit (
  ts                  timestamp,
  request_id          string,
  data_class          string,
  user_role           string,
  rule_index          int,
  rule_name           string,
  endpoint_id         string,
  model               string,
  status              int,
  latency_ms          bigint,
  upstream_latency_ms bigint,
  tokens_in           bigint,
  tokens_out          bigint,
  tokens_estimated    boolean,
  cost_usd            decimal(18,6),
  stream              boolean,
  error               string,
  request_bytes       bigint,
  response_bytes      bigint,
  upstream_status     int,
  fallback_from       string,
  tenant_claimed      string,
  key_id              string,
  api                 string,
  upstream_model      string,
  cache_read_tokens   bigint,
  cache_write_tokens  bigint,
  stop_reason         string,
  attempts            int,
  retry_reasons       string,
  trace_id            string,
  limit_mode          string,
  requested_model     string,
  latency_budget_ms   bigint,
  cost_budget_usd     decimal(18,6),
  cost_cap_per_1k     decimal(18,6),
  policy_revision     bigint
)
PARTITIONED BY (
  tenant string,
  dt     string,
  hour   string
)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/switchyard-audit/'
TBLPROPERTIES (
  'parquet.compression'           = 'ZSTD',
  'projection.enabled'            = 'true',
  'projection.tenant.type'        = 'enum',
  'projection.tenant.values'      = 'enterprise-acme,__HIVE_DEFAULT_PARTITION__',
  'projection.dt.type'            = 'date',
  'projection.dt.format'          = 'yyyy-MM-dd',
  'projection.dt.range'           = '2026-01-01,NOW',
  'projection.dt.interval'        = '1',
  'projection.dt.interval.unit'   = 'DAYS',
  'projection.hour.type'          = 'integer',
  'projection.hour.range'         = '0,23',
  'projection.hour.digits'        = '2',
  'storage.location.template'     = 's3://YOUR-BUCKET/switchyard-audit/tenant=${tenant}/dt=${dt}/hour=${hour}/'
);

-- Columns are matched by name: shards written before a column existed (`api`,
-- `upstream_model`, `cache_read_tokens`, `cache_write_tokens`, `stop_reason` came with the
-- Anthropic dialect; `attempts`, `retry_reasons`, `trace_id` with resilience; `limit_mode` with
-- the fleet; `requested_model`, `latency_budget_ms`, `cost_budget_usd`, `cost_cap_per_1k`,
-- `policy_revision` with policy replay) read it as NULL, so old and new shards share this one
-- table.
--
-- The `tenant` column of the data files equals the partition value, so it is declared only
-- as a partition key here. Example:
-- SELECT tenant, count(*), sum(cost_usd) FROM switchyard_audit
-- WHERE dt BETWEEN '2026-11-01' AND '2026-11-30' GROUP BY tenant;

-- Compaction (`switchyard audit compact`) writes an hour's merged file before it deletes the
-- shards it merged, so a query running in between may see those rows twice. This view reads
-- each request once (the request id is unique per request); query it instead of the table
-- when the hour may be being compacted.
CREATE OR REPLACE VIEW switchyard_audit_once AS
SELECT * FROM (
  SELECT a.*, row_number() OVER (PARTITION BY request_id ORDER BY ts) AS copy
  FROM switchyard_audit a
) WHERE copy = 1;
