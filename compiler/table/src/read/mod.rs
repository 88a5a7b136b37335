//! The validating zero-copy reader and the evaluator.
//!
//! [`Table::from_bytes`] checks everything a reader will later rely on — magic, version,
//! lengths, checksums, every offset, index and count, the hash table and glob invariants
//! — and keeps borrowed slices of the sections. Accessors then read fixed offsets with
//! total little-endian reads: they cannot fail, panic or allocate.
//!
//! Evaluation is a bit-vector classifier. Each used field maps the request's value to a
//! class (hash lookup for literals, longest glob prefix, or a binary search over interval
//! starts) and the class to a column: the set of rules that accept it. The AND of the
//! columns, word by word, gives the matching rules; the lowest set bit is the first match
//! in declaration order. The columns are ANDed sparsest field first (ordered at load), a
//! block of words is left as soon as it is empty, and the scan stops at the first non-zero
//! word.
//!
//! `validate.rs` holds [`Table::from_bytes`] and its checks, `eval.rs` the classifier,
//! `views.rs` the typed views of records for tools; this file the table and its accessors.

mod eval;
mod validate;
mod views;

pub use self::views::{
    DataClassView, EndpointView, FieldView, GlobView, LiteralView, RuleView, TenantView,
};

use crate::error::TableError;
use crate::layout::{
    self, DIR_ENTRY_LEN, FORMAT_MAJOR, HEADER_LEN, MAGIC, MAX_SECTIONS, NONE, SectionKind, StrRef,
    data_class, endpoint, field, glob, header, ix, literal, ref_at, rule, tenant, u8_at, u16_at,
    u32_at, u64_at,
};
use crate::partition::{ABSENT, OTHER, literal_hash};
use crate::{Action, BedrockApi, EndpointKind, Field, FieldKind, Micros, Request, Transport};

/// Per-field descriptor, decoded and validated at load.
#[derive(Clone, Copy, Debug, Default)]
struct FieldDesc {
    used: bool,
    class_count: u32,
    classcol_start: u32,
    col_start: u32,
    col_count: u32,
    lit_start: u32,
    lit_slots: u32,
    literal_count: u32,
    glob_start: u32,
    glob_count: u32,
    bound_start: u32,
    bound_count: u32,
}

/// Per-field slices, cut at load (see [`Table::runtime`]).
#[derive(Clone, Copy, Debug, Default)]
struct FieldRt<'a> {
    lits: &'a [u8],
    mask: u32,
    globs: &'a [u8],
    bounds: &'a [u8],
    class_cols: &'a [u8],
    cols: &'a [u8],
    col_bytes: usize,
}

/// A 16-byte record; past the end, all ones (an empty literal slot, a glob without
/// parent), which only a corrupt table could reach and validation has excluded.
#[inline]
fn rec16(section: &[u8], i: usize) -> [u8; 16] {
    section
        .get(i * 16..i * 16 + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .unwrap_or([0xff; 16])
}

/// Byte equality without a `memcmp` call for ids up to 32 bytes (the common case): up to
/// four overlapping reads per side cover every byte. Longer values fall back to the library
/// compare.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    match len {
        0..=8 => crate::partition::short_le(a) == crate::partition::short_le(b),
        9..=16 => word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8),
        17..=32 => [0, 8, len - 16, len - 8]
            .into_iter()
            .all(|at| word(a, at) == word(b, at)),
        _ => a == b,
    }
}

#[inline]
fn le32(r: &[u8; 16], at: usize) -> u32 {
    let b = r.get(at..at + 4).unwrap_or(&[0xff; 4]);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A validated decision table borrowing its bytes.
#[derive(Clone, Debug)]
pub struct Table<'a> {
    bytes: &'a [u8],
    minor: u16,
    revision: u64,
    digest: [u8; 32],
    attrs: u32,
    rule_count: u32,
    words: u32,
    /// Every string of the table, validated as UTF-8 once at load (each string is cut from
    /// it at char boundaries, so reading one does not validate it again).
    strings: &'a str,
    refs: &'a [u8],
    u32s: &'a [u8],
    endpoints: &'a [u8],
    tenants: &'a [u8],
    data_classes: &'a [u8],
    rules: &'a [u8],
    literals: &'a [u8],
    globs: &'a [u8],
    bounds: &'a [u8],
    class_cols: &'a [u8],
    columns: &'a [u8],
    fields: [FieldDesc; Field::COUNT],
    rt: [FieldRt<'a>; Field::COUNT],
    /// Indices of used fields, first `used_count` entries valid.
    used: [u8; Field::COUNT],
    used_count: u8,
}

/// The outcome of an evaluation: the first matching rule, or the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    index: u32,
    is_default: bool,
}

impl Decision {
    /// Index of the rule in declaration order; the default's index is the rule count
    /// (it is declared last).
    #[must_use]
    pub fn rule_index(self) -> u32 {
        self.index
    }

    /// Whether no rule matched and the default applies.
    #[must_use]
    pub fn is_default(self) -> bool {
        self.is_default
    }
}

fn section_body<'a>(
    bytes: &'a [u8],
    found: &[Option<(usize, usize)>; 13],
    kind: SectionKind,
) -> Result<&'a [u8], TableError> {
    let pos = SectionKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    let (off, len) = found
        .get(pos)
        .copied()
        .flatten()
        .ok_or(TableError::MissingSection { kind })?;
    let body = bytes
        .get(off..off + len)
        .ok_or(TableError::SectionBounds { kind })?;
    if body.len() % kind.record_len() != 0 {
        return Err(TableError::RecordSize { kind });
    }
    Ok(body)
}

/// Checks `start..start+count` records of `len` bytes lie inside `section`.
fn check_range(
    section: &[u8],
    start: u32,
    count: u32,
    len: usize,
    what: &'static str,
) -> Result<(), TableError> {
    let end = u64::from(start) + u64::from(count);
    if end.saturating_mul(len as u64) > section.len() as u64 {
        return Err(TableError::OutOfRange { what });
    }
    Ok(())
}

impl<'a> Table<'a> {
    #[inline]
    fn record(&self, section: &'a [u8], len: usize, i: u32) -> &'a [u8] {
        let start = ix(i) * len;
        section.get(start..start + len).unwrap_or_default()
    }

    #[inline]
    fn str_bytes(&self, r: StrRef) -> &'a [u8] {
        self.text(r).as_bytes()
    }

    #[inline]
    fn text(&self, r: StrRef) -> &'a str {
        let start = ix(r.offset);
        self.strings
            .get(start..start.saturating_add(ix(r.len)))
            .unwrap_or_default()
    }

    /// The slices of one field's classifier, cut once at load so lookups do no offset
    /// arithmetic.
    fn runtime(&self, d: &FieldDesc) -> FieldRt<'a> {
        let cut = |section: &'a [u8], start: u32, count: u32, len: usize| {
            let a = ix(start) * len;
            section.get(a..a + ix(count) * len).unwrap_or_default()
        };
        let col_bytes = ix(self.words) * 8;
        FieldRt {
            lits: cut(self.literals, d.lit_start, d.lit_slots, 16),
            mask: d.lit_slots.saturating_sub(1),
            globs: cut(self.globs, d.glob_start, d.glob_count, 16),
            bounds: cut(self.bounds, d.bound_start, d.bound_count, 8),
            class_cols: cut(self.class_cols, d.classcol_start, d.class_count, 4),
            cols: cut(self.columns, d.col_start, d.col_count, col_bytes),
            col_bytes,
        }
    }

    #[inline]
    fn str_at(&self, offset: u32, len: u32) -> &'a [u8] {
        let start = ix(offset);
        self.strings
            .as_bytes()
            .get(start..start.saturating_add(ix(len)))
            .unwrap_or_default()
    }

    /// The whole file.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Format minor version the file was written with.
    #[must_use]
    pub fn format_version(&self) -> (u16, u16) {
        (FORMAT_MAJOR, self.minor)
    }

    /// The policy revision stamped by `policyc compile --revision`.
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// SHA-256 of the policy sources the table was compiled from.
    #[must_use]
    pub fn source_digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether any rule reads `field`; the router skips extracting unread attributes.
    #[must_use]
    pub fn reads(&self, field: Field) -> bool {
        self.attrs & field.bit() != 0
    }

    /// Number of rules, the default excluded.
    #[must_use]
    pub fn rule_count(&self) -> u32 {
        self.rule_count
    }

    /// Words in each rule bit-vector.
    #[must_use]
    pub fn words_per_column(&self) -> u32 {
        self.words
    }

    /// Rule `index` (the default is `rule_count()`); `None` past the default.
    #[must_use]
    pub fn rule(&self, index: u32) -> Option<RuleView<'_>> {
        (index <= self.rule_count).then_some(RuleView { t: self, i: index })
    }

    /// The default rule.
    #[must_use]
    pub fn default_rule(&self) -> RuleView<'_> {
        RuleView {
            t: self,
            i: self.rule_count,
        }
    }

    /// Rules in declaration order, the default last.
    pub fn rules(&self) -> impl Iterator<Item = RuleView<'_>> {
        (0..=self.rule_count).map(move |i| RuleView { t: self, i })
    }

    /// The rule a decision names.
    #[must_use]
    pub fn decided(&self, d: Decision) -> RuleView<'_> {
        RuleView {
            t: self,
            i: d.index.min(self.rule_count),
        }
    }

    /// Number of endpoints.
    #[must_use]
    pub fn endpoint_count(&self) -> u32 {
        crate::partition::to_u32(self.endpoints.len() / endpoint::LEN)
    }

    /// Endpoint `index`.
    #[must_use]
    pub fn endpoint(&self, index: u32) -> Option<EndpointView<'_>> {
        (index < self.endpoint_count()).then_some(EndpointView { t: self, i: index })
    }

    /// All endpoints in declaration order.
    pub fn endpoints(&self) -> impl Iterator<Item = EndpointView<'_>> {
        (0..self.endpoint_count()).map(move |i| EndpointView { t: self, i })
    }

    /// The endpoint with id `id`.
    #[must_use]
    pub fn endpoint_by_id(&self, id: &str) -> Option<EndpointView<'_>> {
        self.endpoints().find(|e| e.id() == id)
    }

    /// Number of tenants.
    #[must_use]
    pub fn tenant_count(&self) -> u32 {
        crate::partition::to_u32(self.tenants.len() / tenant::LEN)
    }

    /// All tenants in declaration order.
    pub fn tenants(&self) -> impl Iterator<Item = TenantView<'_>> {
        (0..self.tenant_count()).map(move |i| TenantView { t: self, i })
    }

    /// The tenant with id `id`.
    #[must_use]
    pub fn tenant_by_id(&self, id: &str) -> Option<TenantView<'_>> {
        self.tenants().find(|t| t.id() == id)
    }

    /// Number of data classes.
    #[must_use]
    pub fn data_class_count(&self) -> u32 {
        crate::partition::to_u32(self.data_classes.len() / data_class::LEN)
    }

    /// All data classes in declaration order.
    pub fn data_classes(&self) -> impl Iterator<Item = DataClassView<'_>> {
        (0..self.data_class_count()).map(move |i| DataClassView { t: self, i })
    }

    /// The classifier of one field.
    #[must_use]
    pub fn field(&self, field: Field) -> FieldView<'_> {
        FieldView {
            t: self,
            f: field,
            d: self.fields.get(field.index()).copied().unwrap_or_default(),
        }
    }

    fn str_list(&self, start: u32, count: u32) -> impl Iterator<Item = &str> {
        (0..count).map(move |k| self.text(ref_at(self.refs, ix(start + k) * 8)))
    }
}

#[cfg(test)]
mod tests {
    use super::bytes_eq;

    #[test]
    fn inline_equality_covers_every_byte() {
        for len in 0..48usize {
            let a: Vec<u8> = (0..len).map(|i| u8::try_from(i).unwrap() ^ 0x5a).collect();
            assert!(bytes_eq(&a, &a.clone()));
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!bytes_eq(&a, &b), "len {len}, byte {i}");
            }
            assert!(!bytes_eq(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }
}
