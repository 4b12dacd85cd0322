"""Review 4 of record states of the second kind (docs/format.md 13a, "Record states", "The
upgrade to the second kind"): the text against vault.record_states / vault.audit_replay,
the spec-only reader (tests/vectors/reader.py) against the library on the same vault, and
the upgrade's edge cases. Each test states what honest clients did and what must hold."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from vault.identity import Identity

import vault
from conftest import FAST_KDF, PASSPHRASE
from rawdb import RawDB, as_release_v8
from vault import _format as F
from vault import journal as J

sys.path.insert(0, str(Path(__file__).parent / "vectors"))
import reader

FLOOR = (FAST_KDF.t, FAST_KDF.m_kib, FAST_KDF.p)
FULL = {"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira", "risk_level": "low"}


def _rows(n: int, tag: str = "b") -> list[dict[str, str]]:
    return [{**FULL, "badge_name": f"{tag}{i}", "email": f"{tag}{i}@example.org"} for i in range(n)]


def _failed(steps: list[tuple[str, bool, str]]) -> list[str]:
    return [n for n, ok, _ in steps if not ok]


def _state_steps(path: Path) -> dict[str, bool]:
    """The reader's record-state verdicts on the vault (opened with the recovery passphrase)."""
    steps = reader.check(str(path), passphrase=PASSPHRASE, floor=FLOOR)
    return {n: ok for n, ok, _ in steps if n.startswith("record states")}


# -- 1. a re-encryption is taken record by record (13a) -------------------------------------------
def test_a_reencryption_over_a_shredded_and_restored_row_keeps_the_rest_of_the_batch_logged(url: str) -> None:
    """13a: "a reencrypt is taken record by record: ... one whose dropped state was dropped
    before ... has its put state counted as dropped (a rolled-back row re-encrypted stays
    rolled back)". A shredded record put back from a backup is such a row (the check calls
    it rolled back). The lead's honest ``rotate --reencrypt`` then makes the whole batch's
    entry refused: every other row turns "never logged" and its old state "missing"."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(4))
        raw = RawDB(url)
        old = raw.row(ids[1])
        v.delete(ids[1])
        raw.insert_row(ids[1], old)  # a database writer restores the shredded row
        raw.close()
        assert v.check_records().rolled_back == (ids[1],)
        v.rotate(reencrypt=True)
        check = v.check_records()
        assert check.rolled_back == (ids[1],)
        assert not check.refused, check
        assert not check.unlogged and not check.missing, check


def test_a_reencryption_over_a_row_no_entry_wrote_keeps_the_rest_of_the_batch_logged(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """13a: a re-encryption's record "the log never named stays unnamed". A row that no
    entry wrote (here: an add whose entry carried no state, as a modified client's) is
    re-encrypted with the rest by the lead's rotation; the whole batch is refused instead
    ("names a record no entry added"), and the four honest rows look unlogged."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(4))
        with monkeypatch.context() as m:
            m.setattr(J.Journal, "states", staticmethod(lambda drop=(), put=(): {}))
            planted = v.add({**FULL, "badge_name": "planted"})
        assert v.check_records().unlogged == (planted,)
        v.rotate(reencrypt=True)
        check = v.check_records()
        assert check.unlogged == (planted,), check
        assert not check.refused and not check.missing, check


# -- 2. the spec-only reader against the library --------------------------------------------------
def _v8(path: Path, monkeypatch: pytest.MonkeyPatch, work: Any, lead: Identity | None = None) -> None:
    with monkeypatch.context() as m:
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)
        with vault.create(f"sqlite:///{path}", PASSPHRASE, lead=lead) as v:
            work(v)
            as_release_v8(v)


def test_the_reader_finds_the_upgrade_of_a_v8_vault_whose_records_were_all_shredded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A v8 vault whose two records were added and shredded (entries of the first kind) is
    upgraded on the lead's open: no row is present, so the upgrade's ``restate`` carries no
    ``state`` at all (13a shows ``"state": {...}`` always). The library still starts the
    second kind there; the reader finds the upgrade only among entries with states, so it
    takes the vault as of the second kind throughout and reports the earlier add and shred
    entries as "not of the second kind"."""
    path = tmp_path / "v.vault"

    def work(v: vault.Vault) -> None:
        for rid in v.add_many(_rows(2)):
            v.delete(rid)
    _v8(path, monkeypatch, work)
    with vault.open(f"sqlite:///{path}", PASSPHRASE) as v:
        (up,) = [e for e in v.audit_entries(action="restate") if e["detail"].get("upgrade")]
        assert v.check_records().ok
    assert all(_state_steps(path).values()), (up["detail"], _state_steps(path))


def _forged_read(tmp_path: Path) -> tuple[Path, str, Identity]:
    """A vault of one record whose staff member signed a ``read`` entry dropping the
    record's state (a forgery: reads write no rows); its path, URL and the lead."""
    path = tmp_path / "v.vault"
    url = f"sqlite:///{path}"
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add(FULL)
    with vault.open(url, identity=staff) as s:
        token = s._records.state_token(bytes.fromhex(rid), RawDB(url).row(rid))
        s._audit("read", "", {"state": {"drop": [token]}})
    return path, url, lead


def test_the_reader_leaves_a_quarantined_entry_out_of_the_replay_as_the_library_does(tmp_path: Path) -> None:
    """13a, Quarantine: "the record check leaves its state out of the replay". A staff
    member signs a ``read`` entry carrying ``drop`` of a colleague's row state; the library
    refuses it, the lead quarantines it, and the check is ok. The reader ignores the
    quarantine (and takes states from an entry whose action writes no rows), so it drops the
    row's state and calls the live row unlogged."""
    path, url, lead = _forged_read(tmp_path)
    with vault.open(url, identity=lead) as v:
        (seq,) = v.check_records().refused
        v.quarantine(seq)
        assert v.check_records().ok
    assert all(_state_steps(path).values()), _state_steps(path)


def test_the_reader_refuses_states_on_an_entry_that_writes_no_rows(tmp_path: Path) -> None:
    """13a: "Only these entries carry states ... Any other state-carrying entry ... is
    refused: not replayed, and reported". The same forged ``read`` entry, not quarantined:
    the library reports it refused; the reader replays it without a word about the entry
    (its only complaint is the row, which it now calls unlogged)."""
    path, url, lead = _forged_read(tmp_path)
    with vault.open(url, identity=lead) as v:
        check = v.check_records()
        assert len(check.refused) == 1 and not check.unlogged and not check.missing
    verdicts = _state_steps(path)
    assert not verdicts["record states: of the kind the log takes there; updates' parts give their tokens"], verdicts
    assert verdicts["record states: every row's token live"], verdicts


def test_the_reader_reports_an_entry_whose_detail_is_not_json_and_goes_on(tmp_path: Path) -> None:
    """13a, Malformed rows: "No reader stops at a row: every reader of the log ... shows or
    skips a row that fails its own check where it stands and goes on". An entry edited in
    place so that its detail is no JSON (the library reports the hash mismatch there) makes
    the reader raise json.JSONDecodeError out of check() instead of reporting it."""
    path = tmp_path / "v.vault"
    url = f"sqlite:///{path}"
    with vault.create(url, PASSPHRASE) as v:
        v.add(FULL)
    db = sqlite3.connect(path)
    db.execute("UPDATE dv_audit SET detail = '{' WHERE seq = (SELECT max(seq) FROM dv_audit)")
    db.commit()
    db.close()
    with vault.open(url, PASSPHRASE) as v:
        assert not v.audit_verify().ok
    steps = reader.check(str(path), passphrase=PASSPHRASE, floor=FLOOR)
    assert "audit chain + signatures" in _failed(steps)


# -- 3. spec vs code: the kind a decider's restate may drop ---------------------------------------
def test_before_the_upgrade_a_deciders_restate_dropping_a_second_kind_token_is_refused(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """13a: "Entries before the upgrade entry carry first-kind tokens only, entries after it
    second-kind ones only (a decider's restate may also drop first-kind ones) ... Any entry
    whose tokens are not of the kind its place takes is refused." The exception is for
    first-kind drops after the upgrade; audit_replay._kind_ok (and the reader) also let a
    decider's restate drop a 48-character second-kind token in a log of the first kind."""
    with monkeypatch.context() as m:
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)  # a v8 vault: first kind throughout
        with vault.create(url, PASSPHRASE) as v:
            v.add_many(_rows(2))
            v._audit("restate", "", {"state": {"drop": ["A" * 48]}})
            assert len(v.check_records().refused) == 1
