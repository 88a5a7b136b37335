//! GitHub Actions workflow commands: one `::error`, `::warning` or `::notice` line per
//! finding, which the runner turns into an annotation on the file, line and column (shown
//! on the pull request's diff) or, without a place, on the run's summary.
//!
//! Properties come in the order `@actions/core` writes them (`title`, `file`, `line`,
//! `endLine`, `col`, `endColumn`) and are escaped as it escapes them: `%`, CR and LF in the
//! message; those and `:` and `,` in property values. Related places (a diagnostic's
//! secondary labels) follow the message as `FILE:LINE:COLUMN: what` lines.

use std::fmt::Write as _;

use super::{Finding, Level};

fn escape_data(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
}

fn escape_property(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ':' => out.push_str("%3A"),
            ',' => out.push_str("%2C"),
            c => escape_data(c.encode_utf8(&mut [0; 4]), out),
        }
    }
}

/// One workflow command per finding, each on its own line.
#[must_use]
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(match f.level {
            Level::Error => "::error",
            Level::Warning => "::warning",
            Level::Notice => "::notice",
        });
        let mut props: Vec<(&str, String)> = Vec::with_capacity(6);
        if !f.title.is_empty() {
            props.push(("title", f.title.clone()));
        }
        if let Some(l) = &f.location {
            props.push(("file", l.file.clone()));
            props.push(("line", l.line.to_string()));
            props.push(("endLine", l.end_line.to_string()));
            if l.column > 0 {
                props.push(("col", l.column.to_string()));
                props.push(("endColumn", l.end_column.to_string()));
            }
        }
        for (i, (key, value)) in props.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            let _ = write!(out, "{key}=");
            escape_property(value, &mut out);
        }
        out.push_str("::");
        let mut message = f.message.clone();
        for (l, what) in &f.related {
            let _ = write!(message, "\n{}:{}:{}: {what}", l.file, l.line, l.column);
        }
        escape_data(&message, &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Location;

    #[test]
    fn commands_escape_what_the_runner_unescapes() {
        let f = Finding {
            level: Level::Warning,
            rule: "P1003".into(),
            title: "P1003 a: b, c".into(),
            message: "100% of it\nhelp: x".into(),
            location: Some(Location {
                file: "dir,x/p:1.yaml".into(),
                line: 3,
                column: 5,
                end_line: 3,
                end_column: 9,
            }),
            related: Vec::new(),
            properties: serde_json::Map::new(),
        };
        assert_eq!(
            render(&[f]),
            "::warning title=P1003 a%3A b%2C c,file=dir%2Cx/p%3A1.yaml,line=3,endLine=3,col=5,\
             endColumn=9::100%25 of it%0Ahelp: x\n"
        );
    }
}
