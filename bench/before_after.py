"""Two trees of the library side by side in one run: bench/insert_read.py and bench/search.py
of each, alternating (A B, then B A, ...), best of the rounds per side, and the ratios.

A benchmark, not a test: it prints figures and asserts nothing about time. Each run is a
fresh process with its tree first on sys.path (each tree's own bench script, so its own
private attributes), ``vault.schema`` loaded first (insert_read.py reads it).

    /tmp/venv/bin/python bench/before_after.py --before /work/old-tree [--after .] [--rounds 2]
        [--n 5000] [--size 20000] [--queries 100]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

WRAP = ("import runpy, sys; root, script = sys.argv[1], sys.argv[2]; sys.path.insert(0, root); "
        "import vault.schema; sys.argv = sys.argv[2:]; runpy.run_path(script, run_name='__main__')")


def run(root: str, script: str, args: list[str]) -> str:
    out = subprocess.run([sys.executable, "-c", WRAP, root, os.path.join(root, "bench", script), *args],
                         cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{root}/bench/{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def insert_read(text: str) -> dict[str, float]:
    """vault and vault-noindex insert and read rec/s (SQLite) from insert_read.py's table."""
    got = {}
    for side in ("vault", "vault-noindex"):
        m = re.search(rf"^{re.escape(side)}\s+sqlite\s+[\d,]+\s+([\d,]+)\s+([\d,]+)", text, re.M)
        if m:
            got[f"{side} insert rec/s"], got[f"{side} read rec/s"] = _num(m.group(1)), _num(m.group(2))
    return got


def search(text: str) -> dict[str, float]:
    """search.py: insert rec/s while building, and the present-query medians (ms)."""
    got = {}
    m = re.search(r"^\s+[\d,]+\s+([\d,]+)\s+[\d.]+\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+\{", text, re.M)
    if m:
        got["search build insert rec/s"] = _num(m.group(1))
    for audit in ("on", "stubbed"):
        m = re.search(rf"^\s+[\d,]+ present\s+{audit}\s+\d+\s+([\d.]+)\s+([\d.]+)", text, re.M)
        if m:
            got[f"find median ms (audit {audit})"] = float(m.group(1))
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the tree to compare against (a git worktree)")
    ap.add_argument("--after", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=5000, help="insert_read.py --n (default 5000)")
    ap.add_argument("--size", type=int, default=20000, help="search.py --sizes (default 20000)")
    ap.add_argument("--queries", type=int, default=100, help="search.py --queries (default 100)")
    args = ap.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for k in range(args.rounds):
        for side in (("before", "after") if k % 2 == 0 else ("after", "before")):
            root = trees[side]
            print(f"round {k + 1}/{args.rounds}: {side} ({root})", file=sys.stderr, flush=True)
            # --sample 0: insert_read.py compares records with its input, and the default schema
            # now reads `dietary` back as a list (a multi-choice field) where _synth wrote text
            got = insert_read(run(root, "insert_read.py", ["--n", str(args.n), "--repeat", "1", "--sample", "0"]))
            got |= search(run(root, "search.py", ["--sizes", str(args.size), "--queries", str(args.queries),
                                                 "--absent", "20", "--scan-queries", "1"]))
            for key, value in got.items():
                keep = min if key.endswith(")") and "ms" in key else max
                best[side][key] = keep(best[side].get(key, value), value)
    print(f"before/after, best of {args.rounds} rounds each, alternating; insert_read.py --n {args.n}, "
          f"search.py --sizes {args.size} --queries {args.queries}")
    print(f"{'figure':<34} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in best["before"]:
        b, a = best["before"][key], best["after"].get(key, float("nan"))
        print(f"{key:<34} {b:>10,.3f} {a:>10,.3f} {a / b:>12.2f}x")
    print("(rec/s: higher is better; ms: lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
