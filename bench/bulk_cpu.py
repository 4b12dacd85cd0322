"""CPU time of a bulk insert, one tree against another: ``add_many`` of N participants in a
fresh process per run, trees alternating (A B, then B A, ...), forked and one-process.

A benchmark, not a test: it prints figures and asserts nothing about time. Why CPU time
beside wall time: on a shared 2-core machine the wall rate of a run moves by 2x with the
other tenants' load, while the CPU seconds the insert costs (this process and its forked
workers, ``RUSAGE_SELF`` + ``RUSAGE_CHILDREN``) move little; a change that lowers them
raises the rate wherever the cores are free.

    .venv/bin/python bench/bulk_cpu.py --before /work/main [--after .] [--n 10000,100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import importlib, resource, sys, tempfile, time
root, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path[:0] = [root + "/bench", root]
from _synth import participants
import vault
PAR = importlib.import_module("vault._parallel")
rows = participants(n, 1)
with tempfile.TemporaryDirectory() as d:
    v = vault.create("sqlite:///" + d + "/v.db", "benchmark only: four random words", population=n)
    if mode == "1p":
        PAR.MIN_ITEMS = 1 << 62
    def cpu():
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
    c0, t0 = cpu(), time.perf_counter()
    v.add_many(rows)
    print(n / (time.perf_counter() - t0), (cpu() - c0) / n * 1e6)
    v.close()
"""


def run(root: str, n: int, mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(root), str(n), mode],
                         capture_output=True, text=True, check=True)
    rate, us = out.stdout.split()
    return float(rate), float(us)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default=".")
    ap.add_argument("--n", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    trees = {"before": args.before, "after": args.after}
    print(f"{'N':>8} {'mode':<5} {'side':<7} {'rec/s (median)':>15} {'CPU us/row (median)':>20}")
    for n in [int(x) for x in args.n.split(",")]:
        for mode in ("fork", "1p"):
            got: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
            for r in range(args.rounds):
                for side in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                    got[side].append(run(trees[side], n, mode))
            med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in got.items()}
            for side, (rate, us) in med.items():
                print(f"{n:>8,} {mode:<5} {side:<7} {rate:>15,.0f} {us:>20.1f}")
            print(f"{'':>8} {mode:<5} after/before: rate {med['after'][0] / med['before'][0]:.2f}x, "
                  f"CPU per row {med['after'][1] / med['before'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
