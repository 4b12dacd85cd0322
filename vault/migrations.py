"""Versioned database migrations (an Alembic-equivalent kept tiny on purpose).

``MIGRATIONS[n]`` upgrades a database from version n-1 to n inside one
transaction. A vault created by any release opens in every later release: open()
runs the missing steps in order and records the new version in ``dv_meta``.
Never edit a published step; add a new one and bump ``DB_SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy.engine import Connection

from . import _format as F
from . import store as S


def _v1(conn: Connection) -> None:
    from .audit import audit
    from .breakglass import reveals

    S.metadata.create_all(conn, tables=[S.meta, S.slots, S.records, S.blind, S.pseudonyms, S.users, reveals,
                                        audit])


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1}
assert max(MIGRATIONS) == F.DB_SCHEMA_VERSION


def upgrade(conn: Connection, current: int) -> int:
    """Apply every step after ``current``; returns the new version (caller stores it)."""
    S.check_db_version(current)
    for version in range(current + 1, F.DB_SCHEMA_VERSION + 1):
        MIGRATIONS[version](conn)
    return F.DB_SCHEMA_VERSION
