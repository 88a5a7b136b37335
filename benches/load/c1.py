#!/usr/bin/env python3
"""Where a concurrency-1 request's added microseconds go.

    benches/load/c1.py [--duration 6] [--rounds 3]

One wrk connection (CPU 0, with the release mock upstream) against: the mock directly, and
the router (`--cores 1 --no-auth`, CPU 1) with the audit off and buffered, in alternating
rounds. For each router run it reads, per request: the added p50 (router p50 − direct p50),
the router's user and system CPU (from /proc), and, from `perf stat -p` on the router during
the run (software events only, which a VM without PMU counters still has), its context
switches and system calls. What is left of the added p50 after the router's own CPU is
time the request spent waiting — except that glommio's executor polls its ring while idle,
so at one connection the router's CPU time exceeds the added latency (RESULTS.md): the
`perf trace -s` summary printed last (system calls of the core thread, with the time spent
in each) is where the microseconds are read.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def measure(url, body_file, pid, duration):
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", "context-switches,raw_syscalls:sys_enter", "-p", str(pid),
         "--", "sleep", str(duration + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    u0, s0 = cpu(pid)
    r = run.wrk(url, body_file, 1, duration)
    u1, s1 = cpu(pid)
    err = perf.communicate()[1]
    events = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            events[parts[2]] = int(parts[0])
    n = r["requests"]
    # perf counted over duration + 1 s; scale to the requests wrk made in `duration`.
    scale = duration / (duration + 1)
    return {
        "p50": r["p50_us"], "p99": r["p99_us"],
        "user": (u1 - u0) * 1e6 / n, "sys": (s1 - s0) * 1e6 / n,
        "cs": events.get("context-switches", 0) * scale / n,
        "syscalls": events.get("raw_syscalls:sys_enter", 0) * scale / n,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run.ensure_tools()
    run.build(True)
    tmp = tempfile.mkdtemp(prefix="swy-c1-")
    t = run.TARGET
    mock, addr = run.start([os.path.join(t, "mock-upstream"), "--listen", "127.0.0.1:0",
                            "--chunks", "16", "--chunk-bytes", "24"], 0,
                           r"listening on http://(\S+)", stream="stdout")
    _, swt = run.bench_table(os.path.join(t, "policyc"), addr, tmp)
    body_file = os.path.join(tmp, "body.json")
    with open(body_file, "w") as f:
        f.write(run.body(False))
    routers = {}
    for name, flags in [("audit off", ["--no-audit"]), ("audit buffered", [])]:
        data = os.path.join(tmp, name.replace(" ", "-"))
        p, a = run.start([os.path.join(t, "switchyard"), "--table", swt, "--listen", "127.0.0.1:0",
                          "--cores", "1", "--no-auth", "--log", "warn,switchyard=info",
                          "--data-dir", data, "--admin-listen", "127.0.0.1:0", *flags],
                         1, r"switchyard listening on http://(\S+?)\"")
        routers[name] = (p, a)
    results = {name: [] for name in routers}
    direct = []
    trace = ""
    try:
        for i in range(args.rounds):
            d = run.wrk(f"http://{addr}/v1/chat/completions", body_file, 1, args.duration)
            direct.append(d["p50_us"])
            names = list(routers)[i % 2:] + list(routers)[:i % 2]
            for name in names:
                p, a = routers[name]
                m = measure(f"http://{a}/v1/chat/completions", body_file, p.pid, args.duration)
                m["added"] = m["p50"] - d["p50_us"]
                results[name].append(m)
                print(f"round {i + 1} {name}: direct p50 {d['p50_us']:.0f} µs, {m}", flush=True)
        # Which system calls the core thread makes, and how long it spends in each, during
        # 3 s of the same load (`perf trace -s`).
        p, a = routers["audit off"]
        done = {}
        load = threading.Thread(target=lambda: done.update(
            run.wrk(f"http://{a}/v1/chat/completions", body_file, 1, args.duration)))
        load.start()
        time.sleep(1)
        traced = subprocess.run(["perf", "trace", "-s", "-p", str(p.pid), "--", "sleep", "3"],
                                capture_output=True, text=True)
        load.join()
        text = traced.stderr or traced.stdout
        trace = text[text.find(" core-"):] if " core-" in text else text
    finally:
        for p, _ in routers.values():
            p.kill()
        mock.kill()
    print(f"\nmedians over {args.rounds} rounds, {args.duration} s each, one connection; "
          f"direct p50 {statistics.median(direct):.0f} µs\n")
    print("| router | added p50 µs | user µs/req | system µs/req | waiting µs/req (rest) | "
          "context switches/req | syscalls/req |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        rest = med["added"] - med["user"] - med["sys"]
        print(f"| {name} | {med['added']:.0f} | {med['user']:.1f} | {med['sys']:.1f} | {rest:.0f} | "
              f"{med['cs']:.2f} | {med['syscalls']:.1f} |")
    print(f"\nperf trace -s of the audit-off router's core thread, 3 s at one connection "
          f"({done.get('rps', 0):.0f} req/s in that run):\n{trace.strip()}")


if __name__ == "__main__":
    main()
