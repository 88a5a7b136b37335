//! SARIF 2.1.0 (OASIS): one run of `policyc`, its rule table and one result per finding.
//! GitHub code scanning (`github/codeql-action/upload-sarif`) and most review tools read
//! it. Columns count Unicode code points (`columnKind`), end columns are exclusive — as in
//! `--format json`.

use serde_json::{Map, Value, json};

use super::{Finding, Level, Location, RuleInfo};

/// The schema a SARIF 2.1.0 log names (as GitHub's documentation writes it).
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Notice => "note",
    }
}

/// A file path as a URI reference: bytes outside the unreserved set and `/` escaped.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn physical(l: &Location) -> Value {
    let region = if l.column > 0 {
        json!({
            "startLine": l.line,
            "startColumn": l.column,
            "endLine": l.end_line,
            "endColumn": l.end_column,
        })
    } else {
        json!({ "startLine": l.line, "endLine": l.end_line })
    };
    json!({
        "artifactLocation": { "uri": uri(&l.file) },
        "region": region,
    })
}

/// The SARIF log for one run. `rules` must hold every rule id a finding names;
/// `properties` (a summary, for `replay`) goes on the run.
#[must_use]
pub fn render(rules: &[RuleInfo], findings: &[Finding], properties: Option<Value>) -> Value {
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut r = Map::new();
            r.insert("ruleId".into(), json!(f.rule));
            if let Some(i) = rules.iter().position(|x| x.id == f.rule) {
                r.insert("ruleIndex".into(), json!(i));
            }
            r.insert("level".into(), json!(level(f.level)));
            r.insert("message".into(), json!({ "text": f.message }));
            if let Some(l) = &f.location {
                r.insert(
                    "locations".into(),
                    json!([{ "physicalLocation": physical(l) }]),
                );
            }
            if !f.related.is_empty() {
                let related: Vec<Value> = f
                    .related
                    .iter()
                    .enumerate()
                    .map(|(id, (l, text))| {
                        json!({
                            "id": id,
                            "physicalLocation": physical(l),
                            "message": { "text": text },
                        })
                    })
                    .collect();
                r.insert("relatedLocations".into(), Value::Array(related));
            }
            if !f.properties.is_empty() {
                r.insert("properties".into(), Value::Object(f.properties.clone()));
            }
            Value::Object(r)
        })
        .collect();
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "defaultConfiguration": { "level": level(r.level) },
            })
        })
        .collect();
    let mut run = json!({
        "tool": {
            "driver": {
                "name": "policyc",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }
        },
        "columnKind": "unicodeCodePoints",
        "results": results,
    });
    if let (Some(p), Some(run)) = (properties, run.as_object_mut()) {
        run.insert("properties".into(), p);
    }
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [run],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(
            uri("policies/prod policy.yaml"),
            "policies/prod%20policy.yaml"
        );
        assert_eq!(uri("a/é#.yaml"), "a/%C3%A9%23.yaml");
    }
}
