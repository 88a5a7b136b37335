#!/usr/bin/env python3
"""Instructions and simulated cache misses per table evaluation, counted by Cachegrind: figures
this noisy VM cannot blur (criterion's wall-clock evaluation figures swing ±30% here), for
comparing two evaluators.

    benches/eval_counts.py [--rules 1000,10000] [--baseline OTHER_EVAL_COUNT]

Runs `eval-count RULES PASSES` (benches/src/bin/eval-count.rs: the criterion benchmark's
mixed traffic, 4,096 requests checked against the reference interpreter) under
`valgrind --tool=cachegrind --cache-sim=yes` at 1 and 11 passes; the difference divided by
10 × 4,096 is the per-decision figure, so compiling and checking cancel out. The cache model
is valgrind's (the host's L1 and last-level sizes), so misses are a simulation: the same
for the same binary, not a measurement of this VM's caches.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUESTS = 4096


def counts(binary, rules, passes):
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                          "--cachegrind-out-file=/dev/null", binary, str(rules), str(passes)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} {rules} {passes} failed:\n{out.stderr}")
    got = {}
    for key, name in (("I", r"I\s+refs"), ("D", r"D\s+refs"), ("D1", r"D1\s+misses"),
                      ("LL", r"LLd\s+misses"), ("Bm", r"Mispredicts")):
        m = re.search(rf"==\d+==\s+{name}:\s+([\d,]+)", out.stderr)
        got[key] = int(m.group(1).replace(",", "")) if m else 0
    return got


def per_eval(binary, rules):
    one, many = counts(binary, rules, 1), counts(binary, rules, 11)
    return {k: (many[k] - one[k]) / (10 * REQUESTS) for k in one}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default="1000,10000")
    ap.add_argument("--baseline", default=None, metavar="EVAL_COUNT",
                    help="another build's eval-count binary, reported beside this one")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "switchyard-benches",
                    "--bin", "eval-count"], cwd=ROOT, check=True)
    this = os.path.join(ROOT, "target", "release", "eval-count")
    builds = [("this", this)] + ([("baseline", args.baseline)] if args.baseline else [])
    print("| rules | build | instructions | data reads+writes | D1 misses | LL misses |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for rules in (int(r) for r in args.rules.split(",")):
        for name, binary in builds:
            c = per_eval(binary, rules)
            print(f"| {rules:,} | {name} | {c['I']:.1f} | {c['D']:.1f} | {c['D1']:.2f} | {c['LL']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
