#!/usr/bin/env python3
"""The two figures of issue 11, re-measured on the release binaries.

    benches/load/hardening.py [--heads 1000] [--declared 16777216] [--switchyard PATH]
                              [--mock PATH] [--auth | --no-auth]

1. Pending bodies: opens --heads connections to the router, each sending only a request head
   for `POST /v1/chat/completions` that declares `Content-Length: --declared` (no body byte),
   waits, then reads the router's resident memory (VmRSS and VmHWM from /proc) before and
   after. Run once with API keys on (the head carries no key: refused before the body) and
   once with `--no-auth` (the body is awaited: the buffer must grow only as bytes arrive).
2. Stream metering: one streamed chat completion through the router to the mock upstream,
   without `stream_options.include_usage` (the SDK default); prints the upstream's own
   completion-token count (what it reports when asked) and the `tokens_out` the audit
   record holds (read back with DuckDB).

Prints one JSON object; `--switchyard` / `--mock` compare another build (e.g. an older one).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.path.join(ROOT, "target", "release")


def built(name):
    """The release build of `name`, else the debug one (for the mock and policyc only speed
    does not matter here)."""
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{name} is not built: cargo build --release --bin {name}")


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def start_router(binary, args, env=None):
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                          "--log-format", "text", "--cores", "2", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
    deadline = time.time() + 20
    while time.time() < deadline:
        line = p.stderr.readline()
        if "switchyard listening on http://" in line:
            addr = line.split("switchyard listening on http://")[1].split()[0].strip()
            host, port = addr.rsplit(":", 1)
            # Keep draining the log so the router never blocks on a full pipe.
            subprocess.Popen(["cat"], stdin=p.stderr, stdout=subprocess.DEVNULL)
            return p, (host, int(port))
    p.kill()
    sys.exit("switchyard did not start")


def pending_bodies(binary, heads, declared, auth):
    data = tempfile.mkdtemp()
    args = ["--data-dir", data, "--no-audit", "--max-connections-per-core", str(heads + 100),
            "--body-timeout-ms", "120000"]
    if not auth:
        args.append("--no-auth")
    p, addr = start_router(binary, args)
    time.sleep(0.5)
    try:
        return pending(p, addr, heads, declared, auth)
    finally:
        p.kill()
        p.wait()


def pending(p, addr, heads, declared, auth):
    before = rss_kib(p.pid)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    socks, answered = [], 0
    for _ in range(heads):
        s = socket.create_connection(addr)
        s.sendall(head)
        socks.append(s)
    time.sleep(2.0)
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1):
                answered += 1
        except BlockingIOError:
            pass
    after = rss_kib(p.pid)
    for s in socks:
        s.close()
    return {"auth": auth, "heads": heads, "declared_bytes": declared,
            "rss_before_kib": before["VmRSS"], "rss_after_kib": after["VmRSS"],
            "peak_rss_kib": after["VmHWM"], "answered_before_body": answered}


def stream_metering(binary, mock_binary):
    tmp = tempfile.mkdtemp()
    mock = subprocess.Popen([mock_binary, "--listen", "127.0.0.1:0", "--chunks", "6",
                             "--chunk-bytes", "3"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        return metered(binary, mock, tmp)
    finally:
        mock.kill()
        mock.wait()


def metered(binary, mock, tmp):
    line = mock.stdout.readline()
    mock_addr = line.split("listening on http://")[1].strip()
    policy = os.path.join(tmp, "p.yaml")
    with open(policy, "w") as f:
        f.write(f"""version: v1
endpoints:
  - id: up
    type: vllm
    url: http://{mock_addr}/v1
    transport: privatelink
    models: [m]
rules:
  - default:
      route_to: up
""")
    table = os.path.join(tmp, "p.swt")
    subprocess.run([built("policyc"), "compile", policy, "-o", table], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    audit = os.path.join(tmp, "audit")
    p, addr = start_router(binary, ["--table", table, "--no-auth", "--data-dir", tmp,
                                    "--audit-dir", audit, "--audit-max-shard-age-s", "1"])
    try:
        text, direct = exchange(addr, mock_addr)
    finally:
        p.terminate()
        p.wait(timeout=30)
    upstream_tokens = None
    for ev in direct.split("\n\n"):
        if ev.startswith("data: {") and '"usage"' in ev:
            u = json.loads(ev[6:]).get("usage")
            if u:
                upstream_tokens = u["completion_tokens"]
    import duckdb
    row = duckdb.sql(f"select tokens_out, tokens_estimated from read_parquet('{audit}/**/*.parquet',"
                     " hive_partitioning = true)").fetchall()
    return {"client_saw_usage_chunk": '"usage":{' in text.replace(" ", ""),
            "upstream_completion_tokens": upstream_tokens,
            "audit_tokens_out": row[0][0] if row else None,
            "audit_tokens_estimated": row[0][1] if row else None}


def exchange(addr, mock_addr):
    """The streamed answer through the router, and the upstream's own answer asked for usage."""
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://{addr[0]}:{addr[1]}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    # The upstream's own count: the same request asking for usage, sent to it directly.
    asked = json.loads(body)
    asked["stream_options"] = {"include_usage": True}
    direct = urllib.request.urlopen(urllib.request.Request(
        f"http://{mock_addr}/v1/chat/completions", data=json.dumps(asked).encode(),
        headers={"Content-Type": "application/json"}), timeout=10).read().decode()
    return text, direct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=1000)
    ap.add_argument("--declared", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--switchyard", default=os.path.join(TARGET, "switchyard"))
    ap.add_argument("--mock", default=None)
    args = ap.parse_args()
    out = {
        "pending_bodies": [pending_bodies(args.switchyard, args.heads, args.declared, auth)
                           for auth in (True, False)],
        "stream_metering": stream_metering(args.switchyard, args.mock or built("mock-upstream")),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
