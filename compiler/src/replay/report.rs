//! The replay report rendered: JSON for CI, text for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Class, Condition, DENY, Report, Route, TenantRow, usd};
use crate::ci::{Finding, Level, Location, RuleInfo};

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

#[derive(Serialize)]
struct ChangeJson<'a> {
    rule: u32,
    rule_label: &'a str,
    from: &'a str,
    to: &'a str,
    count: u64,
    examples: &'a [String],
}

/// A changed route class and the new table's rule that decided it.
struct Change<'a> {
    rule: u32,
    label: &'a str,
    from: &'a str,
    to: &'a str,
    denied: bool,
    allowed: bool,
    class: &'a Class,
}

impl Report {
    fn rule_label(&self, rule: u32) -> &str {
        self.rule_labels.get(&rule).map_or("?", String::as_str)
    }

    /// Changed routes by deciding rule, most requests first.
    fn sorted_changes(&self) -> Vec<Change<'_>> {
        let name = |r: Route| self.names.as_ref().map_or("?", |n| n.name(r));
        let mut v: Vec<_> = self
            .changes
            .iter()
            .map(|((from, to, rule), class)| Change {
                rule: *rule,
                label: self.rule_label(*rule),
                from: name(*from),
                to: name(*to),
                denied: *to == DENY,
                allowed: *from == DENY,
                class,
            })
            .collect();
        v.sort_by(|a, b| {
            (b.class.count, a.rule, a.from, a.to).cmp(&(a.class.count, b.rule, b.from, b.to))
        });
        v
    }

    fn sorted_unserved(&self) -> Vec<(u32, &Class)> {
        let mut v: Vec<_> = self.unserved_by_rule.iter().map(|(r, c)| (*r, c)).collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        v
    }

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
        let mut v: Vec<_> = self.tenants.iter().collect();
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
            "by_rule": self.sorted_changes().iter().map(|c| ChangeJson {
                rule: c.rule,
                rule_label: c.label,
                from: c.from,
                to: c.to,
                count: c.class.count,
                examples: &c.class.examples,
            }).collect::<Vec<_>>(),
            "model_unserved_by_rule": self.sorted_unserved().iter().map(|(rule, c)| serde_json::json!({
                "rule": rule,
                "rule_label": self.rule_label(*rule),
                "count": c.count,
                "examples": c.examples,
            })).collect::<Vec<_>>(),
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
        let changes = self.sorted_changes();
        if !changes.is_empty() {
            s.push_str("\nby the new policy's rule that decides them\n");
            for c in &changes {
                let _ = writeln!(
                    s,
                    "  {}: {} -> {}: {}",
                    c.label, c.from, c.to, c.class.count
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

/// The rule ids replay findings carry.
#[must_use]
pub fn rules() -> Vec<RuleInfo> {
    let rule = |id: &str, name: &str, summary: &str, level| RuleInfo {
        id: id.to_owned(),
        name: name.to_owned(),
        summary: summary.to_owned(),
        level,
    };
    vec![
        rule(
            "replay/rerouted",
            "rerouted",
            "recorded requests the new policy sends to another endpoint",
            Level::Notice,
        ),
        rule(
            "replay/denied",
            "newly-denied",
            "recorded requests the new policy denies",
            Level::Warning,
        ),
        rule(
            "replay/allowed",
            "newly-allowed",
            "recorded requests that were denied and the new policy routes",
            Level::Notice,
        ),
        rule(
            "replay/model-unserved",
            "model-unserved",
            "recorded requests pinning a model the new route does not serve",
            Level::Warning,
        ),
        rule(
            "replay/fail-if",
            "fail-if",
            "a `--fail-if` condition held",
            Level::Error,
        ),
    ]
}

impl Report {
    /// One-line summary of the replay.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "replayed {} of {} records ({} skipped): {} rerouted ({:.2}%), {} newly denied, \
             {} newly allowed, {} pinned model unserved; cost ${} recorded, ${} at the new routes",
            self.replayed,
            self.records,
            self.skipped_total(),
            self.rerouted(),
            self.rerouted_pct(),
            self.denied.count,
            self.allowed.count,
            self.unserved.count,
            usd(self.cost_recorded),
            usd(self.cost_new),
        )
    }

    /// Findings for CI: each changed route class at the new policy's deciding rule
    /// (`locate`; without a place there, `whole`, the new policy's first line), each
    /// unserved pinned model at its rule, each held `--fail-if` on `whole`.
    pub fn findings(
        &self,
        conditions: &[(Condition, bool)],
        locate: &dyn Fn(u32) -> Option<Location>,
        whole: &Location,
    ) -> Vec<Finding> {
        let at = |rule: u32| locate(rule).unwrap_or_else(|| whole.clone());
        let pct = |n: u64| {
            if self.replayed == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.replayed as f64
            }
        };
        let mut out = Vec::new();
        for c in self.sorted_changes() {
            let n = c.class.count;
            let (rule, level, what) = if c.denied {
                (
                    "replay/denied",
                    Level::Warning,
                    format!("denies {n} recorded requests routed to `{}` before", c.from),
                )
            } else if c.allowed {
                (
                    "replay/allowed",
                    Level::Notice,
                    format!("routes {n} recorded requests denied before to `{}`", c.to),
                )
            } else {
                (
                    "replay/rerouted",
                    Level::Notice,
                    format!(
                        "moves {n} recorded requests from `{}` to `{}`",
                        c.from, c.to
                    ),
                )
            };
            let mut properties = serde_json::Map::new();
            properties.insert("rule_index".into(), c.rule.into());
            properties.insert("from".into(), c.from.into());
            properties.insert("to".into(), c.to.into());
            properties.insert("count".into(), n.into());
            properties.insert("examples".into(), c.class.examples.clone().into());
            out.push(Finding {
                level,
                rule: rule.to_owned(),
                title: format!("policyc replay: {}", c.label),
                message: format!(
                    "{} {what} ({:.2}% of {} replayed); e.g. {}",
                    c.label,
                    pct(n),
                    self.replayed,
                    c.class.examples.join(", ")
                ),
                location: Some(at(c.rule)),
                related: Vec::new(),
                properties,
            });
        }
        for (rule, c) in self.sorted_unserved() {
            let mut properties = serde_json::Map::new();
            properties.insert("rule_index".into(), rule.into());
            properties.insert("count".into(), c.count.into());
            properties.insert("examples".into(), c.examples.clone().into());
            out.push(Finding {
                level: Level::Warning,
                rule: "replay/model-unserved".to_owned(),
                title: format!("policyc replay: {}", self.rule_label(rule)),
                message: format!(
                    "{} routes {} recorded requests pinning a model its endpoints do not serve \
                     (or the tenant's allowlist refuses): the router would refuse them; e.g. {}",
                    self.rule_label(rule),
                    c.count,
                    c.examples.join(", ")
                ),
                location: Some(at(rule)),
                related: Vec::new(),
                properties,
            });
        }
        for (c, _) in conditions.iter().filter(|(_, held)| *held) {
            out.push(Finding {
                level: Level::Error,
                rule: "replay/fail-if".to_owned(),
                title: format!("policyc replay --fail-if {}", c.text),
                message: format!("`{}` holds: {}", c.text, self.summary()),
                location: Some(whole.clone()),
                related: Vec::new(),
                properties: serde_json::Map::new(),
            });
        }
        out
    }
}

impl Report {
    /// Markdown for a CI job's summary page (`$GITHUB_STEP_SUMMARY`): the headline, held
    /// conditions, changes by rule, and the full text report folded.
    #[must_use]
    pub fn render_markdown(&self, policy: &str, conditions: &[(Condition, bool)]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### `policyc replay {policy}`\n");
        let _ = writeln!(s, "{}\n", self.summary());
        for (c, held) in conditions {
            let _ = writeln!(
                s,
                "- {} `--fail-if {}`",
                if *held {
                    "❌ holds:"
                } else {
                    "✅ does not hold:"
                },
                c.text
            );
        }
        let changes = self.sorted_changes();
        if changes.is_empty() {
            s.push_str("\nNo recorded request changes route.\n");
        } else {
            s.push_str("\n| new policy's rule | from | to | requests | examples |\n");
            s.push_str("| --- | --- | --- | ---: | --- |\n");
            for c in &changes {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | `{}` | {} | {} |",
                    c.label.replace('|', "\\|"),
                    c.from,
                    c.to,
                    c.class.count,
                    c.class.examples.join(", ").replace('|', "\\|")
                );
            }
        }
        let _ = writeln!(
            s,
            "\n<details><summary>Full report</summary>\n\n```text\n{}```\n</details>\n",
            self.render_human(conditions)
        );
        s
    }
}
