"""Versioned database migrations (an Alembic-equivalent kept tiny on purpose).

``MIGRATIONS[n]`` upgrades a database from version n-1 to n inside one
transaction. A vault created by any release opens in every later release: open()
runs the missing steps in order and records the new version in ``dv_meta``.
Never edit a published step; add a new one and bump ``DB_SCHEMA_VERSION``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from . import _format as F
from . import store as S


def _v1(conn: Connection) -> None:
    from .audit import audit
    from .breakglass_rows import reveals

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


_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


def _v3(conn: Connection) -> None:
    """``dv_index`` holds one row per bucket and write (``chunk``, ``ids``) instead of one
    row per (term, record): a bulk import writes each bucket once (docs/format.md §10 "Stored rows"). The
    terms move unchanged (same gen, name, value, record ids). On PostgreSQL the grants other
    roles had on the old table (restrict_audit_role) are given on the new one."""
    columns = {c["name"] for c in inspect(conn).get_columns("dv_index")}
    if "chunk" in columns:
        return  # made by step 1 of this release, or already upgraded
    terms = [(int(g), str(n), int(v), bytes(r)) for g, n, v, r in
             conn.exec_driver_sql("SELECT gen, name, value, record_id FROM dv_index")]
    grants: list[tuple[str, str, bool]] = []
    if conn.dialect.name == "postgresql":
        grants = [(str(who), str(what), grantable == "YES") for who, what, grantable in conn.exec_driver_sql(
            "SELECT grantee, privilege_type, is_grantable FROM information_schema.role_table_grants "
            "WHERE table_schema = current_schema() AND table_name = 'dv_index' AND grantee <> current_user")]
    conn.exec_driver_sql("DROP TABLE dv_index")
    S.blind.create(conn)
    rows = S.pack_terms(terms, {g: S.ID_BYTES for g, *_r in terms})  # plans of then: whole ids
    if rows:
        names = ("gen", "name", "value", "chunk", "ids")
        conn.execute(S.blind.insert(), [dict(zip(names, r, strict=True)) for r in rows])
    quote = conn.dialect.identifier_preparer.quote
    for who, what, grantable in grants:
        if what in _PRIVILEGES:
            # PUBLIC is a keyword, not a role: quoted, it would name a role "PUBLIC" that does
            # not exist, and the step (so every later open) would fail
            to = "PUBLIC" if who == "PUBLIC" else quote(who)
            conn.exec_driver_sql(f"GRANT {what} ON dv_index TO {to}{' WITH GRANT OPTION' if grantable else ''}")


def _v4(conn: Connection) -> None:
    """No table changes. Version 4 marks a vault whose keys carry the signed key statement
    (docs/format.md 9b): releases before it refuse a newer database schema, so none of them
    can rotate or re-seal keys without re-signing the statement, which would leave every
    later open refused. The statement itself is written by the lead's (or a recovery
    opener's) first open with this release; nobody else's open gets this far without it."""


def _v5(conn: Connection) -> None:
    """No table changes. From version 5 on, a DEK sealed to a class's public key must carry its
    writer's signature (kind W, docs/format.md 5a) and readers refuse the unsigned kind E. The
    unsigned DEKs older releases wrote are adopted into ordinary wraps in the same transaction
    by vault.open (rotation.adopt_sealed), which needs the class keys: only the lead's or a
    recovery opener's open can take a vault holding any of them past this step."""


def _v6(conn: Connection) -> None:
    """No table changes. From version 6 on, every entry that writes record rows names the
    states it drops and puts (docs/format.md 13a, "Record states"), so the lead can check
    the rows against the log; releases before it would write rows without, which the check
    would report as tampering. vault.open logs the states of the rows present (a baseline)
    in the same transaction."""


def _v7(conn: Connection) -> None:
    """No table changes. From version 7 on, the signed key statement (docs/format.md 9b, "dvault
    keys v2") also names the database schema version and a hash of the user table, so a
    database writer can neither lower the version (to have an upgrade step redone: the v5
    adoption would take unsigned envelopes they planted as genuine) nor put back an older,
    lead-signed user table (a revoked user's row and slot). vault.open re-signs the
    statement in the same transaction, so only the lead's or a recovery opener's open takes
    a vault to this version."""


def _v8_key_statement(conn: Connection) -> None:
    """No table changes. From version 8 on, the signed key statement is of the third kind
    (docs/format.md 9b, "dvault keys v3"): it also names every key slot that must exist and
    commits to the canary list, which is sealed under a key only the lead and the recovery
    passphrase hold (format.md 13a). vault.open converts the list and signs the statement in
    the same transaction, so only the lead's or a recovery opener's open takes a vault to
    this version; other openers work at version 7 until then."""


def _v8_reveal_sig(conn: Connection) -> None:
    """``dv_reveals`` gains ``sig``: the requester's Ed25519 signature over what they asked
    for (docs/format.md 8b), which the lead's approval checks against the row, so that a
    database writer cannot point an approval at another record or field. Requests made
    before it have none and are refused at approval (the requester asks again)."""
    columns = {c["name"] for c in inspect(conn).get_columns("dv_reveals")}
    if "sig" not in columns:  # made by step 1 of this release, or already upgraded
        conn.exec_driver_sql("ALTER TABLE dv_reveals ADD COLUMN sig " + ("BLOB" if conn.dialect.name == "sqlite"
                                                                         else "BYTEA"))


def _v8_audit_guard(conn: Connection) -> None:
    """PostgreSQL: the insert guard on ``dv_audit`` (vault.audit_guard, docs/format.md 13a),
    a trigger that refuses a row the chain cannot take (a wrong seq or link, wrong sizes, a
    hash that is not its content's), so that the staff login, which may append, cannot
    insert one that no application login could ever remove. Created by whoever runs the
    upgrade, which on a shared server is the tables' owner (an upgrade that changes tables
    needs it); ``dvault db-roles`` creates it too. SQLite: nothing (a file writer could
    drop any trigger); readers there flag such rows instead (vault.audit_rows)."""
    from .audit_guard import install
    install(conn)


def _v8(conn: Connection) -> None:
    """From version 8 on: signed break-glass requests (:func:`_v8_reveal_sig`); new audit
    entries take the labelled form (docs/format.md 13a), which needs no table change; the
    third kind of key statement (:func:`_v8_key_statement`); the audit log's insert guard
    (:func:`_v8_audit_guard`)."""
    _v8_reveal_sig(conn)
    _v8_key_statement(conn)
    _v8_audit_guard(conn)


def _v9(conn: Connection) -> None:
    """No table changes. From version 9 on, entries name record states of the second kind
    (docs/format.md 13a, vault.record_states): per class, over each envelope's bytes, so
    that the record check sees content sealed again under a DEK id the row held and which
    classes an update changed. vault.open writes, in the same transaction, one ``restate``
    entry pairing each row's state of the first kind with its second, and signs the
    statement for the new version: only the lead's or a recovery opener's open takes a
    vault there (the pairs are theirs to vouch for), and other handles, at 8, are refused
    their next write (Access.check_keys) and open again."""


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7,
                                                       8: _v8, 9: _v9}
assert max(MIGRATIONS) == F.DB_SCHEMA_VERSION


def upgrade(conn: Connection, current: int, target: int = F.DB_SCHEMA_VERSION) -> int:
    """Apply every step after ``current`` up to ``target``; returns it (caller stores it)."""
    S.check_db_version(current)
    for version in range(current + 1, target + 1):
        MIGRATIONS[version](conn)
    return max(current, target)
