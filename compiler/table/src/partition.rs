//! Value partitions: how a field's domain is cut into equivalence classes.
//!
//! Every condition on a field is a union of classes, so a request value only needs to be
//! mapped to its class to know which rules accept it. This module fixes the class
//! numbering that the writer stores and the reader reproduces:
//!
//! - string fields: class 0 is "absent", class 1 is "present, matches no atom", and atom
//!   `i` (literals and glob prefixes, sorted by bytes, a glob before an equal literal) is
//!   class `2 + i`. A value's class is its exact literal if there is one, else its longest
//!   matching glob prefix, else class 1. Because matching prefixes of one value are nested,
//!   the longest one determines every glob the value matches.
//! - numeric fields: class 0 is "absent"; bounds `b0 < b1 < …` (all > 0) cut `0..=u64::MAX`
//!   into intervals `[0, b0)`, `[b0, b1)`, …, `[b_last, u64::MAX]`, classes `1, 2, …`.

use std::cmp::Ordering;
use std::ops::Range;

/// Class of an absent attribute, on every field.
pub const ABSENT: u32 = 0;
/// Class of a present string that matches no literal and no glob.
pub const OTHER: u32 = 1;

/// One cut point of a string field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Atom {
    /// A value compared exactly.
    Literal(String),
    /// A glob's literal prefix (the text before the trailing `*`).
    Glob(String),
}

impl Atom {
    /// The literal, or the glob's prefix.
    #[must_use]
    pub fn text(&self) -> &str {
        match self {
            Self::Literal(s) | Self::Glob(s) => s,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Glob(_) => 0,
            Self::Literal(_) => 1,
        }
    }

    fn order(&self, other: &Self) -> Ordering {
        self.text()
            .as_bytes()
            .cmp(other.text().as_bytes())
            .then(self.rank().cmp(&other.rank()))
    }
}

/// The partition of a string field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrPartition {
    atoms: Vec<Atom>,
}

impl StrPartition {
    /// Builds the partition from atoms in any order; duplicates are merged.
    #[must_use]
    pub fn new(mut atoms: Vec<Atom>) -> Self {
        atoms.sort_by(Atom::order);
        atoms.dedup();
        Self { atoms }
    }

    /// Atoms in class order (atom `i` is class `2 + i`).
    #[must_use]
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// Number of classes, absent and other included.
    #[must_use]
    pub fn class_count(&self) -> u32 {
        to_u32(self.atoms.len() + 2)
    }

    /// The atom behind a class, if the class is an atom's.
    #[must_use]
    pub fn atom(&self, class: u32) -> Option<&Atom> {
        let i = usize::try_from(class.checked_sub(2)?).ok()?;
        self.atoms.get(i)
    }

    fn find(&self, probe: &Atom) -> Option<u32> {
        self.atoms
            .binary_search_by(|a| a.order(probe))
            .ok()
            .map(|i| to_u32(i + 2))
    }

    /// Class of the exact literal `text`, if it is an atom.
    #[must_use]
    pub fn literal_class(&self, text: &str) -> Option<u32> {
        self.find(&Atom::Literal(text.to_owned()))
    }

    /// Class of the glob with prefix `prefix`, if it is an atom.
    #[must_use]
    pub fn glob_class(&self, prefix: &str) -> Option<u32> {
        self.find(&Atom::Glob(prefix.to_owned()))
    }

    /// The classes of every atom whose text starts with `prefix` (a contiguous run,
    /// because byte-wise order keeps strings with a common prefix together).
    #[must_use]
    pub fn classes_with_prefix(&self, prefix: &str) -> Range<u32> {
        let p = prefix.as_bytes();
        let start = self.atoms.partition_point(|a| a.text().as_bytes() < p);
        let len = self
            .atoms
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|a| a.text().as_bytes().starts_with(p))
            .count();
        to_u32(start + 2)..to_u32(start + len + 2)
    }

    /// The class of a present value.
    #[must_use]
    pub fn classify(&self, value: &[u8]) -> u32 {
        if let Ok(text) = std::str::from_utf8(value)
            && let Some(class) = self.literal_class(text)
        {
            return class;
        }
        // Longest matching glob: try the value's prefixes from longest to shortest. Only
        // valid UTF-8 prefixes can equal a glob prefix, which is always valid UTF-8.
        for len in (0..=value.len()).rev() {
            let Some(head) = value.get(..len) else {
                continue;
            };
            if let Ok(head) = std::str::from_utf8(head)
                && let Some(class) = self.glob_class(head)
            {
                return class;
            }
        }
        OTHER
    }
}

/// The partition of a numeric field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumPartition {
    bounds: Vec<u64>,
}

impl NumPartition {
    /// Builds the partition from interval starts in any order; `0` and duplicates are
    /// dropped (`0` starts the first interval already).
    #[must_use]
    pub fn new(mut bounds: Vec<u64>) -> Self {
        bounds.retain(|&b| b != 0);
        bounds.sort_unstable();
        bounds.dedup();
        Self { bounds }
    }

    /// The interval starts after 0, strictly increasing.
    #[must_use]
    pub fn bounds(&self) -> &[u64] {
        &self.bounds
    }

    /// Number of classes, absent included.
    #[must_use]
    pub fn class_count(&self) -> u32 {
        to_u32(self.bounds.len() + 2)
    }

    /// The class of a present value.
    #[must_use]
    pub fn classify(&self, value: u64) -> u32 {
        to_u32(1 + self.bounds.partition_point(|&b| b <= value))
    }

    /// The inclusive interval of a present-value class.
    #[must_use]
    pub fn interval(&self, class: u32) -> Option<(u64, u64)> {
        let i = usize::try_from(class.checked_sub(1)?).ok()?;
        let lo = if i == 0 { 0 } else { *self.bounds.get(i - 1)? };
        let hi = match self.bounds.get(i) {
            Some(&next) => next - 1,
            None if i <= self.bounds.len() => u64::MAX,
            None => return None,
        };
        Some((lo, hi))
    }
}

/// A field's partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    Str(StrPartition),
    Num(NumPartition),
}

impl Partition {
    /// Number of classes, absent included.
    #[must_use]
    pub fn class_count(&self) -> u32 {
        match self {
            Self::Str(p) => p.class_count(),
            Self::Num(p) => p.class_count(),
        }
    }
}

/// The hash of the table's literal lookup, fixed forever (formats 1 and 2) so tables are
/// byte-identical across builds and hosts. Chunks of eight bytes are folded with
/// rotate-xor (no multiply on the dependency chain) and mixed once at the end: ids are
/// short and a half-empty open-addressing table only needs a fair spread; a collision
/// costs a probe, never a wrong answer.
#[must_use]
pub fn literal_hash(bytes: &[u8]) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let len = bytes.len();
    let mut h = len as u64;
    let mut at = 0;
    while at + 8 < len {
        h = h.rotate_left(23) ^ word(bytes, at);
        at += 8;
    }
    // The last 1..=8 bytes: one overlapping 8-byte read when the value is that long (no
    // byte-by-byte copy, which would stall store-to-load forwarding), else assembled.
    let tail = if len >= 8 {
        word(bytes, len - 8)
    } else {
        short_le(bytes)
    };
    h = (h.rotate_left(23) ^ tail).wrapping_mul(K);
    u32::try_from((h >> 32) ^ (h & u64::from(u32::MAX))).unwrap_or_default()
}

/// The bytes of a value shorter than 8 bytes as a little-endian integer (byte `i` in bits
/// `8i..8i+8`, zero above), from two overlapping reads instead of a byte loop: the bytes
/// both reads cover land on the same bits, so OR-ing them is exact. Longer values: their
/// first 8 bytes.
#[inline]
pub(crate) fn short_le(b: &[u8]) -> u64 {
    let len = b.len();
    let u16_at = |at: usize| {
        b.get(at..at + 2)
            .and_then(|w| <[u8; 2]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u16::from_le_bytes(w)))
    };
    let u32_at = |at: usize| {
        b.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    match len {
        0 => 0,
        1 => b.first().map_or(0, |&x| u64::from(x)),
        2..=3 => u16_at(0) | u16_at(len - 2) << (8 * (len - 2)),
        4..=7 => u32_at(0) | u32_at(len - 4) << (8 * (len - 4)),
        _ => b.first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w)),
    }
}

/// Converts a count that the format bounds to `u32`. Tables are capped far below
/// `u32::MAX` entries by the writer, so saturation never happens in practice; it keeps
/// this conversion total.
pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlapping reads give what assembling byte by byte gives, at every length
    /// (the hash of a literal is part of the table format).
    #[test]
    fn short_le_is_the_bytes_in_order() {
        let bytes: Vec<u8> = (1..=9).map(|i| i * 17).collect();
        for len in 0..8 {
            let b = &bytes[..len];
            let slow = b
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, &x)| w | u64::from(x) << (8 * i));
            assert_eq!(short_le(b), slow, "length {len}");
        }
        assert_eq!(short_le(&bytes[..9]), short_le(&bytes[..8]));
    }

    fn p() -> StrPartition {
        StrPartition::new(vec![
            Atom::Glob("acme-".into()),
            Atom::Literal("acme-x".into()),
            Atom::Glob("acme-eu-".into()),
            Atom::Literal("beta".into()),
            Atom::Glob(String::new()),
        ])
    }

    #[test]
    fn string_classes_follow_longest_glob() {
        let p = p();
        let class_of = |s: &str| p.atom(p.classify(s.as_bytes())).cloned();
        assert_eq!(class_of("acme-x"), Some(Atom::Literal("acme-x".into())));
        assert_eq!(class_of("acme-y"), Some(Atom::Glob("acme-".into())));
        assert_eq!(class_of("acme-eu-1"), Some(Atom::Glob("acme-eu-".into())));
        assert_eq!(class_of("zzz"), Some(Atom::Glob(String::new())));
        assert_eq!(class_of("beta"), Some(Atom::Literal("beta".into())));
    }

    #[test]
    fn prefix_runs_are_contiguous() {
        let p = p();
        let run = p.classes_with_prefix("acme-");
        let texts: Vec<_> = run.map(|c| p.atom(c).map(Atom::text)).collect();
        assert_eq!(texts, [Some("acme-"), Some("acme-eu-"), Some("acme-x")]);
    }

    #[test]
    fn numeric_intervals() {
        let p = NumPartition::new(vec![400, 100, 0, 400]);
        assert_eq!(p.bounds(), &[100, 400]);
        assert_eq!(p.classify(0), 1);
        assert_eq!(p.classify(99), 1);
        assert_eq!(p.classify(100), 2);
        assert_eq!(p.classify(u64::MAX), 3);
        assert_eq!(p.interval(1), Some((0, 99)));
        assert_eq!(p.interval(3), Some((400, u64::MAX)));
        assert_eq!(p.interval(4), None);
    }
}
