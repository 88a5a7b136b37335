#!/usr/bin/env python3
"""Chaos load run: switchyard in front of three endpoints that misbehave, under load.

    benches/load/chaos.py [--duration 30] [--connections 32] [--restart-every 3] [--down-for 1]
                          [--no-resend]

Three mock upstreams (release `mock-upstream`), one policy rule trying them in order:

  * `restarting`: killed (SIGKILL: its in-flight requests see a reset) every --restart-every
    seconds, back on the same port --down-for seconds later;
  * `limited`: answers 429 to every second request (`--status-every 2`, `Retry-After: 1`);
  * `healthy`: answers every request.

wrk (one thread, --connections) sends non-streamed ~1 KB chat requests for --duration seconds.
The rule says `resend_on_reset: true` (the chat requests are safe to repeat) unless --no-resend.
Reported: requests, client-visible errors (non-2xx and socket errors), requests/s, p50/p90/p99,
and the router's attempts by endpoint and outcome, fallbacks and breaker ejections from its
/metrics. The run fails (exit 1) if a client saw an error with resend on.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the load harness: tools, build, bodies)

ROOT = run.ROOT
TARGET = run.TARGET


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mock(port, *flags):
    return subprocess.Popen(
        [os.path.join(TARGET, "mock-upstream"), "--listen", f"127.0.0.1:{port}", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_port(port, limit=10):
    until = time.time() + limit
    while time.time() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on {port}")


def metrics(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"attempts": {}, "fallbacks": {}, "ejections": {}}
    for line in text.splitlines():
        m = re.match(r'switchyard_upstream_attempts_total\{.*switchyard_endpoint="([^"]*)".*outcome="([^"]*)"\} (\d+)', line)
        if m:
            key = f"{m.group(1)}:{m.group(2)}"
            out["attempts"][key] = out["attempts"].get(key, 0) + int(m.group(3))
        m = re.match(r'switchyard_fallbacks_total\{from="([^"]*)",to="([^"]*)"\} (\d+)', line)
        if m:
            out["fallbacks"][f"{m.group(1)}->{m.group(2)}"] = int(m.group(3))
        m = re.match(r'switchyard_endpoint_ejections_total\{switchyard_endpoint="([^"]*)"\} (\d+)', line)
        if m:
            out["ejections"][m.group(1)] = int(m.group(2))
    return out


def wrk(url, body_file, connections, duration):
    script = os.path.join(os.path.dirname(body_file), "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
                          script, url], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
        "raw": out,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--restart-every", type=float, default=3.0)
    ap.add_argument("--down-for", type=float, default=1.0)
    ap.add_argument("--no-resend", action="store_true",
                    help="leave resend_on_reset off: requests reset by the restarts reach the client as 502")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    run.ensure_tools()
    if not args.no_build:
        run.build(locked=True)
    tmp = tempfile.mkdtemp(prefix="switchyard-chaos-")
    ports = {name: free_port() for name in ("restarting", "limited", "healthy")}
    procs = {
        "restarting": mock(ports["restarting"]),
        "limited": mock(ports["limited"], "--status", "429", "--status-every", "2", "--retry-after", "1"),
        "healthy": mock(ports["healthy"]),
    }
    for p in ports.values():
        wait_port(p)
    policy = "version: v1\nendpoints:\n"
    for name, port in ports.items():
        policy += (f"  - id: {name}\n    type: vllm\n    url: http://127.0.0.1:{port}/v1\n"
                   f"    transport: privatelink\n    models: [m]\n")
    policy += ("rules:\n  - default:\n      route_to: restarting\n      fallback: [limited, healthy]\n"
               + ("" if args.no_resend else "      resend_on_reset: true\n"))
    with open(os.path.join(tmp, "chaos.yaml"), "w") as f:
        f.write(policy)
    table = os.path.join(tmp, "chaos.swt")
    run.sh(os.path.join(TARGET, "policyc"), "compile", os.path.join(tmp, "chaos.yaml"), "-o", table,
           stdout=subprocess.DEVNULL)
    router, addr = run.start([os.path.join(TARGET, "switchyard"), "--table", table, "--listen",
                              "127.0.0.1:0", "--no-auth", "--no-audit", "--data-dir",
                              os.path.join(tmp, "data"), "--log", "info"], cpu=1,
                             ready_pattern=r"switchyard listening on http://([0-9.]+:[0-9]+)")
    threading.Thread(target=lambda: [None for _ in iter(router.stderr.readline, "")], daemon=True).start()
    body_file = os.path.join(tmp, "body.json")
    with open(body_file, "w") as f:
        f.write(run.body(False).replace('"auto"', '"m"'))

    stop = threading.Event()
    restarts = [0]

    def chaos():
        while not stop.wait(args.restart_every):
            procs["restarting"].send_signal(signal.SIGKILL)
            procs["restarting"].wait()
            if stop.wait(args.down_for):
                break
            procs["restarting"] = mock(ports["restarting"])
            wait_port(ports["restarting"])
            restarts[0] += 1

    t = threading.Thread(target=chaos, daemon=True)
    t.start()
    print(f"chaos run: {args.duration}s, {args.connections} connections, restarting every "
          f"{args.restart_every}s (down {args.down_for}s), resend_on_reset {not args.no_resend}",
          flush=True)
    try:
        load = wrk(f"http://{addr}/v1/chat/completions", body_file, args.connections, args.duration)
        stop.set()
        t.join()
        m = metrics(addr)
    finally:
        stop.set()
        for p in procs.values():
            p.kill()
        router.kill()
    errors = load["non_2xx"] + load["socket_errors"]
    result = {k: v for k, v in load.items() if k != "raw"}
    result.update({"client_errors": errors, "restarts": restarts[0],
                   "router": m})
    print(json.dumps(result, indent=2))
    if errors and not args.no_resend:
        print(load["raw"], file=sys.stderr)
        sys.exit(f"{errors} client-visible errors")


if __name__ == "__main__":
    main()
