//! `switchyard audit compact`: one tenant-hour's shards merged into one file, in a local
//! audit directory and in the bucket they were shipped to (moto's S3 server), with the
//! process killed midway (a failpoint aborts it) and rerun; DuckDB counts every row exactly
//! once at the end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, binary, call, chat_body, files, router, router_env};

const POLICY: &str = "version: v1
endpoints:
  - id: m
    type: mock
    models: [m1]
tenants:
  - id: acme
  - id: other
rules:
  - default:
      route_to: m
";

/// `(rows, distinct request ids)` DuckDB reads under `dir` (hive-partitioned, as users read).
fn duckdb_counts(dir: &Path) -> (u64, u64) {
    let script = "import duckdb, sys\n\
        con = duckdb.connect()\n\
        src = f\"read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true, union_by_name = true)\"\n\
        print(*con.execute(f'SELECT count(*), count(DISTINCT request_id) FROM {src}').fetchone())\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB (pip install -r tools/sdk/requirements.txt; tools/test-all does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Sends `n` requests of tenant `acme` in `rounds`, a little over a second apart (a shard
/// seals every second), then stops the router cleanly (the last shard sealed and shipped).
fn traffic(mut r: Proc, rounds: usize, n: usize) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    for round in 0..rounds {
        for i in 0..n {
            let id = format!("compact-{round}-{i}");
            let resp = call(
                r.addr,
                "POST",
                "/v1/chat/completions",
                &[("X-Request-Id", &id), ("X-Tenant", "acme")],
                &chat_body("m1", i % 4 == 0),
            );
            assert_eq!(resp.status, 200, "{}", resp.text());
            sent.insert(id);
        }
        std::thread::sleep(Duration::from_millis(1_200));
    }
    r.signal(15);
    assert!(
        r.wait_exit(Duration::from_secs(30)).is_some(),
        "{}",
        r.log()
    );
    sent
}

/// The hours (`YYYY-MM-DDTHH`) that have `tenant=acme` shards among `paths`.
fn hours(paths: &[String]) -> BTreeSet<String> {
    paths
        .iter()
        .filter(|p| p.contains("tenant=acme/") && p.ends_with(".parquet"))
        .filter_map(|p| {
            let day = p.split("dt=").nth(1)?.get(..10)?;
            let hour = p.split("hour=").nth(1)?.get(..2)?;
            Some(format!("{day}T{hour}"))
        })
        .collect()
}

/// Shards of `tenant=acme` in `hour` among `paths`.
fn shards_in(paths: &[String], hour: &str) -> usize {
    let (day, hh) = hour.split_once('T').unwrap();
    let dir = format!("tenant=acme/dt={day}/hour={hh}/");
    paths
        .iter()
        .filter(|p| p.contains(&dir) && p.ends_with(".parquet"))
        .count()
}

/// Runs `switchyard audit compact` (with a failpoint, or none); whether it succeeded, and
/// its report.
fn compact(
    target: &str,
    hour: &str,
    failpoint: Option<&str>,
    env: &[(&str, String)],
) -> (bool, serde_json::Value) {
    let mut cmd = Command::new(binary("switchyard"));
    cmd.args([
        "audit", "compact", target, "--tenant", "acme", "--hour", hour,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(f) = failpoint {
        cmd.env("SWITCHYARD_FAILPOINT", f);
    }
    let out = cmd.output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    if failpoint.is_none() {
        assert!(
            out.status.success(),
            "compact failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), report)
}

fn parquet_names(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .filter_map(|p| p.to_str().map(str::to_owned))
        .filter(|p| p.ends_with(".parquet") && !p.rsplit('/').next().unwrap().starts_with('.'))
        .collect()
}

#[test]
fn local_compaction_keeps_every_row_once_across_crashes() {
    let data = tempfile::tempdir().unwrap();
    let (_t, table) = common::compiled(POLICY);
    let audit: PathBuf = data.path().join("audit");
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--audit-max-shard-age-s",
        "1",
        "--cores",
        "1",
    ]);
    let sent = traffic(r, 4, 15);
    let n = sent.len() as u64;
    assert_eq!(duckdb_counts(&audit), (n, n));
    let before = parquet_names(&audit);
    let hours = hours(&before);
    assert!(
        before.iter().filter(|p| p.contains("tenant=acme/")).count() >= 3,
        "{before:?}"
    );
    let target = audit.to_str().unwrap();
    for hour in &hours {
        if shards_in(&before, hour) >= 2 {
            // Killed after the first input is deleted: the rest are counted twice meanwhile
            // (never fewer); the rerun finishes the job.
            let (ok, _) = compact(target, hour, Some("compact-after-first-delete"), &[]);
            assert!(!ok, "the failpoint did not stop it");
            let (rows, _) = duckdb_counts(&audit);
            assert!(rows >= n, "rows lost while interrupted: {rows} < {n}");
            let (_, report) = compact(target, hour, None, &[]);
            assert!(report["deleted"].as_u64().unwrap() >= 1, "{report}");
        }
        // Run again: nothing left to do.
        let (_, again) = compact(target, hour, None, &[]);
        assert_eq!(again["inputs"], 0, "{again}");
        assert_eq!(again["deleted"], 0, "{again}");
    }
    assert_eq!(duckdb_counts(&audit), (n, n));
    let after = parquet_names(&audit);
    let acme: Vec<_> = after
        .iter()
        .filter(|p| p.contains("tenant=acme/"))
        .collect();
    assert_eq!(acme.len(), hours.len(), "one file per hour: {acme:?}");
    assert!(acme.iter().all(|p| p.contains("/compacted-")), "{acme:?}");
    // Other tenants' shards are not touched.
    let others = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|p| !p.contains("tenant=acme/"))
            .cloned()
            .collect()
    };
    assert_eq!(others(&before), others(&after));
    // The router reads the merged file like any shard.
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--cores",
        "1",
    ]);
    let got = common::admin(&r, "GET", "/v1/audit?tenant=acme&limit=1000", b"").json();
    assert_eq!(got["data"].as_array().unwrap().len() as u64, n, "{got}");
}

#[test]
fn compaction_in_the_bucket_keeps_every_row_once_across_a_crash() {
    let moto = common::moto::Moto::start("audit");
    let tool = |args: &[&str]| moto.tool(args);
    let env = moto.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = tempfile::tempdir().unwrap();
    let (_t, table) = common::compiled(POLICY);
    let r = router_env(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--audit-sink",
            "s3://audit/fleet",
            "--audit-local-retention-s",
            "0",
            "--audit-max-shard-age-s",
            "1",
            "--cores",
            "1",
        ],
        &env_refs,
    );
    let sent = traffic(r, 3, 10);
    let n = sent.len() as u64;
    let keys: Vec<String> = tool(&["ls", "audit"]).lines().map(str::to_owned).collect();
    let hours = hours(&keys);
    assert!(
        keys.iter().filter(|k| k.contains("tenant=acme/")).count() >= 2,
        "{keys:?}"
    );
    let mirror = |dest: &Path| {
        let _ = std::fs::remove_dir_all(dest);
        tool(&["mirror", "audit", "fleet", dest.to_str().unwrap()]);
    };
    let local = data.path().join("mirror");
    mirror(&local);
    assert_eq!(duckdb_counts(&local), (n, n), "every request shipped once");
    for hour in &hours {
        if shards_in(&keys, hour) >= 2 {
            // Killed after the merged object is uploaded, before its check and any delete.
            let (ok, _) = compact("s3://audit/fleet", hour, Some("compact-after-write"), &env);
            assert!(!ok, "the failpoint did not stop it");
            let (_, report) = compact("s3://audit/fleet", hour, None, &env);
            assert!(report["deleted"].as_u64().unwrap() >= 2, "{report}");
        }
    }
    mirror(&local);
    assert_eq!(duckdb_counts(&local), (n, n));
    let keys: Vec<String> = tool(&["ls", "audit"]).lines().map(str::to_owned).collect();
    let acme: Vec<_> = keys.iter().filter(|k| k.contains("tenant=acme/")).collect();
    assert_eq!(acme.len(), hours.len(), "{acme:?}");
    assert!(acme.iter().all(|k| k.contains("/compacted-")), "{acme:?}");
}
