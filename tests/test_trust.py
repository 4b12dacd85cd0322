"""What a staff login with write access to the database can no longer do to the lead
(docs/threat-model.md 3.4, 3.5, 6.6, 9, 10): have the lead sign a raised schema version,
drop a moved vault's tables through a forged "moving" mark, delete the recovery
passphrase's slot unnoticed, book a forged entry to a colleague, and read, empty or
roll back the canary list. Each test runs on SQLite and, with DVAULT_TEST_PG_URL, on
PostgreSQL (as the database owner: every write here is one the app role may make today)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _format as F
from vault import audit as A
from vault.identity import Identity

PERSON = {"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira"}
DECOY = {"legal_name": "Lena Vogt", "email": "lena.vogt@example.com", "badge_name": "Lena"}
NEW_PASSPHRASE = "a new recovery passphrase for the new vault"


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    lead, staff, other = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add_user(other.public, "noor", "staff")
        rid = v.add(PERSON)
    return url, lead, staff, other, rid


def _sql(url: str, statement: str, **params: object) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def _meta(url: str, name: str) -> bytes:
    raw = RawDB(url)
    try:
        return raw.meta(name)
    finally:
        raw.close()


# -- 1. never sign what you did not check ----------------------------------------------------------
@pytest.mark.parametrize("raised", [F.DB_SCHEMA_VERSION + 1, 99999])
def test_a_raised_schema_version_is_never_signed_and_the_leads_open_restores_it(team, raised: int) -> None:  # type: ignore[no-untyped-def]
    """The issue's lock-out: a staff login sets db_schema_version above the signed one while
    the lead works; the lead's next enrolment, revocation, rotation or add signed it, and
    from then on every open was UnsupportedVersion and putting the old value back was
    "lowered". Now every signature re-checks the row against the version this handle
    opened, a staff open names the edit, and the lead's next open writes the signed
    version back (a ``repair`` entry says so)."""
    url, lead, staff, other, rid = team
    newcomer = Identity.generate()
    with vault.open(url, identity=lead) as lv:
        _sql(url, "UPDATE dv_meta SET value = :v WHERE name = 'db_schema_version'", v=str(raised).encode())
        for attempt in (lambda: lv.add_user(newcomer.public, "kofi", "staff"), lambda: lv.rotate(["risk"]),
                        lambda: lv.remove_user(other.public.user_id), lambda: lv.add({"badge_name": "walk-in"})):
            with pytest.raises(vault.IntegrityError, match=f"changed to v{raised} in the database"):
                attempt()
    assert f"\ndb {F.DB_SCHEMA_VERSION}\n" in _meta(url, "keys_stmt").decode()  # never signed
    for opener in ({"identity": staff}, {"identity": other}):
        with pytest.raises(vault.IntegrityError, match=f"raised to v{raised}.*lead's next open restores it"):
            vault.open(url, **opener)  # type: ignore[arg-type]
    with vault.open(url, identity=lead) as lv:
        repairs = lv.audit_entries(action="repair")
        lv.add_user(newcomer.public, "kofi", "staff")
    assert [e["detail"] for e in repairs] == [{"db_schema_version": {"found": raised, "signed": F.DB_SCHEMA_VERSION}}]
    assert _meta(url, "db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    for who in (staff, newcomer):
        with vault.open(url, identity=who) as v:
            assert v.get(rid, fields=["email"])["email"] == PERSON["email"]


def test_a_version_the_lead_lowered_back_by_hand_is_accepted(team) -> None:  # type: ignore[no-untyped-def]
    """Putting the signed value back is the other way out, as the lead never signed the raised one."""
    url, lead, staff, _other, rid = team
    raw = RawDB(url)
    raw.set_meta("db_schema_version", str(F.DB_SCHEMA_VERSION + 1).encode())
    with pytest.raises(vault.IntegrityError, match="raised"):
        vault.open(url, identity=staff)
    raw.set_meta("db_schema_version", str(F.DB_SCHEMA_VERSION).encode())
    raw.close()
    with vault.open(url, identity=staff) as v:
        assert v.get(rid, fields=["email"])["email"] == PERSON["email"]


# -- 2. the moving mark ----------------------------------------------------------------------------
@pytest.fixture
def moved(url: str, url2: str):  # type: ignore[no-untyped-def]
    """A vault made by a move (source at ``url``, new vault at ``url2``) that has been in use:
    a staff member enrolled, records added and read."""
    old_lead, new_lead, staff = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=old_lead) as src:
        src.add_many([PERSON, {"badge_name": "R."}])
        with vault.move(src, url2, NEW_PASSPHRASE, lead=new_lead).vault as dst:
            dst.add_user(staff.public, "sam", "staff")
    with vault.open(url2, identity=staff) as v:
        later = v.add({"badge_name": "Registered after the move", "email": "later@example.org"})
        v.get(later)
    return url, url2, old_lead, new_lead, staff


def _audit_count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM dv_audit")).scalar_one())
    finally:
        engine.dispose()


def test_a_forged_moving_mark_cannot_drop_a_moved_vault(moved) -> None:  # type: ignore[no-untyped-def]
    """The issue's attack: on a vault made by a move, delete every record and set the mark
    to the source's id (named in the vault's own import entry). The lead's open advised
    re-running the move, which dropped every table, the audit log included. Now the open
    names the edit, and a re-run refuses (the log holds more than the move's own entries,
    and the mark carries no signature of the source's): nothing is dropped."""
    url, url2, old_lead, new_lead, staff = moved
    with vault.open(url2, identity=new_lead) as v:
        src_id = next(e for e in v.audit_entries(action="import"))["detail"]["from"]
    entries = _audit_count(url2)
    _sql(url2, "DELETE FROM dv_records")
    _sql(url2, "UPDATE dv_meta SET value = :v WHERE name = 'moving'", v=src_id.encode())
    with pytest.raises(vault.IntegrityError, match="marked as an unfinished move"):
        vault.open(url2, identity=new_lead)
    with vault.open(url, identity=old_lead) as src:
        with pytest.raises(vault.IntegrityError, match="not replacing it"):
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    assert _audit_count(url2) == entries  # the log (the attacker's deletion included) is all there
    _sql(url2, "UPDATE dv_meta SET value = '' WHERE name = 'moving'")
    with vault.open(url2, identity=new_lead) as v:
        assert v.audit_verify().ok and len(v.check_records().missing) == 3  # the deletion, found


def test_a_mark_the_source_did_not_sign_is_not_replaced(url: str, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A marked vault with nothing but its creation's entries (what a killed move leaves) is
    still set aside only by a re-run from the source that signed its mark: not by a move
    from another vault, and not if the mark is unsigned or its signature was replaced."""
    import importlib
    other_src = url2.replace("second.vault", "third.vault") if url2.startswith("sqlite") else None
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as src:
        src.add(PERSON)
        mv = importlib.import_module("vault.vault")
        with monkeypatch.context() as m:  # a move that died after its first commit
            m.setattr(mv, "discard_new", lambda v: v.close())
            m.setattr("vault.records.Records.add_many", lambda *_a, **_k: (_ for _ in ()).throw(OSError("killed")))
            with pytest.raises(OSError):
                vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
        sig = _meta(url2, "moving_sig")
        for forged in (b"", (b"L" if sig[:1] == b"R" else b"R") + sig[1:], sig[:1] + bytes(64)):
            if forged:
                _sql(url2, "UPDATE dv_meta SET value = :v WHERE name = 'moving_sig'", v=forged)
            else:
                _sql(url2, "DELETE FROM dv_meta WHERE name = 'moving_sig'")
            with pytest.raises(vault.IntegrityError, match="not one a move from this vault signed"):
                vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
            _sql(url2, "DELETE FROM dv_meta WHERE name = 'moving_sig'")
            _sql(url2, "INSERT INTO dv_meta (name, value) VALUES ('moving_sig', :v)", v=sig)
        if other_src is not None:
            with vault.create(other_src, PASSPHRASE, lead=Identity.generate()) as another:
                with pytest.raises(vault.IntegrityError, match="not one a move from this vault signed"):
                    vault.move(another, url2, NEW_PASSPHRASE, lead=Identity.generate())
        with vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate()).vault as dst:
            assert len(dst) == 1


def test_a_rerun_sets_the_unfinished_vault_aside_and_keeps_its_log(url: str, url2: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What a re-run replaces is renamed and kept (SQLite: the file; PostgreSQL: the tables,
    indexes too), never dropped: its audit log can still be read."""
    import importlib
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as src:
        src.add(PERSON)
        mv = importlib.import_module("vault.vault")
        with monkeypatch.context() as m:
            m.setattr(mv, "discard_new", lambda v: v.close())
            m.setattr("vault.records.Records.add_many", lambda *_a, **_k: (_ for _ in ()).throw(OSError("killed")))
            with pytest.raises(OSError):
                vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
        entries = _audit_count(url2)
        with vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate()).vault as dst:
            assert len(dst) == 1
    if url2.startswith("sqlite"):
        path = url2.removeprefix("sqlite:///")
        kept = [p for p in os.listdir(os.path.dirname(path)) if ".unfinished-move-" in p and not p.endswith(("-wal", "-shm"))]
        assert len(kept) == 1
        aside = f"sqlite:///{os.path.join(os.path.dirname(path), kept[0])}"
        assert _audit_count(aside) == entries
    else:
        engine = sa.create_engine(url2)
        with engine.connect() as c:
            tables = [t for t in sa.inspect(c).get_table_names() if t.startswith("dvaside_")]
            log = next(t for t in tables if t.endswith("_audit"))
            assert c.execute(sa.text(f'SELECT count(*) FROM "{log}"')).scalar_one() == entries
        engine.dispose()
        assert len(tables) == len(RawDB.TABLES)


# -- 3. every slot accounted for -------------------------------------------------------------------
def test_a_deleted_recovery_slot_is_reported_and_never_signed_away(team) -> None:  # type: ignore[no-untyped-def]
    """DELETE FROM dv_slots WHERE kind = 'passphrase' passed the lead's open, rotation,
    enrolment, verify and the record check; the recovery passphrase then found no slot,
    and after the next rotation a backed-up row opened only destroyed keys. The key
    statement now names every slot that must exist: the lead's open, rotation and
    enrolment each report the missing one, and no signature drops it from the statement;
    the row put back from a backup is re-sealed by the lead's next rotation."""
    url, lead, staff, _other, rid = team
    raw = RawDB(url)
    slot_id, unlock, keyring = raw.slot()
    raw.close()
    _sql(url, "DELETE FROM dv_slots WHERE kind = 'passphrase'")
    with vault.open(url, identity=lead) as lv:
        assert any(f"recovery passphrase's key slot {slot_id} is missing" in w for w in lv.warnings)
        lv.warnings.clear()
        lv.rotate()
        assert any(slot_id in w for w in lv.warnings)
        lv.warnings.clear()
        lv.add_user(Identity.generate().public, "kofi", "staff")
        assert any(slot_id in w for w in lv.warnings)
    assert f"\nslot {slot_id} passphrase {hashlib.sha256(unlock).hexdigest()}\n" in _meta(url, "keys_stmt").decode()
    with pytest.raises(vault.WrongPassphrase, match="no passphrase slot"):
        vault.open(url, PASSPHRASE)
    with vault.open(url, identity=staff) as v:  # staff are not held up by it
        assert v.get(rid, fields=["email"])["email"] == PERSON["email"] and not v.warnings
    _sql(url, "INSERT INTO dv_slots (slot_id, kind, unlock, keyring) VALUES (:s, 'passphrase', :u, :k)",
         s=slot_id, u=unlock, k=keyring)  # from a backup taken before the rotation
    with vault.open(url, identity=lead) as lv:
        assert not lv.warnings
        lv.rotate()
    with vault.open(url, PASSPHRASE) as v:
        assert v.get(rid)["legal_name"] == PERSON["legal_name"]


def test_a_slot_inserted_by_hand_is_reported(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, _staff, _other, _rid = team
    raw = RawDB(url)
    _slot_id, unlock, keyring = raw.slot()
    raw.close()
    _sql(url, "INSERT INTO dv_slots (slot_id, kind, unlock, keyring) VALUES ('00112233aabbccdd', 'passphrase', :u, :k)",
         u=unlock, k=keyring)
    with vault.open(url, identity=lead) as lv:
        assert any("00112233aabbccdd is not named" in w for w in lv.warnings)


# -- 4. forged entries -----------------------------------------------------------------------------
def _forge_read(url: str, actor: Identity, target: str, detail: str, at: int | None = None) -> int:
    """The issue's finding 4: one correctly chained 'read' in a colleague's name, junk signature."""
    engine = sa.create_engine(url)
    with engine.begin() as c:
        seq, prev = c.execute(sa.text("SELECT seq, hash FROM dv_audit ORDER BY seq DESC LIMIT 1")).one()
    engine.dispose()
    seq, at = int(seq) + 1, int(time.time() * 1000) if at is None else at
    h = A.entry_hash(seq, bytes(prev), at, actor.public.raw, "read", target, detail, b"", labelled=True)
    _sql(url, "INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) VALUES "
              "(:s, :p, :at, :a, 'read', :t, :d, :r, :h, :g)", s=seq, p=bytes(prev), at=at, a=actor.public.raw,
         t=target, d=detail, r=b"", h=h, g=bytes(range(64)))
    return seq


def test_a_forged_entry_is_flagged_counted_for_no_one_and_quarantined(team) -> None:  # type: ignore[no-untyped-def]
    """A staff login chains a 'read' in a colleague's name with a junk signature: show,
    --actor and --summary counted it as the colleague's read, verify failed there for good
    and the record check refused to run. Now it is flagged and counted for no one; the lead
    quarantines it (a signed decision naming its seq and hash) and verify and the record
    check carry on past it, finding a later deletion."""
    url, lead, staff, other, rid = team
    with vault.open(url, identity=lead) as lv:
        target = lv.pseudonym(rid, "audit")
        classes = {n: f.cls for n, f in lv.schema.fields.items()}
    forged = _forge_read(url, other, target, '{"fields":["legal_name","passport_number","risk_notes"]}')
    with vault.open(url, identity=lead) as lv:
        mine = lv.audit_entries(actor=other.public.user_id)
        assert [(e["seq"], e["verified"]) for e in mine if e["action"] == "read"] == [(forged, False)]
        assert A.summary(lv.audit_entries(), classes).get(other.public.user_id, {}).get("identity", 0) == 0
        verdict = lv.audit_verify()
        assert not verdict.ok and verdict.first_bad == forged
        with pytest.raises(vault.IntegrityError, match=f"damaged at entry {forged}"):
            lv.check_records()
        with pytest.raises(vault.ValidationError, match="nothing to quarantine"):
            lv.quarantine(forged - 1)
        assert "signature" in lv.quarantine(forged)
        with pytest.raises(vault.ValidationError, match="quarantined already"):
            lv.quarantine(forged)
    _sql(url, "DELETE FROM dv_records WHERE id = :i", i=bytes.fromhex(rid))  # later: a deletion to find
    with vault.open(url, identity=lead) as lv:
        verdict = lv.audit_verify()
        assert verdict.ok and verdict.quarantined == (forged,) and "quarantined" in str(verdict)
        assert len(lv.check_records().missing) == 1
        shown = next(e for e in lv.audit_entries() if e["seq"] == forged)
        assert shown["quarantined"] and not shown["verified"]
    with vault.open(url, identity=staff) as v:  # a staff member cannot quarantine
        with pytest.raises(vault.AccessDenied):
            v.quarantine(forged)


def test_a_quarantine_by_anyone_but_the_lead_does_not_count(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, other, rid = team
    forged = _forge_read(url, other, "", '{"fields":["email"]}')
    with vault.open(url, identity=staff) as v:  # staff's own client signing a "decision"
        v._audit("quarantine", "", {"seq": forged, "hash": A.read_entries(v._ses.store())[forged - 1].hash.hex()})
    with vault.open(url, identity=lead) as lv:
        verdict = lv.audit_verify()
    assert not verdict.ok and verdict.first_bad == forged and not verdict.quarantined


def test_verify_flags_an_entry_dated_back_beyond_the_clock_tolerance(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Timestamps come from each writer's clock; one dated more than five minutes before an
    earlier entry (backdated by a modified client, or a wrong clock) is flagged, less is
    clock skew. The lead can quarantine it after looking."""
    url, lead, staff, _other, rid = team
    real = time.time
    with vault.open(url, identity=staff) as v:
        monkeypatch.setattr(time, "time", lambda: real() - 120)  # two minutes slow: skew
        v.get(rid, fields=["email"])
        monkeypatch.setattr(time, "time", lambda: real() - 3600)  # an hour back
        v.get(rid, fields=["email"])
        monkeypatch.setattr(time, "time", real)
    with vault.open(url, identity=lead) as lv:
        verdict = lv.audit_verify()
        assert not verdict.ok and "5-minute tolerance" in verdict.problem, str(verdict)
        bad = verdict.first_bad
        assert bad is not None and lv.audit_entries()[bad - 1]["action"] == "read"
        assert "5-minute tolerance" in lv.audit_problem(bad)["problem"]
        lv.quarantine(bad)
        assert lv.audit_verify().ok


def test_an_entry_dated_forward_can_be_quarantined(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """One entry from a clock an hour fast makes every later entry look backdated; the lead
    quarantines that one entry and the rest verify."""
    url, lead, staff, _other, rid = team
    real = time.time
    with vault.open(url, identity=staff) as v:
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        v.get(rid, fields=["email"])
        monkeypatch.setattr(time, "time", real)
        v.get(rid, fields=["email"])
    with vault.open(url, identity=lead) as lv:
        verdict = lv.audit_verify()
        assert not verdict.ok and "5-minute tolerance" in verdict.problem
        ahead = verdict.first_bad - 1
        assert "after entry" in lv.audit_problem(ahead)["problem"]
        lv.quarantine(ahead)
        assert lv.audit_verify().ok


# -- 5. canaries -----------------------------------------------------------------------------------
def test_staff_can_neither_read_nor_switch_off_the_canary_list(team) -> None:  # type: ignore[no-untyped-def]
    """The list was sealed under the meta key (every role holds it) and signed by no one: a
    staff member identified every canary from their own keyring, or wrote an empty list.
    Now it is sealed under a key only the lead and the recovery passphrase hold, and the
    key statement names its hash: an empty or older list is refused at every open."""
    from vault import _crypto as C
    from vault import canaries as CA
    from vault import keys as K
    url, lead, staff, _other, rid = team
    with vault.open(url, identity=lead) as lv:
        before = _meta(url, "canaries")
        decoy = lv.plant_canary(DECOY)
    blob = _meta(url, "canaries")
    with vault.open(url, identity=staff) as v:
        assert CA.seed_of(v._access.ring) is None and v._canaries.live() == set()
        meta = v._access.ring.current(K.KIND_META_KEY).secret
        with pytest.raises(vault.IntegrityError):  # what staff hold opens nothing of it
            CA.open_list(C.hkdf_sha256(meta, F.LABEL_CANARY_LIST), v._ses.vid, blob)
        with pytest.raises(vault.IntegrityError):
            CA.open_legacy(meta, v._ses.vid, blob)
    for replaced in (before, b""):  # put back from before the canary, or emptied
        raw = RawDB(url)
        raw.set_meta("canaries", replaced)
        raw.close()
        for opener in ({"identity": lead}, {"identity": staff}, {"passphrase": PASSPHRASE}):
            with pytest.raises(vault.IntegrityError, match="canary list"):
                vault.open(url, **opener)  # type: ignore[arg-type]
    raw = RawDB(url)
    raw.set_meta("canaries", blob)
    raw.close()
    with vault.open(url, identity=lead) as lv:
        assert lv._canaries.live() == {decoy} and lv.canary_count() == 1


def test_the_lead_finds_staff_touches_of_a_canary_in_the_log(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, _other, rid = team
    with vault.open(url, identity=lead) as lv:
        decoy = lv.plant_canary(DECOY)
    with vault.open(url, identity=staff) as v:
        v.get(decoy, fields=["email"])
        v.find(email=DECOY["email"])
        v.export(["badge_name"])
        assert not A.read_entries(v._ses.store())[-1].action == "alarm"
    with vault.open(url, identity=lead) as lv:
        alarms = lv.alarms()
        assert [a["detail"]["op"] for a in alarms] == ["read", "search", "export"]
        assert {a["actor"] for a in alarms} == {staff.public.user_id}
        assert not lv.audit_entries(action="alarm")  # nothing in the log tells staff which record it was


def test_an_alarm_is_kept_outside_the_database(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A staff member who tripped an alarm could delete the last log rows (SQLite), and
    with no checkpoint since, alarms() was 0 and verify passed. The lead's open now keeps a
    checkpoint beside the lead's identity and refuses a log that no longer holds it."""
    url, lead, staff, _other, rid = team
    kept = tmp_path / "lead.dvid.checkpoints"
    with vault.open(url, identity=lead) as lv:
        decoy = lv.plant_canary(DECOY)
        assert lv.witness(kept)["alarms"] == []
    with vault.open(url, identity=staff) as v:
        v.get(decoy)
    with vault.open(url, identity=lead) as lv:
        seen = lv.witness(kept)
    assert [a["detail"]["op"] for a in seen["alarms"]] == ["read"]
    cp = A.Checkpoint.parse(seen["checkpoint"])
    _sql(url, "DELETE FROM dv_audit WHERE seq >= :s", s=cp.seq - 1)  # the read, the alarm's open, ...
    with vault.open(url, identity=lead) as lv:
        assert lv.audit_verify().ok  # the log alone cannot tell
        with pytest.raises(vault.IntegrityError, match="no longer holds entry"):
            lv.witness(kept)
    assert kept.read_text().startswith(f"{lv.id} dvcp1:") and oct(kept.stat().st_mode & 0o777) == "0o600"


# -- the command line --------------------------------------------------------------------------------
def test_cli_flags_forged_entries_quarantines_them_and_counts_canaries(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """audit show marks the forged entry and --summary leaves it out; audit quarantine asks
    first (no: nothing written), then writes the decision and verify passes naming it;
    status shows the lead the canary count (staff: none); a staff read of the decoy is an
    ALARM at the lead's next command, whose log is then checkpointed beside the identity."""
    from click.testing import CliRunner

    from vault_cli.main import cli
    lead, staff, other = Identity.generate(), Identity.generate(), Identity.generate()
    lead.save(tmp_path / "lead.dvid", "lead identity pass")
    staff.save(tmp_path / "sam.dvid", "sam identity pass")
    url = f"sqlite:///{tmp_path / 'v.vault'}"
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add_user(other.public, "noor", "staff")
        rid = v.add(PERSON)
        decoy = v.plant_canary(DECOY)
        target = v.pseudonym(rid, "audit")
    forged = _forge_read(url, other, target, '{"fields":["legal_name"]}')
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "no-config.toml"))

    def run(who: str, *args: str, given: str | None = None):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", f"{who} identity pass")
        return CliRunner().invoke(cli, [*args, "--vault", url, "--identity", str(tmp_path / f"{who}.dvid")],
                                  input=given)

    shown = run("lead", "audit", "show", "--actor", "noor")
    assert shown.exit_code == 0 and "FORGED?" in shown.output and "counted for no one" in shown.output
    summary = run("lead", "audit", "show", "--summary", "--json")
    assert other.public.user_id not in json.loads(summary.stdout)
    assert isinstance(run("lead", "audit", "verify").exception, vault.IntegrityError)  # exit 5 from dvault
    refused = run("lead", "audit", "quarantine", str(forged), given="n\n")
    assert refused.exit_code == 1 and "signature does not verify" in refused.output
    done = run("lead", "audit", "quarantine", str(forged), given="y\n")
    assert done.exit_code == 0 and f"entry {forged} quarantined" in done.output
    verified = run("lead", "audit", "verify", "--records")
    assert verified.exit_code == 0 and "quarantined by the lead" in verified.output
    good = run("lead", "audit", "quarantine", str(forged - 1), "--yes")
    assert good.exit_code != 0 and "nothing to quarantine" in good.output
    assert isinstance(run("sam", "audit", "quarantine", str(forged), "--yes").exception, vault.AccessDenied)
    status = run("lead", "status", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["canaries"] == 1
    assert "canaries" not in json.loads(run("sam", "status", "--json").stdout)
    assert run("sam", "find", "--email", "--reason", "checking a registration", given=DECOY["email"] + "\n").exit_code == 0
    alarmed = run("lead", "status")  # the search hit, and the badge pseudonym find printed for it
    assert "ALARM: 2 canary access" in alarmed.output
    assert (tmp_path / "lead.dvid.checkpoints").read_text().count(" dvcp1:") == 1
    listed = run("lead", "audit", "show", "--action", "alarm", "--json")
    assert [json.loads(line)["detail"]["op"] for line in listed.stdout.splitlines()] == ["search", "pseudonym"]
    again = run("lead", "status").output
    assert decoy and "since your last open" not in again and "ALARM: 2 canary record" in again  # news once


def test_a_failed_move_keeps_a_new_vault_someone_wrote_to(url: str, url2: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed create or move removes only what its own creation wrote; a new vault that
    holds anything more (here a record row written into it meanwhile) is set aside too."""
    def fail(self: vault.Vault, *_a: object, **_k: object) -> None:
        _sql(self.ses.store().url, "INSERT INTO dv_records (id, data) VALUES (:i, :d)", i=bytes(16), d=b"x")
        raise OSError("disk full")

    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as src:
        src.add(PERSON)
        monkeypatch.setattr("vault.records.Records.add_many", fail)
        with pytest.raises(OSError):
            vault.move(src, url2, NEW_PASSPHRASE, lead=Identity.generate())
    if url2.startswith("sqlite"):
        path = url2.removeprefix("sqlite:///")
        assert not os.path.exists(path) and [p for p in os.listdir(os.path.dirname(path)) if ".unfinished-move-" in p]
    else:
        engine = sa.create_engine(url2)
        with engine.connect() as c:
            names = sa.inspect(c).get_table_names()
        engine.dispose()
        assert not [t for t in names if t.startswith("dv_")] and any(t.startswith("dvaside_") for t in names)


def test_an_older_statement_put_back_cannot_have_an_older_canary_list_signed(team) -> None:  # type: ignore[no-untyped-def]
    """The statement of database schema v7 did not name the canary list. Put back (with the
    version set to 7) after the upgrade to v8 and a canary planted since, with the list from
    before the canary, the lead's open would upgrade again and sign that older list: the
    canary switched off. A list of the v8 kind in a vault that says it is older is refused."""
    from rawdb import as_release_v7
    url, lead, staff, _other, rid = team
    with vault.open(url, identity=lead) as lv:
        as_release_v7(lv)
    old_stmt, old_sig = _meta(url, "keys_stmt"), _meta(url, "keys_stmt_sig")
    with vault.open(url, identity=lead) as lv:  # the upgrade to v8
        before = _meta(url, "canaries")
        decoy = lv.plant_canary(DECOY)
    raw = RawDB(url)
    for name, value in (("db_schema_version", b"7"), ("keys_stmt", old_stmt), ("keys_stmt_sig", old_sig),
                        ("canaries", before)):
        raw.set_meta(name, value)
    raw.close()
    with pytest.raises(vault.IntegrityError, match="canary list is of database schema v8"):
        vault.open(url, identity=lead)
    with pytest.raises(vault.IntegrityError, match="canary list is of database schema v8"):
        vault.open(url, PASSPHRASE)
    assert decoy


def test_a_handle_opened_before_the_leads_upgrade_is_told_to_reopen(team) -> None:  # type: ignore[no-untyped-def]
    """A staff handle opened at v7 meets the statement the lead's upgrade to v8 signed:
    "open it again", not "the database was edited"; reopened, it works at v8."""
    from rawdb import as_release_v7
    url, lead, staff, _other, rid = team
    with vault.open(url, identity=lead) as lv:
        as_release_v7(lv)
    with vault.open(url, identity=staff) as v:
        assert v._ses.db_known == 7
        vault.open(url, identity=lead).close()  # the upgrade
        with pytest.raises(vault.KeysChanged, match=f"upgraded to database schema v{F.DB_SCHEMA_VERSION}"):
            v.users()
    with vault.open(url, identity=staff) as v:
        assert v._ses.db_known == F.DB_SCHEMA_VERSION and v.get(rid, fields=["email"])["email"] == PERSON["email"]
