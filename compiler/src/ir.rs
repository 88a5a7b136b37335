//! The checked IR: a policy whose every reference resolves, every condition is typed and
//! non-empty, and every amount is fixed-point. Only [`crate::check`] builds it; lowering,
//! the analyses and the interpreter see nothing else.

use switchyard_table::{DataClassSpec, EndpointSpec, Field, TenantSpec};

use crate::source::Span;

/// A checked policy bundle.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Declared endpoints (policy, then catalogue), then built-ins used implicitly.
    pub endpoints: Vec<Endpoint>,
    pub tenants: Vec<Tenant>,
    pub data_classes: Vec<DataClass>,
    /// Rules in declaration order, the default excluded.
    pub rules: Vec<Rule>,
    pub default: Rule,
    /// SHA-256 of the source files.
    pub digest: [u8; 32],
}

/// An endpoint and where it was declared.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    /// The `id` node, or the first reference for a built-in.
    pub span: Span,
    /// Declared in the policy file itself (not the catalogue, not built in).
    pub in_policy: bool,
}

/// A tenant and where it was declared.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub spec: TenantSpec,
    pub span: Span,
}

/// A data class and where it was declared.
#[derive(Clone, Debug)]
pub struct DataClass {
    pub spec: DataClassSpec,
    pub span: Span,
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Route {
        /// The (first) `route_to` endpoint.
        endpoint: usize,
        /// The other members of a balanced `route_to: [a, b, …]` set.
        balanced: Vec<usize>,
        fallback: Vec<usize>,
        /// The `route_to` value node (its first item for a set).
        endpoint_span: Span,
        /// Each other `route_to` item.
        balanced_spans: Vec<Span>,
        /// Each `fallback` entry.
        fallback_spans: Vec<Span>,
        /// `resend_on_reset: true`.
        resend_on_reset: bool,
    },
    Deny {
        span: Span,
    },
}

impl Target {
    /// Endpoint indices in the order the router tries them.
    #[must_use]
    pub fn endpoints(&self) -> Vec<usize> {
        match self {
            Target::Route {
                endpoint,
                balanced,
                fallback,
                ..
            } => std::iter::once(*endpoint)
                .chain(balanced.iter().copied())
                .chain(fallback.iter().copied())
                .collect(),
            Target::Deny { .. } => Vec::new(),
        }
    }

    /// Every endpoint the target names, with the span of the mention and its role
    /// (`"this route"`, `"this fallback"`).
    #[must_use]
    pub fn mentions(&self) -> Vec<(usize, Span, &'static str)> {
        match self {
            Target::Route {
                endpoint,
                balanced,
                fallback,
                endpoint_span,
                balanced_spans,
                fallback_spans,
                ..
            } => std::iter::once((*endpoint, *endpoint_span, "this route"))
                .chain(
                    balanced
                        .iter()
                        .copied()
                        .zip(balanced_spans.iter().copied())
                        .map(|(e, s)| (e, s, "this route")),
                )
                .chain(
                    fallback
                        .iter()
                        .copied()
                        .zip(fallback_spans.iter().copied())
                        .map(|(e, s)| (e, s, "this fallback")),
                )
                .collect(),
            Target::Deny { .. } => Vec::new(),
        }
    }

    /// The span of the first target.
    #[must_use]
    pub fn span(&self) -> Span {
        match self {
            Target::Route { endpoint_span, .. } => *endpoint_span,
            Target::Deny { span } => *span,
        }
    }
}

/// A rule (or the default, which has no conditions).
#[derive(Clone, Debug)]
pub struct Rule {
    /// The `name`, if given.
    pub name: Option<String>,
    /// The rule's list item.
    pub span: Span,
    /// The rule's first line (its first key and value): where diagnostics point.
    pub head: Span,
    /// One condition per field, indexed by [`Field`].
    pub conditions: [Option<Condition>; Field::COUNT],
    pub target: Target,
}

impl Rule {
    /// How diagnostics and explanations refer to the rule.
    #[must_use]
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("rule {index} `{name}`"),
            None => format!("rule {index}"),
        }
    }

    /// The condition on `field`.
    #[must_use]
    pub fn condition(&self, field: Field) -> Option<&Condition> {
        self.conditions.get(field.index()).and_then(Option::as_ref)
    }
}

/// A typed condition with its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// As written (a list is shown as `[a, b]`).
    pub text: String,
    /// The value node.
    pub span: Span,
    pub pred: Pred,
}

/// What a condition accepts. An absent attribute is accepted by no predicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pred {
    /// Accepts a present string iff (some pattern matches) != `negated`.
    Str {
        negated: bool,
        patterns: Vec<StrPattern>,
    },
    /// Accepts a present number iff it lies in one of the inclusive ranges (sorted,
    /// disjoint, non-empty).
    Num { ranges: Vec<(u64, u64)> },
}

/// A string pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StrPattern {
    Exact(String),
    /// A glob's literal prefix.
    Prefix(String),
}

impl StrPattern {
    /// Whether the pattern matches `value`.
    #[must_use]
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrPattern::Exact(s) => value == s,
            StrPattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

impl Pred {
    /// Whether a present string value satisfies the predicate (false for numeric ones).
    #[must_use]
    pub fn accepts_str(&self, value: &str) -> bool {
        match self {
            Pred::Str { negated, patterns } => {
                patterns.iter().any(|p| p.matches(value)) != *negated
            }
            Pred::Num { .. } => false,
        }
    }

    /// Whether a present number satisfies the predicate (false for string ones).
    #[must_use]
    pub fn accepts_num(&self, value: u64) -> bool {
        match self {
            Pred::Num { ranges } => ranges.iter().any(|&(lo, hi)| lo <= value && value <= hi),
            Pred::Str { .. } => false,
        }
    }
}

/// Normalizes inclusive ranges: sorted, merged, empty ones dropped.
#[must_use]
pub fn normalize_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(lo, hi)| lo <= hi);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The complement of normalized ranges within `0..=u64::MAX`.
#[must_use]
pub fn complement_ranges(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next: Option<u64> = Some(0);
    for &(lo, hi) in ranges {
        if let Some(n) = next
            && lo > n
        {
            out.push((n, lo - 1));
        }
        next = hi.checked_add(1);
    }
    if let Some(n) = next {
        out.push((n, u64::MAX));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_normalize_and_complement() {
        assert_eq!(
            normalize_ranges(vec![(5, 9), (0, 4), (20, 10)]),
            vec![(0, 9)]
        );
        assert_eq!(complement_ranges(&[(0, 9)]), vec![(10, u64::MAX)]);
        assert_eq!(complement_ranges(&[(5, 5)]), vec![(0, 4), (6, u64::MAX)]);
        assert_eq!(complement_ranges(&[(0, u64::MAX)]), vec![]);
        assert_eq!(complement_ranges(&[]), vec![(0, u64::MAX)]);
    }
}
