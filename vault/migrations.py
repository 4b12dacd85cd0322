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


def _v2(conn: Connection) -> None:
    """SQLite: ``dv_audit.seq`` becomes INTEGER PRIMARY KEY, an alias of the rowid, so an
    append writes one B-tree instead of the table plus a separate index on ``seq`` (about
    7 us less per audited read). Rows are copied unchanged, so the chain and signatures
    still verify. PostgreSQL keeps its BIGINT key: nothing to do."""
    if conn.dialect.name != "sqlite":
        return
    cols = {row[1]: row[2] for row in conn.exec_driver_sql("PRAGMA table_info(dv_audit)")}
    if cols.get("seq", "").upper() == "INTEGER":
        return  # already done (e.g. by a concurrent opener)
    conn.exec_driver_sql(
        "CREATE TABLE dv_audit_v2 (seq INTEGER NOT NULL PRIMARY KEY, prev BLOB NOT NULL, at BIGINT NOT NULL, "
        "actor BLOB NOT NULL, action VARCHAR(40) NOT NULL, target VARCHAR(40) NOT NULL, detail TEXT NOT NULL, "
        "reason BLOB NOT NULL, hash BLOB NOT NULL, sig BLOB NOT NULL)")
    conn.exec_driver_sql("INSERT INTO dv_audit_v2 (seq, prev, at, actor, action, target, detail, reason, hash, sig) "
                         "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig FROM dv_audit "
                         "ORDER BY seq")
    conn.exec_driver_sql("DROP TABLE dv_audit")
    conn.exec_driver_sql("ALTER TABLE dv_audit_v2 RENAME TO dv_audit")


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2}
assert max(MIGRATIONS) == F.DB_SCHEMA_VERSION


def upgrade(conn: Connection, current: int) -> int:
    """Apply every step after ``current``; returns the new version (caller stores it)."""
    S.check_db_version(current)
    for version in range(current + 1, F.DB_SCHEMA_VERSION + 1):
        MIGRATIONS[version](conn)
    return F.DB_SCHEMA_VERSION
