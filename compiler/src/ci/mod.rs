//! Findings for CI systems: GitHub Actions workflow commands ([`github`]) and SARIF 2.1.0
//! ([`sarif`], what GitHub code scanning and most review tools import).
//!
//! Every command that reports something a reviewer should see — `check` and `compile`
//! diagnostics, `test` failures, `replay`'s route changes and `--fail-if` results — turns
//! it into [`Finding`]s: a level, a rule id, a message and, where there is one, the exact
//! place in a source file. The two renderers read nothing else.

pub mod github;
pub mod sarif;

use crate::diag::{Diagnostic, Severity};
use crate::source::{Sources, Span};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl From<Severity> for Level {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Error => Self::Error,
            Severity::Warning => Self::Warning,
        }
    }
}

/// A place in a source file: 1-based lines, columns in characters, the end exclusive;
/// columns 0 when only the line is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl Location {
    /// The location of a span, if its file is known.
    #[must_use]
    pub fn of(sources: &Sources, span: Span) -> Option<Self> {
        let file = sources.file(span.file)?;
        let (line, column) = file.line_col(span.start as usize);
        let (end_line, end_column) = file.line_col(span.end as usize);
        Some(Self {
            file: file.name.clone(),
            line,
            column,
            end_line,
            end_column,
        })
    }

    /// A whole line (a test case, where only the line is known).
    #[must_use]
    pub fn line(file: &str, line: usize) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column: 0,
            end_line: line,
            end_column: 0,
        }
    }
}

/// What a finding's rule id means, for SARIF's rule table.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub id: String,
    /// A kebab-case name.
    pub name: String,
    pub summary: String,
    pub level: Level,
}

/// One thing to show a reviewer.
#[derive(Clone, Debug)]
pub struct Finding {
    pub level: Level,
    /// A diagnostic code (`P0301`) or a replay class (`replay/rerouted`).
    pub rule: String,
    /// A short headline (GitHub's annotation title).
    pub title: String,
    /// The full message; may span lines.
    pub message: String,
    pub location: Option<Location>,
    /// Related places, each with what it is.
    pub related: Vec<(Location, String)>,
    /// Machine-readable details (SARIF's property bag).
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl Finding {
    /// A finding for a compiler diagnostic: at its primary label, the help and notes
    /// appended to the message, secondary labels as related places.
    #[must_use]
    pub fn of_diagnostic(sources: &Sources, d: &Diagnostic) -> Self {
        let mut message = d.message.clone();
        let primary = d.labels.iter().find(|l| l.primary);
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        for note in &d.notes {
            message.push_str("\nnote: ");
            message.push_str(note);
        }
        let related = d
            .labels
            .iter()
            .filter(|l| !l.primary)
            .filter_map(|l| Some((Location::of(sources, l.span)?, l.message.clone())))
            .collect();
        Self {
            level: d.severity().into(),
            rule: d.code.as_str().to_owned(),
            title: format!("{} {}", d.code.as_str(), d.code.slug()),
            message,
            location: primary.and_then(|l| Location::of(sources, l.span)),
            related,
            properties: serde_json::Map::new(),
        }
    }
}

/// SARIF rule descriptors for every diagnostic code.
#[must_use]
pub fn diagnostic_rules() -> Vec<RuleInfo> {
    crate::diag::Code::ALL
        .iter()
        .map(|c| RuleInfo {
            id: c.as_str().to_owned(),
            name: c.slug().to_owned(),
            summary: c.summary().to_owned(),
            level: c.severity().into(),
        })
        .collect()
}

/// Findings for diagnostics, in order.
#[must_use]
pub fn of_diagnostics(sources: &Sources, diags: &[Diagnostic]) -> Vec<Finding> {
    diags
        .iter()
        .map(|d| Finding::of_diagnostic(sources, d))
        .collect()
}

/// Makes locations relative to `root` (a CI checkout, e.g. `$GITHUB_WORKSPACE`), which is
/// how GitHub matches annotations and SARIF results to the files of a commit; a leading
/// `./` goes too.
pub fn strip_root(findings: &mut [Finding], root: &str) {
    let root = root.trim_end_matches('/');
    let fix = |file: &mut String| {
        let rest = file
            .strip_prefix(root)
            .filter(|r| !root.is_empty() && r.starts_with('/'))
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(file.as_str());
        let rest = rest.strip_prefix("./").unwrap_or(rest);
        *file = rest.to_owned();
    };
    for f in findings {
        if let Some(l) = &mut f.location {
            fix(&mut l.file);
        }
        for (l, _) in &mut f.related {
            fix(&mut l.file);
        }
    }
}
