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
//! in declaration order. The scan stops at the first non-zero word.

use crate::error::TableError;
use crate::layout::{
    self, DIR_ENTRY_LEN, FORMAT_MAJOR, HEADER_LEN, MAGIC, MAX_SECTIONS, NONE, SectionKind, StrRef,
    data_class, endpoint, field, glob, header, ix, literal, ref_at, rule, tenant, u8_at, u16_at,
    u32_at, u64_at,
};
use crate::partition::{ABSENT, OTHER, literal_hash};
use crate::{Action, EndpointKind, Field, FieldKind, Micros, Request, Transport};

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

/// Byte equality without a `memcmp` call for ids up to 32 bytes (the common case): four
/// overlapping 8-byte reads per side cover every byte. Longer values fall back to the
/// library compare.
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
        0 => true,
        1..=7 => a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0,
        8..=32 => {
            let mid = (len / 2).saturating_sub(4).min(len - 8);
            let at = [0, mid.min(8), len.saturating_sub(16).max(mid), len - 8];
            at.iter().all(|&i| word(a, i) == word(b, i))
        }
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
    strings: &'a [u8],
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
    /// Validates `bytes` as a table. This is the only fallible step: on success every
    /// accessor and [`Table::evaluate`] are total.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, TableError> {
        if bytes.len() < HEADER_LEN {
            return Err(TableError::TooShort {
                len: bytes.len(),
                need: HEADER_LEN,
            });
        }
        if bytes.get(header::MAGIC..header::MAGIC + 8) != Some(&MAGIC[..]) {
            return Err(TableError::BadMagic);
        }
        let major = u16_at(bytes, header::MAJOR);
        let minor = u16_at(bytes, header::MINOR);
        if major != FORMAT_MAJOR {
            return Err(TableError::UnsupportedVersion {
                major,
                minor,
                supported: FORMAT_MAJOR,
            });
        }
        if ix(u32_at(bytes, header::HEADER_LEN)) != HEADER_LEN {
            return Err(TableError::Directory("unexpected header length"));
        }
        let declared = u64_at(bytes, header::FILE_LEN);
        if declared != bytes.len() as u64 {
            return Err(TableError::LengthMismatch {
                declared,
                actual: bytes.len(),
            });
        }
        let count = ix(u32_at(bytes, header::SECTION_COUNT));
        if count > MAX_SECTIONS {
            return Err(TableError::Directory("too many sections"));
        }
        let dir_end = HEADER_LEN + count * DIR_ENTRY_LEN;
        if dir_end > bytes.len() {
            return Err(TableError::Directory(
                "directory runs past the end of the file",
            ));
        }
        let stored = u32_at(bytes, header::CRC);
        let computed = crate::write::header_crc(bytes, count);
        if stored != computed {
            return Err(TableError::HeaderChecksum { stored, computed });
        }

        let mut found: [Option<(usize, usize)>; 13] = [None; 13];
        for i in 0..count {
            let e = HEADER_LEN + i * DIR_ENTRY_LEN;
            let code = u32_at(bytes, e);
            let crc = u32_at(bytes, e + 4);
            let off = usize::try_from(u64_at(bytes, e + 8)).unwrap_or(usize::MAX);
            let len = usize::try_from(u64_at(bytes, e + 16)).unwrap_or(usize::MAX);
            // Unknown kinds come from newer minor versions: bounds- and checksum-checked,
            // then ignored.
            let kind = SectionKind::from_code(code);
            let bounds_err = TableError::SectionBounds {
                kind: kind.unwrap_or(SectionKind::Strings),
            };
            let end = off.checked_add(len).ok_or(bounds_err.clone())?;
            if off % 8 != 0 || off < dir_end || end > bytes.len() {
                return Err(bounds_err);
            }
            let body = bytes.get(off..end).ok_or(bounds_err)?;
            let computed = crc32c::crc32c(body);
            if computed != crc {
                return Err(TableError::SectionChecksum {
                    kind: kind.unwrap_or(SectionKind::Strings),
                    stored: crc,
                    computed,
                });
            }
            if let Some(kind) = kind {
                let pos = SectionKind::ALL
                    .iter()
                    .position(|k| *k == kind)
                    .unwrap_or_default();
                if let Some(slot) = found.get_mut(pos) {
                    if slot.is_some() {
                        return Err(TableError::DuplicateSection { kind });
                    }
                    *slot = Some((off, len));
                }
            }
        }

        let mut digest = [0u8; 32];
        if let Some(d) = bytes.get(header::DIGEST..header::DIGEST + 32) {
            digest.copy_from_slice(d);
        }
        let rule_count = u32_at(bytes, header::RULE_COUNT);
        let words = u32_at(bytes, header::WORDS);
        if u64::from(words) != u64::from(rule_count).div_ceil(64) {
            return Err(TableError::Directory(
                "words per column does not fit the rule count",
            ));
        }
        let mut table = Table {
            bytes,
            minor,
            revision: u64_at(bytes, header::REVISION),
            digest,
            attrs: u32_at(bytes, header::ATTRS),
            rule_count,
            words,
            strings: section_body(bytes, &found, SectionKind::Strings)?,
            refs: section_body(bytes, &found, SectionKind::Refs)?,
            u32s: section_body(bytes, &found, SectionKind::U32s)?,
            endpoints: section_body(bytes, &found, SectionKind::Endpoints)?,
            tenants: section_body(bytes, &found, SectionKind::Tenants)?,
            data_classes: section_body(bytes, &found, SectionKind::DataClasses)?,
            rules: section_body(bytes, &found, SectionKind::Rules)?,
            literals: section_body(bytes, &found, SectionKind::Literals)?,
            globs: section_body(bytes, &found, SectionKind::Globs)?,
            bounds: section_body(bytes, &found, SectionKind::Bounds)?,
            class_cols: section_body(bytes, &found, SectionKind::ClassCols)?,
            columns: section_body(bytes, &found, SectionKind::Columns)?,
            fields: [FieldDesc::default(); Field::COUNT],
            rt: [FieldRt::default(); Field::COUNT],
            used: [0; Field::COUNT],
            used_count: 0,
        };
        let fields = section_body(bytes, &found, SectionKind::Fields)?;
        table.validate_records()?;
        table.load_fields(fields)?;
        Ok(table)
    }

    fn check_str(&self, r: StrRef, what: &'static str) -> Result<(), TableError> {
        let start = ix(r.offset);
        let end = start
            .checked_add(ix(r.len))
            .ok_or(TableError::OutOfRange { what })?;
        let text = self
            .strings
            .get(start..end)
            .ok_or(TableError::OutOfRange { what })?;
        std::str::from_utf8(text).map_err(|_| TableError::Utf8 { what })?;
        Ok(())
    }

    fn check_str_list(&self, start: u32, count: u32, what: &'static str) -> Result<(), TableError> {
        check_range(self.refs, start, count, 8, what)?;
        for i in 0..count {
            self.check_str(ref_at(self.refs, ix(start + i) * 8), what)?;
        }
        Ok(())
    }

    fn validate_records(&self) -> Result<(), TableError> {
        let endpoint_count = self.endpoint_count();
        for i in 0..endpoint_count {
            let rec = self.record(self.endpoints, endpoint::LEN, i);
            for off in endpoint::TEXT_FIELDS {
                self.check_str(ref_at(rec, off), "endpoint text")?;
            }
            if ref_at(rec, endpoint::ID).len == 0 {
                return Err(TableError::OutOfRange {
                    what: "endpoint id",
                });
            }
            let kind = u8_at(rec, endpoint::KIND);
            EndpointKind::from_code(kind).ok_or(TableError::BadCode {
                what: "endpoint kind",
                code: kind,
            })?;
            let transport = u8_at(rec, endpoint::TRANSPORT);
            Transport::from_code(transport).ok_or(TableError::BadCode {
                what: "transport",
                code: transport,
            })?;
            self.check_str_list(
                u32_at(rec, endpoint::MODELS_START),
                u32_at(rec, endpoint::MODELS_COUNT),
                "endpoint models",
            )?;
        }
        for i in 0..self.tenant_count() {
            let rec = self.record(self.tenants, tenant::LEN, i);
            self.check_str(ref_at(rec, tenant::ID), "tenant id")?;
            self.check_str(ref_at(rec, tenant::AUDIT_BUCKET), "tenant audit bucket")?;
            self.check_str_list(
                u32_at(rec, tenant::ALLOW_START),
                u32_at(rec, tenant::ALLOW_COUNT),
                "tenant allowlist",
            )?;
        }
        for i in 0..self.data_class_count() {
            let rec = self.record(self.data_classes, data_class::LEN, i);
            self.check_str(ref_at(rec, data_class::ID), "data class id")?;
        }
        let rule_records = self.rules.len() / rule::LEN;
        if rule_records as u64 != u64::from(self.rule_count) + 1 {
            return Err(TableError::Directory(
                "rule section does not hold the rule count plus the default",
            ));
        }
        for i in 0..=self.rule_count {
            let rec = self.record(self.rules, rule::LEN, i);
            let bad = |what| TableError::Rule { rule: i, what };
            self.check_str(ref_at(rec, rule::NAME), "rule name")?;
            for f in 0..Field::COUNT {
                self.check_str(ref_at(rec, rule::CONDS + 8 * f), "rule condition text")?;
            }
            let is_default = u8_at(rec, rule::FLAGS) & rule::FLAG_DEFAULT != 0;
            if is_default != (i == self.rule_count) {
                return Err(bad("only the last rule may be, and must be, the default"));
            }
            let action = u8_at(rec, rule::ACTION);
            let action = Action::from_code(action).ok_or(TableError::BadCode {
                what: "rule action",
                code: action,
            })?;
            let target = u32_at(rec, rule::ENDPOINT);
            let fb_start = u32_at(rec, rule::FALLBACK_START);
            let fb_count = u32_at(rec, rule::FALLBACK_COUNT);
            match action {
                Action::Route if target >= endpoint_count => {
                    return Err(bad("endpoint index out of range"));
                }
                Action::Deny if target != NONE || fb_count != 0 => {
                    return Err(bad("a deny rule has an endpoint"));
                }
                _ => {}
            }
            check_range(self.u32s, fb_start, fb_count, 4, "fallback list")?;
            for k in 0..fb_count {
                if u32_at(self.u32s, ix(fb_start + k) * 4) >= endpoint_count {
                    return Err(bad("fallback endpoint index out of range"));
                }
            }
        }
        Ok(())
    }

    fn load_fields(&mut self, fields: &'a [u8]) -> Result<(), TableError> {
        if fields.len() != Field::COUNT * field::LEN {
            return Err(TableError::Directory(
                "field section must hold one descriptor per field",
            ));
        }
        let mut attrs = 0u32;
        for f in Field::ALL {
            let rec = fields
                .get(f.index() * field::LEN..(f.index() + 1) * field::LEN)
                .unwrap_or_default();
            let bad = |what| TableError::Field {
                field: f.key(),
                what,
            };
            if u8_at(rec, field::KIND) != layout::field_kind_code(f.kind()) {
                return Err(bad("wrong kind"));
            }
            let d = FieldDesc {
                used: u8_at(rec, field::USED) != 0,
                class_count: u32_at(rec, field::CLASS_COUNT),
                classcol_start: u32_at(rec, field::CLASSCOL_START),
                col_start: u32_at(rec, field::COL_START),
                col_count: u32_at(rec, field::COL_COUNT),
                lit_start: u32_at(rec, field::LIT_START),
                lit_slots: u32_at(rec, field::LIT_SLOTS),
                literal_count: u32_at(rec, field::LITERAL_COUNT),
                glob_start: u32_at(rec, field::GLOB_START),
                glob_count: u32_at(rec, field::GLOB_COUNT),
                bound_start: u32_at(rec, field::BOUND_START),
                bound_count: u32_at(rec, field::BOUND_COUNT),
            };
            if d.used {
                attrs |= f.bit();
            }
            if d.class_count < 2 {
                return Err(bad("fewer than two classes"));
            }
            check_range(
                self.class_cols,
                d.classcol_start,
                d.class_count,
                4,
                "class map",
            )?;
            let col_bytes = ix(self.words) * 8;
            if col_bytes > 0 {
                check_range(self.columns, d.col_start, d.col_count, col_bytes, "columns")?;
            }
            for c in 0..d.class_count {
                let col = u32_at(self.class_cols, ix(d.classcol_start + c) * 4);
                if col >= d.col_count {
                    return Err(bad("class maps to a missing column"));
                }
            }
            // Bits past the last rule must be clear, so the first set bit is a rule.
            if let Some(last) = self.words.checked_sub(1) {
                let keep = self.rule_count - last * 64;
                let mask = if keep >= 64 { 0 } else { !0u64 << keep };
                for c in 0..d.col_count {
                    let off = (ix(d.col_start + c) * ix(self.words) + ix(last)) * 8;
                    if u64_at(self.columns, off) & mask != 0 {
                        return Err(bad("column has bits past the last rule"));
                    }
                }
            }
            if f.kind().is_string() {
                self.validate_string_field(&d).map_err(bad)?;
            } else {
                check_range(self.bounds, d.bound_start, d.bound_count, 8, "bounds")?;
                if u64::from(d.class_count) != u64::from(d.bound_count) + 2 {
                    return Err(bad("class count does not fit the interval count"));
                }
                let mut prev = 0u64;
                for k in 0..d.bound_count {
                    let b = u64_at(self.bounds, ix(d.bound_start + k) * 8);
                    if b <= prev {
                        return Err(bad("interval starts are not strictly increasing"));
                    }
                    prev = b;
                }
            }
            if let Some(slot) = self.fields.get_mut(f.index()) {
                *slot = d;
            }
            let rt = self.runtime(&d);
            if let Some(slot) = self.rt.get_mut(f.index()) {
                *slot = rt;
            }
        }
        if attrs != self.attrs {
            return Err(TableError::Directory(
                "attribute mask disagrees with the fields",
            ));
        }
        for f in Field::ALL {
            if self.attrs & f.bit() != 0 {
                if let Some(slot) = self.used.get_mut(usize::from(self.used_count)) {
                    *slot = f as u8;
                }
                self.used_count += 1;
            }
        }
        Ok(())
    }

    fn validate_string_field(&self, d: &FieldDesc) -> Result<(), &'static str> {
        if self.bound_count_nonzero(d) {
            return Err("string field has interval starts");
        }
        check_range(self.literals, d.lit_start, d.lit_slots, 16, "literals")
            .map_err(|_| "literal slots out of range")?;
        check_range(self.globs, d.glob_start, d.glob_count, 16, "globs")
            .map_err(|_| "globs out of range")?;
        if d.lit_slots != 0 && !d.lit_slots.is_power_of_two() {
            return Err("literal slot count is not a power of two");
        }
        let atoms = u64::from(d.literal_count) + u64::from(d.glob_count);
        if atoms + 2 != u64::from(d.class_count) {
            return Err("class count does not fit the literals and globs");
        }
        let mut filled = 0u32;
        for s in 0..d.lit_slots {
            let off = ix(d.lit_start + s) * 16;
            let class = u32_at(self.literals, off + literal::CLASS);
            if class == NONE {
                continue;
            }
            filled += 1;
            if class < 2 || class >= d.class_count {
                return Err("literal class out of range");
            }
            let r = ref_at(self.literals, off + literal::TEXT);
            self.check_str(r, "literal")
                .map_err(|_| "literal text out of range")?;
            let text = self.str_bytes(r);
            if u32_at(self.literals, off + literal::HASH) != literal_hash(text) {
                return Err("literal hash mismatch");
            }
            if self.lookup_literal(&self.runtime(d), text) != Some(class) {
                return Err("literal is not reachable by its hash probe");
            }
        }
        if filled != d.literal_count {
            return Err("literal count disagrees with the filled slots");
        }
        let mut prev: Option<&[u8]> = None;
        for g in 0..d.glob_count {
            let off = ix(d.glob_start + g) * 16;
            let r = ref_at(self.globs, off + glob::PREFIX);
            self.check_str(r, "glob")
                .map_err(|_| "glob text out of range")?;
            let text = self.str_bytes(r);
            if prev.is_some_and(|p| p >= text) {
                return Err("globs are not sorted");
            }
            prev = Some(text);
            let class = u32_at(self.globs, off + glob::CLASS);
            if class < 2 || class >= d.class_count {
                return Err("glob class out of range");
            }
            let parent = u32_at(self.globs, off + glob::PARENT);
            if parent != NONE {
                if parent >= g {
                    return Err("glob parent does not precede it");
                }
                let ptext = self.str_bytes(ref_at(
                    self.globs,
                    ix(d.glob_start + parent) * 16 + glob::PREFIX,
                ));
                if ptext.len() >= text.len() || !text.starts_with(ptext) {
                    return Err("glob parent is not a proper prefix");
                }
            }
        }
        Ok(())
    }

    fn bound_count_nonzero(&self, d: &FieldDesc) -> bool {
        d.bound_count != 0
    }

    #[inline]
    fn record(&self, section: &'a [u8], len: usize, i: u32) -> &'a [u8] {
        let start = ix(i) * len;
        section.get(start..start + len).unwrap_or_default()
    }

    #[inline]
    fn str_bytes(&self, r: StrRef) -> &'a [u8] {
        let start = ix(r.offset);
        self.strings
            .get(start..start.saturating_add(ix(r.len)))
            .unwrap_or_default()
    }

    #[inline]
    fn text(&self, r: StrRef) -> &'a str {
        std::str::from_utf8(self.str_bytes(r)).unwrap_or_default()
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
            .get(start..start.saturating_add(ix(len)))
            .unwrap_or_default()
    }

    #[inline]
    fn lookup_literal(&self, rt: &FieldRt<'a>, value: &[u8]) -> Option<u32> {
        if rt.lits.is_empty() {
            return None;
        }
        let hash = literal_hash(value);
        let mut slot = hash & rt.mask;
        // Bounded by the slot count: terminates even on a table with no empty slot.
        for _ in 0..=rt.mask {
            let r = rec16(rt.lits, ix(slot));
            let class = le32(&r, literal::CLASS);
            if class == NONE {
                return None;
            }
            if le32(&r, literal::HASH) == hash
                && bytes_eq(
                    self.str_at(le32(&r, literal::TEXT), le32(&r, literal::TEXT + 4)),
                    value,
                )
            {
                return Some(class);
            }
            slot = (slot + 1) & rt.mask;
        }
        None
    }

    /// Longest glob prefix of `value`. The last glob sorting at or before `value` shares
    /// with it every glob that is a prefix of `value`; walking its parent chain down to
    /// their common prefix length finds the longest (see `partition.rs`).
    #[inline]
    fn lookup_glob(&self, rt: &FieldRt<'a>, value: &[u8]) -> Option<u32> {
        let prefix = |r: &[u8; 16]| self.str_at(le32(r, glob::PREFIX), le32(r, glob::PREFIX + 4));
        let (mut lo, mut hi) = (0usize, rt.globs.len() / 16);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if prefix(&rec16(rt.globs, mid)) <= value {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut g = lo.checked_sub(1)?;
        let mut r = rec16(rt.globs, g);
        let common = prefix(&r)
            .iter()
            .zip(value)
            .take_while(|(a, b)| a == b)
            .count();
        loop {
            if prefix(&r).len() <= common {
                return Some(le32(&r, glob::CLASS));
            }
            let parent = ix(le32(&r, glob::PARENT));
            if parent >= g {
                return None;
            }
            g = parent;
            r = rec16(rt.globs, g);
        }
    }

    #[inline]
    fn class_of(&self, f: Field, rt: &FieldRt<'a>, req: &Request<'_>) -> u32 {
        if f.kind().is_string() {
            match req.str_value(f) {
                None => ABSENT,
                Some(v) => self
                    .lookup_literal(rt, v)
                    .or_else(|| self.lookup_glob(rt, v))
                    .unwrap_or(OTHER),
            }
        } else {
            match req.num_value(f) {
                None => ABSENT,
                Some(v) => {
                    // Branchless lower bound (the compiler emits conditional moves):
                    // request values are unpredictable, so a branchy search mispredicts.
                    let bound = |i: usize| u64_at(rt.bounds, i * 8);
                    let mut len = rt.bounds.len() / 8;
                    let mut base = 0usize;
                    while len > 1 {
                        let half = len / 2;
                        base = if bound(base + half - 1) <= v {
                            base + half
                        } else {
                            base
                        };
                        len -= half;
                    }
                    let below = base + usize::from(len == 1 && bound(base) <= v);
                    1 + crate::partition::to_u32(below)
                }
            }
        }
    }

    #[inline]
    fn column(&self, rt: &FieldRt<'a>, class: u32) -> &'a [u8] {
        let col = ix(u32_at(rt.class_cols, ix(class) * 4));
        let start = col * rt.col_bytes;
        rt.cols.get(start..start + rt.col_bytes).unwrap_or_default()
    }

    /// Picks the first rule that accepts `req`, or the default. Never fails, never
    /// allocates.
    #[must_use]
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut cols: [&[u8]; Field::COUNT] = [&[]; Field::COUNT];
        let n = usize::from(self.used_count).min(Field::COUNT);
        for (slot, &fi) in cols.iter_mut().zip(&self.used[..n]) {
            let f = Field::ALL
                .get(usize::from(fi))
                .copied()
                .unwrap_or(Field::Tenant);
            if let Some(rt) = self.rt.get(usize::from(fi)) {
                *slot = self.column(rt, self.class_of(f, rt, req));
            }
        }
        let cols = &cols[..n];
        let words = ix(self.words);
        let word = |c: &[u8], w: usize| {
            c.get(w * 8..w * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let found = |w: usize, a: u64| Decision {
            index: crate::partition::to_u32(w * 64 + a.trailing_zeros() as usize),
            is_default: false,
        };
        // Four words per step, accumulators in registers: one bounds check per column
        // per step. The scan stops at the first block with a surviving rule.
        let mut w = 0;
        while w + 4 <= words {
            let (mut a0, mut a1, mut a2, mut a3) = (!0u64, !0u64, !0u64, !0u64);
            for col in cols {
                let Some(block) = col
                    .get(w * 8..w * 8 + 32)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                else {
                    a0 = 0;
                    a1 = 0;
                    a2 = 0;
                    a3 = 0;
                    continue;
                };
                let [b0, b1, b2, b3] = [0, 8, 16, 24].map(|o| word(&block, o / 8));
                a0 &= b0;
                a1 &= b1;
                a2 &= b2;
                a3 &= b3;
            }
            for (k, a) in [a0, a1, a2, a3].into_iter().enumerate() {
                if a != 0 {
                    return found(w + k, a);
                }
            }
            w += 4;
        }
        while w < words {
            let a = cols.iter().fold(!0u64, |a, col| a & word(col, w));
            if a != 0 {
                return found(w, a);
            }
            w += 1;
        }
        Decision {
            index: self.rule_count,
            is_default: true,
        }
    }

    /// Whether `rule` accepts the request's value of `field`, ignoring other fields.
    /// This is what explanations report per condition; it reads the same columns as
    /// [`Table::evaluate`].
    #[must_use]
    pub fn field_accepts(&self, field: Field, rule: u32, req: &Request<'_>) -> bool {
        let d = self.fields.get(field.index()).copied().unwrap_or_default();
        if !d.used {
            return true;
        }
        let rt = self.rt.get(field.index()).copied().unwrap_or_default();
        let col = self.column(&rt, self.class_of(field, &rt, req));
        let off = ix(rule / 64) * 8;
        u64_at(col, off) >> (rule % 64) & 1 == 1
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

/// A rule of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'t> {
    t: &'t Table<'t>,
    i: u32,
}

impl<'t> RuleView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.rules, rule::LEN, self.i)
    }

    /// Index in declaration order (the default's is the rule count).
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }

    /// Whether this is the default.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.i == self.t.rule_count
    }

    /// The rule's `name`, empty if it has none (the default's is `default`).
    #[must_use]
    pub fn name(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), rule::NAME))
    }

    /// Route or deny.
    #[must_use]
    pub fn action(&self) -> Action {
        Action::from_code(u8_at(self.rec(), rule::ACTION)).unwrap_or(Action::Deny)
    }

    /// The endpoint routed to (`None` for deny).
    #[must_use]
    pub fn endpoint(&self) -> Option<EndpointView<'t>> {
        self.t.endpoint(u32_at(self.rec(), rule::ENDPOINT))
    }

    /// Fallback endpoints, in order.
    pub fn fallback(&self) -> impl Iterator<Item = EndpointView<'t>> + use<'t> {
        let rec = self.rec();
        let start = u32_at(rec, rule::FALLBACK_START);
        let count = u32_at(rec, rule::FALLBACK_COUNT);
        let t = self.t;
        (0..count).filter_map(move |k| t.endpoint(u32_at(t.u32s, ix(start + k) * 4)))
    }

    /// Source text of the condition on `field`, `None` if the rule does not constrain it.
    #[must_use]
    pub fn condition(&self, field: Field) -> Option<&'t str> {
        let text = self
            .t
            .text(ref_at(self.rec(), rule::CONDS + 8 * field.index()));
        (!text.is_empty()).then_some(text)
    }

    /// Where the rule is declared in the policy source (line, column; 1-based).
    #[must_use]
    pub fn source_position(&self) -> (u32, u32) {
        let rec = self.rec();
        (u32_at(rec, rule::LINE), u32_at(rec, rule::COLUMN))
    }
}

/// An endpoint of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct EndpointView<'t> {
    t: &'t Table<'t>,
    i: u32,
}

impl<'t> EndpointView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.endpoints, endpoint::LEN, self.i)
    }

    fn text(&self, off: usize) -> &'t str {
        self.t.text(ref_at(self.rec(), off))
    }

    /// Index in the table.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.text(endpoint::ID)
    }
    #[must_use]
    pub fn kind(&self) -> EndpointKind {
        EndpointKind::from_code(u8_at(self.rec(), endpoint::KIND)).unwrap_or(EndpointKind::Custom)
    }
    /// Base URL; empty for a managed provider's default.
    #[must_use]
    pub fn url(&self) -> &'t str {
        self.text(endpoint::URL)
    }
    #[must_use]
    pub fn transport(&self) -> Transport {
        Transport::from_code(u8_at(self.rec(), endpoint::TRANSPORT)).unwrap_or(Transport::Public)
    }
    /// Models served; empty for "any".
    pub fn models(&self) -> impl Iterator<Item = &'t str> + use<'t> {
        let rec = self.rec();
        self.t.str_list(
            u32_at(rec, endpoint::MODELS_START),
            u32_at(rec, endpoint::MODELS_COUNT),
        )
    }
    /// Whether the endpoint serves `model` (an endpoint without a model list serves any).
    #[must_use]
    pub fn serves(&self, model: &str) -> bool {
        let mut models = self.models().peekable();
        models.peek().is_none() || models.any(|m| m == model)
    }
    /// The model `auto` resolves to: `default_model`, else the first listed model.
    #[must_use]
    pub fn default_model(&self) -> Option<&'t str> {
        let explicit = self.text(endpoint::DEFAULT_MODEL);
        if explicit.is_empty() {
            self.models().next()
        } else {
            Some(explicit)
        }
    }
    #[must_use]
    pub fn health_check_interval_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::HEALTH_MS)
    }
    #[must_use]
    pub fn timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::TIMEOUT_MS)
    }
    #[must_use]
    pub fn input_per_1k(&self) -> Micros {
        Micros(u64_at(self.rec(), endpoint::INPUT_PER_1K))
    }
    #[must_use]
    pub fn output_per_1k(&self) -> Micros {
        Micros(u64_at(self.rec(), endpoint::OUTPUT_PER_1K))
    }
    /// Name of the environment variable holding the API key (empty if none).
    #[must_use]
    pub fn api_key_env(&self) -> &'t str {
        self.text(endpoint::API_KEY_ENV)
    }
    /// Path of the file holding the API key (empty if none).
    #[must_use]
    pub fn api_key_file(&self) -> &'t str {
        self.text(endpoint::API_KEY_FILE)
    }
    #[must_use]
    pub fn region(&self) -> &'t str {
        self.text(endpoint::REGION)
    }
    #[must_use]
    pub fn api_version(&self) -> &'t str {
        self.text(endpoint::API_VERSION)
    }
    #[must_use]
    pub fn deployment(&self) -> &'t str {
        self.text(endpoint::DEPLOYMENT)
    }
    #[must_use]
    pub fn project(&self) -> &'t str {
        self.text(endpoint::PROJECT)
    }
    #[must_use]
    pub fn location(&self) -> &'t str {
        self.text(endpoint::LOCATION)
    }

    /// PEM file of extra CA certificates trusted for this endpoint; empty if none.
    #[must_use]
    pub fn ca_file(&self) -> &'t str {
        self.text(endpoint::CA_FILE)
    }
    /// The optional text settings under their policy keys (`api_key_env`, `region`, ...),
    /// empty where not set.
    #[must_use]
    pub fn text_settings(&self) -> [(&'static str, &'t str); 8] {
        [
            ("api_key_env", self.api_key_env()),
            ("api_key_file", self.api_key_file()),
            ("region", self.region()),
            ("api_version", self.api_version()),
            ("deployment", self.deployment()),
            ("project", self.project()),
            ("location", self.location()),
            ("ca_file", self.ca_file()),
        ]
    }
    /// Whether the policy did not declare it (a managed provider's built-in endpoint).
    #[must_use]
    pub fn is_builtin(&self) -> bool {
        u8_at(self.rec(), endpoint::FLAGS) & endpoint::FLAG_BUILTIN != 0
    }
}

/// A tenant of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct TenantView<'t> {
    t: &'t Table<'t>,
    i: u32,
}

impl<'t> TenantView<'t> {
    /// Position in declaration order.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }

    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.tenants, tenant::LEN, self.i)
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), tenant::ID))
    }
    /// `None` if the tenant may use any model.
    #[must_use]
    pub fn model_allowlist(&self) -> Option<impl Iterator<Item = &'t str> + use<'t>> {
        let rec = self.rec();
        (u32_at(rec, tenant::FLAGS) & tenant::FLAG_ALLOWLIST != 0).then(|| {
            self.t.str_list(
                u32_at(rec, tenant::ALLOW_START),
                u32_at(rec, tenant::ALLOW_COUNT),
            )
        })
    }
    /// Whether the tenant may use `model`.
    #[must_use]
    pub fn allows(&self, model: &str) -> bool {
        self.model_allowlist()
            .is_none_or(|mut list| list.any(|m| m == model))
    }
    #[must_use]
    pub fn rate_limit_rpm(&self) -> u32 {
        u32_at(self.rec(), tenant::RPM)
    }
    #[must_use]
    pub fn rate_limit_tpm(&self) -> u64 {
        u64_at(self.rec(), tenant::TPM)
    }
    #[must_use]
    pub fn daily_budget(&self) -> Micros {
        Micros(u64_at(self.rec(), tenant::DAILY_BUDGET))
    }

    /// Tokens (prompt + completion) per UTC day; 0 for no limit.
    #[must_use]
    pub fn daily_token_budget(&self) -> u64 {
        u64_at(self.rec(), tenant::DAILY_TOKENS)
    }
    #[must_use]
    pub fn audit_bucket(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), tenant::AUDIT_BUCKET))
    }
}

/// A data class of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct DataClassView<'t> {
    t: &'t Table<'t>,
    i: u32,
}

impl<'t> DataClassView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.data_classes, data_class::LEN, self.i)
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), data_class::ID))
    }
    #[must_use]
    pub fn stays_private(&self) -> bool {
        u32_at(self.rec(), data_class::FLAGS) & data_class::FLAG_STAYS_PRIVATE != 0
    }
}

/// A literal of a string field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralView<'t> {
    pub text: &'t str,
    pub class: u32,
}

/// A glob of a string field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobView<'t> {
    pub prefix: &'t str,
    pub class: u32,
}

/// The classifier of one field, for tools (dump, explain, diff).
#[derive(Clone, Copy, Debug)]
pub struct FieldView<'t> {
    t: &'t Table<'t>,
    f: Field,
    d: FieldDesc,
}

impl<'t> FieldView<'t> {
    #[must_use]
    pub fn field(&self) -> Field {
        self.f
    }
    /// Whether any rule reads this field.
    #[must_use]
    pub fn is_used(&self) -> bool {
        self.d.used
    }
    #[must_use]
    pub fn class_count(&self) -> u32 {
        self.d.class_count
    }
    /// Number of distinct rule bit-vectors.
    #[must_use]
    pub fn column_count(&self) -> u32 {
        self.d.col_count
    }
    /// Literals (string fields), in hash-slot order.
    pub fn literals(&self) -> impl Iterator<Item = LiteralView<'t>> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.lit_slots).filter_map(move |s| {
            let off = ix(d.lit_start + s) * 16;
            let class = u32_at(t.literals, off + literal::CLASS);
            (class != NONE).then(|| LiteralView {
                text: t.text(ref_at(t.literals, off + literal::TEXT)),
                class,
            })
        })
    }
    /// Globs (string fields), sorted by prefix.
    pub fn globs(&self) -> impl Iterator<Item = GlobView<'t>> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.glob_count).map(move |g| {
            let off = ix(d.glob_start + g) * 16;
            GlobView {
                prefix: t.text(ref_at(t.globs, off + glob::PREFIX)),
                class: u32_at(t.globs, off + glob::CLASS),
            }
        })
    }
    /// Interval starts (numeric fields).
    pub fn bounds(&self) -> impl Iterator<Item = u64> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.bound_count).map(move |k| u64_at(t.bounds, ix(d.bound_start + k) * 8))
    }
    /// The class of a string value (`None` = absent). Numeric fields give "absent".
    #[must_use]
    pub fn classify_str(&self, value: Option<&[u8]>) -> u32 {
        let mut req = Request::default();
        match self.f {
            Field::Tenant => req.tenant = value,
            Field::DataClass => req.data_class = value,
            Field::UserRole => req.user_role = value,
            Field::Model => req.model = value,
            Field::LatencyBudgetMs | Field::CostCapPer1k => return ABSENT,
        }
        self.t.class_of(self.f, &self.t.runtime(&self.d), &req)
    }
    /// The class of a numeric value (`None` = absent). String fields give "absent".
    #[must_use]
    pub fn classify_num(&self, value: Option<u64>) -> u32 {
        let mut req = Request::default();
        match self.f {
            Field::LatencyBudgetMs => req.latency_budget_ms = value,
            Field::CostCapPer1k => req.cost_cap_per_1k = value.map(Micros),
            Field::Tenant | Field::DataClass | Field::UserRole | Field::Model => return ABSENT,
        }
        self.t.class_of(self.f, &self.t.runtime(&self.d), &req)
    }
    /// Whether `rule` accepts values of `class` on this field.
    #[must_use]
    pub fn accepts(&self, class: u32, rule: u32) -> bool {
        if class >= self.d.class_count || rule >= self.t.rule_count {
            return false;
        }
        let col = self.t.column(&self.t.runtime(&self.d), class);
        u64_at(col, ix(rule / 64) * 8) >> (rule % 64) & 1 == 1
    }
    /// The rules (indices) that accept values of `class`, in order.
    pub fn rules_accepting(&self, class: u32) -> impl Iterator<Item = u32> + use<'t> {
        let col = if class < self.d.class_count {
            self.t.column(&self.t.runtime(&self.d), class)
        } else {
            &[]
        };
        col.chunks_exact(8).enumerate().flat_map(|(w, bytes)| {
            let mut word = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros();
                word &= word - 1;
                Some(crate::partition::to_u32(w * 64) + bit)
            })
        })
    }
    /// The column index of `class`.
    #[must_use]
    pub fn column_of(&self, class: u32) -> u32 {
        u32_at(self.t.class_cols, ix(self.d.classcol_start + class) * 4)
    }
    /// The field's kind.
    #[must_use]
    pub fn kind(&self) -> FieldKind {
        self.f.kind()
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
