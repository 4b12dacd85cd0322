"""Identities, enrolment, roles enforced by keys, roster signatures, revocation (issue 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, freeze_audit, old_release, thaw_audit
from vault import _format as F
from vault import compact
from vault import envelope as E
from vault import keys as K
from vault import users as U
from vault._crypto import AuthFailure
from vault.identity import Identity, IdentityError, PublicIdentity

STAFF_FIELDS = {"badge_name", "pronouns", "email", "phone", "dietary"}
PERSON = {"legal_name": "Amira Haddad", "passport_number": "P83526008", "risk_level": "high",
          "risk_notes": "followed", "badge_name": "Amira", "email": "amira@example.org",
          "phone": "+961 1 234 567", "dietary": ["vegan"], "pronouns": "she/her"}


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    return _make_team(url)


def _make_team(url: str):  # type: ignore[no-untyped-def]
    lead, staff, tool = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public.to_line(), "sam", "staff")
        v.add_user(tool.public, "badge-printer", "tool")
        rid = v.add(PERSON)
    return url, lead, staff, tool, rid


def test_identity_file_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = ident.save(tmp_path / "id" / "me.dvid", "identity pass")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(vault.VaultError):
        ident.save(path, "again")
    back = Identity.load(path, "identity pass")
    assert back.public == ident.public
    with pytest.raises(vault.WrongPassphrase):
        Identity.load(path, "wrong")
    text = path.read_text()
    assert ident.public.to_line() in text and "PRIVATE" in text
    assert ident.public.fingerprint() in repr(ident) and "identity pass" not in repr(ident)
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(ident)


def test_public_line_checks() -> None:
    pub = Identity.generate().public
    line = pub.to_line()
    assert PublicIdentity.from_line(line) == pub and PublicIdentity.from_line(line.upper()) == pub
    typo = line[:20] + ("a" if line[20] != "a" else "b") + line[21:]
    with pytest.raises(IdentityError, match="checksum|garbled"):
        PublicIdentity.from_line(typo)
    with pytest.raises(IdentityError):
        PublicIdentity.from_line(line[:-3])
    with pytest.raises(IdentityError):
        PublicIdentity.from_line("ssh-ed25519 AAAA")
    assert len(pub.fingerprint().split()) == 5


def test_roles_see_only_their_classes(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        assert dict(v.get(rid)) == PERSON
        assert v.role.name == "lead"
    with vault.open(url, identity=staff) as v:
        assert v.role.name == "staff"
        assert set(v.get(rid)) == STAFF_FIELDS
        assert [set(r) for r in v.records()] == [STAFF_FIELDS]
        assert v.find(email="amira@example.org")[0].id == rid
        assert v.resolve(v.pseudonym(rid, "travel")).id == rid
        v.update(rid, {"dietary": "halal"})
        for call in (lambda: v.get(rid, fields=["legal_name"]), lambda: v.find(legal_name="Amira Haddad"),
                     lambda: v.find_tokens(legal_name="Haddad"), lambda: v.update(rid, {"risk_notes": "x"}),
                     lambda: v.rotate(), lambda: v.reindex(),
                     lambda: v.add_user(Identity.generate().public, "eve", "lead"),
                     lambda: list(v.records(fields=["risk_level"]))):
            with pytest.raises(vault.AccessDenied):
                call()
    with vault.open(url, identity=tool) as v:
        assert dict(v.get(rid)) == {"badge_name": "Amira", "pronouns": "she/her"}
        badge = v.pseudonym(rid, "badge")
        assert v.resolve(badge, fields=["badge_name"])["badge_name"] == "Amira"
        with pytest.raises(vault.AccessDenied):
            v.pseudonym(rid, "travel")
        with pytest.raises(vault.AccessDenied):
            v.get(rid, fields=["email"])
    with vault.open(url, PASSPHRASE) as v:  # recovery passphrase: everything
        assert v.get(rid)["dietary"] == ["halal"] and v.get(rid)["legal_name"] == "Amira Haddad"


def _keyring_of(url: str, ident: Identity) -> K.Keyring:
    """What a staff member can extract with their identity and raw database access."""
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    with raw.engine.begin() as c:
        uid = ident.public.user_id
        slot_id = c.execute(sa.text("SELECT slot_id FROM dv_users WHERE user_id = :u"), {"u": uid}).scalar_one()
        unlock, ring = c.execute(sa.text("SELECT unlock, keyring FROM dv_slots WHERE slot_id = :s"),
                                 {"s": slot_id}).one()
    raw.close()
    secret = U.open_user_slot(bytes(unlock), ident, vid)
    return K.open_keyring(secret, vid, bytes(ring))


def _try_all_keys(url: str, rid: str, cls: str, ring: K.Keyring) -> bool:
    """True if any key in ``ring`` unwraps the record's DEK for ``cls``."""
    from vault import _crypto as C
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    dek, _ = raw.envs(rid)[cls]
    names = list(raw.cells(rid, cls))
    try:
        for k in ring.keys:
            if k.kind == K.KIND_CLASS_KEY and E.parse_dek_header(dek).derived:  # record format 2
                if raw.derived_opens(rid, cls, k.secret, k.version):
                    return True
    finally:
        raw.close()
    for k in ring.keys:
        if k.kind != K.KIND_CLASS_KEY:
            continue
        try:
            if E.parse_dek_header(dek).derived:
                continue
            if E.parse_dek_header(dek).sealed:
                E.unseal_dek(E.class_box_secret(k.secret), k.version, vid, bytes.fromhex(rid), cls, names, dek)
            else:
                E.unwrap_dek(C.Aead(k.secret), k.version, vid, bytes.fromhex(rid), cls, names, dek)
            return True
        except (AuthFailure, E.Malformed):
            pass
    return False


def test_staff_keys_cannot_decrypt_identity_or_risk_from_raw_db(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    staff_ring = _keyring_of(url, staff)
    assert {k.name for k in staff_ring.keys if k.kind == K.KIND_CLASS_KEY} == {"public", "logistics", "contact"}
    for cls in ("identity", "risk"):
        assert not _try_all_keys(url, rid, cls, staff_ring)
    assert _try_all_keys(url, rid, "contact", staff_ring)  # the check itself can succeed
    tool_ring = _keyring_of(url, tool)
    for cls in ("logistics", "contact", "identity", "risk"):
        assert not _try_all_keys(url, rid, cls, tool_ring)


def test_revocation(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    old_ring = _keyring_of(url, staff)
    with vault.open(url, identity=lead) as v:
        v.remove_user(staff.public.user_id)
        assert {u.name for u in v.users()} == {"lead", "badge-printer"}
        rid2 = v.add({"email": "after@example.org", "badge_name": "After"})
    with pytest.raises(vault.AccessDenied):
        vault.open(url, identity=staff)
    for r in (rid, rid2):  # rewrapped and new DEKs: the old staff keys open none
        for cls in ("public", "logistics", "contact"):
            assert not _try_all_keys(url, r, cls, old_ring)
    with vault.open(url, identity=tool) as v:  # others keep working with re-sealed slots
        assert v.get(rid2)["badge_name"] == "After"
    with vault.open(url, PASSPHRASE) as v:
        assert v.get(rid)["legal_name"] == "Amira Haddad"


def _sql(url: str, query: str, **params: object) -> None:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text(query), params)
    raw.close()


@pytest.mark.parametrize("attack", ["raise_role", "self_enrol", "extra_slot", "swap_lead_key", "drop_sig"])
def test_user_table_tampering_detected(team, attack: str) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    eve = Identity.generate()
    if attack == "raise_role":
        _sql(url, "UPDATE dv_users SET role = 'lead' WHERE user_id = :u", u=staff.public.user_id)
    elif attack == "self_enrol":
        _sql(url, "INSERT INTO dv_users VALUES (:u, 'eve', 'staff', :p, 'ffffffffffffffff')",
             u=eve.public.user_id, p=eve.public.raw)
    elif attack == "extra_slot":
        raw = RawDB(url)
        with raw.engine.begin() as c:
            row = c.execute(sa.text("SELECT unlock, keyring FROM dv_slots WHERE kind = 'x25519'")).first()
            c.execute(sa.text("INSERT INTO dv_slots VALUES ('aaaaaaaaaaaaaaaa', 'x25519', :u, :k)"),
                      {"u": bytes(row[0]), "k": bytes(row[1])})
        raw.close()
    elif attack == "swap_lead_key":
        _sql(url, "UPDATE dv_meta SET value = :v WHERE name = 'lead_vk'", v=eve.public.ed25519)
    else:
        _sql(url, "UPDATE dv_meta SET value = :v WHERE name = 'roster_sig'", v=bytes(64))
    for opener in ({"identity": lead}, {"identity": tool}, {"passphrase": PASSPHRASE}):
        with pytest.raises(vault.IntegrityError):
            vault.open(url, **opener)  # type: ignore[arg-type]


@pytest.mark.parametrize("use", ["approve", "rotate", "add_user", "audit_verify", "users"])
def test_user_rows_edited_after_open_are_refused(team, use: str) -> None:  # type: ignore[no-untyped-def]
    """The user table is checked on every read, not only at open: a database writer who swaps
    sam's public key for theirs while the lead has the vault open gets no break-glass value,
    no keyring, no re-signed table and no standing as a known audit actor."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "hospital admission")
    eve = Identity.generate()
    with vault.open(url, identity=lead) as v:
        _sql(url, "UPDATE dv_users SET public = :p WHERE user_id = :u", p=eve.public.raw, u=staff.public.user_id)
        with pytest.raises(vault.IntegrityError, match="user table"):
            if use == "approve":
                v.approve_reveal(req, ttl_seconds=3600, record=rid, field="legal_name")
            elif use == "rotate":
                v.rotate()
            elif use == "add_user":
                v.add_user(Identity.generate().public, "newcomer", "staff")
            elif use == "audit_verify":
                v.audit_verify()
            else:
                v.users()
        _sql(url, "UPDATE dv_users SET public = :p WHERE user_id = :u", p=staff.public.raw, u=staff.public.user_id)
        assert not any(r.approved for r in v.reveal_requests())  # nothing was sealed to anyone
        assert sorted(u.name for u in v.users()) == ["badge-printer", "lead", "sam"]
    with vault.open(url, identity=staff) as v:  # sam's slot was not re-sealed to eve
        assert v.get(rid)["email"] == PERSON["email"]


def test_rotation_keeps_every_role_working(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        v.rotate(reencrypt=True)
    with vault.open(url, identity=staff) as v:
        assert v.get(rid)["email"] == "amira@example.org"
        assert {k.version for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY} == {2}
    with vault.open(url, PASSPHRASE) as v:
        assert v.get(rid)["risk_notes"] == "followed"


def test_only_the_lead_manages(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    with vault.open(url, PASSPHRASE) as v:  # recovery passphrase holds keys but cannot sign
        with pytest.raises(vault.AccessDenied):
            v.add_user(Identity.generate().public, "x", "staff")
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.ValidationError):
            v.add_user(staff.public, "dup", "staff")
        with pytest.raises(vault.ValidationError):
            v.add_user(Identity.generate().public, "x", "superuser")
        with pytest.raises(vault.ValidationError):
            v.remove_user(lead.public.user_id)
        with pytest.raises(vault.NotFound):
            v.remove_user("00" * 8)
    with pytest.raises(vault.AccessDenied):
        vault.open(url, identity=Identity.generate())
    with pytest.raises(vault.ValidationError):
        vault.open(url)


def test_break_glass(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    reason = "Hospital needs the legal name of Amira for admission"
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.ValidationError):
            v.request_reveal(rid, "email", "already mine")
        with pytest.raises(vault.ValidationError):
            v.request_reveal(rid, "legal_name", "")
        req = v.request_reveal(rid, "legal_name", reason)
        with pytest.raises(vault.AccessDenied):
            v.reveal(req)  # not approved yet
        assert [r.reason for r in v.reveal_requests()] == [None]  # staff cannot read reasons
    raw = RawDB(url)
    with raw.engine.connect() as c:
        assert reason.encode() not in bytes(c.exec_driver_sql("SELECT reason FROM dv_reveals").scalar())
    raw.close()
    with vault.open(url, identity=tool) as v:
        with pytest.raises(vault.AccessDenied):
            v.approve_reveal(req, record=rid, field="legal_name")
    with vault.open(url, identity=lead) as v:
        (r,) = v.reveal_requests()
        assert r.reason == reason and r.field == "legal_name" and not r.approved
        v.approve_reveal(req, ttl_seconds=3600, record=rid, field="legal_name")
    with vault.open(url, identity=tool) as v:
        with pytest.raises(vault.NotFound):
            v.reveal(req)  # someone else's grant
    with vault.open(url, identity=staff) as v:
        assert v.reveal(req) == "Amira Haddad"
        with pytest.raises(vault.NotFound):
            v.reveal(req)  # one time only
        req2 = v.request_reveal(rid, "risk_level", "Security briefing for the travel agent")
    with vault.open(url, identity=lead) as v:
        for bad in (0, -1, 1.5, "3600", True, 31 * 86400):
            with pytest.raises(vault.ValidationError, match="ttl_seconds"):
                v.approve_reveal(req2, ttl_seconds=bad, record=rid, field="risk_level")  # type: ignore[arg-type]
        v.approve_reveal(req2, ttl_seconds=60, record=rid, field="risk_level")
    import time as _time
    from vault import breakglass
    later = _time.time() + 120
    monkeypatch.setattr(breakglass.time, "time", lambda: later)  # two minutes on: expired
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied, match="expired"):
            v.reveal(req2)


def test_break_glass_forged_grant_rejected(team) -> None:  # type: ignore[no-untyped-def]
    """A database writer cannot approve a request: the grant must carry the lead's signature."""
    from vault import _crypto as C
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "need it for the visa letter")
    forged_payload = b'{"value": "Someone Else"}'
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    sealed = C.seal_to(staff.public.x25519, vid + bytes.fromhex(req) + forged_payload)
    grant = (2**40).to_bytes(8, "big") + bytes(64) + sealed
    with raw.engine.begin() as c:
        c.execute(sa.text("UPDATE dv_reveals SET \"grant\" = :g WHERE req_id = :r"), {"g": grant, "r": req})
    raw.close()
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.IntegrityError):
            v.reveal(req)


def test_break_glass_malformed_grant_is_one_error(team) -> None:  # type: ignore[no-untyped-def]
    """A grant cut short in the database is an integrity error, not a crash in the parser."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "need it for the visa letter")
    _sql(url, 'UPDATE dv_reveals SET "grant" = :g WHERE req_id = :r', g=b"\x00\x01", r=req)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.IntegrityError, match="malformed"):
            v.reveal(req)


def test_staff_can_write_what_they_cannot_read(team) -> None:  # type: ignore[no-untyped-def]
    """Staff register a person, identity fields included; those fields are sealed to the
    identity class's public key: staff cannot read them back, the lead can."""
    url, lead, staff, tool, rid = team
    person = {"legal_name": "Tenzin Wangchuk", "passport_number": "X1234567", "risk_level": "medium",
              "badge_name": "Tenzin", "email": "tenzin@example.org"}
    with vault.open(url, identity=staff) as v:
        new = v.add(person)
        assert dict(v.get(new)) == {"badge_name": "Tenzin", "email": "tenzin@example.org"}
        with pytest.raises(vault.AccessDenied):
            v.get(new, fields=["legal_name"])
        with pytest.raises(vault.AccessDenied):
            v.update(new, {"legal_name": "changed"})
    staff_ring = _keyring_of(url, staff)
    assert not _try_all_keys(url, new, "identity", staff_ring)
    with vault.open(url, identity=tool) as v:
        with pytest.raises(vault.AccessDenied):
            v.add({"badge_name": "x"})  # a tool holds no public keys for other classes
    with vault.open(url, identity=lead) as v:
        assert dict(v.get(new)) == person
        assert v.find(legal_name="Tenzin Wangchuk") == []  # staff could not index it ...
        v.reindex()
        assert v.find(legal_name="Tenzin Wangchuk")[0].id == new  # ... the lead's reindex does
        v.rotate(["identity"])  # rotation adopts sealed envelopes into ordinary wraps
    raw = RawDB(url)
    assert raw.envs(new)["identity"][0][1:2] == b"D"
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        assert dict(v.get(new)) == person


def _remac_schema(url: str, staff: Identity, new_text: str) -> None:
    """What a staff member with database write access can do with the meta key they hold."""
    ring = _keyring_of(url, staff)
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    raw.set_meta("schema", new_text.encode())
    raw.set_meta("schema_mac", K.mac_schema(ring.current(K.KIND_META_KEY), vid, new_text))
    raw.close()


def test_staff_cannot_rewrite_roles_with_the_meta_key(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    raw = RawDB(url)
    text = raw.meta("schema").decode()
    raw.close()
    escalated = text.replace('classes = ["public", "logistics", "contact"]\npurposes',
                             'classes = ["public", "logistics", "contact", "identity", "risk"]\npurposes')
    assert escalated != text
    _remac_schema(url, staff, escalated)
    for opener in ({"identity": lead}, {"identity": staff}, {"passphrase": PASSPHRASE}):
        with pytest.raises(vault.IntegrityError, match="signature"):
            vault.open(url, **opener)  # type: ignore[arg-type]


def test_staff_cannot_rewrite_the_index_plan(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    ring = _keyring_of(url, staff)
    raw = RawDB(url)
    vid, plan = raw.meta("vault_id"), raw.meta("index_plan").decode()
    wider = plan.replace('"email":1', '"email":20')  # the joint plan of 150 people gives e-mail 1 bit
    assert wider != plan
    raw.set_meta("index_plan", wider.encode())
    raw.set_meta("index_plan_mac", K.mac_plan(ring.current(K.KIND_META_KEY), vid, wider))
    raw.close()
    with pytest.raises(vault.IntegrityError, match="signature"):
        vault.open(url, identity=lead)


def test_tools_cannot_shred(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=tool) as v:
        with pytest.raises(vault.AccessDenied):
            v.delete(rid)
    with vault.open(url, identity=staff) as v:
        v.delete(rid)
        assert v.count() == 0


def test_passphrase_change_replaces_the_slot_secret(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    old_slot_id, old_unlock, _ = raw.slot()
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        v.change_passphrase("a brand new recovery passphrase")
    raw = RawDB(url)
    slot_id, unlock, keyring = raw.slot()
    raw.close()
    old_secret = K.open_passphrase_slot(old_unlock, PASSPHRASE, vid)  # an old copy of the slot
    with pytest.raises(vault.IntegrityError):
        K.open_keyring(old_secret, vid, keyring)  # no longer opens the live keyring
    with vault.open(url, "a brand new recovery passphrase") as v:
        assert v.get(rid)["legal_name"] == "Amira Haddad"
    with vault.open(url, identity=lead) as v:  # the lead's copy of the recovery secret was updated
        v.rotate(["risk"])
    with vault.open(url, "a brand new recovery passphrase") as v:
        assert v.get(rid)["risk_notes"] == "followed"


def _grant(url: str, req: str) -> bytes:
    raw = RawDB(url)
    with raw.engine.connect() as c:
        g = bytes(c.execute(sa.text('SELECT "grant" FROM dv_reveals WHERE req_id = :r'), {"r": req}).scalar())
    raw.close()
    return g


def test_break_glass_blobs_carry_version_and_recipient(team) -> None:  # type: ignore[no-untyped-def]
    """Grant (kind V) and reason (kind Q) start with version, kind and the recipient's id;
    an edited header does not open (docs/format.md, section 8b)."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        reqs = [v.request_reveal(rid, "legal_name", f"visa letter number {i}") for i in range(3)]
    raw = RawDB(url)
    with raw.engine.connect() as c:
        reason = bytes(c.execute(sa.text("SELECT reason FROM dv_reveals WHERE req_id = :r"), {"r": reqs[0]}).scalar())
    raw.close()
    assert reason[:10] == b"\x01Q" + bytes.fromhex(lead.public.user_id)
    with vault.open(url, identity=lead) as v:
        for req in reqs:
            v.approve_reveal(req, ttl_seconds=3600, record=rid, field="legal_name")
    grant = _grant(url, reqs[0])
    assert grant[:10] == b"\x01V" + bytes.fromhex(staff.public.user_id)
    with vault.open(url, identity=staff) as v:
        assert v.reveal(reqs[0]) == "Amira Haddad"
    # another recipient id in the header, and an unknown kind byte: refused, and gone
    for req, head in ((reqs[1], b"\x01V" + bytes.fromhex(tool.public.user_id)), (reqs[2], b"\x01Q" + grant[2:10])):
        _sql(url, 'UPDATE dv_reveals SET "grant" = :g WHERE req_id = :r', g=head + _grant(url, req)[10:], r=req)
        with vault.open(url, identity=staff) as v:
            with pytest.raises(vault.IntegrityError):
                v.reveal(req)
            with pytest.raises(vault.NotFound):
                v.reveal(req)  # taken: a refused grant is not offered twice


def test_break_glass_headerless_blobs_of_before_still_open(team) -> None:  # type: ignore[no-untyped-def]
    """Grants and reasons written before the header existed (bare sealed boxes) still work."""
    import struct
    from vault import _crypto as C
    from vault import breakglass as B
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "need it for the visa letter")
        vid = v._ses.vid
    old_reason = C.seal_to(lead.public.x25519, vid + bytes.fromhex(req) + b"written before the header")
    expires = 2**40
    sealed = C.seal_to(staff.public.x25519, vid + bytes.fromhex(req) + b'{"value": "Amira Haddad"}')
    sig = lead.sign(B._grant_message(vid, req, staff.public.user_id, bytes.fromhex(rid), "legal_name", expires, sealed))
    _sql(url, 'UPDATE dv_reveals SET "grant" = :g, reason = :s WHERE req_id = :r',
         g=struct.pack(">Q", expires) + sig + sealed, s=old_reason, r=req)
    with vault.open(url, identity=lead) as v:
        assert [r.reason for r in v.reveal_requests()] == ["written before the header"]
    with vault.open(url, identity=staff) as v:
        assert v.reveal(req) == "Amira Haddad"


def test_reveal_keeps_its_grant_when_the_audit_write_fails(team) -> None:  # type: ignore[no-untyped-def]
    """The grant's deletion commits with the reveal's audit entry: fail-closed, and the
    requester can try again once the log is writable."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "need it for the visa letter")
    with vault.open(url, identity=lead) as v:
        v.approve_reveal(req, ttl_seconds=3600, record=rid, field="legal_name")
    with vault.open(url, identity=staff) as v:
        freeze_audit(v._ses.store().engine, url)
        from vault.audit import AuditError
        with pytest.raises(AuditError):
            v.reveal(req)
        thaw_audit(v._ses.store().engine, url)
        assert v.reveal(req) == "Amira Haddad"
        entries = v.audit_entries(action="reveal")
    assert [e["detail"] for e in entries] == [{"request": req, "field": "legal_name", "shown": True}]
    with vault.open(url, identity=lead) as v:  # both sides name the record; neither is booked as a plain read
        au = v.pseudonym(rid, "audit")
        about = [(e["action"], e["detail"].get("field")) for e in v.audit_entries(target=au)
                 if e["action"] in ("reveal_request", "reveal_approve", "reveal", "read")]
    assert about == [("reveal_request", "legal_name"), ("reveal_approve", "legal_name"), ("reveal", "legal_name")]


def test_slot_confusion_is_refused_at_the_victims_own_open(team) -> None:  # type: ignore[no-untyped-def]
    """A database writer replaces a staff member's slot with one sealed to them but holding
    keys the writer made, and re-MACs the schema and index plan with its own meta key.
    Until 2026-11-27 the staff member's client opened that substitute (on a machine with no
    pin) and encrypted what they added under the writer's keys. The signed key statement
    (docs/format.md 9b) now refuses it at that open, pin or no pin; the next open by anyone
    holding the real keys fails too."""
    url, lead, staff, tool, rid = team
    _substitute_staff_slot(url, staff)
    with pytest.raises(vault.IntegrityError, match="meta key is not the one the lead signed"):
        vault.open(url, identity=staff)
    with pytest.raises(vault.IntegrityError):  # anyone with the real keys is refused
        vault.open(url, identity=lead)
    with pytest.raises(vault.IntegrityError):
        vault.open(url, PASSPHRASE)


def test_an_insider_cannot_redirect_a_colleagues_write_only_classes(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The attack the pin cannot see (threat model 9): an enrolled user who can write the
    database rebuilds a colleague's slot around the *real* meta, purpose and class keys
    they hold, with identity and risk public keys of their own. Schema MAC, signatures and
    pin all match; only the lead's signed key statement does not."""
    from vault import _crypto as C
    from vault.envelope import class_box_secret
    url, lead, staff, tool, rid = team
    colleague = Identity.generate()
    pins = tmp_path / "colleague.vaults"
    with vault.open(url, identity=lead) as v:
        v.add_user(colleague.public, "noor", "staff")
        line = v.pin_line
    from vault import pins as PN
    PN.add(pins, line, url)
    real = _keyring_of(url, staff)  # the insider's own keyring: staff, like the colleague's
    mine = {c: C.random_bytes(32) for c in ("identity", "risk")}  # secrets only the insider has
    forged = K.Keyring([k if k.kind != K.KIND_CLASS_PUBLIC else
                        K.Key(k.kind, k.name, k.version, k.kid, C.x25519_public(class_box_secret(mine[k.name])))
                        for k in real.keys])
    raw = RawDB(url)
    vid = raw.meta("vault_id")
    with raw.engine.begin() as c:
        slot_id = next(u.slot_id for u in _users_of(c) if u.user_id == colleague.public.user_id)
        secret = C.random_bytes(32)
        c.execute(sa.text("UPDATE dv_slots SET unlock = :u, keyring = :k WHERE slot_id = :s"),
                  {"u": U.seal_user_slot(colleague.public, secret, bytes.fromhex(slot_id), vid),
                   "k": K.seal_keyring(secret, bytes.fromhex(slot_id), vid, forged), "s": slot_id})
    raw.close()
    with pytest.raises(vault.IntegrityError, match="keys for class identity are not the ones the lead signed"):
        vault.open(url, identity=colleague, pins=pins)  # pinned, and still the pin matches
    with vault.open(url, identity=lead) as v:  # everyone else is unaffected
        assert v.get(rid)["legal_name"] == PERSON["legal_name"]
    with vault.open(url, identity=staff) as v:
        v.add({"badge_name": "Ok"})


def test_a_removed_key_statement_stops_users_until_the_lead_signs_again(url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Older vaults (database schema v3) have no statement: then no user but the lead (or a
    recovery opener) may open, and the lead's open signs it and moves the vault to the
    current version, which releases that do not know the statement refuse to open."""
    from vault import _format as F
    with old_release(monkeypatch):
        url, lead, staff, tool, rid = _make_team(url)
    raw = RawDB(url)
    with raw.engine.begin() as c:
        assert c.execute(sa.text("DELETE FROM dv_meta WHERE name IN ('keys_stmt', 'keys_stmt_sig')")).rowcount == 2
    raw.set_meta("db_schema_version", b"3")
    raw.close()
    for who in (staff, tool):
        with pytest.raises(vault.IntegrityError, match="keys are not signed: the lead must open it once"):
            vault.open(url, identity=who)
    vault.open(url, identity=lead).close()
    with vault.open(url, identity=staff) as v:
        assert v.get(rid)["email"] == PERSON["email"]
    raw = RawDB(url)
    text = raw.meta("keys_stmt").decode()
    raw.close()
    assert text.startswith("dvault keys v3\nmeta ") and text.count("\nclass ") == 5
    assert f"\ndb {F.DB_SCHEMA_VERSION}\nusers " in text
    assert F.DB_SCHEMA_VERSION >= 7 and raw_meta(url, "db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()


def test_a_removed_key_statement_stops_everyone_from_v7(team) -> None:  # type: ignore[no-untyped-def]
    """From v7 the statement names the version and the user table; deleted, the lead's open
    would sign whatever table it finds (an older one put back, say), so it refuses too; and
    with the version set back to 6, 5 or 4 as well, since every vault from v4 on had one
    (at 6 the lead's open used to upgrade the vault and sign a table put back)."""
    url, lead, staff, tool, rid = team
    raw = RawDB(url)
    with raw.engine.begin() as c:
        assert c.execute(sa.text("DELETE FROM dv_meta WHERE name IN ('keys_stmt', 'keys_stmt_sig')")).rowcount == 2
    for version in (b"7", b"6", b"5", b"4"):
        raw.set_meta("db_schema_version", version)
        for opener in ({"identity": staff}, {"identity": lead}, {"passphrase": PASSPHRASE}):
            with pytest.raises(vault.IntegrityError, match="signed key statement is missing"):
                vault.open(url, **opener)  # type: ignore[arg-type]
    raw.close()


def test_revocation_cannot_be_undone_with_an_older_user_table(team) -> None:  # type: ignore[no-untyped-def]
    """A database writer keeps a copy of the lead-signed user table, its signature and sam's
    slot from before sam's revocation, and puts them back. The roster signature still
    verifies; the key statement names the current table (and, put back too, the keys from
    before the revocation's rotation), so every open refuses and no rotation re-seals the
    current keys to sam's slot."""
    url, lead, staff, tool, rid = team
    raw = RawDB(url)
    with raw.engine.begin() as c:
        users = [tuple(r) for r in c.execute(sa.text("SELECT * FROM dv_users"))]
        slots = [tuple(r) for r in c.execute(sa.text("SELECT * FROM dv_slots"))]
    before = {n: raw.meta(n) for n in ("roster_sig", "keys_stmt", "keys_stmt_sig")}
    with vault.open(url, identity=lead) as v:
        v.remove_user(staff.public.user_id)
        later = v.add({"email": "later@example.org", "badge_name": "Added after revocation"})
    with pytest.raises(vault.AccessDenied):
        vault.open(url, identity=staff)
    with raw.engine.begin() as c:  # the user row as it was, and the slot
        c.execute(sa.text("DELETE FROM dv_users"))
        for row in users:
            c.execute(sa.text("INSERT INTO dv_users VALUES (" + ", ".join(f":c{i}" for i in range(len(row))) + ")"),
                      {f"c{i}": x for i, x in enumerate(row)})
        have = {r[0] for r in c.execute(sa.text("SELECT slot_id FROM dv_slots"))}
        for row in slots:
            if row[0] not in have:
                c.execute(sa.text("INSERT INTO dv_slots VALUES (" + ", ".join(f":c{i}" for i in range(len(row)))
                                  + ")"), {f"c{i}": x for i, x in enumerate(row)})
    raw.set_meta("roster_sig", before["roster_sig"])
    for opener in ({"identity": lead}, {"passphrase": PASSPHRASE}, {"identity": staff}, {"identity": tool}):
        with pytest.raises(vault.IntegrityError, match="user table is not the one the lead signed last"):
            vault.open(url, **opener)  # type: ignore[arg-type]
    raw.set_meta("keys_stmt", before["keys_stmt"])  # and the statement from before, too
    raw.set_meta("keys_stmt_sig", before["keys_stmt_sig"])
    for opener in ({"identity": lead}, {"passphrase": PASSPHRASE}, {"identity": tool}):
        with pytest.raises(vault.IntegrityError, match="not the ones the lead signed"):
            vault.open(url, **opener)  # type: ignore[arg-type]
    raw.close()
    try:  # sam's old slot matches the old statement: it holds only keys the rotation destroyed
        v = vault.open(url, identity=staff)
    except vault.VaultError:
        return
    with v, pytest.raises(vault.VaultError):
        v.get(later)


def raw_meta(url: str, name: str) -> bytes:
    raw = RawDB(url)
    try:
        return raw.meta(name)
    finally:
        raw.close()


def _substitute_staff_slot(url: str, staff: Identity) -> K.Keyring:
    """The database writer's move: the staff member's slot now opens a keyring of the
    writer's making (the real, public lead key kept), schema and plan re-MACed to match."""
    from vault import _crypto as C
    raw = RawDB(url)
    vid, lead_vk = raw.meta("vault_id"), raw.meta("lead_vk")
    schema = vault.schema.load(raw.meta("schema").decode())
    fake_full = K.Keyring.generate(schema.classes, schema.purposes)
    fake = U.role_keyring(fake_full, schema.roles["staff"], lead_vk)
    meta_key = fake.current(K.KIND_META_KEY)
    with raw.engine.begin() as c:
        slot_id, slot_kid = next((u.slot_id, bytes.fromhex(u.slot_id)) for u in _users_of(c) if u.user_id == staff.public.user_id)
        secret = C.random_bytes(32)
        c.execute(sa.text("UPDATE dv_slots SET unlock = :u, keyring = :k WHERE slot_id = :s"),
                  {"u": U.seal_user_slot(staff.public, secret, slot_kid, vid),
                   "k": K.seal_keyring(secret, slot_kid, vid, fake), "s": slot_id})
    raw.set_meta("schema_mac", K.mac_schema(meta_key, vid, raw.meta("schema").decode()))
    raw.set_meta("index_plan_mac", K.mac_plan(meta_key, vid, raw.meta("index_plan").decode()))
    raw.close()
    return fake_full


def _users_of(c: sa.Connection) -> list:
    from vault.access import users_of as _users
    return _users(c.exec_driver_sql("SELECT user_id, name, role, public, slot_id FROM dv_users").all())


def test_pinned_client_refuses_a_substituted_slot(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With a known-vaults file (the CLI keeps one beside each identity), the first open
    records the vault's key fingerprint; after the slot swap of the test above, the next
    open is refused before anything can be added, and the file holds no secret."""
    from vault import pins as PN
    url, lead, staff, tool, rid = team
    pins = tmp_path / "staff.dvid.vaults"
    with vault.open(url, identity=staff, pins=pins) as v:
        assert v.get(rid)["email"] == PERSON["email"]
        vid = v._ses.vid
    line = [ln for ln in pins.read_text().splitlines() if not ln.startswith(("#", "at "))]
    with vault.open(url, identity=lead) as v:
        assert line == [v.pin_line] and stat.S_IMODE(pins.stat().st_mode) == 0o600
    with vault.open(url, identity=staff, pins=pins) as v:  # same keys: fine, file unchanged
        pass
    assert len([ln for ln in pins.read_text().splitlines() if not ln.startswith(("#", "at "))]) == 1
    with vault.open(url, identity=lead) as v:  # a rotation does not change the pinned key
        v.rotate()
    with vault.open(url, identity=staff, pins=pins):
        pass
    _substitute_staff_slot(url, staff)
    with pytest.raises(vault.IntegrityError, match="keys differ"):
        vault.open(url, identity=staff, pins=pins)
    pins.write_text("# known vaults\nnot a line\n")
    with pytest.raises(vault.VaultError, match="malformed"):
        vault.open(url, identity=staff, pins=pins)
    assert PN.fingerprint(vid, b"k" * 32) != PN.fingerprint(bytes(16), b"k" * 32)


def test_unwritable_known_vaults_file_is_one_error(team, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A known-vaults file that cannot be read (its folder is a file) or whose folder cannot
    be made refuses the open with one VaultError naming the file, not a raw OSError."""
    url, lead, staff, tool, rid = team
    home = tmp_path / "home"
    home.mkdir()
    blocker = home / "not-a-folder"
    blocker.write_bytes(b"")
    with pytest.raises(vault.VaultError, match="known-vaults file") as e:
        vault.open(url, identity=staff, pins=blocker / "staff.dvid.vaults")
    assert not isinstance(e.value, OSError)

    def denied(self, *a, **k):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(vault.VaultError, match="folder of the known-vaults file .*Permission denied") as e:
        vault.open(url, identity=staff, pins=home / "new" / "staff.dvid.vaults")
    assert not isinstance(e.value, OSError)
    assert [p.name for p in home.iterdir()] == ["not-a-folder"]


def test_a_pin_sent_by_the_lead_checks_the_first_open_too(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A pin line sent by the lead and recorded before the first open checks that open
    too; a refused open pins nothing."""
    from vault import pins as PN
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        line = v.pin_line
    vid, fp, signers = line.split()
    assert vid == v.id and len(fp) == len(signers) == 32  # an HMAC of the meta key, a hash of public keys
    seeded = tmp_path / "seeded.vaults"
    PN.add(seeded, line, url)
    PN.add(seeded, line.upper(), url)  # the same pin again, in capitals: nothing changes
    assert [ln for ln in seeded.read_text().splitlines() if not ln.startswith(("#", "at ", "new "))] == [line]
    assert PN.unopened(seeded) == {vid}  # pinned, not opened yet (docs/format.md 8c)
    with vault.open(url, identity=staff, pins=seeded) as v:  # the genuine vault matches it
        assert v.get(rid)["email"] == PERSON["email"]
    _substitute_staff_slot(url, staff)
    with pytest.raises(vault.IntegrityError, match="keys differ"):
        vault.open(url, identity=staff, pins=seeded)
    fresh = tmp_path / "fresh.vaults"  # no pin yet: the lead's signed key statement refuses it
    with pytest.raises(vault.IntegrityError, match="meta key is not the one the lead signed"):
        vault.open(url, identity=staff, pins=fresh)
    assert not fresh.exists()  # and the refused keys were not pinned
    other = tmp_path / "other.vaults"
    PN.add(other, line, url)
    with pytest.raises(vault.IntegrityError, match="keys differ"):
        PN.add(other, f"{vid} {fp} {'0' * 32}", url)  # the same keys, other signers
    for bad in ("", vid, f"{vid} {fp} {signers} extra", f"{vid[:-1]}g {fp} {signers}", f"{vid} {fp[:-2]} {signers}",
                f"{vid} {fp}", f"{vid} {'0' * 32}", None):  # the signers too: else the first open takes them
        with pytest.raises(vault.VaultError, match="vault id, its fingerprint and its signers"):
            PN.add(tmp_path / "bad.vaults", bad, url)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.vaults").exists()


def test_the_pin_also_holds_the_signers(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every user holds the meta key, so the pin also names the keys that sign the key
    statement: a keyring naming another recovery signer (what a writer who rebuilt every
    non-lead slot would hand out) is refused by a pinned client. Two-field lines written
    before gain the signers at the next open."""
    from vault import pins as PN
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        vid, fp, signers = v.pin_line.split()
    old = tmp_path / "old.vaults"
    old.write_text(f"# written by an earlier release\n{vid} {fp}\n")
    with vault.open(url, identity=staff, pins=old):
        pass
    assert [ln for ln in old.read_text().splitlines()[1:] if not ln.startswith("at ")] == [f"{vid} {fp} {signers}"]
    other = PN.signers_hash(b"", bytes(32))
    assert other != signers
    forged = tmp_path / "forged.vaults"
    forged.write_text(f"{vid} {fp} {other}\n")
    with pytest.raises(vault.IntegrityError, match="keys differ"):
        vault.open(url, identity=staff, pins=forged)


# -- sealed registrations are signed by their writer (kind W, database schema v5) -----------------
def _seal_as(url: str, rid: str, cls: str, values: dict[str, str], writer: Identity | None = None,
             claim: Identity | None = None) -> None:
    """Replace a record's ``cls`` envelope with one built from public data only: the class's
    X25519 key as the key statement in dv_meta lists it, a fresh DEK, cells for ``values``.
    ``writer`` signs it (kind W, under ``claim``'s user id if given); without one it is the
    unsigned kind E that releases before schema v5 wrote."""
    from vault import _crypto as C
    raw = RawDB(url)
    vid, r = raw.meta("vault_id"), bytes.fromhex(rid)
    line = next(x for x in raw.meta("keys_stmt").decode().splitlines() if x.startswith(f"class {cls} "))
    _, _, version, kid, pub = line.split()
    dek, dek_id = os.urandom(32), os.urandom(8)
    if raw.row(rid)[:2] == F.ROW_V3_PREFIX:  # record format 3: one ciphertext over every cell
        numbers = raw.codec().numbers
        order = sorted(values, key=numbers.__getitem__)
        padded = [E.pad(values[n].encode()) for n in order]
        aad = compact.joint_aad(dek_id, vid, r, [(numbers[n], n, len(p) // 32) for n, p in zip(order, padded)])
        ct = C.Aead(dek).seal(compact.JOINT_NONCE, b"".join(padded), aad)
        pieces, off = [], 0
        for n, p in zip(order, padded):
            pieces.append((numbers[n], ct[off:off + len(p)]))
            off += len(p)
        packed = E.pack_cells_v2(pieces, ct[off:], joint=True)
    elif raw.row(rid)[:2] == F.ROW_V2_PREFIX:  # record format 2: cells by field number, derived nonces
        numbers = raw.codec().numbers
        packed = E.pack_cells_v2(sorted(
            (numbers[n], C.Aead(dek).seal(compact.field_nonce(numbers[n]), E.pad(v.encode()),
                                          compact.field_aad(dek_id, vid, r, numbers[n], n)))
            for n, v in values.items()))
    else:
        packed = E.pack_cells({n: E.seal_field(C.Aead(dek), dek_id, vid, r, n, v.encode()) for n, v in values.items()})
    if writer is None:
        header = b"\x01E" + bytes.fromhex(kid) + dek_id
        context = C.sha256(E.dek_aad(header, vid, r, cls, int(version), list(values)))
        blob = header + C.seal_to(bytes.fromhex(pub), dek + context)
    else:
        who = bytes.fromhex((claim or writer).public.user_id)
        blob = E.seal_dek_to_class(bytes.fromhex(pub), bytes.fromhex(kid), int(version), dek_id, dek, vid, r, cls,
                                   list(values), who, writer.sign)
    envs = raw.envs(rid)
    envs[cls] = (blob, packed)
    raw.set_envs(rid, envs)
    raw.close()


def test_a_format_1_registration_by_staff_reads_and_its_seal_is_checked(team) -> None:  # type: ignore[no-untyped-def]
    """Rows of record format 1 written by a write-only role (the previous release's writer)
    carry kind W DEKs: the lead reads them, and a changed byte of the sealed DEK fails the
    envelope instead of yielding another key."""
    url, lead, staff, _tool, _rid = team
    with vault.open(url, identity=staff) as v:
        v._access.codec.legacy = True  # the previous release's row layout
        old = v.add(PERSON)
    raw = RawDB(url)
    assert raw.row(old)[:2] != F.ROW_V2_PREFIX
    envs = raw.envs(old)
    assert envs["identity"][0][1:2] == b"W"
    with vault.open(url, identity=lead) as v:
        assert v.get(old)["passport_number"] == PERSON["passport_number"]
    blob, cells = envs["identity"]
    envs["identity"] = (blob[:-1] + bytes([blob[-1] ^ 1]), cells)
    raw.set_envs(old, envs)
    raw.close()
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="'identity' envelope failed"):
            v.get(old)
        assert v.get(old, fields=["email"])["email"] == PERSON["email"]


def test_a_database_writer_cannot_forge_a_sealed_registration(team) -> None:  # type: ignore[no-untyped-def]
    """The key statement lists every class's X25519 public key in clear, so anyone who could
    write the database could seal an identity or risk envelope of their own making, and the
    lead read it as what staff registered. A sealed DEK now carries its writer's signature,
    checked against the signed user table: unsigned, unknown signer, a signer whose role may
    not fill in the class, or a colleague's id under another key: all refused, by a read and
    by the rotation that would otherwise adopt (launder) it into an ordinary wrap (it is left
    as it is, counted, and still refused after the rotation)."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        new = v.add(PERSON)
    raw = RawDB(url)
    genuine = raw.envs(new)
    raw.close()
    assert genuine["identity"][0][1:2] == b"W" and genuine["risk"][0][1:2] == b"W"
    outsider = Identity.generate()
    forged = {"legal_name": "Someone Else", "passport_number": "X0000000"}
    for writer, claim in ((None, None), (outsider, None), (tool, None), (outsider, staff), (lead, staff)):
        _seal_as(url, new, "identity", forged, writer, claim)
        with vault.open(url, identity=lead) as v:
            with pytest.raises(vault.IntegrityError, match="'identity' envelope failed"):
                v.get(new)
            assert v.get(new, fields=["email"])["email"] == PERSON["email"]  # other classes still read
            raw = RawDB(url)
            before = raw.envs(new)["identity"]
            assert v.rotate(["identity"])["unreadable"] == 1
            assert raw.envs(new)["identity"] == before  # not adopted into an ordinary wrap
            raw.close()
            with pytest.raises(vault.IntegrityError, match="'identity' envelope failed"):
                v.get(new)
        raw = RawDB(url)
        raw.set_envs(new, genuine)
        raw.close()
    _seal_as(url, new, "identity", forged, staff)  # the writer themselves: accepted, and names them
    with vault.open(url, identity=lead) as v:
        assert v.get(new)["legal_name"] == "Someone Else"
    raw = RawDB(url)
    assert E.parse_dek_header(raw.envs(new)["identity"][0]).writer == bytes.fromhex(staff.public.user_id)
    raw.close()


def test_revoking_a_writer_adopts_what_they_sealed(team) -> None:  # type: ignore[no-untyped-def]
    """What a staff member registered stays readable after they leave (adopted into ordinary
    wraps while their signature still counts); what they seal afterwards, with the identity
    and class public key they kept, is refused."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        new = v.add(PERSON)
    with vault.open(url, identity=lead) as v:
        v.remove_user(staff.public.user_id, rotate=False)  # keep the class keys: only the signature decides
        assert dict(v.get(new)) == PERSON
        assert v.check_records().ok  # adoption keeps every DEK id, so every logged record state
    raw = RawDB(url)
    # the sealed classes adopted into wraps (kind D); the others stay derived (record format 2, kind H)
    assert {c: d[1:2] for c, (d, _) in raw.envs(new).items()} == {
        c: b"D" if c in ("identity", "risk") else b"H" for c in raw.envs(new)}
    raw.close()
    _seal_as(url, new, "risk", {"risk_level": "low"}, staff)
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="'risk' envelope failed"):
            v.get(new)


def test_a_writer_cannot_stop_their_own_revocation_by_tampering_with_what_they_sealed(team) -> None:  # type: ignore[no-untyped-def]
    """Staff can write the database. One about to be revoked edits one of their sealed
    envelopes (its DEK box) and plants a row that does not parse: the revocation still
    completes, adopts what verifies, leaves the rest as unreadable as it was, and its audit
    entry counts the rows left (naming none)."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        good, bad = v.add(PERSON), v.add(dict(PERSON, legal_name="Someone Else"))
    raw = RawDB(url)
    envs = raw.envs(bad)
    blob, cells = envs["identity"]
    envs["identity"] = (blob[:40] + bytes([blob[40] ^ 1]) + blob[41:], cells)
    raw.set_envs(bad, envs)
    raw.set_row(rid, b"\x00\x03" + raw.row(rid)[2:30])  # the lead's own record, cut short
    with vault.open(url, identity=lead) as v:
        v.remove_user(staff.public.user_id, rotate=False)
        assert "sam" not in {u.name for u in v.users()}
        assert dict(v.get(good)) == PERSON
        with pytest.raises(vault.IntegrityError, match="'identity' envelope failed"):
            v.get(bad)
        entry = [e for e in v.audit_entries(action="user_removed")][-1]
        assert entry["detail"]["unreadable_rows"] == 2 and bad not in str(entry) and rid not in str(entry)
    assert raw.envs(good)["identity"][0][1:2] == b"D" and raw.envs(bad)["identity"][0][1:2] == b"W"
    raw.close()
    with pytest.raises(vault.VaultError):
        vault.open(url, identity=staff).close()


def test_a_writer_enrolled_after_a_handle_opened_is_recognised(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, rid = team
    late = Identity.generate()
    with vault.open(url, identity=lead) as first, vault.open(url, identity=lead) as second:
        second.add_user(late.public, "late", "staff")
        with vault.open(url, identity=late) as v:
            new = v.add(PERSON)
        assert dict(first.get(new)) == PERSON  # looked up again, against the lead's signature


def test_the_upgrade_adopts_unsigned_sealed_envelopes_atomically(url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Releases before database schema v5 wrote unsigned sealed DEKs (kind E). Only an opener
    holding the class can adopt them; until then staff are refused. A vault the adoption
    cannot finish stays as it was."""
    from vault import _format as F
    with old_release(monkeypatch):
        url, lead, staff, tool, rid = _make_team(url)
        with vault.open(url, identity=staff) as v:
            a, b = v.add(PERSON), v.add(PERSON)
    for r in (a, b):  # every sealed envelope of the two as that release wrote it: unsigned
        _seal_as(url, r, "identity", {"legal_name": "Amira Haddad", "passport_number": "P83526008"})
        _seal_as(url, r, "risk", {"risk_level": "high"})
    raw = RawDB(url)
    raw.set_meta("db_schema_version", b"4")
    good_b = raw.envs(b)
    bad_b = dict(good_b)
    bad_b["risk"] = (good_b["risk"][0][:-1] + bytes([good_b["risk"][0][-1] ^ 1]), good_b["risk"][1])
    raw.set_envs(b, bad_b)
    raw.close()
    with pytest.raises(vault.IntegrityError, match="the security lead must open this vault first"):
        vault.open(url, identity=staff)
    with pytest.raises(vault.IntegrityError, match="'risk' data key failed"):
        vault.open(url, identity=lead)
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == b"4" and raw.envs(a)["identity"][0][1:2] == b"E"  # nothing half done
    raw.set_envs(b, good_b)
    raw.close()
    with vault.open(url, identity=lead) as v:
        assert v.get(a)["legal_name"] == "Amira Haddad" and v.get(b)["risk_level"] == "high"
        assert v.check_records().ok  # that release logged no states: the upgrade's baseline takes the rows
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    assert raw.envs(a)["identity"][0][1:2] == b"D" and raw.envs(b)["risk"][0][1:2] == b"D"
    raw.close()
    with vault.open(url, identity=staff) as v:
        assert v.get(a)["email"] == PERSON["email"]
    _seal_as(url, a, "identity", {"legal_name": "Someone Else", "passport_number": "X0000000"})
    with vault.open(url, identity=lead) as v:  # at v5 an unsigned one is a forgery
        with pytest.raises(vault.IntegrityError, match="'identity' envelope failed"):
            v.get(a)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything a logger or error reporter could walk from it."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__]
    return seen


def test_errors_carry_no_plaintext_in_their_chain(team) -> None:  # type: ignore[no-untyped-def]
    """A lone surrogate (bytes that were not UTF-8, from an env var or argv) or an impossible
    date used to surface as an exception whose __context__ (kept by ``raise ... from None``)
    or own args held the whole value, search term, reason or passphrase."""
    url, lead, staff, tool, rid = team
    secret = "Karim-the-colonel"
    bad = secret + "\udce9"

    def check(call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(vault.VaultError) as info:
            call()
        for e in _chain(info.value):
            text = repr(e) + str(e) + repr(e.args) + repr(getattr(e, "object", ""))
            assert secret not in text and "2026-02-30" not in text, repr(e)

    with vault.open(url, identity=lead) as v:
        check(lambda: v.find(email=bad))
        check(lambda: v.find_tokens(legal_name=bad))
        check(lambda: v.add({"risk_notes": bad}))
        check(lambda: v.update(rid, {"legal_name": bad}))
        check(lambda: v.add({"arrival": "2026-02-30"}))
        check(lambda: v.set_reason(bad))
    with vault.open(url, identity=staff) as v:
        check(lambda: v.request_reveal(rid, "legal_name", bad))
    check(lambda: vault.open(url, passphrase=bad))


def test_an_unopenable_slot_is_a_logged_failed_unlock(team) -> None:  # type: ignore[no-untyped-def]
    """sam's slot replaced (here by the badge printer's sealed unlock): refused, and logged as
    a failed unlock like a revoked identity's (it was not logged at all before), in the
    one shape verify accepts for an unsigned entry."""
    url, lead, staff, tool, rid = team
    raw = RawDB(url)
    with raw.engine.begin() as c:
        slots = {u: s for u, s in c.execute(sa.text("SELECT user_id, slot_id FROM dv_users"))}
        theirs = c.execute(sa.text("SELECT unlock FROM dv_slots WHERE slot_id = :s"),
                           {"s": slots[tool.public.user_id]}).scalar_one()
        c.execute(sa.text("UPDATE dv_slots SET unlock = :u WHERE slot_id = :s"),
                  {"u": theirs, "s": slots[staff.public.user_id]})
        before = c.execute(sa.text("SELECT count(*) FROM dv_audit WHERE action = 'unlock_failed'")).scalar_one()
    with pytest.raises(vault.AccessDenied, match="cannot open its key slot"):
        vault.open(url, identity=staff)
    with raw.engine.begin() as c:
        after = c.execute(sa.text("SELECT count(*) FROM dv_audit WHERE action = 'unlock_failed'")).scalar_one()
    raw.close()
    assert after == before + 1
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok


def _reveal_rows(url: str) -> list[tuple[str, str, bool]]:
    """(requester, record id hex, approved) of every dv_reveals row, straight from the database."""
    raw = RawDB(url)
    with raw.engine.connect() as c:
        rows = c.execute(sa.text('SELECT requester, record_id, "grant" FROM dv_reveals ORDER BY req_id')).all()
    raw.close()
    return [(r[0], bytes(r[1]).hex(), r[2] is not None) for r in rows]


def test_a_shred_deletes_the_records_break_glass_requests_and_grants(team) -> None:  # type: ignore[no-untyped-def]
    """A grant is the value sealed to the requester's identity key, which no rotation reaches:
    it must go with the record (docs/threat-model.md 4.2), the request row (record id,
    sealed reason) too."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        other = v.add({"badge_name": "Other", "legal_name": "Someone Else"})
    with vault.open(url, identity=staff) as v:
        approved = v.request_reveal(rid, "legal_name", "hospital admission")
        v.request_reveal(rid, "passport_number", "visa letter for the embassy")
        kept = v.request_reveal(other, "legal_name", "hospital admission")
    with vault.open(url, identity=lead) as v:
        v.approve_reveal(approved, ttl_seconds=3600, record=rid, field="legal_name")
        v.delete(rid)
        (entry,) = v.audit_entries(action="shred")
    assert entry["detail"]["requests"] == 2
    assert _reveal_rows(url) == [(staff.public.user_id, other, False)]
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.NotFound):
            v.reveal(approved)
        assert [r.req_id for r in v.reveal_requests()] == [kept]


def test_revocation_deletes_the_users_break_glass_requests_and_grants(team) -> None:  # type: ignore[no-untyped-def]
    """A revoked identity opens nothing in the live vault, grants sealed to it included: a
    copy of the database taken after the revocation holds none of them."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        mine = v.request_reveal(rid, "passport_number", "visa letter for the embassy")
        v.request_reveal(rid, "risk_notes", "security briefing")
    with vault.open(url, identity=tool) as v:
        theirs = v.request_reveal(rid, "legal_name", "badge for the hospital visit")
    with vault.open(url, identity=lead) as v:
        v.approve_reveal(mine, ttl_seconds=3600, record=rid, field="passport_number")
        v.approve_reveal(theirs, ttl_seconds=3600, record=rid, field="legal_name")
        v.remove_user(staff.public.user_id)
        (entry,) = v.audit_entries(action="user_removed")
    assert entry["detail"] == {"user": staff.public.user_id, "requests": 2}
    assert _reveal_rows(url) == [(tool.public.user_id, rid, True)]
    with vault.open(url, identity=tool) as v:  # everyone else's grants stay
        assert v.reveal(theirs) == "Amira Haddad"


def test_break_glass_blobs_show_only_the_length_bucket(team) -> None:  # type: ignore[no-untyped-def]
    """Reasons and granted values are padded as field cells are (docs/format.md 3, 8b): the
    database shows a reason's or a value's 32-byte bucket, not its length."""
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=lead) as v:
        short = v.add({"badge_name": "Al", "legal_name": "Al B"})
    with vault.open(url, identity=staff) as v:
        reqs = [v.request_reveal(rid, "legal_name", "visa letter"),
                v.request_reveal(short, "legal_name", "visa letter for the embassy")]
    with vault.open(url, identity=lead) as v:
        assert sorted(r.reason for r in v.reveal_requests()) == ["visa letter", "visa letter for the embassy"]
        for req, who in zip(reqs, (rid, short)):
            v.approve_reveal(req, ttl_seconds=3600, record=who, field="legal_name")
    raw = RawDB(url)
    with raw.engine.connect() as c:
        rows = c.execute(sa.text('SELECT reason, "grant" FROM dv_reveals ORDER BY created, req_id')).all()
    raw.close()
    assert len({len(bytes(r[0])) for r in rows}) == 1 and len({len(bytes(r[1])) for r in rows}) == 1
    with vault.open(url, identity=staff) as v:
        assert [v.reveal(req) for req in reqs] == ["Amira Haddad", "Al B"]


def test_break_glass_unpadded_blobs_of_before_still_open(team) -> None:  # type: ignore[no-untyped-def]
    """Kind R reasons and kind G grants (unpadded, before 2026-11-27) still open."""
    import struct
    from vault import _crypto as C
    from vault import _format as F
    from vault import breakglass as B
    from vault import notes as N
    url, lead, staff, tool, rid = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(rid, "legal_name", "need it for the visa letter")
        vid = v._ses.vid
    reason = N.seal_note(F.KIND_REASON, lead.public.x25519, N.recipient_id(lead.public.raw),
                         vid + bytes.fromhex(req) + b"written unpadded")
    head = N.header(F.KIND_GRANT, bytes.fromhex(staff.public.user_id))
    sealed = C.seal_to(staff.public.x25519, head + vid + bytes.fromhex(req) + b'{"value": "Amira Haddad"}')
    expires = 2**40
    sig = lead.sign(B._grant_message(vid, req, staff.public.user_id, bytes.fromhex(rid), "legal_name", expires,
                                     sealed, head))
    _sql(url, 'UPDATE dv_reveals SET "grant" = :g, reason = :s WHERE req_id = :r',
         g=head + struct.pack(">Q", expires) + sig + sealed, s=reason, r=req)
    with vault.open(url, identity=lead) as v:
        assert [r.reason for r in v.reveal_requests()] == ["written unpadded"]
    with vault.open(url, identity=staff) as v:
        assert v.reveal(req) == "Amira Haddad"


EDGE = """[schema]
name = "edge"
version = 1
classes = ["public", "secret"]
purposes = ["badge", "audit"]
[fields.p]
type = "text"
class = "public"
[fields.s]
type = "text"
class = "secret"
[roles.lead]
classes = ["public", "secret"]
purposes = ["badge", "audit"]
manage = true
[roles.intake]
classes = []
purposes = []
write_only = ["public", "secret"]
"""


def _users_and_slots(url: str) -> dict:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        out = {t: [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {t}"))] for t in ("dv_users", "dv_slots")}
    out["meta"] = {n: raw.meta(n) for n in ("roster_sig", "keys_stmt", "keys_stmt_sig")}
    raw.close()
    return out


def _put_back(url: str, old: dict) -> None:
    """A database writer's restore of the user table, its signature, the key statement and
    the slots from an older copy (no keys needed)."""
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dv_users"))
        for row in old["dv_users"]:
            c.execute(sa.text("INSERT INTO dv_users VALUES (" + ", ".join(f":c{i}" for i in range(len(row))) + ")"),
                      {f"c{i}": x for i, x in enumerate(row)})
        have = {r[0] for r in c.execute(sa.text("SELECT slot_id FROM dv_slots"))}
        for row in old["dv_slots"]:
            if row[0] not in have:
                c.execute(sa.text("INSERT INTO dv_slots VALUES (" + ", ".join(f":c{i}" for i in range(len(row))) + ")"),
                          {f"c{i}": x for i, x in enumerate(row)})
    for name, value in old["meta"].items():
        raw.set_meta(name, value)
    raw.close()


def test_a_write_only_users_revocation_cannot_be_put_back(url: str) -> None:
    """A write-only role holds no class key, so revoking one rotated nothing: the older user
    table, signature, key statement and slot, all put back, were consistent again, and the
    revoked intake clerk's new registrations read as genuine. Their classes are rotated
    now, so the old statement no longer matches the keys of anyone who reads: the lead's and
    the recovery opens refuse. (The clerk's own old slot matches it, but what they seal goes
    to public keys whose private halves the rotation destroyed.)"""
    lead, intake = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, schema=EDGE, lead=lead) as v:
        v.add_user(intake.public, "ines", "intake")
    with vault.open(url, identity=intake) as w:
        w.add({"p": "before", "s": "genuine"})
    old = _users_and_slots(url)
    with vault.open(url, identity=lead) as v:
        v.remove_user(intake.public.user_id)
    _put_back(url, old)
    for opener in ({"identity": lead}, {"passphrase": PASSPHRASE}):
        with pytest.raises(vault.IntegrityError, match="not the ones the lead signed"):
            vault.open(url, **opener)  # type: ignore[arg-type]


def test_a_rotation_never_seals_keys_to_a_user_the_log_says_was_revoked(team) -> None:  # type: ignore[no-untyped-def]
    """Revoked with rotate=False, sam's older user row, table signature, key statement and
    slot are put back: all consistent, since no key changed. The lead's next rotation used
    to re-seal the new keys to sam's slot. Now the lead's (and the recovery passphrase's)
    open finds the lead's signed user_removed entry and refuses, and so do a rotation and
    an enrolment (which signs the table) by a handle opened before the copy was put back."""
    url, lead, staff, tool, rid = team
    old = _users_and_slots(url)
    early = vault.open(url, identity=lead)
    with vault.open(url, identity=lead) as v:
        v.remove_user(staff.public.user_id, rotate=False)
    _put_back(url, old)
    undone = f"lists user {staff.public.user_id} as enrolled, but the lead revoked them"
    for opener in ({"identity": lead}, {"passphrase": PASSPHRASE}):
        with pytest.raises(vault.IntegrityError, match=undone):
            vault.open(url, **opener)  # type: ignore[arg-type]
    with early:  # opened before the copy was put back: it rotates, or enrols (and so signs the table)
        with pytest.raises(vault.IntegrityError, match=undone):
            early.rotate()
        with pytest.raises(vault.IntegrityError, match=undone):
            early.add_user(Identity.generate().public, "newcomer", "tool")


def test_an_upgrade_never_signs_a_user_table_put_back(url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A v6 vault (an older release's); sam revoked with rotate=False; the older user table,
    signature, statement and slot put back. The lead's open refused it, but only after its
    upgrade had committed a v7 statement the lead signed over that table. The check now
    runs inside the upgrade, which rolls back."""
    lead, staff = Identity.generate(), Identity.generate()
    with old_release(monkeypatch, states=True), vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        old = _users_and_slots(url)
        v.remove_user(staff.public.user_id, rotate=False)  # by a release before v7
    raw = RawDB(url)
    raw.set_meta("db_schema_version", b"6")
    raw.close()
    _put_back(url, old)
    with pytest.raises(vault.IntegrityError, match="as enrolled, but the lead revoked them"):
        vault.open(url, identity=lead)
    assert raw_meta(url, "db_schema_version") == b"6"
    assert raw_meta(url, "keys_stmt").startswith(b"dvault keys v1\n")


def test_a_signer_upgrading_after_a_rotation_elsewhere_reopens(url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The recovery opener read a v6 vault's keys; before its upgrade ran, the lead opened
    (upgrading it) and rotated. The recovery opener's upgrade then signed the statement
    with its old keys, and no one could open the vault any more. It now gets KeysChanged."""
    with old_release(monkeypatch, states=True):
        url, lead, staff, tool, rid = _make_team(url)
    raw = RawDB(url)
    raw.set_meta("db_schema_version", b"6")
    raw.close()
    real = vault.Vault._upgrade
    first = [True]

    def meanwhile(self, stored, target, *, resign):  # type: ignore[no-untyped-def]
        if first[0]:
            first[0] = False
            with vault.open(url, identity=lead) as other:
                other.rotate(["risk"])
        return real(self, stored, target, resign=resign)

    monkeypatch.setattr(vault.Vault, "_upgrade", meanwhile)
    from vault import vault as vault_module
    monkeypatch.setattr(vault_module, "OPEN_ATTEMPTS", 1)  # the racing attempt itself, not open's retry
    with pytest.raises(vault.KeysChanged):
        vault.open(url, PASSPHRASE)
    monkeypatch.setattr(vault_module, "OPEN_ATTEMPTS", 5)
    monkeypatch.setattr(vault.Vault, "_upgrade", real)
    for opener in ({"identity": lead}, {"passphrase": PASSPHRASE}, {"identity": staff}):
        with vault.open(url, **opener) as v:  # type: ignore[arg-type]
            assert v.get(rid)["email"] == PERSON["email"]


def test_a_revocation_that_committed_is_not_reported_as_failed(team, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A rotation elsewhere right after the revocation commits makes any fresh read of the
    user table by this handle raise KeysChanged: the revocation must still report success
    (it committed), and this handle must stop counting the revoked writer's signature."""
    from vault.access import Access
    url, lead, staff, _, _ = team
    with vault.open(url, identity=lead) as v:
        staff_id = next(u.user_id for u in v.users() if u.name == "sam")
        assert bytes.fromhex(staff_id) in v._access.writers

        def rotated_meanwhile(self: Access) -> None:
            raise vault.KeysChanged("the keys changed (a rotation elsewhere)")
        monkeypatch.setattr(Access, "refresh_writers", rotated_meanwhile)
        v.remove_user(staff_id, rotate=False)
        assert bytes.fromhex(staff_id) not in v._access.writers
    monkeypatch.undo()
    with vault.open(url, identity=lead) as v:
        assert [u.role for u in v.users(include_revoked=True) if u.name == "sam"] == ["revoked"]
