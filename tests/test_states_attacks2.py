"""Second round of attacks on record states of the second kind (docs/format.md 13a,
"Record states"; docs/threat-model.md 10, "Per class and over the bytes"), after the
fixes of tests/test_states_attacks.py: as a hostile staff member or tool identity with a
database login would try them, and legitimate flows the record check (and what follows
it) must not get wrong. Every test states the behaviour the documents promise or imply;
a failing one is a finding."""

from __future__ import annotations

import time

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from test_audit_rights import _row, _staff_login

FULL = {"legal_name": "Amira Haddad", "organisation": "Free Press Network", "nationality": "Syria",
        "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
        "risk_level": "low", "risk_notes": "None known.", "dietary": "vegan", "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "email": "kofi@example.org", "badge_name": "Kofi", "risk_level": "low"}


def _with_fresh(who: vault.Vault, rid: str, base: bytes, cls: str, values: dict[str, object]) -> bytes:
    """``base`` (a row of record ``rid``) with class ``cls``'s envelope sealed afresh by
    ``who`` (a class it holds the key of), holding ``values``: what any holder of that
    class's key can make and write with a database login."""
    b = bytes.fromhex(rid)
    codec = who._access.codec
    by_class = who._records.encode(values, partial=True)
    fresh = codec.unpack_some(who._records.seal(b, {cls: by_class[cls]}, only=[cls], fmt=codec.writes(base)), {cls})
    envs = codec.unpack(base)
    envs[cls] = fresh[cls]
    return codec.pack(codec.writes(base), envs)


def _lead_raised_risk(url: str, lead: Identity, others: dict[str, Identity]) -> tuple[str, bytes, bytes]:
    """One record added at risk "low", then raised to "high" by the lead. Returns (record
    id, its row at "low", its row at "high")."""
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        for name, ident in others.items():  # "sam" is staff, "tool" the badge tool
            v.add_user(ident.public, name, "staff" if name == "sam" else "tool")
        rid = v.add(FULL)
        v.add(OTHER)
    old = _row(url, rid)
    with vault.open(url, identity=lead) as v:
        v.update(rid, {"risk_level": "high", "risk_notes": "Followed after the 2025 trial."})
        assert v.check_records().ok
    return rid, old, _row(url, rid)


def _stale_update(surl: str, who: Identity, rid: str, old: bytes) -> bytes:
    """The attack of finding 1: write ``old`` (a row of ``rid`` the lead's update replaced,
    risk "low") with a fresh public envelope, and sign an ``update`` whose ``was`` is the
    *old* row's parts (a state dropped long ago, not the live one) and whose ``now`` is the
    written row's: only the public class differs between the two, a class the signer may
    update. Returns the row written."""
    b = bytes.fromhex(rid)
    with vault.open(surl, identity=who) as s:
        mixed = _with_fresh(s, rid, old, "public", {"badge_name": "A. H."})
        st = s._access.states_v2
        assert st is not None
        was, now = st.named_parts(b, old), st.named_parts(b, mixed)
        assert [c for c in was if was[c] != now[c]] == ["public"]
        raw = RawDB(surl)
        try:
            raw.set_row(rid, mixed)
        finally:
            raw.close()
        s._audit("update", s.pseudonym(rid, "audit"), {"fields": ["badge_name"], "state": {
            "drop": [st.token(b, old)], "put": [st.token(b, mixed)], "was": was, "now": now}})
    return mixed


# -- 1. an update whose "was" is not the record's live state -------------------------------------
@pytest.mark.parametrize("who", ["sam", "tool"])
def test_an_update_from_a_stale_state_vouches_for_a_rolled_back_risk_envelope(url: str, who: str) -> None:
    """Attack. The parts rule checks that an update's ``was`` gives the token it drops and
    that ``was`` and ``now`` differ only in classes the signer may update; the records rule
    that the record was added and not shredded. Nothing checks that the dropped token is
    the record's *live* state. Staff (or the badge tool, which may update only ``public``)
    with a database login take the row as it was before the lead raised its risk (they
    read it earlier, or from a backup), seal a fresh public envelope into it, write it, and
    sign an ``update`` from the old row's parts to the written row's: only ``public``
    changed. The check takes the entry, calls the row (risk "low" again) *as logged*, and
    reports only that the lead's own update entry names a state no row holds
    (``missing``), which reads like a deleted row, not like this record rolled back.

    Expected: the entry is refused (an update drops the record's live state), or the row
    is named (``rolled_back`` or ``unlogged``): it holds a risk envelope the log dropped."""
    lead, sam, tool = Identity.generate(), Identity.generate(), Identity.generate()
    rid, old, _ = _lead_raised_risk(url, lead, {"sam": sam, "tool": tool})
    with _staff_login(url) as surl:
        _stale_update(surl, sam if who == "sam" else tool, rid, old)
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        assert v.get(rid)["risk_level"] == "low"
        check = v.check_records()
        assert rid in check.rolled_back + check.unlogged or check.refused, (
            "a stale-state update made a rolled-back risk envelope count as logged: " + str(check))


def test_after_accepting_the_rows_the_leads_own_update_of_the_record_is_not_refused(url: str) -> None:
    """Accept, then honest work. After the attack of the test above, the check reports one
    state missing and every row as logged; the lead accepts the rows as they are
    (``check_records(accept=True)``). The accepting ``restate`` drops the missing state,
    whose tag is the record's, and puts nothing for it (its row did not differ), so the
    replay counts the record as *shredded* although its row is there. The lead's next,
    honest update of the record is then refused ("a record shredded before") and its new
    row reported rolled back; so would the lead's own shred be.

    Expected: after an accept, the check is ok, and stays ok after the lead's own update
    of a record whose row the accept found present. (The stale update itself is now
    refused, as the test above wants: the lead quarantines it, then accepts.)"""
    lead, sam = Identity.generate(), Identity.generate()
    rid, old, _ = _lead_raised_risk(url, lead, {"sam": sam})
    with _staff_login(url) as surl:
        _stale_update(surl, sam, rid, old)
    with vault.open(url, identity=lead) as v:
        (stale,) = v.check_records().refused
        v.quarantine(stale)
        v.check_records(accept=True)
        assert v.check_records().ok
        v.update(rid, {"risk_level": "high"})  # the lead puts it right
        check = v.check_records()
        assert check.ok, "the lead's own update after an accept is reported: " + str(check)


# -- 2. subject export after an accept --------------------------------------------------------------
def test_a_subject_export_after_an_accept_keeps_the_bulk_reads_since_the_record_was_added(url: str) -> None:
    """Legitimate flow. Amira is added; staff export everyone's e-mail (a bulk read that
    covered her); Kofi is added. Later the lead finds Amira's row put back to an older
    version and Kofi's row gone (a partial restore) and accepts the rows as they are. The
    accepting ``restate`` puts Amira's row's state and drops the missing states of both
    records; subject.py _added_at follows *every* state the restate drops, so from Amira's
    row it reaches Kofi's ``add`` first (walking back) and starts her bulk reads there,
    after staff's export.

    Expected: Amira's subject export lists staff's export (the start is her own add, or
    every bulk read is kept)."""
    lead, sam = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        amira = v.add(FULL)
    time.sleep(0.01)
    with vault.open(url, identity=sam) as s:
        s.export(["email"])
    time.sleep(0.01)
    with vault.open(url, identity=lead) as v:
        kofi = v.add(OTHER)
        old = _row(url, amira)
        v.update(amira, {"email": "amira.h@example.org"})
    raw = RawDB(url)
    try:
        raw.set_row(amira, old)
        raw.delete_row(kofi)
    finally:
        raw.close()
    with vault.open(url, identity=lead) as v:
        found = v.check_records(accept=True)
        assert found.rolled_back == (amira,) and len(found.missing) == 2
        assert v.check_records().ok
        data = v.subject_export(v.pseudonym(amira, "badge")).data
    bulk = [(a["action"], a["role"]) for a in data["accesses"] if a.get("scope") == "all records"]
    assert ("export", "staff") in bulk, "staff's bulk export is missing from the subject export: " + str(
        data["accesses"])
