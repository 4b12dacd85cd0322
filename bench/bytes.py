"""Where a SQLite vault's bytes go: per table and index, and inside a record row.

A benchmark, not a test: it builds one vault of N synthetic participants (bench/_synth.py,
the workload of bench/compare.py) and prints, per table and per SQLite index, the bytes
per record on disk (SQLite's ``dbstat``: pages, payload, unused space), then the parts of
an average record row (framing, wrapped keys, cell framing, nonces, tags, padding).

    .venv/bin/python bench/bytes.py --n 20000
    .venv/bin/python bench/bytes.py --n 20000 --format 2    # rows in record format 2
    .venv/bin/python bench/bytes.py --n 20000 --legacy      # rows in record format 1

``--legacy`` writes the records in format 1 (docs/format.md §6), ``--format 2`` in format 2
(§6b), instead of format 3 (§6c): to compare them, run it once for each.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from _synth import participants  # noqa: E402

import vault  # noqa: E402
from vault import _format as F  # noqa: E402
from vault import envelope as E  # noqa: E402

PASSPHRASE = "correct horse battery staple bench"


def table_bytes(path: str) -> list[tuple[str, int, int, int, int]]:
    """(name, pages, bytes on disk, payload bytes, unused bytes) per table and index."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = con.execute("SELECT name, COUNT(*), SUM(pgsize), SUM(payload), SUM(unused) FROM dbstat "
                           "GROUP BY name ORDER BY SUM(pgsize) DESC").fetchall()
    finally:
        con.close()
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def row_parts(path: str) -> dict[str, float]:
    """Average bytes per record row by part (rows of every record format understood)."""
    con = sqlite3.connect(path)
    try:
        datas = [bytes(r[0]) for r in con.execute("SELECT data FROM dv_records")]
    finally:
        con.close()
    parts: dict[str, float] = {}

    def add(k: str, v: int) -> None:
        parts[k] = parts.get(k, 0) + v

    for data in datas:
        add("row total", len(data))
        if data[:2] in E.ROW_V23:
            joint = data[:2] == F.ROW_V3_PREFIX
            for key, cells in E.split_v2(data):
                add("class keys (DEK references or wraps)", len(key))
                parsed, check = E.unpack_cells_v2(cells, joint)
                add("class tags (format 3)" if joint else "check tags of empty envelopes", len(check))
                for _fno, ct in parsed:
                    if not joint:
                        add("field tags", F.TAG_LEN)
                    add("field padded plaintext", len(ct) - (0 if joint else F.TAG_LEN))
            continue
        for _cls, (dek, cells) in E.unpack_record(data).items():
            add("class keys (DEK references or wraps)", len(dek))
            for _name, blob in E.unpack_cells(cells).items():
                add("field tags", F.TAG_LEN)
                add("field padded plaintext", len(blob) - E.FIELD_HEADER_LEN - F.NONCE_LEN - F.TAG_LEN)
                add("field headers + nonces", E.FIELD_HEADER_LEN + F.NONCE_LEN)
    fixed = sum(v for k, v in parts.items() if k != "row total")
    parts["framing (names or numbers, lengths, counts)"] = parts["row total"] - fixed
    return {k: v / len(datas) for k, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--legacy", action="store_true", help="write record format 1 rows")
    ap.add_argument("--format", type=int, choices=(2, 3), default=3,
                    help="the record format of the rows (unless --legacy): 3 now, 2 as the previous release")
    ap.add_argument("--tmpdir", default=None)
    args = ap.parse_args()
    rows = participants(args.n, seed=1)
    plain = sum(len(str(v).encode()) for r in rows for v in r.values()) / len(rows)
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        path = os.path.join(tmp, "v.db")
        v = vault.create(path, PASSPHRASE, population=args.n)
        if args.legacy:
            v._access.codec.legacy = True  # type: ignore[attr-defined]
        v._access.codec.newest = args.format  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        v.add_many(rows)
        took = time.perf_counter() - t0
        v.close()
        total = os.path.getsize(path)
        print(f"N={args.n:,} records, {plain:.0f} plaintext bytes/record, add_many {took:.1f} s, "
              f"record format {'1' if args.legacy else args.format}")
        print(f"file: {total / args.n:,.0f} bytes/record ({total:,} bytes)")
        print(f"\n{'table or index':<36}{'B/record':>10}{'payload':>10}{'unused':>10}")
        for name, _pages, size, payload, unused in table_bytes(path):
            print(f"{name:<36}{size / args.n:>10.1f}{payload / args.n:>10.1f}{unused / args.n:>10.1f}")
        print("\nrecord row (dv_records.data), average bytes per record:")
        for k, val in row_parts(path).items():
            print(f"  {k:<40}{val:>8.1f}")


if __name__ == "__main__":
    main()
