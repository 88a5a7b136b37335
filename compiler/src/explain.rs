//! `policyc explain`: which rule a described request hits, where it goes, and for each
//! earlier rule which condition failed. It reads only the table (the same columns the
//! router evaluates), so an explanation cannot disagree with the router.

use std::fmt::Write as _;

use serde::Serialize;
use switchyard_table::{Action, Field, RuleView, Table};

use crate::interp::Attrs;

/// One condition of one rule, judged against the request.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CondResult {
    pub field: &'static str,
    pub condition: String,
    /// The request's value, `null` when absent.
    pub value: Option<String>,
    pub holds: bool,
}

/// One rule examined on the way to the decision.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule_index: u32,
    pub rule_name: Option<String>,
    pub line: u32,
    pub matched: bool,
    /// Conditions that failed (all of them, not just the first).
    pub failed: Vec<CondResult>,
    /// Conditions that held.
    pub held: Vec<CondResult>,
}

/// The full explanation.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    pub rule_index: u32,
    /// `null` for an unnamed rule; `default` for the default.
    pub rule_name: Option<String>,
    pub is_default: bool,
    /// `route` or `deny`.
    pub action: &'static str,
    pub denied: bool,
    /// `null` when denied.
    pub endpoint: Option<String>,
    /// Every endpoint of the rule's `route_to` (one, or a balanced set the router picks
    /// from per request), `endpoint` first.
    pub route_to: Vec<String>,
    pub fallback: Vec<String>,
    /// The provider's id for the request's model at the chosen endpoint, when the policy
    /// maps it to one (`models: [{ name, upstream }]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    pub request: std::collections::BTreeMap<&'static str, String>,
    /// Every rule before the decision, then the deciding rule.
    pub trace: Vec<RuleTrace>,
}

fn value_of(attrs: &Attrs, f: Field) -> Option<String> {
    if f.kind().is_string() {
        attrs.str_value(f).map(str::to_owned)
    } else if f == Field::CostCapPer1k {
        attrs.cost_cap_per_1k.map(|m| m.to_string())
    } else {
        attrs.num_value(f).map(|v| v.to_string())
    }
}

fn trace(table: &Table<'_>, rule: &RuleView<'_>, attrs: &Attrs) -> RuleTrace {
    let req = attrs.as_request();
    let mut failed = Vec::new();
    let mut held = Vec::new();
    for f in Field::ALL {
        let Some(cond) = rule.condition(f) else {
            continue;
        };
        let holds = table.field_accepts(f, rule.index(), &req);
        let r = CondResult {
            field: f.key(),
            condition: cond.to_owned(),
            value: value_of(attrs, f),
            holds,
        };
        if holds { held.push(r) } else { failed.push(r) }
    }
    RuleTrace {
        rule_index: rule.index(),
        rule_name: (!rule.name().is_empty()).then(|| rule.name().to_owned()),
        line: rule.source_position().0,
        matched: failed.is_empty(),
        failed,
        held,
    }
}

/// Explains the decision for `attrs`.
#[must_use]
pub fn explain(table: &Table<'_>, attrs: &Attrs) -> Explanation {
    let decision = table.evaluate(&attrs.as_request());
    let hit = table.decided(decision);
    let mut steps: Vec<RuleTrace> = (0..decision.rule_index())
        .filter_map(|i| table.rule(i))
        .map(|r| trace(table, &r, attrs))
        .collect();
    steps.push(trace(table, &hit, attrs));
    let denied = hit.action() == Action::Deny;
    Explanation {
        rule_index: hit.index(),
        rule_name: (!hit.name().is_empty()).then(|| hit.name().to_owned()),
        is_default: hit.is_default(),
        action: hit.action().as_str(),
        denied,
        endpoint: hit.endpoint().map(|e| e.id().to_owned()),
        route_to: hit.route_set().map(|e| e.id().to_owned()).collect(),
        fallback: hit.fallback().map(|e| e.id().to_owned()).collect(),
        upstream_model: hit.endpoint().and_then(|e| {
            let model = attrs.str_value(Field::Model)?;
            let id = e.upstream_model(model);
            (id != model).then(|| id.to_owned())
        }),
        request: Field::ALL
            .into_iter()
            .filter_map(|f| value_of(attrs, f).map(|v| (f.key(), v)))
            .collect(),
        trace: steps,
    }
}

fn rule_title(t: &RuleTrace, is_default: bool) -> String {
    if is_default {
        return format!("default (rule {})", t.rule_index);
    }
    match &t.rule_name {
        Some(n) => format!("rule {} `{n}`", t.rule_index),
        None => format!("rule {}", t.rule_index),
    }
}

fn show_value(c: &CondResult) -> String {
    match &c.value {
        Some(v) => format!("request has `{v}`"),
        None => format!("request has no `{}`", c.field),
    }
}

/// Human rendering.
#[must_use]
pub fn render_human(e: &Explanation) -> String {
    let mut out = String::new();
    let request: Vec<String> = e.request.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        out,
        "request: {}",
        if request.is_empty() {
            "(no routing attributes)".to_owned()
        } else {
            request.join(" ")
        }
    );
    let last = e.trace.len().saturating_sub(1);
    for (i, t) in e.trace.iter().enumerate() {
        let is_decider = i == last;
        let title = rule_title(t, is_decider && e.is_default);
        let line = if t.line > 0 {
            format!(" (line {})", t.line)
        } else {
            String::new()
        };
        if !is_decider {
            let _ = writeln!(out, "  {title}{line}: no match");
            for c in &t.failed {
                let _ = writeln!(
                    out,
                    "      ✗ {}: {}  ({})",
                    c.field,
                    c.condition,
                    show_value(c)
                );
            }
            continue;
        }
        let _ = writeln!(out, "  {title}{line}: MATCH");
        for c in &t.held {
            let _ = writeln!(
                out,
                "      ✓ {}: {}  ({})",
                c.field,
                c.condition,
                show_value(c)
            );
        }
    }
    if e.denied {
        let by = e
            .trace
            .last()
            .map(|t| rule_title(t, e.is_default))
            .unwrap_or_default();
        let _ = writeln!(out, "decision: deny (by {by})");
    } else {
        let fallback = if e.fallback.is_empty() {
            String::new()
        } else {
            format!(
                ", fallback {}",
                e.fallback
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            )
        };
        let to = if e.route_to.len() > 1 {
            format!(
                "one of {} (balanced)",
                e.route_to
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("`{}`", e.endpoint.as_deref().unwrap_or("?"))
        };
        let _ = writeln!(
            out,
            "decision: route to {to}{fallback} (rule {}{})",
            e.rule_index,
            e.rule_name
                .as_ref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default()
        );
        if let (Some(id), Some(model)) = (&e.upstream_model, e.request.get("model")) {
            let _ = writeln!(out, "model `{model}` is sent to the provider as `{id}`");
        }
    }
    out
}
