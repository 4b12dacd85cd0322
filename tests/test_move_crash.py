"""A move killed inside create() left an empty SQLite file that blocked the re-run the error
told the user to make (review1 R09); a login writing rows behind a move could delete one
row and insert another and pass its recount; a set-aside renamed a database away from a
WAL still holding its pages."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from vault.identity import Identity
from vault.store import StoreError

import vault
from conftest import PASSPHRASE
from rawdb import RawDB

NEW = "the new recovery passphrase for it"


def test_a_move_killed_inside_create_can_be_run_again(tmp_path: Path) -> None:
    src, dest = tmp_path / "old.vault", tmp_path / "new.vault"
    with vault.create(str(src), PASSPHRASE, lead=Identity.generate()) as v:
        v.add({"badge_name": "Amira", "email": "amira@example.org"})
    child = f'''
import os, signal, vault
from vault import _format as F, migrations
from vault.identity import Identity
F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)  # as the tests' fixture
def killed(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)  # inside create()'s first transaction
migrations.upgrade = killed
with vault.open({str(src)!r}, "{PASSPHRASE}") as src:
    vault.move(src, {str(dest)!r}, "{NEW}", lead=Identity.generate())
'''
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9 and dest.exists()
    with vault.open(str(src), PASSPHRASE) as s:
        moved = vault.move(s, str(dest), NEW, lead=Identity.generate())
        moved.vault.close()
    assert moved.records == 1 and not list(tmp_path.glob("new.vault.unfinished-move-*"))


def test_an_empty_database_at_the_destination_is_taken(tmp_path: Path) -> None:
    """Only a database without a single table (the rest is refused as before)."""
    src, dest, other = tmp_path / "old.vault", tmp_path / "new.vault", tmp_path / "notes.db"
    with vault.create(str(src), PASSPHRASE, lead=Identity.generate()) as v:
        v.add({"badge_name": "Amira"})
    con = sqlite3.connect(dest)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    with vault.open(str(src), PASSPHRASE) as s:
        vault.move(s, str(dest), NEW, lead=Identity.generate()).vault.close()
        with pytest.raises(vault.VaultExists):
            vault.move(s, str(other), NEW, lead=Identity.generate())
    assert sqlite3.connect(other).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 1


def test_a_row_swapped_behind_the_move_refuses_it(url: str, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One row deleted and another inserted while the move copies: the number stays, the
    rows do not; the move refuses and removes the new vault."""
    M = sys.modules["vault.moving"]
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as v:
        ids = [v.add({"badge_name": f"Person {i}"}) for i in range(3)]
    copy = M._copy

    def copy_then_swap(src: vault.Vault):  # type: ignore[no-untyped-def]
        taken = copy(src)
        raw = RawDB(url)  # its own connection, as a login writing rows directly
        data = raw.row(ids[0])
        with raw.engine.begin() as c:
            c.execute(sa.text("DELETE FROM dv_records WHERE id = :i"), {"i": bytes.fromhex(ids[1])})
            c.execute(sa.text("INSERT INTO dv_records (id, data) VALUES (:i, :d)"), {"i": os.urandom(16), "d": data})
        raw.close()
        return taken
    monkeypatch.setattr(M, "_copy", copy_then_swap)
    with vault.open(url, PASSPHRASE) as src:
        with pytest.raises(StoreError, match="records changed while the move copied 3 of them"):
            vault.move(src, url2, NEW, lead=Identity.generate())
    engine = sa.create_engine(url2)
    try:
        assert not {t for t in sa.inspect(engine).get_table_names() if t.startswith("dv_")}
    finally:
        engine.dispose()


def test_a_set_aside_keeps_no_wal_apart_from_its_database(tmp_path: Path) -> None:
    """The WAL is checkpointed into the database before the files are renamed one by one: a
    kill between two renames leaves no WAL holding pages its database lacks."""
    from vault.store import Store

    from vault import moving
    path = tmp_path / "v.vault"
    vault.create(str(path), PASSPHRASE).close()
    reader = sqlite3.connect(path)  # another client keeps it open: no checkpoint at the last close
    reader.execute("SELECT count(*) FROM dv_meta").fetchone()
    store = Store(f"sqlite:///{path}", create=False)
    with store.tx() as conn:
        store.put_meta(conn, {"note": os.urandom(200_000)})  # pages only the WAL holds
    kept = moving.set_aside(store)
    reader.close()
    assert os.path.getsize(kept + "-wal") == 0 if os.path.exists(kept + "-wal") else True
    con = sqlite3.connect(f"file:{kept}?mode=ro&immutable=1", uri=True)  # the main file alone
    assert con.execute("SELECT length(value) FROM dv_meta WHERE name = 'note'").fetchone() == (200_000,)
