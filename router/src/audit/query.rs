//! `GET /v1/audit`: the node's local audit records — sealed shards and the write-ahead logs of
//! shards still open — filtered, newest first.
//!
//! Pruning, cheapest first: tenant directories (when the tenant is filtered), `dt=`/`hour=`
//! directories outside the time window, then row groups whose `ts` statistics fall outside
//! it. Only then are rows decoded. At most `limit` records are kept while scanning.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use parquet::data_type::Decimal;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::record::Field;

use super::{Record, escape_path_value, wal};
use crate::clock::iso8601;

/// Most records one query returns.
pub const MAX_LIMIT: usize = 1000;
/// Records returned when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// A parsed `GET /v1/audit` query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub tenant: Option<String>,
    pub data_class: Option<String>,
    pub endpoint: Option<String>,
    /// Inclusive bounds, ms since the epoch.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
}

/// A bad query parameter, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl Query {
    /// Parses a query string (`tenant=a&from=2026-11-22T08:00:00Z&limit=10`).
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut q = Query {
            limit: DEFAULT_LIMIT,
            ..Query::default()
        };
        let mut seen = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw)
                .ok_or_else(|| QueryError(format!("`{key}` is not valid percent-encoded UTF-8")))?;
            if seen.contains(&key) {
                return Err(QueryError(format!("`{key}` is given more than once")));
            }
            seen.push(key);
            match key {
                "tenant" => q.tenant = Some(value),
                "data_class" => q.data_class = Some(value),
                "endpoint" => q.endpoint = Some(value),
                "from" => q.from_ms = Some(parse_time(&value, "from")?),
                "to" => q.to_ms = Some(parse_time(&value, "to")?),
                "limit" => {
                    let n: usize = value.parse().map_err(|_| {
                        QueryError(format!(
                            "`limit` must be a whole number from 1 to {MAX_LIMIT}, found `{value}`"
                        ))
                    })?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(QueryError(format!(
                            "`limit` must be from 1 to {MAX_LIMIT}, found {n}"
                        )));
                    }
                    q.limit = n;
                }
                other => {
                    return Err(QueryError(format!(
                        "unknown parameter `{other}`; use tenant, data_class, endpoint, from, to, limit"
                    )));
                }
            }
        }
        if let (Some(f), Some(t)) = (q.from_ms, q.to_ms)
            && f > t
        {
            return Err(QueryError("`from` is after `to`".into()));
        }
        Ok(q)
    }

    fn matches(&self, r: &Record) -> bool {
        self.tenant
            .as_deref()
            .is_none_or(|t| r.tenant.as_deref() == Some(t))
            && self
                .data_class
                .as_deref()
                .is_none_or(|d| r.data_class.as_deref() == Some(d))
            && self
                .endpoint
                .as_deref()
                .is_none_or(|e| r.endpoint_id.as_deref() == Some(e))
            && self.from_ms.is_none_or(|f| r.ts_ms >= f)
            && self.to_ms.is_none_or(|t| r.ts_ms <= t)
    }

    /// Whether any record in `[lo, hi]` (ms) could match the time window.
    fn overlaps(&self, lo: i64, hi: i64) -> bool {
        self.from_ms.is_none_or(|f| hi >= f) && self.to_ms.is_none_or(|t| lo <= t)
    }
}

/// Runs `q` over the audit directory `root`: newest first, at most `q.limit`.
pub fn run(root: &Path, q: &Query) -> Vec<Record> {
    let mut best: BinaryHeap<Reverse<(i64, String, Box<Record>)>> = BinaryHeap::new();
    let mut keep = |r: Record| {
        if !q.matches(&r) {
            return;
        }
        best.push(Reverse((r.ts_ms, r.request_id.clone(), Box::new(r))));
        if best.len() > q.limit {
            best.pop();
        }
    };
    let tenants = match std::fs::read_dir(root) {
        Ok(t) => t,
        Err(_) => return Vec::new(),
    };
    let wanted_tenant = q
        .tenant
        .as_deref()
        .map(|t| format!("tenant={}", escape_path_value(t)));
    for tenant in tenants.flatten() {
        let name = tenant.file_name().to_string_lossy().into_owned();
        if wanted_tenant.as_ref().is_some_and(|w| *w != name) {
            continue;
        }
        for (dt_dir, day) in dated(&tenant.path(), "dt=", parse_day) {
            if !q.overlaps(day * 86_400_000, day * 86_400_000 + 86_399_999) {
                continue;
            }
            for (hour_dir, hour) in dated(&dt_dir, "hour=", |h| h.parse().ok()) {
                let lo = day * 86_400_000 + hour * 3_600_000;
                if !q.overlaps(lo, lo + 3_599_999) {
                    continue;
                }
                scan_hour(&hour_dir, q, &mut keep);
            }
        }
    }
    let mut out: Vec<Record> = best.into_iter().map(|Reverse((_, _, r))| *r).collect();
    out.sort_by(|a, b| (b.ts_ms, &b.request_id).cmp(&(a.ts_ms, &a.request_id)));
    out
}

/// Subdirectories named `prefix<value>` with their parsed value.
fn dated(
    dir: &Path,
    prefix: &str,
    parse: impl Fn(&str) -> Option<i64>,
) -> Vec<(std::path::PathBuf, i64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = parse(name.strip_prefix(prefix)?)?;
            Some((e.path(), v))
        })
        .collect()
}

fn scan_hour(dir: &Path, q: &Query, keep: &mut impl FnMut(Record)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with('.') {
            if let Err(e) = scan_shard(&path, q, keep) {
                tracing::warn!(shard = %path.display(), error = %e, "audit shard unreadable; skipped");
            }
        } else if name.ends_with(".wal") {
            // A shard still open: its records are in its log.
            if let Ok(bytes) = std::fs::read(&path) {
                for r in wal::read(&bytes) {
                    keep(r);
                }
            }
        }
    }
}

fn scan_shard(
    path: &Path,
    q: &Query,
    keep: &mut impl FnMut(Record),
) -> parquet::errors::Result<()> {
    let file = std::fs::File::open(path)?;
    let reader = SerializedFileReader::new(file)?;
    for i in 0..reader.num_row_groups() {
        let group = reader.get_row_group(i)?;
        if let Some(Statistics::Int64(ts)) = group.metadata().column(0).statistics()
            && let (Some(&lo), Some(&hi)) = (ts.min_opt(), ts.max_opt())
            && !q.overlaps(lo, hi)
        {
            continue;
        }
        for row in group.get_row_iter(None)? {
            keep(from_row(&row?));
        }
    }
    Ok(())
}

pub(super) fn from_row(row: &parquet::record::Row) -> Record {
    let mut r = Record::default();
    for (name, field) in row.get_column_iter() {
        let text = || match field {
            Field::Str(s) => Some(s.clone()),
            _ => None,
        };
        let long = || match field {
            Field::Long(v) | Field::TimestampMillis(v) => Some(*v),
            Field::Int(v) => Some(i64::from(*v)),
            Field::Decimal(Decimal::Int64 { value, .. }) => Some(i64::from_be_bytes(*value)),
            _ => None,
        };
        let int = || long().and_then(|v| i32::try_from(v).ok());
        let flag = || matches!(field, Field::Bool(true));
        match name.as_str() {
            "ts" => r.ts_ms = long().unwrap_or(0),
            "request_id" => r.request_id = text().unwrap_or_default(),
            "tenant" => r.tenant = text(),
            "tenant_claimed" => r.tenant_claimed = text(),
            "data_class" => r.data_class = text(),
            "user_role" => r.user_role = text(),
            "rule_index" => r.rule_index = int(),
            "rule_name" => r.rule_name = text(),
            "endpoint_id" => r.endpoint_id = text(),
            "model" => r.model = text(),
            "status" => r.status = int().unwrap_or(0),
            "latency_ms" => r.latency_ms = long().unwrap_or(0),
            "upstream_latency_ms" => r.upstream_latency_ms = long(),
            "tokens_in" => r.tokens_in = long(),
            "tokens_out" => r.tokens_out = long(),
            "tokens_estimated" => r.tokens_estimated = flag(),
            "cost_usd" => r.cost_micros = long(),
            "stream" => r.stream = flag(),
            "error" => r.error = text(),
            "request_bytes" => r.request_bytes = long().unwrap_or(0),
            "response_bytes" => r.response_bytes = long().unwrap_or(0),
            "upstream_status" => r.upstream_status = int(),
            "fallback_from" => r.fallback_from = text(),
            "key_id" => r.key_id = text(),
            "api" => r.api = text(),
            "upstream_model" => r.upstream_model = text(),
            "cache_read_tokens" => r.cache_read_tokens = long(),
            "cache_write_tokens" => r.cache_write_tokens = long(),
            "stop_reason" => r.stop_reason = text(),
            "attempts" => r.attempts = int(),
            "retry_reasons" => r.retry_reasons = text(),
            "trace_id" => {
                r.trace_id = text().and_then(|t| crate::observe::trace::TraceId::parse(&t));
            }
            "limit_mode" => r.limit_mode = text().as_deref().and_then(super::limit_mode),
            "requested_model" => r.requested_model = text(),
            "latency_budget_ms" => r.latency_budget_ms = long(),
            "cost_budget_usd" => r.cost_budget_micros = long(),
            "cost_cap_per_1k" => r.cost_cap_per_1k_micros = long(),
            "policy_revision" => r.policy_revision = long(),
            _ => {}
        }
    }
    r
}

/// The record as the API returns it (the seed's schema plus our columns).
#[must_use]
pub fn to_json(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "ts": iso8601(r.ts_ms),
        "request_id": r.request_id,
        "tenant": r.tenant,
        "tenant_claimed": r.tenant_claimed,
        "data_class": r.data_class,
        "user_role": r.user_role,
        "rule_index": r.rule_index,
        "rule_name": r.rule_name,
        "endpoint_id": r.endpoint_id,
        "model": r.model,
        "status": r.status,
        "latency_ms": r.latency_ms,
        "upstream_latency_ms": r.upstream_latency_ms,
        "tokens_in": r.tokens_in,
        "tokens_out": r.tokens_out,
        "tokens_estimated": r.tokens_estimated,
        // Money stays exact: a decimal string (as billing APIs write it) and the integer
        // micro-dollars, never a binary float.
        "cost_usd": usd(r.cost_micros),
        "cost_micros": r.cost_micros,
        "stream": r.stream,
        "error": r.error,
        "request_bytes": r.request_bytes,
        "response_bytes": r.response_bytes,
        "upstream_status": r.upstream_status,
        "key_id": r.key_id,
        "fallback_from": r.fallback_from,
        "api": r.api,
        "upstream_model": r.upstream_model,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "stop_reason": r.stop_reason,
        "attempts": r.attempts,
        "retry_reasons": r.retry_reasons,
        "trace_id": r.trace_id,
        "limit_mode": r.limit_mode,
        "requested_model": r.requested_model,
        "latency_budget_ms": r.latency_budget_ms,
        "cost_budget_usd": usd(r.cost_budget_micros),
        "cost_cap_per_1k": usd(r.cost_cap_per_1k_micros),
        "policy_revision": r.policy_revision,
    })
}

/// Micro-dollars as an exact decimal string.
fn usd(micros: Option<i64>) -> Option<String> {
    micros
        .and_then(|m| u64::try_from(m).ok())
        .map(|m| switchyard_table::Micros(m).to_string())
}

/// Days since the epoch of a `YYYY-MM-DD` date.
fn parse_day(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// ISO 8601: `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z`, `±HH:MM` or nothing
/// (UTC).
pub(crate) fn parse_time(s: &str, what: &str) -> Result<i64, QueryError> {
    let bad = || {
        QueryError(format!(
            "`{what}` must be an ISO 8601 time such as 2026-11-22T08:00:00Z, found `{s}`"
        ))
    };
    let day = parse_day(s.get(..10).ok_or_else(bad)?).ok_or_else(bad)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Ok(day * 86_400_000);
    }
    let rest = rest.strip_prefix(['T', ' ']).ok_or_else(bad)?;
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i >= 5) {
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        // `±HH:MM`, `±HHMM` or `±HH`, at most 18 hours (ISO 8601's range): bounded before
        // any arithmetic, so no input overflows.
        let digits = off.get(1..).unwrap_or_default().replace(':', "");
        if !matches!(digits.len(), 2 | 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let h: i64 = digits
            .get(..2)
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let m: i64 = digits
            .get(2..)
            .filter(|v| !v.is_empty())
            .map_or(Ok(0), |v| v.parse().map_err(|_| bad()))?;
        if h > 18 || m > 59 {
            return Err(bad());
        }
        (c, sign * (h * 3600 + m * 60) * 1000)
    } else {
        (rest, 0)
    };
    let mut fields = clock.split(':');
    let h: i64 = fields.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: i64 = fields.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let (sec, frac) = match fields.next() {
        Some(sf) => {
            let (sec, frac) = sf.split_once('.').unwrap_or((sf, ""));
            if !frac.bytes().all(|b| b.is_ascii_digit()) || !sec.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let sec: i64 = sec.parse().map_err(|_| bad())?;
            let ms = if frac.is_empty() {
                0
            } else {
                let digits: String = frac.chars().chain("000".chars()).take(3).collect();
                digits.parse::<i64>().map_err(|_| bad())?
            };
            (sec, ms)
        }
        None => (0, 0),
    };
    if fields.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return Err(bad());
    }
    Ok(day * 86_400_000 + ((h * 60 + m) * 60 + sec) * 1000 + frac - offset_ms)
}

fn percent_decode(s: &str) -> Option<String> {
    crate::codec::percent_decode(s, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01", "from"), Ok(0));
        assert_eq!(parse_time("1970-01-02T00:00:01Z", "from"), Ok(86_401_000));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00", "from"), Ok(0));
        assert_eq!(parse_time("1970-01-01T00:00:00.5Z", "from"), Ok(500));
        assert_eq!(
            parse_time("2026-11-22T08:00", "from"),
            parse_time("2026-11-22T08:00:00Z", "from")
        );
        assert_eq!(parse_day("2026-11-22"), Some(20_779));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-22T25:00Z",
            "2026-11-22X",
            "2026-11-22T08",
            // Offsets that used to overflow the arithmetic, and other junk in them.
            "2026-11-22T08:00+9999999999999999:00",
            "2026-11-22T08:00-99:00",
            "2026-11-22T08:00+01:99",
            "2026-11-22T08:00+1",
            "2026-11-22T08:00:00.+1Z",
            "2026-11-22T08:00:+1Z",
        ] {
            assert!(parse_time(bad, "from").is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("1970-01-01T05:30+0530", "from"),
            parse_time("1970-01-01T00:00Z", "from")
        );
        assert_eq!(iso8601(86_401_005), "1970-01-02T00:00:01.005Z");
    }

    #[test]
    fn queries() {
        let q = Query::parse("tenant=acme%2Beu&limit=5&from=2026-11-22").unwrap();
        assert_eq!(q.tenant.as_deref(), Some("acme+eu"));
        assert_eq!(q.limit, 5);
        assert_eq!(Query::parse("").unwrap().limit, DEFAULT_LIMIT);
        for bad in [
            "limit=1001",
            "limit=0",
            "limit=ten",
            "from=soon",
            "tenant=a&tenant=b",
            "color=blue",
            "from=2026-11-23&to=2026-11-22",
            "tenant=%ZZ",
        ] {
            assert!(Query::parse(bad).is_err(), "{bad}");
        }
    }
}
