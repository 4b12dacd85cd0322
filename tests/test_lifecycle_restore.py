"""Retention meets backups: a record purged as expired stays unreadable whichever backup is
restored afterwards, the one taken after the purge or one taken before it (the shred
ledger shreds it again), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from vault.store import split_ids

import vault
from conftest import PASSPHRASE
from test_backup import _tables
from test_retention import TODAY, _people, _rows, _schema


def _gone(url: str, ids: dict[str, str], expired: list[str], badges: dict[str, str]) -> None:
    """The expired records are unreadable by every way in, and no row of theirs is left; the
    others are intact."""
    with vault.open(url, PASSPHRASE) as v:
        for name in expired:
            with pytest.raises(vault.NotFound):
                v.get(ids[name])
            with pytest.raises(vault.NotFound):
                v.resolve(badges[name])
        assert v.find(email="olga@example.org") == [] and v.find(email="umar@example.org") == []
        kept = sorted(ids[n] for n in ids if n not in expired)
        assert sorted(v.ids()) == kept
        assert v.get(ids["kept"])["legal_name"] == "Karim Kept" and v.get(ids["recent"])["email"] == "rita@example.org"
        assert v.find(email="rita@example.org")[0].id == ids["recent"]
        assert v.resolve(badges["kept"]).id == ids["kept"]
        report = v.verify()
        assert report.ok, str(report)
        assert v.purge_expired(today=TODAY).count == 0  # nothing left to purge: the override still holds
    gone = {bytes.fromhex(ids[n]) for n in expired}
    assert not [r for r in _rows(url, "SELECT id FROM dv_records") if bytes(r[0]) in gone]
    for (blob,) in _rows(url, "SELECT ids FROM dv_index"):  # 8-byte id prefixes (index plan version 3)
        assert not {g[:8] for g in gone} & set(split_ids(bytes(blob), 8))
    assert {bytes(r[0]) for r in _rows(url, "SELECT rid FROM dv_shreds")} >= gone  # and the ledger names them


def test_purged_records_stay_gone_after_restoring_backups_from_before_and_after(url: str, tmp_path: Path) -> None:
    with vault.create(url, PASSPHRASE, schema=_schema()) as v:
        ids = _people(v)
        badges = {name: v.pseudonym(rid, "badge") for name, rid in ids.items()}
        v.set_retention(ids["kept"], dt.date(2030, 1, 1))
        v.backup(tmp_path / "before.dvbak")
        report = v.purge_expired(dry_run=False, today=TODAY)
        assert report.count == 2
        v.backup(tmp_path / "after.dvbak")
    expired = ["old", "undated"]
    _gone(url, ids, expired, badges)
    purged = _tables(url)

    out = vault.restore(url, tmp_path / "after.dvbak", passphrase=PASSPHRASE)
    assert out.records == 2 and out.replayed == 0
    _gone(url, ids, expired, badges)

    out = vault.restore(url, tmp_path / "before.dvbak", passphrase=PASSPHRASE)
    assert out.records == 4 - 2 and out.replayed == 2  # the backup held them; the ledger shredded them again
    _gone(url, ids, expired, badges)
    # the record rows are those of the purged vault, byte for byte
    assert _tables(url)["dv_records"] == purged["dv_records"]


def test_before_backup_into_a_fresh_place_with_the_ledger_file(url: str, url2: str, tmp_path: Path) -> None:
    """The live vault is lost: the backup from before the purge, restored elsewhere with the
    ledger file written after it, leaves the purged records shredded too."""
    with vault.create(url, PASSPHRASE, schema=_schema()) as v:
        ids = _people(v)
        badges = {name: v.pseudonym(rid, "badge") for name, rid in ids.items()}
        v.set_retention(ids["kept"], dt.date(2030, 1, 1))
        v.backup(tmp_path / "before.dvbak")
        v.purge_expired(dry_run=False, today=TODAY)
        v.backup(tmp_path / "after.dvbak", ledger=tmp_path / "after.dvledger")
    out = vault.restore(url2, tmp_path / "before.dvbak", passphrase=PASSPHRASE, ledger=tmp_path / "after.dvledger")
    assert out.replayed == 2
    _gone(url2, ids, ["old", "undated"], badges)
