"""Single adds by who adds: the recovery passphrase, the lead's identity and a staff
identity, interleaved on one vault (one add each in turn), medians and rates.

A benchmark, not a test: it prints figures only. Why by role: a managing handle's add
re-seals the canary list and signs the key statement again in its transaction (docs/
threat-model.md 10: a canary's add looks like any other of the lead's), a staff add
does not; bench/compare.py measures the creating handle's (the recovery passphrase's).

    .venv/bin/python bench/add_roles.py [--n 10000] [--adds 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _synth import participants
from vault.identity import Identity

import vault

PASSPHRASE = "correct horse battery staple bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--adds", type=int, default=300)
    args = ap.parse_args()
    rows = participants(args.n + 3 * args.adds, 1)
    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite:///" + os.path.join(tmp, "v.db")
        lead, staff = Identity.generate(), Identity.generate()
        with vault.create(url, PASSPHRASE, lead=lead, population=args.n) as v:
            v.add_user(staff.public.to_line(), "sam", "staff")
            v.add_many(rows[:args.n])
        handles = {"recovery passphrase": vault.open(url, PASSPHRASE), "lead identity": vault.open(url, identity=lead),
                   "staff identity": vault.open(url, identity=staff)}
        took: dict[str, list[float]] = {k: [] for k in handles}
        extra = iter(rows[args.n:])
        for _ in range(args.adds):
            for who, h in handles.items():
                row = next(extra)
                t = time.perf_counter()
                h.add(row)
                took[who].append(time.perf_counter() - t)
        for h in handles.values():
            h.close()
    for who, ts in took.items():
        ts = ts[10:]  # the first few warm the caches
        print(f"{who:20s} single add: median {statistics.median(ts) * 1e3:.3f} ms, {len(ts) / sum(ts):,.0f} adds/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
