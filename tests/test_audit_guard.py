"""PostgreSQL: the insert guard on dv_audit (vault.audit_guard, docs/format.md 13a). The staff
clients' login may append to the log; it may no longer append a row the chain cannot take
(each such row locked the lead, or everyone, out for good: review1 R01-R03, R07), nor drop
or switch off the guard. Roles get random names and are dropped afterwards."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from vault import _format as F
from vault.identity import Identity
from vault.postgres import check_roles, grant_roles

import vault
from conftest import PASSPHRASE, PG_URL, _pg_schema
from rawdb import audit_head
from vault import audit as A
from vault import audit_rows as RW

pytestmark = pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need DVAULT_TEST_PG_URL")


def _as(url: str, role: str) -> str:
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


@pytest.fixture
def staffed() -> Iterator[tuple[str, str, Identity, Identity]]:
    """A vault with the staff and lead logins set up by grant_roles; (url, staff login url,
    lead identity, staff identity)."""
    assert PG_URL is not None
    staff_role, lead_role = "dvg_s_" + secrets.token_hex(4), "dvg_l_" + secrets.token_hex(4)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        for r in (staff_role, lead_role):
            c.exec_driver_sql(f"CREATE ROLE {r} LOGIN")
    try:
        with _pg_schema() as url:
            lead, staff = Identity.generate(), Identity.generate()
            with vault.create(url, PASSPHRASE, lead=lead) as v:
                v.add_user(staff.public, "sam", "staff")
                v.add({"legal_name": "Amira Haddad", "badge_name": "Amira"})
            grant_roles(url, staff=[staff_role], lead=[lead_role])
            yield url, _as(url, staff_role), lead, staff
    finally:
        with admin.begin() as c:
            for r in (staff_role, lead_role):
                c.exec_driver_sql(f"DROP OWNED BY {r}")
                c.exec_driver_sql(f"DROP ROLE {r}")
        admin.dispose()


def _insert(url: str, row: tuple[Any, ...]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.exec_driver_sql("INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) "
                              "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", row)
    finally:
        engine.dispose()


def _entry(who: Identity, seq: int, prev: bytes, *, labelled: bool = True, **edit: Any) -> tuple[Any, ...]:
    at = int(time.time() * 1000)
    h = A.entry_hash(seq, prev, at, who.public.raw, "read", "", "{}", b"", labelled=labelled)
    row = dict(seq=seq, prev=prev, at=at, actor=who.public.raw, action="read", target="", detail="{}", reason=b"",
               hash=h, sig=who.sign(A.signed_message(h, labelled)))
    row.update(edit)
    return tuple(row.values())


def test_the_staff_login_cannot_append_a_row_the_chain_cannot_take(staffed) -> None:  # type: ignore[no-untyped-def]
    url, staff_url, lead, staff = staffed
    seq, h = audit_head(url)
    refused = {
        "a one-byte hash (R01)": _entry(staff, seq + 1, h, hash=b"x"),
        "a short actor": _entry(staff, seq + 1, h, actor=bytes(63)),
        "a long signature": _entry(staff, seq + 1, h, sig=bytes(65)),
        "a negative time": _entry(staff, seq + 1, h, at=-1),
        "seq 2^63-1 (R02)": _entry(staff, RW.MAX_SEQ, h),
        "a gap (R03)": _entry(staff, seq + 1000, h),
        "a seq taken": _entry(staff, seq, h),
        "seq 0": _entry(staff, 0, h),
        "a broken link (R03)": _entry(staff, seq + 1, os.urandom(32)),
        "a hash of other content": _entry(staff, seq + 1, h, detail='{"fields":["legal_name"]}'),
        "the older form after labelled ones (R07)": _entry(staff, seq + 1, h, labelled=False),
    }
    for what, row in refused.items():
        with pytest.raises(sa.exc.IntegrityError, match="dv_audit: refused entry"):
            _insert(staff_url, row)
        assert audit_head(url)[0] == seq, what
    _insert(staff_url, _entry(staff, seq + 1, h))  # an entry the chain takes: the staff login may append it
    with vault.open(staff_url, identity=staff) as s:  # and the library's own appends pass
        s.get(s.ids()[0], ["badge_name"])
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok


def test_the_staff_login_cannot_drop_or_disable_the_guard(staffed) -> None:  # type: ignore[no-untyped-def]
    url, staff_url, lead, staff = staffed
    engine = sa.create_engine(staff_url)
    try:
        for statement in ("DROP TRIGGER dv_audit_guard ON dv_audit",
                          "ALTER TABLE dv_audit DISABLE TRIGGER dv_audit_guard",
                          "CREATE OR REPLACE FUNCTION dv_audit_guard() RETURNS trigger LANGUAGE plpgsql "
                          "AS $$ BEGIN RETURN NEW; END $$",
                          "SET session_replication_role = replica"):
            with pytest.raises(sa.exc.DBAPIError):
                with engine.begin() as c:
                    c.exec_driver_sql(statement)
    finally:
        engine.dispose()
    with sa.create_engine(url).connect() as c:
        assert c.exec_driver_sql("SELECT tgenabled FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid "
                                 "WHERE r.relname = 'dv_audit' AND r.relnamespace = "
                                 "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())").scalar_one() == "A"


def test_grant_roles_puts_the_guard_back(staffed) -> None:  # type: ignore[no-untyped-def]
    """A vault whose guard is missing (made before it, or dropped by the owner) gets it from
    dvault db-roles, as the grants that let the staff login append are given."""
    url, staff_url, lead, staff = staffed
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("DROP TRIGGER dv_audit_guard ON dv_audit")
    seq, h = audit_head(url)
    _insert(staff_url, _entry(staff, seq + 5, h))  # unguarded: a gap goes in
    with engine.begin() as c:
        c.exec_driver_sql("DELETE FROM dv_audit WHERE seq = %s", (seq + 5,))
    role = sa.engine.make_url(staff_url).username
    assert role is not None
    grant_roles(url, staff=[role])
    engine.dispose()
    with pytest.raises(sa.exc.IntegrityError, match="dv_audit: refused entry"):
        _insert(staff_url, _entry(staff, seq + 5, h))


def test_the_guard_links_over_a_malformed_row_from_before_it(staffed) -> None:  # type: ignore[no-untyped-def]
    """A malformed row inserted before the guard existed: the next entry links to its name,
    as every reader computes it, and the guard computes the same."""
    url, staff_url, lead, staff = staffed
    seq, h = audit_head(url)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE dv_audit DISABLE TRIGGER dv_audit_guard")
        c.exec_driver_sql("INSERT INTO dv_audit VALUES (%s,%s,1,%s,'read','','{}',''::bytea,%s,%s)",
                          (seq + 1, h, bytes(64), b"x", bytes(64)))
        c.exec_driver_sql("ALTER TABLE dv_audit ENABLE ALWAYS TRIGGER dv_audit_guard")
    engine.dispose()
    with vault.open(staff_url, identity=staff) as s:
        s.get(s.ids()[0], ["badge_name"])
    with vault.open(url, identity=lead) as v:
        v.quarantine(seq + 1)
        assert v.audit_verify().ok


def test_the_upgrade_to_v8_makes_the_guard() -> None:
    """A vault of v7 has no guard; the lead's upgrade (through the owner's URL, as every
    upgrade that changes tables) makes it, in the upgrade's transaction."""
    from vault.audit_guard import state

    from rawdb import as_release_v7
    with _pg_schema() as url:
        lead = Identity.generate()
        with vault.create(url, PASSPHRASE, lead=lead) as v:
            as_release_v7(v)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as c:
                c.exec_driver_sql("DROP TRIGGER dv_audit_guard ON dv_audit")
                c.exec_driver_sql("DROP FUNCTION dv_audit_guard()")
                assert state(c) is None
            with vault.open(url, identity=lead) as v:
                assert v._ses.db_known == F.DB_SCHEMA_VERSION and v.audit_verify().ok
            with engine.connect() as c:
                assert state(c) == "A"
        finally:
            engine.dispose()


@pytest.mark.parametrize("power", ["CREATEROLE", "CREATEDB"])
def test_a_role_that_can_give_itself_more_is_refused(power: str) -> None:
    assert PG_URL is not None
    role = "dvg_p_" + secrets.token_hex(4)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE ROLE {role} LOGIN {power}")
    try:
        with _pg_schema() as url:
            with vault.create(url, PASSPHRASE):
                pass
            with pytest.raises(vault.VaultError, match=f"{role} has CREATEROLE or CREATEDB"):
                check_roles(url, [role])
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_the_guard_follows_its_table_to_another_schema() -> None:
    """The trigger goes with a table moved to another schema (ALTER TABLE ... SET SCHEMA);
    it then checks that table's log, not whatever vault is made at the old place."""
    lead = Identity.generate()
    with _pg_schema() as url, _pg_schema() as away:
        with vault.create(url, PASSPHRASE, lead=lead):
            pass
        engine = sa.create_engine(url)
        old, new = (sa.engine.make_url(u).query["options"].split("=")[1] for u in (url, away))
        with engine.begin() as c:
            for n in [n for n in sa.inspect(c).get_table_names() if n.startswith("dv_")]:
                c.exec_driver_sql(f'ALTER TABLE "{old}"."{n}" SET SCHEMA "{new}"')
        engine.dispose()
        with vault.create(url, PASSPHRASE, lead=Identity.generate()):
            pass
        for place in (away, url):
            with vault.open(place, PASSPHRASE) as v:
                v.add({"badge_name": "x"})
                assert v.audit_verify().ok
            seq, h = audit_head(place)
            with pytest.raises(sa.exc.IntegrityError, match="dv_audit: refused entry"):
                _insert(place, _entry(lead, seq + 7, h))
