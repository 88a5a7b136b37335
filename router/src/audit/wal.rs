//! The write-ahead log of audit records not yet sealed into a shard.
//!
//! Each open shard has a WAL beside it (`.part-….parquet.wal`). Every record is appended to it
//! (written to the file at once, so a killed process loses nothing the kernel has) and the
//! file is fsynced every flush interval (so a machine crash loses at most that interval).
//! Sealing the shard deletes its WAL. At start, [`read`] gives back the records of every WAL
//! left behind, which the writer seals into new shards.
//!
//! Frame: `len: u32 LE | crc32c(payload): u32 LE | payload`; the payload is a version byte
//! and the record's fields in [`Record`] order. A torn or corrupt tail ends the log: the
//! frames before it are kept.

use super::Record;

/// Frame payload version: 2 added `key_id`, 3 added `api`, `upstream_model`, the cache
/// counts and `stop_reason`, 4 `attempts`, `retry_reasons` and `trace_id`, 5 `limit_mode`
/// 6 `requested_model`, the budgets, `cost_cap_per_1k` and `policy_revision`
/// (older frames, left by an older router, are still read, without them).
const VERSION: u8 = 6;
/// Largest frame accepted when reading (a record is a few hundred bytes).
const MAX_FRAME: usize = 1 << 20;

/// Appends `r` as one frame.
pub(super) fn append(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(VERSION);
    i64(out, r.ts_ms);
    string(out, &r.request_id);
    opt_string(out, r.tenant.as_deref());
    opt_string(out, r.tenant_claimed.as_deref());
    opt_string(out, r.data_class.as_deref());
    opt_string(out, r.user_role.as_deref());
    opt_i64(out, r.rule_index.map(i64::from));
    opt_string(out, r.rule_name.as_deref());
    opt_string(out, r.endpoint_id.as_deref());
    opt_string(out, r.model.as_deref());
    i64(out, i64::from(r.status));
    i64(out, r.latency_ms);
    opt_i64(out, r.upstream_latency_ms);
    opt_i64(out, r.tokens_in);
    opt_i64(out, r.tokens_out);
    out.push(u8::from(r.tokens_estimated));
    opt_i64(out, r.cost_micros);
    out.push(u8::from(r.stream));
    opt_string(out, r.error.as_deref());
    i64(out, r.request_bytes);
    i64(out, r.response_bytes);
    opt_i64(out, r.upstream_status.map(i64::from));
    opt_string(out, r.fallback_from.as_deref());
    opt_string(out, r.key_id.as_deref());
    opt_string(out, r.api.as_deref());
    opt_string(out, r.upstream_model.as_deref());
    opt_i64(out, r.cache_read_tokens);
    opt_i64(out, r.cache_write_tokens);
    opt_string(out, r.stop_reason.as_deref());
    opt_i64(out, r.attempts.map(i64::from));
    opt_string(out, r.retry_reasons.as_deref());
    let trace_id = r.trace_id.map(|t| t.hex());
    opt_string(
        out,
        trace_id.as_ref().and_then(|h| std::str::from_utf8(h).ok()),
    );
    opt_string(out, r.limit_mode);
    opt_string(out, r.requested_model.as_deref());
    opt_i64(out, r.latency_budget_ms);
    opt_i64(out, r.cost_budget_micros);
    opt_i64(out, r.cost_cap_per_1k_micros);
    opt_i64(out, r.policy_revision);
    let payload = out.get(start + 8..).unwrap_or_default();
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = crc32c::crc32c(payload).to_le_bytes();
    if let Some(head) = out.get_mut(start..start + 8) {
        head[..4].copy_from_slice(&len);
        head[4..].copy_from_slice(&crc);
    }
}

/// Every whole, intact record at the start of `log`.
pub(super) fn read(log: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(head) = log.get(at..at + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME {
            break;
        }
        let Some(payload) = log.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match decode(payload) {
            Some(r) => records.push(r),
            None => break,
        }
        at += 8 + len;
    }
    records
}

fn i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            i64(out, v);
        }
        None => out.push(0),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            string(out, s);
        }
        None => out.push(0),
    }
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        Some(i64::from_le_bytes(b.try_into().ok()?))
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn opt_i64(&mut self) -> Option<Option<i64>> {
        Some(if self.flag()? {
            Some(self.i64()?)
        } else {
            None
        })
    }
    fn string(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        Some(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    fn opt_i32(&mut self) -> Option<Option<i32>> {
        match self.opt_i64()? {
            Some(v) => Some(Some(i32::try_from(v).ok()?)),
            None => Some(None),
        }
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut c = Cur { b: payload, i: 0 };
    let version = c.u8()?;
    if !(1..=VERSION).contains(&version) {
        return None;
    }
    let r = Record {
        ts_ms: c.i64()?,
        request_id: c.string()?,
        tenant: c.opt_string()?,
        tenant_claimed: c.opt_string()?,
        data_class: c.opt_string()?,
        user_role: c.opt_string()?,
        rule_index: c.opt_i32()?,
        rule_name: c.opt_string()?,
        endpoint_id: c.opt_string()?,
        model: c.opt_string()?,
        status: i32::try_from(c.i64()?).ok()?,
        latency_ms: c.i64()?,
        upstream_latency_ms: c.opt_i64()?,
        tokens_in: c.opt_i64()?,
        tokens_out: c.opt_i64()?,
        tokens_estimated: c.flag()?,
        cost_micros: c.opt_i64()?,
        stream: c.flag()?,
        error: c.opt_string()?,
        request_bytes: c.i64()?,
        response_bytes: c.i64()?,
        upstream_status: c.opt_i32()?,
        fallback_from: c.opt_string()?,
        key_id: if version >= 2 { c.opt_string()? } else { None },
        ..Record::default()
    };
    let r = if version >= 3 {
        Record {
            api: c.opt_string()?,
            upstream_model: c.opt_string()?,
            cache_read_tokens: c.opt_i64()?,
            cache_write_tokens: c.opt_i64()?,
            stop_reason: c.opt_string()?,
            ..r
        }
    } else {
        r
    };
    let r = if version >= 4 {
        Record {
            attempts: c.opt_i32()?,
            retry_reasons: c.opt_string()?,
            trace_id: match c.opt_string()? {
                Some(hex) => Some(crate::observe::trace::TraceId::parse(&hex)?),
                None => None,
            },
            ..r
        }
    } else {
        r
    };
    let r = if version >= 5 {
        Record {
            limit_mode: c.opt_string()?.as_deref().and_then(super::limit_mode),
            ..r
        }
    } else {
        r
    };
    let r = if version >= 6 {
        Record {
            requested_model: c.opt_string()?,
            latency_budget_ms: c.opt_i64()?,
            cost_budget_micros: c.opt_i64()?,
            cost_cap_per_1k_micros: c.opt_i64()?,
            policy_revision: c.opt_i64()?,
            ..r
        }
    } else {
        r
    };
    (c.i == payload.len()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: i64) -> Record {
        Record {
            ts_ms: 1_700_000_000_000 + i,
            request_id: format!("r{i}"),
            tenant: Some("acme".into()),
            rule_index: Some(3),
            status: 200,
            tokens_in: Some(10),
            cost_micros: Some(42),
            stream: i % 2 == 0,
            error: (i == 1).then(|| "boom \u{1f4a5}".into()),
            upstream_status: Some(200),
            key_id: (i == 2).then(|| "key_0123".into()),
            api: Some("messages".into()),
            upstream_model: Some("claude-x".into()),
            cache_read_tokens: Some(i),
            cache_write_tokens: (i == 3).then_some(7),
            stop_reason: Some("end_turn".into()),
            attempts: Some(2),
            retry_reasons: (i == 2).then(|| "gpu-a:overloaded".into()),
            trace_id: crate::observe::trace::TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736"),
            limit_mode: (i % 2 == 0).then_some("fleet"),
            requested_model: Some("auto".into()),
            latency_budget_ms: (i == 1).then_some(250),
            cost_budget_micros: (i == 2).then_some(10_000),
            cost_cap_per_1k_micros: (i == 2).then_some(2_050),
            policy_revision: Some(7),
            ..Record::default()
        }
    }

    #[test]
    fn frames_from_an_older_router_are_read() {
        let r = Record {
            key_id: None,
            api: None,
            upstream_model: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            stop_reason: None,
            attempts: None,
            retry_reasons: None,
            trace_id: None,
            limit_mode: None,
            requested_model: None,
            latency_budget_ms: None,
            cost_budget_micros: None,
            cost_cap_per_1k_micros: None,
            policy_revision: None,
            ..sample(1)
        };
        assert_eq!(read(&older(&r, 1, 15)), vec![r.clone()]);
        // Version 5: without the five fields of version 6.
        assert_eq!(read(&older(&r, 5, 5)), vec![r]);
    }

    /// `r`'s frame as version `version` wrote it: the current payload without its last
    /// `dropped` fields (all absent in `r`: one zero byte each).
    fn older(r: &Record, version: u8, dropped: usize) -> Vec<u8> {
        let mut frame = Vec::new();
        append(r, &mut frame);
        // A version 1 payload is the current one without its last fifteen fields
        // (`key_id`, the five of version 3, the three of version 4, the one of version 5
        // and the five of version 6).
        let mut payload = frame[8..frame.len() - dropped].to_vec();
        payload[0] = version;
        let mut old = Vec::new();
        old.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
        old.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        old.extend_from_slice(&payload);
        old
    }

    #[test]
    fn round_trip_and_torn_tails() {
        let mut log = Vec::new();
        for i in 0..5 {
            append(&sample(i), &mut log);
        }
        let all: Vec<Record> = (0..5).map(sample).collect();
        assert_eq!(read(&log), all);
        // Every truncation keeps exactly the whole frames before the cut.
        let mut ends = vec![0];
        let mut at = 0;
        while at < log.len() {
            let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
            at += 8 + len;
            ends.push(at);
        }
        for cut in 0..log.len() {
            let whole = ends.iter().filter(|&&e| e > 0 && e <= cut).count();
            assert_eq!(read(&log[..cut]).len(), whole, "cut at {cut}");
        }
        // A flipped bit ends the log at that frame.
        let mut bad = log.clone();
        bad[ends[2] + 12] ^= 1;
        assert_eq!(read(&bad), all[..2].to_vec());
    }
}
