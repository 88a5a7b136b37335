//! `policyc diff OLD NEW`: every region of the request space whose route changes.
//!
//! Both sides are tables (policies are compiled first). The two partitions are merged
//! into one joint partition per field; each joint class's representative is classified
//! in both tables, which gives every old and new rule a box over the joint space. A
//! region is a pair (old rule i, new rule j) with different destinations such that some
//! request first-matches i in the old table and j in the new one; the cover search of
//! [`crate::analysis`] finds one such request or proves there is none.

use std::fmt::Write as _;

use serde::Serialize;
use switchyard_table::{Action, Atom, Field, Table};

use crate::analysis::{Cover, Prover};
use crate::space::{BitSet, FieldSpace, Rep, RuleBox, Space};

/// One side of a changed region.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Side {
    pub rule_index: u32,
    pub rule_name: Option<String>,
    pub is_default: bool,
    /// `deny`, or the endpoint then fallbacks joined by ` → `.
    pub destination: String,
}

/// A region whose route changes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Region {
    pub old: Side,
    pub new: Side,
    /// One request in the region, absent attributes left out.
    pub example: std::collections::BTreeMap<&'static str, String>,
    /// `false` when the search ran out of budget: the region may or may not exist.
    pub proven: bool,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    pub regions: Vec<Region>,
    /// Endpoint definitions added, removed or changed (by id).
    pub endpoint_changes: Vec<String>,
}

fn destination(t: &Table<'_>, index: u32) -> String {
    let Some(r) = t.rule(index) else {
        return String::new();
    };
    if r.action() == Action::Deny {
        return "deny".to_owned();
    }
    let set: Vec<&str> = r.route_set().map(|e| e.id()).collect();
    let first = if r.is_balanced() {
        format!("[{}]", set.join(", "))
    } else {
        set.join("")
    };
    std::iter::once(first)
        .chain(r.fallback().map(|e| e.id().to_owned()))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn side(t: &Table<'_>, index: u32) -> Side {
    let r = t.rule(index);
    Side {
        rule_index: index,
        rule_name: r
            .map(|r| r.name())
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        is_default: r.is_some_and(|r| r.is_default()),
        destination: destination(t, index),
    }
}

/// The boxes of `t`'s rules over the joint partition.
fn boxes(t: &Table<'_>, fields: &[FieldSpace; Field::COUNT]) -> Vec<RuleBox> {
    let n = t.rule_count() as usize;
    let mut out = vec![RuleBox::any(); n];
    for (f, fs) in Field::ALL.into_iter().zip(fields) {
        let view = t.field(f);
        if !view.is_used() {
            continue;
        }
        let mut sets = vec![BitSet::empty(fs.len()); n];
        for (c, rep) in fs.reps.iter().enumerate() {
            let class = match rep {
                None => continue,
                Some(Rep::Absent) => 0,
                Some(Rep::Str(s)) => view.classify_str(Some(s.as_bytes())),
                Some(Rep::Num(v)) => view.classify_num(Some(*v)),
            };
            for r in view.rules_accepting(class) {
                if let Some(set) = sets.get_mut(r as usize) {
                    set.insert(c);
                }
            }
        }
        for (b, set) in out.iter_mut().zip(sets) {
            if let Some(slot) = b.sets.get_mut(f.index()) {
                *slot = Some(set);
            }
        }
    }
    out
}

fn joint_field(f: Field, old: &Table<'_>, new: &Table<'_>) -> FieldSpace {
    let mut atoms = Vec::new();
    let mut bounds = Vec::new();
    for t in [old, new] {
        let v = t.field(f);
        atoms.extend(v.literals().map(|l| Atom::Literal(l.text.to_owned())));
        atoms.extend(v.globs().map(|g| Atom::Glob(g.prefix.to_owned())));
        bounds.extend(v.bounds());
    }
    FieldSpace::new(f, atoms, bounds)
}

fn endpoint_changes(old: &Table<'_>, new: &Table<'_>) -> Vec<String> {
    let describe = |e: &switchyard_table::EndpointView<'_>| {
        let models: Vec<String> = e
            .models_with_upstream()
            .map(|(name, id)| {
                if name == id {
                    name.to_owned()
                } else {
                    format!("{name}->{id}")
                }
            })
            .collect();
        let mut settings: Vec<String> = e
            .text_settings()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!(" {k}={v}"))
            .collect();
        if let Some(api) = e.bedrock_api() {
            settings.push(format!(" bedrock_api={api}"));
        }
        format!(
            "type={} url={} transport={} models=[{}]{}",
            e.kind(),
            if e.url().is_empty() { "-" } else { e.url() },
            e.transport(),
            models.join(", "),
            settings.concat()
        )
    };
    let mut out = Vec::new();
    for e in old.endpoints() {
        match new.endpoint_by_id(e.id()) {
            None => out.push(format!("endpoint `{}` removed", e.id())),
            Some(n) if describe(&n) != describe(&e) => {
                out.push(format!(
                    "endpoint `{}` changed: {} → {}",
                    e.id(),
                    describe(&e),
                    describe(&n)
                ));
            }
            Some(_) => {}
        }
    }
    for e in new.endpoints() {
        if old.endpoint_by_id(e.id()).is_none() {
            out.push(format!("endpoint `{}` added: {}", e.id(), describe(&e)));
        }
    }
    out
}

/// Compares two tables.
#[must_use]
pub fn diff(old: &Table<'_>, new: &Table<'_>) -> Report {
    let fields = Field::ALL.map(|f| joint_field(f, old, new));
    let old_boxes = boxes(old, &fields);
    let new_boxes = boxes(new, &fields);
    let n_old = old_boxes.len();
    let n_new = new_boxes.len();
    let space = Space {
        fields,
        boxes: old_boxes.into_iter().chain(new_boxes).collect(),
    };
    let mut prover = Prover::new(&space);
    let any = RuleBox::any();
    let mut regions = Vec::new();
    for i in 0..=n_old {
        let old_box = if i == n_old {
            &any
        } else {
            space.boxes.get(i).unwrap_or(&any)
        };
        let t_old = prover.materialize(old_box);
        if t_old.iter().any(BitSet::is_empty) {
            continue;
        }
        let old_dest = destination(old, to_u32(i));
        let mut news: Vec<usize> = prover
            .meeting(&t_old, n_old + n_new)
            .into_iter()
            .filter(|&k| k >= n_old)
            .map(|k| k - n_old)
            .collect();
        news.push(n_new);
        for j in news {
            if destination(new, to_u32(j)) == old_dest {
                continue;
            }
            let mut t = t_old.clone();
            if j < n_new
                && let Some(b) = space.boxes.get(n_old + j)
            {
                for (s, bs) in t.iter_mut().zip(&b.sets) {
                    if let Some(bs) = bs {
                        s.and_with(bs);
                    }
                }
            }
            if t.iter().any(BitSet::is_empty) {
                continue;
            }
            let others: Vec<usize> = prover
                .meeting(&t, n_old + n_new)
                .into_iter()
                .filter(|&k| k < i || (k >= n_old && k < n_old + j))
                .collect();
            let (point, proven) = match prover.cover(t.clone(), &others) {
                Cover::Covered => continue,
                Cover::Witness(p) => (p, true),
                Cover::Exhausted => (t.map(|s| s.first().unwrap_or_default()), false),
            };
            let example = Field::ALL
                .into_iter()
                .zip(point)
                .filter(|(_, c)| *c != 0)
                .map(|(f, c)| (f.key(), space.field(f).show(c)))
                .collect();
            regions.push(Region {
                old: side(old, to_u32(i)),
                new: side(new, to_u32(j)),
                example,
                proven,
            });
        }
    }
    Report {
        regions,
        endpoint_changes: endpoint_changes(old, new),
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn side_text(s: &Side) -> String {
    let rule = if s.is_default {
        "default".to_owned()
    } else {
        match &s.rule_name {
            Some(n) => format!("rule {} `{n}`", s.rule_index),
            None => format!("rule {}", s.rule_index),
        }
    };
    format!("{rule} → {}", s.destination)
}

/// Human rendering.
#[must_use]
pub fn render_human(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.endpoint_changes {
        let _ = writeln!(out, "{c}");
    }
    if r.regions.is_empty() {
        let _ = writeln!(out, "no request changes route");
        return out;
    }
    let n = r.regions.len();
    let _ = writeln!(
        out,
        "{n} {} of the request space {} route:",
        if n == 1 { "region" } else { "regions" },
        if n == 1 { "changes" } else { "change" }
    );
    for (k, region) in r.regions.iter().enumerate() {
        let example: Vec<String> = region
            .example
            .iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect();
        let example = if example.is_empty() {
            "a request with no routing attributes".to_owned()
        } else {
            example.join(" ")
        };
        let _ = writeln!(out, "  [{}] old: {}", k + 1, side_text(&region.old));
        let _ = writeln!(out, "      new: {}", side_text(&region.new));
        if region.proven {
            let _ = writeln!(out, "      e.g. {example}");
        } else {
            let _ = writeln!(
                out,
                "      could not prove this region is non-empty (search budget ran out); candidate: {example}"
            );
        }
    }
    out
}
