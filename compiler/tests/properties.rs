//! Property tests over random policies and requests.
//!
//! - The table's bit-vector evaluator agrees with the plain first-match interpreter.
//! - `explain` names the same rule, and every condition it reports matches the
//!   interpreter's verdict for that condition.
//! - Rules reported unreachable (P1001) are never hit.
//! - `diff` is sound (each example request really moves between the two rules it names)
//!   and complete on the sampled requests (every observed route change lies in a reported
//!   region).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use std::collections::HashSet;
use std::fmt::Write as _;

use policyc::diag::Code;
use policyc::interp::{self, Attrs};
use proptest::prelude::*;
use switchyard_table::{Field, Micros, Table};

const IDS: &[&str] = &[
    "acme",
    "acme-eu",
    "acme-eu-1",
    "acme-us",
    "beta",
    "b",
    "gpt-4o",
    "x",
];
const GLOBS: &[&str] = &["", "a", "acme-", "acme-eu", "b", "gpt-"];
const NUMS: &[u64] = &[0, 1, 99, 100, 101, 250, 399, 400, 1000];
const MONEY: &[&str] = &["0", "0.000001", "0.001", "0.0015", "0.002", "1", "1.5"];

fn id() -> impl Strategy<Value = String> {
    prop::sample::select(IDS).prop_map(str::to_owned)
}

fn glob() -> impl Strategy<Value = String> {
    prop::sample::select(GLOBS).prop_map(|g| format!("{g}*"))
}

fn item() -> impl Strategy<Value = String> {
    prop_oneof![3 => id(), 1 => glob()]
}

fn string_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        id().prop_map(|v| format!("{v:?}")),
        glob().prop_map(|g| format!("{g:?}")),
        id().prop_map(|v| format!("\"!= {v}\"")),
        id().prop_map(|v| format!("\"== {v}\"")),
        prop::collection::vec(item(), 1..4).prop_map(|v| format!("\"in [{}]\"", v.join(", "))),
        prop::collection::vec(item(), 0..4).prop_map(|v| format!("\"not in [{}]\"", v.join(", "))),
        prop::collection::vec(item(), 1..4).prop_map(|v| format!(
            "[{}]",
            v.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ]
}

fn number_condition(values: Vec<String>, can_lt_zero: bool) -> impl Strategy<Value = String> {
    let v = prop::sample::select(values);
    let pair = (v.clone(), v.clone());
    let ops = prop::sample::select(if can_lt_zero {
        vec!["<", "<=", ">", ">=", "==", "!="]
    } else {
        vec!["<=", ">", ">=", "==", "!="]
    });
    prop_oneof![
        v.clone(),
        (ops, v.clone()).prop_map(|(op, x)| format!("\"{op} {x}\"")),
        pair.prop_map(|(a, b)| format!("\"{a}..{b}\"")),
        prop::collection::vec(v.clone(), 1..4).prop_map(|v| format!("\"in [{}]\"", v.join(", "))),
        prop::collection::vec(v, 0..3).prop_map(|v| format!("\"not in [{}]\"", v.join(", "))),
    ]
}

/// A random rule: up to four conditions (ranges sorted so none is empty), a target.
fn rule() -> impl Strategy<Value = (Vec<(Field, String)>, usize)> {
    let cond = prop_oneof![
        string_condition().prop_map(|c| (Field::Tenant, c)),
        string_condition().prop_map(|c| (Field::DataClass, c)),
        string_condition().prop_map(|c| (Field::UserRole, c)),
        string_condition().prop_map(|c| (Field::Model, c)),
        number_condition(NUMS.iter().map(u64::to_string).collect(), false)
            .prop_map(|c| (Field::LatencyBudgetMs, c)),
        number_condition(MONEY.iter().map(|s| (*s).to_owned()).collect(), false)
            .prop_map(|c| (Field::CostCapPer1k, c)),
    ];
    (prop::collection::vec(cond, 0..4), 0..3usize)
}

fn fix_range(c: &str) -> String {
    // Order `a..b` so the range is never empty (empty ranges are errors by design).
    let inner = c.trim_matches('"');
    if let Some((a, b)) = inner.split_once("..") {
        let (x, y) = (Micros::parse(a).unwrap(), Micros::parse(b).unwrap());
        let (lo, hi) = if x <= y { (a, b) } else { (b, a) };
        return format!("\"{lo}..{hi}\"");
    }
    c.to_owned()
}

fn policy_yaml(rules: &[(Vec<(Field, String)>, usize)], deny_default: bool) -> String {
    let mut y = String::from("version: v1\nendpoints:\n");
    for e in ["e0", "e1", "e2"] {
        let _ = writeln!(
            y,
            "  - {{ id: {e}, type: mock, url: \"http://127.0.0.1:9/{e}\", transport: privatelink }}"
        );
    }
    y.push_str("rules:\n");
    for (i, (conds, target)) in rules.iter().enumerate() {
        let _ = writeln!(y, "  - name: r{i}\n    match:");
        let mut seen = HashSet::new();
        for (f, c) in conds {
            if seen.insert(*f) {
                let _ = writeln!(y, "      {}: {}", f.key(), fix_range(c));
            }
        }
        if seen.is_empty() {
            y.push_str("      {}\n");
        }
        let _ = writeln!(y, "    route_to: e{target}");
    }
    if deny_default {
        y.push_str("  - default: deny\n");
    } else {
        y.push_str("  - default: { route_to: e0 }\n");
    }
    y.replace("match:\n      {}", "match: {}")
}

fn attrs() -> impl Strategy<Value = Attrs> {
    let s = || {
        prop::option::of(prop_oneof![
            id(),
            Just("acme-eu-9".to_owned()),
            Just("zzz".to_owned()),
            Just(String::new())
        ])
    };
    let n = prop::option::of(prop_oneof![
        prop::sample::select(NUMS).prop_map(|v| v),
        0..2000u64,
        Just(u64::MAX)
    ]);
    let m = prop::option::of(prop_oneof![
        prop::sample::select(MONEY).prop_map(|s| Micros::parse(s).unwrap()),
        (0..3_000_000u64).prop_map(Micros)
    ]);
    (s(), s(), s(), s(), n, m).prop_map(
        |(tenant, data_class, user_role, model, latency_budget_ms, cost_cap_per_1k)| Attrs {
            tenant,
            data_class,
            user_role,
            model,
            latency_budget_ms,
            cost_cap_per_1k,
        },
    )
}

fn compile(yaml: &str) -> policyc::Output {
    let (sources, out) = policyc::compile_str("random.yaml", yaml).unwrap();
    assert!(
        !out.has_errors(),
        "{yaml}\n{}",
        policyc::diag::render_human(&sources, &out.diagnostics)
    );
    out
}

/// Index of the rule a diagnostic is about ("rule N ..." messages).
fn rule_of(message: &str) -> usize {
    message
        .strip_prefix("rule ")
        .and_then(|m| m.split([' ', '`']).next())
        .unwrap()
        .parse()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn evaluator_agrees_with_interpreter(
        rules in prop::collection::vec(rule(), 0..12),
        deny in any::<bool>(),
        requests in prop::collection::vec(attrs(), 64),
    ) {
        let yaml = policy_yaml(&rules, deny);
        let out = compile(&yaml);
        let unreachable: HashSet<usize> = out
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::UnreachableRule)
            .map(|d| rule_of(&d.message))
            .collect();
        let compiled = out.compiled.unwrap();
        let table = Table::from_bytes(&compiled.table).unwrap();
        for req in &requests {
            let expected = interp::first_match(&compiled.policy, req);
            let got = table.evaluate(&req.as_request());
            prop_assert_eq!(got.rule_index() as usize, expected, "request {}\n{}", req.describe(), yaml);
            prop_assert_eq!(got.is_default(), expected == compiled.policy.rules.len());
            prop_assert!(!unreachable.contains(&expected), "rule {} reported unreachable but hit by {}\n{}", expected, req.describe(), yaml);

            let e = policyc::explain::explain(&table, req);
            prop_assert_eq!(e.rule_index as usize, expected);
            for step in &e.trace {
                let matches = interp::rule_matches(&compiled.policy, step.rule_index as usize, req);
                if (step.rule_index as usize) < compiled.policy.rules.len() {
                    prop_assert_eq!(step.matched, matches);
                }
                for c in step.failed.iter().chain(&step.held) {
                    let f = Field::from_key(c.field).unwrap();
                    let cond = compiled.policy.rules[step.rule_index as usize].condition(f).unwrap();
                    let holds = if f.kind().is_string() {
                        req.str_value(f).is_some_and(|v| cond.pred.accepts_str(v))
                    } else {
                        req.num_value(f).is_some_and(|v| cond.pred.accepts_num(v))
                    };
                    prop_assert_eq!(c.holds, holds, "{} of rule {}", c.field, step.rule_index);
                }
            }
        }
    }

    #[test]
    fn diff_is_sound_and_complete_on_samples(
        old_rules in prop::collection::vec(rule(), 0..8),
        new_rules in prop::collection::vec(rule(), 0..8),
        requests in prop::collection::vec(attrs(), 64),
    ) {
        let old_yaml = policy_yaml(&old_rules, false);
        let new_yaml = policy_yaml(&new_rules, true);
        let old = compile(&old_yaml).compiled.unwrap();
        let new = compile(&new_yaml).compiled.unwrap();
        let (a, b) = (Table::from_bytes(&old.table).unwrap(), Table::from_bytes(&new.table).unwrap());
        let report = policyc::diff::diff(&a, &b);
        let dest = |t: &Table<'_>, i: u32| {
            let r = t.rule(i).unwrap();
            r.endpoint().map(|e| e.id().to_owned())
        };
        // Sound: every proven example request really goes old rule → new rule.
        for region in report.regions.iter().filter(|r| r.proven) {
            let mut req = Attrs::default();
            for (k, v) in &region.example {
                match Field::from_key(k).unwrap() {
                    Field::Tenant => req.tenant = Some(v.clone()),
                    Field::DataClass => req.data_class = Some(v.clone()),
                    Field::UserRole => req.user_role = Some(v.clone()),
                    Field::Model => req.model = Some(v.clone()),
                    Field::LatencyBudgetMs => req.latency_budget_ms = Some(v.parse().unwrap()),
                    Field::CostCapPer1k => req.cost_cap_per_1k = Some(Micros::parse(v).unwrap()),
                }
            }
            prop_assert_eq!(a.evaluate(&req.as_request()).rule_index(), region.old.rule_index, "{:?}", region);
            prop_assert_eq!(b.evaluate(&req.as_request()).rule_index(), region.new.rule_index, "{:?}", region);
        }
        // Complete: a sampled request whose destination changed lies in a reported region.
        for req in &requests {
            let (i, j) = (a.evaluate(&req.as_request()).rule_index(), b.evaluate(&req.as_request()).rule_index());
            if dest(&a, i) != dest(&b, j) {
                prop_assert!(
                    report.regions.iter().any(|r| r.old.rule_index == i && r.new.rule_index == j),
                    "{} moved rule {} → rule {} but diff missed it\nold:\n{}\nnew:\n{}", req.describe(), i, j, old_yaml, new_yaml
                );
            }
        }
        // A table compared with itself changes nothing.
        prop_assert!(policyc::diff::diff(&a, &a).regions.is_empty());
    }
}
