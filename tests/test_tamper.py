"""Attacks by someone who can write the database but holds no keys.

Moving ciphertexts between fields, records or classes, replaying older cells and
flipping any bit must all end in IntegrityError, never in wrong plaintext.
"""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, flip, old_release
from vault import envelope as E
from vault import keys as K
from vault.identity import Identity

FULL = {"legal_name": "Amira Haddad", "organisation": "Free Press Network", "nationality": "Syria",
        "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
        "risk_level": "high", "risk_notes": "Followed after the 2025 trial.", "dietary": "vegan",
        "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "organisation": "Land Rights Watch", "nationality": "Ghana",
         "email": "kofi@example.org", "phone": "+233 20 000 0000", "badge_name": "Kofi",
         "risk_level": "low", "risk_notes": "None known.", "dietary": "none", "arrival": "2026-11-09"}


@pytest.fixture(params=[3, 2], ids=["format3", "format2"])
def two(url: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Two records in one vault, written in record format 3 (what this release writes) or 2
    (what the release before it wrote, still read and updated in place)."""
    v = vault.create(url, PASSPHRASE)
    v._access.codec.newest = request.param
    a, b = v.add(FULL), v.add(OTHER)
    raw = RawDB(url)
    assert raw.row(a)[1] == request.param
    yield v, raw, a, b
    raw.close()
    v.close()


def _fails(v: vault.Vault, rid: str, **kw: object) -> vault.IntegrityError:
    with pytest.raises(vault.IntegrityError) as info:
        v.get(rid, **kw)  # type: ignore[arg-type]
    msg = str(info.value)
    for value in list(FULL.values()) + list(OTHER.values()):
        assert value not in msg
    return info.value


def _names_the_cell(raw: RawDB, rid: str, err: vault.IntegrityError, cls: str, fields: tuple[str, ...]) -> None:
    """Format 2 has a tag per cell, so the error names the field that failed; format 3 has one
    tag per class envelope (over every cell and the framing), so it can name only the class."""
    assert err.record_id == rid
    if raw.row(rid)[1] == 2:
        assert err.field in fields
    else:
        assert err.field is None and f"class {cls!r} envelope failed" in str(err)


def test_swap_two_fields_in_one_record(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    cells = raw.cells(a, "identity")
    cells["legal_name"], cells["organisation"] = cells["organisation"], cells["legal_name"]
    raw.set_cells(a, "identity", cells)
    err = _fails(v, a)
    _names_the_cell(raw, a, err, "identity", ("legal_name", "organisation"))
    _fails(v, a, fields=["legal_name"])


def test_move_field_into_absent_field(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    cells = raw.cells(a, "identity")
    cells["passport_number"] = cells.pop("legal_name")
    raw.set_cells(a, "identity", cells)
    _fails(v, a)


def test_drop_a_field(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    cells = raw.cells(a, "risk")
    del cells["risk_notes"]
    raw.set_cells(a, "risk", cells)
    _fails(v, a)
    _fails(v, a, fields=["risk_level"])


def test_field_from_another_record(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, b = two
    cells = raw.cells(b, "identity")
    cells["legal_name"] = raw.cells(a, "identity")["legal_name"]
    raw.set_cells(b, "identity", cells)
    err = _fails(v, b)
    _names_the_cell(raw, b, err, "identity", ("legal_name",))


def test_field_into_another_class(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    cells = raw.cells(a, "public")
    cells["legal_name"] = raw.cells(a, "identity")["legal_name"]
    raw.set_cells(a, "public", cells)
    _fails(v, a, fields=["badge_name"])


@pytest.mark.parametrize("whole_envelope", [False, True])
def test_dek_from_another_record(two, whole_envelope: bool) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, b = two
    envs_a, envs_b = raw.envs(a), raw.envs(b)
    envs_b["identity"] = envs_a["identity"] if whole_envelope else (envs_a["identity"][0], envs_b["identity"][1])
    raw.set_envs(b, envs_b)
    _fails(v, b)
    _fails(v, b, fields=["legal_name"])
    assert v.get(b, fields=["email"])["email"] == OTHER["email"]  # other classes unaffected


def test_dek_swapped_between_classes(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    envs = raw.envs(a)
    envs["identity"], envs["contact"] = (envs["contact"][0], envs["identity"][1]), (envs["identity"][0], envs["contact"][1])
    raw.set_envs(a, envs)
    _fails(v, a, fields=["legal_name"])
    _fails(v, a, fields=["email"])


def test_whole_rows_swapped_between_records(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, b = two
    ra, rb = raw.row(a), raw.row(b)
    raw.set_row(a, rb)
    raw.set_row(b, ra)
    _fails(v, a)
    _fails(v, b)
    with pytest.raises(vault.IntegrityError):
        list(v.records())


def test_envelope_removed_from_row(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    envs = raw.envs(a)
    del envs["risk"]
    raw.set_envs(a, envs)
    _fails(v, a)
    _fails(v, a, fields=["email"])  # the row no longer has the shape the schema demands


def test_replay_of_older_cell_after_update(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    old = raw.cells(a, "contact")["email"]
    v.update(a, {"email": "new@example.org"})
    cells = raw.cells(a, "contact")
    cells["email"] = old
    raw.set_cells(a, "contact", cells)
    _fails(v, a, fields=["email"])


def test_every_bit_of_a_record_row(two) -> None:  # type: ignore[no-untyped-def]
    """Flip each bit of a whole row (every envelope, header, nonce, tag, framing byte).

    Every bit goes through the row decoder that get()/records() use; a sample of bits
    (first and last bytes included) also goes through the database end to end.
    """
    v, raw, a, _ = two
    row = raw.row(a)
    rid = bytes.fromhex(a)
    every_class = v._records.classes_for(None)
    for bit in range(len(row) * 8):
        with pytest.raises(vault.IntegrityError):
            v._records.decode_row(rid, flip(row, bit), every_class)
    rng = random.Random(7)
    n = len(row) * 8
    for bit in sorted({0, 1, 8, n - 1, n - 8} | set(rng.sample(range(n), 40))):
        raw.set_row(a, flip(row, bit))
        with pytest.raises(vault.IntegrityError):
            v.get(a)
    raw.set_row(a, row)
    assert v.get(a)["legal_name"] == FULL["legal_name"]  # intact again


@pytest.mark.parametrize("name", ["nickname", "LEGAL_NAME", "", "email"])
def test_cell_under_a_name_the_schema_lacks(two, name: str) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    cells = raw.cells(a, "identity")
    cells[name] = cells.pop("organisation")
    raw.set_cells(a, "identity", cells)
    _fails(v, a)
    _fails(v, a, fields=["legal_name"])


@pytest.mark.parametrize("field,bad", [("legal_name", b"\xff\xfeA"), ("arrival", b"2026-13-45"),
                                       ("photo_consent", b"\x02"), ("arrival", b"\xc3\xa9")])
def test_authentic_cell_with_an_invalid_encoding(url: str, monkeypatch, field: str,  # type: ignore[no-untyped-def]
                                                  bad: bytes) -> None:
    """A key holder's bug (or a modified client) stores bytes that are not a value of the
    field's type: the read refuses with IntegrityError naming the field, not a decoder error."""
    from vault import schema as S
    real = S.Field.encode
    monkeypatch.setattr(S.Field, "encode", lambda self, value: bad if self.name == field else real(self, value))
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add(dict(FULL, photo_consent=True))
        monkeypatch.setattr(S.Field, "encode", real)
        with pytest.raises(vault.IntegrityError, match="invalid encoding") as info:
            v.get(rid)
        assert info.value.field == field and info.value.record_id == rid
        with pytest.raises(vault.IntegrityError, match="invalid encoding"):
            list(v.records())
        other = "email" if field != "email" else "phone"
        assert v.get(rid, fields=[other])[other] == FULL[other]


def _reopen_fails(url: str) -> None:
    with pytest.raises(vault.IntegrityError):
        vault.open(url, PASSPHRASE).close()


def test_schema_tampering_detected(url: str) -> None:
    vault.create(url, PASSPHRASE).close()
    raw = RawDB(url)
    text = raw.meta("schema").decode()
    weaker = text.replace('[fields.risk_notes]\ntype = "text"\nclass = "risk"',
                          '[fields.risk_notes]\ntype = "text"\nclass = "public"')
    assert weaker != text
    for tampered in (weaker, text + '\n[fields.extra]\ntype = "text"\nclass = "public"\n',
                     text.replace('[fields.sessions]\ntype = "text"\nclass = "public"\n', "")):
        raw.set_meta("schema", tampered.encode())
        _reopen_fails(url)
    raw.set_meta("schema", text.encode())
    vault.open(url, PASSPHRASE).close()
    raw.close()


def test_stored_blobs_every_bit(url: str) -> None:
    """Slot, keyring and schema MAC: every bit at the format level, a sample end to end."""
    vault.create(url, PASSPHRASE).close()
    raw = RawDB(url)
    slot_id, unlock, keyring = raw.slot()
    vid, mac, text = raw.meta("vault_id"), raw.meta("schema_mac"), raw.meta("schema").decode()
    secret = K.open_passphrase_slot(unlock, PASSPHRASE, vid)
    ring = K.open_keyring(secret, vid, keyring)
    for bit in range(len(unlock) * 8):
        with pytest.raises(vault.IntegrityError):
            K.open_passphrase_slot(flip(unlock, bit), PASSPHRASE, vid)
    for bit in range(len(keyring) * 8):
        with pytest.raises(vault.IntegrityError):
            K.open_keyring(secret, vid, flip(keyring, bit))
    for bit in range(len(mac) * 8):
        with pytest.raises(vault.IntegrityError):
            K.verify_schema(ring, vid, text, flip(mac, bit))
    for bit in range(len(vid) * 8):
        with pytest.raises(vault.IntegrityError):
            K.open_keyring(secret, flip(vid, bit), keyring)
    rng = random.Random(3)
    for bit in [0, 7, len(unlock) * 8 - 1] + rng.sample(range(len(unlock) * 8), 5):
        raw.set_slot(slot_id, flip(unlock, bit), keyring)
        _reopen_fails(url)
    for bit in [0, 9 * 8, len(keyring) * 8 - 1] + rng.sample(range(len(keyring) * 8), 5):
        raw.set_slot(slot_id, unlock, flip(keyring, bit))
        _reopen_fails(url)
    raw.set_slot(slot_id, unlock, keyring)
    for bit in (0, 100, len(mac) * 8 - 1):
        raw.set_meta("schema_mac", flip(mac, bit))
        _reopen_fails(url)
    raw.set_meta("schema_mac", mac)
    raw.set_meta("vault_id", flip(vid, 5))
    _reopen_fails(url)
    raw.set_meta("vault_id", vid)
    vault.open(url, PASSPHRASE).close()
    raw.close()


def test_foreign_vault_rows_do_not_decrypt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A row copied from another vault (other keys, other vault id) fails."""
    u1, u2 = f"sqlite:///{tmp_path / 'a.vault'}", f"sqlite:///{tmp_path / 'b.vault'}"
    with vault.create(u1, PASSPHRASE) as v1, vault.create(u2, PASSPHRASE) as v2:
        a = v1.add(FULL)
        b = v2.add(OTHER)
        r1, r2 = RawDB(u1), RawDB(u2)
        r2.set_row(b, r1.row(a))
        _fails(v2, b)
        r1.close()
        r2.close()


# -- record states in the audit log (docs/format.md 13a): rollback, deletion, resurrection --------
def _insert_row(url: str, rid: str, data: bytes) -> None:
    import sqlalchemy as sa
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("INSERT INTO dv_records (id, data) VALUES (:i, :d)"), {"i": bytes.fromhex(rid), "d": data})
    raw.close()


def _delete_row(url: str, rid: str) -> None:
    import sqlalchemy as sa
    raw = RawDB(url)
    with raw.engine.begin() as c:
        assert c.execute(sa.text("DELETE FROM dv_records WHERE id = :i"), {"i": bytes.fromhex(rid)}).rowcount == 1
    raw.close()


def test_check_records_finds_rollback_deletion_and_resurrection(url: str) -> None:
    """Every row is self-consistent, so a read cannot tell an older version of a record, or
    a shredded one put back, from the real thing; the entries' record states can. Each
    attack is undone before the next, and each is found and named."""
    with vault.create(url, PASSPHRASE) as v:
        a, b, c = v.add_many([FULL, OTHER, OTHER])
        raw = RawDB(url)
        old_a, old_c = raw.row(a), raw.row(c)
        v.update(a, {"risk_level": "low", "dietary": "none"})  # two classes: risk and logistics
        v.delete(c)
        new_a, row_b = raw.row(a), raw.row(b)
        assert v.check_records().ok and str(v.check_records()) == "records match the audit log: 2 rows"

        raw.set_row(a, old_a)  # the whole record back to before the update: reads fine
        assert v.get(a)["risk_level"] == "high"
        got = v.check_records()
        assert got.rolled_back == (a,) and not got.unlogged and len(got.missing) == 1 and not got.ok

        envs = raw.envs_of(old_a)  # only the risk envelope put back: a mix no entry wrote
        mixed = raw.envs_of(new_a)
        mixed["risk"] = envs["risk"]
        raw.set_envs(a, mixed)
        assert v.get(a)["risk_level"] == "high"
        got = v.check_records()
        assert got.unlogged == (a,) and len(got.missing) == 1
        raw.set_row(a, new_a)

        _delete_row(url, b)  # gone without a shred entry
        got = v.check_records()
        assert got.missing and not got.rolled_back and not got.unlogged and got.rows == 1
        _insert_row(url, b, row_b)

        _insert_row(url, c, old_c)  # a shredded record resurrected from a backup
        assert v.get(c)["legal_name"] == "Kofi Mensah"
        got = v.check_records()
        assert got.rolled_back == (c,) and not got.missing
        _delete_row(url, c)
        assert v.check_records().ok
        raw.close()
        actions = [e["action"] for e in v.audit_entries()]
        assert actions.count("check_records") == 7


def test_a_deliberate_restore_can_be_accepted(url: str) -> None:
    """After investigating, the lead takes the rows as they are: one signed ``restate``
    entry; the next check is clean, and a later rollback is found again."""
    from vault.identity import Identity
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        a, b = v.add_many([FULL, OTHER])
        raw = RawDB(url)
        old_a = raw.row(a)
        v.update(a, {"dietary": "none"})
        new_a = raw.row(a)
        raw.set_row(a, old_a)
        _delete_row(url, b)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied):
            v.check_records(accept=True)
    with vault.open(url, identity=lead) as v:
        found = v.check_records(accept=True)
        assert found.rolled_back == (a,) and len(found.missing) == 2 and not found.ok
        entry = v.audit_entries(action="restate")[-1]
        assert entry["detail"]["accepted"] is True and entry["detail"]["missing"] == 2
        assert len(entry["detail"]["state"]["drop"]) == 2 and len(entry["detail"]["state"]["put"]) == 1
        assert v.check_records().ok
        raw.set_row(a, new_a)  # the newer row back: its state was dropped by the acceptance
        assert v.check_records().rolled_back == (a,)
        raw.close()


def test_rotation_keeps_the_records_checkable(url: str) -> None:
    """A rewrap keeps the DEKs (and the states); a re-encryption logs its new states per
    batch, and the pre-rotation row is then a state that entry dropped."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many([FULL, OTHER] * 3)
        raw = RawDB(url)
        before = raw.row(ids[0])
        v.rotate()
        assert v.check_records().ok
        v.rotate(reencrypt=True, batch=4)
        assert v.check_records().ok
        assert len([e for e in v.audit_entries() if e["action"] == "reencrypt"]) == 2
        raw.set_row(ids[0], before)
        assert v.check_records().rolled_back == (ids[0],)
        raw.close()


def test_check_records_needs_the_lead_and_a_sound_log(url: str) -> None:
    from vault.identity import Identity
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add(FULL)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied, match="security lead"):
            v.check_records()
        assert v.audit_entries(action="denied")
    import sqlalchemy as sa
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("UPDATE dv_audit SET detail = '{}' WHERE seq = 3"))
    raw.close()
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="audit log damaged at entry 3.*cannot be checked"):
            v.check_records()


def test_the_upgrade_takes_the_rows_present_as_its_baseline(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows written before database schema v6 have no logged state; the upgrade logs one
    ``restate`` entry with the states of every row there (taken as they are)."""
    from vault import _format as F
    with old_release(monkeypatch):  # what a release before v6 wrote: entries without states
        with vault.create(url, PASSPHRASE) as v:
            a = v.add(FULL)
            v.update(a, {"dietary": "none"})
            v.add(OTHER)
    raw = RawDB(url)
    raw.set_meta("db_schema_version", b"5")
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        baseline = v.audit_entries(action="restate")
        assert len(baseline) == 1 and baseline[0]["detail"]["baseline"] is True
        assert len(baseline[0]["detail"]["state"]["put"]) == 2
        assert v.check_records().ok
    assert RawDB(url).meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()


def test_a_lowered_schema_version_is_refused(url: str) -> None:
    """db_schema_version is stored in the clear; from v7 the key statement signs it. Set
    back (to have an upgrade step redone: a new baseline, an adoption of unsigned
    envelopes), every open refuses, the lead's and the recovery passphrase's included."""
    with vault.create(url, PASSPHRASE) as v:
        v.add(FULL)
    raw = RawDB(url)
    for lowered in (b"6", b"5", b"4"):
        raw.set_meta("db_schema_version", lowered)
        with pytest.raises(vault.IntegrityError, match="database version was lowered"):
            vault.open(url, PASSPHRASE)
    raw.close()


def test_a_lowered_schema_version_does_not_launder_a_restored_record(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault a release before v7 signed (its statement does not name the version): set back
    below 6, the next open would log a new baseline, taking a shredded record put back from
    a backup as genuine. A log that already holds record states gets no baseline; below 5
    the open refuses (the v5 adoption would take planted unsigned envelopes as genuine)."""
    with old_release(monkeypatch, states=True), vault.create(url, PASSPHRASE) as v:
        a, b = v.add_many([FULL, OTHER])
        raw = RawDB(url)
        row_b = raw.row(b)
        v.delete(b)
    _insert_row(url, b, row_b)
    raw.set_meta("db_schema_version", b"4")
    with pytest.raises(vault.IntegrityError, match="database version was lowered to v4"):
        vault.open(url, PASSPHRASE)
    raw.set_meta("db_schema_version", b"5")
    raw.close()
    with vault.open(url, PASSPHRASE) as v:  # no baseline; the upgrade's pairs keep b rolled back
        assert [e["detail"].get("upgrade") for e in v.audit_entries(action="restate")] == [9]
        assert v.check_records().rolled_back == (b,)


@pytest.mark.parametrize("stored", [b"0", b"-1", b"-5", b"99999", b"x"])
def test_a_schema_version_out_of_range_is_refused(url: str, stored: bytes) -> None:
    """Below 1 there is no migration step to start from: KeyError from the migrations (a
    fuzz hunt, 2026-11-27). Too new, where the key statement names this release's version,
    is tampering, not UnsupportedVersion (a raised row is restored by the lead's open,
    test_trust.py; here a staff-like opener's view: refused, nothing migrated)."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
    raw = RawDB(url)
    raw.set_meta("db_schema_version", stored)
    raw.close()
    for opener in [{"identity": staff}] + ([] if stored == b"99999" else [{"passphrase": PASSPHRASE}]):
        with pytest.raises(vault.IntegrityError):
            vault.open(url, **opener).close()  # type: ignore[arg-type]
    assert RawDB(url).meta("db_schema_version") == stored  # nothing was migrated


def test_check_records_names_every_damaged_row(url: str) -> None:
    """A ciphertext edited in place keeps its DEK ids, not its state (of the second kind: over
    the envelope's bytes): the check names such rows as never logged and their logged states
    as missing, and, opening every row, names all damaged ones at once; they cannot be
    accepted."""
    with vault.create(url, PASSPHRASE) as v:
        a, b, c = v.add_many([FULL, OTHER, FULL])
        raw = RawDB(url)
        for rid in (a, c):
            row = bytearray(raw.row(rid))
            row[-20] ^= 1  # inside the last field ciphertext of the last envelope
            raw.set_row(rid, bytes(row))
        raw.close()
        got = v.check_records()
        assert got.damaged == tuple(sorted((a, c))) and not got.ok and not got.rolled_back
        assert got.unlogged == got.damaged and len(got.missing) == 2
        assert "2 damaged" in str(got)
        assert v.audit_entries(action="check_records")[-1]["detail"]["damaged"] == 2
        with pytest.raises(vault.IntegrityError, match="cannot be accepted"):
            v.check_records(accept=True)
        assert v.audit_entries(action="restate") == []  # nothing was accepted


# -- rows of the other tables, edited by a database writer (a fuzz hunt, 2026-11-27) ------------


@pytest.fixture
def staffed(url: str):  # type: ignore[no-untyped-def]
    """A lead, a staff member, one record and one approved break-glass request for it."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    with vault.open(url, identity=staff) as s:
        req = s.request_reveal(rid, "legal_name", "hospital needs the legal name")
    with vault.open(url, identity=lead) as v:
        v.approve_reveal(req, record=rid, field="legal_name")
    return url, lead, staff, rid, req


def _edit(url: str, sql: str, **params: object) -> None:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text(sql), params)
    raw.close()


def _sqlite_only(url: str, case: str, cases: tuple[str, ...]) -> None:
    if case in cases and not url.startswith("sqlite"):
        pytest.skip("PostgreSQL's typed columns cannot hold this edit (SQLite keeps any type in any column)")


@pytest.mark.parametrize("case", ["long_name", "slot_id_not_hex", "user_id_upper_case", "name_as_blob",
                                  "user_id_as_blob", "role_too_long", "public_as_text"])
def test_an_edited_user_row_is_an_integrity_error_for_every_opener(staffed, case: str) -> None:  # type: ignore[no-untyped-def]
    """A row edited into something the signed roster cannot even be built from raised
    ValueError, TypeError or AttributeError from vault.open, before the signature check."""
    url, lead, staff, _rid, _req = staffed
    _sqlite_only(url, case, ("name_as_blob", "user_id_as_blob", "role_too_long", "public_as_text"))
    uid = staff.public.user_id
    if case == "long_name":  # 100 characters (the column holds 200) but 300 UTF-8 bytes: over lp8
        _edit(url, "UPDATE dv_users SET name = :n WHERE user_id = :u", n="\u20ac" * 100, u=uid)
    elif case == "slot_id_not_hex":  # in both tables, so the rows still agree with each other
        _edit(url, "UPDATE dv_slots SET slot_id = 'zzzzzzzzzzzzzzzz' WHERE slot_id = "
                   "(SELECT slot_id FROM dv_users WHERE user_id = :u)", u=uid)
        _edit(url, "UPDATE dv_users SET slot_id = 'zzzzzzzzzzzzzzzz' WHERE user_id = :u", u=uid)
    elif case == "user_id_upper_case":
        _edit(url, "UPDATE dv_users SET user_id = :n WHERE user_id = :u", n=uid.upper(), u=uid)
    elif case == "name_as_blob":
        _edit(url, "UPDATE dv_users SET name = CAST(name AS BLOB) WHERE user_id = :u", u=uid)
    elif case == "user_id_as_blob":
        _edit(url, "UPDATE dv_users SET user_id = CAST(user_id AS BLOB) WHERE user_id = :u", u=uid)
    elif case == "role_too_long":
        _edit(url, "UPDATE dv_users SET role = :r WHERE user_id = :u", r="r" * 300, u=uid)
    else:
        _edit(url, "UPDATE dv_users SET public = :p WHERE user_id = :u", p="x" * 64, u=uid)
    for how in ({"passphrase": PASSPHRASE}, {"identity": lead}, {"identity": staff}):
        with pytest.raises(vault.IntegrityError):
            vault.open(url, **how).close()  # type: ignore[arg-type]


_REVEAL_EDITS = {
    "field_not_ascii": "UPDATE dv_reveals SET field = 'légal_name'",
    "record_id_short": "UPDATE dv_reveals SET record_id = substr(record_id, 1, 15)",
    "requester_not_hex": "UPDATE dv_reveals SET requester = 'not a user id'",
    "req_id_not_hex": "UPDATE dv_reveals SET req_id = 'zz'",
    "record_id_as_text": "UPDATE dv_reveals SET record_id = 'abc'",
    "field_as_blob": "UPDATE dv_reveals SET field = CAST(field AS BLOB)",
    "created_as_text": "UPDATE dv_reveals SET created = 'yesterday'",
}


@pytest.mark.parametrize("case", sorted(_REVEAL_EDITS))
def test_an_edited_reveal_row_is_an_integrity_error_and_stays(staffed, case: str) -> None:  # type: ignore[no-untyped-def]
    """Listing, approving or taking a break-glass request whose row was edited raised
    ValueError, TypeError, AttributeError or UnicodeEncodeError (hex and ASCII parsing of
    unchecked columns); now IntegrityError, and the refused row is not consumed. The lead's
    list leaves the row out with a warning (one such row hid every request from the lead)."""
    url, lead, staff, _rid, req = staffed
    _sqlite_only(url, case, ("record_id_as_text", "field_as_blob", "created_as_text"))
    _edit(url, _REVEAL_EDITS[case])
    with vault.open(url, identity=lead) as v:
        assert v.reveal_requests() == []
        assert any("break-glass request row(s) are malformed" in w for w in v.warnings)
        if case != "req_id_not_hex":
            with pytest.raises(vault.IntegrityError, match="break-glass request row is malformed"):
                v.approve_reveal(req, record=_rid, field="legal_name")
    if case not in ("req_id_not_hex", "requester_not_hex"):  # (else it is not this staff member's request)
        with vault.open(url, identity=staff) as s:
            with pytest.raises(vault.IntegrityError, match="break-glass request row is malformed"):
                s.reveal(req)
    raw = RawDB(url)
    with raw.engine.begin() as c:
        assert c.execute(sa.text("SELECT count(*) FROM dv_reveals")).scalar_one() == 1
    raw.close()


def test_a_grant_stored_as_text_is_taken_and_refused(staffed) -> None:  # type: ignore[no-untyped-def]
    """A BLOB column holding text is read as its bytes (store._blob): the grant's parser
    refuses it like any other forged grant (TypeError before); it is used up and logged."""
    url, lead, staff, _rid, req = staffed
    _sqlite_only(url, "grant_as_text", ("grant_as_text",))
    _edit(url, "UPDATE dv_reveals SET \"grant\" = 'text, not a grant'")
    with vault.open(url, identity=staff) as s:
        with pytest.raises(vault.IntegrityError, match="grant"):
            s.reveal(req)
        assert s.audit_entries(action="reveal")[-1]["detail"]["shown"] is False


@pytest.mark.parametrize("case", ["ids_as_text", "ids_as_integer", "ids_as_short_text", "record_id_as_text",
                                  "record_id_as_integer", "record_id_short", "record_id_as_16_chars"])
def test_a_record_or_index_row_of_the_wrong_type_is_an_integrity_error(two, case: str) -> None:  # type: ignore[no-untyped-def]
    """TEXT or INTEGER in dv_index.ids or dv_records.id raised TypeError or AttributeError from
    find() and records() (bytes() of a str; ``rid.hex()`` of an unchecked id). BLOB columns
    are read through store._blob and record ids must be 16 bytes."""
    v, raw, a, b = two
    url = str(raw.engine.url)
    _sqlite_only(url, case, ("ids_as_text", "ids_as_integer", "ids_as_short_text", "record_id_as_text",
                             "record_id_as_integer", "record_id_as_16_chars"))
    column, value = {"ids_as_text": ("dv_index SET ids", "x" * 32), "ids_as_integer": ("dv_index SET ids", 5),
                     "ids_as_short_text": ("dv_index SET ids", "x" * 31),
                     "record_id_as_text": ("dv_records SET id", "abc"),
                     "record_id_as_integer": ("dv_records SET id", 5),
                     "record_id_short": ("dv_records SET id", bytes(3)),
                     "record_id_as_16_chars": ("dv_records SET id", "r" * 16)}[case]
    with raw.engine.begin() as c:
        where = "" if column.startswith("dv_index") else " WHERE id = :a"
        c.execute(sa.text(f"UPDATE {column} = :v{where}"), {"v": value, "a": bytes.fromhex(a)})
    if column.startswith("dv_index"):
        if case == "ids_as_text":  # read as its bytes: two ids no record has, so no match
            assert v.find(email=FULL["email"]) == []
        else:
            with pytest.raises(vault.IntegrityError):
                v.find(email=FULL["email"])
    else:
        with pytest.raises(vault.IntegrityError):
            list(v.records())  # sixteen characters read as sixteen bytes: the row no longer opens under them
        if case != "record_id_as_16_chars":
            with pytest.raises(vault.IntegrityError, match="malformed id|wrong type"):
                v.ids()


def test_a_deleted_canary_list_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database writer who deleted dv_meta.canaries switched every canary off unnoticed (a
    missing list read as "no canaries"). From v7 the list is always there: written empty at
    creation, and by the upgrade to v7 for an older vault that had none."""
    with vault.create(url, PASSPHRASE) as v:
        rid = v.plant_canary(FULL)
        other = v.add(OTHER)
    raw = RawDB(url)
    early = vault.open(url, PASSPHRASE)  # opened before the deletion, no read of the list yet
    with raw.engine.begin() as c:
        assert c.execute(sa.text("DELETE FROM dv_meta WHERE name = 'canaries'")).rowcount == 1
    with pytest.raises(vault.IntegrityError, match="canary list is missing"):
        vault.open(url, PASSPHRASE)
    with early:
        for call in (lambda: early.get(rid), lambda: early.get(other), lambda: early.find(email=OTHER["email"])):
            with pytest.raises(vault.IntegrityError, match="canary list is missing"):
                call()
    raw.close()
    url2 = url.replace(".vault", "-old.vault") if url.startswith("sqlite") else None
    if url2 is None:
        return
    with old_release(monkeypatch, states=True), vault.create(url2, PASSPHRASE) as v:
        v.add(OTHER)
    raw = RawDB(url2)
    with raw.engine.begin() as c:  # what a release before v7 had: no list until a canary was planted
        c.execute(sa.text("DELETE FROM dv_meta WHERE name = 'canaries'"))
    raw.set_meta("db_schema_version", b"6")
    with vault.open(url2, PASSPHRASE) as v:
        assert len(list(v.records())) == 1
    from vault import _format as F
    assert raw.meta("canaries") and raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    raw.close()
