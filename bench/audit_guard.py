"""What PostgreSQL's insert guard on dv_audit (vault.audit_guard) costs: an INSERT of a
valid entry timed inside the server (a DO loop, no client or network in it), and an
audited get() with the guard enabled and with it disabled, alternating, one client and
several clients at once (appenders queue on the append lock; the guard runs inside it).

A benchmark, not a test: it prints figures and asserts nothing about time.

    DVAULT_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/audit_guard.py [--reads 1000] [--rounds 3] [--clients 1,4]

It makes a throwaway schema with a vault of 200 records (as the owner, who may switch the
guard off), reads ``--reads`` random records per client and round, and drops the schema.
Argon2id is lowered in-process (as in the other bench scripts); it plays no part here.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import secrets
import statistics
import time
import urllib.parse
from typing import Any

import sqlalchemy as sa

import vault
from vault import _format as F

PASS = "benchmark passphrase, not a secret"


def _reader(url: str, ids: list[str], n: int, seed: int, start: Any, out: Any) -> None:
    F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)
    rnd = random.Random(seed)
    with vault.open(url, PASS) as v:
        v.get(ids[0], ["badge_name"])
        start.wait()
        t0 = time.perf_counter()
        for _ in range(n):
            v.get(rnd.choice(ids), ["badge_name"])
        out.put(time.perf_counter() - t0)


def _round(url: str, ids: list[str], reads: int, clients: int) -> float:
    """Audited reads per second over ``clients`` processes at once."""
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(clients), ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(url, ids, reads, i, start, out)) for i in range(clients)]
    for p in procs:
        p.start()
    spent = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return clients * reads / max(spent)


def _guard(url: str, on: bool) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql(f"ALTER TABLE dv_audit {'ENABLE ALWAYS' if on else 'DISABLE'} TRIGGER dv_audit_guard")
    engine.dispose()


# Inserts valid, labelled entries (zero actor and signature: the guard checks no signature)
# in a loop, and says what each cost; run with the guard on and off.
_LOOP = """DO $$
DECLARE last record; b bytea; zero bytea := decode(repeat('00', 64), 'hex'); t0 timestamptz; n int := NNN;
BEGIN
  t0 := clock_timestamp();
  FOR i IN 1..n LOOP
    SELECT seq, hash INTO last FROM dv_audit ORDER BY seq DESC LIMIT 1;
    b := int8send(last.seq + 1) || int8send(1::bigint) || last.hash || zero || '\\x0472656164'::bytea
      || '\\x00'::bytea || int4send(2) || convert_to('{}', 'UTF8') || int4send(0);
    INSERT INTO dv_audit VALUES (last.seq + 1, last.hash, 1, zero, 'read', '', '{}', ''::bytea,
                                 sha256(convert_to('dvault/v1/log-entry', 'UTF8') || b), zero);
  END LOOP;
  RAISE NOTICE '%', extract(epoch from clock_timestamp() - t0) * 1e6 / n;
END $$"""


def _server(url: str, n: int, rounds: int) -> None:
    import psycopg
    u = sa.engine.make_url(url)
    conn = psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)
    got: dict[bool, list[float]] = {True: [], False: []}
    conn.add_notice_handler(lambda d: got[on].append(float(d.message_primary)))
    for r in range(rounds):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            conn.execute(f"ALTER TABLE dv_audit {'ENABLE ALWAYS' if on else 'DISABLE'} TRIGGER dv_audit_guard")
            conn.execute(_LOOP.replace("NNN", str(n)))
    conn.execute("ALTER TABLE dv_audit ENABLE ALWAYS TRIGGER dv_audit_guard")
    conn.close()
    with_, without = statistics.median(got[True]), statistics.median(got[False])
    print(f"in the server: {with_:.1f} us an INSERT with the guard, {without:.1f} us without "
          f"({with_ - without:+.1f} us)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="1,4")
    args = ap.parse_args()
    F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)
    base = os.environ.get("DVAULT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = "dvbench_" + secrets.token_hex(4)
    admin = sa.create_engine(base)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options={urllib.parse.quote('-csearch_path=' + schema)}"
    try:
        with vault.create(url, PASS) as v:
            ids = v.add_many([{"badge_name": f"Person {i}"} for i in range(200)])
        _server(url, 2000, args.rounds)
        for clients in (int(c) for c in args.clients.split(",")):
            got: dict[bool, list[float]] = {True: [], False: []}
            for r in range(args.rounds):
                for on in ((True, False) if r % 2 == 0 else (False, True)):
                    _guard(url, on)
                    got[on].append(_round(url, ids, args.reads, clients))
            with_, without = statistics.median(got[True]), statistics.median(got[False])
            print(f"{clients} client(s): {with_:8.0f} audited reads/s with the guard, {without:8.0f} without "
                  f"({(1 - with_ / without) * 100:+.1f}% slower; per read {1e6 / with_ - 1e6 / without:+.0f} us)")
        _guard(url, True)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


if __name__ == "__main__":
    main()
