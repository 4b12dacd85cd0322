"""PostgreSQL least privilege by role (vault.postgres) and locks no staff login can take or
hold to stall the vault (vault.locks). Every case logs in as real database roles with
random names, dropped afterwards (roles are cluster-wide; other test runs share the server)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Iterator, NamedTuple

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE, PG_URL
from vault import locks as L
from vault.identity import Identity
from vault.store import VaultBusy

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need DVAULT_TEST_PG_URL")

PERSON = {"legal_name": "Amira Haddad", "badge_name": "Amira", "email": "amira@example.org",
          "phone": "+961 1 234 567", "risk_level": "high"}


class Logins(NamedTuple):
    owner: str  # the URL as the tables' owner (who ran create)
    staff: str  # ... as the staff clients' role
    lead: str  # ... as the lead's clients' role
    staff_role: str
    lead_role: str


def as_role(url: str, role: str) -> str:
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


@pytest.fixture
def pg() -> Iterator[str]:
    """A fresh PostgreSQL schema (roles exist on PostgreSQL only)."""
    from conftest import _pg_schema
    with _pg_schema() as fresh:
        yield fresh


@pytest.fixture
def roles(pg: str) -> Iterator[tuple[str, str]]:
    """Two fresh LOGIN roles (staff, lead), dropped with whatever they were granted."""
    names = ("dvt_staff_" + secrets.token_hex(4), "dvt_lead_" + secrets.token_hex(4))
    admin = sa.create_engine(pg)
    with admin.begin() as c:
        for r in names:
            c.exec_driver_sql(f"CREATE ROLE {r} LOGIN")
    try:
        yield names
    finally:
        with admin.begin() as c:
            for r in names:
                c.exec_driver_sql(f"DROP OWNED BY {r}")
                c.exec_driver_sql(f"DROP ROLE {r}")
        admin.dispose()


@pytest.fixture
def team(pg: str, roles: tuple[str, str]) -> Iterator[tuple[Logins, Identity, Identity, str]]:
    """A vault made by the owner, its lead and one staff member enrolled, the roles granted."""
    from vault.postgres import grant_roles
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(pg, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(PERSON)
    grant_roles(pg, staff=[roles[0]], lead=[roles[1]])
    yield Logins(pg, as_role(pg, roles[0]), as_role(pg, roles[1]), *roles), lead, staff, rid


def _refused(engine: sa.Engine, sql: str) -> bool:
    """Does the database refuse ``sql`` to this login for lack of privilege?"""
    with engine.connect() as c:
        try:
            c.exec_driver_sql(sql)
        except sa.exc.ProgrammingError as e:
            return getattr(e.orig, "sqlstate", None) == "42501"
        finally:
            c.rollback()
    return False


#: Tables whose rows hold keys, slots, users, the key statement, the schema, the version
#: and the marks: a staff login may read them and nothing else.
_STATE_TABLES = ("dv_meta", "dv_slots", "dv_users")
_ROW = {"dv_meta": ("name, value", "'x', '\\x00'"),
        "dv_slots": ("slot_id, kind, unlock, keyring", "'x', 'passphrase', '\\x00', '\\x00'"),
        "dv_users": ("user_id, name, role, public, slot_id", "'x', 'x', 'lead', '\\x00', 'x'")}


def _forbidden(staff_role: str) -> list[str]:
    out = []
    for t in _STATE_TABLES:
        cols, vals = _ROW[t]
        out += [f"INSERT INTO {t} ({cols}) VALUES ({vals})", f"UPDATE {t} SET {cols.split(',')[0]} = 'y'",
                f"DELETE FROM {t}", f"TRUNCATE {t}"]
    out += ["UPDATE dv_meta SET value = '8' WHERE name = 'db_schema_version'",  # finding 1
            "DELETE FROM dv_slots WHERE kind = 'passphrase'",  # finding 3
            "UPDATE dv_meta SET value = 'x' WHERE name = 'moving'",  # finding 2
            "UPDATE dv_audit SET detail = '{}'", "DELETE FROM dv_audit", "TRUNCATE dv_audit",
            "UPDATE dv_reveals SET \"grant\" = NULL", "TRUNCATE dv_reveals",
            "TRUNCATE dv_records", "TRUNCATE dv_index", "TRUNCATE dv_pseudonyms",
            # DDL
            "CREATE TABLE dv_evil (x int)", "ALTER TABLE dv_meta ADD COLUMN evil int", "DROP TABLE dv_audit",
            "ALTER TABLE dv_records DISABLE TRIGGER ALL", "CREATE INDEX dv_evil_ix ON dv_records (data)",
            "CREATE FUNCTION dv_evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            f"ALTER TABLE dv_audit OWNER TO {staff_role}",
            # the lead's locks: the row locks on dv_meta, and any table lock stronger than a read's
            f"SELECT 1 FROM dv_meta WHERE name = '{L.LEAD_KEYS_ROW}' FOR UPDATE",
            f"SELECT 1 FROM dv_meta WHERE name = '{L.LEAD_UPGRADE_ROW}' FOR UPDATE",
            "SELECT 1 FROM dv_meta FOR SHARE", "SELECT 1 FROM dv_slots FOR UPDATE", "SELECT 1 FROM dv_users FOR SHARE",
            "LOCK TABLE dv_meta IN EXCLUSIVE MODE", "LOCK TABLE dv_slots IN SHARE MODE",
            "LOCK TABLE dv_users IN ACCESS EXCLUSIVE MODE", "LOCK TABLE dv_audit IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE dv_audit IN SHARE MODE"]
    return out


def test_the_staff_login_is_refused_every_forbidden_table_and_statement(pg: str, roles: tuple[str, str]) -> None:
    """Issue 24, findings 1-4: with write access to dv_meta and dv_slots, the staff login
    set the version the lead then signed (the vault never opened again), forged the moving
    mark (the audit log dropped), deleted the recovery slot, and held the client's own
    locks. `restrict_audit_role` (what `dvault init --app-role` runs) now grants the staff
    role SELECT only on those tables, append only on the log, no DDL and no lock that is
    the lead's."""
    from vault.store import restrict_audit_role
    with vault.create(pg, PASSPHRASE, lead=Identity.generate()) as v:
        v.add(PERSON)
    restrict_audit_role(pg, roles[0])
    staff = sa.create_engine(as_role(pg, roles[0]))
    try:
        allowed = [sql for sql in _forbidden(roles[0]) if not _refused(staff, sql)]
        assert allowed == []
        with staff.connect() as c:  # what a staff client needs still works
            for t in ("dv_meta", "dv_slots", "dv_users", "dv_records", "dv_index", "dv_pseudonyms", "dv_reveals",
                      "dv_audit"):
                c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
            c.exec_driver_sql("SELECT 1 FROM dv_records FOR UPDATE")
            c.rollback()
            c.exec_driver_sql(f"GRANT UPDATE ON dv_meta TO {roles[0]}")  # not the owner: a warning, no grant
            assert not c.exec_driver_sql(f"SELECT has_table_privilege('{roles[0]}', 'dv_meta', 'UPDATE')").scalar()
            c.rollback()
    finally:
        staff.dispose()
    with vault.open(pg, PASSPHRASE) as v:  # and nothing above changed the vault
        assert v.count() == 1 and v.audit_verify().ok


def test_a_lead_login_may_not_change_the_log_or_the_tables(team: Any) -> None:
    """The lead's login writes every table (keys, users, marks) but, as staff, only appends
    to the audit log, and runs no DDL: only the tables' owner can."""
    logins, _lead, _staff, _rid = team
    lead = sa.create_engine(logins.lead)
    try:
        for sql in ("UPDATE dv_audit SET detail = '{}'", "DELETE FROM dv_audit", "TRUNCATE dv_audit",
                    "TRUNCATE dv_records", "DROP TABLE dv_audit", "CREATE TABLE dv_evil (x int)",
                    "ALTER TABLE dv_meta ADD COLUMN evil int"):
            assert _refused(lead, sql), sql
        with lead.connect() as c:
            c.exec_driver_sql(f"SELECT 1 FROM dv_meta WHERE name = '{L.LEAD_KEYS_ROW}' FOR UPDATE")
            c.rollback()
    finally:
        lead.dispose()


def test_staff_operations_work_as_the_staff_login_and_lead_ones_as_the_lead_login(team: Any) -> None:
    logins, lead, staff, rid = team
    with vault.open(logins.staff, identity=staff) as s:
        new = s.add({"badge_name": "Kofi", "email": "kofi@example.org", "legal_name": "Kofi Mensah"})
        more = s.add_many([{"badge_name": f"walk-in {i}", "email": f"w{i}@example.org"} for i in range(3)])
        assert s.get(rid)["badge_name"] == "Amira"
        assert [r.id for r in s.find(email="kofi@example.org")] == [new]
        badge = s.pseudonym(new, "badge")
        assert s.resolve(badge).id == new
        s.update(new, {"dietary": ["vegan"], "phone": "+233 1 555"})
        s.delete(more[0])
        s.set_reason("hospital needs her legal name")
        req = s.request_reveal(rid, "legal_name", "hospital needs her legal name")
        assert {e["action"] for e in s.audit_entries()} >= {"open", "add", "read", "search", "update", "shred",
                                                            "reveal_request"}
        assert s.status()["transport"].startswith("local")
    with vault.open(logins.lead, identity=lead) as v:
        v.approve_reveal(req, record=rid, field="legal_name")
        v.plant_canary({"badge_name": "decoy"})
        other = Identity.generate()
        v.add_user(other.public, "noor", "staff")
        v.rotate()
        v.remove_user(other.public.user_id)
        v.reindex()
        assert v.audit_verify().ok and v.check_records().ok
        v.audit_checkpoint()
    with vault.open(logins.staff, identity=staff) as s:
        assert s.reveal(req) == "Amira Haddad"
        assert s.get(new)["dietary"] == ["vegan"]
    with vault.open(logins.lead, PASSPHRASE) as v:  # the recovery passphrase, as the lead's login
        v.add({"badge_name": "recovery add"})
        v.change_passphrase(PASSPHRASE + " 2")
    with vault.open(logins.lead, PASSPHRASE + " 2") as v:
        assert v.count() == 6 and v.audit_verify().ok


def test_a_lead_operation_as_the_staff_login_fails_with_one_clear_line(team: Any) -> None:
    logins, lead, _staff, _rid = team
    with vault.open(logins.staff, identity=lead) as v:
        with pytest.raises(vault.StoreError, match="refused this login the privilege") as e:
            v.add_user(Identity.generate().public, "noor", "staff")
        assert "\n" not in str(e.value)
    with vault.open(logins.lead, identity=lead) as v:
        assert len(v.users()) == 2 and v.audit_verify().ok


def test_a_staff_add_leaves_the_canary_list_alone_and_a_lead_add_reseals_it(team: Any) -> None:
    """The staff login cannot write dv_meta, so a staff add does not re-seal the list; the
    lead's adds still do (and keep its tags)."""
    logins, lead, staff, _rid = team
    raw = sa.create_engine(logins.owner)

    def canaries() -> bytes:
        with raw.connect() as c:
            return bytes(c.exec_driver_sql("SELECT value FROM dv_meta WHERE name = 'canaries'").scalar_one())
    try:
        with vault.open(logins.lead, identity=lead) as v:
            decoy = v.plant_canary({"badge_name": "decoy"})
        before = canaries()
        with vault.open(logins.staff, identity=staff) as s:
            s.add({"badge_name": "walk-in"})
        assert canaries() == before
        with vault.open(logins.lead, identity=lead) as v:
            v.add({"badge_name": "late"})
            assert canaries() != before and v._canaries.live() == {decoy}
    finally:
        raw.dispose()


def test_grants_reach_every_table_the_vault_has(pg: str) -> None:
    """A table the vault gains must be given a line in STAFF_GRANTS (else staff get SELECT
    only on it, which may break them or, worse, be more than they should have)."""
    from vault.postgres import LEAD_GRANTS, STAFF_GRANTS
    vault.create(pg, PASSPHRASE).close()
    engine = sa.create_engine(pg)
    with engine.connect() as c:
        tables = {t for (t,) in c.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND left(tablename, 3) = 'dv_'")}
    engine.dispose()
    assert tables == set(STAFF_GRANTS) == set(LEAD_GRANTS)


def test_grants_are_refused_when_public_holds_more(pg: str, roles: tuple[str, str]) -> None:
    """A REVOKE from the role does not touch what PUBLIC (or a group it is in) holds: the
    grants are refused, and nothing changes, when the staff role would keep more."""
    from vault.postgres import grant_roles
    vault.create(pg, PASSPHRASE).close()
    admin = sa.create_engine(pg)
    with admin.begin() as c:
        c.exec_driver_sql("GRANT UPDATE ON dv_slots TO PUBLIC")
    try:
        with pytest.raises(vault.VaultError, match=f"database role {roles[0]} can still UPDATE dv_slots"):
            grant_roles(pg, staff=[roles[0]])
        with admin.connect() as c:
            assert not c.exec_driver_sql("SELECT has_table_privilege(%s, 'dv_records', 'INSERT')",
                                         (roles[0],)).scalar()
    finally:
        with admin.begin() as c:
            c.exec_driver_sql("REVOKE UPDATE ON dv_slots FROM PUBLIC")
        admin.dispose()
    with pytest.raises(vault.VaultError, match="named twice"):
        grant_roles(pg, staff=[roles[0]], lead=[roles[0]])


# -- locks ------------------------------------------------------------------------------------

def _hold(url: str, key: int) -> tuple[sa.Engine, sa.Connection]:
    """A staff session holding a session-level advisory lock for as long as it likes."""
    engine = sa.create_engine(url)
    c = engine.connect()
    c.exec_driver_sql(f"SELECT pg_advisory_lock({L.advisory_key(key)})")  # this vault's key, as a client computes it
    c.commit()
    return engine, c


def _within(seconds: float, fn: Any, handle: Any) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; (what it raised, how long it took), or fail if it is still
    waiting after ``seconds`` (a stall). ``handle``, the vault ``fn`` uses, is handed to the
    thread and back (a handle belongs to one thread at a time)."""
    out: list[BaseException | None] = [None]

    def run() -> None:
        try:
            handle._ses.adopt()
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out[0] = e
    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    took = time.monotonic() - t0
    assert not t.is_alive(), f"still waiting after {seconds} s: a staff login stalls the vault"
    handle._ses.adopt()
    return out[0], took


def test_a_staff_login_holding_a_lock_stalls_no_one_past_the_bound(team: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, every lock was an advisory lock any login could take, and the clients waited
    for it without end: a staff login holding one stalled every client. Now every wait is
    bounded (lock_timeout) and ends in one clear VaultBusy line; released, all goes on."""
    monkeypatch.setattr(L, "LOCK_WAIT_MS", 1000)
    logins, lead, staff, rid = team
    bound = 15.0  # far above the 1 s bound, far below "for ever"
    with vault.open(logins.lead, identity=lead) as v:
        cases: list[tuple[int, Any]] = [
            (L.PG_APPEND_LOCK, lambda: v.get(rid)),
            (L.PG_PLAN_LOCK, lambda: v.add({"badge_name": "x"})),
            (L.PG_KEYS_LOCK, lambda: v.add_user(Identity.generate().public, "noor", "staff")),
            (L.PG_KEYS_LOCK, lambda: v.update(rid, {"dietary": "halal"})),
        ]
        for key, op in cases:
            engine, held = _hold(logins.staff, key)
            try:
                err, took = _within(bound, op, v)
            finally:
                held.close()
                engine.dispose()
            assert isinstance(err, VaultBusy) and str(err).startswith("the vault is busy"), (key, err)
            assert took < bound
            op()  # the lock released, it works
        assert v.audit_verify().ok
    with vault.open(logins.staff, identity=staff) as s:  # a table lock a staff login may take: bounded too
        engine = sa.create_engine(logins.staff)
        c = engine.connect()
        c.exec_driver_sql("LOCK TABLE dv_records IN ACCESS EXCLUSIVE MODE")
        try:
            err, _took = _within(bound, lambda: s.get(rid), s)
        finally:
            c.close()
            engine.dispose()
        assert isinstance(err, VaultBusy)
        assert s.get(rid)["badge_name"] == "Amira"


def test_the_lead_row_locks_serialise_lead_clients(team: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two lead clients: the one that holds the keys row lock makes the other wait for it
    (and no longer, the bound); the staff login cannot take it at all."""
    monkeypatch.setattr(L, "LOCK_WAIT_MS", 1000)
    logins, lead, _staff, _rid = team
    engine = sa.create_engine(logins.lead)
    c = engine.connect()
    c.exec_driver_sql(f"SELECT 1 FROM dv_meta WHERE name = '{L.LEAD_KEYS_ROW}' FOR UPDATE")
    try:
        with vault.open(logins.lead, identity=lead) as v:
            err, _took = _within(15.0, lambda: v.add_user(Identity.generate().public, "noor", "staff"), v)
            assert isinstance(err, VaultBusy)
    finally:
        c.rollback()
        c.close()
        engine.dispose()
    staff = sa.create_engine(logins.staff)
    try:
        assert _refused(staff, f"SELECT 1 FROM dv_meta WHERE name = '{L.LEAD_KEYS_ROW}' FOR UPDATE")
    finally:
        staff.dispose()


def test_the_guide_postgresql_walkthrough_runs(pg: str, roles: tuple[str, str], tmp_path: Any) -> None:
    """docs/guide.md "PostgreSQL on a shared server", its sh-postgres block as written (the
    role names made unique: roles are cluster-wide), with real dvault processes."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from test_guide import GUIDE, ROOT
    blocks = re.findall(r"```sh-postgres\n(.*?)```", GUIDE.read_text("utf-8"), re.S)
    assert len(blocks) == 1
    script = blocks[0].replace("dvault_staff", roles[0]).replace("dvault_lead", roles[1])
    lines = ["set -euo pipefail", 'dvault() { "$DVAULT_PYTHON" -m vault_cli.main "$@" <<< "y"; }']
    for line in script.splitlines():
        m = re.match(r"^(.*?)\s+#\s*exit (\d+)\s*$", line)
        if m:
            lines.append(f"set +e; {m.group(1)} 2>>errors.log; rc=$?; set -e; [ $rc -eq {m.group(2)} ] || exit 99")
        elif line.strip():
            lines.append(line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"DVAULT_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "DVAULT_DOCS": str(ROOT / "docs"),
                "DVAULT_CONFIG": str(tmp_path / "no-config.toml"), "HOME": str(tmp_path),
                "OWNER_URL": pg, "LEAD_URL": as_role(pg, roles[1]), "STAFF_URL": as_role(pg, roles[0])})
    res = subprocess.run(["bash", "-c", "\n".join(lines) + "\n"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "imported 20 participant(s)" in res.stdout
    assert "transport" in res.stdout and "local connection" in res.stdout
    errors = Path(tmp_path / "errors.log").read_text("utf-8")
    assert errors.endswith("dvault: error: the database refused this login the privilege (a staff login cannot "
                           "change keys, users, the schema or the vault's state: that is the lead's client's work)\n")
    assert "Traceback" not in res.stderr


def test_db_roles_takes_an_existing_vaults_app_role_down_to_the_staff_grants(
        pg: str, roles: tuple[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """A vault set up before (its app role could write every table but the log): the
    owner's `dvault db-roles` revokes what the role had and grants the staff set."""
    from test_cli_errors import run
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(pg, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
    admin = sa.create_engine(pg)
    with admin.begin() as c:  # what `dvault init --app-role` granted before
        schema = c.exec_driver_sql("SELECT current_schema()").scalar()
        c.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {roles[0]}")
        for t in ("dv_meta", "dv_slots", "dv_records", "dv_index", "dv_pseudonyms", "dv_users", "dv_reveals"):
            c.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {roles[0]}")
        c.exec_driver_sql(f"GRANT SELECT, INSERT ON dv_audit TO {roles[0]}")
    admin.dispose()
    staff_login = sa.create_engine(as_role(pg, roles[0]))
    try:
        assert not _refused(staff_login, "UPDATE dv_meta SET value = value WHERE name = 'db_schema_version'")
        monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
        code, out, err = run(monkeypatch, capsys, "db-roles", "--vault", pg, "--app-role", roles[0], "--lead-role",
                             roles[1])
        assert code == 0, err
        assert out.startswith("database roles set on ") and f"database role {roles[0]} (staff)" in err
        assert [sql for sql in _forbidden(roles[0]) if not _refused(staff_login, sql)] == []
        code, _out, err = run(monkeypatch, capsys, "db-roles", "--vault", pg)
        assert (code, err.strip()) == (1, "dvault: error: name at least one --app-role or --lead-role")
        code, _out, err = run(monkeypatch, capsys, "db-roles", "--vault", as_role(pg, roles[1]), "--app-role",
                              roles[0])
        assert (code, err.strip()) == (1, "dvault: error: run this as the owner of the vault's tables (the login "
                                          "that ran dvault init)")
    finally:
        staff_login.dispose()
    with vault.open(as_role(pg, roles[0]), identity=staff) as s:
        s.add({"badge_name": "after"})
