"""Backup and restore: records/s, side by side with SQLite's own backup and pg_dump/pg_restore.

A benchmark, not a test: it prints figures and ratios measured in one run and asserts
nothing about time. It does check that each restored vault opens and holds every record.

    .venv/bin/python bench/lifecycle.py [--n 10000] [--full] [--seed 1] [--pg URL] [--deep]

--full is --n 100000. --pg (default: DVAULT_TEST_PG_URL, if set) adds the PostgreSQL rows;
each run there works in a fresh schema of that database, dropped at the end.

Steps:
 build        a SQLite vault with N synthetic participants (bench/_synth.py), one add_many.
 backup       v.backup(file): one snapshot transaction, every table, signed, SHA-256.
 .backup      sqlite3.Connection.backup() of the same database into a new file: the page
              copy SQLite's ".backup" command does. Target: backup within 3x of it.
 restore      vault.restore(url, file) over the live vault: file checksum, staging, the
              staged vault opened (key statement, schema, users), its audit log verified,
              every record row opened and compared with the log, the backup's signature,
              the ledger merged, then the swap. Target: at least 20,000 records/s.
 --deep       restore(deep=True): also every record row opened and compared with the log.
 restore new  the same into an empty place (no live vault).
 PostgreSQL   the SQLite backup restored into a fresh schema (the laptop-to-server move),
              a backup taken there, pg_dump -Fc of that schema, pg_restore of it into an
              emptied schema, and vault.restore of the PostgreSQL backup over the vault.

Argon2id is lowered to t=1 m=8KiB p=1 in this process only (the slots' unlock is not what
is measured; each restore unlocks twice: the staged vault's open, and no more).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vault  # noqa: E402
from vault import _format as F  # noqa: E402

from _synth import participants  # noqa: E402

PW = "bench pass phrase"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def line(what: str, secs: float, n: int, extra: str = "") -> None:
    print(f"  {what:<34} {secs:8.3f} s  {n / secs:>10,.0f} records/s  {extra}")


def sqlite_part(tmp: str, n: int, seed: int, deep: bool) -> tuple[str, str, dict[str, float]]:
    path = os.path.join(tmp, "v.vault")
    rows = participants(n, seed)
    t, _ = timed(lambda: _build(path, rows))
    print(f"built {n} records in {t:.1f} s ({os.path.getsize(path) / 1e6:.1f} MB)")
    out: dict[str, float] = {}
    with vault.open(path, PW) as v:
        out["backup"], info = timed(lambda: v.backup(os.path.join(tmp, "v.dvbak")))
    line("backup (dvault)", out["backup"], n, f"{info['bytes'] / 1e6:.1f} MB file")

    def page_copy() -> None:
        src = sqlite3.connect(path)
        dst = sqlite3.connect(os.path.join(tmp, "copy.sqlite"))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    out[".backup"], _ = timed(page_copy)
    line("sqlite3 .backup (page copy)", out[".backup"], n)
    out["restore"], r = timed(lambda: vault.restore(path, os.path.join(tmp, "v.dvbak"), passphrase=PW))
    assert r.records == n
    line("restore over the vault (verified)", out["restore"], n)
    if deep:
        out["restore_deep"], r = timed(lambda: vault.restore(path, os.path.join(tmp, "v.dvbak"), passphrase=PW,
                                                             deep=True))
        line("restore --deep (every row opened)", out["restore_deep"], n)
    fresh = os.path.join(tmp, "fresh.vault")
    out["restore_new"], r = timed(lambda: vault.restore(fresh, os.path.join(tmp, "v.dvbak"), passphrase=PW))
    line("restore into an empty place", out["restore_new"], n)
    with vault.open(fresh, PW) as v:
        assert v.count() == n
    return path, os.path.join(tmp, "v.dvbak"), out


def _build(path: str, rows: list[dict[str, object]]) -> None:
    with vault.create(path, PW, population=len(rows)) as v:
        v.add_many(rows)


def pg_part(pg: str, tmp: str, bak: str, n: int) -> dict[str, float]:
    import secrets
    import urllib.parse

    import sqlalchemy as sa
    schema = "dvbench_" + secrets.token_hex(4)
    sep = "&" if "?" in pg else "?"
    url = f"{pg}{sep}options={urllib.parse.quote('-csearch_path=' + schema)}"
    libpq = pg.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    admin = sa.create_engine(pg)
    out: dict[str, float] = {}
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        out["restore_pg"], _ = timed(lambda: vault.restore(url, bak, passphrase=PW))
        line("restore SQLite backup into PG", out["restore_pg"], n)
        with vault.open(url, PW) as v:
            assert v.count() == n
            out["backup_pg"], _ = timed(lambda: v.backup(os.path.join(tmp, "pg.dvbak")))
        line("backup (dvault, PostgreSQL)", out["backup_pg"], n)
        dump = os.path.join(tmp, "pg.dump")
        out["pg_dump"], _ = timed(lambda: subprocess.run(["pg_dump", "-Fc", "-n", schema, "-f", dump, libpq],
                                                          check=True))
        line("pg_dump -Fc", out["pg_dump"], n)
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        out["pg_restore"], _ = timed(lambda: subprocess.run(["pg_restore", "-d", libpq, dump], check=True))
        line("pg_restore", out["pg_restore"], n)
        out["restore_pg2"], _ = timed(lambda: vault.restore(url, os.path.join(tmp, "pg.dvbak"), passphrase=PW))
        line("restore PG backup over PG vault", out["restore_pg2"], n)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--full", action="store_true", help="100,000 records")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg", default=os.environ.get("DVAULT_TEST_PG_URL"))
    ap.add_argument("--deep", action="store_true", help="also time restore(deep=True)")
    args = ap.parse_args()
    n = 100_000 if args.full else args.n
    F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{n} records; SQLite")
        _path, bak, s = sqlite_part(tmp, n, args.seed, args.deep)
        p = pg_part(args.pg, tmp, bak, n) if args.pg else {}
    print("ratios (lower is better for times):")
    print(f"  backup / sqlite3 .backup           {s['backup'] / s['.backup']:6.2f}x   (target <= 3x)")
    print(f"  restore (verified) records/s       {n / s['restore']:,.0f}   (target >= 20,000)")
    if p:
        print(f"  PG backup / pg_dump                {p['backup_pg'] / p['pg_dump']:6.2f}x")
        print(f"  PG restore (verified) / pg_restore {p['restore_pg2'] / p['pg_restore']:6.2f}x")
        print(f"  PG restore (verified) records/s    {n / p['restore_pg2']:,.0f}")


if __name__ == "__main__":
    main()
