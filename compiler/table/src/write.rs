//! The table writer: a fully lowered [`TableSpec`] in, deterministic bytes out.
//!
//! Determinism: the output depends only on the spec (no maps with random iteration
//! order, no timestamps), so the same policy always gives the same bytes. The writer does
//! not judge the spec; callers validate what they wrote with [`crate::Table::from_bytes`]
//! before publishing it (the compiler does), so a writer bug can never ship a table the
//! router would refuse.

use std::collections::HashMap;

use crate::layout::{
    self, DIR_ENTRY_LEN, FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN, MAGIC, NONE, SectionKind, StrRef,
    data_class, endpoint, field, glob, header, literal, rule, tenant,
};
use crate::partition::{Atom, Partition, literal_hash, to_u32};
use crate::{Action, BedrockApi, EndpointKind, Field, Micros, Transport};

/// An endpoint as the table stores it. Secrets are never here: only the name of the
/// environment variable or file that holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub id: String,
    pub kind: EndpointKind,
    /// Empty for a managed provider's default base URL.
    pub url: String,
    pub transport: Transport,
    /// Models served; empty means "any model the provider accepts".
    pub models: Vec<String>,
    /// Model used for `model: "auto"`; empty if none.
    pub default_model: String,
    pub health_check_interval_ms: u32,
    pub timeout_ms: u32,
    pub input_per_1k: Micros,
    pub output_per_1k: Micros,
    pub api_key_env: String,
    pub api_key_file: String,
    pub region: String,
    pub api_version: String,
    pub deployment: String,
    pub project: String,
    pub location: String,
    /// PEM file of extra CA certificates trusted for this endpoint; empty if none.
    pub ca_file: String,
    /// Vertex: a service-account key file; empty for the metadata server.
    pub credentials_file: String,
    /// Bedrock: environment variables holding the AWS access key, secret and session token.
    pub aws_access_key_id_env: String,
    pub aws_secret_access_key_env: String,
    pub aws_session_token_env: String,
    /// Bedrock: which API; `None` for other types.
    pub bedrock_api: Option<BedrockApi>,
    /// The provider's id for each of `models` (same length; empty: the name itself).
    pub upstream_models: Vec<String>,
    /// Not declared by the policy: a managed provider's built-in endpoint.
    pub builtin: bool,
    /// `timeouts`, `health_check` and `weight`.
    pub resilience: EndpointResilience,
}

/// An endpoint's own timeouts, health check and balancing weight. Zero (and an empty path)
/// means the router's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointResilience {
    pub connect_ms: u32,
    /// Time to the response head.
    pub ttft_ms: u32,
    /// Longest gap between two reads of a response body.
    pub idle_ms: u32,
    /// Whole attempt.
    pub total_ms: u32,
    pub health_path: String,
    pub health_timeout_ms: u32,
    pub unhealthy_threshold: u8,
    pub healthy_threshold: u8,
    /// Share in a balanced `route_to` set; 0 reads as 1.
    pub weight: u32,
}

/// A tenant as the table stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantSpec {
    pub id: String,
    /// `None`: any model; `Some(list)`: only these.
    pub model_allowlist: Option<Vec<String>>,
    /// Requests per minute; 0 for no limit.
    pub rate_limit_rpm: u32,
    /// Tokens per minute; 0 for no limit.
    pub rate_limit_tpm: u64,
    /// Daily token limit (prompt + completion); 0 for none.
    pub daily_token_budget: u64,
    /// Daily spend limit; 0 for none.
    pub daily_budget: Micros,
    /// Empty for the router's default audit destination.
    pub audit_bucket: String,
}

/// A data class as the table stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataClassSpec {
    pub id: String,
    pub stays_private: bool,
}

/// A rule (or the default) as the table stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// Empty for an unnamed rule.
    pub name: String,
    /// Source text of each field's condition (indexed by [`Field`]), empty if none.
    /// Only explanations read these; evaluation uses the columns.
    pub conditions: [String; Field::COUNT],
    pub action: Action,
    /// Endpoint index, [`NONE`] for [`Action::Deny`].
    pub endpoint: u32,
    /// The other members of a balanced `route_to` set (after `endpoint`), in order.
    pub balanced: Vec<u32>,
    /// Fallback endpoint indices, in order.
    pub fallback: Vec<u32>,
    /// A request whose upstream connection broke after it was sent (before any answer) may
    /// go to the next candidate, at the risk of running twice.
    pub resend_on_reset: bool,
    /// Where the rule starts in the policy source (1-based), for explanations.
    pub line: u32,
    pub column: u32,
}

/// One field's classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Whether any rule has a condition on this field.
    pub used: bool,
    pub partition: Partition,
    /// Column of each class (`partition.class_count()` entries).
    pub class_columns: Vec<u32>,
    /// Distinct rule bit-vectors, each `ceil(rules / 64)` words; bit `r` of word `r / 64`
    /// is rule `r`.
    pub columns: Vec<Vec<u64>>,
}

/// Everything a table holds, fully lowered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub revision: u64,
    pub source_digest: [u8; 32],
    pub endpoints: Vec<EndpointSpec>,
    pub tenants: Vec<TenantSpec>,
    pub data_classes: Vec<DataClassSpec>,
    /// Rules in declaration order, the default excluded.
    pub rules: Vec<RuleSpec>,
    pub default: RuleSpec,
    pub fields: [FieldSpec; Field::COUNT],
}

impl TableSpec {
    /// Words in every rule bit-vector.
    #[must_use]
    pub fn words_per_column(&self) -> usize {
        self.rules.len().div_ceil(64)
    }
}

#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: HashMap<String, StrRef>,
}

impl Strings {
    fn add(&mut self, s: &str) -> StrRef {
        if s.is_empty() {
            return StrRef::default();
        }
        if let Some(r) = self.seen.get(s) {
            return *r;
        }
        let r = StrRef {
            offset: to_u32(self.bytes.len()),
            len: to_u32(s.len()),
        };
        self.bytes.extend_from_slice(s.as_bytes());
        self.seen.insert(s.to_owned(), r);
        r
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_ref(buf: &mut Vec<u8>, r: StrRef) {
    put_u32(buf, r.offset);
    put_u32(buf, r.len);
}

fn set_u8(rec: &mut [u8], off: usize, v: u8) {
    if let Some(b) = rec.get_mut(off) {
        *b = v;
    }
}

fn set_bytes(rec: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = rec.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn set_u32(rec: &mut [u8], off: usize, v: u32) {
    set_bytes(rec, off, &v.to_le_bytes());
}

fn set_u64(rec: &mut [u8], off: usize, v: u64) {
    set_bytes(rec, off, &v.to_le_bytes());
}

fn set_ref(rec: &mut [u8], off: usize, r: StrRef) {
    set_u32(rec, off, r.offset);
    set_u32(rec, off + 4, r.len);
}

#[derive(Default)]
struct Sections {
    strings: Strings,
    refs: Vec<u8>,
    u32s: Vec<u8>,
    endpoints: Vec<u8>,
    tenants: Vec<u8>,
    data_classes: Vec<u8>,
    rules: Vec<u8>,
    fields: Vec<u8>,
    literals: Vec<u8>,
    globs: Vec<u8>,
    bounds: Vec<u8>,
    class_cols: Vec<u8>,
    columns: Vec<u8>,
}

impl Sections {
    /// Appends a list of strings to the refs section; returns (start, count).
    fn string_list(&mut self, items: &[String]) -> (u32, u32) {
        let start = to_u32(self.refs.len() / 8);
        for s in items {
            let r = self.strings.add(s);
            put_ref(&mut self.refs, r);
        }
        (start, to_u32(items.len()))
    }

    fn endpoint(&mut self, e: &EndpointSpec) {
        let mut rec = vec![0u8; endpoint::LEN];
        let texts = [
            &e.id,
            &e.url,
            &e.default_model,
            &e.api_key_env,
            &e.api_key_file,
            &e.region,
            &e.api_version,
            &e.deployment,
            &e.project,
            &e.location,
            &e.ca_file,
            &e.credentials_file,
            &e.aws_access_key_id_env,
            &e.aws_secret_access_key_env,
            &e.aws_session_token_env,
            &e.resilience.health_path,
        ];
        for (off, text) in endpoint::TEXT_FIELDS.into_iter().zip(texts) {
            let r = self.strings.add(text);
            set_ref(&mut rec, off, r);
        }
        let (start, count) = self.string_list(&e.models);
        set_u32(&mut rec, endpoint::MODELS_START, start);
        set_u32(&mut rec, endpoint::MODELS_COUNT, count);
        // One provider id per model, empty where none was given.
        let mut upstream = e.upstream_models.clone();
        upstream.resize(e.models.len(), String::new());
        let (start, _) = self.string_list(&upstream);
        set_u32(&mut rec, endpoint::UPSTREAM_MODELS_START, start);
        set_u8(
            &mut rec,
            endpoint::BEDROCK_API,
            e.bedrock_api.map_or(0, BedrockApi::code),
        );
        set_u8(&mut rec, endpoint::KIND, e.kind.code());
        set_u8(&mut rec, endpoint::TRANSPORT, e.transport.code());
        let flags = if e.builtin { endpoint::FLAG_BUILTIN } else { 0 };
        set_u8(&mut rec, endpoint::FLAGS, flags);
        set_u32(&mut rec, endpoint::HEALTH_MS, e.health_check_interval_ms);
        set_u32(&mut rec, endpoint::TIMEOUT_MS, e.timeout_ms);
        let r = &e.resilience;
        set_u32(&mut rec, endpoint::WEIGHT, r.weight.max(1));
        set_u32(&mut rec, endpoint::CONNECT_MS, r.connect_ms);
        set_u32(&mut rec, endpoint::TTFT_MS, r.ttft_ms);
        set_u32(&mut rec, endpoint::IDLE_MS, r.idle_ms);
        set_u32(&mut rec, endpoint::TOTAL_MS, r.total_ms);
        set_u32(&mut rec, endpoint::HEALTH_TIMEOUT_MS, r.health_timeout_ms);
        set_u8(
            &mut rec,
            endpoint::UNHEALTHY_THRESHOLD,
            r.unhealthy_threshold,
        );
        set_u8(&mut rec, endpoint::HEALTHY_THRESHOLD, r.healthy_threshold);
        set_u64(&mut rec, endpoint::INPUT_PER_1K, e.input_per_1k.0);
        set_u64(&mut rec, endpoint::OUTPUT_PER_1K, e.output_per_1k.0);
        self.endpoints.extend_from_slice(&rec);
    }

    fn tenant(&mut self, t: &TenantSpec) {
        let mut rec = vec![0u8; tenant::LEN];
        let id = self.strings.add(&t.id);
        set_ref(&mut rec, tenant::ID, id);
        let bucket = self.strings.add(&t.audit_bucket);
        set_ref(&mut rec, tenant::AUDIT_BUCKET, bucket);
        let (start, count) = self.string_list(t.model_allowlist.as_deref().unwrap_or(&[]));
        set_u32(&mut rec, tenant::ALLOW_START, start);
        set_u32(&mut rec, tenant::ALLOW_COUNT, count);
        let flags = if t.model_allowlist.is_some() {
            tenant::FLAG_ALLOWLIST
        } else {
            0
        };
        set_u32(&mut rec, tenant::FLAGS, flags);
        set_u32(&mut rec, tenant::RPM, t.rate_limit_rpm);
        set_u64(&mut rec, tenant::TPM, t.rate_limit_tpm);
        set_u64(&mut rec, tenant::DAILY_BUDGET, t.daily_budget.0);
        set_u64(&mut rec, tenant::DAILY_TOKENS, t.daily_token_budget);
        self.tenants.extend_from_slice(&rec);
    }

    fn data_class(&mut self, d: &DataClassSpec) {
        let mut rec = vec![0u8; data_class::LEN];
        let id = self.strings.add(&d.id);
        set_ref(&mut rec, data_class::ID, id);
        let flags = if d.stays_private {
            data_class::FLAG_STAYS_PRIVATE
        } else {
            0
        };
        set_u32(&mut rec, data_class::FLAGS, flags);
        self.data_classes.extend_from_slice(&rec);
    }

    fn rule(&mut self, r: &RuleSpec, is_default: bool) {
        let mut rec = vec![0u8; rule::LEN];
        let name = self.strings.add(&r.name);
        set_ref(&mut rec, rule::NAME, name);
        for (i, cond) in r.conditions.iter().enumerate() {
            let c = self.strings.add(cond);
            set_ref(&mut rec, rule::CONDS + 8 * i, c);
        }
        set_u32(&mut rec, rule::ENDPOINT, r.endpoint);
        set_u32(&mut rec, rule::FALLBACK_START, to_u32(self.u32s.len() / 4));
        set_u32(&mut rec, rule::FALLBACK_COUNT, to_u32(r.fallback.len()));
        for &f in &r.fallback {
            put_u32(&mut self.u32s, f);
        }
        set_u32(&mut rec, rule::SET_START, to_u32(self.u32s.len() / 4));
        set_u32(&mut rec, rule::SET_COUNT, to_u32(r.balanced.len()));
        for &m in &r.balanced {
            put_u32(&mut self.u32s, m);
        }
        set_u8(&mut rec, rule::ACTION, r.action.code());
        let mut flags = if is_default { rule::FLAG_DEFAULT } else { 0 };
        if r.resend_on_reset {
            flags |= rule::FLAG_RESEND_ON_RESET;
        }
        set_u8(&mut rec, rule::FLAGS, flags);
        set_u32(&mut rec, rule::LINE, r.line);
        set_u32(&mut rec, rule::COLUMN, r.column);
        self.rules.extend_from_slice(&rec);
    }

    fn field(&mut self, f: Field, spec: &FieldSpec, words: usize) {
        let mut rec = vec![0u8; field::LEN];
        set_u8(&mut rec, field::KIND, layout::field_kind_code(f.kind()));
        set_u8(&mut rec, field::USED, u8::from(spec.used));
        set_u32(&mut rec, field::CLASS_COUNT, spec.partition.class_count());
        set_u32(
            &mut rec,
            field::CLASSCOL_START,
            to_u32(self.class_cols.len() / 4),
        );
        for &c in &spec.class_columns {
            put_u32(&mut self.class_cols, c);
        }
        set_u32(
            &mut rec,
            field::COL_START,
            to_u32(self.columns.len() / (8 * words.max(1))),
        );
        set_u32(&mut rec, field::COL_COUNT, to_u32(spec.columns.len()));
        if words > 0 {
            for col in &spec.columns {
                for w in 0..words {
                    put_u64(&mut self.columns, col.get(w).copied().unwrap_or(0));
                }
            }
        }
        match &spec.partition {
            Partition::Str(p) => self.string_partition(&mut rec, p.atoms()),
            Partition::Num(p) => {
                set_u32(&mut rec, field::BOUND_START, to_u32(self.bounds.len() / 8));
                set_u32(&mut rec, field::BOUND_COUNT, to_u32(p.bounds().len()));
                for &b in p.bounds() {
                    put_u64(&mut self.bounds, b);
                }
            }
        }
        self.fields.extend_from_slice(&rec);
    }

    fn string_partition(&mut self, rec: &mut [u8], atoms: &[Atom]) {
        let literals: Vec<(usize, &str)> = atoms
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Atom::Literal(s) => Some((i, s.as_str())),
                Atom::Glob(_) => None,
            })
            .collect();
        let globs: Vec<(usize, &str)> = atoms
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Atom::Glob(s) => Some((i, s.as_str())),
                Atom::Literal(_) => None,
            })
            .collect();

        // Literals: open addressing, linear probing, at most half full.
        let slots = if literals.is_empty() {
            0
        } else {
            (literals.len() * 2).next_power_of_two()
        };
        let mut table: Vec<Option<(usize, &str, u32)>> = vec![None; slots];
        for &(i, text) in &literals {
            let hash = literal_hash(text.as_bytes());
            let mut slot = layout::ix(hash) & (slots - 1);
            while table.get(slot).is_some_and(Option::is_some) {
                slot = (slot + 1) & (slots - 1);
            }
            if let Some(s) = table.get_mut(slot) {
                *s = Some((i, text, hash));
            }
        }
        set_u32(rec, field::LIT_START, to_u32(self.literals.len() / 16));
        set_u32(rec, field::LIT_SLOTS, to_u32(slots));
        set_u32(rec, field::LITERAL_COUNT, to_u32(literals.len()));
        for slot in table {
            let mut s = [0u8; 16];
            match slot {
                Some((i, text, hash)) => {
                    let r = self.strings.add(text);
                    set_ref(&mut s, literal::TEXT, r);
                    set_u32(&mut s, literal::HASH, hash);
                    set_u32(&mut s, literal::CLASS, to_u32(i + 2));
                }
                None => set_u32(&mut s, literal::CLASS, NONE),
            }
            self.literals.extend_from_slice(&s);
        }

        // Globs: already in byte order (atoms are sorted); parent = nearest earlier glob
        // that is a proper prefix. Walking the chain of the previous glob finds it.
        set_u32(rec, field::GLOB_START, to_u32(self.globs.len() / 16));
        set_u32(rec, field::GLOB_COUNT, to_u32(globs.len()));
        let mut parents: Vec<u32> = Vec::with_capacity(globs.len());
        for (k, &(i, text)) in globs.iter().enumerate() {
            let mut parent = if k == 0 { NONE } else { to_u32(k - 1) };
            while parent != NONE {
                let p = layout::ix(parent);
                let ptext = globs.get(p).map_or("", |g| g.1);
                if text.len() > ptext.len() && text.starts_with(ptext) {
                    break;
                }
                parent = parents.get(p).copied().unwrap_or(NONE);
            }
            parents.push(parent);
            let mut s = [0u8; 16];
            let r = self.strings.add(text);
            set_ref(&mut s, glob::PREFIX, r);
            set_u32(&mut s, glob::CLASS, to_u32(i + 2));
            set_u32(&mut s, glob::PARENT, parent);
            self.globs.extend_from_slice(&s);
        }
    }
}

/// Serializes a table. The result is validated by [`crate::Table::from_bytes`] in the
/// compiler before it is written anywhere.
#[must_use]
pub fn encode(spec: &TableSpec) -> Vec<u8> {
    let words = spec.words_per_column();
    let mut s = Sections::default();
    for e in &spec.endpoints {
        s.endpoint(e);
    }
    for t in &spec.tenants {
        s.tenant(t);
    }
    for d in &spec.data_classes {
        s.data_class(d);
    }
    for r in &spec.rules {
        s.rule(r, false);
    }
    s.rule(&spec.default, true);
    let mut attrs = 0u32;
    for (f, fs) in Field::ALL.into_iter().zip(&spec.fields) {
        s.field(f, fs, words);
        if fs.used {
            attrs |= f.bit();
        }
    }

    let bodies: [(SectionKind, Vec<u8>); 13] = [
        (SectionKind::Strings, s.strings.bytes),
        (SectionKind::Refs, s.refs),
        (SectionKind::U32s, s.u32s),
        (SectionKind::Endpoints, s.endpoints),
        (SectionKind::Tenants, s.tenants),
        (SectionKind::DataClasses, s.data_classes),
        (SectionKind::Rules, s.rules),
        (SectionKind::Fields, s.fields),
        (SectionKind::Literals, s.literals),
        (SectionKind::Globs, s.globs),
        (SectionKind::Bounds, s.bounds),
        (SectionKind::ClassCols, s.class_cols),
        (SectionKind::Columns, s.columns),
    ];

    let dir_len = bodies.len() * DIR_ENTRY_LEN;
    let mut offset = (HEADER_LEN + dir_len).next_multiple_of(8);
    let mut dir = Vec::with_capacity(dir_len);
    for (kind, body) in &bodies {
        put_u32(&mut dir, *kind as u32);
        put_u32(&mut dir, crc32c::crc32c(body));
        put_u64(&mut dir, offset as u64);
        put_u64(&mut dir, body.len() as u64);
        offset = (offset + body.len()).next_multiple_of(8);
    }
    let file_len = offset;

    let mut out = Vec::with_capacity(file_len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    put_u32(&mut out, to_u32(HEADER_LEN));
    put_u64(&mut out, file_len as u64);
    put_u64(&mut out, spec.revision);
    out.extend_from_slice(&spec.source_digest);
    put_u32(&mut out, to_u32(bodies.len()));
    put_u32(&mut out, attrs);
    put_u32(&mut out, to_u32(spec.rules.len()));
    put_u32(&mut out, to_u32(words));
    put_u32(&mut out, 0); // header CRC, filled in below
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(&dir);
    for (_, body) in &bodies {
        out.resize(out.len().next_multiple_of(8), 0);
        out.extend_from_slice(body);
    }
    out.resize(file_len, 0);
    let crc = header_crc(&out, bodies.len());
    set_u32(&mut out, header::CRC, crc);
    out
}

/// CRC32C of the header (its CRC field excluded) and the directory.
pub(crate) fn header_crc(bytes: &[u8], sections: usize) -> u32 {
    let head = bytes.get(..header::CRC).unwrap_or_default();
    let rest = bytes.get(header::CRC + 4..HEADER_LEN).unwrap_or_default();
    let dir_end = HEADER_LEN.saturating_add(sections.saturating_mul(DIR_ENTRY_LEN));
    let dir = bytes.get(HEADER_LEN..dir_end).unwrap_or_default();
    let crc = crc32c::crc32c(head);
    let crc = crc32c::crc32c_append(crc, rest);
    crc32c::crc32c_append(crc, dir)
}

/// Recomputes every checksum of a (possibly corrupt) table in place, so that fuzzers and
/// tests can reach the structural checks behind them. Never panics; does nothing useful
/// on bytes that are not even table-shaped.
pub fn reseal(bytes: &mut [u8]) {
    let count = layout::ix(layout::u32_at(bytes, header::SECTION_COUNT)).min(layout::MAX_SECTIONS);
    for i in 0..count {
        let e = HEADER_LEN + i * DIR_ENTRY_LEN;
        let off = usize::try_from(layout::u64_at(bytes, e + 8)).unwrap_or(usize::MAX);
        let len = usize::try_from(layout::u64_at(bytes, e + 16)).unwrap_or(usize::MAX);
        let Some(body) = off.checked_add(len).and_then(|end| bytes.get(off..end)) else {
            continue;
        };
        let crc = crc32c::crc32c(body);
        set_u32_slice(bytes, e + 4, crc);
    }
    let crc = header_crc(bytes, count);
    set_u32_slice(bytes, header::CRC, crc);
}

fn set_u32_slice(bytes: &mut [u8], off: usize, v: u32) {
    if let Some(dst) = bytes.get_mut(off..off + 4) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}
