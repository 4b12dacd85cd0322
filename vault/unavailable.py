"""Database failures that no retry mends: the disk is full, the file system or database is
read-only, the file or its folder went away, the connection was lost. Recognised by SQLSTATE
(PostgreSQL) or in the driver's message, which itself is never shown: drivers quote the
parameters of the failed statement, and a message may reach a log (vault.store raises
StoreUnavailable with the plain words below)."""

from __future__ import annotations

_UNAVAILABLE_STATES = {"53100": "the database server's disk is full", "25006": "the database is read-only",
                       "57P01": "the database connection was lost (the server stopped or ended it)",
                       "57P02": "the database connection was lost (the server stopped or ended it)",
                       "57P03": "the database server is not accepting connections (starting or stopping)"}
_UNAVAILABLE = (
    ("database or disk is full", "the disk is full (or the database reached its size limit)"),
    ("no space left", "the disk is full"),
    ("readonly database", "the database file or its folder is read-only"),
    ("read-only file system", "the file system is read-only"),
    ("disk i/o error", "disk I/O error (the disk failed, or the vault's folder or file went away)"),
    ("unable to open database file", "cannot open the database file (its folder went away, or no permission)"),
    ("server closed the connection", "the database connection was lost (the server stopped or ended it)"),
    ("terminating connection", "the database connection was lost (the server stopped or ended it)"),
    ("connection is closed", "the database connection was lost"),
    ("consuming input failed", "the database connection was lost"),
    ("connection refused", "the database server cannot be reached (connection refused)"),
)


def unavailable(orig: BaseException) -> str | None:
    """What makes the database unusable, in plain words, or None for any other failure."""
    state = getattr(orig, "sqlstate", None)
    if state in _UNAVAILABLE_STATES:
        return _UNAVAILABLE_STATES[state]
    if isinstance(state, str) and state.startswith("08"):  # connection exception
        return "the database connection was lost"
    text = str(orig).lower()
    return next((meaning for needle, meaning in _UNAVAILABLE if needle in text), None)
