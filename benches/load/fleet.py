#!/usr/bin/env python3
"""Fleet limits under load: what `--redis` costs, how often it talks to Redis, how long
requests wait for a share, and how closely a fleet holds a limit under steady overload.

    benches/load/fleet.py [--duration 10] [--rounds 6] [--connections 64] [--no-locked]

Needs wrk, redis-server, taskset (installed from Debian when missing, as root). Builds the
release binaries, then:

  1. cost: one router (one core, CPU 1) with a tenant whose `rate_limit_rpm` is far above the
     load, with and without `--redis`, alternating rounds (wrk and the mock upstream on CPU 0);
     requests/s of each, Redis commands per second (INFO commandstats: the commands inside
     the Lua scripts count too), the router's lease round trips per second
     (`switchyard_limits_round_trip_seconds_count`), and its lease waits
     (`switchyard_limits_lease_wait_seconds`);
  2. overload: three routers on one Redis sharing a tenant limited to `--limit-rps` requests a
     second (as rpm), each offered more than the whole limit for `--overload-s` seconds;
     admitted requests against what the limit allows (a minute's worth of burst plus the rate
     over the run), and the lease-wait p99 of each host.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the load harness: build, start, wrk)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis(port):
    p = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True).stdout.strip() == "PONG":
            return p
        time.sleep(0.05)
    sys.exit("redis-server did not start")


def redis_calls(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True,
                         text=True, check=True).stdout
    calls = {}
    for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", out):
        calls[m.group(1)] = int(m.group(2))
    return calls


def metrics(addr):
    return urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()


def counter(text, name):
    m = re.search(rf"^{re.escape(name)} (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def wait_hist(text):
    """(count, p50_s, p99_s) of switchyard_limits_lease_wait_seconds (bucket upper bounds)."""
    buckets = []
    for m in re.finditer(r'switchyard_limits_lease_wait_seconds_bucket\{le="([^"]+)"\} (\d+)', text):
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
    total = buckets[-1][1] if buckets else 0

    def q(p):
        if total == 0:
            return None
        for le, c in buckets:
            if c >= p * total:
                return le
        return None

    return total, q(0.5), q(0.99)


def policy(tmp, mock_addr, rpm, policyc):
    path = os.path.join(tmp, f"fleet-{rpm}.yaml")
    with open(path, "w") as f:
        f.write(f"""version: v1
endpoints:
  - id: bench-upstream
    type: vllm
    url: http://{mock_addr}/v1
    transport: privatelink
    models: [bench-model]
tenants:
  - id: bench
    rate_limit_rpm: {rpm}
rules:
  - default:
      route_to: bench-upstream
""")
    table = os.path.join(tmp, f"fleet-{rpm}.swt")
    run.sh(policyc, "compile", path, "-o", table, stdout=subprocess.DEVNULL)
    return table


def router(table, tmp, name, cpu, extra):
    return run.start([os.path.join(run.TARGET, "switchyard"), "--table", table, "--listen", "127.0.0.1:0",
                      "--cores", "1", "--no-auth", "--no-audit", "--log", "warn,switchyard=info",
                      "--data-dir", os.path.join(tmp, name), "--admin-listen", "127.0.0.1:0"] + extra,
                     cpu, r"switchyard listening on http://(\S+?)\"")


def wrk_counts(url, body_file, connections, duration, cpu="0"):
    """wrk allowing non-2xx: (requests, non-2xx)."""
    script = os.path.join(os.path.dirname(body_file), "post-fleet.lua")
    with open(script, "w") as f:
        f.write(f'wrk.method = "POST"\n'
                f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
                f'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["X-Tenant"] = "bench"\n')
    return subprocess.Popen(["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script,
                             url], stdout=subprocess.PIPE, text=True)


def parse_counts(out):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return total, int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--limit-rps", type=int, default=500, help="the overload run's limit, requests a second")
    ap.add_argument("--overload-s", type=int, default=30)
    ap.add_argument("--no-locked", action="store_true")
    args = ap.parse_args()
    run.ensure_tools()
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        run.sh("apt-get", "install", "-y", "-qq", "redis-server")
    run.build(not args.no_locked)
    tmp = tempfile.mkdtemp(prefix="swy-fleet-")
    procs = []
    try:
        mock, mock_addr = run.start([os.path.join(run.TARGET, "mock-upstream"), "--listen", "127.0.0.1:0"], 0,
                                    r"listening on http://(\S+)", stream="stdout")
        procs.append(mock)
        port = free_port()
        procs.append(redis(port))
        url = f"redis://127.0.0.1:{port}"
        policyc = os.path.join(run.TARGET, "policyc")
        body_file = os.path.join(tmp, "body.json")
        with open(body_file, "w") as f:
            f.write(run.body(False))

        # 1. cost
        high = policy(tmp, mock_addr, 1_000_000_000, policyc)
        plain, plain_addr = router(high, tmp, "plain", 1, [])
        fleet, fleet_addr = router(high, tmp, "fleet", 1, ["--redis", url, "--node-id", "bench-a"])
        procs += [plain, fleet]
        time.sleep(1.5)
        rows = {"without": [], "with": []}
        calls_per_s = []
        trips_per_s = []
        for i in range(args.rounds):
            order = [("without", plain_addr), ("with", fleet_addr)]
            if i % 2:
                order.reverse()
            for name, addr in order:
                before = sum(redis_calls(port).values())
                trips = counter(metrics(fleet_addr), "switchyard_limits_round_trip_seconds_count")
                load = run.wrk(f"http://{addr}/v1/chat/completions", body_file, args.connections, args.duration)
                after = sum(redis_calls(port).values())
                trips = counter(metrics(fleet_addr), "switchyard_limits_round_trip_seconds_count") - trips
                rows[name].append(load["rps"])
                if name == "with":
                    calls_per_s.append((after - before) / args.duration)
                    trips_per_s.append(trips / args.duration)
                print(f"round {i} {name:8} {load['rps']:9.0f} req/s", flush=True)
        waits = wait_hist(metrics(fleet_addr))
        stats = redis_calls(port)
        for p in (plain, fleet):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        procs = [p for p in procs if p not in (plain, fleet)]

        def median(v):
            v = sorted(v)
            return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

        cost = {
            "rps_without": median(rows["without"]),
            "rps_with": median(rows["with"]),
            "ratio": median(rows["with"]) / median(rows["without"]),
            "rounds": rows,
            "redis_commands_per_s": median(calls_per_s),
            "lease_round_trips_per_s": median(trips_per_s),
            "redis_commands": stats,
            "lease_waits": waits[0],
            "lease_wait_p50_s": waits[1],
            "lease_wait_p99_s": waits[2],
        }
        print(json.dumps({"cost": cost}, indent=2), flush=True)

        # 2. steady overload across three hosts
        run.sh("redis-cli", "-p", str(port), "FLUSHALL", stdout=subprocess.DEVNULL)
        rpm = args.limit_rps * 60
        limited = policy(tmp, mock_addr, rpm, policyc)
        hosts = []
        for i in range(3):
            p, a = router(limited, tmp, f"h{i}", 1, ["--redis", url, "--node-id", f"bench-{i}"])
            procs.append(p)
            hosts.append(a)
        time.sleep(2.5)
        before = sum(redis_calls(port).values())
        trips = [counter(metrics(a), "switchyard_limits_round_trip_seconds_count") for a in hosts]
        started = time.time()
        runs = [wrk_counts(f"http://{a}/v1/chat/completions", body_file, 16, args.overload_s) for a in hosts]
        outs = [r.communicate()[0] for r in runs]
        elapsed = time.time() - started
        calls = sum(redis_calls(port).values()) - before
        offered = admitted = 0
        for out in outs:
            total, refused = parse_counts(out)
            offered += total
            admitted += total - refused
        allowed = rpm + args.limit_rps * elapsed
        host_waits = [wait_hist(metrics(a)) for a in hosts]
        trips = [counter(metrics(a), "switchyard_limits_round_trip_seconds_count") - t for a, t in zip(hosts, trips)]
        overload = {
            "limit_rpm": rpm,
            "seconds": round(elapsed, 1),
            "offered": offered,
            "admitted": admitted,
            "allowed": round(allowed),
            "admitted_over_allowed": admitted / allowed,
            "redis_commands_per_s_per_host": calls / elapsed / 3,
            "lease_round_trips_per_s": [t / elapsed for t in trips],
            "lease_waits": [{"count": w[0], "p50_s": w[1], "p99_s": w[2]} for w in host_waits],
        }
        print(json.dumps({"overload": overload}, indent=2), flush=True)
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except Exception:
                p.kill()


if __name__ == "__main__":
    main()
