"""What the faster single add of a managing handle (issue 22, single adds) must still do:
each check it now answers from what it checked or wrote at the previous add (a signature
it made, a statement it parsed, a recovery keyring it opened, a canary list it sealed)
is answered so only for the same bytes. An edit of the user table, the key statement, a
slot or the canary list made between two adds is still refused (or, for a slot, reported)
by the next add, and the refused add writes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _crypto as C

Team = tuple[str, Identity, Identity]


@pytest.fixture
def team(url: str) -> Team:
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add({"badge_name": "first", "email": "first@example.org"})
    return url, lead, staff


@pytest.fixture(params=["lead", "passphrase"])
def manager(request: pytest.FixtureRequest, team: Team) -> Iterator[tuple[vault.Vault, RawDB, str]]:
    """A managing handle (the lead's identity or the recovery passphrase) that has added
    twice (so every memo holds what the previous add checked and wrote), and the raw DB."""
    url, lead, _ = team
    v = vault.open(url, identity=lead) if request.param == "lead" else vault.open(url, PASSPHRASE)
    raw = RawDB(url)
    try:
        _add(v, "a")
        _add(v, "b")
        yield v, raw, url
    finally:
        raw.close()
        v.close()


def _add(v: vault.Vault, tag: str) -> str:
    return v.add({"badge_name": tag, "email": f"{tag}@example.org"})


def _flip(blob: bytes, at: int = -5) -> bytes:
    b = bytearray(blob)
    b[at] ^= 1
    return bytes(b)


def _refused(v: vault.Vault, before: int) -> None:
    with pytest.raises(vault.IntegrityError):
        _add(v, "refused")
    assert v.count() == before  # the refused add wrote nothing


def test_a_signature_remembered_at_signing_holds_for_its_own_key_and_bytes_only() -> None:
    seed = C.random_bytes(32)
    signer, pk = C.Signer(seed), C.ed25519_public(seed)
    msg = b"dvault test statement, signed by this key"
    sig = signer.sign_known(msg)
    assert sig == signer(msg)  # the same signature as ever (Ed25519 is deterministic)
    assert (pk, msg, sig) in C._VERIFIED  # remembered under the key derived from the seed
    C.ed25519_verify_again(pk, msg, sig)
    other = C.ed25519_public(C.random_bytes(32))
    for bad in [(other, msg, sig), (pk, msg + b"!", sig), (pk, msg, _flip(sig, 3))]:
        with pytest.raises(C.AuthFailure):
            C.ed25519_verify_again(*bad)


def test_an_edited_user_table_is_refused_by_the_next_add(manager: tuple[vault.Vault, RawDB, str]) -> None:
    v, _, url = manager
    n = v.count()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("UPDATE dv_users SET name = 'mallory' WHERE name = 'sam'"))
        _refused(v, n)
        with engine.begin() as c:  # put back: the same bytes as signed, the add goes through
            c.execute(sa.text("UPDATE dv_users SET name = 'sam' WHERE name = 'mallory'"))
    finally:
        engine.dispose()
    _add(v, "c")
    assert v.count() == n + 1


def test_an_edited_or_older_key_statement_is_refused_by_the_next_add(manager: tuple[vault.Vault, RawDB, str]) -> None:
    """The statement this handle signed at its previous add is remembered as verified (the
    signature) and parsed: an edit of it, and an older one this handle also signed (put back
    with its signature), are refused all the same."""
    v, raw, _ = manager
    n = v.count()
    older = raw.meta("keys_stmt"), raw.meta("keys_stmt_sig")
    _add(v, "c")
    now = raw.meta("keys_stmt"), raw.meta("keys_stmt_sig")
    assert now != older
    raw.set_meta("keys_stmt", now[0].replace(b"\nusers ", b"\nusers 0", 1)[:-2] + b"\n")
    _refused(v, n + 1)
    raw.set_meta("keys_stmt", now[0])
    raw.set_meta("keys_stmt_sig", _flip(now[1]))
    _refused(v, n + 1)
    raw.set_meta("keys_stmt", older[0])  # our own earlier signature: it names another canary list
    raw.set_meta("keys_stmt_sig", older[1])
    _refused(v, n + 1)
    raw.set_meta("keys_stmt", now[0])
    raw.set_meta("keys_stmt_sig", now[1])
    _add(v, "d")
    assert v.count() == n + 2


def test_an_edited_or_older_canary_list_is_refused_by_the_next_add(manager: tuple[vault.Vault, RawDB, str]) -> None:
    """The list this handle sealed last is not opened again at the next add (same bytes,
    same list): a list edited, or put back from an earlier add of this handle, is refused."""
    v, raw, _ = manager
    n = v.count()
    older = raw.meta("canaries")
    _add(v, "c")
    now = raw.meta("canaries")
    assert now != older
    for bad in (_flip(now), older, b""):
        raw.set_meta("canaries", bad)
        _refused(v, n + 1)
    raw.set_meta("canaries", now)
    _add(v, "d")
    assert v.count() == n + 2


def test_an_edited_recovery_keyring_is_reported_by_the_next_add_of_the_lead(team: Team) -> None:
    """The lead's add opens the recovery slot's keyring with its copy of the secret; an
    opening remembered from the previous add holds only for the same bytes."""
    url, lead, _ = team
    raw = RawDB(url)
    try:
        with vault.open(url, identity=lead) as v:
            _add(v, "a")
            _add(v, "b")
            assert not v.warnings
            slot_id, unlock, keyring = raw.slot()
            raw.set_slot(slot_id, unlock, _flip(keyring))
            _add(v, "c")
            assert any(f"key slot {slot_id} holds a keyring its secret does not open" in w for w in v.warnings)
            v.warnings.clear()
            _add(v, "d")  # still edited: reported again, not remembered as opened
            assert any(f"key slot {slot_id} holds a keyring its secret does not open" in w for w in v.warnings)
            v.warnings.clear()
            raw.set_slot(slot_id, _flip(unlock), keyring)
            _add(v, "e")
            assert any(f"key slot {slot_id} is not the one the lead signed" in w for w in v.warnings)
            raw.set_slot(slot_id, unlock, keyring)
            v.warnings.clear()
            _add(v, "f")
            assert not v.warnings
    finally:
        raw.close()
    with vault.open(url, PASSPHRASE) as v:  # nothing the lead signed in between named the edits
        assert not v.warnings
        assert v.count() == 7


def test_a_user_slot_edited_between_adds_is_reported_by_the_next_add(team: Team) -> None:
    url, lead, _ = team
    engine = sa.create_engine(url)
    try:
        with vault.open(url, identity=lead) as v:
            _add(v, "a")
            _add(v, "b")
            with engine.begin() as c:
                sid, unlock = c.exec_driver_sql(
                    "SELECT slot_id, unlock FROM dv_slots WHERE slot_id = "
                    "(SELECT slot_id FROM dv_users WHERE name = 'sam')").one()
                c.execute(sa.text("UPDATE dv_slots SET unlock = :u WHERE slot_id = :s"),
                          {"u": _flip(bytes(unlock)), "s": sid})
            _add(v, "c")
            assert any(f"key slot of an enrolled user, {sid} is not the one the lead signed" in w for w in v.warnings)
    finally:
        engine.dispose()


def test_the_recovery_signer_is_expanded_once_per_handle(team: Team) -> None:
    url, _, _ = team
    with vault.open(url, PASSPHRASE) as v:
        a = v._access
        assert a.plan_signer()[1] is a.plan_signer()[1]
        who, sign = a.plan_signer()
        assert who == b"R" and C.ed25519_public(a.recovery_keys()[1]) == bytes(sign._sk[32:])  # type: ignore[attr-defined,index]


def test_a_canary_another_handle_planted_between_two_adds_stays_listed(team: Team) -> None:
    """The list a handle sealed at its previous add is reused only while the database holds
    those bytes: after another managing handle's add (here: a canary planted), the next add
    opens the stored list, and keeps the other handle's canary in what it seals."""
    url, lead, _ = team
    with vault.open(url, identity=lead) as a, vault.open(url, PASSPHRASE) as b:
        _add(a, "a")
        _add(a, "b")
        _add(b, "c")
        planted = a.plant_canary({"badge_name": "decoy", "email": "decoy@example.org"})
        _add(b, "d")  # b last sealed before the canary: it must not seal its own older list again
        _add(a, "e")
        _add(b, "f")
    with vault.open(url, identity=lead) as v:
        assert v.canary_count() == 1
        assert planted in v._canaries.live()
