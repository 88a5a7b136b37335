//! The plain first-match interpreter: evaluates the checked IR directly, condition by
//! condition, with no partitions and no bit-vectors. It is the reference the table's
//! evaluator is tested against (property tests, `policyc test`).

use switchyard_table::{Field, Micros, Request};

use crate::ir::Policy;

/// Request attributes, owned. `None` = the request does not carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    pub tenant: Option<String>,
    pub data_class: Option<String>,
    pub user_role: Option<String>,
    pub model: Option<String>,
    pub latency_budget_ms: Option<u64>,
    pub cost_cap_per_1k: Option<Micros>,
}

impl Attrs {
    /// The borrowed form the table evaluates.
    #[must_use]
    pub fn as_request(&self) -> Request<'_> {
        Request {
            tenant: self.tenant.as_deref().map(str::as_bytes),
            data_class: self.data_class.as_deref().map(str::as_bytes),
            user_role: self.user_role.as_deref().map(str::as_bytes),
            model: self.model.as_deref().map(str::as_bytes),
            latency_budget_ms: self.latency_budget_ms,
            cost_cap_per_1k: self.cost_cap_per_1k,
        }
    }

    /// The value of a string field.
    #[must_use]
    pub fn str_value(&self, field: Field) -> Option<&str> {
        match field {
            Field::Tenant => self.tenant.as_deref(),
            Field::DataClass => self.data_class.as_deref(),
            Field::UserRole => self.user_role.as_deref(),
            Field::Model => self.model.as_deref(),
            Field::LatencyBudgetMs | Field::CostCapPer1k => None,
        }
    }

    /// The value of a numeric field (money in micro-dollars).
    #[must_use]
    pub fn num_value(&self, field: Field) -> Option<u64> {
        match field {
            Field::LatencyBudgetMs => self.latency_budget_ms,
            Field::CostCapPer1k => self.cost_cap_per_1k.map(|m| m.0),
            Field::Tenant | Field::DataClass | Field::UserRole | Field::Model => None,
        }
    }

    /// Human form: `tenant=acme latency_budget_ms=300`, absent attributes left out.
    #[must_use]
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Field::ALL
            .into_iter()
            .filter_map(|f| {
                let v = if f.kind().is_string() {
                    self.str_value(f).map(str::to_owned)
                } else if f == Field::CostCapPer1k {
                    self.cost_cap_per_1k.map(|m| m.to_string())
                } else {
                    self.num_value(f).map(|v| v.to_string())
                };
                v.map(|v| format!("{}={v}", f.key()))
            })
            .collect();
        if parts.is_empty() {
            "(no attributes)".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// Whether rule `index` accepts the request.
#[must_use]
pub fn rule_matches(policy: &Policy, index: usize, req: &Attrs) -> bool {
    let Some(rule) = policy.rules.get(index) else {
        return false;
    };
    Field::ALL.into_iter().all(|f| match rule.condition(f) {
        None => true,
        Some(c) if f.kind().is_string() => req.str_value(f).is_some_and(|v| c.pred.accepts_str(v)),
        Some(c) => req.num_value(f).is_some_and(|v| c.pred.accepts_num(v)),
    })
}

/// Index of the first matching rule, or the rule count for the default.
#[must_use]
pub fn first_match(policy: &Policy, req: &Attrs) -> usize {
    (0..policy.rules.len())
        .find(|&i| rule_matches(policy, i, req))
        .unwrap_or(policy.rules.len())
}
