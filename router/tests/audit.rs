//! The audit trail end to end: requests through the real router, shards read back by DuckDB
//! (the Python package) with Hive partitioning.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test harness"
)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;

fn duckdb_rows(dir: &std::path::Path) -> serde_json::Value {
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the `duckdb` Python package is missing: run `python3 -m pip install -r tools/sdk/requirements.txt` (tools/test-all does)"
        ),
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/audit/dump.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB could not read the shards: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_request_leaves_one_record_that_duckdb_reads() {
    let mock = mock(&["--chunks", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    let yaml = format!(
        r#"
version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://{mock}/v1
    transport: privatelink
    models: [llama]
    pricing: {{ input_per_1k: 0.001, output_per_1k: 0.002 }}
  - id: local
    type: mock
    transport: privatelink
    models: [mock-model]
    pricing: {{ input_per_1k: 0.5, output_per_1k: 1.0 }}
tenants:
  - id: acme
  - id: beta
rules:
  - name: acme-gpu
    match:
      tenant: acme
    route_to: gpu
  - default:
      route_to: local
"#,
        mock = mock.addr
    );
    compile(&yaml, &table, 1);
    let data = dir.path().join("data");
    let mut r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--cores",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    // (request id, tenant header, stream, extra header, expected status, endpoint, rule)
    let mut expected = BTreeMap::new();
    // (budgets sent, body length) by request id.
    let mut body_len = BTreeMap::new();
    let mut n = 0;
    for round in 0..6 {
        for (tenant, extra, status, endpoint, rule) in [
            (Some("acme"), None, 200, Some("gpu"), Some(0)),
            (
                Some("acme"),
                Some(("x-mock-status", "500")),
                500,
                Some("gpu"),
                Some(0),
            ),
            (
                Some("acme"),
                Some(("x-mock-fault", "reset")),
                502,
                Some("gpu"),
                Some(0),
            ),
            (Some("beta"), None, 200, Some("local"), Some(1)),
            (Some("nobody"), None, 200, Some("local"), Some(1)),
            (None, None, 200, Some("local"), Some(1)),
        ] {
            let stream = round % 2 == 1;
            let id = format!("audit-{n}");
            n += 1;
            let mut headers = vec![("X-Request-Id", id.as_str())];
            if let Some(t) = tenant {
                headers.push(("X-Tenant", t));
            }
            if let Some(h) = extra {
                headers.push(h);
            }
            // The first round sends budgets, which the records keep for replay.
            if round == 0 {
                headers.push(("X-Latency-Budget-Ms", "250"));
                headers.push(("X-Cost-Budget-Usd", "0.25"));
            }
            let body = chat_body("auto", stream);
            body_len.insert(id.clone(), (round == 0, body.len()));
            let resp = call(r.addr, "POST", "/v1/chat/completions", &headers, &body);
            assert_eq!(resp.status, status, "{id}: {}", resp.text());
            expected.insert(id, (tenant, stream, status, endpoint, rule));
        }
    }
    // A request refused before routing is audited too.
    let resp = call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "audit-bad"), ("X-Tenant", "acme")],
        b"{not json",
    );
    assert_eq!(resp.status, 400);
    expected.insert("audit-bad".into(), (Some("acme"), false, 400, None, None));

    r.signal(15);
    assert!(
        r.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let audit = data.join("audit");
    assert_only_shards(&audit);

    let out = duckdb_rows(&audit);
    let schema: BTreeMap<String, String> = out["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_owned(),
                c[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(schema["ts"], "TIMESTAMP WITH TIME ZONE", "{schema:?}");
    assert_eq!(schema["status"], "INTEGER");
    assert_eq!(schema["tokens_in"], "BIGINT");
    assert_eq!(schema["cost_usd"], "DECIMAL(18,6)");
    assert_eq!(schema["cost_cap_per_1k"], "DECIMAL(18,6)");
    assert_eq!(schema["policy_revision"], "BIGINT");
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "one record per request");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for row in rows {
        let id = row["request_id"].as_str().unwrap();
        let (tenant, stream, status, endpoint, rule) = expected[id];
        let declared = tenant.filter(|t| *t != "nobody");
        assert_eq!(row["tenant"].as_str(), declared, "{id}");
        let claimed = tenant.filter(|t| *t == "nobody");
        assert_eq!(row["tenant_claimed"].as_str(), claimed, "{id}");
        assert_eq!(row["status"], status, "{id}");
        assert_eq!(row["stream"], stream, "{id}");
        assert_eq!(row["endpoint_id"].as_str(), endpoint, "{id}");
        assert_eq!(row["rule_index"].as_i64(), rule, "{id}");
        // What a replay needs: the model as asked, the budgets, the cap as evaluated
        // (budget × 1000 over the worst case: body bytes / 4, rounded up, plus the body's
        // `max_tokens`, 64), the deciding table's revision.
        if status == 400 {
            assert!(row["requested_model"].is_null(), "{id}: {row}");
            assert!(row["policy_revision"].is_null(), "{id}: {row}");
        } else {
            assert_eq!(row["requested_model"], "auto", "{id}");
            assert_eq!(row["policy_revision"], 1, "{id}");
            if status == 200 {
                assert_ne!(row["model"], "auto", "{id}: the resolved model");
            }
            let (budgeted, len) = body_len[id];
            if budgeted {
                assert_eq!(row["latency_budget_ms"], 250, "{id}");
                assert_eq!(row["cost_budget_usd"], "0.250000", "{id}");
                let worst = (len as i64 + 3) / 4 + 64;
                let cap = 250_000 * 1000 / worst;
                assert_eq!(
                    row["cost_cap_per_1k"],
                    format!("{}.{:06}", cap / 1_000_000, cap % 1_000_000),
                    "{id}"
                );
            } else {
                assert!(row["latency_budget_ms"].is_null(), "{id}");
                assert!(row["cost_budget_usd"].is_null(), "{id}");
                assert!(row["cost_cap_per_1k"].is_null(), "{id}");
            }
        }
        let ts = row["ts_epoch_ms"].as_i64().unwrap();
        assert!(
            (now_ms - ts).abs() < 120_000,
            "{id}: ts {ts} vs now {now_ms}"
        );
        if status == 200 {
            let tin = row["tokens_in"].as_i64().unwrap();
            let tout = row["tokens_out"].as_i64().unwrap();
            assert!(tin > 0 && tout > 0, "{id}: {row}");
            assert_eq!(
                row["tokens_estimated"], false,
                "{id}: usage came from the answer"
            );
            let (pin, pout) = if endpoint == Some("gpu") {
                (1000, 2000)
            } else {
                (500_000, 1_000_000)
            };
            let micros = (tin * pin + tout * pout + 500) / 1000;
            let cost: f64 = row["cost_usd"]
                .as_str()
                .map_or_else(|| row["cost_usd"].as_f64().unwrap(), |s| s.parse().unwrap());
            assert!(
                (cost * 1e6 - micros as f64).abs() < 0.5,
                "{id}: cost {cost} vs {micros} µ$"
            );
        }
        if status == 500 || status == 502 {
            assert_eq!(
                row["upstream_status"].as_i64(),
                if status == 500 { Some(500) } else { None },
                "{id}"
            );
        }
        if status == 502 || status == 400 {
            assert!(
                row["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{id}: {row}"
            );
        }
    }
    // The example queries users are pointed to run on these shards.
    let queries = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/audit/queries.py");
    let out = Command::new("python3")
        .arg(queries)
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));
    // Declared tenants are partitions; the unknown claim and the absent tenant are not.
    let dirs: Vec<String> = std::fs::read_dir(&audit)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut dirs = dirs;
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "tenant=__HIVE_DEFAULT_PARTITION__",
            "tenant=acme",
            "tenant=beta"
        ]
    );
}

/// Only sealed shards are left: no temporary file, no write-ahead log.
fn assert_only_shards(dir: &std::path::Path) {
    let leftovers: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| !p.ends_with(".parquet"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "files left besides shards: {leftovers:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn a_killed_router_loses_no_record_acknowledged_before_the_flush_interval() {
    killed_router(false);
}

#[test]
fn a_killed_strict_router_loses_no_acknowledged_record() {
    killed_router(true);
}

fn killed_router(strict: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--cores",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        // The default interval: the bound is one interval, and a loaded CI machine can
        // delay the batch hand-over and the writer by a good part of a short one.
        "--audit-flush-interval-ms",
        "1000",
        "--audit-durability",
        if strict { "strict" } else { "buffered" },
    ];
    let mut r = router(&args);
    let addr = r.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut c = Conn::open(addr);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("crash-{w}-{i}");
                    i += 1;
                    c.send(&request(
                        "POST",
                        "/v1/chat/completions",
                        &[("X-Request-Id", &id), ("X-Tenant", "demo")],
                        &chat_body("auto", i % 2 == 0),
                    ));
                    // The kill resets the connection mid-read: that ends the worker.
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.read_response()
                    }));
                    match answer {
                        Ok(Some(resp)) if resp.status == 200 => {
                            acked.push((id, std::time::Instant::now()));
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let killed_at = std::time::Instant::now();
    r.signal(9);
    assert!(r.wait_exit(Duration::from_secs(5)).is_some());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<(String, std::time::Instant)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() > 100,
        "only {} requests before the kill",
        acked.len()
    );

    // Restart on the same directory: the logs are sealed into shards; then stop cleanly.
    let mut again = router(&args);
    again.signal(15);
    assert!(
        again
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    assert!(
        again.log().contains("recovered audit records"),
        "{}",
        again.log()
    );
    let audit = data.join("audit");
    assert_only_shards(&audit);

    let out = duckdb_rows(&audit);
    let seen: std::collections::BTreeSet<String> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen.len(),
        out["rows"].as_array().unwrap().len(),
        "no duplicates"
    );
    // Buffered: everything acknowledged before the last flush interval; strict: everything.
    let cutoff = if strict {
        killed_at
    } else {
        killed_at - Duration::from_millis(1000)
    };
    let missing: Vec<&String> = acked
        .iter()
        .filter(|(id, at)| *at < cutoff && !seen.contains(id))
        .map(|(id, _)| id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn an_unwritable_audit_directory_is_reported_and_strict_mode_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let audit = blocker.join("audit");
    for strict in [false, true] {
        let r = router(&[
            "--cores",
            "1",
            "--audit-dir",
            audit.to_str().unwrap(),
            "--audit-durability",
            if strict { "strict" } else { "buffered" },
        ]);
        for _ in 0..3 {
            let resp = chat(r.addr, "auto", &[("X-Tenant", "demo")]);
            if strict {
                assert_eq!(resp.status, 503, "{}", resp.text());
                assert_eq!(resp.error_code(), "audit_unavailable");
            } else {
                assert_eq!(resp.status, 200, "buffered keeps serving");
            }
        }
        // The writer counts asynchronously (records reach it in batches): poll.
        let value = |metrics: &str, name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
                .parse()
                .unwrap()
        };
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = call(r.addr, "GET", "/metrics", &[], b"").text();
            let counted = value(&metrics, "switchyard_audit_write_errors_total") > 0
                && (strict || value(&metrics, "switchyard_audit_records_failed_total") >= 3);
            if counted {
                break;
            }
            assert!(std::time::Instant::now() < until, "{metrics}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(r.log().contains("audit"), "{}", r.log());
    }
}

/// Issue 11, item 16: when the shutdown deadline passed with requests in flight, the router
/// exited without counting them — their records were lost silently (and a late batch could
/// be counted twice). Now every request is in a sealed shard or counted once in
/// `records_failed`, and the last log line says so.
#[test]
fn a_shutdown_past_its_deadline_counts_every_record_once() {
    let mock = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(
        &format!(
            "version: v1\nendpoints:\n  - id: up\n    type: vllm\n    url: http://{}/v1\n    transport: privatelink\n    models: [m]\nrules:\n  - default:\n      route_to: up\n",
            mock.addr
        ),
        &table,
        1,
    );
    let data = dir.path().join("data");
    let mut r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--cores",
        "2",
        "--shutdown-timeout-ms",
        "800",
    ]);
    for i in 0..20 {
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &[("X-Request-Id", &format!("done-{i}"))],
            &chat_body("m", false),
        );
        assert_eq!(resp.status, 200);
    }
    let addr = r.addr;
    let slow: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                c.send(&request(
                    "POST",
                    "/v1/chat/completions",
                    &[("x-mock-latency-ms", "20000")],
                    &chat_body("m", false),
                ));
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_response()));
            })
        })
        .collect();
    // All three are waiting on the upstream before the stop signal.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while mock_requests(&mock).len() < 23 {
        assert!(
            std::time::Instant::now() < until,
            "slow requests never reached the mock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal(15);
    assert!(
        r.wait_exit(Duration::from_secs(15)).is_some(),
        "router did not exit\n{}",
        r.log()
    );
    for t in slow {
        let _ = t.join();
    }
    let log = r.log();
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("audit shards sealed"))
        .unwrap_or_else(|| panic!("no final audit line:\n{log}"));
    let line: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(line["records"], 20, "{line}");
    assert_eq!(line["failed"], 3, "the three cut off by the exit: {line}");
    let rows = duckdb_rows(&data.join("audit"))["rows"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rows, 20);
}

/// Which local S3-compatible server a shipping test runs against.
#[derive(Clone, Copy, Debug)]
enum Store {
    /// moto's server (PyPI, in memory): the outage is the process stopped (SIGSTOP) and
    /// continued, so uploads hang and time out.
    Moto,
    /// s3s-fs (crates.io, objects are files): the outage is the process killed (SIGKILL) and
    /// started again on the same port and directory.
    S3sFs,
}

/// A local S3-compatible server, killed on drop.
struct S3 {
    store: Store,
    child: std::process::Child,
    port: u16,
    /// s3s-fs's object directory (kept across restarts).
    root: std::path::PathBuf,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> std::path::PathBuf {
    let path = std::env::var_os("SWITCHYARD_S3S_FS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/s3s-fs"),
        std::path::PathBuf::from,
    );
    assert!(
        path.exists(),
        "the s3s-fs S3 server is missing at {}: run `cargo install --locked --root target/tools --version 0.14.1 --features binary s3s-fs` (tools/test-all does) or set SWITCHYARD_S3S_FS",
        path.display()
    );
    path
}

impl S3 {
    fn start(store: Store, port: u16, root: &std::path::Path) -> Self {
        let child = Self::spawn(store, port, root);
        Self {
            store,
            child,
            port,
            root: root.to_owned(),
        }
    }

    fn spawn(store: Store, port: u16, root: &std::path::Path) -> std::process::Child {
        let mut cmd = match store {
            Store::Moto => {
                let probe = Command::new("python3")
                    .args(["-c", "import moto.server, boto3"])
                    .output();
                assert!(
                    probe.is_ok_and(|out| out.status.success()),
                    "the `moto[server]` Python package is missing: run `python3 -m pip install -r tools/sdk/requirements.txt` (tools/test-all does)"
                );
                let mut cmd = Command::new("python3");
                cmd.args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
                cmd
            }
            Store::S3sFs => {
                std::fs::create_dir_all(root).unwrap();
                let mut cmd = Command::new(s3s_fs_binary());
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", "test", "--secret-key", "test"])
                    .arg(root);
                cmd
            }
        };
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{store:?} exited at start"
            );
            assert!(std::time::Instant::now() < until, "{store:?} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(self.child.id().to_string())
                .status()
                .unwrap()
                .success()
        );
    }

    /// Takes the store away; `outage_end` brings it back.
    fn outage_start(&mut self) {
        match self.store {
            Store::Moto => self.signal("STOP"),
            Store::S3sFs => {
                self.child.kill().unwrap();
                self.child.wait().unwrap();
            }
        }
    }

    fn outage_end(&mut self) {
        match self.store {
            Store::Moto => self.signal("CONT"),
            Store::S3sFs => self.child = Self::spawn(self.store, self.port, &self.root),
        }
    }

    fn tool(&self, args: &[&str]) -> String {
        common::moto::s3_tool(&self.endpoint(), args)
    }

    fn create_bucket(&self, bucket: &str) {
        self.tool(&["mb", bucket]);
    }

    fn keys(&self, bucket: &str) -> Vec<String> {
        self.tool(&["ls", bucket])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn parquet_files(dir: &std::path::Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    walk(dir)
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && !p.rsplit('/').next().unwrap().starts_with('.'))
        .collect()
}

#[test]
fn shards_ship_to_moto_once_each_through_a_hung_store() {
    shipping(Store::Moto);
}

#[test]
fn shards_ship_once_each_through_a_store_killed_and_restarted() {
    shipping(Store::S3sFs);
}

/// The store is down when the router starts, comes up, goes away mid-run (hung or killed and
/// restarted, per `store`) and comes back; in the end every shard is in its bucket exactly
/// once and none is left on disk.
fn shipping(store: Store) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit = data.join("audit");
    let endpoint = format!("http://127.0.0.1:{port}");
    // Tenant `acme` has its own audit bucket; everyone else goes to the sink.
    let table = dir.path().join("t.swt");
    compile(
        "version: v1\nendpoints:\n  - id: local\n    type: mock\n    models: [m]\ntenants:\n  - id: acme\n    audit_bucket: s3://acme-audit/logs\n  - id: demo\nrules:\n  - default:\n      route_to: local\n",
        &table,
        1,
    );
    // The store is down when the router starts: shards wait on disk.
    let mut r = router_env(
        &[
            "--table",
            table.to_str().unwrap(),
            "--cores",
            "2",
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-sink",
            "s3://audit-bucket/switchyard",
            "--audit-local-retention-s",
            "0",
            "--audit-max-shard-age-s",
            "1",
            "--audit-upload-timeout-ms",
            "1000",
            // The buckets are created just after the store comes up: an upload in between
            // finds them missing and holds its destination for this long.
            "--audit-ship-hold-retry-s",
            "1",
        ],
        &[
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let mut sent = std::collections::BTreeSet::new();
    let mut send = |phase: &str, n: usize| {
        for i in 0..n {
            let id = format!("ship-{phase}-{i}");
            let tenant = if i % 2 == 0 { "demo" } else { "acme" };
            let resp = call(
                r.addr,
                "POST",
                "/v1/chat/completions",
                &[("X-Request-Id", &id), ("X-Tenant", tenant)],
                &chat_body("auto", i % 3 == 0),
            );
            assert_eq!(resp.status, 200);
            sent.insert(id);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send("down", 60);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !parquet_files(&audit).is_empty(),
        "shards wait on disk while the store is down"
    );

    let mut s3 = S3::start(store, port, &dir.path().join("store"));
    s3.create_bucket("audit-bucket");
    s3.create_bucket("acme-audit");
    send("up", 40);
    // Wait for some shards to land, so the outage comes between uploads.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while s3.keys("audit-bucket").is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "nothing shipped\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Gone mid-run: uploads fail or time out and are retried.
    s3.outage_start();
    send("outage", 60);
    std::thread::sleep(Duration::from_millis(1500));
    s3.outage_end();
    send("back", 40);

    let until = std::time::Instant::now() + Duration::from_secs(90);
    while !parquet_files(&audit).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "shards not shipped: {:?}\n{}",
            parquet_files(&audit),
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    r.signal(15);
    assert!(
        r.wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    assert!(
        parquet_files(&audit).is_empty(),
        "shards left locally: {:?}",
        parquet_files(&audit)
    );
    assert!(
        r.log().contains("upload failed"),
        "the outage was seen: {}",
        r.log()
    );

    // Every shard is in its bucket once (acme's in its own audit_bucket): download them
    // all and count records.
    let keys = s3.keys("audit-bucket");
    let acme_keys = s3.keys("acme-audit");
    assert!(
        keys.len() >= 2 && acme_keys.len() >= 2,
        "{keys:?} {acme_keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with("switchyard/tenant=demo/")),
        "{keys:?}"
    );
    assert!(
        acme_keys.iter().all(|k| k.starts_with("logs/tenant=acme/")),
        "{acme_keys:?}"
    );
    let mirror = dir.path().join("mirror");
    for (bucket, prefix, n) in [
        ("audit-bucket", "switchyard/", keys.len()),
        ("acme-audit", "logs/", acme_keys.len()),
    ] {
        let got = s3.tool(&["mirror", bucket, prefix, mirror.to_str().unwrap()]);
        assert_eq!(got.trim(), n.to_string());
    }
    let out = duckdb_rows(&mirror);
    let ids: Vec<String> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["request_id"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a record was shipped twice");
    assert_eq!(unique, sent, "every record shipped exactly once");
}

/// Issue 11, item 3: a failed upload went back to the front of one queue and was retried
/// forever, so one tenant's missing `audit_bucket` stopped shipping for every tenant while
/// the disk filled. Now each destination has its own queue; a permanent error (no such
/// bucket) holds that destination only, counted and logged; a shard's destination is the one
/// recorded when it was sealed.
#[test]
fn a_missing_tenant_bucket_does_not_hold_back_other_tenants() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(Store::Moto, port, &dir.path().join("store"));
    s3.create_bucket("sink");
    s3.create_bucket("good-audit");
    let table = dir.path().join("t.swt");
    let policy = |bad_bucket: &str| {
        format!(
            "version: v1\nendpoints:\n  - id: local\n    type: mock\n    models: [m]\ntenants:\n  - id: bad\n    audit_bucket: {bad_bucket}\n  - id: good\n    audit_bucket: s3://good-audit\nrules:\n  - default:\n      route_to: local\n"
        )
    };
    compile(&policy("s3://no-such-bucket"), &table, 1);
    let data = dir.path().join("data");
    let r = router_env(
        &[
            "--table",
            table.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-sink",
            "s3://sink",
            "--audit-local-retention-s",
            "0",
            "--audit-max-shard-age-s",
            "1",
            "--audit-upload-timeout-ms",
            "2000",
        ],
        &[
            ("AWS_ENDPOINT_URL", &s3.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let send = |tenant: &str, n: usize| {
        for _ in 0..n {
            let resp = chat(r.addr, "auto", &[("X-Tenant", tenant)]);
            assert_eq!(resp.status, 200);
        }
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < until, "{what}\n{}", r.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The bad tenant's shard is sealed and fails first, so on a single queue it would stand
    // in front of everything after it.
    send("bad", 3);
    wait("the bad tenant's upload was not tried", &|| {
        r.log().contains("no-such-bucket")
    });
    // Its bucket is fixed in the policy now; the shard already sealed keeps the destination
    // recorded when it was sealed (it is not silently sent elsewhere).
    compile(&policy("s3://good-audit/moved"), &table, 2);
    send("good", 3);
    send("nobody", 3);
    wait("other tenants' shards did not ship", &|| {
        !s3.keys("good-audit").is_empty() && !s3.keys("sink").is_empty()
    });
    assert!(
        s3.keys("good-audit")
            .iter()
            .all(|k| k.starts_with("tenant=good/")),
        "{:?}",
        s3.keys("good-audit")
    );
    let held_metric = || {
        let m = call(r.addr, "GET", "/metrics", &[], b"").text();
        m.lines()
            .find_map(|l| l.strip_prefix("switchyard_audit_shards_held "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait("the held destination is not counted", &|| {
        held_metric() >= 1
    });
    assert!(r.log().contains("is held"), "{}", r.log());
    let local: Vec<String> = parquet_files(&data.join("audit"));
    assert!(
        !local.is_empty() && local.iter().all(|p| p.contains("tenant=bad")),
        "only the bad tenant's shard waits on disk: {local:?}"
    );
}

/// A request the audit API test sent: id, tenant, data class, when it was answered.
type Sent = (String, &'static str, Option<&'static str>, i64);

/// `GET /v1/audit` over the admin listener: each filter, `limit`, newest first, sealed
/// shards and not-yet-sealed logs together, and a 400 naming each bad parameter.
#[test]
fn the_audit_api_filters_limits_and_names_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.swt");
    compile(
        "version: v1\nendpoints:\n  - id: fast\n    type: mock\n    models: [m-fast]\n  - id: gpu\n    type: mock\n    models: [m-gpu]\n    transport: privatelink\ntenants:\n  - id: acme\n  - id: beta\ndata_classes:\n  - id: pii\n    stays_private: true\nrules:\n  - name: pii\n    match:\n      data_class: pii\n    route_to: gpu\n  - default:\n      route_to: fast\n",
        &table,
        1,
    );
    let data = dir.path().join("data");
    let r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--cores",
        "2",
        "--audit-max-shard-age-s",
        "1",
    ]);
    // (tenant, data class) per request, in sending order; a pause in the middle so the
    // first half is sealed into shards and the time window has an edge.
    let mut sent: Vec<Sent> = Vec::new();
    let mut mid = 0;
    for i in 0..30 {
        if i == 15 {
            std::thread::sleep(Duration::from_millis(2500));
            mid = now_ms();
            std::thread::sleep(Duration::from_millis(20));
        }
        let tenant = if i % 3 == 0 { "beta" } else { "acme" };
        let class = (i % 4 == 0).then_some("pii");
        let id = format!("q-{i:02}");
        let mut headers = vec![("X-Tenant", tenant), ("X-Request-Id", id.as_str())];
        if let Some(c) = class {
            headers.push(("X-Data-Class", c));
        }
        // Budgets on a fifth, read back from sealed shards and open logs alike.
        if i % 5 == 0 {
            headers.push(("X-Latency-Budget-Ms", "900"));
            headers.push(("X-Cost-Budget-Usd", "5"));
        }
        let resp = call(
            r.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            &chat_body("auto", false),
        );
        assert_eq!(resp.status, 200);
        sent.push((id, tenant, class, now_ms()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let query = |q: &str| -> Vec<serde_json::Value> {
        let resp = admin(&r, "GET", &format!("/v1/audit{q}"), b"");
        assert_eq!(resp.status, 200, "{q}: {}", resp.text());
        resp.json()["data"].as_array().unwrap().clone()
    };
    let ids = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .map(|row| row["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Everything arrives (records reach the writer within the batching interval).
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while query("?limit=1000").len() < sent.len() {
        assert!(std::time::Instant::now() < until, "records missing");
        std::thread::sleep(Duration::from_millis(100));
    }
    let newest_first: Vec<String> = sent.iter().rev().map(|s| s.0.clone()).collect();
    let all = query("?limit=1000");
    assert_eq!(ids(&all), newest_first, "newest first, each once");
    assert!(
        walk(&data.join("audit"))
            .iter()
            .any(|p| p.ends_with(".parquet")),
        "the first half is in sealed shards"
    );
    // Default limit 100 covers 30; `limit` cuts the newest n.
    assert_eq!(query("").len(), 30);
    assert_eq!(ids(&query("?limit=5")), newest_first[..5]);
    let expect = |f: &dyn Fn(&Sent) -> bool| -> Vec<String> {
        sent.iter()
            .rev()
            .filter(|s| f(s))
            .map(|s| s.0.clone())
            .collect()
    };
    assert_eq!(
        ids(&query("?tenant=beta&limit=1000")),
        expect(&|s| s.1 == "beta")
    );
    assert_eq!(
        ids(&query("?data_class=pii&limit=1000")),
        expect(&|s| s.2 == Some("pii"))
    );
    assert_eq!(
        ids(&query("?endpoint=gpu&limit=1000")),
        expect(&|s| s.2 == Some("pii"))
    );
    assert_eq!(
        ids(&query("?endpoint=fast&tenant=acme&limit=1000")),
        expect(&|s| s.2.is_none() && s.1 == "acme")
    );
    let from = iso(mid);
    assert_eq!(
        ids(&query(&format!("?from={from}&limit=1000"))),
        newest_first[..15]
    );
    assert_eq!(
        ids(&query(&format!("?to={from}&limit=1000"))),
        newest_first[15..]
    );
    assert!(query("?tenant=nobody").is_empty());
    for row in &all {
        assert!(row["ts"].as_str().unwrap().ends_with('Z'), "{row}");
        assert_eq!(row["status"], 200);
        assert_eq!(row["requested_model"], "auto", "{row}");
        assert_eq!(row["policy_revision"], 1, "{row}");
        let n: u32 = row["request_id"].as_str().unwrap()[2..].parse().unwrap();
        if n.is_multiple_of(5) {
            assert_eq!(row["latency_budget_ms"], 900, "{row}");
            assert_eq!(row["cost_budget_usd"], "5", "{row}");
            assert!(row["cost_cap_per_1k"].is_string(), "{row}");
        } else {
            assert!(row["latency_budget_ms"].is_null(), "{row}");
            assert!(row["cost_budget_usd"].is_null(), "{row}");
            assert!(row["cost_cap_per_1k"].is_null(), "{row}");
        }
        assert!(
            row["rule_name"].is_string() && row["model"].is_string(),
            "{row}"
        );
    }

    // Bad parameters: 400 naming the parameter.
    for (q, named) in [
        ("?limit=1001", "`limit`"),
        ("?limit=0", "`limit`"),
        ("?limit=ten", "`limit`"),
        ("?from=yesterday", "`from`"),
        ("?to=2026-13-01", "`to`"),
        (
            "?from=2026-11-22T10:00:00Z&to=2026-11-22T09:00:00Z",
            "`from` is after `to`",
        ),
        ("?tenant=a&tenant=b", "`tenant`"),
        ("?colour=red", "`colour`"),
    ] {
        let resp = admin(&r, "GET", &format!("/v1/audit{q}"), b"");
        assert_eq!(resp.status, 400, "{q}: {}", resp.text());
        assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
        assert!(resp.text().contains(named), "{q}: {}", resp.text());
    }
    // Behind the admin key.
    let anon = call(r.admin.unwrap(), "GET", "/v1/audit", &[], b"");
    assert_eq!(anon.status, 401);
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// `2026-11-22T10:00:00.123Z` for ms since the epoch (via `date`, not our own formatter).
fn iso(ms: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}.{:03}", ms / 1000, ms % 1000)])
        .arg("+%Y-%m-%dT%H:%M:%S.%3NZ")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The shard schema before the Anthropic dialect added `api`, `upstream_model`, the cache
/// counts and `stop_reason`.
const SCHEMA_BEFORE_DIALECTS: &str = "
message audit {
  REQUIRED INT64 ts (TIMESTAMP(MILLIS,true));
  REQUIRED BYTE_ARRAY request_id (STRING);
  OPTIONAL BYTE_ARRAY tenant (STRING);
  OPTIONAL BYTE_ARRAY data_class (STRING);
  OPTIONAL BYTE_ARRAY user_role (STRING);
  OPTIONAL INT32 rule_index;
  OPTIONAL BYTE_ARRAY rule_name (STRING);
  OPTIONAL BYTE_ARRAY endpoint_id (STRING);
  OPTIONAL BYTE_ARRAY model (STRING);
  REQUIRED INT32 status;
  REQUIRED INT64 latency_ms;
  OPTIONAL INT64 upstream_latency_ms;
  OPTIONAL INT64 tokens_in;
  OPTIONAL INT64 tokens_out;
  REQUIRED BOOLEAN tokens_estimated;
  OPTIONAL INT64 cost_usd (DECIMAL(18,6));
  REQUIRED BOOLEAN stream;
  OPTIONAL BYTE_ARRAY error (STRING);
  REQUIRED INT64 request_bytes;
  REQUIRED INT64 response_bytes;
  OPTIONAL INT32 upstream_status;
  OPTIONAL BYTE_ARRAY fallback_from (STRING);
  OPTIONAL BYTE_ARRAY tenant_claimed (STRING);
  OPTIONAL BYTE_ARRAY key_id (STRING);
}
";

/// Writes a one-row shard in the schema above, as a router from before the dialects did.
fn write_old_shard(path: &std::path::Path, ts_ms: i64, request_id: &str) {
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let schema = std::sync::Arc::new(
        parquet::schema::parser::parse_message_type(SCHEMA_BEFORE_DIALECTS).unwrap(),
    );
    let props = std::sync::Arc::new(parquet::file::properties::WriterProperties::builder().build());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut i = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        let present: &[i16] = &[1];
        let text = |s: &str| vec![ByteArray::from(s)];
        match i {
            0 => col.typed::<Int64Type>().write_batch(&[ts_ms], None, None),
            1 => col
                .typed::<ByteArrayType>()
                .write_batch(&text(request_id), None, None),
            2 => col
                .typed::<ByteArrayType>()
                .write_batch(&text("acme"), Some(present), None),
            7 => col
                .typed::<ByteArrayType>()
                .write_batch(&text("gpu-old"), Some(present), None),
            8 => col
                .typed::<ByteArrayType>()
                .write_batch(&text("llama-old"), Some(present), None),
            9 => col.typed::<Int32Type>().write_batch(&[200], None, None),
            10 | 18 | 19 => col.typed::<Int64Type>().write_batch(&[5], None, None),
            12 | 13 => col
                .typed::<Int64Type>()
                .write_batch(&[11], Some(present), None),
            14 | 16 => col.typed::<BoolType>().write_batch(&[false], None, None),
            5 | 20 => col.typed::<Int32Type>().write_batch(&[], Some(&[0]), None),
            11 | 15 => col.typed::<Int64Type>().write_batch(&[], Some(&[0]), None),
            _ => col
                .typed::<ByteArrayType>()
                .write_batch(&[], Some(&[0]), None),
        }
        .unwrap();
        col.close().unwrap();
        i += 1;
    }
    rg.close().unwrap();
    w.close().unwrap();
}

/// Shards written before the dialect columns existed are read beside new ones: by the
/// router's own `/v1/audit`, by DuckDB (`union_by_name`, as `tools/audit` reads them) and by
/// the example queries, the missing columns NULL.
#[test]
fn shards_from_before_the_dialect_columns_are_read_beside_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = data
        .join("audit/tenant=acme/dt=2026-11-01/hour=10")
        .join("part-old-router-000001.parquet");
    write_old_shard(&old, 1_793_530_800_000, "from-before");
    let (_t, table) = compiled(
        "version: v1\nendpoints:\n  - id: fast\n    type: mock\n    models: [m-fast]\ntenants:\n  - id: acme\nrules:\n  - default:\n      route_to: fast\n",
    );
    let mut r = router(&[
        "--table",
        table.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let resp = call(
        r.addr,
        "POST",
        "/v1/messages",
        &[("X-Tenant", "acme"), ("X-Request-Id", "from-now")],
        br#"{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let got = admin(&r, "GET", "/v1/audit?limit=100", b"");
        assert_eq!(got.status, 200, "{}", got.text());
        let rows = got.json()["data"].as_array().unwrap().clone();
        if rows.len() == 2 {
            break rows;
        }
        assert!(std::time::Instant::now() < until, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let by_id = |rows: &[serde_json::Value], id: &str| {
        rows.iter()
            .find(|row| row["request_id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
            .clone()
    };
    assert_eq!(by_id(&rows, "from-now")["api"], "messages");
    assert_eq!(by_id(&rows, "from-now")["stop_reason"], "end_turn");
    let before = by_id(&rows, "from-before");
    assert_eq!(before["model"], "llama-old");
    assert!(
        before["api"].is_null() && before["stop_reason"].is_null(),
        "{before}"
    );

    r.signal(15);
    assert!(r.wait_exit(Duration::from_secs(10)).is_some());
    let dump = duckdb_rows(&data.join("audit"));
    let rows = dump["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{dump}");
    let now = by_id(rows, "from-now");
    assert_eq!(now["api"], "messages");
    assert_eq!(now["upstream_model"], "m-fast");
    assert_eq!(now["cache_read_tokens"], 0);
    let before = by_id(rows, "from-before");
    assert_eq!(before["tokens_in"], 11);
    assert!(
        before["api"].is_null() && before["cache_read_tokens"].is_null(),
        "{before}"
    );
    let queries = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/audit/queries.py");
    let out = Command::new("python3")
        .arg(queries)
        .arg(data.join("audit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the example queries failed on old and new shards: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stop_reason"), "{text}");
}
