"""Peak memory of a bulk insert: ``add_many`` of N synthetic participants (default
100,000) in a fresh process, its peak RSS read with ``resource.getrusage`` (the parent's
``ru_maxrss`` and, separately, the forked workers', ``RUSAGE_CHILDREN``).

A benchmark, not a test: it prints figures and whether the target (issue 22: under
500 MB peak RSS for 100,000 rows) is met; it asserts nothing. The rows are generated in
the measured process before the vault is created; their share is printed too
(``rows only``: the peak of a process that generates them and stops), so the vault's own
share is the difference.

    .venv/bin/python bench/memory.py                 # N = 100,000 (about 40 s)
    .venv/bin/python bench/memory.py --n 20000 --one-process
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

TARGET_MB = 500

CHILD = """
import os, resource, sys
sys.path.insert(0, {bench!r})
from _synth import participants
rows = participants({n}, 1)
if {vault_on}:
    import vault
    import vault._parallel as PAR
    if {one}:
        PAR.MIN_ITEMS = 1 << 62
    v = vault.create("sqlite:///" + {path!r}, "correct horse battery staple bench", population={n})
    ids = v.add_many(rows)
    assert len(ids) == {n}
    v.close()
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(me, kids)
"""


def peak(n: int, vault_on: bool, one: bool, tmp: str) -> tuple[float, float]:
    """(this process's peak RSS, the largest worker's) in MB, for one fresh process."""
    bench = os.path.dirname(os.path.abspath(__file__))
    code = CHILD.format(bench=bench, n=n, vault_on=vault_on, one=one, path=os.path.join(tmp, f"m-{vault_on}-{one}.db"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the measured process failed:\n{out.stderr[-2000:]}")
    me, kids = (int(x) for x in out.stdout.split())
    return me / 1024, kids / 1024  # Linux reports KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--one-process", action="store_true", help="also measure with the forked workers off")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, _ = peak(args.n, False, False, tmp)
        print(f"rows only ({args.n:,} participants generated): peak RSS {base:,.0f} MB")
        runs = [("add_many (forked workers)", False)] + ([("add_many (one process)", True)] if args.one_process else [])
        for label, one in runs:
            me, kids = peak(args.n, True, one, tmp)
            ok = "met" if me < TARGET_MB and kids < TARGET_MB else "NOT met"
            print(f"{label}: peak RSS {me:,.0f} MB (the vault's share {me - base:,.0f} MB), largest worker "
                  f"{kids:,.0f} MB; target < {TARGET_MB} MB per process: {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
