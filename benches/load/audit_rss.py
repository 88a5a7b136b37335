#!/usr/bin/env python3
"""Peak RSS of one router under load, with the audit writer's queue sampled from /metrics.

    benches/load/audit_rss.py [ROUTER FLAGS...]      e.g.  --no-audit  |  --audit-durability strict

Starts the release mock upstream (CPU 0) and one router (`--cores 1 --no-auth`, CPU 1, plus
the flags given), drives it with wrk (one thread, 32 connections, 20 s, the JSON body of
run.py), samples the router's VmRSS and `switchyard_audit_records_queued` every 0.5 s, and
prints throughput, p99, peak and final RSS and every fourth queue sample. Run it several
times: on this VM single runs of the audit-on router range widely (see RESULTS.md).
"""

import os
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    extra = sys.argv[1:]
    run.ensure_tools()
    run.build(True)
    tmp = tempfile.mkdtemp(prefix="swy-rss-")
    t = run.TARGET
    mock, addr = run.start([os.path.join(t, "mock-upstream"), "--listen", "127.0.0.1:0", "--chunks", "16",
                            "--chunk-bytes", "24"], 0, r"listening on http://(\S+)", stream="stdout")
    _, table = run.bench_table(os.path.join(t, "policyc"), addr, tmp)
    p, a = run.start([os.path.join(t, "switchyard"), "--table", table, "--listen", "127.0.0.1:0", "--cores", "1",
                      "--no-auth", "--log", "warn,switchyard=info", "--data-dir", os.path.join(tmp, "data"),
                      "--admin-listen", "127.0.0.1:0"] + extra, 1, r"switchyard listening on http://(\S+?)\"")
    body = os.path.join(tmp, "body.json")
    with open(body, "w") as f:
        f.write(run.body(False))
    peak, queued, done = [0.0], [], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], run.rss_mb([p.pid]))
            try:
                text = urllib.request.urlopen(f"http://{a}/metrics", timeout=1).read().decode()
                line = next((l for l in text.splitlines() if l.startswith("switchyard_audit_records_queued")), None)
                queued.append(int(float(line.split()[-1])) if line else None)
            except OSError as e:
                queued.append(f"error: {e}")
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = run.wrk(f"http://{a}/v1/chat/completions", body, 32, 20)
    finally:
        done.set()
        watcher.join()
        end = run.rss_mb([p.pid])
        p.terminate()
        mock.terminate()
        p.wait()
        mock.wait()
    print(f"flags {extra}: {r['rps']:.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms, peak RSS {peak[0]:.0f} MB,"
          f" final RSS {end:.0f} MB; audit queue samples {queued[::4]}")


if __name__ == "__main__":
    main()
