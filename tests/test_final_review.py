"""Final review of 8264daf..HEAD: failing tests for the problems found.

1. vault.audit_replay.rights takes a revoked user's role from a ``user_added`` entry the
   lead quarantined (a tampered one): quarantined entries are left out of the replay, but
   not out of whose role may write what.
2. tests/vectors/reader.py stops with a traceback on hostile audit details: a state whose
   ``put`` holds a JSON object (unhashable) and a detail nested past the recursion limit.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import FAST_KDF, PASSPHRASE

sys.path.insert(0, str(Path(__file__).resolve().parent / "vectors"))
import reader

FLOOR = (FAST_KDF.t, FAST_KDF.m_kib, FAST_KDF.p)
FULL = {"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira"}


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def test_a_quarantined_user_added_entry_gives_a_revoked_user_no_role(tmp_path: Path) -> None:
    """A ``tool`` may not shred. Its client deletes a row and signs a ``shred`` for it; the
    lead revokes the tool. A database writer then edits the lead's ``user_added`` entry
    for the tool to say ``staff`` (a role that may shred): the entry no longer verifies and
    the lead quarantines it, as the log's damage. The record check must still refuse the
    tool's shred: what a quarantined entry says is not taken."""
    path = tmp_path / "v.vault"
    lead, tool = Identity.generate(), Identity.generate()
    with vault.create(path, PASSPHRASE, lead=lead) as v:
        kiosk = v.add_user(tool.public, "kiosk", "tool")
        rid = v.add(FULL)
        v.add({"legal_name": "Kofi Mensah", "badge_name": "Kofi"})
    with vault.open(path, identity=tool) as t:
        with pytest.raises(vault.AccessDenied):
            t.delete(rid)
        db = _db(path)
        row = bytes(db.execute("SELECT data FROM dv_records WHERE id = ?", (bytes.fromhex(rid),)).fetchone()[0])
        target = db.execute("SELECT target FROM dv_audit WHERE action = 'add' ORDER BY seq DESC").fetchone()[0]
        db.execute("DELETE FROM dv_records WHERE id = ?", (bytes.fromhex(rid),))
        db.commit()
        db.close()
        token = t._records.state_token(bytes.fromhex(rid), row)
        t._audit("shred", target, {"state": {"drop": [token]}})
    with vault.open(path, identity=lead) as v:
        v.remove_user(kiosk.user_id)
        assert not v.check_records().ok  # the tool's shred is refused: the row is missing
    db = _db(path)
    seq, detail = db.execute("SELECT seq, detail FROM dv_audit WHERE action = 'user_added' AND detail LIKE ?",
                             (f"%{kiosk.user_id}%",)).fetchone()
    assert json.loads(detail)["role"] == "tool"
    db.execute("UPDATE dv_audit SET detail = ? WHERE seq = ?", (detail.replace('"tool"', '"staff"'), seq))
    db.commit()
    db.close()
    with vault.open(path, identity=lead) as v:
        assert not v.audit_verify().ok
        v.quarantine(seq)
        assert v.audit_verify().ok
        check = v.check_records()
        assert not check.ok, "a quarantined (tampered) user_added entry gave a revoked tool a role that " \
                             "excuses its shred: " + str(check)


def _reader(tmp_path: Path) -> tuple[Path, reader.Reader]:
    path = tmp_path / "r.vault"
    with vault.create(path, PASSPHRASE) as v:
        v.add(FULL)
    rd = reader.Reader(str(path), FLOOR)
    rd.unlock_passphrase(PASSPHRASE)
    rd.load_schema()
    return path, rd


def test_the_reader_survives_a_state_with_an_object_in_put(tmp_path: Path) -> None:
    """§13a "Malformed rows": no reader stops at an entry. ``put: [{}]`` on an add fits the
    add's shape, then ``set(put)`` raises TypeError (unhashable) before the kind check."""
    _, rd = _reader(tmp_path)
    live, _, problems, _ = rd.replay_states([(5, b"", "add", {}, {"put": [{}]})])
    assert not live and [s for s, _ in problems] == [5]


def test_the_reader_survives_a_detail_nested_past_the_recursion_limit(tmp_path: Path) -> None:
    """A database writer's detail ``[[[[...`` makes json.loads raise RecursionError, which
    the reader's ``except ValueError`` does not catch (vault.audit_rows.detail_of does)."""
    path, _ = _reader(tmp_path)
    db = _db(path)
    db.execute("UPDATE dv_audit SET detail = ? WHERE seq = (SELECT MAX(seq) FROM dv_audit)",
               ("[" * 200_000 + "]" * 200_000,))
    db.commit()
    db.close()
    rd = reader.Reader(str(path), FLOOR)
    rd.unlock_passphrase(PASSPHRASE)
    rd.load_schema()
    got = rd.verify_audit()
    assert got["problems"], got
