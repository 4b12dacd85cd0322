"""Sealing and opening one record: record format 1 beside format 2, in one run.

A benchmark, not a test: it times ``Codec.seal_record`` and ``Codec.open_record`` (the
write and read hot paths, no database) on the bench workload's records (bench/_synth.py,
encoded as the vault encodes them), alternating the two formats in rounds so that load on
the shared machine falls on both alike, and prints the medians and their ratio.

    .venv/bin/python bench/codec.py --n 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _synth import participants  # noqa: E402

from vault import _crypto as C  # noqa: E402
from vault import compact  # noqa: E402
from vault import envelope as E  # noqa: E402
from vault import schema as S  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    sch = S.load()
    vid = C.random_bytes(16)
    codec = compact.Codec(vid, sch.classes, tuple(sch.fields))
    keys: dict[bytes, tuple[Any, ...]] = {}
    cks = {}
    for i, cls in enumerate(sch.classes):
        kid, secret = bytes([i]) * 8, C.random_bytes(32)
        cks[cls] = (kid, C.Aead(secret))
        keys[kid] = codec.key_entry(cls, 1, cks[cls][1], E.class_box_secret(secret), secret, kid)
    field_class = {n: f.cls for n, f in sch.fields.items()}
    records = []
    for row in participants(args.n, seed=1):
        by_class: dict[str, list[tuple[str, bytes]]] = {c: [] for c in sch.classes}
        for name, value in row.items():
            by_class[sch.fields[name].cls].append((name, sch.fields[name].encode(value)))
        envs = [(c, cks[c][0], 1, cks[c][1], sorted(by_class[c])) for c in sch.classes]
        records.append((C.random_bytes(16), envs))
    want: dict[str, list[str] | None] = {c: None for c in sch.classes}
    times: dict[str, list[float]] = {k: [] for k in ("seal 1", "seal 2", "open 1", "open 2")}
    sizes = {}
    for _ in range(args.rounds):
        for fmt in (1, 2):
            rows = []
            t0 = time.perf_counter()
            for rid, envs in records:
                need = sum(compact.class_randomness(len(e[4]), fmt) for e in envs)
                rows.append(codec.seal_record(rid, envs, C.random_bytes(need), version=fmt))
            times[f"seal {fmt}"].append((time.perf_counter() - t0) / len(records))
            t0 = time.perf_counter()
            for (rid, _), data in zip(records, rows, strict=True):
                codec.open_record(data, rid, keys, want, field_class)
            times[f"open {fmt}"].append((time.perf_counter() - t0) / len(records))
            sizes[fmt] = sum(map(len, rows)) / len(rows)
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    print(f"{args.n} records x {args.rounds} rounds, medians per record")
    for op in ("seal", "open"):
        print(f"  {op}: format 1 {med[op + ' 1']:.1f} us, format 2 {med[op + ' 2']:.1f} us "
              f"(format 2 / format 1 = {med[op + ' 2'] / med[op + ' 1']:.2f})")
    print(f"  row bytes: format 1 {sizes[1]:.0f}, format 2 {sizes[2]:.0f} ({sizes[2] / sizes[1]:.2f})")


if __name__ == "__main__":
    main()
