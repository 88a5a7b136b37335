-- DuckDB examples over switchyard audit shards (local directory or s3://bucket/prefix).
-- Run: duckdb -c ".read tools/audit/queries.sql"   (after editing the path below), or paste.
-- Layout: <root>/tenant=<id>/dt=YYYY-MM-DD/hour=HH/part-<node>-<seq>.parquet; requests with
-- no declared tenant are under tenant=__HIVE_DEFAULT_PARTITION__ (NULL).

SET TimeZone = 'UTC';
CREATE OR REPLACE VIEW audit AS
SELECT * FROM read_parquet('switchyard-data/audit/**/*.parquet', hive_partitioning = true);

-- Requests and cost by tenant, last 7 days.
SELECT tenant,
       count(*)                                   AS requests,
       count(*) FILTER (WHERE status >= 400)      AS errors,
       sum(tokens_in)                             AS tokens_in,
       sum(tokens_out)                            AS tokens_out,
       sum(cost_usd)                              AS cost_usd
FROM audit
WHERE dt >= current_date - INTERVAL 7 DAY
GROUP BY tenant
ORDER BY cost_usd DESC NULLS LAST;

-- p50 / p95 latency by endpoint (successful requests).
SELECT endpoint_id,
       count(*)                                   AS requests,
       quantile_cont(latency_ms, 0.5)             AS p50_ms,
       quantile_cont(latency_ms, 0.95)            AS p95_ms,
       quantile_cont(upstream_latency_ms, 0.95)   AS upstream_p95_ms
FROM audit
WHERE status BETWEEN 200 AND 299
GROUP BY endpoint_id
ORDER BY requests DESC;

-- Decisions by rule: which rules route how much traffic where.
SELECT rule_index, rule_name, endpoint_id, count(*) AS requests
FROM audit
GROUP BY ALL
ORDER BY rule_index, requests DESC;

-- Requests that fell back from their first endpoint, and why the first failed.
SELECT ts, request_id, tenant, fallback_from, endpoint_id, status
FROM audit
WHERE fallback_from IS NOT NULL
ORDER BY ts DESC
LIMIT 50;
