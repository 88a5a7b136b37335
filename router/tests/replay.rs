//! `policyc replay` over shards the real router wrote: the same policy changes nothing, a
//! policy moving one tenant moves exactly its records, a new `default: deny` denies exactly
//! the records no rule matches any more — each checked against DuckDB's count over the same
//! shards; older shards are reported as skipped; the S3 source reads the same shards from
//! moto; `--fail-if` sets the exit code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn policy(mock: &str, rules: &str, default: &str) -> String {
    format!(
        r#"
version: v1
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
    models: [llama, big]
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
  - name: fast
    match:
      latency_budget_ms: "0..300"
    route_to: gpu
{rules}  - default: {default}
"#
    )
}

/// DuckDB's answer to `SELECT <what> FROM shards WHERE <filter>` over `dir`.
fn duckdb(dir: &Path, what: &str, filter: &str) -> String {
    let sql = format!(
        "SELECT {what} FROM read_parquet('{}/**/*.parquet', hive_partitioning = true, union_by_name = true) WHERE {filter}",
        dir.display()
    );
    let out = Command::new("python3")
        .args([
            "-c",
            "import duckdb, sys; print(duckdb.connect().execute(sys.argv[1]).fetchone()[0])",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB failed (`python3 -m pip install -r tools/sdk/requirements.txt` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn count(dir: &Path, filter: &str) -> u64 {
    duckdb(dir, "count(*)", filter).parse().unwrap()
}

/// Runs `policyc replay ARGS --format json`; (exit code, report).
fn replay(args: &[&str], env: &[(&str, String)]) -> (i32, serde_json::Value) {
    let out = Command::new(binary("policyc"))
        .arg("replay")
        .args(args)
        .args(["--format", "json"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "policyc replay {args:?} (exit {code}): {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// Runs `policyc replay ARGS --format FORMAT`; (exit code, stdout).
fn replay_as(format: &str, args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let out = Command::new(binary("policyc"))
        .arg("replay")
        .args(args)
        .args(["--format", format])
        .env_remove("GITHUB_WORKSPACE")
        .env_remove("GITHUB_STEP_SUMMARY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stdout.is_empty(),
        "policyc replay {args:?} --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// The workflow command lines of `level` (`notice`, `warning`, `error`).
fn commands<'a>(stdout: &'a str, level: &str) -> Vec<&'a str> {
    let prefix = format!("::{level} ");
    stdout.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// Validates a SARIF log with the OASIS schema (tools/ci/test/validate_sarif.py).
fn assert_valid_sarif(path: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("tools/ci/test/validate_sarif.py"))
        .arg(root.join("testdata/sarif/sarif-schema-2.1.0.json"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "invalid SARIF (`python3 -m pip install -r tools/sdk/requirements.txt` installs jsonschema): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn route(report: &serde_json::Value, from: &str, to: &str) -> u64 {
    report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["from"] == from && r["to"] == to)
        .map_or(0, |r| r["count"].as_u64().unwrap())
}

#[test]
fn replay_judges_policy_changes_against_recorded_traffic() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let p1 = write(
        dir.path(),
        "p1.yaml",
        &policy(&mock.addr.to_string(), "", "cloud"),
    );
    let table = dir.path().join("t.swt");
    compile(&std::fs::read_to_string(&p1).unwrap(), &table, 1);
    let data = dir.path().join("data");
    let mut r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    // A mixed workload: four tenants (one undeclared, one absent), budgets on a third of
    // the requests, `auto` and a pinned model.
    let mut sent = 0;
    for i in 0..48 {
        let id = format!("req-{i:02}");
        let mut headers = vec![("X-Request-Id", id.as_str())];
        match i % 4 {
            0 => headers.push(("X-Tenant", "acme")),
            1 => headers.push(("X-Tenant", "beta")),
            2 => headers.push(("X-Tenant", "gamma")),
            _ => {}
        }
        if i % 3 == 0 {
            headers.push(("X-Latency-Budget-Ms", "200"));
        }
        let model = if i % 2 == 0 { "auto" } else { "llama" };
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            &chat_body(model, i % 5 == 0),
        );
        assert_eq!(resp.status, 200, "{id}: {}", resp.text());
        sent += 1;
    }
    // Refused before the table was consulted: recorded, never replayed.
    for i in 0..3 {
        let id = format!("bad-{i}");
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Request-Id", id.as_str()), ("X-Tenant", "beta")],
            b"{not json",
        );
        assert_eq!(resp.status, 400);
    }
    r.signal(15);
    assert!(
        r.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let audit = data.join("audit");
    let audit_arg = audit.to_str().unwrap();
    assert_eq!(count(&audit, "true"), sent + 3);

    // (a) The same policy: nothing changes.
    let (code, same) = replay(
        &[
            p1.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--fail-if",
            "denied > 0",
        ],
        &[],
    );
    assert_eq!(code, 0, "{same:#}");
    assert_eq!(same["records"], sent + 3);
    assert_eq!(same["replayed"], sent);
    assert_eq!(same["skipped"], 3);
    assert_eq!(same["skipped_by_reason"]["refused_before_routing"], 3);
    assert_eq!(same["rerouted"], 0, "{same:#}");
    assert_eq!(same["denied"], 0);
    assert_eq!(same["allowed"], 0);
    assert_eq!(same["model_unserved"], 0);
    assert_eq!(same["cost_exact"]["delta"], "0.000000", "{same:#}");
    assert_eq!(
        route(&same, "cloud", "cloud"),
        count(&audit, "endpoint_id = 'cloud'")
    );
    // The table file replays the same as its policy.
    let (_, same_table) = replay(&[table.to_str().unwrap(), "--audit", audit_arg], &[]);
    assert_eq!(same_table["routes"], same["routes"]);

    // (b) beta moves to the GPU: exactly beta's records that went to the cloud.
    let p2 = write(
        dir.path(),
        "p2.yaml",
        &policy(
            &mock.addr.to_string(),
            "  - name: beta-gpu\n    match:\n      tenant: beta\n    route_to: gpu\n",
            "cloud",
        ),
    );
    let (code, moved) = replay(
        &[
            p2.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--fail-if",
            "rerouted_pct > 50",
        ],
        &[],
    );
    assert_eq!(code, 0, "{moved:#}");
    let beta_cloud = count(&audit, "tenant = 'beta' AND endpoint_id = 'cloud'");
    assert!(beta_cloud > 0);
    assert_eq!(moved["rerouted"], beta_cloud, "{moved:#}");
    assert_eq!(route(&moved, "cloud", "gpu"), beta_cloud);
    let pct = (beta_cloud as f64 * 10_000.0 / sent as f64).round() / 100.0;
    assert_eq!(moved["rerouted_pct"], pct);
    let beta = moved["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "beta")
        .unwrap();
    assert_eq!(beta["rerouted"], beta_cloud);
    for t in moved["tenants"].as_array().unwrap() {
        if t["tenant"] != "beta" {
            assert_eq!(t["rerouted"], 0, "{t}");
        }
    }
    let examples = moved["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["from"] == "cloud" && r["to"] == "gpu")
        .unwrap()["examples"]
        .clone();
    assert_eq!(examples.as_array().unwrap().len(), 3);
    for e in examples.as_array().unwrap() {
        let id = e.as_str().unwrap();
        assert_eq!(
            count(&audit, &format!("request_id = '{id}' AND tenant = 'beta'")),
            1,
            "{id}"
        );
    }
    // The cost delta, exact: the moved records at the GPU's prices (rounded per record as
    // the router rounds) minus what they cost.
    let delta_micros: i64 = duckdb(
        &audit,
        "sum((tokens_in * 1000 + tokens_out * 2000 + 500) // 1000 - CAST(cost_usd * 1000000 AS BIGINT))",
        "tenant = 'beta' AND endpoint_id = 'cloud'",
    )
    .parse()
    .unwrap();
    assert!(delta_micros < 0, "the GPU is cheaper");
    assert_eq!(
        moved["cost_exact"]["delta"],
        format!(
            "-{}.{:06}",
            delta_micros.abs() / 1_000_000,
            delta_micros.abs() % 1_000_000
        )
    );
    // A CI gate on it.
    let (code, _) = replay(
        &[
            p2.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--fail-if",
            "rerouted_pct > 5",
        ],
        &[],
    );
    assert_eq!(code, 5, "rerouted_pct > 5 holds");

    // The same for CI: an annotation on the rule that moves them, the gate as an error,
    // a Markdown report on the job's summary page.
    let p2_text = std::fs::read_to_string(&p2).unwrap();
    let rule_line = line_of(&p2_text, "name: beta-gpu");
    let summary = dir.path().join("summary.md");
    let (code, gh) = replay_as(
        "github",
        &[
            p2.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--fail-if",
            "rerouted_pct > 5",
        ],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap().to_owned())],
    );
    assert_eq!(code, 5, "{gh}");
    let moved_notes: Vec<_> = commands(&gh, "notice")
        .into_iter()
        .filter(|l| l.contains("beta-gpu"))
        .collect();
    assert_eq!(moved_notes.len(), 1, "{gh}");
    let note = moved_notes[0];
    assert!(
        note.contains(&format!(",file={},line={rule_line},", p2.to_str().unwrap())),
        "{note}"
    );
    assert!(
        note.contains(&format!(
            "moves {beta_cloud} recorded requests from `cloud` to `gpu`"
        )),
        "{note}"
    );
    let errors = commands(&gh, "error");
    assert_eq!(errors.len(), 1, "{gh}");
    assert!(errors[0].contains("rerouted_pct > 5"), "{}", errors[0]);
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(&format!("| `cloud` | `gpu` | {beta_cloud} |")),
        "{md}"
    );
    assert!(
        md.contains("❌ holds: `--fail-if rerouted_pct > 5`"),
        "{md}"
    );
    let (code, sarif) = replay_as("sarif", &[p2.to_str().unwrap(), "--audit", audit_arg], &[]);
    assert_eq!(code, 0);
    let sarif_file = write(dir.path(), "replay.sarif", &sarif);
    assert_valid_sarif(&sarif_file);
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    let run = &log["runs"][0];
    let results = run["results"].as_array().unwrap();
    let moved_result = results
        .iter()
        .find(|r| r["ruleId"] == "replay/rerouted")
        .unwrap();
    assert_eq!(moved_result["properties"]["count"], beta_cloud);
    assert_eq!(
        moved_result["locations"][0]["physicalLocation"]["region"]["startLine"],
        rule_line
    );
    assert_eq!(run["properties"]["rerouted"], beta_cloud);

    // `--old`: both policies evaluated; the same moves.
    let (_, both) = replay(
        &[
            p2.to_str().unwrap(),
            "--old",
            p1.to_str().unwrap(),
            "--audit",
            audit_arg,
        ],
        &[],
    );
    assert_eq!(both["rerouted"], beta_cloud);

    // `--tenant`: only beta's records.
    let (_, only_beta) = replay(
        &[
            p2.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--tenant",
            "beta",
        ],
        &[],
    );
    assert_eq!(only_beta["records"], count(&audit, "tenant = 'beta'"));

    // (c) `default: deny` with a rule for beta: exactly the records no rule now matches
    // (gamma's and the tenantless ones that went to the cloud) are denied.
    let p3 = write(
        dir.path(),
        "p3.yaml",
        &policy(
            &mock.addr.to_string(),
            "  - name: beta-cloud\n    match:\n      tenant: beta\n    route_to: cloud\n",
            "deny",
        ),
    );
    let (code, denied) = replay(
        &[
            p3.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--fail-if",
            "denied > 0",
        ],
        &[],
    );
    assert_eq!(code, 5, "{denied:#}");
    let expected = count(
        &audit,
        "endpoint_id = 'cloud' AND (tenant IS NULL OR tenant = 'gamma')",
    );
    assert!(expected > 0);
    assert_eq!(denied["denied"], expected, "{denied:#}");
    assert_eq!(route(&denied, "cloud", "deny"), expected);
    assert_eq!(denied["rerouted"], 0);
    // In CI: a warning on the `default: deny` line with that count.
    let (code, gh) = replay_as("github", &[p3.to_str().unwrap(), "--audit", audit_arg], &[]);
    assert_eq!(code, 0);
    let default_line = line_of(&std::fs::read_to_string(&p3).unwrap(), "- default: deny");
    let warnings = commands(&gh, "warning");
    assert_eq!(warnings.len(), 1, "{gh}");
    assert!(
        warnings[0].contains(&format!(",line={default_line},")),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains(&format!("denies {expected} recorded requests")),
        "{}",
        warnings[0]
    );

    // A window after the traffic: nothing read.
    let (_, later) = replay(
        &[
            p1.to_str().unwrap(),
            "--audit",
            audit_arg,
            "--from",
            "2099-01-01",
        ],
        &[],
    );
    assert_eq!(later["records"], 0);

    // Older shards (written before the replay columns) are reported as skipped.
    let older = dir.path().join("older");
    let part = older.join("tenant=beta/dt=2026-01-01/hour=00");
    std::fs::create_dir_all(&part).unwrap();
    let sql = format!(
        "COPY (SELECT * EXCLUDE (requested_model, latency_budget_ms, cost_budget_usd, cost_cap_per_1k, policy_revision, tenant, dt, hour) FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) WHERE tenant = 'beta') TO '{}/old.parquet' (FORMAT parquet)",
        audit.display(),
        part.display()
    );
    let out = Command::new("python3")
        .args([
            "-c",
            "import duckdb, sys; duckdb.connect().execute(sys.argv[1])",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, old) = replay(
        &[p2.to_str().unwrap(), "--audit", older.to_str().unwrap()],
        &[],
    );
    let n = count(&audit, "tenant = 'beta'");
    assert_eq!(old["records"], n, "{old:#}");
    assert_eq!(old["replayed"], 0);
    assert_eq!(
        old["skipped_by_reason"]["older_shard_without_replay_columns"],
        n
    );

    // The same shards from S3 (moto), listed by partition: the same answer.
    let s3 = common::moto::Moto::start("audit-bucket");
    for shard in files(&audit) {
        if shard.extension().is_some_and(|e| e == "parquet") {
            let key = format!(
                "fleet/{}",
                shard.strip_prefix(&audit).unwrap().to_str().unwrap()
            );
            s3.tool(&["put", "audit-bucket", &key, shard.to_str().unwrap()]);
        }
    }
    let env = s3.env();
    let (code, remote) = replay(
        &[p2.to_str().unwrap(), "--audit", "s3://audit-bucket/fleet"],
        &env,
    );
    assert_eq!(code, 0, "{remote:#}");
    assert_eq!(remote["records"], moved["records"]);
    assert_eq!(remote["routes"], moved["routes"]);
    assert_eq!(remote["cost_exact"], moved["cost_exact"]);
    let (_, remote_beta) = replay(
        &[
            p2.to_str().unwrap(),
            "--audit",
            "s3://audit-bucket/fleet",
            "--tenant",
            "beta",
        ],
        &env,
    );
    assert_eq!(remote_beta["records"], only_beta["records"]);
}

#[test]
fn replay_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.yaml", &policy("127.0.0.1:9", "", "cloud"));
    let run = |args: &[&str]| {
        let out = Command::new(binary("policyc"))
            .arg("replay")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.path().to_str().unwrap();
    let (code, err) = run(&[p.to_str().unwrap(), "--audit", "/nonexistent/audit"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a directory"), "{err}");
    let (code, err) = run(&[
        p.to_str().unwrap(),
        "--audit",
        d,
        "--fail-if",
        "nonsense > 1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown metric `nonsense`"), "{err}");
    let (code, err) = run(&[p.to_str().unwrap(), "--audit", d, "--from", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("YYYY-MM-DD"), "{err}");
    // A file that is not Parquet where a shard should be: named, not a crash.
    std::fs::write(dir.path().join("broken.parquet"), b"not parquet").unwrap();
    let (code, err) = run(&[p.to_str().unwrap(), "--audit", d]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.parquet"), "{err}");
}
