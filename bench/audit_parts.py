"""Where an audited get() spends its time: each part of the audit entry timed inside the
audited read and alone in a loop, side by side in one run (issue 5 diagnosis).

A benchmark, not a test: it prints figures and asserts nothing about time.

    cd /work/main && /tmp/venv/bin/python bench/audit_parts.py [--n 20000] [--reads 2000] [--rounds 3]

It builds a throwaway SQLite vault of ``--n`` synthetic participants, reads ``--reads``
random records once untimed (issuing their audit pseudonyms), then for ``--rounds``
rounds reads them all with the audit stubbed out (benchmark only) and with it on, in
alternating order. During the audited reads each part of the entry is timed in place
by a thin wrapper (about 0.2 us each, included in its figure): the read itself
(``_get_impl``), the entry's target (``_target``, the record's audit pseudonym), the
detail JSON, the entry hash, the Ed25519 signature and the INSERT. What is left of the
audited read after those and the stubbed read is the transaction (BEGIN IMMEDIATE,
COMMIT with its WAL write) and Python glue. Then the same parts are timed alone, each
in a tight loop over the same inputs. A part that costs more inside the read than
alone is slowed by what runs around it (CPU caches), not by its own code.

Argon2id is lowered in-process (as in the other bench scripts); it plays no part here.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vault  # noqa: E402
import vault._format  # noqa: E402
from vault import audit as A  # noqa: E402

import _synth  # noqa: E402

BENCH_KDF = vault.KdfParams(t=1, m_kib=8, p=1)
PARTS = ("read (_get_impl)", "target (_target)", "detail JSON", "entry hash", "Ed25519 sign", "INSERT")


def timed(acc: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
    return wrapper


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="records in the vault (default 20000)")
    ap.add_argument("--reads", type=int, default=2000, help="records read per round (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of stubbed + audited reads (default 3)")
    args = ap.parse_args(argv)
    if args.n < 1 or not 1 <= args.reads <= args.n or args.rounds < 1:
        ap.error("--n, --reads and --rounds must be positive, and --reads at most --n")
    vault._format.KDF_FLOOR = vault._format.KDF_DEFAULT = BENCH_KDF
    print(f"bench/audit_parts.py  n={args.n:,} reads={args.reads:,} rounds={args.rounds}  cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="dvault-audit-parts-") as tmp:
        v = vault.create(os.path.join(tmp, "a.vault"), "benchmark only passphrase", population=args.n)
        print(f"index plan: {v.status()['index']['plan']} (the default)")
        rng = random.Random(1)
        ids: list[str] = []
        while len(ids) < args.n:
            ids += v.add_many([_synth.participant(rng) for _ in range(min(5000, args.n - len(ids)))])
        rids = random.Random(2).sample(ids, args.reads)
        for rid in rids:
            v.get(rid)  # issues each record's audit pseudonym (a write, once per record)
        run(v, rids, args.rounds)
        v.close()


def run(v: Any, rids: list[str], rounds: int) -> None:
    auditor, store = v._journal.auditor, v._ses.store()
    acc: dict[str, float] = {}
    real = {"get_impl": v._records.get, "target": v._journal.target, "json": A._DETAIL_JSON, "hash": A.entry_hash,
            "sign": auditor._sign, "raw": store.raw}

    def raw(conn: Any, sql: str, params: tuple = ()) -> Any:
        if not sql.startswith("INSERT INTO dv_audit"):
            return real["raw"](conn, sql, params)
        return timed(acc, "INSERT", real["raw"])(conn, sql, params)

    def instrument(on: bool) -> None:
        if on:
            v._records.get = timed(acc, "read (_get_impl)", real["get_impl"])
            v._journal.target = timed(acc, "target (_target)", real["target"])
            A._DETAIL_JSON = timed(acc, "detail JSON", real["json"])
            A.entry_hash = timed(acc, "entry hash", real["hash"])
            auditor._sign = timed(acc, "Ed25519 sign", real["sign"])
            store.raw = raw
        else:
            for obj, name in ((v._records, "get"), (v._journal, "target")):
                obj.__dict__.pop(name, None)
            A._DETAIL_JSON, A.entry_hash, auditor._sign = real["json"], real["hash"], real["sign"]
            store.__dict__.pop("raw", None)

    totals = {True: 0.0, False: 0.0}
    stub_read = 0.0
    gc.collect()
    gc.disable()
    try:
        for k in range(rounds):
            for stub in ((True, False) if k % 2 == 0 else (False, True)):
                auditor.disabled_for_benchmark = stub
                if stub:  # the stubbed read's own _get_impl, for the "read" row
                    v._records.get = timed(acc, "stub read", real["get_impl"])
                else:
                    instrument(True)
                t0 = time.perf_counter()
                for rid in rids:
                    v.get(rid)
                totals[stub] += time.perf_counter() - t0
                instrument(False)
                auditor.disabled_for_benchmark = False
        stub_read = acc.pop("stub read")
    finally:
        instrument(False)
        auditor.disabled_for_benchmark = False
        gc.enable()
    n = rounds * len(rids)
    us = {k: val / n * 1e6 for k, val in acc.items()}
    on_us, stub_us = totals[False] / n * 1e6, totals[True] / n * 1e6

    alone = measure_alone(v, rids)
    print(f"  stubbed get() {stub_us:6.1f} us   audited get() {on_us:6.1f} us   "
          f"audit costs {(1 - stub_us / on_us) * 100:.1f}% of read throughput (audit on {on_us - stub_us:.1f} us a read)")
    print("  (the audited reads carry six timing wrappers, the stubbed ones one: use bench/search.py --audit-bench "
          "for the share itself)")
    print(f"  {'part':<22} {'alone':>9} {'in audited get()':>17} {'inside / alone':>15}")
    for part in PARTS:
        print(f"  {part:<22} {alone[part]:>6.1f} us {us.get(part, 0.0):>14.1f} us {us.get(part, 0.0) / alone[part]:>14.2f}x")
    print(f"  {'read in stubbed get()':<22} {alone['read (_get_impl)']:>6.1f} us {stub_read / n * 1e6:>14.1f} us "
          f"{stub_read / n * 1e6 / alone['read (_get_impl)']:>14.2f}x")
    listed = sum(us.get(p, 0.0) for p in PARTS)
    print(f"  rest of the audited get() (transaction begin/commit with its WAL write, glue): {on_us - listed:.1f} us; "
          f"of the stubbed get() (read-only transaction, glue): {stub_us - stub_read / n * 1e6:.1f} us")


def measure_alone(v: Any, rids: list[str], loops: int = 3) -> dict[str, float]:
    """Each part on its own, in a loop over the same inputs (best of ``loops``)."""
    auditor, store = v._journal.auditor, v._ses.store()
    recs = {}
    with store.tx(write=False):
        for rid in rids:
            recs[rid] = v._records.get(rid)
    details = {rid: {"fields": sorted(rec)} for rid, rec in recs.items()}
    texts = {rid: A._DETAIL_JSON(d) for rid, d in details.items()}
    h = bytes(32)
    targets = {rid: v._journal.target(rid) for rid in rids}
    cases: dict[str, Callable[[str], Any]] = {
        "target (_target)": lambda rid: v._journal.target(rid),
        "detail JSON": lambda rid: A._DETAIL_JSON(details[rid]),
        "entry hash": lambda rid: A.entry_hash(1, h, 1, auditor.actor, "read", targets[rid], texts[rid], b""),
        "Ed25519 sign": lambda rid: auditor._sign(h),
    }
    out: dict[str, float] = {}
    gc.disable()
    try:
        for part, fn in cases.items():
            best = float("inf")
            for _ in range(loops):
                t0 = time.perf_counter()
                for rid in rids:
                    fn(rid)
                best = min(best, time.perf_counter() - t0)
            out[part] = best / len(rids) * 1e6
        # the read alone: inside a read-only transaction of its own, as in either get(), the
        # transaction itself not timed
        best = float("inf")
        for _ in range(loops):
            t_read = 0.0
            for rid in rids:
                with store.tx(write=False):
                    t0 = time.perf_counter()
                    v._records.get(rid)
                    t_read += time.perf_counter() - t0
            best = min(best, t_read)
        out["read (_get_impl)"] = best / len(rids) * 1e6
        # the INSERT alone: the same statement into a scratch copy of the table, in one
        # write transaction per row as the audit does it, minus an empty write transaction
        with store.tx() as conn:
            store.raw(conn, "CREATE TEMP TABLE IF NOT EXISTS bench_parts AS SELECT * FROM dv_audit WHERE 0")
        row = (h, 1, auditor.actor, "read", "AU-XXXX-XXXX-XX", texts[rids[0]], b"", h, bytes(64))
        best = float("inf")
        for _ in range(loops):
            t_ins = 0.0
            for i in range(len(rids)):
                with store.tx() as conn:
                    t0 = time.perf_counter()
                    store.raw(conn, "INSERT INTO bench_parts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (i, *row))
                    t_ins += time.perf_counter() - t0
            best = min(best, t_ins)
            with store.tx() as conn:
                store.raw(conn, "DELETE FROM bench_parts")
        out["INSERT"] = best / len(rids) * 1e6
        with store.tx() as conn:
            store.raw(conn, "DROP TABLE bench_parts")
    finally:
        gc.enable()
    return out


if __name__ == "__main__":
    main()
