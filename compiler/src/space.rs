//! The request space: each field's domain cut into classes (see
//! `switchyard_table::Partition`), a representative value for every class, and each rule
//! as a *box*: one class set per field. A request is a point (one class per field); a rule
//! matches it iff every field's class is in the rule's set.
//!
//! Lowering turns boxes into the table's columns; the analyses (reachability, overlap,
//! data-class leaks) and `diff` search boxes; every concrete example request they print
//! is built from class representatives.

use switchyard_table::{ABSENT, Atom, Field, NumPartition, OTHER, Partition, StrPartition};

use crate::ir::{Policy, Pred, StrPattern};

/// A fixed-size set of small integers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// The empty set over `0..len`.
    #[must_use]
    pub fn empty(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// The full set `0..len`.
    #[must_use]
    pub fn full(len: usize) -> Self {
        let mut s = Self {
            words: vec![!0; len.div_ceil(64)],
        };
        s.truncate(len);
        s
    }

    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    #[must_use]
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    #[must_use]
    pub fn first(&self) -> Option<usize> {
        self.words
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }

    #[must_use]
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn and_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= *b;
        }
    }

    pub fn or_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    pub fn and_not_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !*b;
        }
    }

    #[must_use]
    pub fn intersects(&self, other: &BitSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    #[must_use]
    pub fn is_subset(&self, other: &BitSet) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .all(|(a, b)| a & !b == 0)
    }

    /// Keeps only members below `len`.
    pub fn truncate(&mut self, len: usize) {
        for (i, w) in self.words.iter_mut().enumerate() {
            let lo = i * 64;
            if lo >= len {
                *w = 0;
            } else if len - lo < 64 {
                *w &= (1u64 << (len - lo)) - 1;
            }
        }
    }

    /// The raw words (bit `i` of word `i / 64`).
    #[must_use]
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// A set from raw words.
    #[must_use]
    pub fn from_words(words: Vec<u64>) -> Self {
        Self { words }
    }
}

/// A concrete value standing for a class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rep {
    Absent,
    Str(String),
    Num(u64),
}

/// One field's partition, with what the analyses need to know about each class.
#[derive(Clone, Debug)]
pub struct FieldSpace {
    pub field: Field,
    pub partition: Partition,
    /// A value of each class; `None` if the class holds no value (see `representative`).
    pub reps: Vec<Option<Rep>>,
    /// Classes that hold at least one value: the universe the analyses search.
    pub universe: BitSet,
}

impl FieldSpace {
    /// Builds a field's partition from the atoms (string fields) or interval starts
    /// (numeric fields) its conditions mention.
    #[must_use]
    pub fn new(field: Field, atoms: Vec<Atom>, bounds: Vec<u64>) -> Self {
        let partition = if field.kind().is_string() {
            Partition::Str(StrPartition::new(atoms))
        } else {
            Partition::Num(NumPartition::new(bounds))
        };
        let n = partition.class_count() as usize;
        let reps: Vec<Option<Rep>> = (0..n)
            .map(|c| representative(&partition, class_u32(c)))
            .collect();
        let mut universe = BitSet::empty(n);
        for (c, r) in reps.iter().enumerate() {
            if r.is_some() {
                universe.insert(c);
            }
        }
        Self {
            field,
            partition,
            reps,
            universe,
        }
    }

    /// Number of classes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.reps.len()
    }

    /// Whether the field has no classes (never: absent always exists).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reps.is_empty()
    }

    /// The exact set of classes a predicate accepts.
    #[must_use]
    pub fn classes_of(&self, pred: &Pred) -> BitSet {
        let n = self.len();
        let mut set = BitSet::empty(n);
        match (pred, &self.partition) {
            (Pred::Str { negated, patterns }, Partition::Str(p)) => {
                for pat in patterns {
                    match pat {
                        StrPattern::Exact(s) => {
                            if let Some(c) = p.literal_class(s) {
                                set.insert(c as usize);
                            }
                        }
                        StrPattern::Prefix(s) => {
                            for c in p.classes_with_prefix(s) {
                                set.insert(c as usize);
                            }
                        }
                    }
                }
                if *negated {
                    let mut present = BitSet::full(n);
                    present.remove(ABSENT as usize);
                    present.and_not_with(&set);
                    set = present;
                }
            }
            (Pred::Num { ranges }, Partition::Num(p)) => {
                for &(lo, hi) in ranges {
                    for c in p.classify(lo)..=p.classify(hi) {
                        set.insert(c as usize);
                    }
                }
            }
            _ => {}
        }
        set
    }

    /// Describes a class's representative for an example request, e.g. `acme-x`.
    #[must_use]
    pub fn show(&self, class: usize) -> String {
        match self.reps.get(class).cloned().flatten() {
            Some(Rep::Absent) | None => "(absent)".to_owned(),
            Some(Rep::Str(s)) => s,
            Some(Rep::Num(v)) if self.field == Field::CostCapPer1k => {
                switchyard_table::Micros(v).to_string()
            }
            Some(Rep::Num(v)) => v.to_string(),
        }
    }
}

fn class_u32(c: usize) -> u32 {
    u32::try_from(c).unwrap_or(u32::MAX)
}

/// A value of `class`, or `None` if it holds none. Literal and interval classes always
/// hold one; a glob class or "other" is probed with short suffixes chosen to dodge every
/// longer glob and literal. The only empty class in practice is "other" when a bare `*`
/// glob exists; should probing ever fail for another class, that class is left out of the
/// analyses' universe, which can only make them report *less* reachability, never a
/// wrong witness.
fn representative(partition: &Partition, class: u32) -> Option<Rep> {
    if class == ABSENT {
        return Some(Rep::Absent);
    }
    match partition {
        Partition::Num(p) => p.interval(class).map(|(lo, _)| Rep::Num(lo)),
        Partition::Str(p) => {
            let base = match p.atom(class) {
                Some(Atom::Literal(s)) => return Some(Rep::Str(s.clone())),
                Some(Atom::Glob(prefix)) => prefix.clone(),
                None if class == OTHER => String::new(),
                None => return None,
            };
            let firsts: &[&str] = if class == OTHER {
                &["other", "unknown", "x"]
            } else {
                &["x", "1", "z"]
            };
            let candidates = firsts.iter().map(|s| (*s).to_owned()).chain(
                "xyzabcdefghijklmnopqrstuvw0123456789_-.~"
                    .chars()
                    .flat_map(|c| {
                        (0..50).map(move |n| {
                            if n == 0 {
                                c.to_string()
                            } else {
                                format!("{c}{n}")
                            }
                        })
                    }),
            );
            candidates
                .map(|suffix| format!("{base}{suffix}"))
                .find(|v| p.classify(v.as_bytes()) == class)
                .map(Rep::Str)
        }
    }
}

/// A rule's acceptance region: a class set per field; `None` means "any value,
/// including absent".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleBox {
    pub sets: [Option<BitSet>; Field::COUNT],
}

impl RuleBox {
    /// The box accepting everything.
    #[must_use]
    pub fn any() -> Self {
        Self {
            sets: Default::default(),
        }
    }
}

/// The request space of one policy: partitions and rule boxes.
#[derive(Clone, Debug)]
pub struct Space {
    pub fields: [FieldSpace; Field::COUNT],
    /// One box per rule, default excluded; sets are exact (not cut to the universe).
    pub boxes: Vec<RuleBox>,
}

impl Space {
    /// Partitions the request space by every condition of `policy`. Declared data
    /// classes get a class of their own so the data-class check can fix one.
    #[must_use]
    pub fn of_policy(policy: &Policy) -> Self {
        let mut atoms: [Vec<Atom>; Field::COUNT] = Default::default();
        let mut bounds: [Vec<u64>; Field::COUNT] = Default::default();
        for rule in &policy.rules {
            for f in Field::ALL {
                let Some(c) = rule.condition(f) else { continue };
                match &c.pred {
                    Pred::Str { patterns, .. } => {
                        if let Some(a) = atoms.get_mut(f.index()) {
                            a.extend(patterns.iter().map(|p| match p {
                                StrPattern::Exact(s) => Atom::Literal(s.clone()),
                                StrPattern::Prefix(s) => Atom::Glob(s.clone()),
                            }));
                        }
                    }
                    Pred::Num { ranges } => {
                        if let Some(b) = bounds.get_mut(f.index()) {
                            for &(lo, hi) in ranges {
                                b.push(lo);
                                if let Some(next) = hi.checked_add(1) {
                                    b.push(next);
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(a) = atoms.get_mut(Field::DataClass.index()) {
            a.extend(
                policy
                    .data_classes
                    .iter()
                    .map(|d| Atom::Literal(d.spec.id.clone())),
            );
        }
        let [a0, a1, a2, a3, a4, a5] = atoms;
        let [b0, b1, b2, b3, b4, b5] = bounds;
        let fields = [
            FieldSpace::new(Field::Tenant, a0, b0),
            FieldSpace::new(Field::DataClass, a1, b1),
            FieldSpace::new(Field::UserRole, a2, b2),
            FieldSpace::new(Field::Model, a3, b3),
            FieldSpace::new(Field::LatencyBudgetMs, a4, b4),
            FieldSpace::new(Field::CostCapPer1k, a5, b5),
        ];
        let boxes = policy
            .rules
            .iter()
            .map(|rule| {
                let mut b = RuleBox::any();
                for (f, fs) in Field::ALL.into_iter().zip(&fields) {
                    if let (Some(c), Some(slot)) = (rule.condition(f), b.sets.get_mut(f.index())) {
                        *slot = Some(fs.classes_of(&c.pred));
                    }
                }
                b
            })
            .collect();
        Self { fields, boxes }
    }

    /// The field space of `field`.
    #[must_use]
    pub fn field(&self, field: Field) -> &FieldSpace {
        // `fields` is indexed by `Field`, which has exactly `Field::COUNT` values.
        &self.fields[field.index()]
    }

    /// A readable example request from one class per field, absent fields omitted.
    #[must_use]
    pub fn describe_point(&self, point: &[usize; Field::COUNT]) -> String {
        let parts: Vec<String> = Field::ALL
            .into_iter()
            .zip(point)
            .filter(|(_, c)| **c != ABSENT as usize)
            .map(|(f, &c)| format!("{}={}", f.key(), self.field(f).show(c)))
            .collect();
        if parts.is_empty() {
            "a request with no routing attributes".to_owned()
        } else {
            parts.join(" ")
        }
    }
}
