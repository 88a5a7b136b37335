//! `policyc replay`: a policy judged against recorded traffic.
//!
//! Every audit record in the window is a request whose routing attributes were recorded
//! (tenant, data class, role, the model as asked, the latency budget, `cost_cap_per_1k` as
//! evaluated). Each is evaluated by the table evaluator the router uses, under the new
//! table (and the old one, with `--old`; else the recorded decision is the baseline), and
//! the two routes compared: counts by (old → new) route and by tenant, newly denied and
//! newly allowed requests, requests whose pinned model the new route does not serve, and
//! the cost at the new endpoints' prices from the recorded tokens. Records are streamed a
//! row group at a time; decisions are memoized by attribute tuple, so memory is bounded by
//! the number of distinct tuples and route classes, not by the number of records.

mod condition;
mod report;
pub mod source;

use std::collections::BTreeMap;

use parquet::data_type::ByteArray;
use serde::Serialize;
use switchyard_table::fx::FxMap as HashMap;
use switchyard_table::{Action, Field, Micros, Request, Table};

pub use condition::{Condition, METRICS, Metric};
pub use report::rules as finding_rules;
pub use source::{Filter, Sink, Source};

/// Example request ids kept per changed class.
const EXAMPLES: usize = 3;
/// Attribute tuples whose decisions are remembered (about 100 bytes each).
const MEMO_MAX: usize = 1 << 20;

/// Where a request goes under one policy: [`DENY`], or an endpoint id's number in the
/// [`Names`] (with a balanced `route_to`, the set's first member; a recorded endpoint that
/// is a member of the new set counts as unchanged).
type Route = u32;

/// The route of a denied request.
const DENY: Route = 0;

/// Endpoint ids numbered (0 is `deny`), so routes are compared and counted without strings.
#[derive(Debug)]
struct Names {
    names: Vec<String>,
    numbers: HashMap<Vec<u8>, u32>,
}

impl Names {
    fn new() -> Self {
        Self {
            names: vec!["deny".to_owned()],
            numbers: HashMap::default(),
        }
    }

    fn number(&mut self, name: &[u8]) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(String::from_utf8_lossy(name).into_owned());
        self.numbers.insert(name.to_vec(), n);
        n
    }

    fn name(&self, route: Route) -> &str {
        self.names.get(route as usize).map_or("?", String::as_str)
    }
}

/// A table's decision for one attribute tuple.
#[derive(Clone, Debug)]
struct Decided {
    /// The deciding rule's index in its table (the default's is the rule count).
    rule: u32,
    deny: bool,
    /// The endpoints of the rule's route set (the primary first).
    set: Vec<Route>,
    /// A pinned model that neither the set nor the fallbacks serve, or the tenant's
    /// allowlist refuses: the router would refuse the request.
    unserved: bool,
}

/// One table, with its decisions memoized by attribute tuple — the attributes it reads,
/// plus the tenant and the model (which the allowlist and the served-model check read).
#[derive(Debug)]
struct Judge<'t> {
    table: &'t Table<'t>,
    memo: HashMap<Vec<u8>, Decided>,
    reads: Reads,
    key: Vec<u8>,
}

/// Which optional attributes a table's rules read.
#[derive(Clone, Copy, Debug)]
struct Reads {
    data_class: bool,
    user_role: bool,
    latency: bool,
    cost: bool,
}

impl Reads {
    fn of(table: &Table<'_>) -> Self {
        Self {
            data_class: table.reads(Field::DataClass),
            user_role: table.reads(Field::UserRole),
            latency: table.reads(Field::LatencyBudgetMs),
            cost: table.reads(Field::CostCapPer1k),
        }
    }

    /// What `new` or `old` reads.
    fn either(new: &Table<'_>, old: Option<&Table<'_>>) -> Self {
        let (a, b) = (Self::of(new), old.map_or(Self::of(new), Self::of));
        Self {
            data_class: a.data_class || b.data_class,
            user_role: a.user_role || b.user_role,
            latency: a.latency || b.latency,
            cost: a.cost || b.cost,
        }
    }
}

impl<'t> Judge<'t> {
    fn new(table: &'t Table<'t>) -> Self {
        Self {
            table,
            memo: HashMap::default(),
            reads: Reads::of(table),
            key: Vec::new(),
        }
    }

    fn decide(&mut self, attrs: &Attrs<'_>, names: &mut Names) -> &Decided {
        attrs.key(self.reads, &mut self.key);
        let key = self.key.as_slice();
        if !self.memo.contains_key(key) {
            if self.memo.len() >= MEMO_MAX {
                // Bounded memory whatever the traffic's variety: start over.
                self.memo.clear();
            }
            let d = self.evaluate(attrs, names);
            self.memo.insert(key.to_vec(), d);
        }
        &self.memo[self.key.as_slice()]
    }

    fn evaluate(&self, a: &Attrs<'_>, names: &mut Names) -> Decided {
        let t = self.table;
        let req = Request {
            tenant: a.tenant,
            data_class: a.data_class,
            user_role: a.user_role,
            model: Some(a.model),
            latency_budget_ms: a.latency_budget_ms.and_then(|v| u64::try_from(v).ok()),
            cost_cap_per_1k: a
                .cost_cap_per_1k
                .and_then(|v| u64::try_from(v).ok())
                .map(Micros),
        };
        let rule = t.decided(t.evaluate(&req));
        let deny = rule.action() == Action::Deny;
        let set: Vec<Route> = rule
            .route_set()
            .map(|e| names.number(e.id().as_bytes()))
            .collect();
        let model = std::str::from_utf8(a.model).unwrap_or("");
        let pinned = model != "auto";
        let served = !pinned
            || rule
                .route_set()
                .chain(rule.fallback())
                .any(|e| e.serves(model));
        let allowed = !pinned
            || a.tenant
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|id| self.table.tenant_by_id(id))
                .is_none_or(|tenant| tenant.allows(model));
        Decided {
            rule: rule.index(),
            deny,
            set,
            unserved: !(deny || served && allowed),
        }
    }
}

/// The attributes a rule can read, as recorded.
#[derive(Debug)]
struct Attrs<'a> {
    tenant: Option<&'a [u8]>,
    data_class: Option<&'a [u8]>,
    user_role: Option<&'a [u8]>,
    model: &'a [u8],
    latency_budget_ms: Option<i64>,
    cost_cap_per_1k: Option<i64>,
}

impl Attrs<'_> {
    /// The memo key: the attributes `reads` names, the tenant and the model,
    /// length-prefixed.
    fn key(&self, reads: Reads, out: &mut Vec<u8>) {
        out.clear();
        let unread = |read: bool, v| if read { v } else { None };
        for v in [
            self.tenant,
            unread(reads.data_class, self.data_class),
            unread(reads.user_role, self.user_role),
            Some(self.model),
        ] {
            match v {
                Some(v) => {
                    out.extend_from_slice(
                        &u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes(),
                    );
                    out.extend_from_slice(v);
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        for v in [
            self.latency_budget_ms.filter(|_| reads.latency),
            self.cost_cap_per_1k.filter(|_| reads.cost),
        ] {
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                None => out.push(0),
            }
        }
    }
}

/// Why records were not replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// Written before the audit kept every routing attribute (no `requested_model` or
    /// `policy_revision` column).
    OlderShard,
    /// Refused before the table was consulted (bad request, authentication, limits).
    RefusedBeforeRouting,
    /// Decided, but no endpoint was tried and the policy did not deny it (every candidate
    /// over the cost budget, a pinned model no candidate serves, …): no recorded route.
    NotRouted,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Self::OlderShard => "older_shard_without_replay_columns",
            Self::RefusedBeforeRouting => "refused_before_routing",
            Self::NotRouted => "decided_without_a_route",
        }
    }
}

/// A route class: how many, and a few examples.
#[derive(Debug, Default)]
struct Class {
    count: u64,
    examples: Vec<String>,
}

impl Class {
    /// Counts a record; with `keep`, while the class has fewer than [`EXAMPLES`], reserves
    /// an example slot for its request id and returns the slot.
    fn add(&mut self, keep: bool) -> Option<usize> {
        self.count += 1;
        (keep && self.examples.len() < EXAMPLES).then(|| {
            self.examples.push(String::new());
            self.examples.len() - 1
        })
    }
}

/// Which class an example slot belongs to.
#[derive(Clone, Copy, Debug)]
enum ClassRef {
    Route(Route, Route),
    Change(Route, Route, u32),
    Denied,
    Allowed,
    Unserved,
    UnservedRule(u32),
}

/// An example slot waiting for its row's request id.
#[derive(Clone, Copy, Debug)]
struct Pending {
    row: usize,
    class: ClassRef,
    slot: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct TenantRow {
    pub tenant: String,
    pub replayed: u64,
    pub rerouted: u64,
    pub denied: u64,
    pub allowed: u64,
}

/// The replay's result.
#[derive(Debug, Default)]
pub struct Report {
    /// Records in the window (and tenant).
    pub records: u64,
    pub replayed: u64,
    pub skipped: BTreeMap<Skip, u64>,
    routes: HashMap<(Route, Route), Class>,
    /// Changed records by (old route, new route, the new table's deciding rule).
    changes: HashMap<(Route, Route, u32), Class>,
    /// Records whose pinned model is unserved, by the new table's deciding rule.
    unserved_by_rule: HashMap<u32, Class>,
    names: Option<Names>,
    /// How the report names the new table's rules it mentions.
    rule_labels: HashMap<u32, String>,
    denied: Class,
    allowed: Class,
    unserved: Class,
    tenants: Vec<TenantRow>,
    tenant_index: HashMap<Vec<u8>, u32>,
    pub cost_recorded: i128,
    pub cost_new: i128,
    pub shards: u64,
    pub row_groups: u64,
    pub row_groups_pruned: u64,
    /// Distinct attribute tuples evaluated.
    pub tuples: u64,
}

impl Report {
    pub fn rerouted(&self) -> u64 {
        self.routes
            .iter()
            .filter(|((from, to), _)| from != to && *from != DENY && *to != DENY)
            .map(|(_, c)| c.count)
            .sum()
    }

    /// Rerouted records in hundredths of a percent of those replayed, rounded half up: the
    /// figure printed (two decimals) is the figure `--fail-if` compares.
    pub fn rerouted_hundredths(&self) -> u64 {
        if self.replayed == 0 {
            return 0;
        }
        let n = u128::from(self.rerouted()) * 10_000;
        let d = u128::from(self.replayed);
        u64::try_from((n + d / 2) / d).unwrap_or(u64::MAX)
    }

    pub fn rerouted_pct(&self) -> f64 {
        self.rerouted_hundredths() as f64 / 100.0
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// A metric `--fail-if` can name.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        Some(match name {
            "records" => Metric::Count(self.records),
            "replayed" => Metric::Count(self.replayed),
            "skipped" => Metric::Count(self.skipped_total()),
            "rerouted" => Metric::Count(self.rerouted()),
            "rerouted_pct" => Metric::Hundredths(self.rerouted_hundredths()),
            "denied" => Metric::Count(self.denied.count),
            "allowed" => Metric::Count(self.allowed.count),
            "model_unserved" => Metric::Count(self.unserved.count),
            "cost_usd_recorded" => Metric::Usd(self.cost_recorded),
            "cost_usd_new" => Metric::Usd(self.cost_new),
            "cost_delta_usd" => Metric::Usd(self.cost_new - self.cost_recorded),
            _ => return None,
        })
    }
}

/// What one record's attributes decide: its old and new routes, and what the report needs
/// about them. `None` in the cache: decided without a route (skipped).
#[derive(Clone, Copy, Debug)]
struct Outcome {
    from: Route,
    to: Route,
    /// The new table's deciding rule.
    rule: u32,
    unserved: bool,
    /// The record's row in `Report::tenants`.
    tenant: u32,
    /// The new route's prices per 1k tokens (in, out) in `Replay::prices`, when it is
    /// served there; [`NO_PRICE`] otherwise. (An index keeps the cached outcome small.)
    price: u32,
}

/// A record's attribute values by identity: each string's address with its length in the
/// top bits (0 when absent), each number with a presence bit, and whether it was refused.
/// Within one row group every value lives in the column buffers until the group is done, so
/// equal identities are equal values; a dictionary-encoded column (the router's are) hands
/// every occurrence of a value the same bytes, so records with the same attributes share a
/// key without their bytes being compared or hashed. Fields, not an array: compared inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Identity {
    values: (u64, u64, u64, u64, u64),
    latency: u64,
    cost: u64,
    flags: u8,
}

/// Addresses below 2^47 (user space on the 64-bit systems we run on) and lengths below
/// 2^17 pack into one word; anything else is not cached.
const ADDRESS_BITS: u32 = 47;

fn pack(v: Option<&[u8]>) -> Option<u64> {
    let Some(v) = v else { return Some(0) };
    let address = v.as_ptr() as usize as u64;
    let len = v.len() as u64;
    (address >> ADDRESS_BITS == 0 && len >> (64 - ADDRESS_BITS) == 0)
        .then_some(address | len << ADDRESS_BITS)
}

fn identity(
    values: [Option<&[u8]>; 5],
    numbers: [Option<i64>; 2],
    refused: bool,
) -> Option<Identity> {
    let [a, b, c, d, e] = values;
    let number = |n: Option<i64>| u64::from_ne_bytes(n.unwrap_or(0).to_ne_bytes());
    Some(Identity {
        values: (pack(a)?, pack(b)?, pack(c)?, pack(d)?, pack(e)?),
        latency: number(numbers[0]),
        cost: number(numbers[1]),
        flags: u8::from(numbers[0].is_some())
            | u8::from(numbers[1].is_some()) << 1
            | u8::from(refused) << 2,
    })
}

/// The replay: `new` judged against `old` (or, without it, the recorded decisions).
#[derive(Debug)]
pub struct Replay<'t> {
    new: Judge<'t>,
    old: Option<Judge<'t>>,
    new_table: &'t Table<'t>,
    filter: Filter,
    names: Names,
    /// Example slots of the current row group waiting for its request ids.
    pending: Vec<Pending>,
    /// Distinct (input, output) prices per 1k tokens of the new routes.
    prices: Vec<(Micros, Micros)>,
    /// Outcomes by attribute identity, for the current row group only.
    seen: HashMap<Identity, Option<Outcome>>,
    /// The optional attributes either table reads (the others are left out of identities).
    reads: Reads,
    pub report: Report,
}

fn text(col: Option<&[Option<ByteArray>]>, row: usize) -> Option<&[u8]> {
    col.and_then(|c| c.get(row))
        .and_then(Option::as_ref)
        .map(ByteArray::data)
}

fn int(col: Option<&[Option<i64>]>, row: usize) -> Option<i64> {
    col.and_then(|c| c.get(row)).copied().flatten()
}

/// The price of an outcome with no cost at the new route.
const NO_PRICE: u32 = u32::MAX;

/// Micro-dollars for `tokens_in`/`tokens_out` at per-1k prices, rounded as the router rounds.
fn cost(tokens_in: i64, tokens_out: i64, input: Micros, output: Micros) -> i128 {
    let micros = i128::from(tokens_in.max(0)) * i128::from(input.0)
        + i128::from(tokens_out.max(0)) * i128::from(output.0);
    (micros + 500) / 1000
}

impl<'t> Replay<'t> {
    pub fn new(new: &'t Table<'t>, old: Option<&'t Table<'t>>, filter: Filter) -> Self {
        Self {
            new: Judge::new(new),
            old: old.map(Judge::new),
            new_table: new,
            filter,
            names: Names::new(),
            seen: HashMap::default(),
            pending: Vec::new(),
            prices: Vec::new(),
            reads: Reads::either(new, old),
            report: Report::default(),
        }
    }

    /// Replays one row group; `true` when example slots wait for its request ids.
    fn replay_batch(&mut self, b: &source::Batch<'_>) -> bool {
        let older = b.requested_model.is_none() || b.policy_revision.is_none();
        for row in 0..b.rows {
            let ts = b.ts.get(row).copied().unwrap_or(0);
            if !self.filter.keeps_ts(ts) {
                continue;
            }
            let declared = text(b.tenant, row);
            let tenant = declared.or_else(|| text(b.tenant_claimed, row));
            if let Some(want) = &self.filter.tenant
                && declared != Some(want.as_bytes())
            {
                continue;
            }
            self.report.records += 1;
            if older {
                *self.report.skipped.entry(Skip::OlderShard).or_default() += 1;
                continue;
            }
            let (Some(_), Some(model)) =
                (int(b.policy_revision, row), text(b.requested_model, row))
            else {
                *self
                    .report
                    .skipped
                    .entry(Skip::RefusedBeforeRouting)
                    .or_default() += 1;
                continue;
            };
            let data_class = text(b.data_class, row);
            let user_role = text(b.user_role, row);
            let latency_budget_ms = int(b.latency_budget_ms, row);
            let cost_cap_per_1k = int(b.cost_cap_per_1k, row);
            let recorded = text(b.fallback_from, row).or_else(|| text(b.endpoint_id, row));
            // Denied (403 with no endpoint) or not: all the status says about a route.
            let refused = recorded.is_none() && int(Some(b.status), row) == Some(403);
            // Only what a table reads, and the recorded route only when it is the baseline.
            let r = self.reads;
            let key = identity(
                [
                    tenant,
                    data_class.filter(|_| r.data_class),
                    user_role.filter(|_| r.user_role),
                    Some(model),
                    recorded.filter(|_| self.old.is_none()),
                ],
                [
                    latency_budget_ms.filter(|_| r.latency),
                    cost_cap_per_1k.filter(|_| r.cost),
                ],
                refused && self.old.is_none(),
            );
            let cached = key.and_then(|k| self.seen.get(&k).copied());
            let outcome = match cached {
                Some(o) => o,
                None => {
                    let attrs = Attrs {
                        tenant,
                        data_class,
                        user_role,
                        model,
                        latency_budget_ms,
                        cost_cap_per_1k,
                    };
                    let o = self.judge(&attrs, recorded, refused);
                    if let Some(k) = key {
                        self.seen.insert(k, o);
                    }
                    o
                }
            };
            let Some(o) = outcome else {
                *self.report.skipped.entry(Skip::NotRouted).or_default() += 1;
                continue;
            };
            self.report.replayed += 1;
            let changed = o.from != o.to;
            let pending = &mut self.pending;
            let mut wait = |class: ClassRef, slot: Option<usize>| {
                if let Some(slot) = slot {
                    pending.push(Pending { row, class, slot });
                }
            };
            let row_stats = &mut self.report.tenants[o.tenant as usize];
            row_stats.replayed += 1;
            if changed {
                if o.to == DENY {
                    row_stats.denied += 1;
                    wait(ClassRef::Denied, self.report.denied.add(true));
                } else if o.from == DENY {
                    row_stats.allowed += 1;
                    wait(ClassRef::Allowed, self.report.allowed.add(true));
                } else {
                    row_stats.rerouted += 1;
                }
                let key = (o.from, o.to, o.rule);
                let slot = self.report.changes.entry(key).or_default().add(true);
                wait(ClassRef::Change(key.0, key.1, key.2), slot);
            }
            if o.unserved {
                wait(ClassRef::Unserved, self.report.unserved.add(true));
                let slot = self
                    .report
                    .unserved_by_rule
                    .entry(o.rule)
                    .or_default()
                    .add(true);
                wait(ClassRef::UnservedRule(o.rule), slot);
            }
            // Cost: recorded, and at the new route's prices from the recorded tokens.
            self.report.cost_recorded += i128::from(int(b.cost_usd, row).unwrap_or(0));
            if let Some(&(input, output)) = self.prices.get(o.price as usize) {
                self.report.cost_new += cost(
                    int(b.tokens_in, row).unwrap_or(0),
                    int(b.tokens_out, row).unwrap_or(0),
                    input,
                    output,
                );
            }
            let slot = self
                .report
                .routes
                .entry((o.from, o.to))
                .or_default()
                .add(changed);
            wait(ClassRef::Route(o.from, o.to), slot);
        }
        // The identities named this group's buffers, which the next group reuses.
        self.seen.clear();
        self.report.tuples = self.new.memo.len() as u64;
        !self.pending.is_empty()
    }

    /// Fills the example slots the last batch reserved with their request ids.
    fn fill_examples(&mut self, ids: &[Option<ByteArray>]) {
        for p in std::mem::take(&mut self.pending) {
            let r = &mut self.report;
            let class = match p.class {
                ClassRef::Route(a, b) => r.routes.get_mut(&(a, b)),
                ClassRef::Change(a, b, rule) => r.changes.get_mut(&(a, b, rule)),
                ClassRef::Denied => Some(&mut r.denied),
                ClassRef::Allowed => Some(&mut r.allowed),
                ClassRef::Unserved => Some(&mut r.unserved),
                ClassRef::UnservedRule(rule) => r.unserved_by_rule.get_mut(&rule),
            };
            if let Some(example) = class.and_then(|c| c.examples.get_mut(p.slot))
                && let Some(Some(id)) = ids.get(p.row)
            {
                *example = String::from_utf8_lossy(id.data()).into_owned();
            }
        }
    }

    /// Decides one attribute tuple under both sides; `None` when the record has no
    /// baseline route (decided without one, and not denied).
    fn judge(
        &mut self,
        attrs: &Attrs<'_>,
        recorded: Option<&[u8]>,
        refused: bool,
    ) -> Option<Outcome> {
        let from = match &mut self.old {
            Some(old) => {
                let d = old.decide(attrs, &mut self.names);
                if d.deny {
                    DENY
                } else {
                    d.set.first().copied().unwrap_or(DENY)
                }
            }
            None => match recorded {
                Some(e) => self.names.number(e),
                None if refused => DENY,
                None => return None,
            },
        };
        let d = self.new.decide(attrs, &mut self.names);
        let to = if d.deny {
            DENY
        } else if from != DENY && d.set.contains(&from) {
            // A member of the new rule's balanced set: where the new policy may send it too.
            from
        } else {
            d.set.first().copied().unwrap_or(DENY)
        };
        let (rule, unserved) = (d.rule, d.unserved);
        let price = (to != DENY && !unserved)
            .then(|| self.new_table.endpoint_by_id(self.names.name(to)))
            .flatten()
            .map_or(NO_PRICE, |e| {
                let p = (e.input_per_1k(), e.output_per_1k());
                let at = self.prices.iter().position(|q| *q == p).unwrap_or_else(|| {
                    self.prices.push(p);
                    self.prices.len() - 1
                });
                u32::try_from(at).unwrap_or(NO_PRICE)
            });
        let tenant_key = attrs.tenant.unwrap_or(b"(none)");
        let tenant = match self.report.tenant_index.get(tenant_key) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.report.tenants.len()).unwrap_or(u32::MAX);
                self.report.tenants.push(TenantRow {
                    tenant: String::from_utf8_lossy(tenant_key).into_owned(),
                    ..TenantRow::default()
                });
                self.report.tenant_index.insert(tenant_key.to_vec(), i);
                i
            }
        };
        Some(Outcome {
            from,
            to,
            rule,
            unserved,
            tenant,
            price,
        })
    }

    /// The report, with the endpoint names it refers to.
    pub fn finish(mut self) -> Report {
        self.report.names = Some(self.names);
        let rules = self.report.changes.keys().map(|k| k.2);
        for i in rules
            .chain(self.report.unserved_by_rule.keys().copied())
            .collect::<Vec<_>>()
        {
            let label = match self.new_table.rule(i) {
                Some(r) if r.is_default() => "the default rule".to_owned(),
                Some(r) if !r.name().is_empty() => format!("rule {i} `{}`", r.name()),
                _ => format!("rule {i}"),
            };
            self.report.rule_labels.insert(i, label);
        }
        self.report
    }
}

impl Sink for Replay<'_> {
    fn batch(&mut self, b: &source::Batch<'_>) -> bool {
        self.replay_batch(b)
    }

    fn ids(&mut self, ids: &[Option<ByteArray>]) {
        self.fill_examples(ids);
    }

    /// Attributes no table reads are not decoded, nor the recorded route when `--old`
    /// is the baseline.
    fn needs(&self, column: &str) -> bool {
        match column {
            "data_class" => self.reads.data_class,
            "user_role" => self.reads.user_role,
            "latency_budget_ms" => self.reads.latency,
            "cost_cap_per_1k" => self.reads.cost,
            "endpoint_id" | "fallback_from" => self.old.is_none(),
            _ => true,
        }
    }
}

/// Exact USD text of micro-dollars (signed).
pub fn usd(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}
