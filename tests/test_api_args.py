"""The public API's argument checks: a wrong type, size or a closed handle is a VaultError
subclass naming the argument, raised before anything is written (never a TypeError,
AttributeError or AssertionError from deep inside, and never after part of the work committed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from vault.identity import Identity


def _tables(url: str) -> dict[str, list[str]]:
    """Every dv_* table but the audit log, as rows: what a refused call must leave unchanged."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            names = [t for t in sa.inspect(c).get_table_names() if t.startswith("dv_") and t != "dv_audit"]
            return {t: sorted(map(repr, c.exec_driver_sql(f"SELECT * FROM {t}").fetchall())) for t in names}
    finally:
        eng.dispose()


@pytest.fixture
def lv(url: str) -> Iterator[vault.Vault]:
    """A vault created with a lead identity, opened by the lead, holding one record (``lv.rid``)."""
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.rid = v.add({"legal_name": "Amira Haddad", "email": "a@example.org",  # type: ignore[attr-defined]
                       "departure": "2026-01-01"})
        yield v


# -- a closed handle ---------------------------------------------------------------------------------
def test_closed_handle_lifecycle_calls_raise_vault_closed(url: str) -> None:
    v = vault.create(url, PASSPHRASE)
    rid = v.add({"legal_name": "Amira Haddad"})
    ps = v.pseudonym(rid, "badge")
    v.close()
    calls = {
        "change_passphrase": lambda: v.change_passphrase("another long passphrase"),
        "split_recovery": lambda: v.split_recovery(2, 3),
        "recovery_shares": lambda: v.recovery_shares(),
        "set_retention": lambda: v.set_retention(rid, dt.date(2030, 1, 1)),
        "purge_expired": lambda: v.purge_expired(),
        "retention_warnings": lambda: v.retention_warnings(),
        "subject_export": lambda: v.subject_export(ps),
        "subject_erase": lambda: v.subject_erase(ps),
        "recovery_actor_id": lambda: v.recovery_actor_id,
        "canary_count": lambda: v.canary_count(),
    }
    wrong = {}
    for name, call in calls.items():
        try:
            call()
            wrong[name] = "no error"
        except vault.VaultClosed:
            pass
        except Exception as e:  # noqa: BLE001
            wrong[name] = type(e).__name__
    assert wrong == {}


# -- progress callbacks --------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["rotate", "reindex"])
def test_non_callable_progress_refused_before_anything_is_written(url: str, call: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        v.add({"legal_name": "Amira Haddad", "email": "a@example.org"})
        before = _tables(url)
        with pytest.raises(vault.ValidationError, match="progress"):
            getattr(v, call)(progress=5)
        assert _tables(url) == before
        assert v.status()["index"]["reindex_pending"] is False


def test_non_callable_progress_refused_by_every_call_that_takes_one(v: vault.Vault, tmp_path: Path,
                                                                     url2: str) -> None:
    v.add({"legal_name": "Amira Haddad"})
    calls = {
        "export": lambda: v.export(["badge_name"], progress=5),
        "import_rows": lambda: v.import_rows([{"legal_name": "X"}], progress=5),
        "backup": lambda: v.backup(tmp_path / "b.dvb", progress=5),
        "verify": lambda: v.verify(progress=5),
        "move": lambda: vault.move(v, url2, PASSPHRASE, lead=Identity.generate(), progress=5),
    }
    for name, call in calls.items():
        with pytest.raises(vault.ValidationError, match="progress"):
            call()
    assert v.count() == 1
    assert not (tmp_path / "b.dvb").exists()


# -- batch sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["rotate", "reindex"])
@pytest.mark.parametrize("batch", [2**63, 1_000_001, 0, True, 2.0])
def test_batch_out_of_range_refused_before_anything_is_written(url: str, call: str, batch: object) -> None:
    with vault.create(url, PASSPHRASE) as v:
        v.add({"legal_name": "Amira Haddad", "email": "a@example.org"})
        before = _tables(url)
        with pytest.raises(vault.ValidationError, match="batch"):
            getattr(v, call)(batch=batch)
        assert _tables(url) == before
        assert v.status()["index"]["reindex_pending"] is False


def test_largest_batch_is_accepted(v: vault.Vault) -> None:
    v.add({"legal_name": "Amira Haddad"})
    assert v.reindex(batch=1_000_000) == 1
