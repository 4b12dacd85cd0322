"""Record states of the second kind (vault.record_states, docs/format.md 13a): per class,
over each envelope's bytes; an update's entry carries the parts before and after. And the
upgrade that brings them to a vault whose log names states of the first kind: one signed
``restate`` of pairs, which moves each row's state only where the log vouched for it, so
that what the check found before the upgrade it still finds after."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, as_release_v8
from vault import _format as F
from vault.identity import Identity
from vault.subject import _added_at

FULL = {"legal_name": "Amira Haddad", "organisation": "Free Press Network", "nationality": "Syria",
        "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
        "risk_level": "low", "risk_notes": "None known.", "dietary": "vegan", "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "email": "kofi@example.org", "badge_name": "Kofi", "risk_level": "low"}


def _tokens(e: dict[str, Any]) -> list[str]:
    state = e["detail"].get("state", {})
    return list(state.get("drop", [])) + list(state.get("put", []))


def test_an_update_names_the_parts_of_both_rows_and_only_its_classes_change(url: str) -> None:
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    with vault.open(url, identity=staff) as s:
        s.update(rid, {"email": "amira.h@example.org"})
    with vault.open(url, identity=lead) as v:
        entry = v.audit_entries(action="update")[-1]
        state = entry["detail"]["state"]
        assert set(state) == {"drop", "put", "was", "now"}
        assert set(state["was"]) == set(v.schema.classes) == set(state["now"])
        assert [c for c in state["was"] if state["was"][c] != state["now"][c]] == ["contact"]
        assert all(len(t) == 48 for t in _tokens(entry))
        assert v.check_records().ok


def test_a_rewrap_keeps_every_state(url: str) -> None:
    """A rotation without re-encryption replaces envelopes' keys only: the parts hash what
    comes after the key, so no state moves and no entry needs to name one."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many([FULL, OTHER])
        v.rotate()
        assert v.check_records().ok
        v.rotate(reencrypt=True)
        assert v.check_records().ok


def test_a_forged_upgrade_restate_by_staff_is_refused(url: str) -> None:
    """Only the lead's (or the recovery passphrase's) open upgrades and pairs states; a
    staff member's signed ``restate`` claiming to be the upgrade moves nothing."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    raw = RawDB(url)
    raw.set_row(rid, raw.row(rid)[:-1] + bytes([raw.row(rid)[-1] ^ 1]))  # damaged: a state no entry put
    raw.close()
    with vault.open(url, identity=staff) as s:
        put = s._records.state_token(bytes.fromhex(rid), RawDB(url).row(rid))
        s._audit("restate", "", {"upgrade": F.RECORD_STATES_V2_FROM, "count": 1,
                                 "state": {"drop": ["0" * 24], "put": [put]}})
    with vault.open(url, identity=lead) as v:
        check = v.check_records()
        assert check.unlogged == (rid,) and len(check.refused) == 1


# -- the upgrade from v8 ---------------------------------------------------------------------------
def _v8_vault(url: str, monkeypatch: pytest.MonkeyPatch, lead: Identity, staff: Identity) -> dict[str, str]:
    """A vault as a release of database schema v8 left it, its log naming first-kind states,
    with one row of each kind the check tells apart: as logged (``kept``, ``updated``), shredded
    and put back (``restored``), deleted without an entry (``deleted``), written by no entry
    (``planted``: a copy of ``kept``'s row under another id is no row of any entry's)."""
    with monkeypatch.context() as m:
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)
        with vault.create(url, PASSPHRASE, lead=lead) as v:
            v.add_user(staff.public, "sam", "staff")
            kept, updated, restored, deleted = v.add_many([FULL, OTHER, {**OTHER, "email": "x@example.org"},
                                                           {**OTHER, "email": "y@example.org"}])
            v.update(updated, {"email": "kofi.m@example.org"})
            raw = RawDB(url)
            old = raw.row(restored)
            v.delete(restored)
            raw.insert_row(restored, old)
            raw.delete_row(deleted)
            planted = "ab" * 16
            raw.insert_row(planted, raw.row(kept))
            raw.close()
            assert all(len(t) == 24 for e in v.audit_entries() for t in _tokens(e))
            as_release_v8(v)
    return {"kept": kept, "updated": updated, "restored": restored, "deleted": deleted, "planted": planted}


def test_the_upgrade_pairs_every_state_and_the_check_finds_what_it_found_before(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lead, staff = Identity.generate(), Identity.generate()
    rows = _v8_vault(url, monkeypatch, lead, staff)
    with vault.open(url, identity=staff) as s:  # staff work at v8: states of the first kind
        assert s._ses.db_known == 8
        s.update(rows["kept"], {"phone": "+961 1 000 000"})
    with vault.open(url, identity=lead) as v:
        assert RawDB(url).meta("db_schema_version") == b"9"
        (up,) = [e for e in v.audit_entries(action="restate") if e["detail"].get("upgrade")]
        assert up["detail"]["count"] == 4  # every row present: kept, updated, restored, planted
        drop, put = up["detail"]["state"]["drop"], up["detail"]["state"]["put"]
        assert drop == sorted(drop) and all(len(t) == 24 for t in drop) and all(len(t) == 48 for t in put)
        check = v.check_records()
        assert check.rolled_back == (rows["restored"],) and check.unlogged == (rows["planted"],)
        assert len(check.missing) == 1 and not check.refused  # deleted's add
        v.update(rows["kept"], {"dietary": "none"})  # an entry of the second kind on a paired state
        v.delete(rows["planted"])
        check = v.check_records()
        assert check.rolled_back == (rows["restored"],) and len(check.missing) == 1 and not check.refused


def test_after_the_upgrade_content_sealed_under_a_held_dek_id_is_found(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the first kind could not see (the same DEK ids, other bytes) the upgraded vault
    sees: here the simplest such change, an envelope's bytes swapped for another row's
    under the same DEK id is out of reach, so the row's last byte is flipped instead."""
    lead, staff = Identity.generate(), Identity.generate()
    rows = _v8_vault(url, monkeypatch, lead, staff)
    with vault.open(url, identity=lead) as v:
        v.delete(rows["planted"])
        v.delete(rows["restored"])
        before = v.check_records()
        assert before.rolled_back == () and before.unlogged == ()
    raw = RawDB(url)
    row = raw.row(rows["kept"])
    raw.set_row(rows["kept"], row[:-1] + bytes([row[-1] ^ 1]))
    raw.close()
    with vault.open(url, identity=lead) as v:
        assert v.check_records().unlogged == (rows["kept"],)


def test_a_handle_opened_at_v8_is_refused_its_next_write_after_the_upgrade(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """It would name states of the first kind after the log took the second: refused
    (reopen), never written, so the check stays clean."""
    lead, staff = Identity.generate(), Identity.generate()
    rows = _v8_vault(url, monkeypatch, lead, staff)
    with vault.open(url, identity=staff) as s:
        vault.open(url, identity=lead).close()  # the upgrade
        with pytest.raises(vault.KeysChanged, match="upgraded"):
            s.add(OTHER)
        with pytest.raises(vault.KeysChanged, match="upgraded"):
            s.update(rows["kept"], {"email": "a@example.org"})
    with vault.open(url, identity=staff) as s:
        s.add(OTHER)
        s.update(rows["kept"], {"email": "a@example.org"})
    with vault.open(url, identity=lead) as v:
        v.delete(rows["planted"])
        check = v.check_records()
        assert check.rolled_back == (rows["restored"],) and len(check.missing) == 1 and not check.refused
        assert not check.unlogged


def test_a_subject_export_follows_the_upgrade_pair_back_to_the_add(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bulk reads a person's export lists start at their record's add, found by following
    its state back; across the upgrade, through its own pair (all of the upgrade's dropped
    states would lead to the latest add before it: another person's, here)."""
    lead, staff = Identity.generate(), Identity.generate()
    _v8_vault(url, monkeypatch, lead, staff)
    with vault.open(url, identity=staff) as s:  # at v8
        person = s.add(FULL)
        time.sleep(0.01)
        s.add(OTHER)  # a later add: not this person's
    with vault.open(url, identity=lead) as v:
        entries = v.audit_entries()
        adds = [e for e in entries if e["action"] == "add"]
        token = v._records.state_token(bytes.fromhex(person), RawDB(url).row(person))
        assert len(token) == 48 and adds[-2]["at"] < adds[-1]["at"]
        assert _added_at(entries, token) == int(adds[-2]["at"])
        up = next(e for e in entries if e["detail"].get("upgrade"))
        assert json.dumps(up["detail"]).count(token) == 1


def test_a_reencryption_over_a_rolled_back_row_keeps_it_reported_and_only_it(url: str) -> None:
    """A re-encrypting rotation cannot tell a rolled-back row from any other: its batch's
    entry is taken record by record, so the put-back row stays reported as rolled back
    (not laundered by the lead's re-encryption), and the rest of the batch stays logged."""
    with vault.create(url, PASSPHRASE) as v:
        a, b, c = v.add_many([FULL, OTHER, {**OTHER, "email": "z@example.org"}])
        raw = RawDB(url)
        old = raw.row(a)
        v.update(a, {"risk_level": "high"})
        raw.set_row(a, old)  # a database writer puts the older row back
        raw.close()
        assert v.check_records().rolled_back == (a,)
        v.rotate(reencrypt=True)
        check = v.check_records()
        assert check.rolled_back == (a,) and not check.unlogged and not check.refused and len(check.missing) == 1
        assert v.get(a)["risk_level"] == "low"  # what the check keeps naming
