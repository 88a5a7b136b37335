//! Diagnostics as a product: stable codes, severities, precise spans, rustc-style
//! rendering and a JSON form for CI annotations.
//!
//! Message style (after Cedar's guide): lowercase, user input in backticks, the problem in
//! the message, the fix in `help`. Codes never change meaning; new checks get new codes.
//! README.md's "Diagnostics" table lists them all.

use std::fmt::Write as _;

use serde::Serialize;

use crate::source::{Sources, Span};

/// How bad a diagnostic is. Errors stop compilation; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $slug:literal, $summary:literal;)+) => {
        /// Every diagnostic policyc can emit.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)+ }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            /// The stable code, e.g. `P0301`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)+ }
            }

            /// The severity this code always has.
            #[must_use]
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)+ }
            }

            /// A short kebab-case name (fixture files are named `CODE-slug.yaml`).
            #[must_use]
            pub fn slug(self) -> &'static str {
                match self { $(Code::$variant => $slug,)+ }
            }

            /// One line on what the code means.
            #[must_use]
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)+ }
            }
        }
    };
}

codes! {
    YamlSyntax = "P0001", Error, "yaml-syntax", "the file is not valid YAML";
    DuplicateKey = "P0002", Error, "duplicate-key", "a mapping repeats a key";
    UnsupportedYaml = "P0003", Error, "unsupported-yaml", "aliases, tags or several documents";
    UnknownKey = "P0101", Error, "unknown-key", "a key policyc does not know (with a suggestion)";
    MissingKey = "P0102", Error, "missing-key", "a required key is absent";
    WrongType = "P0103", Error, "wrong-type", "a value has the wrong YAML type";
    UnsupportedVersion = "P0104", Error, "unsupported-version", "`version` is not `v1`";
    DuplicateId = "P0105", Error, "duplicate-id", "two endpoints, tenants, data classes or rules share an id or name";
    InvalidValue = "P0106", Error, "invalid-value", "a value is outside its allowed set (enum word, URL, amount, inline secret)";
    ConditionSyntax = "P0201", Error, "condition-syntax", "a condition string does not parse";
    ComparatorType = "P0202", Error, "comparator-type", "a comparator or glob does not fit the field's type";
    EmptyCondition = "P0203", Error, "empty-condition", "an empty or contradictory range or set: no value can match";
    BadNumber = "P0204", Error, "bad-number", "a number does not fit the field (integer, decimal places, sign, size)";
    UnknownEndpoint = "P0301", Error, "unknown-endpoint", "`route_to` or `fallback` names no known endpoint";
    RuleAfterDefault = "P0401", Error, "rule-after-default", "a rule follows the `default` rule";
    MissingDefault = "P0402", Error, "missing-default", "no `default` rule (use `default: deny` to refuse unmatched requests)";
    PrivateDataLeak = "P0501", Error, "private-data-leak", "a `stays_private` data class can reach a public endpoint";
    LeakUnproven = "P0502", Error, "leak-unproven", "the data-class check ran out of budget near a public endpoint";
    UnreachableRule = "P1001", Warning, "unreachable-rule", "no request can reach a rule; earlier rules cover it";
    ReachabilityUnknown = "P1002", Warning, "reachability-unknown", "the reachability search ran out of budget";
    OverlappingRoute = "P1003", Warning, "overlapping-route", "a rule overlaps an earlier rule that routes elsewhere";
    UndeclaredTenant = "P1101", Warning, "undeclared-tenant", "a rule names a tenant that `tenants` does not declare";
    UndeclaredEndpoint = "P1102", Warning, "undeclared-endpoint", "a built-in provider endpoint is used without being declared";
    UndeclaredDataClass = "P1103", Warning, "undeclared-data-class", "a rule names a data class that `data_classes` does not declare";
    UnusedEndpoint = "P1104", Warning, "unused-endpoint", "a declared endpoint is never routed to";
    RedundantFallback = "P1105", Warning, "redundant-fallback", "a fallback repeats the rule's endpoint or an earlier fallback";
    AllowlistMismatch = "P1106", Warning, "allowlist-mismatch", "a rule for a tenant routes to an endpoint serving none of the tenant's allowed models";
}

/// A span with a message under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
    pub notes: Vec<String>,
    /// Source ranges masked when the source is printed (secrets written by mistake).
    pub redactions: Vec<Span>,
}

impl Diagnostic {
    /// A diagnostic of `code`'s severity. (`error` and `warning` read better at call
    /// sites; both defer to the code's fixed severity.)
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            notes: Vec::new(),
            redactions: Vec::new(),
        }
    }

    /// Masks a source range wherever this diagnostic prints source text.
    #[must_use]
    pub fn redact(mut self, span: Span) -> Self {
        self.redactions.push(span);
        self
    }

    /// An error-severity diagnostic.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.severity(), Severity::Error);
        Self::new(code, message)
    }

    /// A warning-severity diagnostic.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.severity(), Severity::Warning);
        Self::new(code, message)
    }

    /// Adds the primary label: the exact place of the problem.
    #[must_use]
    pub fn label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    /// Adds a secondary label: related context.
    #[must_use]
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a note line.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The code's severity.
    #[must_use]
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// The primary span, if any.
    #[must_use]
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.iter().find(|l| l.primary).map(|l| l.span)
    }
}

/// Orders diagnostics by file position so output reads top to bottom.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| {
        let span = d.primary_span().unwrap_or_default();
        (span.file, span.start, d.code)
    });
}

/// Renders diagnostics like rustc, followed by a summary line.
#[must_use]
pub fn render_human(sources: &Sources, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        render_one(&mut out, sources, d);
        out.push('\n');
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => {}
        (0, w) => {
            let _ = writeln!(out, "policyc: {}", plural(w, "warning"));
        }
        (e, 0) => {
            let _ = writeln!(out, "policyc: {}; no table written", plural(e, "error"));
        }
        (e, w) => {
            let _ = writeln!(
                out,
                "policyc: {}, {}; no table written",
                plural(e, "error"),
                plural(w, "warning")
            );
        }
    }
    out
}

fn render_one(out: &mut String, sources: &Sources, d: &Diagnostic) {
    let sev = match d.severity() {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{sev}[{}]: {}", d.code.as_str(), d.message);
    // Line-number gutter wide enough for every labelled line.
    let mut located: Vec<(&Label, usize, usize, usize, &crate::source::SourceFile)> = d
        .labels
        .iter()
        .filter_map(|l| {
            let file = sources.file(l.span.file)?;
            let (line, col) = file.line_col(l.span.start as usize);
            let line_text = file.line(line);
            let end_col = if file.line_col(l.span.end as usize).0 == line {
                file.line_col(l.span.end as usize).1
            } else {
                line_text.chars().count() + 1
            };
            let width = end_col.saturating_sub(col).max(1);
            Some((l, line, col, width, file))
        })
        .collect();
    let gutter = located
        .iter()
        .map(|(_, line, ..)| line.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(gutter);
    if let Some((_, line, col, _, file)) = located.iter().find(|(l, ..)| l.primary) {
        let _ = writeln!(out, "{pad}--> {}:{line}:{col}", file.name);
    }
    // The primary label's file first, then every label in source order, as rustc does.
    let primary_file = d.primary_span().map(|s| s.file);
    located.sort_by_key(|(l, line, col, ..)| {
        (Some(l.span.file) != primary_file, l.span.file, *line, *col)
    });
    let mut last: Option<(&str, usize)> = None;
    for (label, line, col, width, file) in &located {
        let new_file = last.is_none_or(|(f, _)| f != file.name);
        if new_file && last.is_some() {
            let _ = writeln!(out, "{pad}::: {}:{line}:{col}", file.name);
        }
        if new_file {
            let _ = writeln!(out, "{pad} |");
        } else if last.is_some_and(|(_, l)| *line > l + 1) {
            let _ = writeln!(out, "{pad}...");
        }
        last = Some((&file.name, *line));
        let full = redacted_line(file, *line, label.span.file, &d.redactions);
        let (text, col, width) = clip(&full, *col, *width);
        let _ = writeln!(out, "{line:>gutter$} | {text}");
        let lead: String = text
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mark = if label.primary { "^" } else { "-" };
        let _ = write!(out, "{pad} | {lead}{}", mark.repeat(width));
        if label.message.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, " {}", label.message);
        }
    }
    if !located.is_empty() && (d.help.is_some() || !d.notes.is_empty()) {
        let _ = writeln!(out, "{pad} |");
    }
    for note in &d.notes {
        let _ = writeln!(out, "{pad} = note: {note}");
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "{pad} = help: {help}");
    }
}

/// Longest source line printed whole; longer lines are cut to a window around the label.
const MAX_LINE: usize = 160;

/// Cuts a long line to a window around columns `col..col+width` (1-based, in chars),
/// marking the cuts with `…`; returns the text and the label's position in it.
fn clip(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_LINE {
        return (line.to_owned(), col, width);
    }
    let width = width.min(MAX_LINE / 2);
    let start = col.saturating_sub(1).saturating_sub(MAX_LINE / 4);
    let end = (start + MAX_LINE).min(chars.len());
    let mut text: String = chars.get(start..end).unwrap_or_default().iter().collect();
    let mut col = col - start;
    if start > 0 {
        text.insert(0, '…');
        col += 1;
    }
    if end < chars.len() {
        text.push('…');
    }
    (text, col, width)
}

/// A source line with redacted ranges replaced by `*`.
fn redacted_line(
    file: &crate::source::SourceFile,
    line: usize,
    id: crate::source::FileId,
    redactions: &[Span],
) -> String {
    let start = file.offset_of(line, 0);
    file.line(line)
        .char_indices()
        .map(|(i, c)| {
            let at = u32::try_from(start + i).unwrap_or(u32::MAX);
            let hidden = redactions
                .iter()
                .any(|r| r.file == id && r.start <= at && at < r.end);
            if hidden { '*' } else { c }
        })
        .collect()
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    message: &'a str,
    primary: bool,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    name: &'static str,
    severity: Severity,
    message: &'a str,
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    help: Option<&'a str>,
    notes: &'a [String],
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

/// Renders diagnostics as one JSON object: `{errors, warnings, diagnostics: [...]}` with
/// 1-based lines and columns (columns in characters).
#[must_use]
pub fn render_json(sources: &Sources, diags: &[Diagnostic]) -> String {
    let diagnostics = diags
        .iter()
        .map(|d| {
            let labels: Vec<JsonLabel<'_>> = d
                .labels
                .iter()
                .filter_map(|l| {
                    let file = sources.file(l.span.file)?;
                    let (line, column) = file.line_col(l.span.start as usize);
                    let (end_line, end_column) = file.line_col(l.span.end as usize);
                    Some(JsonLabel {
                        file: &file.name,
                        line,
                        column,
                        end_line,
                        end_column,
                        message: &l.message,
                        primary: l.primary,
                    })
                })
                .collect();
            let primary = labels.iter().find(|l| l.primary);
            JsonDiagnostic {
                code: d.code.as_str(),
                name: d.code.slug(),
                severity: d.severity(),
                message: &d.message,
                file: primary.map(|l| l.file),
                line: primary.map(|l| l.line),
                column: primary.map(|l| l.column),
                end_line: primary.map(|l| l.end_line),
                end_column: primary.map(|l| l.end_column),
                help: d.help.as_deref(),
                notes: &d.notes,
                labels,
            }
        })
        .collect();
    let errors = diags
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .count();
    let report = JsonReport {
        errors,
        warnings: diags.len() - errors,
        diagnostics,
    };
    serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// "Did you mean" for a misspelled word: the closest candidate within a small edit
/// distance, if one is clearly close.
#[must_use]
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| {
            *d <= limit || (c.len() > 2 && (c.starts_with(word) || word.starts_with(c)))
        })
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

/// Levenshtein distance with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        if let Some(c) = cur.first_mut() {
            *c = i;
        }
        for j in 1..=b.len() {
            let ca = a.get(i - 1);
            let cb = b.get(j - 1);
            let cost = usize::from(ca != cb);
            let mut best = (prev.get(j).copied().unwrap_or(0) + 1)
                .min(cur.get(j - 1).copied().unwrap_or(0) + 1)
                .min(prev.get(j - 1).copied().unwrap_or(0) + cost);
            if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                best = best.min(prev2.get(j - 2).copied().unwrap_or(0) + 1);
            }
            if let Some(c) = cur.get_mut(j) {
                *c = best;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["route_to", "fallback", "match", "name"];
        assert_eq!(suggest("rout_to", keys), Some("route_to"));
        assert_eq!(suggest("fallbak", keys), Some("fallback"));
        assert_eq!(suggest("mtach", keys), Some("match"));
        assert_eq!(suggest("zzzzzz", keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn long_lines_are_clipped_around_the_label() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (text, col, width) = clip(&line, 1001, 1);
        assert!(text.chars().count() <= MAX_LINE + 2);
        assert_eq!(text.chars().nth(col - 1), Some('X'));
        assert_eq!(width, 1);
        assert_eq!(clip("short", 2, 3), ("short".to_owned(), 2, 3));
    }

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {}", c.as_str());
            assert_eq!(c.as_str().len(), 5);
            let warning = c.as_str().starts_with("P1");
            assert_eq!(warning, c.severity() == Severity::Warning, "{c:?}");
        }
    }
}
