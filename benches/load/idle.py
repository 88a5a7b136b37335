#!/usr/bin/env python3
"""Memory held per idle client connection, router vs nginx.

    benches/load/idle.py [--connections 10000] [--no-build] [--no-locked]

Starts the release router (`--cores 1 --no-auth --no-audit`, the mock upstream behind it)
and nginx (one worker, proxying to the same mock), then for each: opens N client connections
that stay idle — fresh ones, and ones that each sent one request first and then went idle
(keep-alive, the common case behind a load balancer) — and reports the server's RSS
(`/proc/PID/status` VmRSS, nginx's master and worker together) before and after, per
connection.
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def open_idle(addr, n, send_one, body):
    host, port = addr.rsplit(":", 1)
    socks = []
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"X-Tenant: bench\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    for i in range(n):
        s = socket.create_connection((host, int(port)))
        if send_one:
            s.sendall(request)
        socks.append(s)
    if send_one:
        for s in socks:
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(65536)
            head, rest = got.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(rest) < length:
                rest += s.recv(65536)
    return socks


def measure(name, addr, pids, n, body):
    out = {}
    for kind, send_one in (("fresh", False), ("after one request", True)):
        time.sleep(0.5)
        before = rss_kb(pids)
        socks = open_idle(addr, n, send_one, body)
        time.sleep(2.0)
        after = rss_kb(pids)
        out[kind] = (before, after)
        print(f"{name:12} {kind:18} RSS {before / 1024:7.1f} MB -> {after / 1024:7.1f} MB: "
              f"{(after - before) * 1024 / n:8.0f} bytes per idle connection", flush=True)
        for s in socks:
            s.close()
        time.sleep(1.0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-locked", action="store_true")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections * 2 + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want)), hard))
    run.ensure_tools()
    if not args.no_build:
        run.build(not args.no_locked)
    tmp = tempfile.mkdtemp(prefix="swy-idle-")
    procs = []
    body = run.body(False).encode()
    try:
        mock, mock_addr = run.start([os.path.join(run.TARGET, "mock-upstream"), "--listen", "127.0.0.1:0"], 0,
                                    r"listening on http://(\S+)", stream="stdout")
        procs.append(mock)
        _, table = run.bench_table(os.path.join(run.TARGET, "policyc"), mock_addr, tmp)
        sy, sy_addr = run.start([os.path.join(run.TARGET, "switchyard"), "--table", table, "--listen", "127.0.0.1:0",
                                 "--cores", "1", "--no-auth", "--no-audit", "--log", "warn,switchyard=info",
                                 "--max-connections-per-core", str(args.connections * 2),
                                 "--data-dir", os.path.join(tmp, "sy"), "--admin-listen", "127.0.0.1:0"],
                                1, r"switchyard listening on http://(\S+?)\"")
        procs.append(sy)
        nginx_port = 19000 + os.getpid() % 1000
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
worker_rlimit_nofile {want};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections {want}; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    upstream mock {{ server {mock_addr}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{ proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
""")
        ng = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", conf, "-p", tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(ng)
        time.sleep(1.0)
        ng_pids = [ng.pid] + run.children(ng.pid)
        measure("switchyard", sy_addr, [sy.pid], args.connections, body)
        measure("nginx", f"127.0.0.1:{nginx_port}", ng_pids, args.connections, body)
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
