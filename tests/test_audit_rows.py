"""Rows the staff login (PostgreSQL, before the insert guard existed, or its owner) or any
writer of a SQLite file can put in the audit log, and what they no longer do: stop the
lead's listing, canary alarms, checkpoint and record check for good (a malformed row, a
detail that is no JSON object), lock every opener out (a row numbered 2^63-1), switch
verify and the record check off for good (a broken link, a gap, an older-form entry after
labelled ones), or excuse a deletion (a state carried by an entry that writes no rows).

On PostgreSQL the rows are written as the tables' owner with the insert guard switched off
(vault.audit_guard refuses every one of them to the staff login: tests/test_audit_guard.py),
which is what a row from before the guard, or the owner, leaves."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import audit_head, audit_unguarded
from vault import audit as A
from vault import audit_rows as RW
from vault import canaries as CA

PERSON = {"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira"}
OTHER = {"legal_name": "Bo Lee", "email": "bo@example.org", "badge_name": "Bo"}


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(PERSON)
        other = v.add(OTHER)
        v.plant_canary({"legal_name": "Lena Vogt", "badge_name": "Lena", "email": "lena@example.org"})
    return url, lead, staff, rid, other


@contextlib.contextmanager
def _unguarded(url: str) -> Iterator[Any]:
    """A connection as the database owner; on PostgreSQL with the insert guard off."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c, audit_unguarded(c, url):
            yield c
    finally:
        engine.dispose()


def _insert(url: str, *row: Any) -> None:
    with _unguarded(url) as c:
        c.execute(sa.text("INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) "
                          "VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i, :j)"),
                  dict(zip("abcdefghij", row)))


def _delete_record(url: str, rid: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            assert c.execute(sa.text("DELETE FROM dv_records WHERE id = :i"), {"i": bytes.fromhex(rid)}).rowcount == 1
    finally:
        engine.dispose()


def _signed(who: Identity, seq: int, prev: bytes, action: str, detail: str, *, labelled: bool = True,
            at: int | None = None) -> tuple[Any, ...]:
    at = int(time.time() * 1000) if at is None else at
    h = A.entry_hash(seq, prev, at, who.public.raw, action, "", detail, b"", labelled=labelled)
    return seq, prev, at, who.public.raw, action, "", detail, b"", h, who.sign(A.signed_message(h, labelled))


def _deletion_reported(url: str, lead: Identity) -> bool:
    with vault.open(url, identity=lead) as v:
        verdict = v.audit_verify()
        check = v.check_records()
    assert verdict.ok, str(verdict)
    return not check.ok and len(check.missing) == 1


# -- R01: a malformed row ---------------------------------------------------------------------
def test_a_malformed_row_never_stops_the_leads_readers_and_can_be_quarantined(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One row with a one-byte hash made every reader of the lead raise (audit show, the
    canary alarms and so the checkpoint at every CLI command, the record check), and
    quarantine refused to name it. Now it stands in the listing flagged, the next entries
    link over it (to its name), and the lead quarantines it by its name; then verify passes
    and the record check reports a record deleted behind the log's back."""
    url, lead, staff, rid, other = team
    seq, h = audit_head(url)
    _insert(url, seq + 1, h, 1, bytes(64), "read", "", "{}", b"", b"x", bytes(64))
    with vault.open(url, identity=staff) as s:  # staff keep working, their entries link over it
        s.set_reason("checking an email")
        s.get(rid, ["email"])
    _delete_record(url, other)
    with vault.open(url, identity=lead) as v:
        shown = v.audit_entries()
        assert [e["seq"] for e in shown if not e["verified"]] == [seq + 1]
        assert v.alarms() == []
        v.witness(tmp_path / "checkpoints")
        v.witness(tmp_path / "checkpoints")  # the head it kept is read back
        assert v.audit_verify().first_bad == seq + 1
        with pytest.raises(vault.IntegrityError, match="damaged"):
            v.check_records()
        found = v.audit_problem(seq + 1)
        assert found["problem"].startswith("it is malformed") and len(found["hash"]) == 64
        v.quarantine(seq + 1)
    assert _deletion_reported(url, lead)


def test_a_malformed_row_is_named_by_its_raw_columns() -> None:
    """The name (docs/format.md 13a) of a row is the same whatever driver type a column came
    back as; the link after it is its stored hash when that is 32 bytes, else its name."""
    row = (5, bytes(32), 1, bytes(64), "read", "", "{}", b"", b"x", bytes(64))
    assert RW.row_name(row) == RW.row_name([memoryview(x) if isinstance(x, bytes) else x for x in row])
    assert RW.link_of(row) == RW.row_name(row) != RW.row_name(row[:8] + (b"y", bytes(64)))
    assert RW.link_of(row[:8] + (bytes(range(32)), bytes(64))) == bytes(range(32))
    assert RW.row_name(row) != RW.row_name(row[:4] + (b"read",) + row[5:])  # text and bytes differ


# -- R02: a row numbered 2^63-1 ---------------------------------------------------------------
def test_a_head_no_entry_can_follow_is_refused_as_tampering(team) -> None:  # type: ignore[no-untyped-def]
    """Every append after a row at seq 2^63-1 needed seq 2^63: five blind retries, then
    "audit log write failed (StoreError)" for every opener. Now the append says what it is."""
    url, lead, staff, rid, other = team
    _insert(url, RW.MAX_SEQ, bytes(32), 1, bytes(64), "x", "", "{}", b"", bytes(32), bytes(64))
    with pytest.raises(vault.IntegrityError, match=f"audit log tampered: its last entry is numbered {RW.MAX_SEQ}"):
        vault.open(url, identity=staff)


# -- R03: a broken link, a gap ----------------------------------------------------------------
def test_a_mis_chained_row_can_be_quarantined_and_verify_goes_on(team) -> None:  # type: ignore[no-untyped-def]
    """A well-formed row whose prev is not the previous hash, in a colleague's name: the lead
    could quarantine it, but verify still required the chain through it, so verify and the
    record check stayed off for good and a record deleted afterwards went unreported."""
    url, lead, staff, rid, other = team
    seq, _ = audit_head(url)
    _insert(url, seq + 1, os.urandom(32), 1, lead.public.raw, "read", "", "{}", b"", os.urandom(32), os.urandom(64))
    _delete_record(url, other)
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().first_bad == seq + 1
        assert "its link to entry" in v.quarantine(seq + 1)
    assert _deletion_reported(url, lead)


def test_a_mis_chained_row_signed_by_its_writer_is_named_by_its_link(team) -> None:  # type: ignore[no-untyped-def]
    """Signed by the staff member who wrote it, the entry verifies on its own: quarantine
    used to say "nothing to quarantine" while verify stopped at it."""
    url, lead, staff, rid, other = team
    seq, _ = audit_head(url)
    _insert(url, *_signed(staff, seq + 1, os.urandom(32), "read", "{}"))
    _delete_record(url, other)
    with vault.open(url, identity=lead) as v:
        assert f"its link to entry {seq} is broken" in v.quarantine(seq + 1)
    assert _deletion_reported(url, lead)


def test_a_gap_is_acknowledged_by_the_leads_decision(team) -> None:  # type: ignore[no-untyped-def]
    """A row far past the end: verify said "an entry is missing" at the next seq for good,
    and there was no row there to restore. The lead quarantines that seq: the decision
    names the row after the gap and the seq before it, and verify walks on."""
    url, lead, staff, rid, other = team
    seq, h = audit_head(url)
    _insert(url, *_signed(staff, seq + 1000, h, "read", "{}"))
    with vault.open(url, identity=staff) as s:  # later entries chain on from it
        s.get(rid, ["email"])
    _delete_record(url, other)
    with vault.open(url, identity=lead) as v:
        verdict = v.audit_verify()
        assert verdict.first_bad == seq + 1 and "missing" in verdict.problem
        said = v.quarantine(seq + 1)
        assert said.startswith(f"entry {seq + 1000}: entries {seq + 1} to {seq + 999} are missing")
        decision = json.loads(A.read_entries(v._ses.store())[-1].detail)
        assert decision["seq"] == seq + 1000 and decision["after"] == seq
        with pytest.raises(vault.ValidationError, match="quarantined already"):
            v.quarantine(seq + 1)
    assert _deletion_reported(url, lead)


def test_a_decision_by_someone_else_bridges_nothing(team) -> None:  # type: ignore[no-untyped-def]
    """Only the lead's (or the recovery passphrase's) decision steps over an entry."""
    url, lead, staff, rid, other = team
    seq, _ = audit_head(url)
    row = _signed(staff, seq + 1, os.urandom(32), "read", "{}")
    _insert(url, *row)
    with vault.open(url, identity=staff) as s:
        s._audit("quarantine", "", {"seq": seq + 1, "hash": row[8].hex(), "problem": "x"})
    with vault.open(url, identity=lead) as v:
        assert "chain broken" in str(v.audit_verify())


# -- R07: the older form after labelled ones --------------------------------------------------
def test_an_older_form_entry_after_labelled_ones_can_be_quarantined(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, rid, other = team
    seq, h = audit_head(url)
    _insert(url, *_signed(staff, seq + 1, h, "audit_read", "{}", labelled=False))
    _delete_record(url, other)
    with vault.open(url, identity=lead) as v:
        assert "older, unlabelled form" in str(v.audit_verify())
        assert "older, unlabelled form after labelled ones" in v.quarantine(seq + 1)
    assert _deletion_reported(url, lead)


# -- R08: a detail that is no JSON object -----------------------------------------------------
def test_a_signed_entry_whose_detail_is_no_object_is_flagged_and_quarantinable(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A modified staff client's own, correctly chained and signed ``alarm`` entry with
    detail ``[1]``: verify passed, quarantine refused, and every reader of the lead raised
    (the CLI exited 5 at every command). Now verify names it, the readers show it flagged,
    and the lead quarantines it."""
    url, lead, staff, rid, other = team
    with vault.open(url, identity=staff) as s:
        s._audit("alarm", "", [1])  # type: ignore[arg-type]
        s._audit("read", "", "x")  # type: ignore[arg-type]
        seq = A.head(s._ses.store())[0]
    with vault.open(url, identity=lead) as v:
        entries = v.audit_entries()
        assert [e["seq"] for e in entries if not e["verified"]] == [seq - 1, seq]
        assert v.witness(tmp_path / "cp")["alarms"] == [] and v.alarms() == []
        verdict = v.audit_verify()
        assert verdict.first_bad == seq - 1 and "not a JSON object" in verdict.problem
        assert "not a JSON object" in v.quarantine(seq - 1)
        v.quarantine(seq)
        assert v.audit_verify().ok and v.check_records().ok


# -- R10: states only from entries that write rows --------------------------------------------
def _token(url: str, v: vault.Vault, rid: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            data = bytes(c.execute(sa.text("SELECT data FROM dv_records WHERE id = :i"),
                                   {"i": bytes.fromhex(rid)}).scalar_one())
    finally:
        engine.dispose()
    return v._records.state_token(bytes.fromhex(rid), data)


@pytest.mark.parametrize("action, state", [
    ("read", lambda victim, other: {"drop": [victim]}),
    ("update", lambda victim, other: {"drop": [victim], "put": [other]}),  # put again: someone else's row
    ("reencrypt", lambda victim, other: {"drop": [victim], "put": [other]}),
    ("restate", lambda victim, other: {"drop": [victim]}),
    ("add", lambda victim, other: {"drop": [victim], "put": ["0" * 24]}),
    ("shred", lambda victim, other: {"drop": [victim], "put": ["1" * 24]}),
    ("update", lambda victim, other: {"drop": victim}),
])
def test_a_state_the_entry_may_not_carry_is_reported_not_replayed(team, action: str, state: Any) -> None:  # type: ignore[no-untyped-def]
    """A staff member signed their own entry carrying ``{"drop": [victim]}`` and deleted the
    row: verify and the record check passed, and no shred named the record."""
    url, lead, staff, rid, other = team
    with vault.open(url, identity=staff) as s:
        victim, kept = _token(url, s, rid), _token(url, s, other)
        s._audit(action, "", {"fields": ["email"], "state": state(victim, kept)})
    seq = audit_head(url)[0]
    _delete_record(url, rid)
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        check = v.check_records()
        assert not check.ok and check.refused == (seq,), str(check)
        assert f"entries carrying record states they may not (not replayed): {seq}" in str(check)
        assert v.audit_problem(seq)["problem"] is not None
        v.quarantine(seq)  # the lead may set it aside: the deletion is still reported
        again = v.check_records()
    assert again.refused == () and len(again.missing) == 1


def test_states_from_entries_that_write_rows_still_replay(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, rid, other = team
    with vault.open(url, identity=staff) as s:
        s.update(rid, {"email": "new@example.org"})
        s.delete(other)
        s.add(OTHER)
    with vault.open(url, identity=lead) as v:
        v.rotate(["contact"], reencrypt=True)
        assert v.check_records().ok


# -- time: a genuine entry dated back only against a forward-dated one ------------------------
def test_a_time_only_quarantine_points_at_the_forward_dated_entry(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """One staff entry dated an hour ahead makes the next genuine entry "dated back":
    quarantining that genuine one (its state then leaves the replay) is refused, naming
    the forward-dated entry, which the lead quarantines instead."""
    url, lead, staff, rid, other = team
    real = time.time
    with vault.open(url, identity=staff) as s:
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        s.get(rid, ["email"])
        monkeypatch.setattr(time, "time", real)
    ahead = audit_head(url)[0]
    with vault.open(url, identity=staff) as s:
        s.update(rid, {"email": "new@example.org"})
    with vault.open(url, identity=lead) as v:
        verdict = v.audit_verify()
        assert verdict.first_bad == ahead + 1 and "dated" in verdict.problem
        with pytest.raises(vault.ValidationError, match=f"only against entry {ahead}.*quarantine that one"):
            v.quarantine(ahead + 1)
        assert "dated forward" in v.quarantine(ahead)
        assert v.audit_verify().ok and v.check_records().ok
