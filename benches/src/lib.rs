//! Workload generators for the benchmarks: realistic policies of any size and request
//! mixes drawn from the same vocabulary, deterministic for a given seed so every run
//! measures the same thing.
//!
//! A generated policy looks like a large organisation's: a PII guard first, then per-tenant
//! rules (exact tenants, small lists, org-wide globs, a few exclusions) refined by data
//! class, role, model, latency budget and cost cap, over 20 endpoints of mixed transport.

use std::fmt::Write as _;

use policyc::interp::Attrs;
use switchyard_table::{Micros, Request};

/// A small deterministic PRNG (xorshift64*): no dependency, same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n.max(1) as u64)).unwrap_or(0)
    }

    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

pub const DATA_CLASSES: &[&str] = &[
    "general",
    "internal",
    "confidential",
    "pii-restricted",
    "phi",
];
pub const ROLES: &[&str] = &[
    "admin", "analyst", "engineer", "support", "service", "auditor",
];
pub const MODELS: &[&str] = &[
    "auto",
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-haiku",
    "claude-3-5-sonnet",
    "llama-3.1-70b-instruct",
    "llama-3.1-8b-instruct",
    "mistral-large",
];
const LATENCY: &[&str] = &[
    "<200",
    "<400",
    "<=800",
    "100..800",
    ">=1000",
    "in [250, 500]",
];
const COST: &[&str] = &["<0.002", "<=0.0005", ">=0.01", "0.001..0.005"];
const ENDPOINTS: usize = 20;

/// Tenants in a policy of `rules` rules: about one per four rules, grouped in orgs.
fn tenant(i: usize) -> String {
    format!("org-{:03}-team-{:04}", i % 97, i)
}

/// Tenants with a block of their own: blocks average 2.5 rules over 90% of the rules.
fn tenant_count(rules: usize) -> usize {
    (rules * 9 / 25).max(4)
}

/// A policy of `rules` rules (plus the default).
#[must_use]
pub fn policy(rules: usize, seed: u64) -> String {
    policy_with(rules, seed, 5)
}

/// A policy whose org-wide rules are `exclusions_pct`% "everyone except org X" rules.
/// Those meet almost every earlier rule, which is the hardest case for the reachability
/// search; [`policy`] uses 5%, the benchmarks also report 20%.
#[must_use]
pub fn policy_with(rules: usize, seed: u64, exclusions_pct: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut y = String::from("version: v1\nendpoints:\n");
    let transports = ["privatelink", "vpc_peering", "public", "private_endpoint"];
    for e in 0..ENDPOINTS {
        let transport = transports
            .get(e % transports.len())
            .copied()
            .unwrap_or("public");
        let _ = writeln!(
            y,
            "  - {{ id: ep-{e:02}, type: vllm, url: \"https://ep-{e:02}.internal.example.com/v1\", transport: {transport} }}"
        );
    }
    y.push_str("data_classes:\n");
    for dc in DATA_CLASSES {
        let private = matches!(*dc, "pii-restricted" | "phi");
        let _ = writeln!(y, "  - {{ id: {dc}, stays_private: {private} }}");
    }
    y.push_str("rules:\n");
    y.push_str("  - name: pii-guard\n    match: { data_class: \"in [pii-restricted, phi]\" }\n    route_to: ep-00\n");
    // Per-tenant blocks (specific rules first, the tenant-wide rule last), then org-wide
    // glob rules refined by class and role, as a real policy is written.
    let mut r = 1;
    let mut t = 0;
    let tenant_rules = rules * 9 / 10;
    while r < tenant_rules {
        let block = 1 + rng.below(4);
        for k in 0..block {
            if r >= tenant_rules {
                break;
            }
            let last = k + 1 == block;
            let mut conds = vec![format!("tenant: {}", tenant(t))];
            if !last {
                refine(&mut rng, &mut conds);
            }
            rule(&mut rng, &mut y, r, &conds);
            r += 1;
        }
        t += 1;
    }
    while r < rules {
        let org = rng.below(97);
        let mut conds = vec![if !rng.chance(exclusions_pct) {
            format!("tenant: \"org-{org:03}-*\"")
        } else {
            format!("tenant: \"not in [org-{org:03}-*]\"")
        }];
        conds.push(format!("data_class: {}", rng.pick(&DATA_CLASSES[..3])));
        refine(&mut rng, &mut conds);
        rule(&mut rng, &mut y, r, &conds);
        r += 1;
    }
    y.push_str("  - default: { route_to: ep-01 }\n");
    y
}

/// Adds one to three refining conditions (never on the tenant).
fn refine(rng: &mut Rng, conds: &mut Vec<String>) {
    let before = conds.len();
    while conds.len() == before || (conds.len() < before + 3 && rng.chance(40)) {
        match rng.below(5) {
            0 => conds.push(format!("data_class: {}", rng.pick(&DATA_CLASSES[..3]))),
            1 if rng.chance(70) => conds.push(format!("user_role: {}", rng.pick(ROLES))),
            1 => conds.push(format!("user_role: \"not in [{}]\"", rng.pick(ROLES))),
            2 => conds.push(format!("model: {}", rng.pick(MODELS))),
            3 => conds.push(format!("latency_budget_ms: \"{}\"", rng.pick(LATENCY))),
            _ => conds.push(format!("cost_cap_per_1k: \"{}\"", rng.pick(COST))),
        }
        let mut keys: Vec<&str> = conds.iter().filter_map(|c| c.split(':').next()).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != conds.len() {
            conds.pop();
        }
    }
}

fn rule(rng: &mut Rng, y: &mut String, r: usize, conds: &[String]) {
    let _ = writeln!(
        y,
        "  - name: rule-{r:05}\n    match: {{ {} }}",
        conds.join(", ")
    );
    let _ = writeln!(y, "    route_to: ep-{:02}", rng.below(ENDPOINTS));
    if rng.chance(30) {
        let _ = writeln!(y, "    fallback: [ep-{:02}]", rng.below(ENDPOINTS));
    }
}

/// `n` requests in the policy's vocabulary: mostly known tenants with a realistic spread
/// of attributes, some unknown tenants and missing headers.
#[must_use]
pub fn requests(rules: usize, n: usize, seed: u64) -> Vec<Attrs> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let tenants = tenant_count(rules);
    (0..n)
        .map(|_| Attrs {
            tenant: if rng.chance(90) {
                Some(tenant(rng.below(tenants)))
            } else if rng.chance(50) {
                Some("unknown-tenant".to_owned())
            } else {
                None
            },
            data_class: rng.chance(80).then(|| rng.pick(DATA_CLASSES).to_owned()),
            user_role: rng.chance(70).then(|| rng.pick(ROLES).to_owned()),
            model: rng.chance(95).then(|| rng.pick(MODELS).to_owned()),
            latency_budget_ms: rng.chance(60).then(|| rng.next_u64() % 2000),
            cost_cap_per_1k: rng.chance(40).then(|| Micros(rng.next_u64() % 20_000)),
        })
        .collect()
}

/// One request's values as spans into [`Arena`]'s buffer: four string fields, then the
/// numbers.
type Spans = ([Option<(usize, usize)>; 4], Option<u64>, Option<Micros>);

/// Request attribute values copied into one buffer, as they are in a router's connection
/// buffer (not in thousands of scattered heap strings), with the spans of each request.
#[derive(Debug)]
pub struct Arena {
    bytes: Vec<u8>,
    spans: Vec<Spans>,
}

impl Arena {
    #[must_use]
    pub fn of(attrs: &[Attrs]) -> Self {
        let mut bytes = Vec::new();
        let mut spans = Vec::with_capacity(attrs.len());
        for a in attrs {
            let mut put = |v: &Option<String>| {
                v.as_ref().map(|s| {
                    let start = bytes.len();
                    bytes.extend_from_slice(s.as_bytes());
                    (start, bytes.len())
                })
            };
            let strs = [
                put(&a.tenant),
                put(&a.data_class),
                put(&a.user_role),
                put(&a.model),
            ];
            spans.push((strs, a.latency_budget_ms, a.cost_cap_per_1k));
        }
        Self { bytes, spans }
    }

    #[must_use]
    pub fn requests(&self) -> Vec<Request<'_>> {
        let get = |s: Option<(usize, usize)>| s.and_then(|(a, b)| self.bytes.get(a..b));
        self.spans
            .iter()
            .map(|(s, latency, cost)| Request {
                tenant: get(s[0]),
                data_class: get(s[1]),
                user_role: get(s[2]),
                model: get(s[3]),
                latency_budget_ms: *latency,
                cost_cap_per_1k: *cost,
            })
            .collect()
    }
}
