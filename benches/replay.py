#!/usr/bin/env python3
"""Replay throughput: `policyc replay` over synthetic audit shards, in records per second.

    benches/replay.py [--records 5000000] [--shards 8] [--layout mixed|per-tenant] [--keep DIR]

Writes `--shards` Parquet shards with DuckDB in the router's audit schema (the replay's
columns typed as the router writes them; the other columns absent, as a replay never reads
them) under Hive partitions, with traffic shaped like a fleet's: 200 tenants, 4 data
classes, 5 roles, 6 models (`auto` a third of the time), latency budgets on a quarter of
the requests, cost caps on a fifth, unique request ids, row groups of 65,536. `--layout
mixed` (the default, the harder case) mixes every tenant in every shard; `per-tenant` writes
one shard per tenant, as the router does (`tenant=…` partitions), `--shards` ignored. Then times
the release `policyc replay` (one thread) against a 1,000-rule policy from the policy
generator, and prints records/s and peak RSS (from /usr/bin/time's `%M`; installs `time`
when missing).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")

POLICY = """version: v1
endpoints:
  - id: gpu
    type: vllm
    url: http://127.0.0.1:9/v1
    transport: privatelink
    models: [llama, mixtral]
    pricing: { input_per_1k: 0.001, output_per_1k: 0.002 }
  - id: cloud
    type: openai
    url: https://api.openai.com/v1
    transport: public
    models: [gpt-4o, gpt-4o-mini, llama, mixtral, claude]
    pricing: { input_per_1k: 0.005, output_per_1k: 0.015 }
tenants:
%s
rules:
%s  - default: cloud
"""


def policy(path, rules, moved=0):
    tenants = "".join(f"  - id: t{i:03}\n" for i in range(200))
    body = []
    for i in range(rules):
        t = i % 200
        # Tenants below `moved` go to the GPU in the new policy.
        target = "gpu" if (t < moved or i % 7 == 0) else "cloud"
        cls = ["public", "internal", "pii", "secret"][i % 4]
        body.append(
            f"  - name: r{i:04}\n    match:\n      tenant: t{t:03}\n      data_class: {cls}\n"
            f"    route_to: {target}\n")
    with open(path, "w") as f:
        f.write(POLICY % (tenants, "".join(body)))


def shards(out, records, count, per_tenant=False):
    import duckdb
    con = duckdb.connect()
    if per_tenant:
        count = 200
    per = records // count
    for s in range(count):
        tenant_dir = f"t{s:03}" if per_tenant else "mixed"
        tenant = f"'t{s:03}'" if per_tenant else \
            "'t' || lpad((hash(i * 7 + {s}) % 200)::VARCHAR, 3, '0')".format(s=s)
        part = os.path.join(out, f"tenant={tenant_dir}/dt=2026-11-{1 + s % 28:02}/hour={s % 24:02}")
        os.makedirs(part, exist_ok=True)
        path = os.path.join(part, f"part-bench-{s:06}.parquet")
        con.execute(f"""
COPY (
  SELECT
    make_timestamp(1795000000000000 + (i + {s * per}) * 1000)::TIMESTAMPTZ AS ts,
    'req-' || (i + {s * per})::VARCHAR AS request_id,
    {tenant} AS tenant,
    NULL::VARCHAR AS tenant_claimed,
    ['public', 'internal', 'pii', 'secret'][(1 + hash(i * 13) % 4)::INTEGER] AS data_class,
    ['dev', 'analyst', 'admin', 'owner', 'intern'][(1 + hash(i * 17) % 5)::INTEGER] AS user_role,
    ['auto', 'auto', 'llama', 'mixtral', 'gpt-4o', 'gpt-4o-mini'][(1 + hash(i * 19) % 6)::INTEGER] AS requested_model,
    CASE WHEN hash(i * 23) % 4 = 0 THEN (50 + hash(i) % 950)::BIGINT END AS latency_budget_ms,
    CASE WHEN hash(i * 29) % 5 = 0 THEN ((hash(i) % 20000)::DECIMAL(18,6) / 1000000)::DECIMAL(18,6) END AS cost_cap_per_1k,
    3::BIGINT AS policy_revision,
    CASE WHEN hash(i * 31) % 3 = 0 THEN 'gpu' ELSE 'cloud' END AS endpoint_id,
    NULL::VARCHAR AS fallback_from,
    200::INTEGER AS status,
    (100 + hash(i) % 2000)::BIGINT AS tokens_in,
    (20 + hash(i * 3) % 800)::BIGINT AS tokens_out,
    ((((100 + hash(i) % 2000) * 5000 + (20 + hash(i * 3) % 800) * 15000 + 500) // 1000)::DECIMAL(18,6)
      / 1000000)::DECIMAL(18,6) AS cost_usd
  FROM range({per}) t(i)
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)
""")
    return per * count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--layout", choices=["mixed", "per-tenant"], default="mixed")
    ap.add_argument("--keep", default=None, help="write the shards here and keep them")
    args = ap.parse_args()
    if shutil.which("time") is None and not os.path.exists("/usr/bin/time"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "time"], check=True)
    subprocess.run(["cargo", "build", "--release", "-p", "policyc"], cwd=ROOT, check=True)
    tmp = args.keep or tempfile.mkdtemp(prefix="swy-replay-")
    try:
        audit = os.path.join(tmp, "audit")
        t0 = time.time()
        n = shards(audit, args.records, args.shards, args.layout == "per-tenant")
        print(f"wrote {n:,} records ({args.layout}) in {time.time() - t0:.1f} s", flush=True)
        new = os.path.join(tmp, "new.yaml")
        policy(new, args.rules, moved=20)
        cmd = ["/usr/bin/time", "-f", "%e %M", os.path.join(TARGET, "policyc"), "replay", new,
               "--audit", audit, "--format", "json"]
        for round_ in range(3):
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode not in (0, 5):
                sys.exit(f"policyc replay failed: {p.stderr}")
            wall, rss_kb = p.stderr.strip().splitlines()[-1].split()
            import json
            report = json.loads(p.stdout)
            secs = float(wall)
            print(f"round {round_ + 1}: {report['records']:,} records ({report['replayed']:,} replayed, "
                  f"{report['rerouted']:,} rerouted, {report['read']['distinct_attribute_tuples']:,} "
                  f"distinct tuples) in {secs:.2f} s: {report['records'] / secs / 1e6:.2f} M records/s, "
                  f"peak RSS {int(rss_kb) / 1024:.0f} MB", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
