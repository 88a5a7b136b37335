-- DuckDB examples over switchyard audit shards (local directory or s3://bucket/prefix).
-- Run: duckdb -c ".read tools/audit/queries.sql"   (after editing the path below), or paste.
-- Layout: <root>/tenant=<id>/dt=YYYY-MM-DD/hour=HH/part-<node>-<seq>.parquet; requests with
-- no declared tenant are under tenant=__HIVE_DEFAULT_PARTITION__ (NULL).

-- `union_by_name`: shards written before a column existed (`api`, `upstream_model`, the cache
-- counts and `stop_reason` came with the Anthropic dialect) read it as NULL.

SET TimeZone = 'UTC';
CREATE OR REPLACE VIEW audit AS
SELECT * FROM read_parquet('switchyard-data/audit/**/*.parquet', hive_partitioning = true,
                           union_by_name = true);

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

-- Traffic by API (`chat`, `messages`, `embeddings`) and what the models were asked under
-- another name upstream; NULL api: shards from before the column existed.
SELECT api, model, upstream_model, count(*) AS requests, sum(tokens_in) AS tokens_in,
       sum(tokens_out) AS tokens_out
FROM audit
GROUP BY ALL
ORDER BY requests DESC;

-- Prompt caching: the share of input tokens read from a provider's cache, by endpoint.
SELECT endpoint_id,
       sum(tokens_in)                                          AS tokens_in,
       sum(cache_read_tokens)                                  AS cache_read_tokens,
       sum(cache_write_tokens)                                 AS cache_write_tokens,
       round(sum(cache_read_tokens) / nullif(sum(tokens_in), 0), 3) AS cached_share
FROM audit
WHERE status BETWEEN 200 AND 299
GROUP BY endpoint_id
ORDER BY tokens_in DESC NULLS LAST;

-- How generations end, by API (stop reasons as the client was told them).
SELECT api, stop_reason, count(*) AS requests
FROM audit
WHERE stop_reason IS NOT NULL
GROUP BY ALL
ORDER BY api, requests DESC;
