//! The byte layout of a table file, format 2.0. All integers are little-endian and read
//! with `from_le_bytes`, so the format is the same on every host and needs no alignment
//! from the buffer it is read from (a `Vec<u8>` or an mmap).
//!
//! ```text
//! header   96 bytes
//!   0  magic "SWYTABLE"          8  format major u16   10 format minor u16
//!  12  header length u32 (96)    16 file length u64    24 policy revision u64
//!  32  source digest [32] (SHA-256 of the policy sources)
//!  64  section count u32         68 attributes-read mask u32 (bit = Field)
//!  72  rule count u32 (default excluded)               76 words per column u32
//!  80  header CRC32C u32 over bytes 0..80, 84..96 and the directory
//!  84  reserved, zero
//! directory: section count × 24 bytes
//!   kind u32, CRC32C u32 of the section bytes, offset u64, length u64
//! sections, each 8-byte aligned, zero padded, in kind order
//! ```
//!
//! Sections are arrays of fixed-size records; records refer to each other by index and
//! to text by [`StrRef`] (offset and length into the string section). An empty string
//! stands for "not set" in optional text fields.

/// First eight bytes of every table.
pub const MAGIC: [u8; 8] = *b"SWYTABLE";
/// Format major version: a reader refuses any other. 2: endpoint records carry `ca_file`,
/// tenant records `daily_token_budget`. 3: endpoint records carry the cloud settings
/// (`credentials_file`, the AWS key variables, `bedrock_api`) and the provider ids of their
/// models. 4: endpoint records carry `timeouts`, the `health_check` block and `weight`; rule
/// records a balanced `route_to` set. Older tables must be recompiled.
pub const FORMAT_MAJOR: u16 = 4;
/// Format minor version: additions a x.0 reader can ignore.
pub const FORMAT_MINOR: u16 = 0;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 96;
/// Length of one directory entry.
pub const DIR_ENTRY_LEN: usize = 24;
/// Upper bound on directory entries, so a corrupt count cannot make validation slow.
pub const MAX_SECTIONS: usize = 64;
/// Marks "no index" in u32 index fields.
pub const NONE: u32 = u32::MAX;

pub(crate) mod header {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const MAJOR: usize = 8;
    pub(crate) const MINOR: usize = 10;
    pub(crate) const HEADER_LEN: usize = 12;
    pub(crate) const FILE_LEN: usize = 16;
    pub(crate) const REVISION: usize = 24;
    pub(crate) const DIGEST: usize = 32;
    pub(crate) const SECTION_COUNT: usize = 64;
    pub(crate) const ATTRS: usize = 68;
    pub(crate) const RULE_COUNT: usize = 72;
    pub(crate) const WORDS: usize = 76;
    pub(crate) const CRC: usize = 80;
}

/// What a section holds. The discriminant is stored in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// UTF-8 text, referenced by [`StrRef`]s.
    Strings = 1,
    /// Lists of strings (models, allowlists): [`StrRef`] records.
    Refs = 2,
    /// Lists of indices (fallback endpoints): u32 records.
    U32s = 3,
    /// Endpoint records.
    Endpoints = 4,
    /// Tenant records.
    Tenants = 5,
    /// Data-class records.
    DataClasses = 6,
    /// Rule records, the default last.
    Rules = 7,
    /// One descriptor per [`crate::Field`].
    Fields = 8,
    /// Open-addressing hash slots of string literals.
    Literals = 9,
    /// Glob prefixes, sorted by bytes.
    Globs = 10,
    /// Numeric interval starts.
    Bounds = 11,
    /// Class → column index.
    ClassCols = 12,
    /// Rule bit-vectors, `words per column` u64 each.
    Columns = 13,
}

impl SectionKind {
    /// Every section, in file order.
    pub const ALL: [SectionKind; 13] = [
        Self::Strings,
        Self::Refs,
        Self::U32s,
        Self::Endpoints,
        Self::Tenants,
        Self::DataClasses,
        Self::Rules,
        Self::Fields,
        Self::Literals,
        Self::Globs,
        Self::Bounds,
        Self::ClassCols,
        Self::Columns,
    ];

    /// The kind stored as `code`, if this reader knows it.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == code)
    }

    /// Size of one record.
    #[must_use]
    pub fn record_len(self) -> usize {
        match self {
            Self::Strings => 1,
            Self::Refs | Self::Bounds | Self::Columns => 8,
            Self::U32s | Self::ClassCols => 4,
            Self::Endpoints => endpoint::LEN,
            Self::Tenants => tenant::LEN,
            Self::DataClasses => data_class::LEN,
            Self::Rules => rule::LEN,
            Self::Fields => field::LEN,
            Self::Literals | Self::Globs => 16,
        }
    }
}

/// Text by reference: byte offset and length in the string section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrRef {
    pub offset: u32,
    pub len: u32,
}

pub(crate) mod endpoint {
    pub(crate) const LEN: usize = 200;
    pub(crate) const ID: usize = 0;
    pub(crate) const URL: usize = 8;
    pub(crate) const DEFAULT_MODEL: usize = 16;
    pub(crate) const API_KEY_ENV: usize = 24;
    pub(crate) const API_KEY_FILE: usize = 32;
    pub(crate) const REGION: usize = 40;
    pub(crate) const API_VERSION: usize = 48;
    pub(crate) const DEPLOYMENT: usize = 56;
    pub(crate) const PROJECT: usize = 64;
    pub(crate) const LOCATION: usize = 72;
    /// PEM file of extra trust anchors for an `https://` upstream (private CA).
    pub(crate) const CA_FILE: usize = 120;
    /// Vertex: a service-account key file.
    pub(crate) const CREDENTIALS_FILE: usize = 128;
    /// Bedrock: the environment variables holding the AWS credentials.
    pub(crate) const AWS_ACCESS_KEY_ID_ENV: usize = 136;
    pub(crate) const AWS_SECRET_ACCESS_KEY_ENV: usize = 144;
    pub(crate) const AWS_SESSION_TOKEN_ENV: usize = 152;
    /// `health_check.path`: the path probed (empty: the type's default).
    pub(crate) const HEALTH_PATH: usize = 184;
    pub(crate) const TEXT_FIELDS: [usize; 16] = [
        ID,
        URL,
        DEFAULT_MODEL,
        API_KEY_ENV,
        API_KEY_FILE,
        REGION,
        API_VERSION,
        DEPLOYMENT,
        PROJECT,
        LOCATION,
        CA_FILE,
        CREDENTIALS_FILE,
        AWS_ACCESS_KEY_ID_ENV,
        AWS_SECRET_ACCESS_KEY_ENV,
        AWS_SESSION_TOKEN_ENV,
        HEALTH_PATH,
    ];
    pub(crate) const MODELS_START: usize = 80;
    pub(crate) const MODELS_COUNT: usize = 84;
    pub(crate) const KIND: usize = 88;
    pub(crate) const TRANSPORT: usize = 89;
    pub(crate) const FLAGS: usize = 90;
    /// Bedrock: the `BedrockApi` code; 0 for other types.
    pub(crate) const BEDROCK_API: usize = 91;
    pub(crate) const HEALTH_MS: usize = 92;
    pub(crate) const TIMEOUT_MS: usize = 96;
    pub(crate) const INPUT_PER_1K: usize = 104;
    pub(crate) const OUTPUT_PER_1K: usize = 112;
    /// First ref of the provider ids of `models`, one per model (`MODELS_COUNT` of them; an
    /// empty one: the model's own name is sent).
    pub(crate) const UPSTREAM_MODELS_START: usize = 160;
    /// Share of a balanced `route_to` set (≥ 1).
    pub(crate) const WEIGHT: usize = 164;
    /// `timeouts` (ms; 0: the router's default for each).
    pub(crate) const CONNECT_MS: usize = 168;
    pub(crate) const TTFT_MS: usize = 172;
    pub(crate) const IDLE_MS: usize = 176;
    pub(crate) const TOTAL_MS: usize = 180;
    /// `health_check.timeout_ms` (0: the default).
    pub(crate) const HEALTH_TIMEOUT_MS: usize = 192;
    /// `health_check.unhealthy_threshold` and `healthy_threshold` (0: the defaults).
    pub(crate) const UNHEALTHY_THRESHOLD: usize = 196;
    pub(crate) const HEALTHY_THRESHOLD: usize = 197;
    /// Flag: not declared by the policy; the built-in endpoint of a managed provider.
    pub(crate) const FLAG_BUILTIN: u8 = 1;
}

pub(crate) mod tenant {
    pub(crate) const LEN: usize = 56;
    pub(crate) const ID: usize = 0;
    pub(crate) const AUDIT_BUCKET: usize = 8;
    pub(crate) const ALLOW_START: usize = 16;
    pub(crate) const ALLOW_COUNT: usize = 20;
    pub(crate) const FLAGS: usize = 24;
    pub(crate) const RPM: usize = 28;
    pub(crate) const TPM: usize = 32;
    pub(crate) const DAILY_BUDGET: usize = 40;
    pub(crate) const DAILY_TOKENS: usize = 48;
    /// Flag: the tenant has an allowlist (an empty one allows nothing).
    pub(crate) const FLAG_ALLOWLIST: u32 = 1;
}

pub(crate) mod data_class {
    pub(crate) const LEN: usize = 16;
    pub(crate) const ID: usize = 0;
    pub(crate) const FLAGS: usize = 8;
    pub(crate) const FLAG_STAYS_PRIVATE: u32 = 1;
}

pub(crate) mod rule {
    pub(crate) const LEN: usize = 88;
    pub(crate) const NAME: usize = 0;
    /// Six `StrRef`s: the source text of each field's condition, empty if none.
    pub(crate) const CONDS: usize = 8;
    pub(crate) const ENDPOINT: usize = 56;
    pub(crate) const FALLBACK_START: usize = 60;
    pub(crate) const FALLBACK_COUNT: usize = 64;
    pub(crate) const ACTION: usize = 68;
    pub(crate) const FLAGS: usize = 69;
    pub(crate) const LINE: usize = 72;
    pub(crate) const COLUMN: usize = 76;
    /// The other members of a balanced `route_to` set (after `ENDPOINT`), in the u32 list.
    pub(crate) const SET_START: usize = 80;
    pub(crate) const SET_COUNT: usize = 84;
    pub(crate) const FLAG_DEFAULT: u8 = 1;
    /// `resend_on_reset: true`: a request whose connection broke after it was sent, before
    /// any answer, may go to the next candidate.
    pub(crate) const FLAG_RESEND_ON_RESET: u8 = 2;
}

pub(crate) mod field {
    pub(crate) const LEN: usize = 64;
    pub(crate) const KIND: usize = 0;
    pub(crate) const USED: usize = 1;
    pub(crate) const CLASS_COUNT: usize = 4;
    pub(crate) const CLASSCOL_START: usize = 8;
    pub(crate) const COL_START: usize = 12;
    pub(crate) const COL_COUNT: usize = 16;
    pub(crate) const LIT_START: usize = 20;
    pub(crate) const LIT_SLOTS: usize = 24;
    pub(crate) const GLOB_START: usize = 28;
    pub(crate) const GLOB_COUNT: usize = 32;
    pub(crate) const BOUND_START: usize = 36;
    pub(crate) const BOUND_COUNT: usize = 40;
    pub(crate) const LITERAL_COUNT: usize = 44;
}

/// A literal hash slot: text `StrRef`, FNV-1a hash u32, class u32 ([`NONE`] if empty).
pub(crate) mod literal {
    pub(crate) const TEXT: usize = 0;
    pub(crate) const HASH: usize = 8;
    pub(crate) const CLASS: usize = 12;
}

/// A glob: prefix `StrRef`, class u32, parent u32 (the longest other glob that is a
/// proper prefix of this one, or [`super::NONE`]).
pub(crate) mod glob {
    pub(crate) const PREFIX: usize = 0;
    pub(crate) const CLASS: usize = 8;
    pub(crate) const PARENT: usize = 12;
}

/// Field-kind codes stored in a field descriptor.
pub(crate) fn field_kind_code(kind: crate::FieldKind) -> u8 {
    match kind {
        crate::FieldKind::Id => 1,
        crate::FieldKind::Label => 2,
        crate::FieldKind::Integer => 3,
        crate::FieldKind::Money => 4,
    }
}

// Total little-endian reads. Out-of-range reads yield 0; the validator has already
// proved every offset it hands out in range, so after validation they never happen.

#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off.wrapping_add(2))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

#[inline]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off.wrapping_add(4))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

#[inline]
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off.wrapping_add(8))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[inline]
pub(crate) fn ref_at(b: &[u8], off: usize) -> StrRef {
    StrRef {
        offset: u32_at(b, off),
        len: u32_at(b, off + 4),
    }
}

/// Widens a stored `u32` to an index. Lossless on every target Switchyard supports
/// (usize is at least 32 bits).
#[inline]
pub(crate) fn ix(v: u32) -> usize {
    v as usize
}
