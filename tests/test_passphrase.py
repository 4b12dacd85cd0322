"""Unlocking: wrong passphrases, KDF floors and ceilings, passphrase changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import vault
from conftest import FAST_KDF, PASSPHRASE
from rawdb import RawDB, audit_actions
from vault import _format as F
from vault import keys as K


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_passphrase_changes_nothing(tmp_path: Path) -> None:
    """Nothing changes but the audit log, which records each failed unlock (issue 5)."""
    path = tmp_path / "w.vault"
    url = f"sqlite:///{path}"
    with vault.create(path, PASSPHRASE) as v:
        rid = v.add({"legal_name": "Nadia Quispe"})
    raw = RawDB(url)
    before = raw.dump(exclude=("dv_audit",))
    n_before = len(audit_actions(url))
    for wrong in ("", "correct horse battery stapler", PASSPHRASE.upper(), PASSPHRASE + " "):
        with pytest.raises((vault.WrongPassphrase, vault.ValidationError)):
            vault.open(path, wrong)
    assert raw.dump(exclude=("dv_audit",)) == before
    assert audit_actions(url)[n_before:] == ["unlock_failed"] * 3  # "" is refused before any lookup
    raw.close()
    with vault.open(path, PASSPHRASE) as v:
        assert v.get(rid)["legal_name"] == "Nadia Quispe"


def test_wrong_passphrase_postgres_too(url: str) -> None:
    vault.create(url, PASSPHRASE).close()
    raw = RawDB(url)
    before = raw.dump(exclude=("dv_audit",))
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, "not it")
    assert raw.dump(exclude=("dv_audit",)) == before
    assert audit_actions(url)[-1] == "unlock_failed"
    raw.close()


def test_unicode_passphrase_is_nfc_normalised(tmp_path: Path) -> None:
    composed, decomposed = "pässwörd ünïcode", "pa\u0308sswo\u0308rd u\u0308ni\u0308code"
    vault.create(tmp_path / "u.vault", composed).close()
    vault.open(tmp_path / "u.vault", decomposed).close()


def test_kdf_below_floor_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault whose slot was written with weak parameters does not open (no downgrade)."""
    path = tmp_path / "weak.vault"
    vault.create(path, PASSPHRASE).close()  # FAST_KDF, allowed by the test floor
    monkeypatch.setattr(F, "KDF_FLOOR", F.KdfParams(t=3, m_kib=64 * 1024, p=4))
    with pytest.raises(vault.KdfTooWeak):
        vault.open(path, PASSPHRASE)
    with pytest.raises(vault.KdfTooWeak):
        vault.create(tmp_path / "weak2.vault", PASSPHRASE, kdf=FAST_KDF)
    assert not (tmp_path / "weak2.vault").exists()


def test_real_floor_is_rfc9106_second_recommendation() -> None:
    """The shipped floor, not the test fixture's: RFC 9106 section 4 option 2."""
    import subprocess
    import sys

    code = ("import vault._format as f; a, b = f.KDF_FLOOR, f.KDF_DEFAULT; "
            "print(a.t, a.m_kib, a.p, b.t, b.m_kib, b.p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    floor, default = tuple(map(int, out[:3])), tuple(map(int, out[3:]))
    assert floor == (3, 65536, 4)
    assert all(d >= f for d, f in zip(default, floor))


def test_kdf_ceiling_refuses_memory_bomb() -> None:
    with pytest.raises(vault.IntegrityError):
        K.check_kdf(F.KdfParams(t=3, m_kib=1 << 30, p=4))


def test_downgrade_by_editing_slot_params_fails(tmp_path: Path) -> None:
    """Lowering t in the stored slot (and fixing the unkeyed checksum) cannot unlock."""
    path = tmp_path / "d.vault"
    url = f"sqlite:///{path}"
    vault.create(url, PASSPHRASE, kdf=F.KdfParams(t=2, m_kib=8, p=1)).close()
    raw = RawDB(url)
    slot_id, unlock, ring = raw.slot()
    body = bytearray(unlock[:-8])
    body[10:14] = (1).to_bytes(4, "big")
    vid = raw.meta("vault_id")
    forged = bytes(body) + hashlib.sha256(bytes(body) + vid).digest()[:8]
    raw.set_slot(slot_id, forged, ring)
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, PASSPHRASE)
    raw.close()


def test_change_passphrase_and_raise_cost_without_touching_records(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"passport_number": "P83526008", "badge_name": "B"})
        raw = RawDB(url)
        before = raw.row(rid)
        stronger = F.KdfParams(t=2, m_kib=16, p=2)
        v.change_passphrase("a new long passphrase", kdf=stronger)
        assert raw.row(rid) == before
        assert K.passphrase_slot_params(raw.slot()[1]) == stronger
        raw.close()
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, PASSPHRASE)
    with vault.open(url, "a new long passphrase") as v:
        assert v.get(rid)["passport_number"] == "P83526008"


def test_passphrase_must_be_nonempty_text(tmp_path: Path) -> None:
    with pytest.raises(vault.ValidationError):
        vault.create(tmp_path / "e.vault", "")
    assert not (tmp_path / "e.vault").exists()
