//! The replay report rendered: JSON for CI, text for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Class, Condition, Report, Route, TenantRow, usd};

/// USD as a JSON number (shortest text that reads back to the same double; exact for the
/// amounts a report holds) — `usd` strings sit beside it for exactness.
fn usd_number(micros: i128) -> f64 {
    micros as f64 / 1e6
}

#[derive(Serialize)]
struct RouteJson<'a> {
    from: &'a str,
    to: &'a str,
    count: u64,
    examples: &'a [String],
}

impl Report {
    /// Routes by name, most requests first.
    fn sorted_routes(&self) -> Vec<(&str, &str, &Class)> {
        let name = |r: Route| self.names.as_ref().map_or("?", |n| n.name(r));
        let mut v: Vec<_> = self
            .routes
            .iter()
            .map(|((from, to), c)| (name(*from), name(*to), c))
            .collect();
        v.sort_by(|a, b| {
            b.2.count
                .cmp(&a.2.count)
                .then(a.0.cmp(b.0))
                .then(a.1.cmp(b.1))
        });
        v
    }

    fn sorted_tenants(&self) -> Vec<&TenantRow> {
        let mut v: Vec<_> = self.tenants.values().collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }

    pub fn to_json(&self, conditions: &[(Condition, bool)]) -> serde_json::Value {
        let routes: Vec<RouteJson<'_>> = self
            .sorted_routes()
            .into_iter()
            .map(|(from, to, c)| RouteJson {
                from,
                to,
                count: c.count,
                examples: &c.examples,
            })
            .collect();
        serde_json::json!({
            "records": self.records,
            "replayed": self.replayed,
            "skipped": self.skipped_total(),
            "skipped_by_reason": self.skipped.iter().map(|(k, v)| (k.as_str(), v)).collect::<BTreeMap<_, _>>(),
            "rerouted": self.rerouted(),
            "rerouted_pct": self.rerouted_pct(),
            "denied": self.denied.count,
            "denied_examples": self.denied.examples,
            "allowed": self.allowed.count,
            "allowed_examples": self.allowed.examples,
            "model_unserved": self.unserved.count,
            "model_unserved_examples": self.unserved.examples,
            "cost_usd_recorded": usd_number(self.cost_recorded),
            "cost_usd_new": usd_number(self.cost_new),
            "cost_delta_usd": usd_number(self.cost_new - self.cost_recorded),
            "cost_exact": {
                "recorded": usd(self.cost_recorded),
                "new": usd(self.cost_new),
                "delta": usd(self.cost_new - self.cost_recorded),
            },
            "routes": routes,
            "tenants": self.sorted_tenants(),
            "read": {
                "shards": self.shards,
                "row_groups": self.row_groups,
                "row_groups_pruned": self.row_groups_pruned,
                "distinct_attribute_tuples": self.tuples,
            },
            "fail_if": conditions.iter().map(|(c, held)| serde_json::json!({
                "condition": c.text,
                "held": held,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn render_human(&self, conditions: &[(Condition, bool)]) -> String {
        let mut s = String::new();
        let _ = write!(s, "replayed {} of {} records", self.replayed, self.records);
        if self.skipped_total() > 0 {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{v} {}", k.as_str().replace('_', " ")))
                .collect();
            let _ = write!(
                s,
                " ({} skipped: {})",
                self.skipped_total(),
                reasons.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "\nrerouted {} ({:.2}%), newly denied {}, newly allowed {}, pinned model no longer served {}",
            self.rerouted(),
            self.rerouted_pct(),
            self.denied.count,
            self.allowed.count,
            self.unserved.count
        );
        let _ = writeln!(
            s,
            "cost: recorded ${}, at the new routes ${} (delta {}{})",
            usd(self.cost_recorded),
            usd(self.cost_new),
            if self.cost_new >= self.cost_recorded {
                "+$"
            } else {
                "-$"
            },
            usd((self.cost_new - self.cost_recorded).abs())
        );
        let routes = self.sorted_routes();
        let changed: Vec<_> = routes.iter().filter(|(a, b, _)| a != b).collect();
        if changed.is_empty() {
            s.push_str("\nno request changes route\n");
        } else {
            s.push_str("\nroutes that change (from -> to: requests; examples)\n");
            for (from, to, c) in changed {
                let _ = writeln!(
                    s,
                    "  {from} -> {to}: {}; {}",
                    c.count,
                    c.examples.join(", ")
                );
            }
        }
        if self.unserved.count > 0 {
            let _ = writeln!(
                s,
                "\npinned model not served by the new route: {}; {}",
                self.unserved.count,
                self.unserved.examples.join(", ")
            );
        }
        let unchanged: Vec<_> = routes.iter().filter(|(a, b, _)| a == b).collect();
        if !unchanged.is_empty() {
            s.push_str("\nunchanged\n");
            for (from, _, c) in unchanged {
                let _ = writeln!(s, "  {from}: {}", c.count);
            }
        }
        if !self.tenants.is_empty() {
            s.push_str("\nby tenant (replayed, rerouted, newly denied, newly allowed)\n");
            for t in self.sorted_tenants() {
                let _ = writeln!(
                    s,
                    "  {}: {}, {}, {}, {}",
                    t.tenant, t.replayed, t.rerouted, t.denied, t.allowed
                );
            }
        }
        for (c, held) in conditions {
            let _ = writeln!(
                s,
                "\n--fail-if {}: {}",
                c.text,
                if *held {
                    "HOLDS (failing)"
                } else {
                    "does not hold"
                }
            );
        }
        s
    }
}
