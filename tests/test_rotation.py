"""Key rotation: rewrap and re-encrypt, crash safety under SIGKILL, old versions destroyed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import compact
from vault import envelope as E
from vault import keys as K

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "helpers" / "rotate_child.py"


def _rows(n: int) -> list[dict]:
    return [{"legal_name": f"Person {i} Example", "email": f"p{i}@example.org", "badge_name": f"P{i}",
             "risk_level": "high" if i % 3 else "low", "risk_notes": f"note {i}", "dietary": "vegan"}
            for i in range(n)]


def _snapshot(v: vault.Vault) -> dict[str, dict]:
    return {r.id: dict(r) for r in v.records()}


def _any_dek_opens(raw: RawDB, rid: str, secrets: list[bytes]) -> bool:
    """True if any of these class-key secrets unwraps any of the record's DEKs, under any
    key version the tests reach (the version is part of the wrap's associated data)."""
    from vault._crypto import Aead, AuthFailure
    vid = raw.meta("vault_id")
    for cls, (dek, _) in raw.envs(rid).items():
        cells = raw.cells(rid, cls)
        names = list(cells)
        if not names and E.parse_dek_header(dek).derived:
            continue  # nothing to try a derived DEK on; other classes of the row have cells
        for secret in secrets:
            for version in (1, 2, 3):
                try:
                    if E.parse_dek_header(dek).derived and raw.row(rid)[1] == 3:  # format 3: its ciphertext
                        key = compact.derive_dek(secret, compact.dek_info(dek, vid, bytes.fromhex(rid), cls,
                                                                          version, names, 3))
                        raw.codec().authenticate_derived(key, dek, bytes.fromhex(rid), raw.envs(rid)[cls][1], 3)
                    elif E.parse_dek_header(dek).derived:  # record format 2: the DEK is derived, a cell checks it
                        fno, ct = raw.codec().numbers[names[0]], cells[names[0]]
                        key = compact.derive_dek(secret, compact.dek_info(dek, vid, bytes.fromhex(rid), cls,
                                                                          version, names))
                        Aead(key).open(compact.field_nonce(fno), ct,
                                       compact.field_aad(dek[10:18], vid, bytes.fromhex(rid), fno, names[0]))
                    else:
                        E.unwrap_dek(Aead(secret), version, vid, bytes.fromhex(rid), cls, names, dek)
                    return True
                except (AuthFailure, E.Malformed):
                    pass
    return False


def _kids(raw: RawDB, rid: str) -> dict[str, bytes]:
    return {c: E.parse_dek_header(d).class_kid for c, (d, _) in raw.envs(rid).items()}


@pytest.mark.parametrize("reencrypt", [False, True])
def test_rotation_round_trip(url: str, reencrypt: bool) -> None:
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(40))
        before = _snapshot(v)
        raw = RawDB(url)
        cells_before = {rid: {c: cells for c, (_, cells) in raw.envs(rid).items()} for rid in ids}
        kids_before = _kids(raw, ids[0])
        slot_id, unlock, old_keyring = raw.slot()
        vid = raw.meta("vault_id")
        old_secrets = [k.secret for k in K.open_keyring(K.open_passphrase_slot(unlock, PASSPHRASE, vid), vid,
                                                         old_keyring).keys if k.kind == K.KIND_CLASS_KEY]
        assert all(_any_dek_opens(raw, rid, old_secrets) for rid in ids)  # the check below can see a hit
        stats = v.rotate(reencrypt=reencrypt, batch=7)
        assert stats["reencrypted" if reencrypt else "rewrapped"] == 40
        assert _snapshot(v) == before
        kids_after = _kids(raw, ids[0])
        assert all(kids_after[c] != kids_before[c] for c in kids_before)
        for rid in ids:
            same = {c: cells for c, (_, cells) in raw.envs(rid).items()} == cells_before[rid]
            assert same != reencrypt  # rewrap leaves field ciphertexts alone; re-encrypt replaces them
        assert {k.version for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY} == {2}
        assert v.find(email="p7@example.org")[0].id == ids[7]
        assert len(v.find_tokens(legal_name="person example")) == 40
        # An old copy of the keyring (e.g. a revoked laptop's) opens no rewrapped DEK: not by
        # key id, and not by trying its secrets on every record's wrapped DEKs.
        assert not {k.kid for k in K.open_keyring(K.open_passphrase_slot(unlock, PASSPHRASE, vid), vid,
                                                  old_keyring).keys} & set(_kids(raw, ids[0]).values())
        assert not any(_any_dek_opens(raw, rid, old_secrets) for rid in ids)
        raw.close()
    with vault.open(url, PASSPHRASE) as v:
        assert _snapshot(v) == before
        v.rotate(["identity"])
        assert _snapshot(v) == before
        versions = {k.name: k.version for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY}
        assert versions["identity"] == 3 and versions["public"] == 2


def test_rotation_refuses_unknown_class(v: vault.Vault) -> None:
    with pytest.raises(vault.ValidationError):
        v.rotate(["nope"])


def test_rotation_rewrap_authenticates_first(url: str) -> None:
    """A tampered envelope is not laundered into a valid one by the rewrap: it is left as it
    is (still refused), the rest of its row moves to the new keys, and the rotation says
    how many rows it left."""
    with vault.create(url, PASSPHRASE) as v:
        a, b = v.add_many(_rows(2))
        raw = RawDB(url)
        envs_a, envs_b = raw.envs(a), raw.envs(b)
        envs_b["identity"] = envs_a["identity"]
        raw.set_envs(b, envs_b)
        assert v.rotate()["unreadable"] == 1
        after = raw.envs(b)
        assert after["identity"] == envs_b["identity"]  # not laundered into a fresh wrap
        assert all(after[c][0] != envs_b[c][0] for c in after if c != "identity")  # the rest rewrapped
        with pytest.raises(vault.IntegrityError, match="envelope failed authentication"):
            v.get(b, fields=["legal_name"])
        assert v.get(b, fields=["email"])["email"] and v.get(a)["legal_name"]
        raw.close()


def test_a_planted_row_does_not_stop_a_revocations_rotation(url: str) -> None:
    """A staff member about to be revoked inserts a record row that does not parse (the
    staff login may insert rows). The revocation's rotation still finishes: the old key
    versions, which they hold, are destroyed, nothing stays pending, the row is left as
    it was and counted (rotate_unreadable), and later rotations and re-indexes run too."""
    from vault import _crypto as C
    from vault.identity import Identity

    from conftest import raw_engine
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        ids = v.add_many(_rows(3))
    junk = C.random_bytes(16)
    eng = raw_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO dv_records (id, data) VALUES (:i, :d)"), {"i": junk, "d": b"\x00\x03junk"})
    eng.dispose()
    with vault.open(url, identity=lead) as v:
        held = {(k.name, k.version) for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY}
        v.remove_user(staff.public.user_id)
        now = {(k.name, k.version) for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY}
        rotated = set(v.schema.roles["staff"].classes)  # the classes they held
        assert {n for n, ver in held - now} == rotated  # the versions staff held are gone
        assert [e["detail"]["unreadable_rows"] for e in v.audit_entries(action="rotate_unreadable")] == [1]
        assert v.rotate()["unreadable"] == 1
        v.reindex()
        assert all(v.get(i)["legal_name"] for i in ids)
        assert v.find(email=_rows(3)[1]["email"])
    eng = raw_engine(url)
    with eng.connect() as conn:
        pending = conn.execute(sa.text("SELECT value FROM dv_meta WHERE name = 'rotation'")).scalar_one_or_none()
        left = conn.execute(sa.text("SELECT data FROM dv_records WHERE id = :i"), {"i": junk}).scalar_one()
    eng.dispose()
    assert not pending and bytes(left) == b"\x00\x03junk"
    with vault.open(url, identity=lead) as v:  # and the lead can shred it, as verify advises
        assert [p.kind for p in v.verify().problems] == ["fails authentication"]
        v.delete(junk.hex())
        assert junk.hex() not in v.ids() and v.verify().ok
        assert v.audit_entries(action="shred")[-1]["detail"]["unreadable"] is True


_ROTATION_SECONDS: dict[str, float] = {}


def _rotation_seconds(tmp: Path, mode: str) -> float:
    """How long the child's whole rotation takes on this machine (measured once per mode), so
    that the kills are spread over the rotation itself however fast the machine is."""
    if mode not in _ROTATION_SECONDS:
        path = tmp / f"calibrate-{mode}.vault"
        with vault.create(path, PASSPHRASE) as v:
            v.add_many(_rows(300))
        child = subprocess.Popen([sys.executable, str(CHILD), str(path), PASSPHRASE, mode],
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        t0 = time.perf_counter()
        assert child.stdout.readline().strip() == "finished"
        _ROTATION_SECONDS[mode] = time.perf_counter() - t0
        child.wait()
    return _ROTATION_SECONDS[mode]


def _kill_trial(tmp: Path, seed: int, mode: str) -> bool:
    rng = random.Random(seed)
    window = _rotation_seconds(tmp, mode)
    path = tmp / f"kill{seed}.vault"
    with vault.create(path, PASSPHRASE) as v:
        v.add_many(_rows(300))
        before = _snapshot(v)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, str(CHILD), str(path), PASSPHRASE, mode], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    time.sleep(rng.uniform(0, window))  # some land after the end: the test checks those too
    child.send_signal(signal.SIGKILL)
    child.wait()
    with vault.open(path, PASSPHRASE) as v:  # opens and reads every record, whatever the moment
        assert _snapshot(v) == before
        versions = {k.version for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY}
        interrupted = v.status()["rotation_pending"]
        if interrupted or versions == {1}:  # killed mid-way, or before the rotation began
            v.rotate()  # re-running completes
        assert _snapshot(v) == before
        assert {k.version for k in v._access.ring.keys if k.kind == K.KIND_CLASS_KEY} == {2}
        assert not v.status()["rotation_pending"]
        assert v.find(email="p5@example.org")
    return interrupted


def test_sigkill_during_rotation(tmp_path: Path) -> None:
    """20 kills at random moments; most must land mid-rotation for the test to mean anything."""
    hits = sum(_kill_trial(tmp_path, t, "reencrypt" if t % 2 else "rewrap") for t in range(20))
    assert hits >= 7, f"only {hits}/20 kills landed mid-rotation"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # many trials by design; CI bounds them (DVAULT_STRESS_TRIALS)
def test_sigkill_stress(tmp_path: Path) -> None:
    trials = int(os.environ.get("DVAULT_STRESS_TRIALS", "100"))
    hits = sum(_kill_trial(tmp_path, t, "reencrypt" if t % 2 else "rewrap") for t in range(1000, 1000 + trials))
    assert hits >= trials // 3, f"only {hits}/{trials} kills landed mid-rotation; the test lost its teeth"


# -- keys changed by another handle (found by a CLI hunt: two `dvault rotate` at once could
# leave a vault no one could open) -------------------------------------------------------------
def test_a_handle_with_stale_keys_refuses_to_write(url: str) -> None:
    """A handle that loaded the keys before another's rotation must neither rotate again,
    nor seal new records under the destroyed versions, nor call a rewrapped record tampered."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(12))
        before = _snapshot(v)
    a, b = vault.open(url, PASSPHRASE), vault.open(url, PASSPHRASE)
    try:
        a.rotate(reencrypt=True, batch=5)
        for call in (lambda: b.rotate(), lambda: b.add(_rows(1)[0]), lambda: b.update(ids[0], {"dietary": "none"}),
                     lambda: b.get(ids[0]), lambda: b.reindex(), lambda: b.change_passphrase("another passphrase")):
            with pytest.raises(vault.KeysChanged):
                call()
        assert b.count() == 12  # what needs no class key still works
    finally:
        a.close()
        b.close()
    with vault.open(url, PASSPHRASE) as v:  # nothing half-done, every record reads
        assert _snapshot(v) == before
        v.add(_rows(1)[0])
        v.rotate()


def test_a_write_refused_for_stale_keys_is_logged(url: str) -> None:
    """An update or a shred refused because another handle rotated meanwhile (KeysChanged)
    changed nothing, and is logged as an attempt (no state), as one refused for any other
    reason is: the log shows who tried to change which record."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(3))
    a, b = vault.open(url, PASSPHRASE), vault.open(url, PASSPHRASE)
    try:
        badge = b.pseudonym(ids[1], "audit")
        a.rotate()
        with pytest.raises(vault.KeysChanged):
            b.update(ids[0], {"dietary": "none"})
        with pytest.raises(vault.KeysChanged):
            b.delete(ids[1])
    finally:
        a.close()
        b.close()
    with vault.open(url, PASSPHRASE) as v:
        assert ids[1] in v.ids() and v.check_records().ok
        shreds = v.audit_entries(action="shred")
        updates = v.audit_entries(action="update")
    assert [e["target"] for e in shreds] == [badge] and "state" not in shreds[0]["detail"]
    assert len(updates) == 1 and updates[0]["detail"] == {"fields": ["dietary"]}


def test_a_handle_that_joins_a_rotation_with_stale_keys_stops(url: str) -> None:
    """B loaded its keys before A started rotating; resuming A's rotation with them would
    move records back onto the old versions. B is refused before it writes anything."""
    from vault import rotation
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(10))
        before = _snapshot(v)
    a, b = vault.open(url, PASSPHRASE), vault.open(url, PASSPHRASE)
    try:
        rotation._start(a._rotor, list(a.schema.classes), False)  # A crashed right after step 1
        with pytest.raises(vault.KeysChanged):
            b.rotate()
    finally:
        a.close()
        b.close()
    with vault.open(url, PASSPHRASE) as v:
        v.rotate()  # resumes and finishes A's rotation
        assert _snapshot(v) == before


def test_two_rotations_started_at_once(tmp_path: Path) -> None:
    """The CLI race, with processes: both start together; afterwards the vault opens and
    every record reads, whichever of them won (the other ends with KeysChanged, or waits)."""
    path = tmp_path / "race.vault"
    with vault.create(path, PASSPHRASE) as v:
        v.add_many(_rows(40))
        before = _snapshot(v)
    code = ("import sys, vault\nfrom vault import _format as F\n"
            "F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)\n"
            "v = vault.open(sys.argv[1], sys.argv[2])\nsys.stdin.readline()\n"
            "try:\n    v.rotate(reencrypt=sys.argv[3] == 're', batch=4)\n    print('done')\n"
            "except vault.KeysChanged:\n    print('keys changed')\n")
    for trial in range(3):
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), PASSPHRASE, mode], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for mode in ("re", "wrap")]
        time.sleep(0.5)  # both opened, holding the same keys
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
        assert "done" in [o[0].strip() for o in outs]
        with vault.open(path, PASSPHRASE) as v:
            assert _snapshot(v) == before, trial
            assert not v.status().get("rotation_pending")


@pytest.mark.parametrize("state", [b"{", b"[]", b'{"classes": {}, "reencrypt": false}',
                                   b'{"classes": {"nope": 2}, "reencrypt": false}',
                                   b'{"classes": {"identity": "2"}, "reencrypt": false}',
                                   b'{"classes": {"identity": 2}, "reencrypt": 1}',
                                   b'{"classes": {"identity": 99}, "reencrypt": false}',
                                   b"[" * 100000])
def test_an_edited_rotation_state_is_refused(url: str, state: bytes) -> None:
    """dv_meta.rotation is not authenticated; edited, rotate() raised KeyError, TypeError or
    RecursionError (a hunt, 2026-11-27). Now a VaultError, and nothing is rewritten."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(3))
        before = _snapshot(v)
    raw = RawDB(url)
    with raw.engine.begin() as c:  # a rotation that never started has no row yet
        c.execute(sa.text("DELETE FROM dv_meta WHERE name = 'rotation'"))
        c.execute(sa.text("INSERT INTO dv_meta (name, value) VALUES ('rotation', :v)"), {"v": state})
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        with pytest.raises(vault.VaultError):
            v.rotate()
        assert _snapshot(v) == before


def test_a_pending_rotation_does_not_swallow_the_one_asked_for(url: str) -> None:
    """rotate() resumes an unfinished rotation first. It used to stop there, so a rotation
    a revocation asked for (identity, say) made no new key while one of other classes was
    pending; and a database writer could plant a "pending" rotation naming the current
    versions, which the next rotate() finished without making any."""
    from vault import keys as K
    from vault import rotation
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(5))
        before = _snapshot(v)
        rotation._start(v._rotor, ["contact"], False)  # crashed after step 1
    with vault.open(url, PASSPHRASE) as v:
        was = {c: v._access.ring.current(K.KIND_CLASS_KEY, c).version for c in v.schema.classes}
        v.rotate(["identity"])
        now = {c: v._access.ring.current(K.KIND_CLASS_KEY, c).version for c in v.schema.classes}
        assert now["identity"] == was["identity"] + 1 and now["contact"] == was["contact"]
        assert _snapshot(v) == before and not v.status()["rotation_pending"]
        planted = json.dumps({"classes": {"identity": now["identity"]}, "reencrypt": False}).encode()
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dv_meta WHERE name = 'rotation'"))
        c.execute(sa.text("INSERT INTO dv_meta (name, value) VALUES ('rotation', :v)"), {"v": planted})
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        with pytest.raises(vault.IntegrityError, match="rotation state"):
            v.rotate(["identity"])


def test_a_pending_state_that_leaves_a_class_out_is_refused(url: str) -> None:
    """A rotation of identity and risk stopped after step 1; a database writer edits its
    state to name identity only. Accepted, the resume rotated identity and then destroyed
    every old class key version, risk's included, under which every risk envelope still
    was: the lead's own rotate() made that data unreadable."""
    from vault import rotation
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(5))
        before = _snapshot(v)
        rotation._start(v._rotor, ["identity", "risk"], False)
        versions = json.loads(RawDB(url).meta("rotation"))["classes"]
    raw = RawDB(url)
    raw.set_meta("rotation", json.dumps({"classes": {"identity": versions["identity"]}, "reencrypt": False}).encode())
    raw.close()
    with vault.open(url, PASSPHRASE) as v:
        with pytest.raises(vault.IntegrityError, match="rotation state"):
            v.rotate(["identity", "risk"])
        assert _snapshot(v) == before


def test_open_starts_again_when_a_rotation_commits_during_it(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """open() reads the slots in one snapshot and the user table and key statement in later
    ones: another client's rotation committing in between made open() raise KeysChanged
    (seen as a flaky two-process rotation test). It starts again instead."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(5))
        before = _snapshot(v)
    other = vault.open(url, PASSPHRASE)
    real = vault.Vault._setup_auditor
    raced: list[bool] = []

    def racing(self: vault.Vault) -> None:
        if not raced:
            raced.append(True)
            other.rotate()  # commits between open()'s reads
        real(self)
    monkeypatch.setattr(vault.Vault, "_setup_auditor", racing)
    try:
        with vault.open(url, PASSPHRASE) as v:
            assert raced and _snapshot(v) == before
    finally:
        other.close()
