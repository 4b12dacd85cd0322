"""Recovery shares (vault/shares.py): any k of n SLIP-39 shares open the vault, k-1 do
not; a mistyped word is named by share and word number; shares of another vault or of an
earlier split are refused (by their set id, and by the slot's AEAD when the id is
forged); the split is signed, named in the key statement, re-sealed by rotations, audited."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import vault
from tests.conftest import PASSPHRASE, raw_engine
from vault import shares as SH
from vault.identity import Identity

SECRET = "amira.shares@example.org"


@pytest.fixture
def led(url: str):  # type: ignore[no-untyped-def]
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": SECRET})
    return url, lead, rid


def _split(url: str, lead: Identity, k: int, n: int, **kw: str) -> list[str]:
    with vault.open(url, identity=lead) as v:
        return v.split_recovery(k, n, **kw)


def _reads(v: vault.Vault, rid: str) -> bool:
    return v.get(rid, fields=["email"])["email"] == SECRET


def test_any_k_of_n_open_the_vault_and_k_minus_1_do_not(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, rid = led
    shares = _split(url, lead, 3, 5)
    assert len(shares) == 5 and len(set(shares)) == 5 and all(len(s.split()) == 33 for s in shares)
    for combo in itertools.combinations(shares, 3):
        with vault.open_with_shares(url, list(combo)) as v:
            assert v.user is None and v.role.manage and _reads(v, rid)  # every key: the recovery actor
    for combo in itertools.combinations(shares, 2):
        with pytest.raises(vault.BadShare, match=r"2 share\(s\) given; this split needs 3"):
            vault.open_with_shares(url, list(combo))
    # below the package: k-1 shares do not rebuild the secret either
    from shamir_mnemonic import MnemonicError, combine_mnemonics
    with pytest.raises(MnemonicError):
        combine_mnemonics(shares[:2])
    # order does not matter, more than k is fine (the first k are used)
    with vault.open_with_shares(url, [shares[4], shares[0], shares[2], shares[1]]) as v:
        assert _reads(v, rid)


def test_a_mistyped_word_is_located(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, _ = led
    shares = _split(url, lead, 2, 3)
    from shamir_mnemonic.wordlist import WORDLIST
    for pos in (1, 4, 7, 20, 33):  # every part of a share: set id, parameters, value, checksum
        words = shares[1].split()
        words[pos - 1] = next(w for w in WORDLIST if w != words[pos - 1] and w[0] == words[pos - 1][0])
        with pytest.raises(vault.BadShare) as e:
            vault.open_with_shares(url, [shares[0], " ".join(words)])
        assert (e.value.share, e.value.word) == (2, pos), str(e.value)
        assert f"share 2, word {pos} is wrong" in str(e.value)
        assert words[pos - 1] not in str(e.value)  # positions, never words
    words = shares[0].split()
    words[9] = "qwerty"
    with pytest.raises(vault.BadShare, match="share 1, word 10 is not a SLIP-39 word") as e:
        vault.open_with_shares(url, [" ".join(words), shares[1]])
    words = shares[0].split()
    words[11], words[12] = words[12], words[11]
    if words[11] != words[12]:
        with pytest.raises(vault.BadShare, match="share 1, words 12 and 13 are swapped"):
            vault.open_with_shares(url, [" ".join(words), shares[1]])
    with pytest.raises(vault.BadShare, match="share 2 has 32 words; a share of this vault has 33"):
        vault.open_with_shares(url, [shares[0], " ".join(shares[1].split()[:-1])])
    with pytest.raises(vault.BadShare, match="share 2 is the same trustee's share as share 1"):
        vault.open_with_shares(url, [shares[0], shares[0].upper()])  # case does not matter


def test_shares_of_another_vault_are_refused(led, url2: str) -> None:  # type: ignore[no-untyped-def]
    url, lead, _ = led
    mine = _split(url, lead, 2, 3)
    other_lead = Identity.generate()
    vault.create(url2, PASSPHRASE, lead=other_lead).close()
    theirs = _split(url2, other_lead, 2, 3)
    with pytest.raises(vault.BadShare, match="share 1 is not a share of this vault"):
        vault.open_with_shares(url, theirs[:2])
    with pytest.raises(vault.BadShare, match="share 2 is not a share of this vault"):
        vault.open_with_shares(url, [mine[0], theirs[1]])
    # the set id is a convenience: with it forged to match, the slot's AEAD still refuses
    master = SH.combine([SH.check_share(s, i, None) for i, s in enumerate(theirs[:2], 1)])
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, SH.unlock_text(master))
    with pytest.raises(vault.NotFound, match="no recovery shares"):
        vault.open_with_shares(_fresh(url2), theirs[:2])


def _fresh(url2: str) -> str:
    """A vault without shares, next to url2 (SQLite) or url2 itself emptied (PostgreSQL)."""
    if url2.startswith("sqlite"):
        path = url2.removeprefix("sqlite:///") + ".plain"
        vault.create(path, PASSPHRASE).close()
        return path
    with raw_engine(url2).begin() as conn:
        conn.exec_driver_sql("DELETE FROM dv_meta WHERE name = 'recovery_shares'")
    return url2


def test_a_resplit_kills_the_old_shares(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, rid = led
    old = _split(url, lead, 2, 3)
    with vault.open(url, identity=lead) as v:
        first = v.recovery_shares()
        new = v.split_recovery(3, 4)
        now = v.recovery_shares()
        assert v.warnings == []
    assert first is not None and now is not None
    assert (first["k"], first["n"], now["k"], now["n"]) == (2, 3, 3, 4) and now["slot"] == first["slot"]
    assert now["made"] >= first["made"] and now["set_id"] != first["set_id"]
    with pytest.raises(vault.BadShare, match="share 1 is from an earlier split of this vault's recovery"):
        vault.open_with_shares(url, old[:2])
    # and not only by the set id: the old shares' secret opens nothing now
    master = SH.combine([SH.check_share(s, i, None) for i, s in enumerate(old[:2], 1)])
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, SH.unlock_text(master))
    with vault.open_with_shares(url, new[1:]) as v:
        assert _reads(v, rid)
    with vault.open(url, PASSPHRASE) as v:  # the recovery passphrase stays as it was
        assert _reads(v, rid) and v.warnings == []
    with vault.open(url, identity=lead) as v:
        entries = [e["detail"] for e in v.audit_entries(action="recovery_split")]
        used = v.audit_entries(action="recovery_shares_used")
    assert [(d["k"], d["n"], d["replaced"]) for d in entries] == [(2, 3, False), (3, 4, True)]
    assert len(used) == 1 and used[0]["detail"]["k"] == 3


def test_shares_survive_rotation_passphrase_change_and_revocation(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, rid = led
    shares = _split(url, lead, 2, 3)
    staff = Identity.generate()
    with vault.open(url, identity=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.remove_user(staff.public.user_id)  # rotates every class sam held
        v.rotate()
    with vault.open(url, PASSPHRASE) as v:
        v.change_passphrase("another recovery passphrase")
        v.rotate(["identity"])
    with vault.open_with_shares(url, shares[:2]) as v:
        assert _reads(v, rid) and v.warnings == []
        v.rotate(["contact"])  # a shares opener re-seals every slot too
    with vault.open(url, identity=lead) as v:
        assert _reads(v, rid) and v.warnings == []
    with vault.open(url, "another recovery passphrase") as v:
        assert _reads(v, rid)


def test_the_split_is_signed_and_its_slot_named(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, _ = led
    shares = _split(url, lead, 2, 3)
    with raw_engine(url).begin() as conn:
        blob = bytes(conn.exec_driver_sql("SELECT value FROM dv_meta WHERE name = 'recovery_shares'").scalar_one())
        info = SH.parse_info(blob)[0]
        forged = bytearray(blob)
        forged[2 + 8 + 2] = 1  # k = 1
        conn.exec_driver_sql("UPDATE dv_meta SET value = %s WHERE name = 'recovery_shares'"
                             if not url.startswith("sqlite") else
                             "UPDATE dv_meta SET value = ? WHERE name = 'recovery_shares'", (bytes(forged),))
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError):  # k below 2 is malformed, and the signature fails anyway
            v.recovery_shares()
    forged[2 + 8 + 2] = 3  # k = 3 of n = 3: well formed, signature fails
    _put_meta(url, bytes(forged))
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="failed the lead's signature"):
            v.recovery_shares()
    _put_meta(url, blob)
    # the slot is named in the signed key statement: deleted, the lead is told
    with raw_engine(url).begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM dv_slots WHERE slot_id = '{info.slot_id}'")
    with vault.open(url, identity=lead) as v:
        assert any(info.slot_id in w and "missing" in w for w in v.warnings), v.warnings
        assert "missing" in v.recovery_shares()["problems"][0]  # type: ignore[index]
    with pytest.raises(vault.WrongPassphrase):
        vault.open_with_shares(url, shares[:2])


def _put_meta(url: str, value: bytes) -> None:
    ph = "?" if url.startswith("sqlite") else "%s"
    with raw_engine(url).begin() as conn:
        conn.exec_driver_sql(f"UPDATE dv_meta SET value = {ph} WHERE name = 'recovery_shares'", (value,))


def test_a_slip39_passphrase_is_needed_when_set(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, rid = led
    shares = _split(url, lead, 2, 3, slip39_passphrase="trustee words")
    with pytest.raises(vault.WrongPassphrase, match="a wrong SLIP-39 passphrase"):
        vault.open_with_shares(url, shares[:2], "other words")
    with pytest.raises(vault.WrongPassphrase):
        vault.open_with_shares(url, shares[:2])
    with vault.open_with_shares(url, shares[1:], "trustee words") as v:
        assert _reads(v, rid) and v.recovery_shares()["slip39_passphrase"] is True  # type: ignore[index]
    with vault.open(url, identity=lead) as v, pytest.raises(vault.ValidationError, match="printable ASCII"):
        v.split_recovery(2, 3, slip39_passphrase="naïve")


def test_who_may_split(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, _ = led
    staff = Identity.generate()
    with vault.open(url, identity=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        for k, n in ((1, 3), (4, 3), (2, 17)):
            with pytest.raises(vault.ValidationError, match="2 <= k <= n <= 16"):
                v.split_recovery(k, n)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied):
            v.split_recovery(2, 3)
        assert [e["detail"]["op"] for e in v.audit_entries(action="denied")] == ["recovery_split"]
    with vault.open(url, PASSPHRASE) as v:  # the recovery passphrase may (as it may rotate)
        shares = v.split_recovery(2, 2)
    with vault.open_with_shares(url, shares) as v, pytest.raises(vault.AccessDenied, match="opened with the "
                                                                                           "recovery shares"):
        v.split_recovery(2, 3)
    assert SH.parse_k_of_n(" 3-of-5 ") == (3, 5)
    for bad in ("3 of 5", "3-5", "x-of-5", "1-of-1"):
        with pytest.raises(vault.ValidationError):
            SH.parse_k_of_n(bad)


def test_nothing_secret_in_the_description_or_the_log(led) -> None:  # type: ignore[no-untyped-def]
    url, lead, _ = led
    shares = _split(url, lead, 2, 3)
    with vault.open_with_shares(url, shares[:2]):
        pass
    words = {w for s in shares for w in s.split()[4:]}  # past the set id and parameters
    with raw_engine(url).begin() as conn:
        meta = b"".join(bytes(r[0]) for r in conn.exec_driver_sql("SELECT value FROM dv_meta"))
        audit = repr(conn.exec_driver_sql("SELECT * FROM dv_audit").fetchall())
    master = SH.combine([SH.check_share(s, i, None) for i, s in enumerate(shares[:2], 1)])
    assert master not in meta and SH.unlock_text(master).encode() not in meta
    assert not any(f" {w} " in audit for w in words if len(w) > 4)


def test_repr_and_errors_name_no_share(tmp_path: Path) -> None:
    words = "academic " * 33
    with pytest.raises(vault.BadShare) as e:
        SH.check_share(words, 3, None)
    assert "academic" not in str(e.value) and e.value.share == 3


def test_the_shares_opener_cannot_turn_the_split_into_a_passphrase(led) -> None:  # type: ignore[no-untyped-def]
    """A passphrase change on a handle the shares opened would re-seal the shares' slot under
    a typed passphrase: the split would be dead while its signed description still promised it."""
    url, lead, rid = led
    shares = _split(url, lead, 2, 3)
    with vault.open_with_shares(url, shares[:2]) as v:
        with pytest.raises(vault.AccessDenied, match="opened with the recovery shares"):
            v.change_passphrase("a new long passphrase for the slot")
    with vault.open_with_shares(url, shares[1:]) as v:  # the split still opens
        assert _reads(v, rid)
        assert "problems" not in (v.recovery_shares() or {})
    with vault.open(url, PASSPHRASE) as v:  # the recovery passphrase's opener still may
        v.change_passphrase("the recovery passphrase, changed now")
    with vault.open_with_shares(url, shares[:2]) as v:
        assert _reads(v, rid)


def _drop_description(url: str) -> None:
    eng = raw_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("DELETE FROM dv_meta WHERE name = 'recovery_shares'")
    eng.dispose()


def _opens(url: str, shares: list[str], rid: str) -> bool:
    master = SH.combine([SH.check_share(s, i, None) for i, s in enumerate(shares, 1)])
    try:
        v = vault.open(url, SH.unlock_text(master))
    except vault.WrongPassphrase:
        return False
    with v:
        return _reads(v, rid)


@pytest.mark.parametrize("opener", ["lead", "passphrase"])
def test_a_resplit_kills_the_old_shares_when_their_description_was_deleted(led, opener: str) -> None:  # type: ignore[no-untyped-def]
    """A database writer deletes the shares' description before the lead re-splits (the
    old shares were compromised). The split must still retire the old slot (its secret is
    marked as the shares' in the lead's keyring), not make a second one beside it: the old
    shares open nothing afterwards, through the shares path or as a passphrase, after a
    rotation too; the recovery passphrase and the new shares still open every key; the
    signed statement names the slots the database holds, and the split's entry says a slot
    no description named was retired."""
    url, lead, rid = led
    old = _split(url, lead, 2, 3)
    assert _opens(url, old[:2], rid)
    _drop_description(url)
    kw = {"identity": lead} if opener == "lead" else {"passphrase": PASSPHRASE}
    with vault.open(url, **kw) as v:  # type: ignore[arg-type]
        assert v.recovery_shares() is None
        new = v.split_recovery(2, 3)
        v.rotate()
        assert v.warnings == []
    assert not _opens(url, old[:2], rid)
    assert _opens(url, new[:2], rid)
    with vault.open_with_shares(url, new[1:]) as v:
        assert _reads(v, rid) and v.warnings == []
    for kw in ({"passphrase": PASSPHRASE}, {"identity": lead}):
        with vault.open(url, **kw) as v:  # type: ignore[arg-type]
            assert _reads(v, rid) and v.warnings == [] and v.verify().ok
    with vault.open(url, identity=lead) as v:
        detail = v.audit_entries(action="recovery_split")[-1]["detail"]
    assert detail["replaced"] is False and detail["undescribed_slots"] == 1


def test_the_shares_opener_cannot_split_when_the_description_was_deleted(led) -> None:  # type: ignore[no-untyped-def]
    """Opened with the shares' unlock text as a passphrase (no description to say so), a
    split would retire the recovery passphrase's slot as "the other one": refused."""
    url, lead, rid = led
    old = _split(url, lead, 2, 3)
    _drop_description(url)
    master = SH.combine([SH.check_share(s, i, None) for i, s in enumerate(old[:2], 1)])
    with vault.open(url, SH.unlock_text(master)) as v, pytest.raises(vault.AccessDenied, match="recovery shares"):
        v.split_recovery(2, 3)
    with vault.open(url, PASSPHRASE) as v:
        assert _reads(v, rid)


def test_an_unmarked_shares_slot_without_its_description_is_refused(led) -> None:  # type: ignore[no-untyped-def]
    """A split by an earlier release left the shares' secret unmarked in the keyring. With
    its description deleted nothing tells its slot from the recovery passphrase's: the
    split refuses (naming what to put back) rather than leave the old shares working or
    retire the wrong slot."""
    from vault import _format as F
    from vault import keys as K
    url, lead, rid = led
    _split(url, lead, 2, 3)
    with vault.open(url, identity=lead) as v:  # as an earlier release sealed it: version 1
        a = v._access
        assert a.ring is not None
        ring = K.Keyring([K.Key(k.kind, k.name, 1, k.kid, k.secret)
                          if k.kind == K.KIND_SLOT_SECRET and k.version == F.SHARES_SLOT_SECRET_VERSION else k
                          for k in a.ring.keys])
        store = v._ses.store()
        with store.tx() as conn:
            store.lock_keys(conn)
            a.reseal_slots(conn, ring)
        a.load_ring(ring)
    _drop_description(url)
    for kw in ({"identity": lead}, {"passphrase": PASSPHRASE}):
        with vault.open(url, **kw) as v:  # type: ignore[arg-type]
            with pytest.raises(vault.IntegrityError, match="put the dv_meta row 'recovery_shares' back"):
                v.split_recovery(2, 3)
