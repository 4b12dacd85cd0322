"""The SQLite page size: new vaults take SQLITE_PAGE_SIZE, an existing file keeps its own and
works as before, and a bulk write's blind-index rows fit in their pages (no overflow chain)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import vault
from conftest import PASSPHRASE
from vault import store as S


def _page_size(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()


def _rows(n: int) -> list[dict[str, str]]:
    return [{"legal_name": f"Nadia Karimova {i}", "email": f"n{i}@example.org", "phone": f"+992 37 221 {i:04d}"}
            for i in range(n)]


def test_a_new_vault_takes_the_page_size(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    vault.create(str(path), PASSPHRASE).close()
    assert S.SQLITE_PAGE_SIZE == 16384
    assert _page_size(path) == S.SQLITE_PAGE_SIZE


def test_an_older_file_keeps_its_pages_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.db"
    with monkeypatch.context() as m:
        m.setattr(S, "SQLITE_PAGE_SIZE", 4096)  # a vault made before the page size changed
        v = vault.create(str(path), PASSPHRASE)
        rid = v.add(_rows(1)[0])
        v.close()
    assert _page_size(path) == 4096
    v = vault.open(str(path), PASSPHRASE)
    try:
        more = v.add_many(_rows(40)[1:])
        assert [r.id for r in v.find(email="n0@example.org")] == [rid]
        assert [r.id for r in v.find(email="n39@example.org")] == [more[-1]]
    finally:
        v.close()
    assert _page_size(path) == 4096


def test_bulk_index_rows_stay_in_their_pages(tmp_path: Path) -> None:
    """A bucket of a bulk write is stored 256 ids to a row; such a row must fit in a page,
    else each one drags an overflow page that is mostly empty (the index then costs
    several times its payload on disk)."""
    path = tmp_path / "v.db"
    v = vault.create(str(path), PASSPHRASE)  # the default plan: a few buckets, hundreds of ids each
    try:
        v.add_many(_rows(2000))
    finally:
        v.close()
    con = sqlite3.connect(path)
    try:
        try:
            kinds = dict(con.execute("SELECT pagetype, COUNT(*) FROM dbstat WHERE name = 'dv_index' GROUP BY pagetype"))
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
        longest = con.execute("SELECT MAX(LENGTH(ids)) FROM dv_index").fetchone()[0]
    finally:
        con.close()
    assert longest >= 2048  # full rows were written, so the check below means something
    assert kinds.get("overflow", 0) == 0, kinds


def test_a_move_gives_an_older_vault_the_new_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.identity import Identity
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    with monkeypatch.context() as m:
        m.setattr(S, "SQLITE_PAGE_SIZE", 4096)
        v = vault.create(str(old), PASSPHRASE)
        ids = v.add_many(_rows(30))
        v.close()
    v = vault.open(str(old), PASSPHRASE)
    try:
        moved = vault.move(v, str(new), PASSPHRASE + " moved", lead=Identity.generate())
        with moved.vault as dst:
            found = dst.find(email="n7@example.org")  # a move gives records new ids
            assert len(ids) == 30 and [r["legal_name"] for r in found] == ["Nadia Karimova 7"]
    finally:
        v.close()
    assert (_page_size(old), _page_size(new)) == (4096, S.SQLITE_PAGE_SIZE)
