"""Recovery shares: the way back into a vault split among k of n trustees (SLIP-39).

Why it is built this way. The recovery passphrase is one secret one person holds: one
point of coercion and of loss. A split gives each of n trustees one SLIP-39 mnemonic
(the ``shamir-mnemonic`` package: Shamir's scheme over GF(256), an RS1024 checksum per
share, an optional passphrase); any k of them rebuild a random 256-bit master secret, and
fewer than k tell nothing about it. The master secret opens one more key slot of the
vault, which holds every key, as the recovery passphrase's does.

That slot is an ordinary passphrase slot (kind P, dv_slots kind ``passphrase``) whose
passphrase is derived from the master secret (docs/format.md 8g). So it is what the
rest of the vault already knows how to keep: named by digest in the lead's signed key
statement, its secret in the lead's keyring, re-sealed at every rotation, opened by
``vault.open`` like the recovery passphrase's; an opener with the shares is the recovery
actor. What the shares are (their SLIP-39 set id, k, n, when they were made, whether a
SLIP-39 passphrase protects them) is a description in dv_meta, signed by the lead or the
recovery actor, bound to the slot's digest. A re-split keeps the slot id and replaces
its secret and its passphrase: old shares rebuild an old master secret, which opens
nothing any more; their set id is remembered, to tell their holder so.

The description is read before the vault is opened, to check each share as it is typed
(there is no key yet to check the description's signature with): a database writer can
make good shares be refused (as they can delete the slot) but not make other shares
work, since only the slot's AEAD decides. After the open, the signature is checked.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _crypto as C
from . import _format as F
from . import keys as K
from .errors import AccessDenied, BadShare, IntegrityError, NotFound, ValidationError, VaultError, WrongPassphrase
from .store import Store

META_NAME = "recovery_shares"
SLOT_KIND = "passphrase"  # dv_slots kind: the shares' slot is a passphrase slot
_BODY_FIXED = 2 + F.KID_LEN + 2 + 1 + 1 + 1 + 1 + 8 + 32 + 1
_FLAG_PASSPHRASE = 1


# -- what the shares are ----------------------------------------------------------------------
@dataclass(frozen=True)
class Info:
    """The description of a split (docs/format.md 8g). Public: no secret in it."""

    slot_id: str  # hex key id of the shares' key slot
    identifier: int  # SLIP-39 set id (15 bits), in every share of the split
    k: int
    n: int
    iteration_exponent: int
    passphrase: bool  # a SLIP-39 passphrase protects the shares
    created_ms: int
    unlock_digest: bytes  # SHA-256 of the slot's unlock blob as the split sealed it
    retired: tuple[int, ...] = ()  # set ids of earlier splits (their shares open nothing)

    def body(self) -> bytes:
        flags = _FLAG_PASSPHRASE if self.passphrase else 0
        return (bytes([F.FORMAT_VERSION]) + F.KIND_SHARES_INFO + bytes.fromhex(self.slot_id)
                + struct.pack(">HBBBBQ", self.identifier, self.k, self.n, self.iteration_exponent, flags,
                              self.created_ms)
                + self.unlock_digest + bytes([len(self.retired)])
                + b"".join(struct.pack(">H", r) for r in self.retired))

    def signed(self, vault_id: bytes, who: bytes, sign: Callable[[bytes], bytes]) -> bytes:
        body = self.body()
        return body + who + sign(F.LABEL_SHARES_SIG + vault_id + body)

    def describe(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "made": _iso(self.created_ms), "slot": self.slot_id,
                "set_id": self.identifier, "slip39_passphrase": self.passphrase}


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def parse_info(blob: bytes) -> tuple[Info, bytes, bytes]:
    """(description, signer byte, signature) as stored; framing checked, signature not."""
    bad = IntegrityError("the recovery shares' description is malformed (edited in the database?)")
    if len(blob) < _BODY_FIXED or blob[0] != F.FORMAT_VERSION or blob[1:2] != F.KIND_SHARES_INFO:
        raise bad
    pos = 2
    slot_id = blob[pos:pos + F.KID_LEN].hex()
    pos += F.KID_LEN
    ident, k, n, exp, flags, created = struct.unpack_from(">HBBBBQ", blob, pos)
    pos += 14
    digest = blob[pos:pos + 32]
    count = blob[pos + 32]
    pos += 33
    end = pos + 2 * count
    if len(blob) != end + 1 + C.ED25519_SIG_LEN or flags & ~_FLAG_PASSPHRASE or not 2 <= k <= n <= F.SHARES_MAX \
            or ident >> 15:
        raise bad
    retired = tuple(struct.unpack_from(">H", blob, pos + 2 * i)[0] for i in range(count))
    info = Info(slot_id, ident, k, n, exp, bool(flags & _FLAG_PASSPHRASE), created, digest, retired)
    return info, blob[end:end + 1], blob[end + 1:]


def verify_info(blob: bytes, ring: K.Keyring, vault_id: bytes) -> Info:
    """The description, its signature checked against the lead's or the recovery actor's
    key in ``ring`` (an authenticated keyring)."""
    info, who, sig = parse_info(blob)
    key = K.signers(ring).get(who)
    if key is None:
        raise IntegrityError("the recovery shares' description carries no signature of the lead or the recovery key")
    try:
        C.ed25519_verify(key, F.LABEL_SHARES_SIG + vault_id + blob[:len(blob) - 1 - C.ED25519_SIG_LEN], sig)
    except C.AuthFailure:
        raise IntegrityError("the recovery shares' description failed the lead's signature (edited in the "
                             "database?)") from None
    return info


def parse_k_of_n(text: str) -> tuple[int, int]:
    """"3-of-5" -> (3, 5): 2 <= k <= n <= 16 (one share is the recovery passphrase)."""
    parts = text.strip().lower().split("-of-") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValidationError("give the shares as K-of-N, e.g. 3-of-5")
    k, n = int(parts[0]), int(parts[1])
    check_k_of_n(k, n)
    return k, n


def check_k_of_n(k: int, n: int) -> None:
    if type(k) is not int or type(n) is not int or not 2 <= k <= n <= F.SHARES_MAX:
        raise ValidationError(f"k-of-n needs 2 <= k <= n <= {F.SHARES_MAX} (for one holder, use the recovery "
                              "passphrase)")


def unlock_text(master_secret: bytes) -> str:
    """The passphrase of the shares' key slot, from the SLIP-39 master secret."""
    return F.SHARES_UNLOCK_PREFIX + C.hkdf_sha256(master_secret, F.LABEL_SHARES_UNLOCK).hex()


def _slip39_passphrase(text: str) -> bytes:
    if not isinstance(text, str) or any(not 32 <= ord(c) <= 126 for c in text):
        raise ValidationError("a SLIP-39 passphrase is printable ASCII only (letters, digits, spaces, punctuation)")
    return text.encode("ascii")


# -- checking shares as they are typed ---------------------------------------------------------
def check_share(text: str, number: int, info: Info | None, earlier: Sequence[Any] = ()) -> Any:
    """The share (a ``shamir_mnemonic.Share``) typed as the ``number``-th, or BadShare naming
    the share and, where it can be told, the word: a word not in the SLIP-39 list, a share
    of the wrong length, a failed checksum (the one word that fixes it is located: RS1024
    corrects any single wrong word), a share of another vault or of an older split, or the
    same trustee's share twice (``earlier``: the shares accepted so far)."""
    from shamir_mnemonic import MnemonicError, Share
    from shamir_mnemonic.wordlist import WORD_INDEX_MAP
    words = text.lower().split() if isinstance(text, str) else []
    if not words:
        raise BadShare(f"share {number} is empty", share=number)
    for i, w in enumerate(words, 1):
        if w not in WORD_INDEX_MAP:
            raise BadShare(f"share {number}, word {i} is not a SLIP-39 word (check its spelling on the paper)",
                           share=number, word=i)
    want = _share_words()
    if len(words) != want:
        raise BadShare(f"share {number} has {len(words)} words; a share of this vault has {want} "
                       f"({'a word is missing' if len(words) < want else 'one too many'}?)", share=number)
    indices = [WORD_INDEX_MAP[w] for w in words]
    try:
        share = Share.from_mnemonic(" ".join(words))
    except MnemonicError:
        raise _locate(number, indices) from None
    _match(share, number, info, earlier)
    return share


def _share_words() -> int:
    from shamir_mnemonic.constants import METADATA_LENGTH_WORDS
    from shamir_mnemonic.utils import bits_to_words
    return int(METADATA_LENGTH_WORDS + bits_to_words(F.SHARES_SECRET_LEN * 8))


def _locate(number: int, indices: list[int]) -> BadShare:
    """Which word is wrong: the positions where another word makes the checksum pass (one,
    for a single wrong word), else two neighbours swapped, else "more than one"."""
    from shamir_mnemonic import rs1024
    from shamir_mnemonic.constants import RADIX
    from shamir_mnemonic.share import _customization_string
    custom = [_customization_string(False), _customization_string(True)]

    def ok(data: list[int]) -> bool:
        return any(rs1024.verify_checksum(data, c) for c in custom)

    found = []
    for pos in range(len(indices)):
        trial = list(indices)
        for cand in range(RADIX):
            if cand != indices[pos]:
                trial[pos] = cand
                if ok(trial):
                    found.append(pos + 1)
                    break
    if len(found) == 1:
        return BadShare(f"share {number}, word {found[0]} is wrong (the share's checksum fails; check that word "
                        "against the paper)", share=number, word=found[0])
    for pos in range(len(indices) - 1):
        trial = list(indices)
        trial[pos], trial[pos + 1] = trial[pos + 1], trial[pos]
        if ok(trial):
            return BadShare(f"share {number}, words {pos + 1} and {pos + 2} are swapped (the share's checksum fails)",
                            share=number, word=pos + 1)
    return BadShare(f"share {number}: the checksum fails, with more than one word wrong; check it against the paper",
                    share=number)


def _match(share: Any, number: int, info: Info | None, earlier: Sequence[Any]) -> None:
    if info is not None and share.identifier != info.identifier:
        if share.identifier in info.retired:
            raise BadShare(f"share {number} is from an earlier split of this vault's recovery, replaced on "
                           f"{_iso(info.created_ms)}: it opens nothing now; use a share of the current split",
                           share=number)
        raise BadShare(f"share {number} is not a share of this vault (its set id differs): a share of another "
                       "vault, or from another split", share=number)
    if info is not None and (share.group_count != 1 or share.member_threshold != info.k):
        raise BadShare(f"share {number} is not a share of this vault's split ({info.k}-of-{info.n})", share=number)
    for i, e in enumerate(earlier, 1):
        if e.identifier != share.identifier:
            raise BadShare(f"share {number} is from another split than share {i}", share=number)
        if e.index == share.index:
            raise BadShare(f"share {number} is the same trustee's share as share {i}: each must come from "
                           "another trustee", share=number)


def combine(shares: Sequence[Any], slip39_passphrase: str = "") -> bytes:
    """The master secret from k checked shares (``check_share``); BadShare with fewer."""
    from shamir_mnemonic import MnemonicError
    from shamir_mnemonic.shamir import decode_mnemonics, recover_ems
    if not shares:
        raise BadShare("no share given")
    need = shares[0].member_threshold
    if len(shares) < need:
        raise BadShare(f"{len(shares)} share(s) given; this split needs {need}")
    try:
        ems = recover_ems(decode_mnemonics([s.mnemonic() for s in shares[:need]]))
        master: bytes = ems.decrypt(_slip39_passphrase(slip39_passphrase))
    except MnemonicError:
        raise BadShare("the shares do not combine (their digest fails): one of them was changed, or they "
                       "are of different splits") from None
    return master


# -- reading the description before an open ----------------------------------------------------
def _url(url: str | os.PathLike[str]) -> str:
    text = os.fspath(url)
    return text if "://" in text else "sqlite:///" + os.path.abspath(text)


def stored_info(url: str | os.PathLike[str]) -> Info:
    """The description as the database holds it (unauthenticated: see the module's doc),
    NotFound if the vault has no recovery shares."""
    store = Store(_url(url), create=False)
    try:
        if not store.has_vault():
            raise NotFound("no vault in this database")
        with store.tx(write=False) as conn:
            blob = store.get_meta_values(conn, [META_NAME]).get(META_NAME)
    finally:
        store.dispose()
    if not blob:
        raise NotFound("this vault has no recovery shares (the lead makes them with dvault recovery split)")
    return parse_info(blob)[0]


def open_with_shares(url: str | os.PathLike[str], mnemonics: Sequence[str], slip39_passphrase: str = "", *,
                     opener: Callable[[str | os.PathLike[str], str], Any]) -> Any:
    """Open the vault at ``url`` with k recovery shares: every key, as the recovery actor
    (the recovery passphrase's powers). Each share is checked first (BadShare names the
    first wrong one); WrongPassphrase if they combine but open nothing (a wrong SLIP-39
    passphrase). ``opener`` is ``vault.open`` (``vault.vault.open_with_shares`` passes it, so
    that this module stays below the Vault class). The open is audited (``recovery_shares_used``) on the handle."""
    info = stored_info(url)
    checked: list[Any] = []
    for i, text in enumerate(mnemonics, 1):
        checked.append(check_share(text, i, info, checked))
    master = combine(checked, slip39_passphrase)
    try:
        v = opener(url, unlock_text(master))
    except WrongPassphrase:
        raise WrongPassphrase("the shares combine but open nothing in this vault"
                              + (": a wrong SLIP-39 passphrase?" if info.passphrase else
                                 " (the split was replaced, or its key slot edited)")) from None
    try:
        v.note_share_recovery()
    except BaseException:
        v.close()
        raise
    return v


# -- the split, on an open vault ---------------------------------------------------------------
@dataclass
class Host:
    """What a split needs of an open vault, from the facade's collaborators (vault.lifecycle
    builds it)."""

    store: Store
    vault_id: bytes
    ring: K.Keyring
    slot_kid: bytes
    manage: bool
    all_classes: bool
    signer: Callable[[], tuple[bytes, Callable[[bytes], bytes]]]
    check_keys: Callable[[Any], None]
    reseal: Callable[[Any, K.Keyring], None]
    load_ring: Callable[[K.Keyring], None]
    audit: Callable[[str, str, dict[str, Any]], None]
    passphrase_opener: bool  # opened with a passphrase slot (the recovery passphrase's, or the shares')


def _current(host: Host) -> Info | None:
    with host.store.tx(write=False) as conn:
        blob = host.store.get_meta_values(conn, [META_NAME]).get(META_NAME)
    return verify_info(blob, host.ring, host.vault_id) if blob else None


def _shares_opener() -> AccessDenied:
    return AccessDenied("opened with the recovery shares: open with the lead's identity or the recovery "
                        "passphrase to split them anew")


def shares_slots(host: Host, old: Info | None) -> set[str]:
    """The ids of every shares slot the keys know of: those whose secret the full keyring
    marks as the shares' (F.SHARES_SLOT_SECRET_VERSION), and the one the signed description
    names. Why the keyring: only a holder of every key writes it, while a database writer
    can delete the description; a split that trusted the description alone made a second
    slot beside the first, and the earlier shares kept opening every key.
    IntegrityError when the description is missing and the keyring holds a secret of
    another passphrase slot than the opener's own that no mark tells apart from the
    recovery passphrase's (a split by an older release): which slot to retire is unknown.
    AccessDenied when the opener's own slot is one of them (opened with the shares)."""
    marked = {k.name for k in host.ring.keys
              if k.kind == K.KIND_SLOT_SECRET and k.version == F.SHARES_SLOT_SECRET_VERSION}
    if host.slot_kid.hex() in marked | ({old.slot_id} if old is not None else set()):
        raise _shares_opener()
    if old is not None:
        return marked | {old.slot_id}
    unmarked = {k.name for k in host.ring.keys
                if k.kind == K.KIND_SLOT_SECRET and k.version != F.SHARES_SLOT_SECRET_VERSION}
    if (host.passphrase_opener and unmarked - {host.slot_kid.hex()}) or (not host.passphrase_opener
                                                                          and len(unmarked) > 1):
        raise IntegrityError("the signed description of the recovery shares is missing (deleted in the database?) "
                             "and the keys do not tell their slot from the recovery passphrase's: put the "
                             "dv_meta row 'recovery_shares' back from a backup, then split again")
    return marked


def split(host: Host, k: int, n: int, slip39_passphrase: str = "", kdf: F.KdfParams | None = None) -> list[str]:
    """A new split: n SLIP-39 mnemonics, any k of which open the vault; returned once,
    stored nowhere. A re-split keeps the slot id with a new secret and a new passphrase
    and removes any other shares slot (:func:`shares_slots`): the shares of every earlier
    split open nothing afterwards. Audited (``recovery_split``)."""
    from shamir_mnemonic.shamir import EncryptedMasterSecret, split_ems
    check_k_of_n(k, n)
    secret_pass = _slip39_passphrase(slip39_passphrase)
    if not host.manage or not host.all_classes:
        raise AccessDenied("a recovery split is for the security lead (or the recovery passphrase)")
    who, sign = host.signer()
    params = F.KDF_DEFAULT if kdf is None else kdf
    K.check_kdf(params)
    old = _current(host)
    earlier = shares_slots(host, old)
    used = {old.identifier, *old.retired} if old is not None else set()
    identifier = next(i for i in iter(lambda: int.from_bytes(C.random_bytes(2), "big") & 0x7FFF, -1)
                      if i not in used)
    master = C.random_bytes(F.SHARES_SECRET_LEN)
    ems = EncryptedMasterSecret.from_master_secret(master, secret_pass, identifier, False, F.SHARES_ITERATION_EXPONENT)
    mnemonics = [s.mnemonic() for s in split_ems(1, [(k, n)], ems)[0]]
    slot_kid = bytes.fromhex(old.slot_id) if old is not None else C.random_bytes(F.KID_LEN)
    if host.slot_kid == slot_kid:
        raise _shares_opener()
    slot_id, secret = slot_kid.hex(), C.random_bytes(F.KEY_LEN)
    gone = earlier | {slot_id}
    ring = K.Keyring([k_ for k_ in host.ring.keys if not (k_.kind == K.KIND_SLOT_SECRET and k_.name in gone)]
                     + [K.Key(K.KIND_SLOT_SECRET, slot_id, F.SHARES_SLOT_SECRET_VERSION, bytes(F.KID_LEN), secret)])
    unlock = K.seal_passphrase_slot(unlock_text(master), secret, slot_kid, host.vault_id, params)
    retired = ((old.identifier, *old.retired) if old is not None else ())[:F.SHARES_RETIRED_MAX]
    info = Info(slot_id, identifier, k, n, F.SHARES_ITERATION_EXPONENT, bool(secret_pass), int(time.time() * 1000),
                C.sha256(unlock), retired)
    store = host.store
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row (the re-seal writes every slot)
        host.check_keys(conn)
        current = store.get_meta_values(conn, [META_NAME]).get(META_NAME)
        if (current and parse_info(current)[0].slot_id) != (old.slot_id if old is not None else None):
            raise VaultError("the recovery shares changed while this split was made; run it again")
        for sid in sorted(earlier - {slot_id}):  # a slot beside the described one (its description deleted)
            store.delete_slot(conn, sid)
        store.put_slot(conn, slot_id, SLOT_KIND, unlock, K.seal_keyring(secret, slot_kid, host.vault_id, ring),
                       new=old is None)
        store.put_meta(conn, {META_NAME: info.signed(host.vault_id, who, sign)})
        host.reseal(conn, ring)  # every slot gets the keyring with the new slot's secret; the statement names it
    host.load_ring(ring)
    host.audit("recovery_split", "", {"k": k, "n": n, "replaced": old is not None,
                                      "slip39_passphrase": bool(secret_pass),
                                      **({"undescribed_slots": len(earlier - {slot_id})}
                                         if earlier - {slot_id} else {})})
    return mnemonics


def describe(host: Host) -> dict[str, Any] | None:
    """What the shares are (k, n, when made), or None; ``problems`` lists what differs
    from what the signature says (the slot missing or not the one signed)."""
    info = _current(host)
    if info is None:
        return None
    out = info.describe()
    with host.store.tx(write=False) as conn:
        slots = {r[0]: r for r in host.store.get_slots(conn)}
    row = slots.get(info.slot_id)
    if row is None or row[1] != SLOT_KIND:
        out["problems"] = ["the shares' key slot is missing (deleted in the database?): the shares open nothing"]
    elif not C.mac_equal(C.sha256(row[2]), info.unlock_digest):
        out["problems"] = ["the shares' key slot is not the one the split sealed (edited in the database?): "
                           "the shares may open nothing; split them anew"]
    return out


def opened(host: Host) -> None:
    """After an open with the shares: the description's signature checked (it names the
    slot the handle opened), and the open audited."""
    info = _current(host)
    if info is None or info.slot_id != host.slot_kid.hex():
        raise IntegrityError("the shares opened a key slot the signed description does not name (edited in the "
                             "database?)")
    host.audit("recovery_shares_used", "", {"k": info.k, "n": info.n, "made": _iso(info.created_ms)})
