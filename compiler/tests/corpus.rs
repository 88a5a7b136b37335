//! The `testdata/policies` corpus, through one harness.
//!
//! - `bad/CODE-name.yaml`: the rendered diagnostics must equal `bad/CODE-name.stderr`,
//!   and the file's code must be among them.
//! - `good/NAME.yaml` (with `NAME.catalogue.yaml` as `--endpoints` when present): must
//!   compile; its warnings must equal `good/NAME.stderr`; every case of
//!   `good/NAME.cases.yaml` must pass on the table *and* agree with the interpreter.
//!
//! Run with `BLESS=1` to rewrite the `.stderr` snapshots after an intended change, then
//! review the diff.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use std::path::{Path, PathBuf};

use policyc::diag::{self, Severity};
use policyc::source::Sources;
use switchyard_table::Table;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".yaml")
                && !name.ends_with(".cases.yaml")
                && !name.ends_with(".catalogue.yaml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policies in {dir}");
    files
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

/// Compiles a corpus policy (with its catalogue, if any).
fn compile(path: &Path) -> (Sources, policyc::Output) {
    let mut sources = Sources::new();
    let policy = sources.add(rel(path), std::fs::read_to_string(path).unwrap());
    let catalogue_path = path.with_extension("catalogue.yaml");
    let catalogue = catalogue_path.exists().then(|| {
        sources.add(
            rel(&catalogue_path),
            std::fs::read_to_string(&catalogue_path).unwrap(),
        )
    });
    let out = policyc::compile_sources(&sources, policy, catalogue, 0).unwrap();
    (sources, out)
}

/// Compares against a snapshot, or rewrites it under `BLESS=1`. Returns a failure
/// message instead of panicking so one run reports every stale snapshot.
fn snapshot(path: &Path, actual: &str) -> Option<String> {
    let snap = path.with_extension("stderr");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&snap, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&snap).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "snapshot {} differs (run with BLESS=1 to update, then review):\n--- expected\n{expected}\n--- actual\n{actual}",
            rel(&snap)
        )
    })
}

#[test]
fn bad_policies_render_their_diagnostics() {
    let mut failures = Vec::new();
    for path in yaml_files("testdata/policies/bad") {
        let (sources, out) = compile(&path);
        let rendered = diag::render_human(&sources, &out.diagnostics);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if let Some(code) = name.get(..5).filter(|c| c.starts_with('P')) {
            let found = out.diagnostics.iter().any(|d| d.code.as_str() == code);
            assert!(
                found,
                "{name}: expected a {code} diagnostic, got:\n{rendered}"
            );
            let is_error = code.starts_with("P0");
            assert_eq!(
                out.has_errors(),
                is_error,
                "{name}: error/warning expectation\n{rendered}"
            );
        }
        if let Some(f) = snapshot(&path, &rendered) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn several_errors_are_all_reported() {
    let path = root().join("testdata/policies/bad/multiple-errors.yaml");
    let (_, out) = compile(&path);
    let errors: Vec<&str> = out
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .map(|d| d.code.as_str())
        .collect();
    for code in ["P0202", "P0203", "P0301", "P0101", "P0402"] {
        assert!(errors.contains(&code), "{code} missing from {errors:?}");
    }
}

#[test]
fn good_policies_compile_and_pass_their_cases() {
    let mut failures = Vec::new();
    for path in yaml_files("testdata/policies/good") {
        let (sources, out) = compile(&path);
        let rendered = diag::render_human(&sources, &out.diagnostics);
        assert!(!out.has_errors(), "{} has errors:\n{rendered}", rel(&path));
        if let Some(f) = snapshot(&path, &rendered) {
            failures.push(f);
        }
        let compiled = out.compiled.unwrap();
        let table = Table::from_bytes(&compiled.table).unwrap();
        let cases_path = path.with_extension("cases.yaml");
        if !cases_path.exists() {
            continue;
        }
        let mut case_sources = Sources::new();
        let file = case_sources.add(
            rel(&cases_path),
            std::fs::read_to_string(&cases_path).unwrap(),
        );
        let cases = policyc::cases::parse(&case_sources, file)
            .unwrap_or_else(|d| panic!("{}", diag::render_human(&case_sources, &d)));
        assert!(!cases.is_empty());
        for result in policyc::cases::run(&table, Some(&compiled.policy), &cases) {
            if !result.passed {
                failures.push(format!(
                    "{}: {}: {:?}",
                    rel(&cases_path),
                    result.name,
                    result.failures
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn compilation_is_deterministic() {
    for path in yaml_files("testdata/policies/good") {
        let (_, a) = compile(&path);
        let (_, b) = compile(&path);
        assert_eq!(
            a.compiled.unwrap().table,
            b.compiled.unwrap().table,
            "{}",
            rel(&path)
        );
    }
}

#[test]
fn readme_documents_every_code_and_every_error_has_a_fixture() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let fixtures: Vec<String> = std::fs::read_dir(root().join("testdata/policies/bad"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for code in policyc::diag::Code::ALL {
        let c = code.as_str();
        assert!(
            readme.contains(&format!("| {c} |")),
            "README's diagnostics table lacks {c}"
        );
        // Budget exhaustion (P0502, P1002) cannot be provoked by a small fixture; unit tests in
        // analysis.rs cover it. Every other code must show up in some fixture's snapshot.
        if !matches!(c, "P0502" | "P1002") {
            let shown = fixtures.iter().filter(|f| f.ends_with(".stderr")).any(|f| {
                std::fs::read_to_string(root().join("testdata/policies/bad").join(f))
                    .unwrap()
                    .contains(&format!("[{c}]"))
            });
            assert!(shown, "no bad fixture renders {c}");
        }
    }
}

/// The admin API's JSON forms: a policy rebuilt from its table, and the policy text turned
/// into a JSON object, both compile to a table that routes every request the same way.
#[test]
fn policies_round_trip_through_json() {
    for path in yaml_files("testdata/policies/good") {
        let (_, out) = compile(&path);
        let first = out.compiled.unwrap().table;
        let first = Table::from_bytes(&first).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut forms = vec![("table_to_json", policyc::json::table_to_json(&first))];
        if !path.with_extension("catalogue.yaml").exists() {
            forms.push((
                "yaml_to_json",
                policyc::json::yaml_to_json("p", &text).unwrap(),
            ));
        }
        for (how, value) in forms {
            let json = serde_json::to_string_pretty(&value).unwrap();
            let (sources, again) = policyc::compile_str("rebuilt.json", &json).unwrap();
            assert!(
                !again.has_errors(),
                "{} via {how}:\n{json}\n{}",
                rel(&path),
                diag::render_human(&sources, &again.diagnostics)
            );
            let bytes = again.compiled.unwrap().table;
            let second = Table::from_bytes(&bytes).unwrap();
            let report = policyc::diff::diff(&first, &second);
            assert!(
                report.regions.is_empty() && report.endpoint_changes.is_empty(),
                "{} via {how} routes differently: {}\n{json}",
                rel(&path),
                policyc::diff::render_human(&report)
            );
        }
    }
}
