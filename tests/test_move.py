"""vault.move: every record into a new vault under a new lead (threat model 6.6, step 5)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault.identity import Identity

NEW_PASSPHRASE = "a new recovery passphrase for the new vault"
PEOPLE = [
    {"legal_name": "Amira Haddad", "passport_number": "P83526008", "risk_level": "high",
     "risk_notes": "followed in 2025", "email": "amira@example.org", "date_of_birth": dt.date(1984, 2, 29)},
    {"legal_name": "Tomás Quispe", "email": "tq@example.net", "phone": "+51 1 555 0101", "dietary": "vegan"},
    {"badge_name": "R.", "pronouns": "they/them"},
]
DECOY = {"legal_name": "Lena Vogt", "email": "lena.vogt@example.com"}


@pytest.fixture
def old(url: str):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead, population=500) as v:
        v.add_user(staff.public, "sam", "staff")
        ids = v.add_many(PEOPLE)
        decoy = v.plant_canary(DECOY)
    return url, lead, staff, ids, decoy


def _values(v: vault.Vault) -> list[dict]:
    return sorted((dict(r) for r in v.records()), key=repr)


def _tables(url: str) -> set[str]:
    """The vault tables at ``url``; for SQLite, first that no file at all was left."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        left = [p for p in os.listdir(os.path.dirname(path)) if p.startswith(os.path.basename(path))]
        return {f"file {p}" for p in left}
    engine = sa.create_engine(url)
    try:
        return {t for t in sa.inspect(engine).get_table_names() if t.startswith("dv_")}
    finally:
        engine.dispose()


def test_move_carries_records_and_canaries_and_nothing_else(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, old_lead, staff, ids, decoy = old
    new_lead = Identity.generate()
    with vault.open(url, PASSPHRASE) as src:
        before = _values(src)
        moved = vault.move(src, url2, NEW_PASSPHRASE, lead=new_lead, lead_name="nadia")
        moved.vault.close()
        assert moved.records == 4 and moved.canaries == 1
        old_badges = {src.pseudonym(i, "badge") for i in ids}
    with vault.open(url2, identity=new_lead) as dst:
        assert dst.role.manage and dst.schema.source == src.schema.source
        assert dst.status()["index"]["population"] == 500
        assert _values(dst) == before  # every value, dates typed as before
        new_ids = set(dst.ids())
        assert not new_ids & (set(ids) | {decoy})  # fresh record ids: no row links to the old one
        assert not {dst.pseudonym(i, "badge") for i in new_ids} & old_badges
        assert [u.name for u in dst.users()] == ["nadia"]  # users are re-enrolled, not carried
        assert dst.canary_count() == 1  # still a canary here
        moved_in = [e for e in dst.audit_entries() if e["action"] == "import"]
        detail = dict(moved_in[0]["detail"])
        assert len(detail.pop("state")["put"]) == 4  # the rows' states (docs/format.md 13a)
        assert detail == {"count": 4, "op": "move", "from": src.id}
        assert "canar" not in repr(moved_in)  # how many decoys there are is not in the log
        assert dst.audit_verify().ok
    with vault.open(url2, NEW_PASSPHRASE) as dst:
        assert len(dst) == 4
    for wrong in (PASSPHRASE,):
        with pytest.raises(vault.WrongPassphrase):
            vault.open(url2, wrong)
    for ident in (old_lead, staff):  # neither the old lead nor old users open the new vault
        with pytest.raises((vault.AccessDenied, vault.WrongPassphrase)):
            vault.open(url2, identity=ident)
    with vault.open(url, identity=old_lead) as src:  # the old vault is left as it was, plus its log
        assert len(src) == 4
        log = src.audit_entries()
        start = next(n for n, e in enumerate(log) if e["action"] == "export")
        out = [e for e in log[start:] if e["action"] in ("export", "alarm")]
        assert out[0]["detail"] == {"fields": sorted(src.readable_fields), "purpose": None,
                                    "count": 4, "op": "move"}
        assert out[1:] == []  # no alarm entry: staff could read which record it names
        # the recovery passphrase's export touched the decoy: found in its entry, as anyone's
        assert src.alarms()[-1]["detail"] == {"op": "export", "canary": True, "derived": True}


def test_move_by_the_old_lead_identity_works(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, old_lead, _staff, _ids, _decoy = old
    with vault.open(url, identity=old_lead) as src:
        with vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate()).vault as dst:
            assert len(dst) == 4


def test_move_refusals_write_nothing(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, old_lead, staff, _ids, _decoy = old
    with vault.open(url, identity=staff) as src:
        with pytest.raises(vault.AccessDenied, match="every class key"):
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    with vault.open(url, PASSPHRASE) as src:
        with pytest.raises(vault.ValidationError, match="new lead identity"):
            vault.move(src, url2, NEW_PASSPHRASE, lead=old_lead)
        assert _tables(url2) == set()
        assert [e["detail"]["op"] for e in src.audit_entries(action="denied")] == ["move"]
        with pytest.raises(vault.VaultExists):  # never into an existing vault
            vault.move(src, url, NEW_PASSPHRASE, lead=Identity.generate())
    with vault.open(url, PASSPHRASE) as src:
        assert len(src) == 4


def test_move_into_a_non_empty_place_leaves_that_vault_alone(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, *_ = old
    with vault.create(url2, NEW_PASSPHRASE) as there:
        there.add({"badge_name": "already here"})
    with vault.open(url, PASSPHRASE) as src, pytest.raises(vault.VaultExists):
        vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    with vault.open(url2, NEW_PASSPHRASE) as there:
        assert [dict(r) for r in there.records()] == [{"badge_name": "already here"}]


def test_a_move_that_fails_half_way_leaves_no_vault(old, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import importlib
    url, *_ = old
    real = importlib.import_module("vault.canaries").Canaries._store_list

    def fail(self: vault.Vault, tags: list[str]) -> None:
        if self.ses.vid.hex() != src.id:
            raise OSError("disk full")
        real(self, tags)

    monkeypatch.setattr("vault.canaries.Canaries._store_list", fail)
    with vault.open(url, PASSPHRASE) as src:
        with pytest.raises(OSError):  # after the records went in: they must go again
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    assert _tables(url2) == set()


def test_a_tampered_source_record_stops_the_move_before_anything_is_made(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, _lead, _staff, ids, _decoy = old
    db = RawDB(url)
    try:
        data = bytearray(db.row(ids[1]))
        data[-3] ^= 1
        db.set_row(ids[1], bytes(data))
    finally:
        db.close()
    with vault.open(url, PASSPHRASE) as src, pytest.raises(vault.IntegrityError):
        vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    assert _tables(url2) == set()


def test_a_create_that_fails_after_its_tables_leaves_no_vault(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same clean-up serves create(): on PostgreSQL too, not only SQLite's files."""
    def fail(*_a: object, **_k: object) -> None:
        raise OSError("connection lost")

    monkeypatch.setattr(vault.Vault, "add_user", fail)
    with pytest.raises(OSError):
        vault.create(url, PASSPHRASE, lead=Identity.generate())
    assert _tables(url) == set()
    monkeypatch.undo()
    with vault.create(url, PASSPHRASE) as v:  # the place is usable again
        assert len(v) == 0


def test_reasons_given_on_the_handle_create_returns_are_sealed_to_the_lead(url: str) -> None:
    """vault.move writes its import entry on that handle: its reason is for the new lead."""
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.set_reason("first registrations")
        v.add({"badge_name": "A."})
    with vault.open(url, identity=lead) as v:
        assert [e["reason"] for e in v.audit_entries(action="add")] == ["first registrations"]


def _storage_order(url: str) -> list[str]:
    """Record ids as the database stores them (SQLite rowid order, PostgreSQL heap order):
    what anyone holding a copy sees without keys."""
    engine = sa.create_engine(url)
    order = " ORDER BY rowid" if url.startswith("sqlite") else ""
    try:
        with engine.connect() as c:
            return [bytes(r[0]).hex() for r in c.exec_driver_sql(f"SELECT id FROM dv_records{order}")]
    finally:
        engine.dispose()


def test_a_move_does_not_keep_the_row_order(url: str, url2: str) -> None:
    """Rows of one shape are linked by position alone if the new vault stores them in the
    old order (threat model 6.6: no row of the new vault is linked to an old row)."""
    people = [f"Person {i:03d}" for i in range(40)]
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as v:
        for p in people:  # registered one by one: the old storage order is this order
            v.add({"badge_name": p, "legal_name": p + " X"})
        moved = vault.move(v, url2, NEW_PASSPHRASE, lead=Identity.generate())
        old_order = [v._records.get(rid)["badge_name"] for rid in _storage_order(url)]
    with moved.vault as dst:
        new_order = [dst._records.get(rid)["badge_name"] for rid in _storage_order(url2)]
    assert old_order == people and sorted(new_order) == people
    assert new_order != old_order  # a random order: 1 in 40! to fail by chance


def test_create_refuses_a_place_holding_vault_tables_without_a_vault(url: str, url2: str) -> None:
    """A vault that lost dv_meta (or a restore cut short) is not an empty place: create() and
    move() refuse it, and leave every leftover table and row as it was (a failure after
    creating used to drop every dv_* table, the leftover ones too)."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many([{"badge_name": f"Earlier {i}"} for i in range(3)])
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with sa.create_engine(url).begin() as c:
            c.exec_driver_sql("DROP TABLE dv_meta")
        before = open(path, "rb").read()
    else:
        engine = sa.create_engine(url)
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE dv_meta")
        engine.dispose()
    left = _tables(url)
    with pytest.raises(vault.VaultExists):
        vault.create(url, NEW_PASSPHRASE)
    with vault.create(url2, PASSPHRASE) as src:
        src.add({"badge_name": "moved"})
        with pytest.raises(vault.VaultExists):
            vault.move(src, url, NEW_PASSPHRASE, lead=Identity.generate())
    assert _tables(url) == left
    if url.startswith("sqlite"):
        assert open(path, "rb").read() == before
    else:
        engine = sa.create_engine(url)
        with engine.begin() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM dv_records").scalar_one() == 3
        engine.dispose()


_KILLED_MOVE = """
import os, signal, sys
import vault
from vault import _format as F
from vault.identity import Identity
F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)
src, dst, passphrase, new_passphrase = sys.argv[1:]
with vault.open(src, passphrase) as s:
    def die(done, total):  # killed while the records go in: no except clause runs
        os.kill(os.getpid(), signal.SIGKILL)
    vault.move(s, dst, new_passphrase, lead=Identity.generate(), progress=die)
"""


def test_a_move_killed_part_way_leaves_no_vault_that_opens_and_a_rerun_replaces_it(old, url2: str) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL during the import: the half-made vault carries the ``moving`` mark, so it is
    refused with a message naming the unfinished move (not opened as an empty vault), and
    running the move again replaces it."""
    import subprocess
    import sys

    url, *_ = old
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.run([sys.executable, "-c", _KILLED_MOVE, url, url2, PASSPHRASE, NEW_PASSPHRASE],
                           env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    for opener in (lambda: vault.open(url2, NEW_PASSPHRASE), lambda: vault.open(url2, PASSPHRASE)):
        with pytest.raises(vault.UnfinishedMove, match="move that did not finish.*run the move again"):
            opener()
    with pytest.raises(vault.VaultExists):  # a plain create does not replace it
        vault.create(url2, NEW_PASSPHRASE)
    new_lead = Identity.generate()
    with vault.open(url, PASSPHRASE) as src:
        before = _values(src)
        with vault.move(src, url2, NEW_PASSPHRASE, lead=new_lead).vault as dst:
            assert _values(dst) == before
    with vault.open(url2, identity=new_lead) as dst:
        assert len(dst) == 4 and dst.canary_count() == 1 and dst.audit_verify().ok  # the decoy is still a canary
        assert [e["action"] for e in dst.audit_entries()][:2] == ["create", "add_user"]
    with vault.open(url, PASSPHRASE) as src:  # a finished vault is never replaced
        with pytest.raises(vault.VaultExists):
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    with vault.open(url2, NEW_PASSPHRASE) as dst:
        assert len(dst) == 4


def test_a_move_that_crashes_after_creating_leaves_a_vault_that_is_refused(old, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A crash between the new vault's first commit and the import (simulated: the clean-up
    that a killed process never runs is skipped) leaves a vault open() refuses."""
    import importlib

    url, *_ = old
    real = importlib.import_module("vault.records").Records.add_many
    monkeypatch.setattr(importlib.import_module("vault.vault"), "discard_new", lambda v: v.close())  # as if the process died

    def fail(*_a: object, **_k: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr("vault.records.Records.add_many", fail)
    with vault.open(url, PASSPHRASE) as src, pytest.raises(OSError):
        vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    assert _tables(url2)  # left behind, as after a SIGKILL
    with pytest.raises(vault.UnfinishedMove):
        vault.open(url2, NEW_PASSPHRASE)
    monkeypatch.setattr("vault.records.Records.add_many", real)  # not undo(): that would raise the KDF floor again
    with vault.open(url, PASSPHRASE) as src:
        moved = vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
        moved.vault.close()
    with vault.open(url2, NEW_PASSPHRASE) as dst:
        assert len(dst) == 4


def test_a_moving_mark_on_a_vault_with_records_is_tampering(url: str) -> None:
    """The mark is not authenticated. Set on a live vault by a database writer, open() said
    "run the move again; it replaces this vault", and a re-run of the move would have
    dropped everything added since. A move's records and the mark's removal commit
    together, so a marked vault with records is refused as edited, and never replaced."""
    from vault.vault import discard_unfinished_move
    with vault.create(url, PASSPHRASE) as v:
        v.add({"badge_name": "Added after the move"})
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dv_meta WHERE name = 'moving'"))
        c.execute(sa.text("INSERT INTO dv_meta (name, value) VALUES ('moving', :v)"), {"v": b"ab" * 16})
    raw.close()
    with pytest.raises(vault.IntegrityError, match="marked as an unfinished move"):
        vault.open(url, PASSPHRASE)
    with pytest.raises(vault.IntegrityError, match="not replacing it"):
        discard_unfinished_move(url)
    raw = RawDB(url)
    with raw.engine.begin() as c:
        assert c.execute(sa.text("SELECT count(*) FROM dv_records")).scalar_one() == 1
    raw.close()


def test_a_move_under_load_takes_every_record_added_before_it_or_refuses(url: str, url2: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, finding 5: 3,000 records moved while a staff client added in a loop; the
    move said 3,026, the source then held 3,049, and nothing said that 23 never reached
    the new vault. Now the writers are kept out from the copy until the new vault is
    filled (they wait, or fail busy), the export entry counts what was copied, and the
    move ends with every record the source had, or refuses."""
    import threading
    import time

    from vault.store import StoreError
    lead, staff, new_lead = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add_many([{"badge_name": f"seed {i}", "email": f"s{i}@example.org"} for i in range(2500)])
    tried: list[tuple[str, float, float, bool]] = []  # (badge name, called, returned, added)
    stop, failures = threading.Event(), []

    def adder() -> None:
        try:
            with vault.open(url, identity=staff) as s:
                i = 0
                while not stop.is_set():
                    name, i = f"walk-in {i}", i + 1
                    t0 = time.monotonic()
                    try:
                        s.add({"badge_name": name})
                    except StoreError as e:  # waited its bound while the move held the writers out
                        assert str(e).startswith("the vault is busy"), str(e)
                        tried.append((name, t0, time.monotonic(), False))
                        continue
                    tried.append((name, t0, time.monotonic(), True))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            failures.append(e)

    import sys
    M = sys.modules["vault.moving"]  # the module (vault.move is the function)
    copying: list[float] = []  # when the copy began
    filled: list[float] = []  # ... and when the move began filling the new vault (the copy was done)
    copy = M._copy
    monkeypatch.setattr(M, "_copy", lambda src: (copying.append(time.monotonic()), copy(src))[1])
    thread = threading.Thread(target=adder, daemon=True)
    thread.start()
    while len(tried) < 3 and thread.is_alive():
        time.sleep(0.01)
    try:
        with vault.open(url, identity=lead) as src:
            try:
                moved = vault.move(src, url2, NEW_PASSPHRASE, lead=new_lead,
                                   progress=lambda done, total: filled.append(time.monotonic()))
            except StoreError as e:  # a writer got in: refused, and nothing was made
                assert "nothing was moved" in str(e)
                assert _tables(url2) == set()
                return
            export = src.audit_entries(action="export")[-1]["detail"]
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures
    # the adder had an add under way while the move copied (else this proves nothing)
    assert any(t0 < filled[0] and t1 > copying[0] for _, t0, t1, _ in tried)
    with moved.vault as dst:
        names = {r["badge_name"] for r in dst.records(["badge_name"])}
    walk_ins = {n for n in names if n.startswith("walk-in")}
    added = [(n, t1) for n, _, t1, ok in tried if ok]
    assert moved.records == export["count"] == 2500 + len(walk_ins)
    assert walk_ins <= {n for n, _ in added}
    # every add that returned before the copy was done committed before it, so it was copied
    assert [n for n, returned in added if returned < filled[0] and n not in walk_ins] == []
    # and none returned while the new vault was filled: the writers were held out till the end
    assert [n for n, returned in added if filled[0] < returned < filled[-1]] == []


def test_a_row_written_behind_the_move_refuses_it(old, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A database login that writes rows without the client honours no lock: the move
    counts the rows again while it still holds the writers out and refuses, removing the
    new vault, when they changed."""
    import sys

    from vault.store import StoreError
    url, _lead, _staff, ids, _decoy = old
    M = sys.modules["vault.moving"]
    copy = M._copy

    def copy_then_write_behind(src: vault.Vault):  # type: ignore[no-untyped-def]
        taken = copy(src)
        raw = RawDB(url)  # its own connection, as a staff login's raw SQL
        with raw.engine.begin() as c:
            c.execute(sa.text("INSERT INTO dv_records (id, data) VALUES (:i, :d)"),
                      {"i": os.urandom(16), "d": raw.row(ids[0])})
        raw.close()
        return taken
    monkeypatch.setattr(M, "_copy", copy_then_write_behind)
    with vault.open(url, PASSPHRASE) as src:
        with pytest.raises(StoreError, match="the source vault's records changed while the move copied 4 of them"):
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    assert _tables(url2) == set()
