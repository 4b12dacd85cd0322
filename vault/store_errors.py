"""How the store reports a database it cannot reach or use: StoreError, and the one-line
cause of a driver's error (never the driver's message, which may quote a URL or a value)."""

from __future__ import annotations

import os

from sqlalchemy.exc import SQLAlchemyError

from .errors import IntegrityError, NotFound, Unavailable, VaultError
from .unavailable import unavailable


class StoreError(VaultError):
    """The database could not be reached or used."""


class StoreUnavailable(StoreError, Unavailable):
    """The database cannot be written or reached at all: disk full, read-only, gone, or the
    connection lost (what each is, in the message; see vault.unavailable)."""


class StoreDamaged(StoreError, IntegrityError):
    """The database's own pages do not parse (SQLite: "database disk image is malformed";
    PostgreSQL: data or index corrupted): an integrity failure (exit 5, what verify
    promises for a problem it finds), not a usage error."""


#: SQLite's messages and PostgreSQL's SQLSTATEs that mean damaged storage, and what to say.
_DAMAGED = (("database disk image is malformed", "the database file is damaged (a page of it does not parse)"),
            ("file is not a database", "the database file is damaged (its header does not parse)"))
_DAMAGED_STATES = {"XX001": "the database is damaged (the server reports corrupted data)",
                   "XX002": "the database is damaged (the server reports a corrupted index)"}


def _damaged(orig: BaseException) -> StoreDamaged | None:
    """A StoreDamaged if the driver says its storage is damaged. Only fixed texts are
    matched and said: the driver's message itself may carry parameters."""
    why = _DAMAGED_STATES.get(str(getattr(orig, "sqlstate", None) or ""))
    if why is None and type(orig).__module__ == "sqlite3":
        text = str(orig).lower()
        why = next((meaning for needle, meaning in _DAMAGED if needle in text), None)
    if why is None:
        return None
    return StoreDamaged(f"{why}: nothing of this operation was written; restore the vault from a backup "
                        "(dvault restore)")


class VaultBusy(StoreError):
    """Another client held a lock this operation needs for longer than the bounded wait."""


def _cause(e: SQLAlchemyError) -> str:
    """The DB-API error's class name (SQLAlchemy's own class if there is none)."""
    return type(getattr(e, "orig", None) or e).__name__


# What a failed connection means, recognised in the driver's message. Why not print the
# message itself: drivers quote what they were given, and a message may reach a log.
_CONNECT_CAUSES = (
    ("password authentication failed", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ('role "', "the database role does not exist"),
    ("does not exist", "the database does not exist"),
    ("connection refused", "connection refused (is the server running on that host and port?)"),
    ("timeout", "the connection timed out"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("ssl", "the server refused SSL, or SSL failed"),
    ("readonly database", "the database is read-only"),
    ("read-only file system", "the file system is read-only"),
    ("unable to open database file", "cannot open the database file (missing folder, or no permission)"),
    ("file is not a database", "not a SQLite database, or damaged"),
    ("database disk image is malformed", "the database file is damaged"),
)


def _connect_cause(e: SQLAlchemyError) -> str:
    text = str(getattr(e, "orig", None) or e).lower()
    for needle, meaning in _CONNECT_CAUSES:
        if needle in text:
            return meaning
    return _cause(e)


_BUSY = ("the vault is busy: another client holds a lock this needs; try again (if it persists, a database "
         "login may be holding it on purpose: tell the lead)")
_DENIED = ("the database refused this login the privilege (a staff login cannot change keys, users, the "
           "schema or the vault's state: that is the lead's client's work)")


def _store_error(e: BaseException) -> StoreError:
    """A StoreError for a database failure, naming a lock wait that ran out, a missing
    privilege or a database that cannot be used (full, read-only, gone) plainly, else only
    the DB-API error's class (its text can carry parameters)."""
    orig = getattr(e, "orig", None) or e
    state = getattr(orig, "sqlstate", None)
    if state == "55P03" or (type(orig).__name__ == "OperationalError" and "database is locked" in str(orig)):
        return VaultBusy(_BUSY)
    if state == "42501":
        return StoreError(_DENIED)
    why = unavailable(orig)
    if why is not None:
        return StoreUnavailable(f"{why}; nothing of this operation was written")
    return _damaged(orig) or StoreError(f"database error: {type(orig).__name__}")


def _check_sqlite_vault(path: str) -> None:
    """Refuse a file that is not a vault without changing a byte of it: opening it through
    the engine would set journal_mode=WAL (rewriting its header) and grow an empty file."""
    import sqlite3
    from urllib.parse import quote
    if os.path.getsize(path) == 0:
        raise NotFound("no vault in this database (an empty file)")
    try:
        con = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            found = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dv_meta'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        why = unavailable(e)
        if why is None:
            raise StoreError(f"cannot open database: {_connect_cause(e)}") from None  # type: ignore[arg-type]
        folder = os.path.dirname(os.path.abspath(path))
        if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):  # EROFS too, even for root
            why = "the database file or its folder is read-only"
        raise StoreUnavailable(f"cannot open database: {why}") from None
    if found is None:
        raise NotFound("no vault in this database")
