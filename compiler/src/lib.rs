//! `policyc`, the Switchyard policy compiler, as a library: the CLI in `main.rs` (and
//! later the router's admin API) go through [`compile_sources`].
//!
//! Pipeline: YAML text → [`yaml`] raw tree → [`check`] → [`ir::Policy`] → [`space`]
//! (value partitions, rule boxes) → [`analysis`] (reachability, overlap, data-class
//! leaks) → [`lower`] → [`switchyard_table::TableSpec`] → bytes, validated by
//! [`switchyard_table::Table::from_bytes`] before anyone sees them.

pub mod analysis;
pub mod cases;
pub mod check;
pub mod ci;
pub mod condition;
pub mod diag;
pub mod diff;
pub mod dump;
pub mod explain;
pub mod interp;
pub mod ir;
pub mod json;
pub mod lower;
#[cfg(feature = "replay")]
pub mod replay;
pub mod source;
pub mod space;
#[cfg(feature = "s3")]
pub mod store;
pub mod yaml;

use std::io::Write as _;
use std::path::Path;

use switchyard_table::{Table, TableError};

use crate::diag::{Diagnostic, Severity};
use crate::ir::Policy;
use crate::source::{FileId, Sources};
use crate::space::Space;

/// A successfully compiled policy.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    pub space: Space,
    /// The table bytes, already validated.
    pub table: Vec<u8>,
}

/// What compiling produced: diagnostics (sorted by position) and, when there were no
/// errors, the compiled policy.
#[derive(Debug)]
pub struct Output {
    pub diagnostics: Vec<Diagnostic>,
    pub compiled: Option<Compiled>,
}

impl Output {
    /// Whether any diagnostic is an error.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }
}

/// Errors outside the policy itself: files, tables, and bugs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not UTF-8 text (and not a Switchyard table)")]
    NotText { path: String },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid table: {source}")]
    BadTable { path: String, source: TableError },
    #[error(
        "internal error: policyc produced a table it cannot read back ({0}); please report this with the policy"
    )]
    Internal(TableError),
}

/// Checks, analyzes and lowers a policy (and optional endpoint catalogue) already loaded
/// into `sources`.
pub fn compile_sources(
    sources: &Sources,
    policy: FileId,
    catalogue: Option<FileId>,
    revision: u64,
) -> Result<Output, Error> {
    let checked = check::check(sources, policy, catalogue);
    let mut diagnostics = checked.diagnostics;
    let Some(policy) = checked.policy else {
        diag::sort(&mut diagnostics);
        return Ok(Output {
            diagnostics,
            compiled: None,
        });
    };
    let space = Space::of_policy(&policy);
    let mut prover = analysis::Prover::new(&space);
    diagnostics.extend(analysis::analyze(&policy, &mut prover));
    diag::sort(&mut diagnostics);
    if diagnostics.iter().any(|d| d.severity() == Severity::Error) {
        return Ok(Output {
            diagnostics,
            compiled: None,
        });
    }
    let spec = lower::lower(sources, &policy, &space, &prover.columns, revision);
    let table = switchyard_table::encode(&spec);
    Table::from_bytes(&table).map_err(Error::Internal)?;
    drop(prover);
    Ok(Output {
        diagnostics,
        compiled: Some(Compiled {
            policy,
            space,
            table,
        }),
    })
}

/// Compiles policy text (no catalogue), revision 0. Convenient for tests and tools.
pub fn compile_str(name: &str, text: &str) -> Result<(Sources, Output), Error> {
    let mut sources = Sources::new();
    let id = sources.add(name, text);
    let out = compile_sources(&sources, id, None, 0)?;
    Ok((sources, out))
}

/// Reads a file into memory, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Whether bytes look like a table (rather than policy YAML).
#[must_use]
pub fn is_table(bytes: &[u8]) -> bool {
    bytes.starts_with(&switchyard_table::layout::MAGIC)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over the target, fsync the directory. A reader (the router watching the file)
/// sees the old table or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_file_atomic(path, bytes, None).map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })
}

/// The one atomic whole-file write of the workspace (the router's state files use it
/// too): a temporary file beside `path` (created with `mode` when given), fsync, rename over
/// `path`, fsync the directory, so a crash leaves the old file or the new one. The directory
/// must exist.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
