"""Is a vault held elsewhere? What ``dvault travel`` checks before it removes a vault file
from a laptop, read without any key.

A vault is named by its id (``dv_meta.vault_id``); its keys by the signed key statement
(``keys_stmt`` and its signature, docs/format.md 9b); its history by the audit log, a
hash chain (13a) whose last entry's hash covers every entry before it. A copy holds
everything the local vault holds if it is the same vault and its log has the local log's
last entry, with the same hash, at the same place. Copies of the same moment also have
the same key statement and the same record rows, byte for byte: both are compared, so a
file made to look like a copy (the id and the last log entry copied into an empty
database) is not taken for one.

Nothing here is trusted for anything but this comparison: the local file and the copy are
only read (nothing is written beside a copy either), and a mismatch only ever stops the
removal.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._files import write_private
from .errors import IntegrityError, NotFound, VaultError
from .local import sqlite_path

_META = ("vault_id", "keys_stmt", "keys_stmt_sig")


@dataclass(frozen=True)
class Facts:
    """What a vault is, without its keys."""
    vault_id: str
    statement: bytes  # the key statement and its signature
    seq: int  # the last audit entry's number (0: none)
    head: bytes  # its hash
    at_ms: int  # when it was written
    records: int


class _Reader:
    """Read-only SQL on a SQLite file (sqlite3, ``mode=ro``) or a database server (Store)."""

    def __init__(self, url: str) -> None:
        self._path = sqlite_path(url)
        self._con: sqlite3.Connection | None = None
        self._store: Any = None
        if self._path is not None:
            if not self._path.is_file():
                raise NotFound(f"no vault file at {self._path}")
            # No -wal beside it: nothing was left out of the main file, which is then read as
            # immutable (no lock, and no -wal or -shm is created beside a copy on someone
            # else's drive). Else read-only, through the journal.
            wal = self._path.with_name(self._path.name + "-wal")
            how = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
            try:
                self._con = sqlite3.connect(f"file:{quote(os.path.abspath(self._path))}?{how}", uri=True)
                self._con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error:
                raise VaultError(f"{self._path} is not a vault (not a database)") from None
        else:
            from .store import Store
            self._store = Store(url, create=False)
            if not self._store.has_vault():
                self._store.dispose()
                raise NotFound(f"no vault at {_shown(url)}")
        self.ph = "?" if self._path is not None else "%s"

    def rows(self, sql: str, params: tuple[Any, ...] = (), batch: int = 1000) -> Iterator[tuple[Any, ...]]:
        if self._con is not None:
            try:
                cur = self._con.execute(sql, params)
                while chunk := cur.fetchmany(batch):
                    yield from chunk
            except sqlite3.Error:
                raise VaultError(f"{self._path} is not a vault (its tables cannot be read)") from None
            return
        with self._store.tx(write=False) as conn:
            cur = self._store.raw(conn, sql, params)
            while chunk := cur.fetchmany(batch):
                yield from chunk

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return next(iter(self.rows(sql, params)), None)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
        if self._store is not None:
            self._store.dispose()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def facts(url: str) -> Facts:
    """Read a vault's id, key statement, log head and record count. NotFound if there is
    no vault there; StoreError if the server cannot be reached."""
    with _Reader(url) as r:
        return _facts(r, url)


def _facts(r: _Reader, url: str) -> Facts:
    marks = ", ".join(r.ph for _ in _META)
    sql = f"SELECT name, value FROM dv_meta WHERE name IN ({marks})"  # noqa: S608 - placeholders only
    meta = {str(n): bytes(v) for n, v in r.rows(sql, _META)}
    vid = meta.get("vault_id", b"")
    if len(vid) != 16:
        raise NotFound(f"no vault at {_shown(url)} (no vault id)")
    last = r.one("SELECT seq, hash, at FROM dv_audit ORDER BY seq DESC LIMIT 1")
    count = r.one("SELECT count(*) FROM dv_records")
    return Facts(vid.hex(), meta.get("keys_stmt", b"") + b"\n" + meta.get("keys_stmt_sig", b""),
                 int(last[0]) if last else 0, bytes(last[1]) if last else b"", int(last[2]) if last else 0,
                 int(count[0]) if count else 0)


def check_copy(local: str, copy: str) -> str:
    """Check that ``copy`` holds everything the vault at ``local`` holds; returns a line
    saying how it matched, or raises IntegrityError naming what differs (the copy is of
    another vault, older, or went another way) or NotFound."""
    with _Reader(local) as a, _Reader(copy) as b:
        mine, theirs = _facts(a, local), _facts(b, copy)
        if mine.vault_id != theirs.vault_id:
            raise IntegrityError(f"the copy {_shown(copy)} is of another vault ({theirs.vault_id}, not "
                                 f"{mine.vault_id})")
        if theirs.seq < mine.seq:
            raise IntegrityError(f"the copy {_shown(copy)} is older: its log stops at entry {theirs.seq}, this vault's "
                                 f"goes on to {mine.seq}; what was written since would be lost. Copy the vault again "
                                 "(with no dvault running) and give the new copy")
        sql = f"SELECT hash FROM dv_audit WHERE seq = {b.ph}"  # noqa: S608 - a placeholder only
        at = b.one(sql, (mine.seq,)) if mine.seq else None
        if mine.seq and (at is None or bytes(at[0]) != mine.head):
            raise IntegrityError(f"the copy {_shown(copy)} went another way: its log entry {mine.seq} is not this "
                                 "vault's; what was written here since they parted would be lost")
        if theirs.seq > mine.seq:
            return (f"the copy {_shown(copy)} holds vault {mine.vault_id} and its whole log, and "
                    f"{theirs.seq - mine.seq} later entries")
        if theirs.statement != mine.statement or not _same_rows(a, b):
            raise IntegrityError(f"the copy {_shown(copy)} has this vault's log but not its keys or records: "
                                 "it is not a copy of this file")
        return f"the copy {_shown(copy)} is the same vault {mine.vault_id}: same keys, log and {mine.records} records"


def backup(local: str, dest: str | os.PathLike[str]) -> Path:
    """Copy the SQLite vault at ``local`` to the new file ``dest`` (mode 0600, never over an
    existing file), as SQLite's online backup does it: every page as of one moment, what
    the ``-wal`` holds included, which a plain file copy can miss."""
    src = sqlite_path(local)
    if src is None or not src.is_file():
        raise NotFound(f"no vault file at {local}")
    out = write_private(dest, b"")
    try:
        a = sqlite3.connect(f"file:{quote(os.path.abspath(src))}?mode=ro", uri=True)
        b = sqlite3.connect(out)
        try:
            a.backup(b)
        finally:
            b.close()
            a.close()
        with open(out, "rb+") as fh:
            os.fsync(fh.fileno())
    except (sqlite3.Error, OSError) as e:
        out.unlink(missing_ok=True)
        raise VaultError(f"cannot copy the vault to {out} ({type(e).__name__})") from None
    return out


def _same_rows(a: _Reader, b: _Reader) -> bool:
    left = a.rows("SELECT id, data FROM dv_records ORDER BY id")
    right = b.rows("SELECT id, data FROM dv_records ORDER BY id")
    for x, y in zip_longest(left, right):
        if x is None or y is None or bytes(x[0]) != bytes(y[0]) or bytes(x[1]) != bytes(y[1]):
            return False
    return True


def _shown(url: str) -> str:
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(database URL)"
