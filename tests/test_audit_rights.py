"""The record check (Vault.check_records) takes a record state only from an entry whose
actor could write rows that way (vault.audit_replay.rights): a tool identity, or a revoked
user who kept their identity and the staff database login, cannot excuse a row they
deleted by signing a ``shred``. On PostgreSQL the attacker's writes go through the staff
database login set up by grant_roles. Record states of the second kind (per class, over
each envelope's bytes) also refuse an update entry that vouches for a class its actor may
not update, and name content sealed again under a DEK id the row already held."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE, PG_URL
from rawdb import RawDB, audit_head
from vault import audit as A
from vault import audit_replay as AR
from vault.identity import Identity
from vault.postgres import grant_roles

FULL = {"legal_name": "Amira Haddad", "organisation": "Free Press Network", "nationality": "Syria",
        "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
        "risk_level": "low", "risk_notes": "None known.", "dietary": "vegan", "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "email": "kofi@example.org", "badge_name": "Kofi", "risk_level": "low"}


def _as(url: str, role: str) -> str:
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


@contextlib.contextmanager
def _staff_login(url: str) -> Iterator[str]:
    """The URL the attacker's client holds: the SQLite file itself, or on PostgreSQL the
    staff login (STAFF_GRANTS) of this vault."""
    if url.startswith("sqlite"):
        yield url
        return
    assert PG_URL is not None
    role = "dvh_s_" + secrets.token_hex(4)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    try:
        grant_roles(url, staff=[role])
        yield _as(url, role)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP OWNED BY {role}")
            c.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def _row(url: str, rid: str) -> bytes:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return bytes(c.execute(sa.text("SELECT data FROM dv_records WHERE id = :i"),
                                   {"i": bytes.fromhex(rid)}).scalar_one())
    finally:
        engine.dispose()


def _exec(url: str, sql: str, **params: Any) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            return c.execute(sa.text(sql), params).rowcount
    finally:
        engine.dispose()


def _append_signed(url: str, who: Identity, action: str, target: str, detail: str) -> int:
    """Chain one labelled entry signed by ``who`` (a modified client's append)."""
    seq, prev = audit_head(url)
    at = int(time.time() * 1000)
    h = A.entry_hash(seq + 1, prev, at, who.public.raw, action, target, detail, b"", labelled=True)
    sig = who.sign(A.signed_message(h, True))
    _exec(url, "INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) "
               "VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i, :j)",
          a=seq + 1, b=prev, c=at, d=who.public.raw, e=action, f=target, g=detail, h=b"", i=h, j=sig)
    return seq + 1


# -- 1. the record check takes record states from any signer, whatever their role ---------------
def test_staff_roll_back_a_risk_envelope_and_their_own_update_entry_excuses_it(url: str) -> None:
    """Staff cannot write the risk class (write-only: no update of it). A staff member with the
    staff database login puts back an older risk envelope (risk_level "low") beside the
    record's current envelopes, and appends an ``update`` entry of their own, signed, dropping
    the current state and putting the mix's (the state key derives from the meta key, which
    every role holds), with every part as it is (risk changed) or with the risk part lied
    about (then the parts do not give the state dropped). The lead's record check must take
    neither as an explanation: staff can change no risk envelope."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    old = _row(url, rid)  # what staff read from the table (SELECT on dv_records)
    with vault.open(url, identity=lead) as v:
        v.update(rid, {"risk_level": "high", "risk_notes": "Followed after the 2025 trial.", "dietary": "none"})
        assert v.check_records().ok
    current = _row(url, rid)
    with _staff_login(url) as surl:
        raw = RawDB(surl)
        try:  # the current row (new risk, new logistics) with the older risk envelope: a mix
            mixed = raw.envs_of(current)
            mixed["risk"] = raw.envs_of(old)["risk"]
            raw.set_envs(rid, mixed)  # (an UPDATE of dv_records: the staff login may)
        finally:
            raw.close()
        with vault.open(url, identity=lead) as v:  # without the staff entry: found
            check = v.check_records()
            assert not check.ok and check.unlogged == (rid,)
        b = bytes.fromhex(rid)
        with vault.open(surl, identity=staff) as s:
            states = s._access.states_v2
            assert states is not None
            mixed_row = _row(surl, rid)
            upd = _last_entry(surl, "update")
            dropped = json.loads(upd[1])["state"]["put"][0]  # the lead's update's put state
            assert dropped == states.token(b, current)
            was, now = states.named_parts(b, current), states.named_parts(b, mixed_row)
            assert [c for c in was if was[c] != now[c]] == ["risk"]
            honest = {"drop": [dropped], "put": [states.token(b, mixed_row)], "was": was, "now": now}
            lying = {**honest, "was": {**was, "risk": now["risk"]}}  # "only contact changed"
            s._audit("update", upd[0], {"fields": ["email"], "state": honest})
            with vault.open(url, identity=lead) as v:
                check = v.check_records()
                assert not check.ok and check.refused, "staff excused their own rollback of a risk envelope"
                assert "risk" in v.audit_problem(check.refused[-1])["problem"]
            s._audit("update", upd[0], {"fields": ["email"], "state": lying})
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        assert v.get(rid)["risk_level"] == "low"  # the lead reads the rolled-back value
        check = v.check_records()
        assert not check.ok and len(check.refused) == 2, "staff excused their own rollback: " + str(check)
        assert check.unlogged == (rid,)


def _last_entry(url: str, action: str) -> tuple[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            t, d = c.exec_driver_sql(f"SELECT target, detail FROM dv_audit WHERE action = '{action}' "
                                     "ORDER BY seq DESC LIMIT 1").one()
    finally:
        engine.dispose()
    return t, d


def test_a_tool_cannot_excuse_a_deletion_with_a_shred_it_may_not_make(url: str) -> None:
    """A ``tool`` identity may not shred (vault.delete: AccessDenied). With the staff
    database login its client deletes a record row and signs a ``shred`` entry dropping the
    row's state: the lead's record check then reports nothing."""
    lead, tool = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(tool.public, "kiosk", "tool")
        rid = v.add(FULL)
        v.add(OTHER)
    with _staff_login(url) as surl:
        with vault.open(surl, identity=tool) as t:
            with pytest.raises(vault.AccessDenied):
                t.delete(rid)
            token = t._records.state_token(bytes.fromhex(rid), _row(surl, rid))
            assert _exec(surl, "DELETE FROM dv_records WHERE id = :i", i=bytes.fromhex(rid)) == 1
            with vault.open(url, identity=lead) as v:  # without the tool's entry: found
                assert len(v.check_records().missing) == 1
            t._audit("shred", _last_entry(surl, "add")[0], {"state": {"drop": [token]}})
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        check = v.check_records()
        assert not check.ok, "a tool's signed shred excused a deletion it may not make: " + str(check)


def test_a_revoked_user_cannot_excuse_a_deletion_after_the_revocation(url: str) -> None:
    """A revoked staff member keeps the meta key (never rotated: threat-model 9) and the
    shared staff database login. After revocation they delete a record row and append a
    ``shred`` entry signed with their (revoked) identity: verify counts it as genuine (revoked
    users stay known actors, for their past entries) and the record check replays it."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        sam = v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
        v.add(OTHER)
    with _staff_login(url) as surl:
        with vault.open(surl, identity=staff) as s:
            states = s._access.states_v2  # the meta key's, kept from before the revocation
            assert states is not None
        with vault.open(url, identity=lead) as v:
            v.remove_user(sam.user_id)
            assert v.check_records().ok
        with pytest.raises(vault.AccessDenied):
            vault.open(surl, identity=staff)
        token = states.token(bytes.fromhex(rid), _row(surl, rid))
        assert _exec(surl, "DELETE FROM dv_records WHERE id = :i", i=bytes.fromhex(rid)) == 1
        with vault.open(url, identity=lead) as v:  # without the revoked user's entry: found
            assert len(v.check_records().missing) == 1
        _append_signed(surl, staff, "shred", _last_entry(surl, "add")[0],
                       json.dumps({"state": {"drop": [token]}}, sort_keys=True, separators=(",", ":")))
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        check = v.check_records()
        assert not check.ok, "a revoked user's shred, signed after the revocation, excused a deletion: " + str(check)


def test_staff_edit_a_contact_envelope_under_its_own_dek_id_without_any_entry(url: str) -> None:
    """In record formats 2 and 3 the DEK and the nonces derive from the class key and the DEK
    id, so a holder of a class key (staff, for public/logistics/contact) seals new content
    under the DEK id already in the row. A staff member with the staff database login so
    changes a participant's emergency contact (what the desk calls) with no audit entry at
    all. A state of the first kind (over DEK ids only) stays the same; the second kind's,
    over the envelope's bytes, does not, and the lead's record check names the row."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    before = audit_head(url)[0]
    from vault import envelope as E
    with _staff_login(url) as surl:
        with vault.open(surl, identity=staff) as s:
            recs, b = s._records, bytes.fromhex(rid)
            data = _row(surl, rid)
            plain = recs.open_row(b, data, {"contact": None})  # encoded cells of the class
            by_class = {"contact": {**plain, **recs.encode({"emergency_contact": "Call +44 20 7946 0000 (ask for Mo)"},
                                                           partial=True)["contact"]}}
            codec = s._access.codec
            envs = codec.unpack(data)
            dek_id = E.parse_dek_header(envs["contact"][0]).dek_id
            from vault.compact import class_randomness
            n = class_randomness(len(by_class["contact"]), codec.writes(data))
            rnd = bytes(32) + dek_id + bytes(n - 40)  # the DEK id the row already holds
            fresh = codec.unpack_some(recs.seal(b, by_class, rnd=rnd, only={"contact"}, fmt=codec.writes(data)),
                                      {"contact"})
            envs["contact"] = fresh["contact"]
            new = codec.pack(codec.writes(data), envs)
            assert recs.state_token(b, new, second=False) == recs.state_token(b, data, second=False)
            assert recs.state_token(b, new) != recs.state_token(b, data)
            assert _exec(surl, "UPDATE dv_records SET data = :d WHERE id = :i", d=new, i=b) == 1
    with vault.open(url, identity=lead) as v:
        assert v.get(rid)["emergency_contact"] == "Call +44 20 7946 0000 (ask for Mo)"
        assert not v.verify().ok  # verify compares the rows' states with the log too
        actions = [e["action"] for e in v.audit_entries() if e["seq"] > before]
        assert "update" not in actions  # nobody logged a change
        assert v.audit_verify().ok
        check = v.check_records()
        assert not check.ok, "a changed record with no entry passed the record check: " + str(check)
        assert check.unlogged == (rid,) and not check.damaged


def test_every_role_that_may_write_still_vouches_for_its_rows(url: str) -> None:
    """The rights check refuses nothing a client may do: a staff member's add, update and
    shred, the lead's, and a revoked user's entries from before the revocation all count."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        sam = v.add_user(staff.public, "sam", "staff")
        kept = v.add(FULL)
    with vault.open(url, identity=staff) as s:
        a, b = s.add_many([OTHER, {**OTHER, "email": "k2@example.org"}])
        s.update(a, {"email": "kofi.m@example.org"})
        s.delete(b)
    with vault.open(url, identity=lead) as v:
        assert v.check_records().ok
        v.remove_user(sam.user_id)
        v.update(kept, {"dietary": "none"})
        check = v.check_records()
        assert check.ok and not check.refused, str(check)


def test_rights_follow_the_roles() -> None:
    """vault.audit_replay.rights: what each role's keys let it write, and nothing after a
    revocation."""
    import types
    roles = {"lead": types.SimpleNamespace(classes=("a", "b"), write_only=(), purposes=("p",)),
             "staff": types.SimpleNamespace(classes=("a",), write_only=("b",), purposes=("p",)),
             "tool": types.SimpleNamespace(classes=("a",), write_only=(), purposes=()),
             "writer": types.SimpleNamespace(classes=(), write_only=("a", "b"), purposes=("p",))}

    def user(uid: str, role: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(user_id=uid, role=role, public=types.SimpleNamespace(raw=uid.encode()))
    users = [user("s", "staff"), user("t", "tool"), user("w", "writer"), user("r", "revoked"),
             user("q", "revoked"), user("x", "revoked")]
    added = types.SimpleNamespace(seq=2, action="user_added", actor=b"L", detail='{"role":"staff","user":"r"}')
    added_x = types.SimpleNamespace(seq=4, action="user_added", actor=b"L", detail='{"role":"staff","user":"x"}')
    forged = types.SimpleNamespace(seq=3, action="user_added", actor=b"s", detail='{"role":"lead","user":"q"}')
    removed = types.SimpleNamespace(seq=10, action="user_removed", actor=b"L", detail='{"user":"r"}')
    may = AR.rights(users, roles, ("a", "b"), ("p",), [added, forged, added_x, removed], {b"L"},  # type: ignore[list-item]
                    "revoked")
    assert all(may(b"L", a, 99) for a in ("add", "update", "shred", "reencrypt"))
    assert [a for a in ("add", "import", "update", "shred", "reencrypt") if may(b"s", a, 5)] == [
        "add", "import", "update", "shred"]
    assert [a for a in ("add", "update", "shred") if may(b"t", a, 5)] == ["update"]
    assert [a for a in ("add", "update", "shred") if may(b"w", a, 5)] == ["add", "shred"]
    assert may(b"r", "shred", 9) and not may(b"r", "shred", 10) and not may(b"r", "add", 11)
    assert not may(b"r", "reencrypt", 9) and may.updatable(b"r") == {"a"}  # as the staff role they were added with
    assert not any(may(b"q", a, 5) for a in ("add", "update", "shred"))  # no user_added by the lead: no role
    assert may.updatable(b"L") is None and may.updatable(b"stranger") == frozenset()
    assert not may(b"x", "update", 5)  # revoked, and no taken user_removed says when: nothing
    held = AR.rights(users, roles, ("a", "b"), ("p",), [added, removed], {b"L"}, "revoked",  # type: ignore[list-item]
                     frozenset({2}))
    assert not held(b"r", "shred", 9)  # its user_added quarantined: no role
    assert not may(b"stranger", "add", 1)
