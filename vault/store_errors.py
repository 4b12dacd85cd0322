"""How the store reports a database it cannot reach or use: StoreError, and the one-line
cause of a driver's error (never the driver's message, which may quote a URL or a value)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from .errors import Unavailable, VaultError


class StoreError(VaultError):
    """The database could not be reached or used."""


class StoreUnavailable(StoreError, Unavailable):
    """The database cannot be written or reached at all: disk full, read-only, gone, or the
    connection lost (what each is, in the message; see vault.unavailable)."""


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
