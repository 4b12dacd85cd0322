"""Backup and restore (vault.backup, vault.restore) and the shred ledger (vault.ledger)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

import vault
from vault import backup as BK
from vault import ledger as LG

from conftest import PASSPHRASE, _pg_schema, raw_engine

ROWS = [
    {"legal_name": "Amira Haddad", "email": "amira@example.org", "hotel": "Tunisia"},
    {"legal_name": "Bilal Khan", "email": "bilal@example.org", "hotel": "Pakistan"},
    {"legal_name": "Chen Wei", "email": "chen@example.org", "hotel": "China"},
    {"legal_name": "Dara Nouri", "email": "dara@example.org", "hotel": "Iran"},
]
#: what a restore writes into the log it restores: the staged vault's open, its verification, the restore
RESTORE_ACTIONS = ["open", "audit_verify", "restore", "audit_checkpoint"]


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every vault table's rows (sorted, values as Python bytes/str/int): the content."""
    eng = raw_engine(url)
    try:
        with eng.connect() as conn:
            names = sorted(t for t in sa.inspect(conn).get_table_names() if t.startswith("dv_"))
            out = {}
            for name in names:
                rows = conn.exec_driver_sql(f"SELECT * FROM {name}").fetchall()
                out[name] = sorted(tuple(bytes(x) if isinstance(x, memoryview) else x for x in r) for r in rows)
            return out
    finally:
        eng.dispose()


def _audit(url: str) -> list[tuple[Any, ...]]:
    eng = raw_engine(url)
    try:
        with eng.connect() as conn:
            rows = conn.exec_driver_sql("SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "
                                        "FROM dv_audit ORDER BY seq").fetchall()
            return [tuple(bytes(x) if isinstance(x, memoryview) else x for x in r) for r in rows]
    finally:
        eng.dispose()


def _same_content(before: dict[str, list], after: dict[str, list], before_log: list, after_log: list) -> None:
    """Every table equal, except the audit log, which is the backup's followed by the
    restore's own entries (the staged open, its verification, the restore, a checkpoint)."""
    for name in before:
        if name == "dv_audit":
            continue
        assert after.get(name) == before[name], name
    assert after_log[:len(before_log)] == before_log
    assert [e[4] for e in after_log[len(before_log):]] == RESTORE_ACTIONS


def _filled(url: str) -> tuple[list[str], str]:
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(ROWS)
        v.pseudonym(ids[0], "badge")
        v.get(ids[1])
        return ids, v.id


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not os.environ.get("DVAULT_TEST_PG_URL"):
        pytest.skip("DVAULT_TEST_PG_URL not set")
    with _pg_schema() as fresh:
        yield fresh


def test_round_trip_identical(url: str, tmp_path: Path) -> None:
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        info = v.backup(tmp_path / "b.dvbak")
    assert info["records"] == len(ROWS)
    before, before_log = _tables(url), _audit(url)
    with vault.open(url, PASSPHRASE) as v:  # the live vault changes after the backup
        v.add({"legal_name": "Later Person", "email": "later@example.org"})
        v.update(ids[2], {"hotel": "Chile"})
    out = vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    assert out.records == len(ROWS) and out.replayed == 0
    _same_content(before, _tables(url), before_log, _audit(url))
    with vault.open(url, PASSPHRASE) as v:
        assert sorted(v.ids()) == sorted(ids)
        assert v.get(ids[2])["hotel"] == "China"
        assert v.audit_verify().ok and v.check_records().ok


def test_restore_into_empty_place(url: str, url2: str, tmp_path: Path) -> None:
    ids, vid = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    before, before_log = _tables(url), _audit(url)
    vault.restore(url2, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    _same_content(before, _tables(url2), before_log, _audit(url2))
    with vault.open(url2, PASSPHRASE) as v:
        assert v.id == vid and sorted(v.ids()) == sorted(ids)
        assert v.find(email="amira@example.org")[0].id == ids[0]


def test_sqlite_postgres_sqlite(tmp_path: Path, pg_url: str) -> None:
    """A laptop moving to a shared server and back: identical content all the way."""
    first = f"sqlite:///{tmp_path / 'a.vault'}"
    ids, _ = _filled(first)
    with vault.open(first, PASSPHRASE) as v:
        v.backup(tmp_path / "1.dvbak")
    before, before_log = _tables(first), _audit(first)
    vault.restore(pg_url, tmp_path / "1.dvbak", passphrase=PASSPHRASE)
    on_pg, pg_log = _tables(pg_url), _audit(pg_url)
    _same_content(before, on_pg, before_log, pg_log)
    with vault.open(pg_url, PASSPHRASE) as v:
        v.backup(tmp_path / "2.dvbak")
    pg_backup_log = _audit(pg_url)
    back = f"sqlite:///{tmp_path / 'b.vault'}"
    vault.restore(back, tmp_path / "2.dvbak", passphrase=PASSPHRASE)
    _same_content(before, _tables(back), pg_backup_log, _audit(back))
    assert _audit(back)[:len(before_log)] == before_log
    with vault.open(back, PASSPHRASE) as v:
        assert sorted(v.ids()) == sorted(ids)
        assert v.get(ids[0])["legal_name"] == "Amira Haddad"
        assert v.check_records().ok


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_flipped_byte_or_truncation_refused(url: str, tmp_path: Path) -> None:
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.delete(ids[3])  # the live vault differs from the backup
    data = (tmp_path / "b.dvbak").read_bytes()
    live = _tables(url)
    bad = [_flip(data, i) for i in (0, 8, 9, 30, len(data) // 2, len(data) - 100, len(data) - 1)]
    bad += [data[:n] for n in (0, 10, len(data) // 3, len(data) - 1)] + [data + b"\x00"]
    for i, blob in enumerate(bad):
        p = tmp_path / f"bad{i}.dvbak"
        p.write_bytes(blob)
        with pytest.raises(vault.BadBackup):
            vault.restore(url, p, passphrase=PASSPHRASE)
        assert _tables(url) == live, i
    assert not list(tmp_path.glob(".*restoring*"))


def test_every_single_byte_flip_refused_by_parser(url: str, tmp_path: Path) -> None:
    _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    data = (tmp_path / "b.dvbak").read_bytes()
    for at in range(0, len(data), max(1, len(data) // 400)):
        with pytest.raises(vault.BadBackup):
            BK.decode(_flip(data, at))


def test_forged_backup_with_recomputed_checksum_refused(url: str, tmp_path: Path) -> None:
    """A file rewritten by someone without a key (checksum recomputed) fails the signature
    or the staged vault's own checks; the live vault is unchanged."""
    _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    b = BK.read_file(str(tmp_path / "b.dvbak"))
    recs = b.tables["dv_records"]
    rows = [(rid, data[:-1] + bytes([data[-1] ^ 1])) if i == 0 else (rid, data)
            for i, (rid, data) in enumerate(recs.rows)]
    tables = [*(t for t in b.tables.values() if t.name != "dv_records"), BK.Table("dv_records", recs.columns, rows)]
    from vault import _crypto as C
    forger = C.Signer(bytes(32))
    actor = bytes(32) + C.ed25519_public(bytes(32))
    (tmp_path / "f.dvbak").write_bytes(BK.encode(b.vault_id, b.made_at, b.audit_seq, b.audit_head, tables, actor,
                                                 forger))
    live = _tables(url)
    with pytest.raises(vault.BadBackup, match="signed by someone"):
        vault.restore(url, tmp_path / "f.dvbak", passphrase=PASSPHRASE)
    assert _tables(url) == live


def test_shred_after_backup_stays_shredded(url: str, tmp_path: Path) -> None:
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.delete(ids[1])
    out = vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    assert out.replayed == 1
    with vault.open(url, PASSPHRASE) as v:
        assert ids[1] not in v.ids() and len(v.ids()) == len(ROWS) - 1
        with pytest.raises(vault.NotFound):
            v.get(ids[1])
        assert v.find(email="bilal@example.org") == []
        assert v.check_records().ok
    eng = raw_engine(url)
    with eng.connect() as conn:  # its row is gone; the ledger holds its random id, signed
        rid = bytes.fromhex(ids[1])
        assert conn.execute(sa.text("SELECT count(*) FROM dv_records WHERE id = :r"), {"r": rid}).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM dv_shreds WHERE rid = :r"), {"r": rid}).scalar_one() == 1
    eng.dispose()


def test_ledger_file_replays_when_live_vault_lost(url: str, url2: str, tmp_path: Path) -> None:
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "old.dvbak")
        v.delete(ids[0])
        v.backup(tmp_path / "new.dvbak", ledger=tmp_path / "new.dvledger")
    vault.restore(url2, tmp_path / "old.dvbak", passphrase=PASSPHRASE, ledger=tmp_path / "new.dvledger")
    with vault.open(url2, PASSPHRASE) as v:
        assert ids[0] not in v.ids() and len(v.ids()) == len(ROWS) - 1


def test_planted_ledger_entry_refused(url: str, tmp_path: Path) -> None:
    """A database writer's entry naming a live record (signed by no one the vault knows,
    or not signed) makes the restore refuse, shredding nothing."""
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.delete(ids[3])  # makes the ledger table
        vid = bytes.fromhex(v.id)
    from vault import _crypto as C
    seed = C.random_bytes(32)
    actor = bytes(32) + C.ed25519_public(seed)
    planted = LG.make(vid, bytes.fromhex(ids[0]), actor, C.Signer(seed)).encode()
    eng = raw_engine(url)
    with eng.begin() as conn:
        conn.execute(LG.shreds.insert().values(rid=bytes.fromhex(ids[0]), entry=planted))
    eng.dispose()
    live, log = _tables(url), _audit(url)
    with pytest.raises(vault.BadBackup, match="do not verify"):
        vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    # unchanged but for the audited open of the live vault, whose users were asked about the signer
    after = _tables(url)
    assert {k: x for k, x in after.items() if k != "dv_audit"} == {k: x for k, x in live.items() if k != "dv_audit"}
    assert _audit(url)[:len(log)] == log and [e[4] for e in _audit(url)[len(log):]] == ["open"]
    with vault.open(url, PASSPHRASE) as v:
        assert ids[0] in v.ids()


def test_staff_shred_is_in_ledger_and_replayed(url: str, tmp_path: Path) -> None:
    """Staff who may shred sign their ledger entries; a restore accepts them."""
    from vault.identity import Identity
    lead = Identity.generate()
    staff = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        ids = v.add_many(ROWS)
        v.add_user(staff.public, "staffer", "staff")  # writes every class: may shred
        v.backup(tmp_path / "b.dvbak")
    with vault.open(url, identity=staff) as s:
        s.delete(ids[2])
    out = vault.restore(url, tmp_path / "b.dvbak", identity=lead)
    assert out.replayed == 1
    with vault.open(url, identity=lead) as v:
        assert ids[2] not in v.ids()


def test_backup_and_restore_are_the_leads(url: str, tmp_path: Path) -> None:
    from vault.identity import Identity
    lead, reader = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_many(ROWS)
        v.add_user(reader.public, "reader", "tool")
        v.backup(tmp_path / "b.dvbak")
    with vault.open(url, identity=reader) as r:
        with pytest.raises(vault.AccessDenied):
            r.backup(tmp_path / "c.dvbak")
    live = _tables(url)
    with pytest.raises(vault.AccessDenied):
        vault.restore(url, tmp_path / "b.dvbak", identity=reader)
    assert _tables(url) == live


def test_backup_of_another_vault_refused(url: str, tmp_path: Path) -> None:
    _filled(url)
    other = f"sqlite:///{tmp_path / 'other.vault'}"
    _filled(other)
    with vault.open(other, PASSPHRASE) as v:
        v.backup(tmp_path / "o.dvbak")
    live = _tables(url)
    with pytest.raises(vault.BadBackup, match="another vault"):
        vault.restore(url, tmp_path / "o.dvbak", passphrase=PASSPHRASE)
    assert _tables(url) == live


def test_backup_never_overwrites_and_is_private(url: str, tmp_path: Path) -> None:
    _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        assert (tmp_path / "b.dvbak").stat().st_mode & 0o777 == 0o600
        with pytest.raises(vault.VaultError):
            v.backup(tmp_path / "b.dvbak")
    data = (tmp_path / "b.dvbak").read_bytes()
    for value in ("Amira", "amira@example.org", "Tunisia"):
        assert value.encode() not in data


def test_checkpoint_newer_than_backup_is_said(url: str, tmp_path: Path) -> None:
    _filled(url)
    cps = tmp_path / "checkpoints"
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.add({"legal_name": "Later Person"})
        cps.write_text(f"{v.id} {v.audit_checkpoint()}\n")
    out = vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE, checkpoints=cps)
    assert any("older than your newest checkpoint" in w for w in out.warnings)
    with vault.open(url, PASSPHRASE) as v:  # the file now names the restored head, which the log holds
        assert cps.read_text() == f"{v.id} {out.checkpoint}\n"
        assert v.audit_verify(against=out.checkpoint).ok
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "c.dvbak")
        cps.write_text(f"{v.id} {v.audit_checkpoint()}\n")
        v.add({"legal_name": "Later Person"})
        v.backup(tmp_path / "d.dvbak")
    assert vault.restore(url, tmp_path / "d.dvbak", passphrase=PASSPHRASE, checkpoints=cps).warnings == []


def test_deep_restore_finds_a_row_rolled_back_before_the_backup(url: str, tmp_path: Path) -> None:
    """A row put back to an older version in the database before the backup was taken is
    genuine ciphertext, signed into the backup by the lead; only the deep check (every row
    opened and compared with the log) names it, and then nothing is restored."""
    ids, _ = _filled(url)
    eng = raw_engine(url)
    with eng.connect() as conn:
        old = conn.execute(sa.text("SELECT data FROM dv_records WHERE id = :i"),
                           {"i": bytes.fromhex(ids[0])}).scalar_one()
    with vault.open(url, PASSPHRASE) as v:
        v.update(ids[0], {"email": "new@example.org"})
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE dv_records SET data = :d WHERE id = :i"), {"d": old, "i": bytes.fromhex(ids[0])})
    eng.dispose()
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    live = _tables(url)
    with pytest.raises(vault.BadBackup, match="do not match its audit log"):
        vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE, deep=True)
    assert _tables(url) == live
    out = vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)  # the default: signature and log
    assert out.records == len(ROWS)


def test_restore_refused_while_another_client_has_the_sqlite_vault_open(tmp_path: Path) -> None:
    path = tmp_path / "a.vault"
    ids, _ = _filled(str(path))
    with vault.open(path, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.get(ids[0])  # holds a connection
        before = _tables(f"sqlite:///{path}")
        with pytest.raises(vault.StoreError, match="another client"):
            vault.restore(path, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    assert _tables(f"sqlite:///{path}") == before
    vault.restore(path, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    assert not (tmp_path / "a.vault-wal").exists() or (tmp_path / "a.vault-wal").stat().st_size == 0


def test_restore_never_replaces_a_database_that_is_not_a_vault(tmp_path: Path) -> None:
    import sqlite3
    path = tmp_path / "a.vault"
    _filled(str(path))
    with vault.open(path, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    other = tmp_path / "notes.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(vault.StoreError, match="not a vault"):
        vault.restore(other, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    assert other.read_bytes() == before


def test_a_copied_entry_under_a_live_record_key_is_caught(url: str, tmp_path: Path) -> None:
    """A database writer copies a genuine entry (record A's) under a live record B's key: B's
    later shred must not pass unrecorded (a restore from a ledger file would bring B back).
    The shred is refused and nothing changes, verify names the row, and a restore reading
    that ledger refuses too."""
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
        v.delete(ids[3])  # a genuine entry, for record 3
    eng = raw_engine(url)
    with eng.begin() as conn:
        genuine = conn.execute(sa.select(LG.shreds.c.entry)).scalar_one()
        conn.execute(LG.shreds.insert().values(rid=bytes.fromhex(ids[0]), entry=bytes(genuine)))
    eng.dispose()
    with vault.open(url, PASSPHRASE) as v:
        report = v.verify()
        assert not report.ok
        assert [(p.check, p.kind) for p in report.problems] == [
            ("ledger", "row key names another record than its entry (planted)")]
        with pytest.raises(vault.IntegrityError, match="shred refused"):
            v.delete(ids[0])
        assert ids[0] in v.ids() and v.get(ids[0])
    with pytest.raises(vault.BadBackup, match="names another record"):
        vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
    with vault.open(url, PASSPHRASE) as v:
        assert ids[0] in v.ids()


def test_a_stranger_signed_entry_under_a_live_record_key_is_refused(url: str, tmp_path: Path) -> None:
    """A database writer (on PostgreSQL the staff login may INSERT into dv_shreds) plants,
    under a live record's key, that record's entry signed by a key of its own making. The
    lead's later shred must not keep it as the shred's record: every restore would refuse
    that row, and once the lead removed it a restore would bring the person back. The shred
    is refused, nothing changes, and verify names the row."""
    from vault import _crypto as C
    from vault.identity import Identity
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        ids = v.add_many(ROWS)
        v.backup(tmp_path / "b.dvbak")
        v.delete(ids[2])  # the ledger table exists, with a genuine entry
        vid = bytes.fromhex(v.id)
    seed = C.random_bytes(32)
    planted = LG.make(vid, bytes.fromhex(ids[0]), bytes(32) + C.ed25519_public(seed), C.Signer(seed)).encode()
    eng = raw_engine(url)
    with eng.begin() as conn:
        conn.execute(LG.shreds.insert().values(rid=bytes.fromhex(ids[0]), entry=planted))
    eng.dispose()
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match=r"signed by no one this vault knows\): shred refused"):
            v.delete(ids[0])
        assert ids[0] in v.ids() and v.get(ids[0])["legal_name"] == "Amira Haddad"
        assert [(p.check, p.kind) for p in v.verify().problems] == [
            ("ledger", "entry signed by no one this vault knows")]
        v.delete(ids[1])  # a shred of a record without a planted row is recorded as ever
    eng = raw_engine(url)  # the lead removes the row verify named, and shreds again
    with eng.begin() as conn:
        conn.execute(LG.shreds.delete().where(LG.shreds.c.rid == bytes.fromhex(ids[0])))
    eng.dispose()
    with vault.open(url, identity=lead) as v:
        v.delete(ids[0])
        assert v.verify().ok
    vault.restore(url, tmp_path / "b.dvbak", identity=lead)
    with vault.open(url, identity=lead) as v:
        assert not {ids[0], ids[1], ids[2]} & set(v.ids())


def test_shreds_of_a_user_enrolled_after_the_backup_stay_restorable(url: str, tmp_path: Path) -> None:
    """A staff member enrolled after the backup shreds a record. The restore accepts their
    entry (the live vault knows them) and re-signs it as the restorer's: the restored vault
    does not know them, and would otherwise refuse their entry at its next restore (and
    name it in verify). A later restore of the same backup still keeps the shred."""
    from vault.identity import Identity
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        ids = v.add_many(ROWS)
        v.backup(tmp_path / "b.dvbak")
        v.add_user(staff.public, "staffer", "staff")
    with vault.open(url, identity=staff) as s:
        s.delete(ids[1])
    out = vault.restore(url, tmp_path / "b.dvbak", identity=lead)
    assert out.replayed == 1
    with vault.open(url, identity=lead) as v:
        assert ids[1] not in v.ids()
        assert v.verify().ok
        assert v.audit_entries(action="restore")[-1]["detail"]["adopted"] == 1
        v.delete(ids[0])  # a shred in the restored vault is recorded beside the adopted entry
    out = vault.restore(url, tmp_path / "b.dvbak", identity=lead)
    assert out.replayed == 2
    with vault.open(url, identity=lead) as v:
        assert not {ids[0], ids[1]} & set(v.ids())
        assert v.verify().ok


def test_verify_checks_the_ledger(url: str) -> None:
    """verify reads every ledger row: clean after real shreds; a garbage row, an entry
    signed by a stranger and an entry naming a live record are each named."""
    ids, _ = _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.delete(ids[3])
        assert v.verify().ok
        vid = bytes.fromhex(v.id)
    from vault import _crypto as C
    seed = C.random_bytes(32)
    stranger = LG.make(vid, bytes.fromhex(ids[2]), bytes(32) + C.ed25519_public(seed), C.Signer(seed)).encode()
    eng = raw_engine(url)
    with eng.begin() as conn:
        conn.execute(LG.shreds.insert().values(rid=bytes(16), entry=b"junk"))
        conn.execute(LG.shreds.insert().values(rid=bytes.fromhex(ids[2]), entry=stranger))
    eng.dispose()
    with vault.open(url, PASSPHRASE) as v:
        found = sorted(p.kind for p in v.verify().problems if p.check == "ledger")
    assert found == ["entry signed by no one this vault knows", "malformed entry"]


def test_a_restore_names_users_revoked_since_the_backup(url: str, tmp_path: Path) -> None:
    """A restore does not replay revocations: restoring a backup taken before a user was
    removed gives their slot back, and the restore says so (by name), so that the lead
    removes them again. A restore with no such user warns of nothing."""
    from vault.identity import Identity
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_many(ROWS)
        v.add_user(staff.public, "staffer", "staff")
        v.backup(tmp_path / "before.dvbak")
        v.remove_user(next(u.user_id for u in v.users() if u.name == "staffer"))
        v.backup(tmp_path / "after.dvbak")
    out = vault.restore(url, tmp_path / "after.dvbak", identity=lead)
    assert not [w for w in out.warnings if "revoked" in w]
    out = vault.restore(url, tmp_path / "before.dvbak", identity=lead)
    assert [w for w in out.warnings if "revoked" in w and "staffer" in w]



def test_backup_reports_progress_in_rows_up_to_its_total(url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What dvault backup's progress bar is fed: (done, total) as rows are read and then
    encoded, each row counted twice, rising to the total (the rows the file holds)."""
    monkeypatch.setattr(BK, "_PROGRESS_ROWS", 7)  # several reports per table
    seen: list[tuple[int, int]] = []
    with vault.create(url, PASSPHRASE) as v:
        v.add_many([{"badge_name": f"P{i}"} for i in range(30)])
        out = v.backup(tmp_path / "a.dvbak", progress=lambda d, t: seen.append((d, t)))
    rows = sum(len(t.rows) for t in BK.read_file(str(tmp_path / "a.dvbak")).tables.values())
    assert out["records"] == 30 and len(seen) > 8
    assert {t for _, t in seen} == {2 * rows}
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == 2 * rows


def test_a_restore_clears_only_its_own_targets_staging(url: str, url2: str, tmp_path: Path) -> None:
    """On PostgreSQL a restore removes the staging schema a killed restore of the same vault
    left, and nothing of another vault's restore in the same database (which it would break)."""
    if url.startswith("sqlite"):
        pytest.skip("SQLite staging files sit beside their own vault file")
    from vault import restoring as RS
    _filled(url)
    with vault.open(url, PASSPHRASE) as v:
        v.backup(tmp_path / "b.dvbak")
    mine, other = RS._clear_stale(url), RS._clear_stale(url2)
    assert mine != other and mine.startswith("dvrestore_") and other.startswith("dvrestore_")
    engine = raw_engine(url)
    try:
        with engine.begin() as c:
            for schema in (mine + "0123456789ab", other + "0123456789ab"):
                c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                c.execute(sa.text(f'CREATE TABLE "{schema}".dv_meta (name text)'))
        vault.restore(url, tmp_path / "b.dvbak", passphrase=PASSPHRASE)
        with engine.begin() as c:
            sql = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dvrestore_%'"
            left = {r[0] for r in c.execute(sa.text(sql))}
        assert other + "0123456789ab" in left and mine + "0123456789ab" not in left
        assert not any(s.startswith(mine) for s in left)  # the restore's own staging is gone too
    finally:
        with engine.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{other}0123456789ab" CASCADE'))
        engine.dispose()
