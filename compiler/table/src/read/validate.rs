//! [`Table::from_bytes`]: every check a reader relies on later — magic, version, lengths,
//! checksums, offsets, indices, counts, the hash tables and glob invariants — made once.

use super::*;

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
            strings: std::str::from_utf8(section_body(bytes, &found, SectionKind::Strings)?)
                .map_err(|_| TableError::Utf8 {
                    what: "the strings section",
                })?,
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

    pub(super) fn check_str(&self, r: StrRef, what: &'static str) -> Result<(), TableError> {
        let start = ix(r.offset);
        let end = start
            .checked_add(ix(r.len))
            .ok_or(TableError::OutOfRange { what })?;
        if end > self.strings.len() {
            return Err(TableError::OutOfRange { what });
        }
        // (The section is UTF-8 as a whole; a string must not cut a character.)
        self.strings
            .get(start..end)
            .ok_or(TableError::Utf8 { what })?;
        Ok(())
    }

    pub(super) fn check_str_list(
        &self,
        start: u32,
        count: u32,
        what: &'static str,
    ) -> Result<(), TableError> {
        check_range(self.refs, start, count, 8, what)?;
        for i in 0..count {
            self.check_str(ref_at(self.refs, ix(start + i) * 8), what)?;
        }
        Ok(())
    }

    pub(super) fn validate_records(&self) -> Result<(), TableError> {
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
            self.check_str_list(
                u32_at(rec, endpoint::UPSTREAM_MODELS_START),
                u32_at(rec, endpoint::MODELS_COUNT),
                "endpoint upstream model ids",
            )?;
            let api = u8_at(rec, endpoint::BEDROCK_API);
            if api != 0 {
                BedrockApi::from_code(api).ok_or(TableError::BadCode {
                    what: "bedrock api",
                    code: api,
                })?;
            }
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
            let set_start = u32_at(rec, rule::SET_START);
            let set_count = u32_at(rec, rule::SET_COUNT);
            if action == Action::Deny && set_count != 0 {
                return Err(bad("a deny rule has an endpoint"));
            }
            check_range(self.u32s, set_start, set_count, 4, "route_to set")?;
            for k in 0..set_count {
                if u32_at(self.u32s, ix(set_start + k) * 4) >= endpoint_count {
                    return Err(bad("route_to set endpoint index out of range"));
                }
            }
        }
        Ok(())
    }

    pub(super) fn load_fields(&mut self, fields: &'a [u8]) -> Result<(), TableError> {
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
        // The evaluator ANDs the used fields' columns in this order and leaves a block of
        // rules as soon as it is empty, so the sparsest columns go first: the field whose
        // columns hold the fewest rules on average (usually the tenant) rules out most
        // blocks with one load.
        let mut used: [(u64, u8); Field::COUNT] = [(0, 0); Field::COUNT];
        for f in Field::ALL {
            if self.attrs & f.bit() != 0 {
                if let Some(slot) = used.get_mut(usize::from(self.used_count)) {
                    *slot = (self.average_density(f), f as u8);
                }
                self.used_count += 1;
            }
        }
        let used = used
            .get_mut(..usize::from(self.used_count))
            .unwrap_or_default();
        used.sort_unstable();
        for (slot, &(_, f)) in self.used.iter_mut().zip(used.iter()) {
            *slot = f;
        }
        Ok(())
    }

    /// Set bits per column of `f`, averaged over its columns, as a fixed-point number (the
    /// sum scaled by 1,024 ÷ the column count). An estimate for ordering: past 64 KiB of
    /// columns only every 7th word is counted (no hardware popcount in the baseline x86-64
    /// target; counting every word added 60% to loading a 10,000-rule table).
    fn average_density(&self, f: Field) -> u64 {
        let d = self.fields.get(f.index()).copied().unwrap_or_default();
        let col_bytes = ix(self.words) * 8;
        let start = ix(d.col_start) * col_bytes;
        let cols = self
            .columns
            .get(start..start + ix(d.col_count) * col_bytes)
            .unwrap_or_default();
        let stride = if cols.len() > 64 * 1024 { 7 } else { 1 };
        let bits: u64 = cols
            .as_chunks::<8>()
            .0
            .iter()
            .step_by(stride)
            .map(|w| u64::from(u64::from_le_bytes(*w).count_ones()))
            .sum();
        bits * 1024 * stride as u64 / u64::from(d.col_count.max(1))
    }

    pub(super) fn validate_string_field(&self, d: &FieldDesc) -> Result<(), &'static str> {
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

    pub(super) fn bound_count_nonzero(&self, d: &FieldDesc) -> bool {
        d.bound_count != 0
    }
}
