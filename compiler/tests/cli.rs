//! The `policyc` binary as a user runs it: exit codes, outputs, files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn policyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DESIGN: &str = "testdata/policies/good/design-example.yaml";
const SEED: &str = "testdata/policies/good/seed-full-routing-policy.yaml";
const SEED_CATALOGUE: &str = "testdata/policies/good/seed-full-routing-policy.catalogue.yaml";

#[test]
fn check_exit_codes() {
    assert_eq!(code(&policyc(&["check", DESIGN])), 0);
    assert_eq!(
        code(&policyc(&["check", SEED, "--endpoints", SEED_CATALOGUE])),
        0
    );
    // Without its catalogue the seed names an endpoint nobody declared.
    let o = policyc(&["check", SEED]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("error[P0301]: unknown endpoint `private-gpu`"));
    assert_eq!(
        code(&policyc(&[
            "check",
            "testdata/policies/bad/P0402-missing-default.yaml"
        ])),
        1
    );
    assert_eq!(code(&policyc(&["check", "no/such/file.yaml"])), 2);
    assert_eq!(code(&policyc(&["check"])), 2);
    assert_eq!(code(&policyc(&["frobnicate"])), 2);
}

#[test]
fn check_json_is_machine_readable() {
    let o = policyc(&[
        "check",
        "testdata/policies/bad/P0301-unknown-endpoint.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"], 2);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "P0301");
    assert_eq!(d["severity"], "error");
    assert_eq!(
        d["file"],
        "testdata/policies/bad/P0301-unknown-endpoint.yaml"
    );
    assert_eq!(d["line"], 11);
    assert_eq!(d["column"], 15);
    assert_eq!(d["help"], "did you mean `private-gpu`?");
}

#[test]
fn compile_writes_deterministic_tables_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.swt");
    let b = dir.path().join("b.swt");
    for out in [&a, &b] {
        let o = policyc(&[
            "compile",
            DESIGN,
            "-o",
            out.to_str().unwrap(),
            "--revision",
            "42",
        ]);
        assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files remain");
    let dump = policyc(&["dump", a.to_str().unwrap()]);
    assert_eq!(code(&dump), 0);
    assert!(text(&dump.stdout).contains("revision       42"));
    // A failing compile leaves an existing table untouched.
    let before = std::fs::read(&a).unwrap();
    let o = policyc(&[
        "compile",
        "testdata/policies/bad/P0402-missing-default.yaml",
        "-o",
        a.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1);
    assert_eq!(std::fs::read(&a).unwrap(), before);
}

#[test]
fn explain_reports_rule_endpoint_fallback_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.swt");
    assert_eq!(
        code(&policyc(&["compile", DESIGN, "-o", t.to_str().unwrap()])),
        0
    );
    let t = t.to_str().unwrap();
    let o = policyc(&[
        "explain",
        t,
        "--tenant",
        "enterprise-acme",
        "--latency-budget-ms",
        "300",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rule_index"], 1);
    assert_eq!(v["rule_name"], serde_json::Value::Null);
    assert_eq!(v["endpoint"], "anthropic");
    assert_eq!(v["fallback"], serde_json::json!(["bedrock"]));
    assert_eq!(v["trace"][0]["failed"][0]["field"], "data_class");
    let human = text(&policyc(&["explain", t, "--data-class", "pii-restricted"]).stdout);
    assert!(
        human.contains("decision: route to `private-gpu`"),
        "{human}"
    );
    // A policy works too (compiled in memory).
    let o = policyc(&[
        "explain",
        DESIGN,
        "--cost-cap-per-1k",
        "0.001",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["endpoint"], "bedrock");
    assert_eq!(
        code(&policyc(&["explain", t, "--cost-cap-per-1k", "0.0000001"])),
        2
    );
}

#[test]
fn explain_says_when_default_deny_refuses() {
    let o = policyc(&[
        "explain",
        "testdata/policies/good/tenants-globs-sets.yaml",
        "--tenant",
        "nobody",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["denied"], true);
    assert_eq!(v["action"], "deny");
    assert_eq!(v["rule_name"], "default");
    assert_eq!(v["endpoint"], serde_json::Value::Null);
    let human = text(
        &policyc(&[
            "explain",
            "testdata/policies/good/tenants-globs-sets.yaml",
            "--tenant",
            "nobody",
        ])
        .stdout,
    );
    assert!(human.contains("decision: deny (by default"), "{human}");
}

#[test]
fn bad_table_files_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.swt");
    assert_eq!(
        code(&policyc(&["compile", DESIGN, "-o", t.to_str().unwrap()])),
        0
    );
    let mut bytes = std::fs::read(&t).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&t, &bytes).unwrap();
    for args in [vec!["dump"], vec!["explain"]] {
        let mut args = args;
        args.push(t.to_str().unwrap());
        let o = policyc(&args);
        assert_eq!(code(&o), 3, "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("checksum mismatch"),
            "{}",
            text(&o.stderr)
        );
    }
    std::fs::write(&t, &bytes[..50]).unwrap();
    assert_eq!(code(&policyc(&["dump", t.to_str().unwrap()])), 3);
}

#[test]
fn test_command_passes_and_fails() {
    let o = policyc(&[
        "test",
        DESIGN,
        "testdata/policies/good/design-example.cases.yaml",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("7 passed, 0 failed"));
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("c.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: wrong on purpose\n    request: { data_class: pii-restricted }\n    expect: { endpoint: anthropic }\n",
    )
    .unwrap();
    let o = policyc(&["test", DESIGN, cases.to_str().unwrap()]);
    assert_eq!(code(&o), 4);
    let out = text(&o.stdout);
    assert!(out.contains("FAIL  wrong on purpose"), "{out}");
    assert!(
        out.contains("expected endpoint `anthropic`, got `private-gpu`"),
        "{out}"
    );
    std::fs::write(
        &cases,
        "cases:\n  - request: { tenantt: x }\n    expect: { deny: true }\n",
    )
    .unwrap();
    let o = policyc(&["test", DESIGN, cases.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("did you mean `tenant`?"));
}

#[test]
fn diff_lists_changed_regions_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.yaml");
    let old_text = std::fs::read_to_string(root().join(DESIGN)).unwrap();
    std::fs::write(&new, old_text.replace("\"<400\"", "\"<300\"")).unwrap();
    let o = policyc(&["diff", DESIGN, new.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let regions = v["regions"].as_array().unwrap();
    assert!(!regions.is_empty());
    for r in regions {
        let latency: u64 = r["example"]["latency_budget_ms"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((300..400).contains(&latency), "{r}");
        assert_eq!(r["old"]["destination"], "anthropic → bedrock");
    }
    let same = policyc(&["diff", DESIGN, DESIGN]);
    assert!(text(&same.stdout).contains("no request changes route"));
}

#[test]
fn warnings_can_be_allowed_but_errors_cannot() {
    let o = policyc(&["check", DESIGN, "--allow", "P1003", "--allow", "P1102"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        text(&o.stderr),
        "",
        "every warning of the example was allowed"
    );
    let o = policyc(&["check", DESIGN, "--allow", "P1003"]);
    assert!(text(&o.stderr).contains("warning[P1102]"));
    assert!(!text(&o.stderr).contains("warning[P1003]"));
    let o = policyc(&["check", DESIGN, "--allow", "P0301"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("errors cannot be silenced"));
    assert_eq!(code(&policyc(&["check", DESIGN, "--allow", "P9999"])), 2);
}
