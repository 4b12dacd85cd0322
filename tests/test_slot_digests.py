"""The recovery slot edited instead of deleted (review1 R05): one byte of its unlock blob
flipped, or its keyring, passed the lead's open, rotation, verify and the record check,
and the recovery passphrase then opened nothing. The key statement (docs/format.md 9b)
names each slot's unlock blob by its SHA-256, and the lead's client checks that the
recovery slot's keyring opens with the copy of its secret it holds."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import RawDB


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add({"legal_name": "Amira Haddad", "badge_name": "Amira"})
    return url, lead, staff


def _flip(blob: bytes, at: int = -5) -> bytes:
    b = bytearray(blob)
    b[at] ^= 1
    return bytes(b)


def test_an_edited_recovery_unlock_is_reported_at_every_open_and_signature(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff = team
    raw = RawDB(url)
    slot_id, unlock, keyring = raw.slot()
    raw.set_slot(slot_id, _flip(unlock), keyring)
    stmt = raw.meta("keys_stmt").decode()
    raw.close()
    assert f"\nslot {slot_id} passphrase {hashlib.sha256(unlock).hexdigest()}\n" in stmt
    with vault.open(url, identity=lead) as v:
        assert any(f"key slot {slot_id} is not the one the lead signed" in w for w in v.warnings)
        v.warnings.clear()
        v.rotate()  # a re-seal writes the keyring, never the unlock blob: still named as signed
        assert any(f"key slot {slot_id} is not the one the lead signed" in w for w in v.warnings)
        v.warnings.clear()
        v.add_user(Identity.generate().public, "kofi", "staff")
        assert any(slot_id in w for w in v.warnings)
    raw = RawDB(url)
    assert f"\nslot {slot_id} passphrase {hashlib.sha256(unlock).hexdigest()}\n" in raw.meta("keys_stmt").decode()
    raw.set_slot(slot_id, unlock, raw.slot()[2])  # the row back from a backup: all is well again
    raw.close()
    with vault.open(url, identity=lead) as v:
        assert not v.warnings
    with vault.open(url, PASSPHRASE) as v:
        assert not v.warnings


def test_an_edited_recovery_keyring_is_reported_and_a_rotation_reseals_it(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff = team
    raw = RawDB(url)
    slot_id, unlock, keyring = raw.slot()
    raw.set_slot(slot_id, unlock, _flip(keyring))
    raw.close()
    with pytest.raises(vault.IntegrityError):
        vault.open(url, PASSPHRASE)
    with vault.open(url, identity=lead) as v:
        assert any(f"key slot {slot_id} holds a keyring its secret does not open" in w for w in v.warnings)
        v.rotate()
    with vault.open(url, PASSPHRASE) as v:  # the lead's rotation sealed it again
        assert not v.warnings


def test_a_users_edited_slot_is_reported_to_the_lead(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff = team
    engine = sa.create_engine(url)
    with engine.begin() as c:
        sid, unlock = c.exec_driver_sql("SELECT slot_id, unlock FROM dv_slots WHERE kind = 'x25519' "
                                        "AND slot_id = (SELECT slot_id FROM dv_users WHERE name = 'sam')").one()
        c.execute(sa.text("UPDATE dv_slots SET unlock = :u WHERE slot_id = :s"), {"u": _flip(bytes(unlock)), "s": sid})
    engine.dispose()
    with vault.open(url, identity=lead) as v:
        assert any(f"key slot of an enrolled user, {sid} is not the one the lead signed" in w for w in v.warnings)


def test_the_leads_own_changes_are_no_warning(team) -> None:  # type: ignore[no-untyped-def]
    """Enrolment, revocation, rotation and a passphrase change seal slots and sign what they
    sealed: no warning at the next opens."""
    url, lead, staff = team
    other = Identity.generate()
    with vault.open(url, identity=lead) as v:
        v.add_user(other.public, "noor", "staff")
        v.rotate()
        v.remove_user(staff.public.user_id)
        assert not v.warnings
    with vault.open(url, PASSPHRASE) as v:
        v.change_passphrase("another recovery passphrase, long")
        assert not v.warnings
    with vault.open(url, identity=lead) as v:
        assert not v.warnings
    with vault.open(url, "another recovery passphrase, long") as v:
        assert not v.warnings
