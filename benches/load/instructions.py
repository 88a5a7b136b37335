#!/usr/bin/env python3
"""Instructions per request on the router's request path, counted by Callgrind: a figure this
noisy 2-vCPU VM cannot blur (throughput rounds here swing ±15%), for comparing two builds.

    benches/load/instructions.py [--requests 1000,4000] [--stream] [--whole]
                                 [--audit buffered|strict|off]
                                 [--baseline OTHER_SWITCHYARD --baseline-policyc P]

Runs each build's router (`--cores 1`, audit buffered) under `valgrind --tool=callgrind`,
counting only inside `runtime::conn::serve` (the connection task: parsing, routing, the
upstream exchange, metrics, the audit hand-over — not the reactor, the audit writer or the
timers, whose work depends on wall time, which valgrind stretches). A client sends the
requests one after another to a release `mock-upstream`; the per-request figure is the
difference between the two request counts' totals divided by the difference in requests, so
start-up work cancels out. `--whole` counts every thread instead (the reactor, timers, the
audit writer's encoding and WAL, shutdown's final row group): the whole CPU a request costs,
with a little wall-time-dependent work (timers) mixed in; `--audit` picks the durability. Installs valgrind from Debian when missing (root).
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the load harness: body(), bench_table(), TARGET, build())


def ensure_valgrind():
    if shutil.which("valgrind"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    print("installing valgrind with apt-get", flush=True)
    run.sh("apt-get", "install", "-y", "-qq", "valgrind")


def count(switchyard, swt, requests, stream, tmp, name, whole=False, audit="buffered"):
    """Callgrind's total inside `conn::serve` (or in every thread, `whole`) for `requests`
    requests."""
    out_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)
    port = free_port()
    collect = [] if whole else ["--collect-atstart=no", "--toggle-collect=*conn::serve*"]
    audit_flags = ["--no-audit"] if audit == "off" else ["--audit-durability", audit]
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.out",
         *collect, "--separate-threads=yes",
         switchyard, "--table", swt, "--listen", f"127.0.0.1:{port}", "--cores", "1", "--no-auth",
         "--log", "warn", "--data-dir", os.path.join(out_dir, "data"),
         "--admin-listen", "127.0.0.1:0", *audit_flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    body = run.body(stream)
    deadline = time.time() + 120
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/v1/health")
            c.getresponse().read()
            break
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                sys.exit(f"{switchyard} did not start under valgrind: {p.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    for _ in range(requests):
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            p.kill()
            sys.exit(f"{name}: a request answered {r.status}")
    c.close()
    p.send_signal(signal.SIGINT)
    p.wait(timeout=300)
    totals = []
    for f in os.listdir(out_dir):
        if f.startswith("cg.out"):
            with open(os.path.join(out_dir, f)) as fh:
                m = re.search(r"^summary: (\d+)", fh.read(), re.M)
                totals.append(int(m.group(1)) if m else 0)
    return sum(totals) if whole else max(totals)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", default="1000,4000",
                    help="two request counts; the figure is their totals' difference per request")
    ap.add_argument("--stream", action="store_true", help="streamed chat requests")
    ap.add_argument("--whole", action="store_true",
                    help="count every thread, not only the connection task")
    ap.add_argument("--audit", default="buffered", choices=["buffered", "strict", "off"])
    ap.add_argument("--baseline", default=None, metavar="SWITCHYARD")
    ap.add_argument("--baseline-policyc", default=None, metavar="POLICYC")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    if high <= low:
        sys.exit("--requests: the second count must be larger")
    ensure_valgrind()
    if not args.no_build:
        run.build(True)
    builds = [("this", os.path.join(run.TARGET, "switchyard"), os.path.join(run.TARGET, "policyc"))]
    if args.baseline:
        builds.append(("baseline", args.baseline, args.baseline_policyc or builds[0][2]))
    tmp = tempfile.mkdtemp(prefix="switchyard-instructions-")
    mock = subprocess.Popen([os.path.join(run.TARGET, "mock-upstream"), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        m = re.search(r"http://(\S+)", mock.stdout.readline())
        if not m:
            sys.exit("mock-upstream did not start")
        per_request = {}
        for name, switchyard, policyc in builds:
            _, swt = run.bench_table(policyc, m.group(1), tmp, name)
            a = count(switchyard, swt, low, args.stream, tmp, name, args.whole, args.audit)
            b = count(switchyard, swt, high, args.stream, tmp, name, args.whole, args.audit)
            per_request[name] = (b - a) / (high - low)
            print(f"{name}: {a:,} instructions for {low} requests, {b:,} for {high}: "
                  f"{per_request[name]:,.0f} per request", flush=True)
        if "baseline" in per_request:
            this, base = per_request["this"], per_request["baseline"]
            print(f"this - baseline: {this - base:+,.0f} instructions per request "
                  f"({(this - base) / base:+.1%})")
    finally:
        mock.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
