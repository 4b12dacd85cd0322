"""Relational schema versions: older vaults are upgraded on open, newer ones refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, old_release
from vault import _format as F
from vault import migrations
from vault.identity import Identity


def test_newer_vault_is_refused_cleanly(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault a later release upgraded is refused as unsupported. That release signed its
    version in the key statement; a version raised in the database alone is tampering
    instead (test_trust.py)."""
    vault.create(url, PASSPHRASE).close()
    nxt = F.DB_SCHEMA_VERSION + 1
    with monkeypatch.context() as m:  # the later release's open: its step, and the statement signed for it
        m.setattr(F, "DB_SCHEMA_VERSION", nxt)
        m.setitem(migrations.MIGRATIONS, nxt, lambda conn: None)
        vault.open(url, PASSPHRASE).close()
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(nxt).encode()
    raw.close()
    with pytest.raises(vault.UnsupportedVersion, match="upgrade defenders-vault"):
        vault.open(url, PASSPHRASE)


def test_older_vault_is_migrated_on_open(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the next release: a new step adds a table; a vault of today opens and is upgraded."""
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": "Ana Lúcia Morales"})

    def step_next(conn: sa.Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE dv_future (x INTEGER)")

    nxt = F.DB_SCHEMA_VERSION + 1
    monkeypatch.setattr(F, "DB_SCHEMA_VERSION", nxt)
    monkeypatch.setitem(migrations.MIGRATIONS, nxt, step_next)
    with vault.open(url, PASSPHRASE) as v:
        assert v.get(rid)["legal_name"] == "Ana Lúcia Morales"
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(nxt).encode()
    with raw.engine.begin() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM dv_future").scalar() == 0
    raw.close()


def test_migration_steps_are_contiguous() -> None:
    assert sorted(migrations.MIGRATIONS) == list(range(1, F.DB_SCHEMA_VERSION + 1))


def _v1_audit_table(c) -> None:  # type: ignore[no-untyped-def]
    """SQLite: dv_audit as version 1 of the schema made it (seq a plain primary key, not the rowid)."""
    c.exec_driver_sql("CREATE TABLE old_audit AS SELECT * FROM dv_audit")
    c.exec_driver_sql("DROP TABLE dv_audit")
    c.exec_driver_sql(
        "CREATE TABLE dv_audit (seq BIGINT NOT NULL, prev BLOB NOT NULL, at BIGINT NOT NULL, "
        "actor BLOB NOT NULL, action VARCHAR(40) NOT NULL, target VARCHAR(40) NOT NULL, detail TEXT NOT NULL, "
        "reason BLOB NOT NULL, hash BLOB NOT NULL, sig BLOB NOT NULL, PRIMARY KEY (seq))")
    c.exec_driver_sql("INSERT INTO dv_audit SELECT * FROM old_audit")
    c.exec_driver_sql("DROP TABLE old_audit")


def _v2_index_table(c, pg: bool, terms: list) -> None:  # type: ignore[no-untyped-def]
    """dv_index as versions 1 and 2 of the schema made it (one row per term), with ``terms``."""
    c.exec_driver_sql("DROP TABLE dv_index")
    c.exec_driver_sql(f"CREATE TABLE dv_index (gen INTEGER NOT NULL, name VARCHAR(80) NOT NULL, "
                      f"value BIGINT NOT NULL, record_id {'BYTEA' if pg else 'BLOB'} NOT NULL, "
                      f"PRIMARY KEY (gen, name, value, record_id)){'' if pg else ' WITHOUT ROWID'}")
    ph = "%s" if pg else "?"
    c.exec_driver_sql(f"INSERT INTO dv_index VALUES ({ph}, {ph}, {ph}, {ph})", terms)


def test_v1_audit_table_becomes_a_rowid_table(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 2: on SQLite dv_audit.seq turns INTEGER PRIMARY KEY (one B-tree per append); the
    rows move unchanged, so the chain verifies and a checkpoint taken before still holds.
    On PostgreSQL nothing changes."""
    with old_release(monkeypatch), vault.create(url, PASSPHRASE) as v:
        for i in range(5):
            v.add({"legal_name": f"Person {i}"})
        checkpoint = v.audit_checkpoint()
        before = [tuple(r) for r in _audit_rows(url)]
    raw = RawDB(url)
    with raw.engine.begin() as c:  # what version 1 of the schema made on SQLite
        if url.startswith("sqlite"):
            _v1_audit_table(c)
    raw.set_meta("db_schema_version", b"1")
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        assert v.audit_verify(checkpoint).ok
        v.add({"legal_name": "After the upgrade"})
        assert v.audit_verify().ok
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    with raw.engine.begin() as c:
        if url.startswith("sqlite"):
            cols = {r[1]: r[2] for r in c.exec_driver_sql("PRAGMA table_info(dv_audit)")}
            assert cols["seq"] == "INTEGER"
            indexes = c.exec_driver_sql("SELECT name FROM sqlite_master WHERE tbl_name = 'dv_audit' "
                                        "AND type = 'index'").all()
            assert indexes == []  # the rowid is the key: no separate index to write
    raw.close()
    assert [tuple(r) for r in _audit_rows(url)][:len(before)] == before


def _audit_rows(url: str) -> list:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        rows = c.exec_driver_sql("SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "
                                 "FROM dv_audit ORDER BY seq").all()
    raw.close()
    return [tuple(bytes(x) if isinstance(x, memoryview) else x for x in r) for r in rows]


def test_v2_index_rows_become_bucket_rows(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 3: the one-row-per-term dv_index of schema v2 becomes bucket rows (format §10):
    every term survives, searches find the same records, new writes use the new rows, and
    on PostgreSQL a role's grants on the old table carry over to the new one."""
    import secrets as _secrets

    people = [{"legal_name": f"Amira Haddad {i}", "email": f"p{i}@example.org", "phone": f"+961 1 555 {i:03d}"}
              for i in range(40)]
    with old_release(monkeypatch), vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(people)
    raw = RawDB(url)
    terms = sorted(raw.index_terms())
    assert len(terms) >= 40 * 4
    pg = not url.startswith("sqlite")
    role = "dvt_role_" + _secrets.token_hex(4)
    with raw.engine.begin() as c:  # what version 2 of the schema made, with the same terms
        _v2_index_table(c, pg, terms)
        if pg:
            c.exec_driver_sql(f"CREATE ROLE {role}")
            c.exec_driver_sql(f"GRANT SELECT, INSERT ON dv_index TO {role}")
    raw.set_meta("db_schema_version", b"2")
    raw.close()
    try:
        with vault.open(url, PASSPHRASE) as v:
            assert {r.id for r in v.find(email="p7@example.org")} == {ids[7]}
            assert {r.id for r in v.find_tokens(legal_name="haddad")} == set(ids)
            late = v.add({"legal_name": "Late Arrival", "email": "p7@example.org"})
            assert {r.id for r in v.find(email="p7@example.org")} == {ids[7], late}
            v.delete(ids[7])
            assert {r.id for r in v.find(email="p7@example.org")} == {late}
        raw = RawDB(url)
        assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
        after = raw.index_terms()
        gone = {t for t in terms if t[3] == bytes.fromhex(ids[7])}
        assert gone and set(terms) - gone <= set(after)
        assert len(after) == len(set(after))  # no term stored twice
        with raw.engine.begin() as c:
            cols = {col["name"] for col in sa.inspect(c).get_columns("dv_index")}
            assert cols == {"gen", "name", "value", "chunk", "ids"}
            if pg:
                grants = {p for (p,) in c.exec_driver_sql(
                    "SELECT privilege_type FROM information_schema.role_table_grants "
                    "WHERE table_schema = current_schema() AND table_name = 'dv_index' AND grantee = %s", (role,))}
                assert grants == {"SELECT", "INSERT"}
        raw.close()
    finally:
        if pg:
            raw = RawDB(url)
            with raw.engine.begin() as c:
                c.exec_driver_sql(f"DROP OWNED BY {role}")
                c.exec_driver_sql(f"DROP ROLE {role}")
            raw.close()


def test_v3_carries_grants_to_public_and_grant_options(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 3 on PostgreSQL: a grant to PUBLIC (a keyword, not a role) and a grant WITH GRANT
    OPTION carry over as they were; quoting "PUBLIC" named a role that does not exist, and
    the vault could never be upgraded."""
    import secrets as _secrets

    if url.startswith("sqlite"):
        pytest.skip("grants exist on PostgreSQL only")
    with old_release(monkeypatch), vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
    raw = RawDB(url)
    terms = sorted(raw.index_terms())
    role = "dvt_role_" + _secrets.token_hex(4)
    with raw.engine.begin() as c:  # what version 2 of the schema made
        c.exec_driver_sql("DROP TABLE dv_index")
        c.exec_driver_sql("CREATE TABLE dv_index (gen INTEGER NOT NULL, name VARCHAR(80) NOT NULL, "
                          "value BIGINT NOT NULL, record_id BYTEA NOT NULL, PRIMARY KEY (gen, name, value, record_id))")
        c.exec_driver_sql("INSERT INTO dv_index VALUES (%s, %s, %s, %s)", terms)
        c.exec_driver_sql(f"CREATE ROLE {role}")
        c.exec_driver_sql("GRANT SELECT ON dv_index TO PUBLIC")
        c.exec_driver_sql(f"GRANT INSERT ON dv_index TO {role} WITH GRANT OPTION")
    raw.set_meta("db_schema_version", b"2")
    raw.close()
    try:
        with vault.open(url, PASSPHRASE) as v:
            assert [r.id for r in v.find(email="amira@example.org")] == [rid]
        raw = RawDB(url)
        assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
        with raw.engine.begin() as c:
            grants = set(c.exec_driver_sql(
                "SELECT grantee, privilege_type, is_grantable FROM information_schema.role_table_grants "
                "WHERE table_schema = current_schema() AND table_name = 'dv_index' AND grantee <> current_user"))
        assert grants == {("PUBLIC", "SELECT", "NO"), (role, "INSERT", "YES")}
        raw.close()
    finally:
        raw = RawDB(url)
        with raw.engine.begin() as c:
            c.exec_driver_sql(f"DROP OWNED BY {role}")
            c.exec_driver_sql(f"DROP ROLE {role}")
        raw.close()


def _old_vault(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Identity, list[str]]:
    """A vault shaped by database schema v1 (per-term dv_index, SQLite's old dv_audit), with
    no key statement and a log without record states, as releases of that time left it."""
    lead = Identity.generate()
    with old_release(monkeypatch), vault.create(url, PASSPHRASE, lead=lead) as v:
        ids = v.add_many([{"legal_name": f"Amira Haddad {i}", "email": f"p{i}@example.org"} for i in range(20)])
    raw = RawDB(url)
    terms = raw.index_terms()
    pg = not url.startswith("sqlite")
    with raw.engine.begin() as c:
        _v2_index_table(c, pg, terms)
        if not pg:
            _v1_audit_table(c)
        c.exec_driver_sql("DELETE FROM dv_meta WHERE name IN ('keys_stmt', 'keys_stmt_sig')")
    raw.set_meta("db_schema_version", b"1")
    raw.close()
    return lead, ids


def test_two_clients_opening_an_old_vault_at_once_upgrade_it_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both opens succeed and one baseline is logged: the second upgrader waits for the
    first (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) and then finds the
    vault upgraded. Before, PostgreSQL failed one open with a deadlock and SQLite logged a
    second baseline."""
    import threading

    lead, ids = _old_vault(url, monkeypatch)
    real = vault.Vault._upgrade
    meet = threading.Barrier(2)

    def together(self: vault.Vault, *a: object, **k: object) -> None:
        meet.wait(timeout=30)
        real(self, *a, **k)

    monkeypatch.setattr(vault.Vault, "_upgrade", together)
    out: dict[int, str] = {}

    def opener(n: int) -> None:
        try:
            vault.open(url, identity=lead).close()
            out[n] = "ok"
        except Exception as e:  # noqa: BLE001 - reported below
            out[n] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=opener, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(vault.Vault, "_upgrade", real)
    assert out == {1: "ok", 2: "ok"}
    with vault.open(url, identity=lead) as v:
        assert len(v.audit_entries(action="restate")) == 1
        assert [r.id for r in v.find(email="p3@example.org")] == [ids[3]]
        assert v.check_records().ok and v.audit_verify().ok
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    raw.close()


def test_an_upgrade_is_never_committed_without_the_key_statement(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statement is written in the upgrade's transaction: if it cannot be made, the
    vault stays at its old version (and the next open of the lead upgrades it), rather
    than upgraded with no statement, which made every staff open fail with "the database
    was edited"."""
    from vault import statement as vault_module

    lead, ids = _old_vault(url, monkeypatch)
    real = vault_module.keys_meta

    def fail(*_a: object) -> dict:
        raise OSError("killed")

    monkeypatch.setattr(vault_module, "keys_meta", fail)
    with pytest.raises(OSError):
        vault.open(url, identity=lead)
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == b"1"
    raw.close()
    monkeypatch.setattr(vault_module, "keys_meta", real)
    with vault.open(url, identity=lead) as v:
        assert len(v) == 20
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode() and raw.meta("keys_stmt")
    raw.close()
