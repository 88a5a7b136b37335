//! Lowering: checked policy + request space → [`TableSpec`], the table crate's input.
//!
//! Column bit-vectors come straight from the space's rule boxes (one column per class,
//! identical columns stored once). Fields no rule reads are stored as a single all-ones
//! column and flagged unused, so the evaluator skips them.

use std::collections::HashMap;

use switchyard_table::{
    Action, Field, FieldSpec, NumPartition, Partition, RuleSpec, StrPartition, TableSpec,
};

use crate::analysis::Columns;
use crate::ir::{Policy, Rule, Target};
use crate::source::Sources;
use crate::space::{BitSet, Space};

/// Builds the table spec of a checked policy.
#[must_use]
pub fn lower(
    sources: &Sources,
    policy: &Policy,
    space: &Space,
    columns: &Columns,
    revision: u64,
) -> TableSpec {
    let rules = policy.rules.len();
    let fields = Field::ALL.map(|f| {
        let used = policy.rules.iter().any(|r| r.condition(f).is_some());
        if !used {
            let partition = if f.kind().is_string() {
                Partition::Str(StrPartition::default())
            } else {
                Partition::Num(NumPartition::default())
            };
            return FieldSpec {
                used,
                partition,
                class_columns: vec![0, 0],
                columns: vec![BitSet::full(rules).words().to_vec()],
            };
        }
        let mut index: HashMap<&BitSet, u32> = HashMap::new();
        let mut distinct: Vec<Vec<u64>> = Vec::new();
        let cols = columns
            .by_field
            .get(f.index())
            .map_or(&[][..], Vec::as_slice);
        let class_columns = cols
            .iter()
            .map(|col| {
                *index.entry(col).or_insert_with(|| {
                    distinct.push(col.words().to_vec());
                    u32::try_from(distinct.len() - 1).unwrap_or(u32::MAX)
                })
            })
            .collect();
        FieldSpec {
            used,
            partition: space.field(f).partition.clone(),
            class_columns,
            columns: distinct,
        }
    });
    TableSpec {
        revision,
        source_digest: policy.digest,
        endpoints: policy.endpoints.iter().map(|e| e.spec.clone()).collect(),
        tenants: policy.tenants.iter().map(|t| t.spec.clone()).collect(),
        data_classes: policy.data_classes.iter().map(|d| d.spec.clone()).collect(),
        rules: policy.rules.iter().map(|r| rule_spec(sources, r)).collect(),
        default: rule_spec(sources, &policy.default),
        fields,
    }
}

fn rule_spec(sources: &Sources, rule: &Rule) -> RuleSpec {
    let (line, column) = sources
        .file(rule.span.file)
        .map_or((0, 0), |f| f.line_col(rule.span.start as usize));
    let (action, endpoint, balanced, fallback, resend_on_reset) = match &rule.target {
        Target::Route {
            endpoint,
            balanced,
            fallback,
            resend_on_reset,
            ..
        } => (
            Action::Route,
            to_u32(*endpoint),
            balanced.iter().map(|&b| to_u32(b)).collect(),
            fallback.iter().map(|&f| to_u32(f)).collect(),
            *resend_on_reset,
        ),
        Target::Deny { .. } => (Action::Deny, u32::MAX, Vec::new(), Vec::new(), false),
    };
    RuleSpec {
        name: rule.name.clone().unwrap_or_default(),
        conditions: Field::ALL.map(|f| {
            rule.condition(f)
                .map(|c| c.text.clone())
                .unwrap_or_default()
        }),
        action,
        endpoint,
        balanced,
        fallback,
        resend_on_reset,
        line: to_u32(line),
        column: to_u32(column),
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
