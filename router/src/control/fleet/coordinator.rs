//! The coordinator: the side thread that owns the Redis connection, leases tenants' shares,
//! pushes daily totals and counts live hosts (see [`super`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Answer, Fleet, Need};
use crate::control::limits::{States, TenantState};
use crate::control::redis::{Conn, Value};

/// How often the coordinator looks at every tenant's lease.
const TICK: Duration = Duration::from_millis(50);
/// How often hosts say they are alive and budgets are pushed.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// A host not heard from for this long is no longer counted live.
const HOST_TTL_MS: i64 = 10_000;
/// A lease unused this long goes back to Redis.
const GIVE_BACK_AFTER_MS: i64 = 2_000;
/// How far ahead a lease is sized: the tenant's rate over this long.
const HORIZON_S: f64 = 0.25;
/// How often a down store is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_millis(250);
/// A failed round's lease calls are sent again (same op ids) if the store is back within this.
const RESEND_WITHIN: Duration = Duration::from_secs(5);

/// Starts the coordinator thread; `limited` lists the tenants of the table in force that
/// have limits (id, rpm, tpm, whether a daily budget is set), `state` gives a tenant's
/// counters (made on first use), `endpoints` the table's endpoints with their breakers (whose
/// rate-limit cooldowns the fleet shares).
pub fn start(
    fleet: &Arc<Fleet>,
    tls: Option<Arc<rustls::ClientConfig>>,
    limited: Limited,
    state: States,
    endpoints: Endpoints,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let fleet = Arc::clone(fleet);
    std::thread::Builder::new()
        .name("limits-fleet".into())
        .spawn(move || {
            Coordinator {
                fleet,
                tls,
                limited,
                state,
                endpoints,
                cooldowns: HashMap::new(),
                conn: None,
                last_try: None,
                last_sync: None,
                op: 0,
                rates: HashMap::new(),
                pending: None,
            }
            .run();
        })
}

/// The lease script: GCRA in "capacity" form on one key per limit, with a retried call
/// (same node and op id) answered from what the first one stored. Times in µs from Redis
/// `TIME`; `T` is µs per unit, `W` the burst window (a minute).
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local node, op, W = ARGV[1], ARGV[2], tonumber(ARGV[3])
local last = redis.call('HGET', KEYS[3], node)
if last then
  local parts = {}
  for p in string.gmatch(last, '%S+') do parts[#parts + 1] = p end
  if parts[1] == op then
    return {tonumber(parts[2]), tonumber(parts[3]), tonumber(parts[4]), tonumber(parts[5])}
  end
end
local function lease(key, T, want, back, debt)
  if T <= 0 then return 0, 0 end
  local tat = tonumber(redis.call('GET', key) or now) or now
  tat = math.max(tat - back * T, now) + debt * T
  local avail = math.floor((now + W - tat) / T)
  local grant = math.min(want, math.max(avail, 0))
  tat = tat + grant * T
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000) + 1000))
  local retry = 0
  if grant < want then retry = math.max(0, tat + T - W - now) end
  return grant, retry
end
local rg, rr = lease(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), 0)
local tg, tr = lease(KEYS[2], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]))
local out = {rg, string.format('%.0f', rr), tg, string.format('%.0f', tr)}
redis.call('HSET', KEYS[3], node, op .. ' ' .. table.concat(out, ' '))
redis.call('PEXPIRE', KEYS[3], 600000)
return {rg, tonumber(out[2]), tg, tonumber(out[4])}
";

/// The budget script: this node's absolute totals for the day, merged by `max` into its
/// fields, the difference added to the fleet's totals; returns the fleet's totals and the
/// node's stored ones.
const DAY: &str = r"
local node, day = ARGV[1], ARGV[2]
local function merge(kind, v)
  local mine = day .. ':' .. node .. ':' .. kind
  local old = tonumber(redis.call('HGET', KEYS[1], mine) or '0') or 0
  if v > old then
    redis.call('HSET', KEYS[1], mine, string.format('%.0f', v))
    redis.call('HINCRBY', KEYS[1], day .. ':' .. kind, string.format('%.0f', v - old))
    return v
  end
  return old
end
local tok = merge('tok', tonumber(ARGV[3]))
local usd = merge('usd', tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
local total_tok = redis.call('HGET', KEYS[1], day .. ':tok') or '0'
local total_usd = redis.call('HGET', KEYS[1], day .. ':usd') or '0'
return {total_tok, total_usd, string.format('%.0f', tok), string.format('%.0f', usd)}
";

/// The rate of one tenant's use, for lease sizes.
#[derive(Debug, Default)]
struct Rate {
    at: Option<Instant>,
    admitted: u64,
    tokens: u64,
    /// Requests and tokens per second (exponentially weighted).
    rps: f64,
    tps: f64,
}

/// One lease call: what was asked and for whom.
struct Call {
    tenant: String,
    state: Arc<TenantState>,
    op: u64,
    rpm: u64,
    tpm: u64,
    want_r: i64,
    back_r: i64,
    want_t: i64,
    back_t: i64,
    debt_t: i64,
    waiters: Vec<futures_channel::oneshot::Sender<Answer>>,
}

/// The tenants with limits in the table in force: id, rpm, tpm, whether a daily budget is set.
pub type Limited = Arc<dyn Fn() -> Vec<(String, u64, u64, bool)> + Send + Sync>;
/// The table's endpoints with their breakers.
pub type Endpoints =
    Arc<dyn Fn() -> Vec<(String, Arc<crate::control::breaker::Breaker>)> + Send + Sync>;

struct Coordinator {
    fleet: Arc<Fleet>,
    tls: Option<Arc<rustls::ClientConfig>>,
    limited: Limited,
    state: States,
    endpoints: Endpoints,
    /// The end of each endpoint's cooldown as Redis last had it (ms since the epoch).
    cooldowns: HashMap<String, i64>,
    conn: Option<Conn>,
    last_try: Option<Instant>,
    last_sync: Option<Instant>,
    op: u64,
    rates: HashMap<String, Rate>,
    /// The calls of a round that failed, to send again (same op ids) when the store is back.
    pending: Option<(Instant, Vec<Call>)>,
}

impl Coordinator {
    fn run(mut self) {
        while !self.fleet.stopping.load(Ordering::Relaxed) {
            let needs = {
                let guard = self
                    .fleet
                    .needs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let (mut guard, _) = self
                    .fleet
                    .wake
                    .wait_timeout_while(guard, TICK, |n| {
                        n.is_empty() && !self.fleet.stopping.load(Ordering::Relaxed)
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::take(&mut *guard)
            };
            self.round(needs);
        }
    }

    fn key(&self, tenant: &str, what: &str) -> Vec<u8> {
        // The hash tag keeps a tenant's keys in one Redis Cluster slot.
        format!("{}:{{t:{tenant}}}:{what}", self.fleet.config.prefix).into_bytes()
    }

    fn connected(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if self.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return false;
        }
        self.last_try = Some(Instant::now());
        match Conn::connect(
            &self.fleet.config.redis,
            self.tls.clone(),
            CONNECT_TIMEOUT,
            IO_TIMEOUT,
        ) {
            Ok(c) => {
                self.conn = Some(c);
                true
            }
            Err(why) => {
                self.failed(&why);
                false
            }
        }
    }

    fn failed(&mut self, why: &str) {
        self.conn = None;
        self.fleet
            .stats
            .store_errors
            .fetch_add(1, Ordering::Relaxed);
        self.fleet.up.store(false, Ordering::Relaxed);
        if self.fleet.logged.swap(2, Ordering::Relaxed) != 2 {
            tracing::error!(
                redis = %self.fleet.config.redis,
                mode = self.fleet.config.on_down.as_str(),
                "the limits store is unreachable; limits are enforced per host ({why})"
            );
        }
    }

    fn recovered(&self) {
        self.fleet.up.store(true, Ordering::Relaxed);
        if self.fleet.logged.swap(1, Ordering::Relaxed) != 1 {
            tracing::info!(
                redis = %self.fleet.config.redis,
                node = self.fleet.config.node,
                "the limits store is reachable; tenant limits hold fleet-wide"
            );
        }
    }

    fn round(&mut self, needs: Vec<Need>) {
        if !self.connected() {
            for n in needs {
                let _ = n.reply.send(Answer::Unavailable);
            }
            return;
        }
        let now_ms = crate::clock::now_ms();
        let mut calls = match self.pending.take() {
            Some((at, calls)) if at.elapsed() < RESEND_WITHIN => calls,
            _ => Vec::new(),
        };
        let resent = calls.len();
        self.plan(needs, now_ms, &mut calls);
        let sync = self.last_sync.is_none_or(|t| t.elapsed() >= SYNC_EVERY);
        let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
        for c in &calls {
            commands.push(self.lease_command(c));
        }
        let mut day_states = Vec::new();
        let endpoints = if sync { (self.endpoints)() } else { Vec::new() };
        if sync {
            let node = self.fleet.config.node.clone();
            commands.push(vec![
                b"ZADD".to_vec(),
                self.host_key(),
                now_ms.to_string().into_bytes(),
                node.into_bytes(),
            ]);
            commands.push(vec![
                b"ZREMRANGEBYSCORE".to_vec(),
                self.host_key(),
                b"-inf".to_vec(),
                (now_ms - HOST_TTL_MS).to_string().into_bytes(),
            ]);
            commands.push(vec![b"ZCARD".to_vec(), self.host_key()]);
            for (tenant, _, _, budgets) in (self.limited)() {
                if budgets {
                    let state = (self.state)(&tenant);
                    let (day, tokens, micros) = state.day_totals(now_ms);
                    commands.push(self.day_command(&tenant, day, tokens, micros));
                    day_states.push((state, day));
                }
            }
            self.cooldown_commands(&endpoints, now_ms, &mut commands);
        }
        if commands.is_empty() {
            return;
        }
        let started = Instant::now();
        let replies = self.send(&commands);
        let replies = match replies {
            Ok(r) => r,
            Err(why) => {
                self.failed(&why);
                for c in &mut calls {
                    for w in c.waiters.drain(..) {
                        let _ = w.send(Answer::Unavailable);
                    }
                }
                self.pending = Some((Instant::now(), calls));
                return;
            }
        };
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.fleet
            .stats
            .round_trip_us
            .fetch_add(took, Ordering::Relaxed);
        self.fleet.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        self.recovered();
        let _ = resent;
        let mut replies = replies.into_iter();
        for c in calls {
            let reply = replies.next().unwrap_or(Value::Nil);
            self.apply(c, &reply, now_ms);
        }
        if sync {
            self.last_sync = Some(Instant::now());
            let _ = replies.next();
            let _ = replies.next();
            if let Some(n) = replies.next().and_then(|v| v.int()) {
                self.fleet
                    .hosts
                    .store(u64::try_from(n).unwrap_or(1).max(1), Ordering::Relaxed);
            }
            for (state, day) in day_states {
                if let Some(Value::Array(v)) = replies.next() {
                    let n = |i: usize| {
                        v.get(i)
                            .and_then(Value::int)
                            .and_then(|x| u64::try_from(x).ok())
                            .unwrap_or(0)
                    };
                    state.fleet_day(day, (n(0), n(1)), (n(2), n(3)));
                }
            }
            self.apply_cooldowns(&endpoints, replies, now_ms);
        }
    }

    fn cooldown_key(&self, endpoint: &str) -> Vec<u8> {
        // One hash tag for all: the read is one MGET, valid on Redis Cluster.
        format!("{}:{{cooldowns}}:{endpoint}", self.fleet.config.prefix).into_bytes()
    }

    /// An upstream's rate-limit cooldown learned here is written for the others (a provider's
    /// quota is per key, shared by every host); then every endpoint's is read.
    fn cooldown_commands(
        &self,
        endpoints: &[(String, Arc<crate::control::breaker::Breaker>)],
        now_ms: i64,
        commands: &mut Vec<Vec<Vec<u8>>>,
    ) {
        if endpoints.is_empty() {
            return;
        }
        for (id, breaker) in endpoints {
            let until = breaker.cooling_until();
            if until > now_ms && until > self.cooldowns.get(id).copied().unwrap_or(0) {
                commands.push(vec![
                    b"SET".to_vec(),
                    self.cooldown_key(id),
                    until.to_string().into_bytes(),
                    b"PX".to_vec(),
                    (until - now_ms).to_string().into_bytes(),
                ]);
            }
        }
        let mut get = vec![b"MGET".to_vec()];
        get.extend(endpoints.iter().map(|(id, _)| self.cooldown_key(id)));
        commands.push(get);
    }

    fn apply_cooldowns(
        &mut self,
        endpoints: &[(String, Arc<crate::control::breaker::Breaker>)],
        replies: impl Iterator<Item = Value>,
        now_ms: i64,
    ) {
        let Some(Value::Array(values)) = replies.last() else {
            return;
        };
        for ((id, breaker), v) in endpoints.iter().zip(values) {
            let until = v.int().unwrap_or(0);
            if until > now_ms {
                breaker.cool_until(now_ms, until);
            }
            self.cooldowns.insert(id.clone(), until);
        }
    }

    fn host_key(&self) -> Vec<u8> {
        format!("{}:hosts", self.fleet.config.prefix).into_bytes()
    }

    fn send(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, String> {
        let conn = self.conn.as_mut().ok_or("not connected")?;
        let mut replies = conn.pipeline(commands)?;
        // A script the server does not hold (a restart, `SCRIPT FLUSH`): sent whole once.
        if replies
            .iter()
            .any(|r| matches!(r, Value::Error(e) if e.starts_with("NOSCRIPT")))
        {
            let again: Vec<Vec<Vec<u8>>> = commands
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.first().is_some_and(|n| n == b"EVALSHA") {
                        let script = c.get(1).map(|sha| script_of(sha));
                        if let (Some(script), Some(sha)) = (script, c.get_mut(1)) {
                            *sha = script.as_bytes().to_vec();
                        }
                        if let Some(name) = c.first_mut() {
                            *name = b"EVAL".to_vec();
                        }
                    }
                    c
                })
                .collect();
            replies = conn.pipeline(&again)?;
        }
        if let Some(Value::Error(e)) = replies.iter().find(|r| matches!(r, Value::Error(_))) {
            return Err(format!("Redis refused a command: {e}"));
        }
        Ok(replies)
    }

    /// Decides the lease calls of this round: tenants a core is waiting for, tenants whose
    /// lease is below half its size or in debt, and unused leases to give back.
    fn plan(&mut self, needs: Vec<Need>, now_ms: i64, calls: &mut Vec<Call>) {
        let hosts = self.fleet.hosts();
        let mut waiting: HashMap<String, (Arc<TenantState>, u64, u64, Vec<_>)> = HashMap::new();
        for n in needs {
            waiting
                .entry(n.tenant)
                .or_insert_with(|| (n.state, n.rpm, n.tpm, Vec::new()))
                .3
                .push(n.reply);
        }
        for (tenant, rpm, tpm, _) in (self.limited)() {
            if calls.iter().any(|c| c.tenant == tenant) {
                continue;
            }
            let state = (self.state)(&tenant);
            let waiters = waiting.remove(&tenant).map(|w| w.3).unwrap_or_default();
            if rpm == 0 && tpm == 0 {
                for w in waiters {
                    let _ = w.send(Answer::Granted);
                }
                continue;
            }
            let f = &state.fleet;
            let rate = self.rates.entry(tenant.clone()).or_default();
            rate.see(
                f.admitted.load(Ordering::Relaxed),
                f.tokens.load(Ordering::Relaxed),
            );
            let size = |per_s: f64, limit: u64| -> i64 {
                let cap = (limit / (4 * hosts)).max(1);
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "a small positive rate, capped"
                )]
                let want = ((per_s * HORIZON_S).ceil() as u64).clamp(1, cap);
                i64::try_from(want).unwrap_or(1)
            };
            let idle = now_ms - f.last_used_ms.load(Ordering::Relaxed) > GIVE_BACK_AFTER_MS;
            let (mut want_r, mut back_r) = (0, 0);
            if rpm > 0 {
                let lease = f.rpm_lease.load(Ordering::Relaxed);
                let size = size(rate.rps, rpm);
                if idle && waiters.is_empty() {
                    back_r = f.rpm_lease.swap(0, Ordering::AcqRel).max(0);
                } else if lease < (size / 2).max(1) || !waiters.is_empty() {
                    // At least one request for each core waiting now (at start the rate is
                    // unknown and the size 1).
                    let cap = i64::try_from((rpm / (4 * hosts)).max(1)).unwrap_or(1);
                    let waiting = i64::try_from(waiters.len()).unwrap_or(i64::MAX).min(cap);
                    want_r = (size - lease.max(0)).max(waiting).max(1);
                }
            }
            let (mut want_t, mut back_t, mut debt_t) = (0, 0, 0);
            if tpm > 0 {
                let lease = f.tpm_lease.load(Ordering::Relaxed);
                let size = size(rate.tps, tpm);
                if lease < 0 {
                    debt_t = -lease;
                }
                if idle && waiters.is_empty() && lease > 0 {
                    back_t = f
                        .tpm_lease
                        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| Some(v.min(0)))
                        .unwrap_or(0)
                        .max(0);
                } else if lease < (size / 2).max(1) || !waiters.is_empty() {
                    want_t = (size - lease.max(0)).max(1);
                }
            }
            if want_r == 0 && back_r == 0 && want_t == 0 && back_t == 0 && debt_t == 0 {
                for w in waiters {
                    let _ = w.send(Answer::Granted);
                }
                continue;
            }
            if debt_t > 0 {
                // Charged in this call: the lease no longer owes it.
                f.tpm_lease.fetch_add(debt_t, Ordering::AcqRel);
            }
            self.op += 1;
            calls.push(Call {
                tenant,
                state,
                op: self.op,
                rpm,
                tpm,
                want_r,
                back_r,
                want_t,
                back_t,
                debt_t,
                waiters,
            });
        }
        // Waiters of tenants no longer limited (the table changed): let them through.
        for (_, (_, _, _, waiters)) in waiting {
            for w in waiters {
                let _ = w.send(Answer::Granted);
            }
        }
    }

    fn lease_command(&self, c: &Call) -> Vec<Vec<u8>> {
        let per_unit = |limit: u64| -> String {
            if limit == 0 {
                "0".to_owned()
            } else {
                format!("{:.6}", 60_000_000.0 / (limit as f64))
            }
        };
        let n = |v: i64| v.to_string().into_bytes();
        vec![
            b"EVALSHA".to_vec(),
            sha1_hex(LEASE).as_bytes().to_vec(),
            b"3".to_vec(),
            self.key(&c.tenant, "rpm"),
            self.key(&c.tenant, "tpm"),
            self.key(&c.tenant, "ops"),
            self.fleet.config.node.clone().into_bytes(),
            c.op.to_string().into_bytes(),
            b"60000000".to_vec(),
            per_unit(c.rpm).into_bytes(),
            n(c.want_r),
            n(c.back_r),
            per_unit(c.tpm).into_bytes(),
            n(c.want_t),
            n(c.back_t),
            n(c.debt_t),
        ]
    }

    fn day_command(&self, tenant: &str, day: i64, tokens: u64, micros: u64) -> Vec<Vec<u8>> {
        vec![
            b"EVALSHA".to_vec(),
            sha1_hex(DAY).as_bytes().to_vec(),
            b"1".to_vec(),
            self.key(tenant, "day"),
            self.fleet.config.node.clone().into_bytes(),
            day.to_string().into_bytes(),
            tokens.to_string().into_bytes(),
            micros.to_string().into_bytes(),
        ]
    }

    fn apply(&self, c: Call, reply: &Value, now_ms: i64) {
        self.fleet.stats.lease_calls.fetch_add(1, Ordering::Relaxed);
        let Value::Array(v) = reply else {
            for w in c.waiters {
                let _ = w.send(Answer::Unavailable);
            }
            return;
        };
        let n = |i: usize| v.get(i).and_then(Value::int).unwrap_or(0);
        let (grant_r, retry_r, grant_t, retry_t) = (n(0), n(1), n(2), n(3));
        let f = &c.state.fleet;
        if grant_r > 0 {
            f.rpm_lease.fetch_add(grant_r, Ordering::AcqRel);
        }
        if grant_t > 0 {
            f.tpm_lease.fetch_add(grant_t, Ordering::AcqRel);
        }
        let dry_r = c.rpm > 0 && f.rpm_lease.load(Ordering::Relaxed) < 1;
        let dry_t = c.tpm > 0 && f.tpm_lease.load(Ordering::Relaxed) <= 0;
        let answer = if dry_r || dry_t {
            let retry_us = if dry_r { retry_r } else { retry_t }.max(retry_r.max(retry_t));
            let retry_ms = (retry_us / 1000).max(1);
            f.empty_until_ms.store(now_ms + retry_ms, Ordering::Relaxed);
            Answer::Refused { retry_ms }
        } else {
            f.empty_until_ms.store(0, Ordering::Relaxed);
            Answer::Granted
        };
        for w in c.waiters {
            let _ = w.send(answer);
        }
    }
}

impl Rate {
    fn see(&mut self, admitted: u64, tokens: u64) {
        let now = Instant::now();
        if let Some(at) = self.at {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                #[allow(clippy::cast_precision_loss, reason = "rates")]
                let (r, t) = (
                    admitted.saturating_sub(self.admitted) as f64 / dt,
                    tokens.saturating_sub(self.tokens) as f64 / dt,
                );
                self.rps = 0.7 * self.rps + 0.3 * r;
                self.tps = 0.7 * self.tps + 0.3 * t;
            }
        }
        self.at = Some(now);
        self.admitted = admitted;
        self.tokens = tokens;
    }
}

fn script_of(sha: &[u8]) -> &'static str {
    if sha == sha1_hex(LEASE).as_bytes() {
        LEASE
    } else {
        DAY
    }
}

/// The SHA-1 of a script, as `EVALSHA` names it (worked out once per script).
fn sha1_hex(script: &str) -> &'static str {
    static LEASE_SHA: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::codec::hex(&sha1(LEASE.as_bytes())));
    static DAY_SHA: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::codec::hex(&sha1(DAY.as_bytes())));
    if std::ptr::eq(script, LEASE) {
        &LEASE_SHA
    } else {
        &DAY_SHA
    }
}

/// SHA-1, for script names only (what `EVALSHA` takes).
fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(
            crate::codec::hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            crate::codec::hex(&sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(
            crate::codec::hex(&sha1(&long)),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }
}
