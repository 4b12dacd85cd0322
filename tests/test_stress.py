"""Crash and concurrency stress, on SQLite and PostgreSQL, each ending with ``verify``:
SIGKILL at random moments of ``rotate --reencrypt``, of a re-index and of a purge of expired
records; and four processes
writing, reading, rotating and revoking at once. Behind the slow marker; the number of
trials (DVAULT_STRESS_TRIALS) and the seconds of the mixed run (DVAULT_STRESS_SECONDS) are
bounded in CI."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE, PG_URL, _pg_schema

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "helpers" / "stress_child.py"
TRIALS = int(os.environ.get("DVAULT_STRESS_TRIALS", "20"))
SECONDS = float(os.environ.get("DVAULT_STRESS_SECONDS", "20"))
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not PG_URL:
        pytest.skip("PostgreSQL tests need DVAULT_TEST_PG_URL")
    return str(request.param)


@contextlib.contextmanager
def place(backend: str, tmp: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / (name + '.vault')}"
        return
    with _pg_schema() as url:
        yield url


def rows(n: int) -> list[dict[str, object]]:
    return [{"legal_name": f"Person {i}", "badge_name": f"p{i}", "email": f"p{i}@example.org",
             "risk_notes": "note " * 10} for i in range(n)]


def snapshot(v: vault.Vault) -> dict[str, dict[str, object]]:
    return {r.id: dict(r) for r in v.records()}


def verified(v: vault.Vault) -> vault.VerifyReport:
    report = v.verify()
    assert report.ok, str(report)
    return report


# Rows of the rotate and re-index kill trials: enough that the job lasts a few tenths of a
# second (150 rows re-index in ~40 ms here: a kill's own latency is a large part of that).
JOB_ROWS = 800


def _until_batch(child: subprocess.Popen[str]) -> bool:
    """Read the child's facts up to its first batch (True) or its end (False)."""
    assert child.stdout is not None
    while line := child.stdout.readline():
        fact = json.loads(line)
        if "batch" in fact:
            return True
        if fact == {"finished": True}:
            return False
    raise AssertionError("the job ended without saying so")


def _timed(url: str, what: str) -> tuple[float, float]:
    """(seconds from the job's start to its end, from its first batch to its end)."""
    child = subprocess.Popen([sys.executable, str(CHILD), url, PASSPHRASE, what], env=ENV, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and json.loads(child.stdout.readline()) == {"started": True}
    t0 = time.perf_counter()
    batched = _until_batch(child)  # a purge says no batches: it is one transaction
    t1 = time.perf_counter() if batched else t0
    while batched and json.loads(child.stdout.readline()) != {"finished": True}:
        pass
    child.wait()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def _kill_trial(backend: str, tmp: Path, seed: int, what: str, windows: tuple[float, float]) -> bool:
    """One run of ``what`` killed at a random moment; True if it was killed mid-way. Odd
    seeds aim from the job's first batch on (the job is then surely under way: a faster
    job must not leave most kills before or after it), even seeds from its start."""
    rng = random.Random(seed)
    with place(backend, tmp, f"kill{seed}") as url:
        with vault.create(url, PASSPHRASE) as v:
            v.add_many(rows(JOB_ROWS))
            before = snapshot(v)
        child = subprocess.Popen([sys.executable, str(CHILD), url, PASSPHRASE, what], env=ENV,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and json.loads(child.stdout.readline()) == {"started": True}
        if seed % 2 and _until_batch(child):
            time.sleep(rng.uniform(0, windows[1]))
        else:
            time.sleep(rng.uniform(0, windows[0]))  # some land after the end: those are checked too
        child.send_signal(signal.SIGKILL)
        child.wait()
        with vault.open(url, PASSPHRASE) as v:
            status = v.status()
            midway = status["rotation_pending"] if what == "rotate" else status["index"]["reindex_pending"]
            report = verified(v)  # whatever the moment: intact, and says what it could not count
            # (a rotation re-indexes under the new key versions too)
            assert ("index (re-index)" in report.skipped) == status["index"]["reindex_pending"]
            assert snapshot(v) == before
            if what == "rotate":
                v.rotate(reencrypt=True)  # resumes (or rotates once more)
            else:
                v.reindex()  # resumes (or rebuilds once more)
            report = verified(v)
            assert not report.skipped and snapshot(v) == before
            assert [r.id for r in v.find(email="p7@example.org")]
        return bool(midway)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("what", ["rotate", "reindex"])
def test_sigkill_during_rotate_reencrypt_and_reindex(backend: str, what: str, tmp_path: Path) -> None:
    with place(backend, tmp_path, "calibrate") as url:
        with vault.create(url, PASSPHRASE) as v:
            v.add_many(rows(JOB_ROWS))
        windows = _timed(url, what)
    hits = sum(_kill_trial(backend, tmp_path, seed, what, windows) for seed in range(TRIALS))
    assert hits >= TRIALS // 3, f"only {hits}/{TRIALS} kills landed mid-way; the test lost its teeth"


def _facts(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_four_processes_write_read_rotate_and_revoke(backend: str, tmp_path: Path) -> None:
    """A writer (staff), a reader (staff, revoked half-way), a rotator (recovery passphrase)
    and the lead revoking the reader, all at once for DVAULT_STRESS_SECONDS. Afterwards
    verify passes, every record the writer committed is there with its last value (or
    shredded as it said), and the revoked reader was refused."""
    home = tmp_path
    people = {name: Identity.generate() for name in ("lead", "writer", "reader")}
    for name, ident in people.items():
        ident.save(home / f"{name}.dvid", "identity pass words")
    with place(backend, tmp_path, "mix") as url:
        with vault.create(url, PASSPHRASE, lead=people["lead"]) as v:
            v.add_user(people["writer"].public, "writer", "staff")
            v.add_user(people["reader"].public, "reader", "staff")
            v.add_many(rows(40))
        procs = {role: subprocess.Popen([sys.executable, str(CHILD), url, PASSPHRASE, role, str(SECONDS), str(home)],
                                        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for role in ("writer", "reader", "rotator", "revoker")}
        outs = {role: p.communicate(timeout=SECONDS * 10 + 300) for role, p in procs.items()}
        for role, p in procs.items():
            assert p.returncode == 0, f"{role}: {outs[role][1][-2000:]}"
        facts = {role: _facts(out) for role, (out, _err) in outs.items()}
        assert any("revoked" in f for f in facts["revoker"])
        assert any("rotated" in f for f in facts["rotator"]), (facts["rotator"], outs["rotator"][1][-3000:])
        live: dict[str, str] = {}
        for f in facts["writer"]:
            for rid in f.get("added", []):  # type: ignore[union-attr]
                live[str(rid)] = f"w-new-{rid}"
            if "updated" in f:
                live[str(f["updated"])] = str(f["email"])
            if "shredded" in f:
                live.pop(str(f["shredded"]))
        assert live, "the writer committed nothing: the run proves nothing"
        with vault.open(url, identity=people["lead"]) as v:
            report = verified(v)
            assert report.counts["records"] == 40 + len(live)
            present = {r.id: r["email"] for r in v.records(fields=["email"])}
            for rid, email in live.items():
                assert rid in present
                if not email.startswith("w-new-"):
                    assert present[rid] == email
            assert "reader" not in [u.name for u in v.users()]
        with pytest.raises((vault.AccessDenied, vault.WrongPassphrase, vault.IntegrityError)):
            vault.open(url, identity=people["reader"]).close()


# -- SIGKILL during a purge of expired records ----------------------------------------------------
PURGE_RULE = '\n[retention]\nafter = "departure"\ndays = 30\n'
EXPIRED, LIVE = 100, 50


def _purge_vault(url: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, object]]]:
    """A vault whose rule expires EXPIRED records (departed in 2020) and keeps LIVE (departing
    in 2099); (expired id -> badge pseudonym, live id -> badge pseudonym, every record's content)."""
    from test_retention import _schema
    with vault.create(url, PASSPHRASE, schema=_schema(PURGE_RULE)) as v:
        old = v.add_many([{**r, "departure": dt.date(2020, 1, 1)} for r in rows(EXPIRED)])
        new = v.add_many([{**r, "email": f"live{i}@example.org", "departure": dt.date(2099, 1, 1)}
                          for i, r in enumerate(rows(LIVE))])
        badges = {rid: v.pseudonym(rid, "badge") for rid in old + new}
        return ({rid: badges[rid] for rid in old}, {rid: badges[rid] for rid in new}, snapshot(v))


def _raw_ids(url: str) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """(record row ids, id prefixes any index row names (8 bytes: index plan version 3), ids
    the shred ledger names), read raw."""
    from vault.store import split_ids

    from conftest import raw_engine
    eng = raw_engine(url)
    try:
        with eng.connect() as c:
            recs = {bytes(r[0]) for r in c.exec_driver_sql("SELECT id FROM dv_records")}
            indexed = {i for (blob,) in c.exec_driver_sql("SELECT ids FROM dv_index") for i in split_ids(bytes(blob), 8)}
            has_ledger = sa.inspect(c).has_table("dv_shreds")
            ledger = {bytes(r[0]) for r in c.exec_driver_sql("SELECT rid FROM dv_shreds")} if has_ledger else set()
        return recs, indexed, ledger
    finally:
        eng.dispose()


def _all_or_nothing(url: str, expired: dict[str, str], live: dict[str, str],
                    before: dict[str, dict[str, object]]) -> int:
    """Every record fully there (content, index, pseudonym) or fully shredded (no row, no index
    entry, no pseudonym, named by the ledger); the live ones all there. Returns how many
    expired records are shredded."""
    recs, indexed, ledger = _raw_ids(url)
    with vault.open(url, PASSPHRASE) as v:
        verified(v)
        now = snapshot(v)
        shredded = 0
        for rid, badge in {**expired, **live}.items():
            raw = bytes.fromhex(rid)
            if rid in now:
                assert now[rid] == before[rid] and raw in recs and raw not in ledger
                assert v.resolve(badge).id == rid
                assert [r.id for r in v.find(email=str(before[rid]["email"]))] == [rid]
                continue
            assert rid in expired, "a record the rule keeps was shredded"
            shredded += 1
            assert raw not in recs and raw[:8] not in indexed and raw in ledger
            with pytest.raises(vault.NotFound):
                v.get(rid)
            with pytest.raises(vault.NotFound):
                v.resolve(badge)
            assert v.find(email=str(before[rid]["email"])) == []
        assert set(now) <= set(before)
        assert not ledger & recs  # the ledger names no record still present
    return shredded


def _purge_trial(backend: str, tmp: Path, seed: int, window: float) -> bool:
    """One purge killed at a random moment; True if it was killed mid-way (some shredded, not all)."""
    rng = random.Random(seed)
    with place(backend, tmp, f"purge{seed}") as url:
        expired, live, before = _purge_vault(url)
        child = subprocess.Popen([sys.executable, str(CHILD), url, PASSPHRASE, "purge"], env=ENV,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and json.loads(child.stdout.readline()) == {"started": True}
        time.sleep(rng.uniform(0, window))  # some land after the end: those are checked too
        child.send_signal(signal.SIGKILL)
        child.wait()
        shredded = _all_or_nothing(url, expired, live, before)
        with vault.open(url, PASSPHRASE) as v:  # a second purge finishes the job
            assert v.purge_expired(dry_run=False).count == EXPIRED - shredded
            assert v.purge_expired().count == 0
        assert _all_or_nothing(url, expired, live, before) == EXPIRED
        return 0 < shredded < EXPIRED


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_during_purge(backend: str, tmp_path: Path) -> None:
    with place(backend, tmp_path, "calibrate-purge") as url:
        _purge_vault(url)
        window = _timed(url, "purge")[0]
    hits = sum(_purge_trial(backend, tmp_path, seed, window) for seed in range(TRIALS))
    assert hits >= TRIALS // 3, f"only {hits}/{TRIALS} kills landed mid-way; the test lost its teeth"
