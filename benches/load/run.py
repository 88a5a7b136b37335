#!/usr/bin/env python3
"""Load benchmark: nginx vs switchyard (audit off, buffered, strict) in front of the same mock
upstream, in one command, alternating rounds.

    benches/load/run.py [--rounds 5] [--duration 10] [--connections 32] [--body json|stream]
                        [--out results.json]
                        [--audit-rounds N | --auth-rounds N | --dialect-rounds N |
                         --baseline OTHER_SWITCHYARD [--baseline-rounds N] [--baseline-policyc P]]

Installs wrk and nginx from Debian when missing (root), builds the release binaries, then for
each body (JSON, streaming SSE), --rounds times, runs every target in an order rotated each
round (so this VM's slow drifts hit all alike), with wrk (one thread) and the mock upstream
pinned to CPU 0 and the proxy under test (one nginx worker / `--cores 1`) pinned to CPU 1:

  * throughput at --connections: requests/s, p99 latency, proxy CPU time per request
    (utime+stime from /proc of every proxy process, divided by requests), proxy RSS after
    the run (VmRSS summed over its processes);
  * latency at concurrency 1: p50 and p99, and the p50 added over the mock called directly.

Every run must return only 2xx answers, or the harness fails. Prints one table row per
target and round, then the medians over rounds: each switchyard's throughput ÷ nginx's,
buffered p99 ÷ audit-off p99, strict ÷ buffered throughput, and the c=1 added p50/p99 of
nginx and switchyard. The request body is a ~1 KB OpenAI chat request (`model: auto`, which
switchyard rewrites to the endpoint's model).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.path.join(ROOT, "target", "release")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_tools():
    missing = [t for t in ("wrk", "nginx", "taskset") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"missing {missing}: install them (Debian: apt-get install wrk nginx util-linux)")
    print(f"installing {missing} with apt-get", flush=True)
    sh("apt-get", "install", "-y", "-qq", "wrk", "nginx", "util-linux")


def build(locked):
    print("building release binaries", flush=True)
    sh("cargo", "build", "--release", *(["--locked"] if locked else []), "--bin", "switchyard",
       "--bin", "mock-upstream", "--bin", "policyc", cwd=ROOT)


def body(stream):
    filler = ("You are a careful assistant that answers questions about routing policies. " * 10)[:760]
    return json.dumps({
        "model": "auto",
        "messages": [
            {"role": "system", "content": filler},
            {"role": "user", "content": "Summarise the routing decision for tenant acme in one line."},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": stream,
    })


def bench_table(policyc, mock_addr, tmp, name="bench"):
    """The benchmark policy (one `vllm` endpoint on the mock, a default rule), compiled by
    `policyc`; returns the policy's and the table's paths."""
    policy = os.path.join(tmp, f"{name}.yaml")
    with open(policy, "w") as f:
        f.write(f"""version: v1
endpoints:
  - id: bench-upstream
    type: vllm
    url: http://{mock_addr}/v1
    transport: privatelink
    models: [bench-model]
rules:
  - default:
      route_to: bench-upstream
""")
    table = os.path.join(tmp, f"{name}.swt")
    sh(policyc, "compile", policy, "-o", table, stdout=subprocess.DEVNULL)
    return policy, table


def start(cmd, cpu, ready_pattern=None, stream="stderr"):
    p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if ready_pattern is None:
        return p, None
    src = p.stderr if stream == "stderr" else p.stdout
    deadline = time.time() + 20
    while time.time() < deadline:
        line = src.readline()
        if not line:
            break
        m = re.search(ready_pattern, line)
        if m:
            return p, m.group(1)
    p.kill()
    sys.exit(f"{cmd[0]} did not start: {p.stderr.read() if stream == 'stdout' else ''}")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def wrk(url, body_file, connections, duration, headers=None):
    script = os.path.join(os.path.dirname(body_file), "post.lua")
    headers = headers or {"X-Tenant": "bench"}
    with open(script, "w") as f:
        f.write(f'wrk.method = "POST"\n'
                f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
                f'wrk.headers["Content-Type"] = "application/json"\n')
        for k, v in headers.items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
                          "--latency", "-s", script, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out and re.search(r"(connect|read|write|timeout) [1-9]", out):
        sys.exit(f"wrk saw errors against {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    return {"rps": rps, "requests": total, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99)}


def rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    return total / 1024


def bodies(tmp, args):
    """(kind, path of the request body) for each body --body lets through."""
    for stream in (False, True):
        kind = "stream" if stream else "json"
        if args.body not in (None, kind):
            continue
        body_file = os.path.join(tmp, f"body-{kind}.json")
        with open(body_file, "w") as f:
            f.write(body(stream))
        yield kind, body_file


def comparison_rounds(targets, mock_addr, tmp, args):
    """Each body, --rounds rounds over `targets` (name, addr, pids), the order rotated each
    round; in each round, every target under load then every target at concurrency 1 (the
    mock called directly too, as the reference for added latency)."""
    results = []
    for kind, body_file in bodies(tmp, args):
        for i in range(args.rounds):
            shift = i % len(targets)
            order = targets[shift:] + targets[:shift]
            row = {"body": kind, "round": i + 1, "load": {}, "c1": {}}
            for name, a, pids in order:
                print(f"{kind:6} round {i + 1} {name:24} load ...", flush=True)
                before = cpu_seconds(pids)
                load = wrk(f"http://{a}/v1/chat/completions", body_file, args.connections, args.duration)
                load["cpu_us_per_req"] = (cpu_seconds(pids) - before) / load["requests"] * 1e6
                load["rss_mb"] = rss_mb(pids)
                row["load"][name] = load
            for name, a, _ in [("direct", mock_addr, [])] + order:
                print(f"{kind:6} round {i + 1} {name:24} c=1 ...", flush=True)
                row["c1"][name] = wrk(f"http://{a}/v1/chat/completions", body_file, 1, args.duration)
            results.append(row)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds of the full comparison (medians are reported)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--audit-rounds", type=int, default=0,
                    help="instead of the full comparison, run only switchyard audit off / buffered /"
                         " strict, N alternating rounds per body (order rotated each round), and"
                         " report each round's ratios and their median")
    ap.add_argument("--auth-rounds", type=int, default=0,
                    help="instead of the full comparison, run only switchyard without keys (--no-auth,"
                         " tenant undeclared) vs with a client key and a tenant with rpm/tpm limits and"
                         " daily budgets (never reached), both --no-audit, N alternating rounds per body")
    ap.add_argument("--dialect-rounds", type=int, default=0,
                    help="instead of the full comparison, run only one switchyard (audit buffered) with"
                         " three routes, N alternating rounds per body: OpenAI client to an OpenAI-compatible"
                         " upstream (passthrough), OpenAI client to an Anthropic upstream, Anthropic client to"
                         " an OpenAI-compatible upstream (both translated), with router CPU per request")
    ap.add_argument("--baseline", default=None, metavar="SWITCHYARD",
                    help="instead of the full comparison, run this build (audit buffered) against another"
                         " switchyard binary (same flags), N alternating rounds per body (--baseline-rounds)")
    ap.add_argument("--baseline-rounds", type=int, default=5)
    ap.add_argument("--baseline-policyc", default=None, metavar="POLICYC",
                    help="compile the baseline's table with this policyc (a baseline from before a"
                         " table format change cannot read this build's tables)")
    ap.add_argument("--body", choices=("json", "stream"), default=None,
                    help="the rounds modes (--baseline, --audit-rounds, ...) run only this body")
    ap.add_argument("--no-locked", action="store_true",
                    help="build without --locked (experiments with a [patch] override)")
    args = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: load generator and mock on CPU 0, proxy on CPU 1")
    ensure_tools()
    build(not args.no_locked)
    tmp = tempfile.mkdtemp(prefix="swy-bench-")
    procs = []
    try:
        mock, mock_addr = start([os.path.join(TARGET, "mock-upstream"), "--listen", "127.0.0.1:0",
                                 "--chunks", "16", "--chunk-bytes", "24"], 0,
                                r"listening on http://(\S+)", stream="stdout")
        procs.append(mock)
        policy, table = bench_table(os.path.join(TARGET, "policyc"), mock_addr, tmp)
        sy_targets = []
        for name, extra in (("switchyard", ["--no-audit"]),
                            ("switchyard+audit", ["--audit-durability", "buffered"]),
                            ("switchyard+audit-strict", ["--audit-durability", "strict"])):
            p, a = start([os.path.join(TARGET, "switchyard"), "--table", table, "--listen", "127.0.0.1:0",
                          "--cores", "1", "--no-auth", "--log", "warn,switchyard=info",
                          "--data-dir", os.path.join(tmp, name), "--admin-listen", "127.0.0.1:0"] + extra,
                         1, r"switchyard listening on http://(\S+?)\"")
            procs.append(p)
            sy_targets.append((name, a, p))
        nginx_conf = os.path.join(tmp, "nginx.conf")
        nginx_port = 18000 + os.getpid() % 1000
        with open(nginx_conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    client_body_buffer_size 64k;
    upstream mock {{ server {mock_addr}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
        ng = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", nginx_conf, "-p", tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(ng)
        time.sleep(1.0)
        if ng.poll() is not None:
            sys.exit(f"nginx failed: {ng.stderr.read().decode()}")
        ng_pids = [ng.pid] + children(ng.pid)

        if args.audit_rounds:
            audit_rounds(sy_targets, tmp, args)
            return
        if args.baseline:
            if args.baseline_policyc:
                table = os.path.join(tmp, "bench-baseline.swt")
                sh(args.baseline_policyc, "compile", policy, "-o", table, stdout=subprocess.DEVNULL)
            baseline_rounds(sy_targets, table, tmp, args, procs)
            return
        if args.auth_rounds:
            auth_rounds(mock_addr, tmp, args, procs)
            return
        if args.dialect_rounds:
            dialect_rounds(mock_addr, tmp, args, procs)
            return
        targets = [("nginx", f"127.0.0.1:{nginx_port}", ng_pids)] + \
            [(n, a, [p.pid]) for n, a, p in sy_targets]
        results = comparison_rounds(targets, mock_addr, tmp, args)
        report(results, args)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def alternate(targets, tmp, args, rounds):
    """Each body, `rounds` rounds over `targets` (name, addr, proc, headers), the order rotated
    each round so this VM's slow drifts hit all alike. Returns (body, round, {name: load})."""
    rows = []
    for kind, body_file in bodies(tmp, args):
        for i in range(rounds):
            shift = i % len(targets)
            got = {}
            for name, a, p, headers in targets[shift:] + targets[:shift]:
                print(f"{kind:6} round {i + 1} {name:24} ...", flush=True)
                before = cpu_seconds([p.pid])
                load = wrk(f"http://{a}/v1/chat/completions", body_file, args.connections, args.duration,
                           headers)
                load["cpu_us_per_req"] = (cpu_seconds([p.pid]) - before) / load["requests"] * 1e6
                got[name] = load
            rows.append((kind, i + 1, got))
    return rows


def audit_rounds(sy_targets, tmp, args):
    """Audit off vs buffered vs strict, alternating, so slow drifts of this VM hit all three."""
    import statistics
    rows = alternate([(n, a, p, None) for n, a, p in sy_targets], tmp, args, args.audit_rounds)
    print(f"\n{args.connections} connections, {args.duration} s per run, {args.audit_rounds} rounds\n")
    print("| body | round | off req/s | buffered req/s (×) | strict req/s (×) | p99 ms off / buffered / strict | CPU µs/req off / buffered / strict |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    names = ("switchyard", "switchyard+audit", "switchyard+audit-strict")
    for kind, i, got in rows:
        off, buf, st = (got[n] for n in names)
        print(f"| {kind} | {i} | {off['rps']:.0f} | {buf['rps']:.0f} ({buf['rps'] / off['rps']:.2f}×) | "
              f"{st['rps']:.0f} ({st['rps'] / off['rps']:.2f}×) | "
              f"{off['p99_us'] / 1000:.1f} / {buf['p99_us'] / 1000:.1f} / {st['p99_us'] / 1000:.1f} | "
              f"{off['cpu_us_per_req']:.1f} / {buf['cpu_us_per_req']:.1f} / {st['cpu_us_per_req']:.1f} |")
    for kind in ("json", "stream"):
        mine = [got for k, _, got in rows if k == kind]
        if not mine:
            continue
        b = statistics.median(g[names[1]]["rps"] / g[names[0]]["rps"] for g in mine)
        s = statistics.median(g[names[2]]["rps"] / g[names[0]]["rps"] for g in mine)
        print(f"\n{kind}: median buffered / off = {b:.2f}x, strict / off = {s:.2f}x")


def baseline_rounds(sy_targets, table, tmp, args, procs):
    """This build vs another switchyard binary, both with the default buffered audit."""
    import statistics
    p, a = start([args.baseline, "--table", table, "--listen", "127.0.0.1:0", "--cores", "1",
                  "--no-auth", "--log", "warn,switchyard=info", "--data-dir", os.path.join(tmp, "baseline"),
                  "--admin-listen", "127.0.0.1:0", "--audit-durability", "buffered"],
                 1, r"switchyard listening on http://(\S+?)\"")
    procs.append(p)
    this = next((n, a2, p2, None) for n, a2, p2 in sy_targets if n == "switchyard+audit")
    rows = alternate([("baseline", a, p, None), ("this", this[1], this[2], None)], tmp, args,
                     args.baseline_rounds)
    print(f"\n{args.connections} connections, {args.duration} s per run, {args.baseline_rounds} rounds;"
          f" baseline {args.baseline}\n")
    print("| body | round | baseline req/s | this req/s (×) | p99 ms baseline / this | CPU µs/req baseline / this |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for kind, i, got in rows:
        b, t = got["baseline"], got["this"]
        print(f"| {kind} | {i} | {b['rps']:.0f} | {t['rps']:.0f} ({t['rps'] / b['rps']:.2f}×) | "
              f"{b['p99_us'] / 1000:.1f} / {t['p99_us'] / 1000:.1f} | "
              f"{b['cpu_us_per_req']:.1f} / {t['cpu_us_per_req']:.1f} |")
    for kind in ("json", "stream"):
        mine = [got for k, _, got in rows if k == kind]
        if not mine:
            continue
        r = statistics.median(g["this"]["rps"] / g["baseline"]["rps"] for g in mine)
        c = statistics.median(g["this"]["cpu_us_per_req"] - g["baseline"]["cpu_us_per_req"] for g in mine)
        print(f"\n{kind}: median this / baseline = {r:.2f}x, CPU per request {c:+.1f} µs")


def dialect_rounds(mock_addr, tmp, args, procs):
    """Passthrough vs translation, alternating, on one router: the same mock upstream answers
    in each dialect (16 content events of 24 bytes), so what differs is the router's work."""
    import statistics
    policy = os.path.join(tmp, "bench-dialects.yaml")
    with open(policy, "w") as f:
        f.write(f"""version: v1
endpoints:
  - id: bench-upstream
    type: vllm
    url: http://{mock_addr}/v1
    transport: privatelink
    models: [bench-model]
  - id: bench-claude
    type: anthropic
    url: http://{mock_addr}
    transport: privatelink
    models: [bench-claude]
    api_key_env: BENCH_ANTHROPIC_KEY
  - id: bench-bedrock
    type: bedrock
    region: us-east-1
    url: http://{mock_addr}
    transport: vpc_endpoint
    models: [bench-bedrock]
    aws_access_key_id_env: BENCH_AWS_KEY
    aws_secret_access_key_env: BENCH_AWS_SECRET
rules:
  - match:
      model: bench-claude
    route_to: bench-claude
  - match:
      model: bench-bedrock
    route_to: bench-bedrock
  - default:
      route_to: bench-upstream
""")
    table = os.path.join(tmp, "bench-dialects.swt")
    sh(os.path.join(TARGET, "policyc"), "compile", policy, "-o", table, stdout=subprocess.DEVNULL)
    env = dict(os.environ, BENCH_ANTHROPIC_KEY="bench-key", BENCH_AWS_KEY="AKIDBENCH",
               BENCH_AWS_SECRET="bench/secret")
    p = subprocess.Popen(["taskset", "-c", "1", os.path.join(TARGET, "switchyard"), "--table", table,
                          "--listen", "127.0.0.1:0", "--cores", "1", "--no-auth",
                          "--log", "warn,switchyard=info", "--data-dir", os.path.join(tmp, "dialects"),
                          "--admin-listen", "127.0.0.1:0", "--audit-durability", "buffered"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    procs.append(p)
    addr = None
    deadline = time.time() + 20
    while time.time() < deadline and addr is None:
        m = re.search(r"switchyard listening on http://(\S+?)\"", p.stderr.readline())
        addr = m and m.group(1)
    if addr is None:
        sys.exit("switchyard (dialects) did not start")

    def messages_body(stream):
        chat = json.loads(body(stream))
        system = chat["messages"][0]["content"]
        return json.dumps({"model": "bench-model", "system": system, "messages": chat["messages"][1:],
                           "max_tokens": 256, "temperature": 0.2, "stream": stream})

    routes = (
        ("passthrough", "/v1/chat/completions", lambda s: body(s)),
        ("openai->anthropic", "/v1/chat/completions", lambda s: body(s).replace('"auto"', '"bench-claude"')),
        ("anthropic->openai", "/v1/messages", messages_body),
        # Signed with SigV4, answered in AWS event-stream frames (Converse JSON when whole).
        ("openai->bedrock", "/v1/chat/completions", lambda s: body(s).replace('"auto"', '"bench-bedrock"')),
    )
    rows = []
    for stream in (False, True):
        kind = "stream" if stream else "json"
        files = {}
        for name, _, make in routes:
            files[name] = os.path.join(tmp, f"body-{kind}-{name.replace('>', '')}.json")
            with open(files[name], "w") as f:
                f.write(make(stream))
        for i in range(args.dialect_rounds):
            shift = i % len(routes)
            got = {}
            for name, path, _ in routes[shift:] + routes[:shift]:
                print(f"{kind:6} round {i + 1} {name:18} ...", flush=True)
                before = cpu_seconds([p.pid])
                load = wrk(f"http://{addr}{path}", files[name], args.connections, args.duration, None)
                load["cpu_us_per_req"] = (cpu_seconds([p.pid]) - before) / load["requests"] * 1e6
                got[name] = load
            rows.append((kind, i + 1, got))
    print(f"\n{args.connections} connections, {args.duration} s per run, {args.dialect_rounds} rounds, audit buffered\n")
    names = [r[0] for r in routes]
    print("| body | round | " + " | ".join(f"{n} req/s" for n in names) + " | CPU µs/req "
          + " / ".join(names) + " | p99 ms " + " / ".join(names) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " | --- | --- |")
    for kind, i, got in rows:
        base = got[names[0]]["rps"]
        rps = [f"{got[n]['rps']:.0f}" + ("" if n == names[0] else f" ({got[n]['rps'] / base:.2f}×)") for n in names]
        cpu = " / ".join(f"{got[n]['cpu_us_per_req']:.1f}" for n in names)
        p99 = " / ".join(f"{got[n]['p99_us'] / 1000:.1f}" for n in names)
        print(f"| {kind} | {i} | " + " | ".join(rps) + f" | {cpu} | {p99} |")
    for kind in ("json", "stream"):
        mine = [got for k, _, got in rows if k == kind]
        if not mine:
            continue
        for n in names[1:]:
            cpu = statistics.median(g[n]["cpu_us_per_req"] / g[names[0]]["cpu_us_per_req"] for g in mine)
            rps = statistics.median(g[n]["rps"] / g[names[0]]["rps"] for g in mine)
            us = statistics.median(g[n]["cpu_us_per_req"] for g in mine)
            base = statistics.median(g[names[0]]["cpu_us_per_req"] for g in mine)
            print(f"{kind}: {n}: median router CPU per request {us:.1f} µs vs {base:.1f} µs passthrough "
                  f"({cpu:.2f}x), req/s {rps:.2f}x")


def auth_rounds(mock_addr, tmp, args, procs):
    """Keys and limits off vs on, alternating, both without audit (to isolate their cost)."""
    import statistics
    import urllib.request
    policy = os.path.join(tmp, "bench-limits.yaml")
    with open(policy, "w") as f:
        f.write(f"""version: v1
endpoints:
  - id: bench-upstream
    type: vllm
    url: http://{mock_addr}/v1
    transport: privatelink
    models: [bench-model]
tenants:
  - id: bench
    model_allowlist: [bench-model]
    rate_limit_rpm: 1000000000
    rate_limit_tpm: 1000000000000
    daily_token_budget: 1000000000000000
    daily_spend_usd: 1000000000
rules:
  - default:
      route_to: bench-upstream
""")
    table = os.path.join(tmp, "bench-limits.swt")
    sh(os.path.join(TARGET, "policyc"), "compile", policy, "-o", table, stdout=subprocess.DEVNULL)
    admin_key = "bench-admin-key-0123456789"
    targets = []
    for name, tbl, extra in (("no-auth", os.path.join(tmp, "bench.swt"), ["--no-auth"]),
                             ("auth+limits", table, [])):
        env = dict(os.environ, SWITCHYARD_ADMIN_KEYS=admin_key)
        p = subprocess.Popen(["taskset", "-c", "1", os.path.join(TARGET, "switchyard"), "--table", tbl,
                              "--listen", "127.0.0.1:0", "--cores", "1", "--no-audit",
                              "--log", "warn,switchyard=info", "--data-dir", os.path.join(tmp, name),
                              "--admin-listen", "127.0.0.1:0"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        addr = None
        deadline = time.time() + 20
        while time.time() < deadline and addr is None:
            m = re.search(r"switchyard listening on http://(\S+?)\"", p.stderr.readline())
            addr = m and m.group(1)
        if addr is None:
            sys.exit(f"switchyard ({name}) did not start")
        headers = {"X-Tenant": "bench"}
        if name == "auth+limits":
            req = urllib.request.Request(f"http://{addr}/v1/tenants/bench/keys", data=b"{}", method="POST",
                                         headers={"Authorization": f"Bearer {admin_key}",
                                                  "Content-Type": "application/json"})
            key = json.load(urllib.request.urlopen(req))["key"]
            headers = {"Authorization": f"Bearer {key}"}
        targets.append((name, addr, p, headers))
    rows = alternate(targets, tmp, args, args.auth_rounds)
    print(f"\n{args.connections} connections, {args.duration} s per run, {args.auth_rounds} rounds\n")
    print("| body | round | no-auth req/s | auth+limits req/s (×) | p99 ms no-auth / auth | CPU µs/req no-auth / auth |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for kind, i, got in rows:
        off, on = got["no-auth"], got["auth+limits"]
        print(f"| {kind} | {i} | {off['rps']:.0f} | {on['rps']:.0f} ({on['rps'] / off['rps']:.2f}×) | "
              f"{off['p99_us'] / 1000:.1f} / {on['p99_us'] / 1000:.1f} | "
              f"{off['cpu_us_per_req']:.1f} / {on['cpu_us_per_req']:.1f} |")
    for kind in ("json", "stream"):
        mine = [got for k, _, got in rows if k == kind]
        if not mine:
            continue
        r = statistics.median(g["auth+limits"]["rps"] / g["no-auth"]["rps"] for g in mine)
        c = statistics.median(g["auth+limits"]["cpu_us_per_req"] - g["no-auth"]["cpu_us_per_req"] for g in mine)
        print(f"\n{kind}: median auth+limits / no-auth = {r:.2f}x, CPU per request {c:+.1f} µs")


def report(results, args):
    import statistics
    med = statistics.median
    sy = ("switchyard", "switchyard+audit", "switchyard+audit-strict")
    print(f"\n{args.connections} connections, {args.duration} s per run, {args.rounds} rounds;"
          " c=1: one connection, added = p50/p99 minus the mock's own\n")
    print("| body | round | target | req/s | × nginx | p99 ms | CPU µs/req | RSS MB | c=1 added p50 µs | c=1 p99 µs |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ng = r["load"]["nginx"]["rps"]
        direct = r["c1"]["direct"]
        for name in ("nginx",) + sy:
            l, c = r["load"][name], r["c1"][name]
            print(f"| {r['body']} | {r['round']} | {name} | {l['rps']:.0f} | {l['rps'] / ng:.2f} | "
                  f"{l['p99_us'] / 1000:.2f} | {l['cpu_us_per_req']:.1f} | {l['rss_mb']:.0f} | "
                  f"{c['p50_us'] - direct['p50_us']:.0f} | {c['p99_us']:.0f} |")
    print("\nMedians over rounds:\n")
    print("| body | target | req/s × nginx | p99 ms | CPU µs/req (nginx) | RSS MB | c=1 added p50 µs | c=1 p99 ÷ nginx's |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in ("json", "stream"):
        rows = [r for r in results if r["body"] == kind]
        if not rows:
            continue
        for name in ("nginx",) + sy:
            ratio = med(r["load"][name]["rps"] / r["load"]["nginx"]["rps"] for r in rows)
            p99 = med(r["load"][name]["p99_us"] for r in rows) / 1000
            cpu = med(r["load"][name]["cpu_us_per_req"] for r in rows)
            ng_cpu = med(r["load"]["nginx"]["cpu_us_per_req"] for r in rows)
            rss = med(r["load"][name]["rss_mb"] for r in rows)
            added = med(r["c1"][name]["p50_us"] - r["c1"]["direct"]["p50_us"] for r in rows)
            c1p99 = med(r["c1"][name]["p99_us"] / r["c1"]["nginx"]["p99_us"] for r in rows)
            print(f"| {kind} | {name} | {ratio:.2f} | {p99:.2f} | {cpu:.1f} ({ng_cpu:.1f}) | {rss:.0f} | "
                  f"{added:.0f} | {c1p99:.2f} |")
        buf_p99 = med(r["load"][sy[1]]["p99_us"] / r["load"][sy[0]]["p99_us"] for r in rows)
        strict = med(r["load"][sy[2]]["rps"] / r["load"][sy[1]]["rps"] for r in rows)
        off = med(r["load"][sy[1]]["rps"] / r["load"][sy[0]]["rps"] for r in rows)
        print(f"\n{kind}: buffered / off throughput {off:.2f}x; buffered p99 / off p99 {buf_p99:.2f}x;"
              f" strict / buffered throughput {strict:.2f}x\n")


if __name__ == "__main__":
    main()
