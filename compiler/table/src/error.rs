//! Why a byte buffer is not a valid table. Every check [`crate::Table::from_bytes`] makes
//! has its own variant so that a router refusing a table can say exactly why.

use crate::layout::SectionKind;

/// A table failed validation. Nothing of it was used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("file is {len} bytes, too short for a table header ({need} bytes)")]
    TooShort { len: usize, need: usize },
    #[error("not a Switchyard table (bad magic bytes)")]
    BadMagic,
    #[error(
        "table format {major}.{minor} is not supported (this build reads {supported}.x); recompile the policy with a matching policyc"
    )]
    UnsupportedVersion {
        major: u16,
        minor: u16,
        supported: u16,
    },
    #[error(
        "header says the file is {declared} bytes but it is {actual} bytes (truncated or padded)"
    )]
    LengthMismatch { declared: u64, actual: usize },
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("section directory is malformed: {0}")]
    Directory(&'static str),
    #[error("section {kind:?} is missing")]
    MissingSection { kind: SectionKind },
    #[error("section {kind:?} appears twice")]
    DuplicateSection { kind: SectionKind },
    #[error("section {kind:?} lies outside the file or is misaligned")]
    SectionBounds { kind: SectionKind },
    #[error(
        "section {kind:?} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    SectionChecksum {
        kind: SectionKind,
        stored: u32,
        computed: u32,
    },
    #[error("section {kind:?} has a length that is not a whole number of records")]
    RecordSize { kind: SectionKind },
    #[error("{what} is out of range")]
    OutOfRange { what: &'static str },
    #[error("{what} is not valid UTF-8")]
    Utf8 { what: &'static str },
    #[error("invalid {what} code {code}")]
    BadCode { what: &'static str, code: u8 },
    #[error("field {field} is inconsistent: {what}")]
    Field {
        field: &'static str,
        what: &'static str,
    },
    #[error("rule {rule} is inconsistent: {what}")]
    Rule { rule: u32, what: &'static str },
}
