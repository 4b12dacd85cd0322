"""Record states of the second kind under concurrency: several handles (threads, each with
its own handle and connection) doing honest work at once. Each test states what honest
clients did and what must hold afterwards; a failure here is a refusal or a false alarm of
honest work, not tampering. Found by a race hunt on branch states-v2 (fe96e0d)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from vault import records as REC
from vault import verify as VR

FULL = {"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira", "risk_level": "low"}


def _rows(n: int, tag: str = "b") -> list[dict[str, str]]:
    return [{**FULL, "badge_name": f"{tag}{i}", "email": f"{tag}{i}@example.org"} for i in range(n)]


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[str]]:
    """Start ``fn`` in a thread of its own (it opens its own handle there); the list gets the
    traceback of whatever it raised."""
    errors: list[str] = []

    def run() -> None:
        try:
            fn()
        except BaseException:
            errors.append(traceback.format_exc())
    t = threading.Thread(target=run)
    t.start()
    return t, errors


def test_a_staff_import_with_updates_and_a_colleagues_update_of_the_same_record_both_succeed(url: str,
                                                                                            monkeypatch) -> None:
    """Two desk clients (staff) at once: Sam imports a file that adds new people and changes a
    stored one (``import_rows(rows, updates=[(rid, values)])``, one transaction); Rana, at the
    same moment, updates the same stored record (another field).

    What happens (PostgreSQL): the import appends its ``import`` entry first (taking the
    log's append lock, held to its commit), and only then runs the updates, each locking
    its record's row. Rana's update locks the row first and then waits for the log's lock:
    the two wait for each other, PostgreSQL aborts one (deadlock detected), and the victim
    is told "audit log write failed (StoreError); operation refused" (the append is retried
    five times inside a transaction already aborted). Every other writer (records.delete
    says so) takes the row's lock before the log's.

    Expected: both honest writes succeed one after the other (or at worst the loser is
    told to retry, not that the audit log failed), and the record check holds. Interleaving
    forced: Rana's update is started when the import reaches its first update, after the
    import entry was appended."""
    lead, sam, rana = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add_user(rana.public, "rana", "staff")
        (rid,) = v.add_many([FULL])
    original = REC.Records.update
    go, ready = threading.Event(), threading.Event()
    in_import = threading.local()

    def rana_updates() -> None:
        with vault.open(url, identity=rana) as r:
            ready.set()
            go.wait(30)
            r.update(rid, {"phone": "+961 1 000 000"})
    started = [_in_thread(rana_updates)]
    assert ready.wait(30)

    def update(self: REC.Records, record_id: str, values: Any) -> None:
        if getattr(in_import, "on", False) and not go.is_set():
            go.set()
            time.sleep(1.0)  # Rana holds the row now and waits for the log's lock
        original(self, record_id, values)
    monkeypatch.setattr(REC.Records, "update", update)
    errors: list[str] = []
    with vault.open(url, identity=sam) as s:
        in_import.on = True
        try:
            s.import_rows(_rows(2, "new"), updates=[(rid, {"email": "amira.h@example.org"})])
        except Exception:
            errors.append(traceback.format_exc())
        in_import.on = False
    thread, rana_errors = started[0]
    thread.join()
    assert not errors and not rana_errors, "\n".join(errors + rana_errors)
    with vault.open(url, identity=lead) as v:
        got = v.get(rid)
        assert got["email"] == "amira.h@example.org" and got["phone"] == "+961 1 000 000"
        assert v.check_records().ok


def _between(monkeypatch, name: str, step: Callable[[], None]) -> None:  # type: ignore[no-untyped-def]
    """Run ``step`` (in another thread, with its own handle) once, just before verify's
    check ``name`` (a function of vault.verify) runs."""
    original = getattr(VR, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        t, errors = _in_thread(step)
        t.join()
        assert not errors, errors
        return original(*args, **kwargs)
    monkeypatch.setattr(VR, name, wrapped)


def test_verify_while_a_colleague_shreds_reports_no_ledger_problem(url: str, monkeypatch) -> None:
    """The lead runs ``verify()`` while a desk client shreds a record (an honest shred: its
    entry, its ledger row). verify takes the records present in one snapshot and reads the
    shred ledger later, in another transaction: a shred committed in between leaves a
    ledger row naming a record that was "live" in the earlier snapshot, reported as
    "ledger: entry names a live record (a restore would shred it)": a false alarm.

    Expected: the report is ok (the record is gone and its ledger row is its own)."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        a, _ = v.add_many(_rows(2))

    def shred() -> None:
        with vault.open(url, identity=staff) as s:
            s.delete(a)
    _between(monkeypatch, "_check_ledger", shred)
    with vault.open(url, identity=lead) as v:
        report = v.verify()
        assert report.ok, str(report)


def test_verify_while_a_colleague_adds_and_updates_reports_no_pseudonym_problem(url: str, monkeypatch) -> None:
    """The lead runs ``verify()`` while a desk client adds a person and updates them (the
    update's entry names the record by its audit pseudonym, issued then). verify takes the
    records present in one snapshot and reads the pseudonym rows in a later one: the new
    record's pseudonym row names a record not in the first, reported as a pseudonym row
    that "names a record that is not present (left by a shred, or the record deleted)".

    Expected: the report is ok."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add_many(_rows(2))

    def add_and_update() -> None:
        with vault.open(url, identity=staff) as s:
            rid = s.add({**FULL, "badge_name": "late"})
            s.update(rid, {"email": "late@example.org"})
    _between(monkeypatch, "_check_pseudonyms", add_and_update)
    with vault.open(url, identity=lead) as v:
        report = v.verify()
        assert report.ok, str(report)


def test_a_reveal_request_filed_while_its_record_is_shredded_does_not_outlive_it(url: str, monkeypatch) -> None:
    """A desk client files a break-glass request about a record (it checks that the record
    exists, then inserts the request) while a colleague shreds that record. The shred
    deletes the record's requests (breakglass_rows.forget) in its transaction, which does
    not see the request not yet committed; the request checked the record before the shred
    committed. Both commit: a request row naming a shredded record's id stays in the
    database (what the shred promises to remove: "a request row names the record").

    Expected: no request names a shredded record afterwards (the request refused with
    NotFound, or the shred removes it)."""
    from vault import store as ST
    if url.startswith("sqlite"):
        pytest.skip("SQLite serialises the two writers (BEGIN IMMEDIATE)")
    lead, sam, rana = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add_user(rana.public, "rana", "staff")
        a, _ = v.add_many(_rows(2))
    original = ST.Store.record_exists
    fired: list[int] = []

    def record_exists(self, conn, rid, **kw):  # type: ignore[no-untyped-def]
        out = original(self, conn, rid, **kw)
        if not fired:
            fired.append(1)

            def shred() -> None:
                with vault.open(url, identity=rana) as r:
                    r.delete(a)
            t, errors = _in_thread(shred)
            t.join(timeout=20)
            assert not errors, errors
        return out
    monkeypatch.setattr(ST.Store, "record_exists", record_exists)
    with vault.open(url, identity=sam) as s:
        try:
            s.request_reveal(a, "legal_name", "hospital admission for this participant")
        except vault.NotFound:
            pass
    monkeypatch.setattr(ST.Store, "record_exists", original)
    with vault.open(url, identity=lead) as v:
        assert a not in v.ids()
        left = [r for r in v.reveal_requests() if getattr(r, "record_id", None) == a]
        assert not left, left
        assert v.verify().ok
