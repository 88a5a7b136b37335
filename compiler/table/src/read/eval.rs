//! The evaluator: each used field maps the request's value to a class and the class to a
//! column of rule bits; the AND of the columns gives the matching rules, the lowest set bit
//! the first match.

use super::*;

impl<'a> Table<'a> {
    #[inline(always)]
    pub(super) fn lookup_literal(&self, rt: &FieldRt<'a>, value: &[u8]) -> Option<u32> {
        let (slots, _) = rt.lits.as_chunks::<16>();
        if slots.is_empty() {
            return None;
        }
        let hash = literal_hash(value);
        let mut slot = hash & rt.mask;
        // Bounded by the slot count: terminates even on a table with no empty slot.
        for _ in 0..=rt.mask {
            // Validation made the slot count the mask plus one.
            let r = slots.get(ix(slot))?;
            let class = le32(r, literal::CLASS);
            if class == NONE {
                return None;
            }
            if le32(r, literal::HASH) == hash
                && bytes_eq(
                    self.str_at(le32(r, literal::TEXT), le32(r, literal::TEXT + 4)),
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
    pub(super) fn lookup_glob(&self, rt: &FieldRt<'a>, value: &[u8]) -> Option<u32> {
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
    pub(super) fn class_of(&self, f: Field, rt: &FieldRt<'a>, req: &Request<'_>) -> u32 {
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
    pub(super) fn column(&self, rt: &FieldRt<'a>, class: u32) -> &'a [u8] {
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
        // per step. A block is left as soon as it holds no rule (the sparsest columns come
        // first, see `validate.rs`), and the scan stops at the first block with a
        // surviving rule.
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
                    break;
                };
                let [b0, b1, b2, b3] = [0, 8, 16, 24].map(|o| word(&block, o / 8));
                a0 &= b0;
                a1 &= b1;
                a2 &= b2;
                a3 &= b3;
                if a0 | a1 | a2 | a3 == 0 {
                    break;
                }
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
}
