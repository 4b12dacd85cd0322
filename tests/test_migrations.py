"""Relational schema versions: older vaults are upgraded on open, newer ones refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _format as F
from vault import migrations


def test_newer_vault_is_refused_cleanly(url: str) -> None:
    vault.create(url, PASSPHRASE).close()
    raw = RawDB(url)
    raw.set_meta("db_schema_version", str(F.DB_SCHEMA_VERSION + 1).encode())
    with pytest.raises(vault.UnsupportedVersion, match="upgrade defenders-vault"):
        vault.open(url, PASSPHRASE)
    raw.close()


def test_older_vault_is_migrated_on_open(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the next release: a step 2 adds a table; a v1 vault opens and is upgraded."""
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": "Ana Lúcia Morales"})

    def step2(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE dv_future (x INTEGER)")

    monkeypatch.setattr(F, "DB_SCHEMA_VERSION", 2)
    monkeypatch.setitem(migrations.MIGRATIONS, 2, step2)
    with vault.open(url, PASSPHRASE) as v:
        assert v.get(rid)["legal_name"] == "Ana Lúcia Morales"
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == b"2"
    with raw.engine.begin() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM dv_future").scalar() == 0
    raw.close()


def test_migration_steps_are_contiguous() -> None:
    assert sorted(migrations.MIGRATIONS) == list(range(1, F.DB_SCHEMA_VERSION + 1))
