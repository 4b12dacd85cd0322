"""No plaintext of any stored value reaches disk (SQLite) or the tables (PostgreSQL).

2,000 random records are added, some updated, some deleted. Every text/date value
ever stored (4+ characters; current, overwritten and shredded ones alike) is then
searched, as UTF-8, UTF-16-LE and UTF-16-BE, in every byte of the database file, its
WAL and shared-memory files and every other file written under the test's directory
(TMPDIR points there too). Enum labels are excluded: they are schema vocabulary
stored in the (authenticated, plaintext) schema, not participant data.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest

import vault
from conftest import PASSPHRASE
from rawdb import RawDB

ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
            "äöüßéèçñøåłśžčğışəệảạ" "абвгдежзийклмнопрстуфхцчшщыэюя" "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"
            "אבגדהוזחטיכלמנסעפצקרשת" "中文名字测试" "😀🌍✊")

TEXT_FIELDS = ["badge_name", "pronouns", "sessions", "hotel", "dietary", "accessibility", "email", "phone",
               "emergency_contact", "messenger_handle", "legal_name", "nationality", "country_of_residence",
               "passport_number", "organisation", "field_of_work", "risk_notes"]


def _value(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(6, 40)))


def _record(rng: random.Random) -> dict:
    rec = {f: _value(rng) for f in rng.sample(TEXT_FIELDS, rng.randint(3, len(TEXT_FIELDS)))}
    rec.setdefault("badge_name", _value(rng))  # every record names someone (schema.required_any)
    rec["date_of_birth"] = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 20000))
    rec["risk_level"] = rng.choice(["low", "medium", "high", "critical"])
    return rec


def _needles(values: list[str]) -> set[bytes]:
    out = set()
    for s in values:
        if len(s) >= 4:
            for enc in ("utf-8", "utf-16-le", "utf-16-be"):
                out.add(s.encode(enc))
    return out


def _find_any(blob: bytes, needles: set[bytes]) -> list[bytes]:
    """Exact substring search, made fast with a 4-byte prefix prefilter."""
    windows = {blob[i:i + 4] for i in range(len(blob) - 3)}
    return [n for n in needles if n[:4] in windows and n in blob]


def _workload(v: vault.Vault, rng: random.Random) -> list[str]:
    stored: list[str] = []
    rows = [_record(rng) for _ in range(2000)]
    ids = v.add_many(rows[:1500])
    ids += [v.add(r) for r in rows[1500:]]
    for r in rows:
        stored += [x if isinstance(x, str) else x.isoformat() for k, x in r.items() if k != "risk_level"]
    for rid in rng.sample(ids, 200):
        new = {f: _value(rng) for f in rng.sample(TEXT_FIELDS, 3)}
        stored += list(new.values())
        v.update(rid, new)
    for rid in rng.sample(ids, 150):
        v.delete(rid)
    return stored


@pytest.mark.parametrize("seed", [1])
def test_no_plaintext_in_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    path = tmp_path / "disk.vault"
    rng = random.Random(seed)
    with vault.create(path, PASSPHRASE) as v:
        needles = _needles(_workload(v, rng))
        assert len(needles) > 3 * 2000
        # While open: the WAL and -shm hold recent pages.
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files)
        for p in files:
            assert not _find_any(p.read_bytes(), needles), f"plaintext found in {p.name}"
        assert v.count() == 1850
    for p in (q for q in tmp_path.rglob("*") if q.is_file()):
        assert not _find_any(p.read_bytes(), needles), f"plaintext found in {p.name} after close"


def test_scanner_can_fail(tmp_path: Path) -> None:
    """The search above really finds a value when it is there, in each encoding."""
    needles = _needles(["Amira Haddad"])
    for enc in ("utf-8", "utf-16-le", "utf-16-be"):
        blob = os.urandom(5000) + "Amira Haddad".encode(enc) + os.urandom(100)
        assert _find_any(blob, needles)


def test_no_plaintext_in_database_tables(url: str) -> None:
    """What a database administrator (SQLite or PostgreSQL) can read: every column of every row."""
    rng = random.Random(2)
    with vault.create(url, PASSPHRASE) as v:
        rows = [_record(rng) for _ in range(300)]
        ids = v.add_many(rows)
        updated = [_value(rng) for _ in ids[:30]]
        for rid, name in zip(ids, updated):
            v.update(rid, {"legal_name": name})
        values = [x if isinstance(x, str) else x.isoformat() for r in rows for k, x in r.items() if k != "risk_level"]
        values += updated
    raw = RawDB(url)
    dump = raw.dump()
    raw.close()
    assert not _find_any(dump, _needles(values))


def test_shred_truncates_the_wal_and_waits_only_briefly(tmp_path: Path) -> None:
    """After a shred the WAL is checkpointed and truncated, so the old row's frames leave
    it. When another client's open read keeps the checkpoint from finishing, the shred
    still succeeds after a short bounded wait (Store.CHECKPOINT_WAIT_MS, not the 5 s busy
    timeout, during which the checkpoint would hold every other client's writes), and the
    next shred truncates the WAL."""
    import sqlite3
    import time as _time
    path = tmp_path / "w.vault"
    wal = Path(str(path) + "-wal")
    with vault.create(path, PASSPHRASE) as v:
        ids = v.add_many([{"email": f"p{i}@example.org", "badge_name": "B"} for i in range(20)])
        v.delete(ids[0])
        assert wal.stat().st_size == 0
        reader = sqlite3.connect(path, isolation_level=None)
        v.add({"email": "late@example.org", "badge_name": "B"})
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM dv_records").fetchone() == (20,)
        t0 = _time.perf_counter()
        v.delete(ids[1])
        assert _time.perf_counter() - t0 < 2.5
        assert wal.stat().st_size > 0  # the reader's snapshot keeps the frames for now
        reader.execute("ROLLBACK")
        reader.close()
        v.delete(ids[2])
        assert wal.stat().st_size == 0
        assert v.count() == 18
