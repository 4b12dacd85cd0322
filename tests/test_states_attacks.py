"""Attacks on record states of the second kind (docs/format.md 13a, "Record states";
docs/threat-model.md 10, "Per class and over the bytes"), as a hostile staff member with
the staff database login (or any database writer holding a staff identity) would try
them, and legitimate sequences the record check must not report. Every test here states
the behaviour the documents promise; a failing one is a finding."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, as_release_v8
from test_audit_rights import _row, _staff_login
from vault import _format as F

FULL = {"legal_name": "Amira Haddad", "organisation": "Free Press Network", "nationality": "Syria",
        "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
        "risk_level": "low", "risk_notes": "None known.", "dietary": "vegan", "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "email": "kofi@example.org", "badge_name": "Kofi", "risk_level": "low"}


def _lead_raised_risk(url: str, lead: Identity, staff: Identity) -> tuple[str, bytes, bytes]:
    """A vault with a staff member; one record whose risk the lead raised to "high" (and
    dietary changed) after it was added at "low". Returns (record id, its row at "low",
    its row at "high")."""
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
        v.add(OTHER)
    old = _row(url, rid)
    with vault.open(url, identity=lead) as v:
        v.update(rid, {"risk_level": "high", "risk_notes": "Followed after the 2025 trial.",
                          "dietary": "none"})  # logistics too: the row at "low" is then no whole older row
        assert v.check_records().ok
    return rid, old, _row(url, rid)


def _put_back_old_risk(surl: str, rid: str, old: bytes) -> None:
    raw = RawDB(surl)
    try:
        envs = raw.envs(rid)
        envs["risk"] = raw.envs_of(old)["risk"]
        raw.set_envs(rid, envs)
    finally:
        raw.close()


# -- 1. a staff "shred" that shreds nothing plus a staff "add" that adds nothing ----------------------
@contextlib.contextmanager
def _staff_after_rollback(url: str) -> Iterator[tuple[Identity, str, bytes, bytes, str, vault.Vault, Any]]:
    """The lead raised a record's risk; a staff member with the staff database login has put
    the older risk envelope back: (lead, record id, its bytes, the lead's row, the staff
    URL, the staff handle, its second-kind states) while the staff handle is open."""
    lead, staff = Identity.generate(), Identity.generate()
    rid, old, current = _lead_raised_risk(url, lead, staff)
    with _staff_login(url) as surl:
        _put_back_old_risk(surl, rid, old)
        with vault.open(surl, identity=staff) as s:
            st = s._access.states_v2
            assert st is not None
            yield lead, rid, bytes.fromhex(rid), current, surl, s, st


def test_staff_shred_and_add_entries_vouch_for_a_rolled_back_risk_envelope(url: str) -> None:
    """Staff may not update the risk class, and an ``update`` entry of theirs that changes
    its part is refused (test_audit_rights). But staff *may* shred (every class writable,
    every purpose key) and *may* add. With the staff database login they put back the older
    risk envelope (risk_level "low") beside the current ones, then sign two entries of the
    actions their role may make: a ``shred`` dropping the row's current token (the record is
    not deleted) and an ``add`` putting the token of the mixed row (a fresh token: the mix
    was never put). Tokens are a set with no record binding in the check, so the record
    check replays both, finds the mix live and the lead's state dropped, and says the rows
    match the log, while the lead reads risk_level "low".

    Expected: the check is not ok (the shred's record is still there, the add's row is no
    new record, or the row's risk part changed with no entry by a risk holder)."""
    with _staff_after_rollback(url) as (lead, rid, b, current, surl, s, st):
        s._audit("shred", s.pseudonym(rid, "audit"), {"state": {"drop": [st.token(b, current)]}})
        s._audit("add", "", {"count": 1, "state": {"put": [st.token(b, _row(surl, rid))]}})
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        assert v.get(rid)["risk_level"] == "low"  # the rolled-back value the lead now reads
        check = v.check_records()
        assert not check.ok, "a staff shred + add excused a rolled-back risk envelope: " + str(check)


def test_staff_shred_and_add_entries_vouch_for_a_risk_envelope_of_their_own_making(url: str) -> None:
    """Worse than a rollback: staff hold the risk class's public key (write-only) and so can
    seal a risk envelope with values of their choosing for an existing record (its id in the
    AAD, a writer-signed envelope as their client's add makes), swap it into the row with the
    staff login, and vouch for the row with a signed ``shred`` (dropping the current token)
    and ``add`` (putting the new one), both actions their role may make. The lead then reads
    risk_level "low" / risk_notes of staff's choosing for a person the lead marked "high",
    and the record check says the rows match the log.

    Expected: the check is not ok: no one who may update risk wrote that envelope."""
    lead, staff = Identity.generate(), Identity.generate()
    rid, _, current = _lead_raised_risk(url, lead, staff)
    b = bytes.fromhex(rid)
    with _staff_login(url) as surl:
        with vault.open(surl, identity=staff) as s:
            by_class = s._records.encode({"risk_level": "low", "risk_notes": "Nothing to note."}, partial=True)
            fresh = s._access.codec.unpack_some(s._records.seal(b, {"risk": by_class["risk"]}, only=["risk"],
                                                                fmt=s._access.codec.writes(current)), {"risk"})
        raw = RawDB(surl)
        try:
            envs = raw.envs(rid)
            envs["risk"] = fresh["risk"]
            raw.set_envs(rid, envs)
        finally:
            raw.close()
        with vault.open(surl, identity=staff) as s:
            st = s._access.states_v2
            assert st is not None
            s._audit("shred", s.pseudonym(rid, "audit"), {"state": {"drop": [st.token(b, current)]}})
            s._audit("add", "", {"count": 1, "state": {"put": [st.token(b, _row(surl, rid))]}})
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        got = v.get(rid)
        assert (got["risk_level"], got["risk_notes"]) == ("low", "Nothing to note.")
        check = v.check_records()
        assert not check.ok, "staff vouched for a risk envelope of their own making: " + str(check)


# -- 2. the upgrade to the second kind --------------------------------------------------------------
def _v8(url: str, monkeypatch: pytest.MonkeyPatch, lead: Identity, staff: Identity, n: int = 3) -> list[str]:
    """A clean vault as a release of database schema v8 left it (first-kind states)."""
    with monkeypatch.context() as m:
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)
        with vault.create(url, PASSPHRASE, lead=lead) as v:
            v.add_user(staff.public, "sam", "staff")
            rids = v.add_many([{**OTHER, "email": f"p{i}@example.org"} for i in range(n)])
            assert v.check_records().ok
            as_release_v8(v)
    return rids


def test_a_staff_handle_opened_at_v8_that_shreds_after_the_upgrade_is_refused_or_logged_right(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """False alarm. A staff handle opened at v8 is refused its next add or update once the
    lead's open took the vault to 9 (KeysChanged, test_record_states). Its shred is not:
    Records.delete takes the writes lock but never calls Access.check_keys, so it deletes
    the row and writes a ``shred`` entry naming the row's state of the *first* kind after
    the upgrade's ``restate``. The record check refuses that entry (wrong kind) and reports
    the upgrade's second-kind state for the shredded row as logged but missing: an honest
    staff member's ordinary shred makes the lead's check fail.

    Expected: the shred is refused (KeysChanged, nothing written) or named in the second
    kind; either way the check stays ok."""
    lead, staff = Identity.generate(), Identity.generate()
    rids = _v8(url, monkeypatch, lead, staff)
    with vault.open(url, identity=staff) as s:
        assert s._ses.db_known == 8
        vault.open(url, identity=lead).close()  # the lead's open: the upgrade to 9
        try:
            s.delete(rids[0])
        except vault.KeysChanged:
            pass
    with vault.open(url, identity=lead) as v:
        check = v.check_records()
        assert check.ok, "an honest staff shred across the upgrade fails the lead's check: " + str(check)


# -- 3. subject export: where the record's add is found ------------------------------------------------
def test_a_refused_add_entry_by_staff_hides_their_bulk_export_from_the_persons_subject_export(url: str) -> None:
    """A person's subject export lists every bulk read (``export``, ``read_all``) since their
    record's add, found by following the row's state back (vault.subject._added_at). It
    follows any verified, unquarantined entry that puts the token, including one the record
    check refuses. A staff member exports every record's e-mail (a bulk read that covered
    Amira), then signs an ``add`` entry putting Amira's current token (a state already put:
    the check refuses it, but nobody has to run the check before an export). The lead's
    subject export for Amira now starts at that forged add and leaves staff's export out.

    Expected: the export's start follows only entries the replay takes (or, per
    _with_bulk's own rule for "a forged entry on the way", keeps every bulk read), so the
    staff export is listed."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        amira = v.add(FULL)
    time.sleep(0.01)
    with _staff_login(url) as surl:
        with vault.open(surl, identity=staff) as s:
            s.export(["email"])  # covered Amira
            time.sleep(0.01)
            st = s._access.states_v2
            assert st is not None
            s._audit("add", "", {"count": 1, "state": {"put": [st.token(bytes.fromhex(amira), _row(surl, amira))]}})
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        data = v.subject_export(v.pseudonym(amira, "badge")).data
    bulk = [(a["action"], a["role"]) for a in data["accesses"] if a.get("scope") == "all records"]
    assert ("export", "staff") in bulk, "staff's bulk export is missing from the subject export: " + str(
        data["accesses"])


# -- 4. revocation re-judges what a staff member signed before it ------------------------------------
def test_revoking_a_staff_member_launders_their_refused_update_of_a_risk_envelope(url: str) -> None:
    """vault.audit_replay.rights gives a revoked user every class ("what they held is not
    recorded: any class, until removed") for the entries before their ``user_removed``. So
    whatever a staff member signed while they were staff is judged again, after their
    revocation, as if they had held the risk key. A staff member puts back an older risk
    envelope and signs an ``update`` that honestly names the risk part as changed: the lead's
    check refuses it (staff may not update risk) and reports the row. Then the staff member
    leaves and the lead revokes them, as routine: the very same entry is now taken, and the
    check says the rows match the log while the lead reads the rolled-back risk.

    Expected: a revocation takes nothing back that the check reported; the revoked user's
    earlier entries are judged by the role they had (or at least no wider)."""
    with _staff_after_rollback(url) as (lead, rid, b, current, surl, s, st):
        mixed = _row(surl, rid)
        was, now = st.named_parts(b, current), st.named_parts(b, mixed)
        assert [c for c in was if was[c] != now[c]] == ["risk"]
        s._audit("update", s.pseudonym(rid, "audit"), {"fields": ["email"], "state": {
            "drop": [st.token(b, current)], "put": [st.token(b, mixed)], "was": was, "now": now}})
    with vault.open(url, identity=lead) as v:
        before = v.check_records()
        assert not before.ok and before.refused and before.unlogged == (rid,)
        sam = next(u for u in v.users() if u.name == "sam")
        v.remove_user(sam.user_id)
        assert v.get(rid)["risk_level"] == "low"
        after = v.check_records()
        assert not after.ok, "the revocation laundered a staff member's refused risk rollback: " + str(after)
