//! `--format github` and `--format sarif`, checked against implementations we did not write:
//! each workflow command is re-issued through GitHub's `@actions/core` (which must write the
//! very same line), each SARIF log is validated against the OASIS SARIF 2.1.0 schema with
//! Python's `jsonschema`; every place they name is the place `--format json` names and the
//! offending text in the file. `tools/test-all` installs both (`target/tools/npm`, and
//! `tools/sdk/requirements.txt`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn policyc(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("GITHUB_WORKSPACE")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A workflow command, parsed the way the Actions runner reads one.
#[derive(Debug, PartialEq)]
struct Annotation {
    command: String,
    properties: BTreeMap<String, String>,
    message: String,
}

fn unescape(s: &str, property: bool) -> String {
    let mut out = s.replace("%0D", "\r").replace("%0A", "\n");
    if property {
        out = out.replace("%3A", ":").replace("%2C", ",");
    }
    out.replace("%25", "%")
}

fn parse(line: &str) -> Annotation {
    let rest = line
        .strip_prefix("::")
        .unwrap_or_else(|| panic!("not a command: {line}"));
    let (head, message) = rest.split_once("::").unwrap();
    let (command, props) = head.split_once(' ').unwrap_or((head, ""));
    let properties = props
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), unescape(v, true))
        })
        .collect();
    Annotation {
        command: command.to_owned(),
        properties,
        message: unescape(message, false),
    }
}

/// What `@actions/core` writes for each annotation.
fn actions_core(annotations: &[Annotation]) -> String {
    let modules = root().join("target/tools/npm/node_modules");
    assert!(
        modules.join("@actions/core").is_dir(),
        "@actions/core is not installed: run `npm install --prefix target/tools/npm @actions/core@1.11.1` \
         (tools/test-all does)"
    );
    let input: Vec<serde_json::Value> = annotations
        .iter()
        .map(|a| {
            let p = &a.properties;
            let num = |k: &str| p.get(k).map(|v| v.parse::<u64>().unwrap());
            serde_json::json!({
                "command": a.command,
                "message": a.message,
                "properties": {
                    "title": p.get("title"),
                    "file": p.get("file"),
                    "startLine": num("line"),
                    "endLine": num("endLine"),
                    "startColumn": num("col"),
                    "endColumn": num("endColumn"),
                },
            })
        })
        .collect();
    let mut child = Command::new("node")
        .arg(root().join("tools/ci/test/actions-core.js"))
        .env("NODE_PATH", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed (apt-get install nodejs)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Checks `stdout` (workflow commands) against `@actions/core` and returns them parsed.
fn annotations(stdout: &str) -> Vec<Annotation> {
    let parsed: Vec<Annotation> = stdout.lines().map(parse).collect();
    assert_eq!(
        actions_core(&parsed),
        stdout,
        "@actions/core writes these annotations differently"
    );
    parsed
}

/// Validates SARIF logs against the OASIS schema; the validator's complaints on failure.
fn sarif_errors(logs: &[&Path]) -> Option<String> {
    let out = Command::new("python3")
        .arg(root().join("tools/ci/test/validate_sarif.py"))
        .arg(root().join("testdata/sarif/sarif-schema-2.1.0.json"))
        .args(logs)
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "the SARIF validator did not run (`python3 -m pip install -r tools/sdk/requirements.txt` installs jsonschema): {}",
        text(&out.stderr)
    );
    (!out.status.success()).then(|| text(&out.stdout) + &text(&out.stderr))
}

const POLICY: &str = r#"version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://10.0.0.1:8000/v1
    transport: privatelink
    models: [llama]
  - id: spare
    type: vllm
    url: http://10.0.0.2:8000/v1
    transport: privatelink
    models: [llama]
rules:
  - name: ops
    match:
      tenant: ops
    route_to: gpux
  - default: gpu
"#;

/// The 1-based (line, column) of the `n`th occurrence of `needle` in `text`, in characters.
fn position(text: &str, needle: &str) -> (u64, u64) {
    let at = text.find(needle).unwrap();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line as u64, col as u64)
}

#[test]
fn github_annotations_name_the_exact_place_as_actions_core_writes_them() {
    // A directory name with every character the format escapes.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("team, ops: 100%");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let p = path.to_str().unwrap();

    let o = policyc(&["check", p, "--format", "github"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let got = annotations(&text(&o.stdout));
    let json: serde_json::Value =
        serde_json::from_slice(&policyc(&["check", p, "--format", "json"], &[]).stdout).unwrap();
    let diags = json["diagnostics"].as_array().unwrap();
    assert_eq!(got.len(), diags.len());
    assert_eq!(got.len(), 2, "{got:?}");
    for (a, d) in got.iter().zip(diags) {
        assert_eq!(a.command, d["severity"].as_str().unwrap());
        let prop = |k: &str| a.properties[k].clone();
        assert_eq!(prop("file"), p);
        assert_eq!(prop("line"), d["line"].to_string());
        assert_eq!(prop("col"), d["column"].to_string());
        assert_eq!(prop("endLine"), d["end_line"].to_string());
        assert_eq!(prop("endColumn"), d["end_column"].to_string());
        assert_eq!(
            prop("title"),
            format!(
                "{} {}",
                d["code"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            )
        );
        assert!(a.message.starts_with(d["message"].as_str().unwrap()));
        assert!(
            a.message
                .contains(&format!("help: {}", d["help"].as_str().unwrap()))
        );
    }
    // The error is on the misspelled endpoint itself.
    let error = got.iter().find(|a| a.command == "error").unwrap();
    let (line, col) = position(POLICY, "gpux");
    assert_eq!(error.properties["line"], line.to_string());
    assert_eq!(error.properties["col"], col.to_string());
    assert_eq!(error.properties["endColumn"], (col + 4).to_string());
    assert!(error.message.contains("did you mean `gpu`?"), "{error:?}");
    let warning = got.iter().find(|a| a.command == "warning").unwrap();
    assert_eq!(warning.properties["title"], "P1104 unused-endpoint");
    assert_eq!(
        warning.properties["line"],
        position(POLICY, "spare").0.to_string()
    );

    // Inside a CI checkout, paths are relative to it (how GitHub matches them to files).
    let ws = dir.path().to_str().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["check", p, "--format", "github"])
        .env("GITHUB_WORKSPACE", ws)
        .output()
        .unwrap();
    let relative = annotations(&text(&o.stdout));
    assert_eq!(
        relative[0].properties["file"],
        "team, ops: 100%/policy.yaml"
    );

    // `compile` annotates the same findings and writes nothing when there are errors.
    let table = dir.path().join("t.swt");
    let o = policyc(
        &[
            "compile",
            p,
            "-o",
            table.to_str().unwrap(),
            "--format",
            "github",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(annotations(&text(&o.stdout)), got);
    assert!(!table.exists());

    // A clean policy: no annotation, exit 0.
    std::fs::write(&path, POLICY.replace("gpux", "spare")).unwrap();
    let o = policyc(&["check", p, "--format", "github"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout), "");

    // `test`: a failing case annotated on its line of the cases file.
    let cases = sub.join("cases.yaml");
    let cases_text = "cases:\n  - name: ops go private\n    request: { tenant: ops }\n    expect: { endpoint: spare }\n  - name: others go to the gpu\n    request: { tenant: acme }\n    expect: { endpoint: spare }\n";
    std::fs::write(&cases, cases_text).unwrap();
    let o = policyc(
        &["test", p, cases.to_str().unwrap(), "--format", "github"],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let failed = annotations(&text(&o.stdout));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].command, "error");
    assert_eq!(failed[0].properties["file"], cases.to_str().unwrap());
    assert_eq!(
        failed[0].properties["line"],
        position(cases_text, "- name: others").0.to_string()
    );
    assert!(failed[0].message.contains("others go to the gpu"));
    assert!(text(&o.stderr).contains("1 passed, 1 failed"));
}

#[test]
fn sarif_logs_are_valid_sarif_2_1_0_and_name_the_same_places() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let p = path.to_str().unwrap();
    let save = |name: &str, o: &Output| {
        let file = dir.path().join(name);
        std::fs::write(&file, &o.stdout).unwrap();
        let log: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}{}", text(&o.stdout), text(&o.stderr)));
        (file, log)
    };

    let o = policyc(&["check", p, "--format", "sarif"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let (check_file, check) = save("check.sarif", &o);
    let json: serde_json::Value =
        serde_json::from_slice(&policyc(&["check", p, "--format", "json"], &[]).stdout).unwrap();
    let results = check["runs"][0]["results"].as_array().unwrap();
    let diags = json["diagnostics"].as_array().unwrap();
    assert_eq!(results.len(), diags.len());
    let rules = check["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for (r, d) in results.iter().zip(diags) {
        assert_eq!(r["ruleId"], d["code"]);
        assert_eq!(
            rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
            d["code"]
        );
        assert_eq!(r["level"], d["severity"]);
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], p);
        assert_eq!(loc["region"]["startLine"], d["line"]);
        assert_eq!(loc["region"]["startColumn"], d["column"]);
        assert_eq!(loc["region"]["endLine"], d["end_line"]);
        assert_eq!(loc["region"]["endColumn"], d["end_column"]);
    }

    // `compile` of a clean policy with a warning: a log with that one result.
    std::fs::write(&path, POLICY.replace("route_to: gpux", "route_to: gpu")).unwrap();
    let table = dir.path().join("t.swt");
    let o = policyc(
        &[
            "compile",
            p,
            "-o",
            table.to_str().unwrap(),
            "--format",
            "sarif",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(table.exists());
    let (compile_file, compile) = save("compile.sarif", &o);
    let results = compile["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["ruleId"], "P1104");
    assert_eq!(results[0]["level"], "warning");

    // `test`: the failing case on its line.
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: ops\n    request: { tenant: ops }\n    expect: { endpoint: spare }\n",
    )
    .unwrap();
    let o = policyc(
        &["test", p, cases.to_str().unwrap(), "--format", "sarif"],
        &[],
    );
    assert_eq!(o.status.code(), Some(4));
    let (test_file, test) = save("test.sarif", &o);
    let r = &test["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "test/failed");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );

    assert_eq!(
        sarif_errors(&[&check_file, &compile_file, &test_file]),
        None,
        "policyc's SARIF does not validate"
    );
    // The validator can fail: a log with a level SARIF does not define.
    let mut broken = check.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    let broken_file = dir.path().join("broken.sarif");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let complaint = sarif_errors(&[&broken_file]).expect("a broken log must not validate");
    assert!(complaint.contains("fatal"), "{complaint}");
}
