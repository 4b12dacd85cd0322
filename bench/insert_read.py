"""Bulk insert and full read: the vault beside a plaintext floor and a Python peer.

A benchmark, not a test: it prints figures and whether the targets are met, and
asserts nothing about time. It does check that every side reads back what it wrote.

    cd /work/main && /tmp/venv/bin/python bench/insert_read.py [--n 100000] [--repeat 1]
        [--seed 1] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Sides, each on N synthetic participants with the same 12 fields (bench/_synth.py):

 (a) floor  plaintext SQLAlchemy Core on SQLite: a table with an id and 12 text/date
            columns, one executemany in one transaction, then one full select.
 (b) peer   sqlalchemy-utils StringEncryptedType(sa.Unicode, key, AesGcmEngine) on the
            same 12 columns (dates stored as ISO strings), same Core insert and select.
 (c) vault  vault.create(), v.add_many(rows) (one transaction), then a full decrypt
            with ``for rec in v.records()``. The default schema: blind indexes on
            email, phone, legal_name (+ its tokens) and passport_number.
 (d) vault-noindex  the same as (c) with the same 12 fields, but with a schema in which
            every field has search = "none" (the default schema text with
            ``search = "exact"`` -> ``search = "none"`` and the ``tokens = true`` lines
            dropped), so no blind-index terms are computed or stored. It separates the
            core (envelope encryption, issue 2's targets) from the cost of blind indexes.

Each side gets a fresh database file in a temporary directory per repeat; the best of
``--repeat`` runs is reported. ``--postgres URL`` also runs (c) against PostgreSQL in a
fresh schema ``bench_<hex>`` that is dropped afterwards.

Argon2id cost: the benchmark lowers vault._format.KDF_FLOOR and KDF_DEFAULT to
t=1 m=8KiB p=1 (in this process only) so that creating the vault does not dominate;
the unlock cost is measured separately.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _synth  # noqa: E402
from _synth import check as _check, file_size as _file_size, timed as _timed  # noqa: E402
from _synth import DATE_FIELDS, FIELDS  # noqa: E402

import vault  # noqa: E402
import vault._format  # noqa: E402
import vault.schema  # noqa: E402 - the package loads its submodules lazily

# Targets (docs, issue 2): on SQLite, vault insert >= 10k rec/s, full-decrypt read >= 12k
# rec/s, and both at least 2.5x the Python peer. Printed for both vault sides.
TARGET_INSERT = 10_000
TARGET_READ = 12_000
TARGET_VS_PEER = 2.5

BENCH_KDF = vault.KdfParams(t=1, m_kib=8, p=1)
PASSPHRASE = "correct horse battery staple, benchmark only"


def noindex_schema_text() -> str:
    """The default schema with no blind index at all (every field search = "none")."""
    lines = []
    for line in vault.schema.default_schema_text().splitlines(keepends=True):
        if line.strip().replace(" ", "") == "tokens=true":
            continue
        lines.append(line.replace('search = "exact"', 'search = "none"'))
    text = "".join(lines)
    parsed = vault.load_schema(text)
    bad = [f.name for f in parsed.fields.values() if f.search != "none" or f.tokens]
    if bad or 'search = "exact"' in text:
        raise SystemExit(f"noindex schema still indexes {bad}")
    return text


@dataclass
class Result:
    name: str
    backend: str
    n: int
    insert_s: list[float] = field(default_factory=list)
    read_s: list[float] = field(default_factory=list)
    size_bytes: int | None = None
    note: str = ""

    @property
    def insert_rate(self) -> float:
        return self.n / min(self.insert_s)

    @property
    def read_rate(self) -> float:
        return self.n / min(self.read_s)


# -- (a) floor and (b) peer: the same Core insert and select, different column types --------
def _run_core(name: str, path: str, columns: list[sa.Column],
              params: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]],
              want: list[tuple[Any, ...]], res: Result) -> None:
    """One executemany in one transaction, one full select; every row read back is checked."""
    engine = sa.create_engine(f"sqlite:///{path}")
    md = sa.MetaData()
    t = sa.Table("participants", md, sa.Column("id", sa.Integer, primary_key=True), *columns)
    md.create_all(engine)

    def insert() -> None:
        with engine.begin() as conn:
            conn.execute(t.insert(), params() if callable(params) else params)

    def read() -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(sa.select(t)).all()

    dt_ins, _ = _timed(insert)
    dt_read, got = _timed(read)
    engine.dispose()
    _check(len(got) == len(want), f"{name} read {len(got)} rows, wrote {len(want)}")
    for w, g in zip(want, got):
        _check(tuple(g[1:]) == w, f"{name} row differs")
    res.insert_s.append(dt_ins)
    res.read_s.append(dt_read)
    res.size_bytes = _file_size(path)


def run_floor(rows: list[dict[str, Any]], tmp: str, rep: int, res: Result) -> None:
    """(a) plaintext columns."""
    cols = [sa.Column(f, sa.Date if f in DATE_FIELDS else sa.Text) for f in FIELDS]
    _run_core("floor", os.path.join(tmp, f"floor-{rep}.sqlite"), cols, rows,
              [tuple(r[f] for f in FIELDS) for r in rows], res)


def run_peer(rows: list[dict[str, Any]], tmp: str, rep: int, res: Result) -> None:
    """(b) sqlalchemy-utils StringEncryptedType + AesGcmEngine on every column."""
    from sqlalchemy_utils import StringEncryptedType
    from sqlalchemy_utils.types.encrypted.encrypted_type import AesGcmEngine

    key = secrets.token_hex(32)
    cols = [sa.Column(f, StringEncryptedType(sa.Unicode, key, AesGcmEngine)) for f in FIELDS]

    def params() -> list[dict[str, Any]]:
        # The peer has no date type: dates go in as ISO strings (converted inside the timing,
        # as the vault and the floor also encode dates inside theirs).
        return [{f: r[f].isoformat() if f in DATE_FIELDS else r[f] for f in FIELDS} for r in rows]

    want = [tuple(r[f].isoformat() if f in DATE_FIELDS else r[f] for f in FIELDS) for r in rows]
    _run_core("peer", os.path.join(tmp, f"peer-{rep}.sqlite"), cols, params, want, res)


# -- (c) the vault -------------------------------------------------------------------------
def run_vault(rows: list[dict[str, Any]], url: str, res: Result, sample: int, seed: int,
              size_fn: Callable[[], int] | None, schema: str | None = None) -> None:
    t0 = time.perf_counter()
    v = vault.create(url, PASSPHRASE, kdf=BENCH_KDF, schema=schema)
    create_s = time.perf_counter() - t0
    print(f"  vault index plan: {v.status()['index']['plan']} (the default), population "
          f"{v.status()['index']['population']}", flush=True)
    try:
        dt_ins, ids = _timed(lambda: v.add_many(rows))

        def read() -> list[vault.Record]:
            out = []
            for rec in v.records():  # every class, every field decrypted and decoded
                out.append(rec)
            return out

        dt_read, got = _timed(read)
        _check(len(ids) == len(rows) and len(got) == len(rows),
               f"vault read {len(got)} records, wrote {len(rows)}")
        # Verify a sample (records come back in random-id order).
        by_id = {rec.id: rec for rec in got}
        pick = random.Random(seed).sample(range(len(rows)), min(sample, len(rows)))
        for i in pick:
            rec = by_id.get(ids[i])
            _check(rec is not None, f"vault record {i} missing")
            _check(dict(rec) == rows[i], f"vault record {i} differs")
        res.note = (f"create (KDF t=1 m=8KiB p=1) {create_s * 1000:.0f} ms; verified {len(pick)} sampled records; "
                    f"schema indexes: {', '.join(f.name for f in v.schema.fields.values() if f.search == 'exact') or 'none'}")
    finally:
        v.close()
    res.insert_s.append(dt_ins)
    res.read_s.append(dt_read)
    if size_fn is not None:
        res.size_bytes = size_fn()


def run_vault_sqlite(rows: list[dict[str, Any]], tmp: str, rep: int, res: Result,
                     sample: int, seed: int, schema: str | None = None) -> None:
    path = os.path.join(tmp, f"{res.name}-{rep}.vault")
    run_vault(rows, path, res, sample, seed, lambda: _file_size(path), schema)


def run_vault_postgres(rows: list[dict[str, Any]], base_url: str, res: Result,
                       sample: int, seed: int) -> None:
    schema = f"bench_{secrets.token_hex(6)}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    u = make_url(base_url)
    url = u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def size() -> int:
        with admin.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind IN ('r', 'm')"), {"s": schema}).scalar_one())

    try:
        run_vault(rows, url, res, sample, seed, size)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
    res.note += f"; schema {schema} (dropped)"


# -- report --------------------------------------------------------------------------------
def _fmt_rate(x: float) -> str:
    return f"{x:>10,.0f}"


def report(results: list[Result], repeat: int) -> None:
    print()
    print(f"{'side':<13} {'backend':<10} {'N':>8} {'insert rec/s':>13} {'read rec/s':>11} "
          f"{'insert s':>9} {'read s':>8} {'bytes/rec':>10}")
    for r in results:
        size = f"{r.size_bytes / r.n:>10,.0f}" if r.size_bytes is not None else f"{'-':>10}"
        print(f"{r.name:<13} {r.backend:<10} {r.n:>8,} {_fmt_rate(r.insert_rate):>13} "
              f"{_fmt_rate(r.read_rate):>11} {min(r.insert_s):>9.2f} {min(r.read_s):>8.2f} {size}")
    print(f"(best of {repeat}; bytes/rec = database size on disk / N, "
          "PostgreSQL: pg_total_relation_size of the schema's tables)")
    for r in results:
        if r.note:
            print(f"  {r.name} [{r.backend}]: {r.note}")

    by = {(r.name, r.backend): r for r in results}
    floor, peer = by.get(("floor", "sqlite")), by.get(("peer", "sqlite"))
    vaults = [x for x in (by.get(("vault", "sqlite")), by.get(("vault-noindex", "sqlite"))) if x is not None]
    v = vaults[0] if vaults else None
    if vaults:
        print()
        print("ratios (SQLite)                insert      read")

        def ratio(a: Result, b: Result) -> None:
            print(f"  {a.name + ' / ' + b.name:<27} {a.insert_rate / b.insert_rate:>6.2f}x "
                  f"{a.read_rate / b.read_rate:>8.2f}x")

        for x in vaults:
            if peer is not None:
                ratio(x, peer)
        for x in vaults:
            if floor is not None:
                ratio(x, floor)
        if peer is not None and floor is not None:
            ratio(peer, floor)
        if len(vaults) == 2:
            ratio(vaults[0], vaults[1])
            print("  (vault / vault-noindex insert: the share of the insert rate left after the blind indexes)")
        print()
        print("targets (SQLite; issue 2's targets, shown for both vault sides)")

        def line(label: str, ok: bool, got: str) -> None:
            print(f"  {label:<50} {'MET' if ok else 'NOT MET':<8} ({got})")

        for x in vaults:
            line(f"{x.name} insert >= {TARGET_INSERT:,} rec/s", x.insert_rate >= TARGET_INSERT,
                 f"{x.insert_rate:,.0f}")
            line(f"{x.name} full-decrypt read >= {TARGET_READ:,} rec/s", x.read_rate >= TARGET_READ,
                 f"{x.read_rate:,.0f}")
            if peer is not None:
                ri, rr = x.insert_rate / peer.insert_rate, x.read_rate / peer.read_rate
                line(f"{x.name} insert >= {TARGET_VS_PEER}x peer", ri >= TARGET_VS_PEER, f"{ri:.2f}x")
                line(f"{x.name} read >= {TARGET_VS_PEER}x peer", rr >= TARGET_VS_PEER, f"{rr:.2f}x")
    pg = by.get(("vault", "postgres"))
    if pg is not None and v is not None and pg.n == v.n:
        print(f"  (PostgreSQL vault: insert {pg.insert_rate / v.insert_rate:.2f}x, "
              f"read {pg.read_rate / v.read_rate:.2f}x the SQLite vault; targets are for SQLite)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="participants (default 100000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the best is reported (default 1)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (default 1)")
    ap.add_argument("--sample", type=int, default=1000, help="vault records verified after the read (default 1000)")
    ap.add_argument("--postgres", metavar="URL", help="also run the vault against PostgreSQL, "
                    "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (a fresh schema is made and dropped)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        ap.error("--n and --repeat must be positive")

    # Benchmark-only: cheap Argon2id so that unlocking does not dominate.
    vault._format.KDF_FLOOR = vault._format.KDF_DEFAULT = BENCH_KDF

    import cryptography
    import sqlalchemy_utils
    print(f"bench/insert_read.py  {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"python {platform.python_version()}  sqlalchemy {sa.__version__}  sqlalchemy-utils "
          f"{sqlalchemy_utils.__version__}  cryptography {cryptography.__version__}  "
          f"defenders-vault {vault.__version__}  cpus {os.cpu_count()}")
    print(f"NOTE: Argon2id lowered to t={BENCH_KDF.t} m={BENCH_KDF.m_kib}KiB p={BENCH_KDF.p} for this "
          "benchmark only (vault._format.KDF_FLOOR/KDF_DEFAULT patched in-process); "
          "unlock cost is measured separately.")

    t0 = time.perf_counter()
    rows = _synth.participants(args.n, args.seed)
    short, notes = _synth.mean_lengths(rows)
    print(f"synthetic data: {args.n:,} participants x {len(FIELDS)} fields (5 classes), seed {args.seed}, "
          f"mean text {short:.1f} chars, mean notes {notes:.1f} chars, generated in "
          f"{time.perf_counter() - t0:.1f} s")

    floor = Result("floor", "sqlite", args.n, note="plaintext SQLAlchemy Core, executemany + select")
    peer = Result("peer", "sqlite", args.n,
                  note="sqlalchemy-utils StringEncryptedType(Unicode, AesGcmEngine), all rows verified")
    vlt = Result("vault", "sqlite", args.n)
    vnx = Result("vault-noindex", "sqlite", args.n)
    noindex_schema = noindex_schema_text()
    results = [floor, peer, vlt, vnx]
    pg = Result("vault", "postgres", args.n) if args.postgres else None
    if pg is not None:
        results.append(pg)

    with tempfile.TemporaryDirectory(prefix="dvault-bench-") as tmp:
        for rep in range(args.repeat):
            for label, fn in (("floor", lambda: run_floor(rows, tmp, rep, floor)),
                              ("peer", lambda: run_peer(rows, tmp, rep, peer)),
                              ("vault", lambda: run_vault_sqlite(rows, tmp, rep, vlt, args.sample, args.seed)),
                              ("vault-noindex", lambda: run_vault_sqlite(rows, tmp, rep, vnx, args.sample,
                                                                         args.seed, noindex_schema))):
                t = time.perf_counter()
                fn()
                print(f"  run {rep + 1}/{args.repeat} {label:<13} sqlite    done in {time.perf_counter() - t:6.1f} s",
                      flush=True)
            if pg is not None:
                t = time.perf_counter()
                run_vault_postgres(rows, args.postgres, pg, args.sample, args.seed)
                print(f"  run {rep + 1}/{args.repeat} vault         postgres  done in {time.perf_counter() - t:6.1f} s",
                      flush=True)
            for f in os.listdir(tmp):  # keep the temp dir small between repeats
                os.unlink(os.path.join(tmp, f))

    report(results, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
