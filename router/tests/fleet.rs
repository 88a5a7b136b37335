//! A fleet of three routers sharing one real `redis-server` (Debian's, started here on a free
//! port): tenant rate limits and daily budgets hold across the hosts, survive a host's restart,
//! and when Redis is killed or stopped the routers keep serving with per-host limits and say so
//! on `/metrics`, then resume leasing when it is back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, call, compiled, free_listen, router};

/// A `redis-server` on a free port, without persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): tools/test-all installs it (apt-get install redis-server)")
            });
        let r = Self { child, port };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn start() -> Self {
        let port: u16 = free_listen().rsplit(':').next().unwrap().parse().unwrap();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POLICY: &str = "version: v1
endpoints:
  - id: m
    type: mock
    models: [m1]
    pricing: { input_per_1k: 1.0, output_per_1k: 1.0 }
tenants:
  - id: rpm
    rate_limit_rpm: 60
  - id: daily
    daily_token_budget: 1500
  - id: free
  - id: big
    rate_limit_rpm: 6000000
  - id: big2
    rate_limit_rpm: 6000000
  - id: big3
    rate_limit_rpm: 6000000
rules:
  - default:
      route_to: m
";

fn fleet_router(table: &str, redis: &str, node: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--table",
        table,
        "--redis",
        redis,
        "--node-id",
        node,
        "--cores",
        "1",
    ];
    args.extend_from_slice(extra);
    let r = router(&args);
    wait_metric(&r, "switchyard_limits_store_up", 1);
    r
}

fn chat(r: &Proc, tenant: &str) -> u16 {
    call(
        r.addr,
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", tenant)],
        br#"{"model": "m1", "messages": [{"role": "user", "content": "say something about the fleet"}]}"#,
    )
    .status
}

fn metric(r: &Proc, name: &str) -> Option<u64> {
    let text = call(r.addr, "GET", "/metrics", &[], b"").text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_metric(r: &Proc, name: &str, want: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    while metric(r, name) != Some(want) {
        assert!(
            Instant::now() < until,
            "{name} never became {want} (is {:?}): {}",
            metric(r, name),
            r.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` requests of `tenant`, spread over `routers` from one thread per router; the 200s.
fn spread(routers: &[&Proc], tenant: &str, n: usize) -> usize {
    std::thread::scope(|s| {
        let handles: Vec<_> = routers
            .iter()
            .map(|r| {
                s.spawn(move || {
                    (0..n / routers.len())
                        .filter(|_| chat(r, tenant) == 200)
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn a_rate_limit_holds_across_three_hosts() {
    let redis = Redis::start();
    let (_dir, table) = compiled(POLICY);
    let table = table.to_str().unwrap();
    let hosts: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| fleet_router(table, &redis.url(), n, &[]))
        .collect();
    let refs: Vec<&Proc> = hosts.iter().collect();
    wait_metric(&hosts[0], "switchyard_limits_hosts", 3);
    // 60 a minute: a minute's worth at once, then one a second. 240 requests over three
    // hosts (each host alone would admit 60: 180 without the fleet).
    let started = Instant::now();
    let ok = spread(&refs, "rpm", 240);
    let secs = usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!(
        (55..=60 + 3 + secs).contains(&ok),
        "{ok} admitted in {secs} s (limit 60 a minute across the fleet)"
    );
    // The tenant without limits is not touched; Redis holds one GCRA per limit.
    assert_eq!(spread(&refs, "free", 30), 30);
    assert!(!redis.cli(&["GET", "switchyard:{t:rpm}:rpm"]).is_empty());
    // Redis forgets the scripts (as after a restart): the next lease sends them whole and
    // leasing goes on; the store never looked down.
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
    std::thread::sleep(Duration::from_millis(2100));
    let until = Instant::now() + Duration::from_secs(5);
    while chat(&hosts[1], "rpm") != 200 {
        assert!(
            Instant::now() < until,
            "no lease after SCRIPT FLUSH: {}",
            hosts[1].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric(&hosts[1], "switchyard_limits_store_errors_total"),
        Some(0)
    );
}

#[test]
fn a_token_rate_limit_holds_across_two_hosts() {
    // tpm 600; each request costs the mock's ~30 prompt and completion tokens. One host alone
    // admits some N; two hosts sharing Redis admit about as many, not 2 × N.
    let policy = POLICY.replace(
        "  - id: free\n",
        "  - id: free\n  - id: tpm\n    rate_limit_tpm: 600\n",
    );
    let (_dir, table) = compiled(&policy);
    let table = table.to_str().unwrap();
    let alone = router(&["--table", table, "--cores", "1"]);
    let single = spread(&[&alone], "tpm", 60);
    assert!((5..60).contains(&single), "one host admitted {single}");
    let redis = Redis::start();
    let a = fleet_router(table, &redis.url(), "a", &[]);
    let b = fleet_router(table, &redis.url(), "b", &[]);
    let fleet = spread(&[&a, &b], "tpm", 120);
    eprintln!("tpm: one host {single}, two hosts {fleet}");
    assert!(
        fleet >= single / 2 && fleet <= single + single / 4 + 2,
        "two hosts admitted {fleet}; one host alone {single}"
    );
}

#[test]
fn daily_budgets_add_up_across_hosts_and_a_restart() {
    let redis = Redis::start();
    let (_dir, table) = compiled(POLICY);
    let table = table.to_str().unwrap();
    let a = fleet_router(table, &redis.url(), "a", &[]);
    let b = fleet_router(table, &redis.url(), "b", &[]);
    // Spend on host a until refused there.
    let mut spent_a = 0;
    while chat(&a, "daily") == 200 {
        spent_a += 1;
        assert!(spent_a < 200, "the budget never ran out");
    }
    assert!(spent_a >= 2, "{spent_a}");
    // Within two pushes, host b knows the fleet's day is spent.
    let until = Instant::now() + Duration::from_secs(5);
    while chat(&b, "daily") == 200 {
        assert!(
            Instant::now() < until,
            "host b kept admitting a spent tenant"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let total: u64 = fleet_tokens(&redis).parse().unwrap();
    assert!(total >= 1500, "fleet total {total}");
    // Host a restarts (same node id, fresh process): it takes its total back from Redis, so
    // it does not start the day again at zero — and the fleet total does not double.
    drop(a);
    let a = fleet_router(table, &redis.url(), "a", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(chat(&a, "daily"), 429);
    let again: u64 = fleet_tokens(&redis).parse().unwrap();
    assert_eq!(again, total, "a restart must not count the day twice");
    // Redis loses everything (FLUSHALL): every host asserts its own total again, so the
    // fleet total comes back to the same figure, not double.
    redis.cli(&["FLUSHALL"]);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let now = fleet_tokens(&redis);
        if now == total.to_string() {
            break;
        }
        assert!(
            Instant::now() < until,
            "fleet total after FLUSHALL is `{now}`, expected {total}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fleet's token total for today of tenant `daily`, as Redis holds it.
fn fleet_tokens(redis: &Redis) -> String {
    redis.cli(&[
        "HGET",
        "switchyard:{t:daily}:day",
        &format!("{}:tok", day()),
    ])
}

/// Days since the epoch (UTC), as the budgets' fields name them.
fn day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
}

#[test]
fn without_redis_the_fleet_keeps_serving_with_per_host_limits() {
    let mut redis = Redis::start();
    let (_dir, table) = compiled(POLICY);
    let table = table.to_str().unwrap();
    let a = fleet_router(table, &redis.url(), "a", &[]);
    let b = fleet_router(
        table,
        &redis.url(),
        "b",
        &["--limits-on-store-down", "closed"],
    );
    assert_eq!(chat(&a, "rpm"), 200);
    // SIGSTOP: Redis hangs (timeouts, not refusals).
    redis.signal("-STOP");
    wait_metric(&a, "switchyard_limits_store_up", 0);
    let started = Instant::now();
    assert_eq!(chat(&a, "free"), 200);
    let mut ok = 0;
    for _ in 0..20 {
        ok += usize::from(chat(&a, "rpm") == 200);
    }
    assert_eq!(
        ok, 20,
        "local mode keeps admitting within the host's own limit"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited on a hung Redis: {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&a, "switchyard_limits_mode{mode=\"local\"}"),
        Some(1)
    );
    // `closed`: limited tenants get 503 while the store is away; others are served.
    wait_metric(&b, "switchyard_limits_store_up", 0);
    let resp = call(
        b.addr,
        "POST",
        "/v1/chat/completions",
        &[("X-Tenant", "rpm")],
        br#"{"model": "m1", "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "limits_unavailable");
    assert_eq!(chat(&b, "free"), 200);
    assert!(
        a.log().contains("the limits store is unreachable"),
        "{}",
        a.log()
    );
    // SIGCONT: leasing resumes.
    redis.signal("-CONT");
    wait_metric(&a, "switchyard_limits_store_up", 1);
    wait_metric(&b, "switchyard_limits_store_up", 1);
    assert_eq!(chat(&b, "rpm"), 200);
    // SIGKILL, then a new server on the same port: the same again.
    let port = redis.port;
    redis.signal("-KILL");
    let _ = redis.child.wait();
    wait_metric(&a, "switchyard_limits_store_up", 0);
    assert_eq!(chat(&a, "rpm"), 200);
    redis = Redis::start_on(port);
    wait_metric(&a, "switchyard_limits_store_up", 1);
    assert_eq!(chat(&a, "rpm"), 200);
    assert!(
        a.log().contains("tenant limits hold fleet-wide"),
        "{}",
        a.log()
    );
    drop(redis);
    // The audit trail says how each request's limits were enforced: with the fleet, or by
    // this host alone while Redis was away; tenants without limits have none.
    let modes = |tenant: &str| -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/v1/audit?tenant={tenant}&limit=1000");
            let resp = common::admin(&a, "GET", &path, b"");
            assert_eq!(resp.status, 200, "{}", resp.text());
            let rows = resp.json()["data"].as_array().unwrap().clone();
            if !rows.is_empty() || Instant::now() > until {
                return rows
                    .iter()
                    .map(|r| r["limit_mode"].as_str().unwrap_or("null").to_owned())
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let rpm = modes("rpm");
    assert!(rpm.iter().any(|m| m == "fleet"), "{rpm:?}");
    assert!(rpm.iter().any(|m| m == "local"), "{rpm:?}");
    assert!(rpm.iter().all(|m| m == "fleet" || m == "local"), "{rpm:?}");
    let free = modes("free");
    assert!(
        !free.is_empty() && free.iter().all(|m| m == "null"),
        "{free:?}"
    );
}

#[test]
fn fleet_flags_are_checked_at_start() {
    for (args, says) in [
        (&["--redis", "http://x"][..], "redis"),
        (&["--redis", "redis://h:port"][..], "port"),
        (
            &[
                "--redis",
                "redis://127.0.0.1:1",
                "--limits-on-store-down",
                "maybe",
            ][..],
            "limits-on-store-down",
        ),
        (
            &[
                "--redis",
                "redis://127.0.0.1:1",
                "--limits-acquire-timeout-ms",
                "0",
            ][..],
            "limits-acquire-timeout-ms",
        ),
    ] {
        let mut all = vec!["--no-auth"];
        all.extend_from_slice(args);
        let err = common::refused_at_start(&all);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_rate_limit_learned_on_one_host_cools_the_endpoint_on_the_others() {
    let redis = Redis::start();
    let limited = common::mock(&["--status", "429", "--retry-after", "30"]);
    let spare = common::mock(&[]);
    let (_dir, table) = compiled(&format!(
        "version: v1\nendpoints:\n  - id: limited\n    type: vllm\n    url: http://{}/v1\n    models: [m1]\n  - id: spare\n    type: vllm\n    url: http://{}/v1\n    models: [m1]\nrules:\n  - default:\n      route_to: limited\n      fallback: [spare]\n",
        limited.addr, spare.addr
    ));
    let table = table.to_str().unwrap();
    let a = fleet_router(table, &redis.url(), "a", &[]);
    let b = fleet_router(table, &redis.url(), "b", &[]);
    assert_eq!(chat(&a, "anyone"), 200);
    assert_eq!(common::mock_requests(&limited).len(), 1);
    // Host b learns the cooldown from Redis without sending `limited` anything.
    let until = Instant::now() + Duration::from_secs(5);
    while common::endpoint_health(&b, "limited")["breaker"]["cooling_until"].is_null() {
        assert!(
            Instant::now() < until,
            "host b never learned the cooldown: {}",
            common::endpoint_health(&b, "limited")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        assert_eq!(chat(&b, "anyone"), 200);
    }
    assert_eq!(
        common::mock_requests(&limited).len(),
        1,
        "host b sent requests to an endpoint the fleet knew was rate limited"
    );
    assert_eq!(common::mock_requests(&spare).len(), 4);
}

#[test]
fn in_share_mode_each_host_takes_its_part_of_the_limit_while_redis_is_away() {
    let redis = Redis::start();
    let (_dir, table) = compiled(POLICY);
    let table = table.to_str().unwrap();
    let share = ["--limits-on-store-down", "share"];
    let hosts: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| fleet_router(table, &redis.url(), n, &share))
        .collect();
    for h in &hosts {
        wait_metric(h, "switchyard_limits_hosts", 3);
    }
    // Redis hangs: each host now enforces 60 ÷ 3 = 20 a minute on its own, so the fleet
    // still admits about one limit's worth, not three.
    redis.signal("-STOP");
    for h in &hosts {
        wait_metric(h, "switchyard_limits_store_up", 0);
        assert_eq!(metric(h, "switchyard_limits_mode{mode=\"share\"}"), Some(1));
    }
    let admitted: Vec<usize> = hosts
        .iter()
        .map(|h| (0..40).filter(|_| chat(h, "rpm") == 200).count())
        .collect();
    for (h, n) in hosts.iter().zip(&admitted) {
        assert!((19..=21).contains(n), "{admitted:?}\n{}", h.log());
    }
    // A tenant without limits is not touched.
    assert_eq!(spread(&hosts.iter().collect::<Vec<_>>(), "free", 30), 30);
    redis.signal("-CONT");
}

#[test]
fn a_burst_far_under_the_limit_is_never_refused_while_the_share_warms_up() {
    // A fresh host has no share yet and no rate to size one by: the first requests all wait
    // on the coordinator at once. Each must get its part of the grant (or ask again), never a
    // 429 for a tenant using a millionth of its limit.
    let redis = Redis::start();
    let (_dir, table) = compiled(POLICY);
    let r = fleet_router(table.to_str().unwrap(), &redis.url(), "a", &[]);
    // Connections opened first, so the requests leave together (as a load balancer's do).
    for tenant in ["big", "big2", "big3"] {
        let barrier = std::sync::Barrier::new(64);
        let request = common::request(
            "POST",
            "/v1/chat/completions",
            &[("X-Tenant", tenant), ("Content-Type", "application/json")],
            br#"{"model": "m1", "messages": [{"role": "user", "content": "hi"}]}"#,
        );
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    s.spawn(|| {
                        let mut conn = common::Conn::open(r.addr);
                        barrier.wait();
                        (0..3)
                            .map(|_| {
                                conn.send(&request);
                                conn.read_response().map_or(0, |resp| resp.status)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let refused = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(refused, 0, "tenant {tenant}: {statuses:?}");
    }
}
