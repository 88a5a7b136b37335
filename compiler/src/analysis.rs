//! What policyc proves about a checked policy: rules no request can reach, rules that
//! overlap an earlier rule routing elsewhere, and data-class leaks.
//!
//! All three reduce to one question over the finite request space of [`Space`]: is a box
//! covered by the union of other boxes, and if not, which point is left over? The search
//! splits the target box on a field where some other box cuts it, exploring the part
//! outside that box first (where a witness is likeliest). It is exact: "covered" is a
//! proof and every witness is a real request. Each search has a node budget, and all
//! searches share a total; when one runs out the answer is "could not prove", reported as
//! such — never a guess. For the data-class check "could not prove" is an error, because
//! that check guards data.

use switchyard_table::Field;

use crate::diag::{Code, Diagnostic};
use crate::ir::{Policy, Rule, Target};
use crate::space::{BitSet, RuleBox, Space};

/// Work (box and class visits) one search may do.
const SEARCH_BUDGET: u64 = 1_000_000;
/// Work all searches of one policy may do together.
const TOTAL_BUDGET: u64 = 25_000_000;

type Point = [usize; Field::COUNT];
type Target6 = [BitSet; Field::COUNT];

/// The answer to "is this box covered?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cover {
    Covered,
    Witness(Point),
    Exhausted,
}

/// Per-field columns: for each class, the set of rules whose box accepts it.
#[derive(Debug)]
pub struct Columns {
    pub by_field: [Vec<BitSet>; Field::COUNT],
    pub rules: usize,
}

impl Columns {
    /// Transposes rule boxes into class columns.
    #[must_use]
    pub fn of(space: &Space) -> Self {
        let rules = space.boxes.len();
        let by_field = Field::ALL.map(|f| {
            let n = space.field(f).len();
            let mut unconstrained = BitSet::empty(rules);
            for (r, b) in space.boxes.iter().enumerate() {
                if b.sets.get(f.index()).is_some_and(Option::is_none) {
                    unconstrained.insert(r);
                }
            }
            let mut cols = vec![unconstrained; n];
            for (r, b) in space.boxes.iter().enumerate() {
                if let Some(Some(set)) = b.sets.get(f.index()) {
                    for c in set.iter() {
                        if let Some(col) = cols.get_mut(c) {
                            col.insert(r);
                        }
                    }
                }
            }
            cols
        });
        Self { by_field, rules }
    }

    /// A superset of the rules below `limit` whose boxes meet `t` (exact on every field
    /// where `t` is small; fields where `t` spans most classes are not used to filter,
    /// which keeps this cheap for `!=` and `not in` conditions).
    fn candidates(&self, t: &Target6, limit: usize) -> Vec<usize> {
        let mut acc = BitSet::full(self.rules);
        acc.truncate(limit);
        for (f, set) in t.iter().enumerate() {
            let Some(cols) = self.by_field.get(f) else {
                continue;
            };
            if set.count() * 2 > cols.len() {
                continue;
            }
            let mut any = BitSet::empty(self.rules);
            for c in set.iter() {
                if let Some(col) = cols.get(c) {
                    any.or_with(col);
                }
            }
            acc.and_with(&any);
        }
        acc.iter().collect()
    }
}

/// The search engine with its shared budget.
pub struct Prover<'a> {
    pub space: &'a Space,
    pub columns: Columns,
    total: u64,
}

impl std::fmt::Debug for Prover<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<'a> Prover<'a> {
    #[must_use]
    pub fn new(space: &'a Space) -> Self {
        Self {
            space,
            columns: Columns::of(space),
            total: TOTAL_BUDGET,
        }
    }

    /// A box cut to the classes that hold values.
    #[must_use]
    pub fn materialize(&self, b: &RuleBox) -> Target6 {
        Field::ALL.map(|f| {
            let mut s = self.space.field(f).universe.clone();
            if let Some(Some(set)) = b.sets.get(f.index()) {
                s.and_with(set);
            }
            s
        })
    }

    fn meets(t: &Target6, o: &RuleBox) -> bool {
        t.iter().zip(&o.sets).all(|(ts, os)| match os {
            None => !ts.is_empty(),
            Some(s) => ts.intersects(s),
        })
    }

    /// How box `o` relates to `t`: `None` if they do not meet, else the mask of fields
    /// on which `o` does not contain `t` (0 means `o` contains `t`).
    fn relate(t: &Target6, o: &RuleBox) -> Option<u8> {
        let mut mask = 0u8;
        for (f, (ts, os)) in t.iter().zip(&o.sets).enumerate() {
            match os {
                None if ts.is_empty() => return None,
                None => {}
                Some(s) => {
                    if !ts.intersects(s) {
                        return None;
                    }
                    if !ts.is_subset(s) {
                        mask |= 1 << f;
                    }
                }
            }
        }
        Some(mask)
    }

    /// Whether the rules `others` (indices into the space's boxes) cover `t`.
    ///
    /// Partition refinement: each box carries the mask of fields on which it cuts the
    /// current target. A step picks the field most boxes cut and splits the target's
    /// classes on it into groups contained by the same boxes; each group is a child
    /// target whose candidates are those boxes plus the boxes that did not cut that
    /// field, all of which still meet the child and no longer cut it. So no node re-tests
    /// boxes, the field mask only shrinks (depth ≤ 6), a box with an empty mask proves the
    /// node covered, and a node with no boxes is a witness. The budget counts box and
    /// class visits, so the worst case is bounded whatever the policy.
    pub fn cover(&mut self, t: Target6, others: &[usize]) -> Cover {
        let boxes = &self.space.boxes;
        let mut budget = SEARCH_BUDGET.min(self.total);
        let start = budget;
        let result = 'search: {
            if t.iter().any(BitSet::is_empty) {
                break 'search Cover::Covered;
            }
            let root_cost = others.len() as u64;
            if budget < root_cost {
                break 'search Cover::Exhausted;
            }
            budget -= root_cost;
            let live: Vec<(usize, u8)> = others
                .iter()
                .filter_map(|&i| {
                    boxes
                        .get(i)
                        .and_then(|o| Self::relate(&t, o))
                        .map(|m| (i, m))
                })
                .collect();
            let mut stack: Vec<(Target6, Vec<(usize, u8)>)> = vec![(t, live)];
            while let Some((t, live)) = stack.pop() {
                let cost = live.len() as u64 + 1;
                if budget < cost {
                    break 'search Cover::Exhausted;
                }
                budget -= cost;
                if live.is_empty() {
                    break 'search Cover::Witness(t.map(|s| s.first().unwrap_or_default()));
                }
                if live.iter().any(|&(_, m)| m == 0) {
                    continue;
                }
                // Split on the field the most boxes cut: the most progress per step.
                let Some(f) = (0..Field::COUNT).max_by_key(|&f| {
                    (
                        live.iter().filter(|&&(_, m)| m >> f & 1 == 1).count(),
                        std::cmp::Reverse(f),
                    )
                }) else {
                    continue;
                };
                let Some(tf) = t.get(f) else { continue };
                let bit = 1u8 << f;
                let mut always: Vec<(usize, u8)> = Vec::new();
                let mut by_class: std::collections::BTreeMap<usize, Vec<(usize, u8)>> =
                    std::collections::BTreeMap::new();
                for &(i, m) in &live {
                    if m & bit == 0 {
                        always.push((i, m));
                        continue;
                    }
                    let Some(Some(s)) = boxes.get(i).and_then(|o| o.sets.get(f)) else {
                        continue;
                    };
                    let mut inside = tf.clone();
                    inside.and_with(s);
                    let visits = inside.words().len() as u64 + inside.count() as u64;
                    if budget < visits {
                        break 'search Cover::Exhausted;
                    }
                    budget -= visits;
                    for c in inside.iter() {
                        by_class.entry(c).or_default().push((i, m & !bit));
                    }
                }
                // Classes grouped by the cutting boxes that contain them; classes none
                // contains form the group with an empty signature.
                let n = tf.words().len() * 64;
                let mut groups: std::collections::HashMap<Vec<(usize, u8)>, BitSet> =
                    std::collections::HashMap::new();
                let mut rest = tf.clone();
                for (c, sig) in by_class {
                    rest.remove(c);
                    groups
                        .entry(sig)
                        .or_insert_with(|| BitSet::empty(n))
                        .insert(c);
                }
                if !rest.is_empty() {
                    groups.insert(Vec::new(), rest);
                }
                let mut children: Vec<(Vec<(usize, u8)>, BitSet)> = groups.into_iter().collect();
                // Children with the fewest boxes are explored first (a witness is likeliest
                // there), lowest classes breaking ties so the order is deterministic. The
                // stack pops the last pushed, hence the reversed sort.
                children
                    .sort_by_key(|(sig, classes)| std::cmp::Reverse((sig.len(), classes.first())));
                for (sig, classes) in children {
                    let mut child = t.clone();
                    if let Some(cf) = child.get_mut(f) {
                        *cf = classes;
                    }
                    let mut cands = always.clone();
                    cands.extend(sig);
                    stack.push((child, cands));
                }
            }
            Cover::Covered
        };
        self.total -= start - budget;
        result
    }

    /// Rules below `limit` that meet `t`, exactly.
    #[must_use]
    pub fn meeting(&self, t: &Target6, limit: usize) -> Vec<usize> {
        self.columns
            .candidates(t, limit)
            .into_iter()
            .filter(|&i| self.space.boxes.get(i).is_some_and(|o| Self::meets(t, o)))
            .collect()
    }

    /// A smallest-effort subset of `cover_set` that still covers `t` (greedy; used only
    /// to name fewer rules in a message).
    fn minimize(&mut self, t: &Target6, cover_set: Vec<usize>) -> Vec<usize> {
        if cover_set.len() > 12 {
            return cover_set;
        }
        let mut keep = cover_set;
        let mut i = keep.len();
        while i > 0 {
            i -= 1;
            let mut trial = keep.clone();
            trial.remove(i);
            if self.cover(t.clone(), &trial) == Cover::Covered {
                keep = trial;
            }
        }
        keep
    }
}

/// "rule 0 `a`", "rule 0 `a` and rule 2", "rule 0, rule 1 and 3 more".
fn rule_list(policy: &Policy, rules: &[usize]) -> String {
    let mut shown: Vec<String> = rules
        .iter()
        .take(4)
        .filter_map(|&i| policy.rules.get(i).map(|r| r.label(i)))
        .collect();
    let more = rules.len().saturating_sub(shown.len());
    if more > 0 {
        shown.push(format!("{more} more"));
    }
    match shown.split_last() {
        Some((last, init)) if !init.is_empty() => format!("{} and {last}", init.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

fn same_destination(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Deny { .. }, Target::Deny { .. }) => true,
        (Target::Route { .. }, Target::Route { .. }) => a.endpoints() == b.endpoints(),
        _ => false,
    }
}

fn destination(policy: &Policy, t: &Target) -> String {
    match t {
        Target::Deny { .. } => "deny".to_owned(),
        Target::Route { .. } => t
            .endpoints()
            .iter()
            .filter_map(|&e| policy.endpoints.get(e).map(|e| format!("`{}`", e.spec.id)))
            .collect::<Vec<_>>()
            .join(" → "),
    }
}

/// Runs every analysis and returns its diagnostics. Reachability and the data-class
/// check have separate total budgets, so hard reachability questions (warnings) can never
/// starve the safety check.
#[must_use]
pub fn analyze(policy: &Policy, prover: &mut Prover<'_>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    prover.total = TOTAL_BUDGET;
    reachability(policy, prover, &mut diags);
    prover.total = TOTAL_BUDGET;
    leaks(policy, prover, &mut diags);
    diags
}

fn reachability(policy: &Policy, prover: &mut Prover<'_>, diags: &mut Vec<Diagnostic>) {
    let mut unreachable = vec![false; policy.rules.len()];
    for (r, rule) in policy.rules.iter().enumerate() {
        let Some(b) = prover.space.boxes.get(r) else {
            continue;
        };
        let t = prover.materialize(b);
        let head = rule_head(rule);
        if t.iter().any(BitSet::is_empty) {
            if let Some(u) = unreachable.get_mut(r) {
                *u = true;
            }
            diags.push(
                Diagnostic::warning(
                    Code::UnreachableRule,
                    format!("{} can never match", rule.label(r)),
                )
                .label(head, "no request satisfies all of its conditions at once")
                .help("check the conditions of this rule"),
            );
            continue;
        }
        let earlier = prover.meeting(&t, r);
        match prover.cover(t.clone(), &earlier) {
            Cover::Covered => {
                if let Some(u) = unreachable.get_mut(r) {
                    *u = true;
                }
                let covering = prover.minimize(&t, earlier);
                let mut d = Diagnostic::warning(
                    Code::UnreachableRule,
                    format!(
                        "{} is unreachable: {} {} every request it matches",
                        rule.label(r),
                        rule_list(policy, &covering),
                        if covering.len() == 1 {
                            "covers"
                        } else {
                            "cover"
                        }
                    ),
                )
                .label(head, "no request can reach this rule");
                for &i in covering.iter().take(4) {
                    if let Some(e) = policy.rules.get(i) {
                        d = d.secondary(rule_head(e), format!("{} matches first", e.label(i)));
                    }
                }
                diags.push(d.help("remove the rule, or move it above the rules that cover it"));
            }
            Cover::Exhausted => diags.push(
                Diagnostic::warning(
                    Code::ReachabilityUnknown,
                    format!("could not prove whether {} is reachable", rule.label(r)),
                )
                .label(head, "the search budget ran out")
                .note(format!("{} earlier rules overlap it", earlier.len()))
                .help("this is not a finding; simplify overlapping rules to get a definite answer"),
            ),
            Cover::Witness(_) => {
                let clash: Vec<usize> = earlier
                    .iter()
                    .copied()
                    .filter(|&i| !unreachable.get(i).copied().unwrap_or(false))
                    .filter(|&i| {
                        policy
                            .rules
                            .get(i)
                            .is_some_and(|e| !same_destination(&e.target, &rule.target))
                    })
                    .collect();
                let Some(&first) = clash.first() else {
                    continue;
                };
                let Some(other) = policy.rules.get(first) else {
                    continue;
                };
                let mut both = t.clone();
                if let Some(o) = prover.space.boxes.get(first) {
                    for (s, os) in both.iter_mut().zip(&o.sets) {
                        if let Some(os) = os {
                            s.and_with(os);
                        }
                    }
                }
                let point = both.map(|s| s.first().unwrap_or_default());
                // Where that request really goes: the first rule whose box holds it (an
                // earlier rule with the same destination as `r` may catch it first).
                let winner = (0..r)
                    .find(|&i| prover.space.boxes.get(i).is_some_and(|b| holds(b, &point)))
                    .and_then(|i| policy.rules.get(i))
                    .unwrap_or(other);
                diags.push(
                    Diagnostic::warning(
                        Code::OverlappingRoute,
                        format!(
                            "{} overlaps {}, which {} elsewhere",
                            rule.label(r),
                            rule_list(policy, &clash),
                            if clash.len() == 1 { "routes" } else { "route" }
                        ),
                    )
                    .label(head, format!("routes to {}", destination(policy, &rule.target)))
                    .secondary(rule_head(other), format!("routes to {} and wins where both match", destination(policy, &other.target)))
                    .note(format!("for example, {} goes to {}", prover.space.describe_point(&point), destination(policy, &winner.target)))
                    .help("if that is intended, nothing to do; otherwise narrow one of the rules or reorder them"),
                );
            }
        }
    }
}

/// Whether a box holds a point.
#[must_use]
pub fn holds(b: &RuleBox, point: &Point) -> bool {
    b.sets
        .iter()
        .zip(point)
        .all(|(s, &c)| s.as_ref().is_none_or(|s| s.contains(c)))
}

fn rule_head(rule: &Rule) -> crate::source::Span {
    rule.head
}

fn leaks(policy: &Policy, prover: &mut Prover<'_>, diags: &mut Vec<Diagnostic>) {
    let dc_space = prover.space.field(Field::DataClass);
    let switchyard_table::Partition::Str(dc_partition) = &dc_space.partition else {
        return;
    };
    for dc in policy.data_classes.iter().filter(|d| d.spec.stays_private) {
        let Some(class) = dc_partition.literal_class(&dc.spec.id) else {
            continue;
        };
        let mut only = BitSet::empty(dc_space.len());
        only.insert(class as usize);
        let restrict = |mut t: Target6| {
            if let Some(s) = t.get_mut(Field::DataClass.index()) {
                s.and_with(&only);
            }
            t
        };
        let rules = policy.rules.iter().enumerate().map(|(i, r)| (Some(i), r));
        for (index, rule) in rules.chain(std::iter::once((None, &policy.default))) {
            let public = public_targets(policy, &rule.target);
            if public.is_empty() {
                continue;
            }
            let (t, limit) = match index {
                Some(i) => match prover.space.boxes.get(i) {
                    Some(b) => (restrict(prover.materialize(b)), i),
                    None => continue,
                },
                None => (
                    restrict(prover.materialize(&RuleBox::any())),
                    policy.rules.len(),
                ),
            };
            if t.iter().any(BitSet::is_empty) {
                continue;
            }
            let earlier = prover.meeting(&t, limit);
            let via = match index {
                Some(i) => rule.label(i),
                None => "the default".to_owned(),
            };
            let outcome = prover.cover(t, &earlier);
            let (point, code) = match outcome {
                Cover::Covered => continue,
                Cover::Witness(p) => (Some(p), Code::PrivateDataLeak),
                Cover::Exhausted => (None, Code::LeakUnproven),
            };
            for (endpoint, span, role) in public {
                let message = match code {
                    Code::PrivateDataLeak => format!(
                        "data class `{}` must stay private but can reach public endpoint `{endpoint}` through {via}",
                        dc.spec.id
                    ),
                    _ => format!(
                        "could not prove that data class `{}` never reaches public endpoint `{endpoint}` through {via}",
                        dc.spec.id
                    ),
                };
                let mut d = Diagnostic::error(code, message)
                    .label(span, format!("{role} is public"))
                    .secondary(dc.span, "declared `stays_private: true` here");
                if let Some(p) = point {
                    d = d.note(format!(
                        "for example, {} is sent here",
                        prover.space.describe_point(&p)
                    ));
                }
                diags.push(d.help(format!(
                    "route `{}` to a private endpoint in an earlier rule (e.g. `match: {{ data_class: {} }}`), or give this endpoint a private `transport`",
                    dc.spec.id, dc.spec.id
                )));
            }
        }
    }
}

/// Public endpoints a target can send to, with the span and role of each mention.
fn public_targets(policy: &Policy, t: &Target) -> Vec<(String, crate::source::Span, &'static str)> {
    let mut out = Vec::new();
    let mentions = t.mentions();
    for (e, span, role) in mentions {
        if let Some(ep) = policy.endpoints.get(e)
            && ep.spec.transport.is_public()
        {
            out.push((ep.spec.id.clone(), span, role));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze_with_budget(yaml: &str, budget: u64) -> Vec<Diagnostic> {
        let (_, out) = crate::compile_str("t.yaml", yaml).unwrap();
        let policy = out.compiled.map(|c| c.policy).unwrap_or_else(|| {
            let mut s = crate::source::Sources::new();
            let id = s.add("t.yaml", yaml);
            crate::check::check(&s, id, None).policy.unwrap()
        });
        let space = Space::of_policy(&policy);
        let mut prover = Prover::new(&space);
        let mut diags = Vec::new();
        prover.total = budget;
        reachability(&policy, &mut prover, &mut diags);
        prover.total = budget;
        leaks(&policy, &mut prover, &mut diags);
        diags
    }

    const COVERED: &str = "
version: v1
endpoints:
  - { id: gpu, type: vllm, url: \"https://gpu.example.com\", transport: privatelink }
  - { id: cloud, type: openai, transport: public }
data_classes:
  - { id: pii, stays_private: true }
rules:
  - { name: pii, match: { data_class: pii }, route_to: gpu }
  - { name: a, match: { latency_budget_ms: \"<300\" }, route_to: cloud }
  - { name: b, match: { latency_budget_ms: \">=200\" }, route_to: cloud }
  - { name: c, match: { latency_budget_ms: \"100..400\", tenant: acme }, route_to: cloud }
  - default: { route_to: cloud }
";

    #[test]
    fn joint_cover_is_proven_with_enough_budget() {
        let diags = analyze_with_budget(COVERED, TOTAL_BUDGET);
        assert!(
            diags
                .iter()
                .any(|d| d.code == Code::UnreachableRule && d.message.starts_with("rule 3"))
        );
        assert!(
            !diags
                .iter()
                .any(|d| matches!(d.code, Code::ReachabilityUnknown | Code::LeakUnproven))
        );
    }

    #[test]
    fn an_exhausted_budget_says_could_not_prove_and_never_guesses() {
        let diags = analyze_with_budget(COVERED, 1);
        assert!(diags.iter().any(|d| d.code == Code::ReachabilityUnknown));
        assert!(!diags.iter().any(|d| d.code == Code::UnreachableRule));
        // The data-class check treats "could not prove" as an error: it guards data.
        let leak = diags.iter().find(|d| d.code == Code::LeakUnproven).unwrap();
        assert!(leak.message.contains("could not prove"), "{}", leak.message);
    }
}
