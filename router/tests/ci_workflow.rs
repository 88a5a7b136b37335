//! The ready-to-copy CI workflow (`tools/ci/github/policy.yml`), run the way GitHub's runner
//! runs it: validated against SchemaStore's GitHub workflow schema (check-jsonschema), then
//! its shell steps executed in order — `bash --noprofile --norc -eo pipefail`, the job's
//! environment with GitHub's `${{ }}` values supplied, `GITHUB_STEP_SUMMARY` and
//! `RUNNER_TEMP` files — in a git repository holding a policy, against audit shards the real
//! router shipped to a local S3 server (moto). The `uses:` steps (checkout, cache, AWS
//! credentials, artifact upload) are GitHub's and are not run here; every step with a `run:`
//! is.
//!
//! A pull request moving one tenant passes with that tenant's requests reported moved; one
//! that denies traffic fails at the replay gate; a push to main publishes the table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WORKFLOW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/ci/github/policy.yml");

fn policy(mock: &str, beta_rule: &str, default: &str) -> String {
    format!(
        r#"version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [llama]
    pricing: {{ input_per_1k: 0.001, output_per_1k: 0.002 }}
  - id: cloud
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [llama]
    pricing: {{ input_per_1k: 0.01, output_per_1k: 0.03 }}
tenants:
  - id: acme
  - id: beta
  - id: gamma
rules:
  - name: acme-gpu
    match:
      tenant: acme
    route_to: gpu
{beta_rule}  - default: {default}
"#
    )
}

const BETA_TO_GPU: &str = "  - name: beta-gpu\n    match:\n      tenant: beta\n    route_to: gpu\n";

fn cases(beta: &str, others: &str) -> String {
    format!(
        "cases:\n  - name: acme on the gpu\n    request: {{ tenant: acme }}\n    expect: {{ endpoint: gpu }}\n  - name: beta\n    request: {{ tenant: beta }}\n    expect: {{ endpoint: {beta} }}\n  - name: gamma\n    request: {{ tenant: gamma }}\n    expect: {others}\n"
    )
}

/// The workflow as JSON (PyYAML reads `on:` as `true`; nothing here needs it).
fn workflow() -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            WORKFLOW,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git is needed (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One run of the job.
struct Run {
    /// The id of the step that failed, if one did.
    failed: Option<String>,
    /// Steps run, in order.
    ran: Vec<String>,
    stdout: String,
    summary: String,
}

/// GitHub's context for a run: the event and what `${{ }}` expressions give.
struct Event<'a> {
    name: &'a str,
    git_ref: &'a str,
    expressions: &'a [(&'a str, &'a str)],
}

/// Runs the job's steps in `repo` as the runner would, with `settings` overriding the
/// workflow's `env:` (as a user edits it) and `aws` the credentials step's environment.
fn run_job(
    repo: &Path,
    event: &Event<'_>,
    settings: &[(&str, String)],
    aws: &[(&str, String)],
) -> Run {
    let wf = workflow();
    let temp = repo.join("../runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let summary = temp.join(format!("summary-{}.md", event.name));
    std::fs::write(&summary, "").unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in wf["env"].as_object().unwrap() {
        let v = v.as_str().unwrap().to_owned();
        let v = match event.expressions.iter().find(|(key, _)| key == k) {
            Some((_, value)) => (*value).to_owned(),
            None => {
                assert!(
                    !v.contains("${{"),
                    "`{k}: {v}`: this harness does not know the expression's value"
                );
                v
            }
        };
        env.insert(k.clone(), v);
    }
    for (k, v) in settings.iter().chain(aws) {
        env.insert((*k).to_owned(), v.clone());
    }
    let bin = binary("policyc");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let mut run = Run {
        failed: None,
        ran: Vec::new(),
        stdout: String::new(),
        summary: String::new(),
    };
    for step in wf["jobs"]["policy"]["steps"].as_array().unwrap() {
        let Some(script) = step["run"].as_str() else {
            assert!(step["uses"].is_string(), "{step}");
            continue;
        };
        let id = step["id"].as_str().unwrap().to_owned();
        assert!(
            !script.contains("${{"),
            "step `{id}` puts an expression in its script (set it in `env:`)"
        );
        if let Some(condition) = step["if"].as_str() {
            assert_eq!(
                condition, "github.event_name == 'push' && github.ref == 'refs/heads/main'",
                "the harness evaluates only this condition"
            );
            if !(event.name == "push" && event.git_ref == "refs/heads/main") {
                continue;
            }
        }
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(repo)
            .env_clear()
            .envs(&env)
            .env("PATH", &path)
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", event.name)
            .env("GITHUB_REF", event.git_ref)
            .env("GITHUB_WORKSPACE", repo)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("RUNNER_TEMP", &temp)
            .output()
            .unwrap();
        run.ran.push(id.clone());
        run.stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            run.stdout.push_str(&format!(
                "\n[step `{id}` exited {:?}: {}]\n",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            run.failed = Some(id);
            break;
        }
    }
    run.summary = std::fs::read_to_string(&summary).unwrap();
    run
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_ci_workflow_checks_tests_replays_and_publishes() {
    // The workflow is a valid GitHub workflow.
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.github-workflows", WORKFLOW])
        .output()
        .expect(
            "check-jsonschema is needed (`python3 -m pip install -r tools/sdk/requirements.txt`)",
        );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic through the real router, its shards shipped to S3.
    let s3 = common::moto::Moto::start("audit");
    s3.tool(&["mb", "state"]);
    let aws = s3.env();
    let mock = mock(&[]);
    let mock_addr = mock.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let main_policy = policy(&mock_addr, "", "cloud");
    let table = dir.path().join("t.swt");
    compile(&main_policy, &table, 1);
    let data = dir.path().join("data");
    let aws_env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut r = router_env(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-sink",
            "s3://audit/switchyard-audit",
            "--audit-max-shard-age-s",
            "1",
        ],
        &aws_env,
    );
    let (mut beta, mut gamma) = (0, 0);
    let sent = 30;
    for i in 0..sent {
        let id = format!("wf-{i:02}");
        let tenant = ["acme", "beta", "gamma"][i % 3];
        beta += usize::from(tenant == "beta");
        gamma += usize::from(tenant == "gamma");
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Request-Id", &id), ("X-Tenant", tenant)],
            &chat_body("llama", false),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // Every record shipped (shards seal after a second).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(binary("policyc"))
            .args([
                "replay",
                table.to_str().unwrap(),
                "--audit",
                "s3://audit/switchyard-audit",
                "--format",
                "json",
            ])
            .envs(aws.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if report["records"] == sent {
            break;
        }
        assert!(Instant::now() < until, "shards not shipped: {report}");
        std::thread::sleep(Duration::from_millis(300));
    }
    r.signal(15);
    r.wait_exit(Duration::from_secs(10));

    // The policy repository: main holds the running policy.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("policies")).unwrap();
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::copy(WORKFLOW, repo.join(".github/workflows/policy.yml")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(repo.join(name), text).unwrap();
    write("policies/policy.yaml", &main_policy);
    write(
        "policies/cases.yaml",
        &cases("cloud", "{ endpoint: cloud }"),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "policy"]);
    git(&repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    let settings = vec![
        ("AUDIT_URL", "s3://audit/switchyard-audit".to_owned()),
        ("STATE_URL", "s3://state/prod".to_owned()),
    ];
    let pull_request = Event {
        name: "pull_request",
        git_ref: "refs/pull/7/merge",
        expressions: &[
            ("REVISION", "7"),
            ("BASE_REF", "main"),
            ("PUBLISHER", "github-actions:acme/policies@abc123"),
        ],
    };

    // (a) A pull request moving beta to the GPU: every step passes; the replay reports
    // exactly beta's requests moved, on the new rule's line, and on the summary page.
    let moved_policy = policy(&mock_addr, BETA_TO_GPU, "cloud");
    write("policies/policy.yaml", &moved_policy);
    write("policies/cases.yaml", &cases("gpu", "{ endpoint: cloud }"));
    let a = run_job(&repo, &pull_request, &settings, &aws);
    assert_eq!(a.failed, None, "{}", a.stdout);
    assert_eq!(a.ran, ["install", "check", "compile", "test", "replay"]);
    assert!(repo.join("build/policy.swt").exists());
    let rule_line = line_of(&moved_policy, "name: beta-gpu");
    let note = a
        .stdout
        .lines()
        .find(|l| l.starts_with("::notice ") && l.contains("beta-gpu"))
        .unwrap_or_else(|| panic!("no annotation on the moved tenant's rule:\n{}", a.stdout));
    assert!(
        note.contains(&format!("file=policies/policy.yaml,line={rule_line},")),
        "{note}"
    );
    assert!(
        note.contains(&format!(
            "moves {beta} recorded requests from `cloud` to `gpu`"
        )),
        "{note}"
    );
    assert!(
        a.summary.contains(&format!("| `cloud` | `gpu` | {beta} |")),
        "{}",
        a.summary
    );
    assert!(
        a.summary
            .contains("✅ does not hold: `--fail-if denied > 0`")
    );

    // (b) A pull request that denies gamma: the replay gate fails the job, with the
    // count on the summary page; nothing after it runs.
    write(
        "policies/policy.yaml",
        &policy(
            &mock_addr,
            "  - name: beta-cloud\n    match:\n      tenant: beta\n    route_to: cloud\n",
            "deny",
        ),
    );
    write("policies/cases.yaml", &cases("cloud", "{ deny: true }"));
    let b = run_job(&repo, &pull_request, &settings, &aws);
    assert_eq!(b.failed.as_deref(), Some("replay"), "{}", b.stdout);
    assert!(
        b.stdout
            .lines()
            .any(|l| l.starts_with("::error ") && l.contains("denied > 0")),
        "{}",
        b.stdout
    );
    assert!(
        b.summary.contains(&format!("{gamma} newly denied")),
        "{}",
        b.summary
    );

    // (c) (a) merged: the push to main publishes the table, at the run's revision.
    write("policies/policy.yaml", &moved_policy);
    write("policies/cases.yaml", &cases("gpu", "{ endpoint: cloud }"));
    git(&repo, &["commit", "-q", "-am", "beta to the gpu"]);
    git(&repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    let push = Event {
        name: "push",
        git_ref: "refs/heads/main",
        expressions: &[
            ("REVISION", "8"),
            ("BASE_REF", ""),
            ("PUBLISHER", "github-actions:acme/policies@def456"),
        ],
    };
    let c = run_job(&repo, &push, &settings, &aws);
    assert_eq!(c.failed, None, "{}", c.stdout);
    assert_eq!(
        c.ran,
        ["install", "check", "compile", "test", "replay", "publish"]
    );
    let keys = s3.tool(&["ls", "state"]);
    assert!(keys.lines().any(|k| k.starts_with("prod/")), "{keys}");
    // Published at revision 8: the same revision again is refused.
    let again = Command::new(binary("policyc"))
        .args([
            "publish",
            repo.join("build/policy.swt").to_str().unwrap(),
            "s3://state/prod",
        ])
        .envs(aws.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(5));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains('8'), "{said}");
}
