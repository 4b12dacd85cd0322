"""When the key statement (docs/format.md 9b) is signed, and what is checked before.

The statement is the one signed value that ties the database's loose rows to the lead: the
keys, the database schema version, the user table, the canary list and the key slots that
must exist. Every signature of it goes through :func:`sign`, which never signs what it did
not check: the version is the one this client opened the vault at (a version raised in the
database is refused, not signed), the user table and canary list are the verified ones or
the ones the caller is changing, and the slots are those the previous statement named (or,
the first time, those the signer's own keyring vouches for), never those the database
happens to hold. Each slot is named with the SHA-256 of its ``unlock`` blob: the one this
signer sealed in the signing transaction, else the one the previous statement named (the
first time: the one the database holds). A slot the statement names but the database lacks
or holds with other bytes (the recovery passphrase's, deleted or edited), and a passphrase
slot whose keyring the signer's copy of its secret does not open, are reported to the
signer at every open and signature, and stay named as they were: no signature launders
their loss.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, NamedTuple, Protocol

from . import _crypto as C
from . import _format as F
from . import keys as K
from . import users as U
from .errors import IntegrityError, VaultError
from .session import Session

PASSPHRASE = "passphrase"  # noqa: S105 - a slot kind, not a secret
#: The digest a statement names for a slot whose bytes its signer never saw (missing when
#: the first statement of the third kind was signed); the next signature takes the stored one.
UNSEEN = "0" * 64


class KeyHolder(Protocol):
    """What a signature needs of the handle that signs (vault.access.Access is one)."""

    ses: Session
    ring: K.Keyring | None
    slot_kid: bytes
    lead_vk: bytes | None
    #: passphrase slot id -> (secret, keyring blob) that opened (:func:`keyring_problems`)
    opened_slots: dict[str, tuple[bytes, bytes]]

    def verified_users(self, conn: Any, *, statement: bool = True) -> list[U.User]: ...

    def plan_signer(self) -> tuple[bytes, Callable[[bytes], bytes]]: ...


class Slot(NamedTuple):
    """A key slot that must exist: its kind and the hex SHA-256 of its unlock blob (None:
    not named yet, the stored one is taken)."""

    kind: str
    digest: str | None


def keys_meta(ring: K.Keyring, vault_id: bytes, who: bytes, sign: Callable[[bytes], bytes], db_version: int,
              users: list[U.User], slots: dict[str, tuple[str, str]], canaries: bytes) -> dict[str, bytes]:
    """The signed key statement (docs/format.md 9b), as dv_meta stores it."""
    text = K.key_statement(ring, vault_id, db_version, U.roster_digest(vault_id, users), slots=slots,
                           canaries=canaries)
    return {"keys_stmt": text.encode("ascii"), "keys_stmt_sig": K.sign_text("keys", vault_id, text, who, sign)}


def meta_version(meta: dict[str, bytes]) -> int:
    """The stored ``db_schema_version`` (not authenticated by itself: the key statement
    signs it from v7 on)."""
    try:
        return int(meta["db_schema_version"])
    except (KeyError, ValueError):
        raise IntegrityError("vault metadata is missing or malformed") from None


def check(meta: dict[str, bytes], ring: K.Keyring, vault_id: bytes, db_version: int,
          users: list[U.User]) -> int | None:
    """Check the stored key statement against a keyring, a database version, the user table
    and the stored canary list (K.check_key_statement); the version it signs (0: the first
    kind), or None if there is none."""
    if not meta.get("keys_stmt"):
        return None
    return K.check_key_statement(ring, vault_id, _text(meta), meta.get("keys_stmt_sig", b""), db_version=db_version,
                                 roster=U.roster_digest(vault_id, users), canaries=meta.get("canaries"))


def stored(meta: dict[str, bytes], ring: K.Keyring, vault_id: bytes) -> K.Statement | None:
    """The stored statement's lines, its signature checked (None if there is none)."""
    if not meta.get("keys_stmt"):
        return None
    text = _text(meta)
    K.verify_text("keys", ring, vault_id, text, meta.get("keys_stmt_sig", b""))
    return K.parse_statement(text)


def _text(meta: dict[str, bytes]) -> str:
    try:
        return meta["keys_stmt"].decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityError("the signed key statement is malformed") from None


def expected_slots(v: KeyHolder, meta: dict[str, bytes], users: list[U.User], ring: K.Keyring) -> dict[str, Slot]:
    """Every key slot that must exist: the passphrase slots the stored statement names (the
    first statement of the third kind: those whose secrets the signer's keyring holds, the
    lead's copy of the recovery slot's, and a passphrase opener's own) and the slot of each
    enrolled user of ``users``; each with the digest the stored statement names for it."""
    st = stored(meta, ring, v.ses.vid)
    named = {sid: Slot(kind, None if digest == UNSEEN else digest)
             for sid, kind, digest in (st.slots if st is not None and st.kind == 3 else ())}
    if st is not None and st.kind == 3:
        out = {sid: slot for sid, slot in named.items() if slot.kind == PASSPHRASE}
        # and a passphrase slot the signer's keyring holds the secret of (recovery shares, just made)
        out.update({k.name: Slot(PASSPHRASE, None) for k in ring.keys
                    if k.kind == K.KIND_SLOT_SECRET and k.name not in out})
    else:
        out = {k.name: Slot(PASSPHRASE, None) for k in ring.keys if k.kind == K.KIND_SLOT_SECRET}
        if v.ses.user is None:
            out[v.slot_kid.hex()] = Slot(PASSPHRASE, None)
    for u in users:
        if u.role != U.REVOKED:
            was = named.get(u.slot_id)
            out[u.slot_id] = was if was is not None and was.kind == U.KIND_X25519 else Slot(U.KIND_X25519, None)
    return out


def slot_problems(expected: dict[str, Slot], slot_rows: list[tuple[Any, ...]],
                  fresh: Collection[str] = ()) -> list[str]:
    """What differs between the slots a statement names and those the database holds
    (``fresh``: slots the caller sealed just now, whose bytes are what it made)."""
    present = {str(r[0]): (str(r[1]), C.sha256(bytes(r[2])).hex()) for r in slot_rows}
    out = []
    for sid, (kind, digest) in sorted(expected.items()):
        what = "the recovery passphrase's key slot" if kind == PASSPHRASE else "the key slot of an enrolled user,"
        found = present.get(sid)
        if found is None or found[0] != kind:
            out.append(f"{what} {sid} is missing (deleted in the database?): restore its dv_slots row from a backup "
                       "(the lead's next rotation re-seals its keys)" + (
                           "; until then the recovery passphrase opens nothing" if kind == PASSPHRASE else ""))
        elif digest is not None and sid not in fresh and not C.mac_equal(found[1].encode(), digest.encode()):
            out.append(f"{what} {sid} is not the one the lead signed (edited in the database?): restore its dv_slots "
                       "row from a backup" + ("; until then the recovery passphrase may open nothing"
                                              if kind == PASSPHRASE else "; until then its user cannot open the vault"))
    for sid in sorted(present.keys() - expected.keys()):
        out.append(f"key slot {sid} is not named in the lead's signed key statement (inserted in the database?)")
    return out


def keyring_problems(v: KeyHolder, ring: K.Keyring, slot_rows: list[tuple[Any, ...]]) -> list[str]:
    """Passphrase slots whose keyring blob the signer's copy of their secret (keyring kind 5:
    the lead's copy of the recovery slot's) does not open: the keyring was edited, and the
    recovery passphrase would open nothing. A re-seal (rotation) writes it anew."""
    secrets = {k.name: k.secret for k in ring.keys if k.kind == K.KIND_SLOT_SECRET}
    out = []
    for r in slot_rows:
        sid, secret = str(r[0]), secrets.get(str(r[0]))
        if secret is None or str(r[1]) != PASSPHRASE:
            continue
        blob = bytes(r[3])
        # whether a blob opens is a function of the secret and its bytes alone: the same
        # bytes this handle opened with the same secret open again (every add of a managing
        # handle signs, so checks this); any other bytes are opened afresh
        if v.opened_slots.get(sid) == (secret, blob):
            continue
        try:
            K.open_keyring(secret, v.ses.vid, blob)
        except VaultError:
            v.opened_slots.pop(sid, None)
            out.append(f"the recovery passphrase's key slot {r[0]} holds a keyring its secret does not open (edited "
                       "in the database?): the recovery passphrase would open nothing; a rotation (dvault rotate) "
                       "seals it again")
        else:
            v.opened_slots[sid] = (secret, blob)
    return out


def check_slots(v: KeyHolder, meta: dict[str, bytes], users: list[U.User], ring: K.Keyring,
                slot_rows: list[tuple[Any, ...]]) -> None:
    """A signer's open: report (Session.warnings) every slot that differs from the statement,
    and every passphrase slot whose keyring does not open with the secret the signer holds."""
    report(v, slot_problems(expected_slots(v, meta, users, ring), slot_rows) + keyring_problems(v, ring, slot_rows))


def _named(expected: dict[str, Slot], written: dict[str, str], slot_rows: list[tuple[Any, ...]]
           ) -> dict[str, tuple[str, str]]:
    """What a signature names for each slot: the digest of what this transaction sealed,
    else the one the previous statement named, else the stored one (first sight), else
    UNSEEN (missing, never seen)."""
    stored_ = {str(r[0]): C.sha256(bytes(r[2])).hex() for r in slot_rows}
    return {sid: (kind, written.get(sid) or digest or stored_.get(sid) or UNSEEN)
            for sid, (kind, digest) in expected.items()}


def report(v: KeyHolder, problems: list[str]) -> None:
    """Tell the signer, once per handle: ``Session.warnings``, which the CLI prints."""
    for p in problems:
        if p not in v.ses.warnings:
            v.ses.warnings.append(p)


def signable_version(v: KeyHolder, conn: Any, meta: dict[str, bytes] | None = None) -> int:
    """The version a signature names: the one this client opened (or upgraded) the vault
    at, and only if the database still says so. Why: the statement is what authenticates
    the version; signing whatever the row holds would launder a version a database writer
    raised (every later open refused as unsupported, and the true one refused as lowered).
    ``meta``: the dv_meta rows the caller read in this transaction, holding the keys lock
    (the rows it checked and now signs from), else they are read here."""
    if meta is None:
        meta = v.ses.store().get_meta_values(conn, ["db_schema_version", "keys_stmt"])
    row = meta_version(meta)
    upgraded_since(meta, v.ses.db_known)
    if row != v.ses.db_known:
        raise IntegrityError(f"the database schema version was changed to v{row} in the database (this client "
                             f"opened the vault at v{v.ses.db_known}): refusing to sign it; the lead's next open "
                             "restores the signed version; tell the lead")
    return row


def upgraded_since(meta: dict[str, bytes], known: int) -> None:
    """KeysChanged if the vault was upgraded past ``known`` since a handle opened it (the
    row and the statement both name the newer version; the statement's signature is
    checked by the next open): reopen, rather than "edited in the database"."""
    from .errors import KeysChanged
    row = meta_version(meta)
    if row > known and K.statement_version(meta.get("keys_stmt")) == row:
        raise KeysChanged(f"the vault was upgraded to database schema v{row} since this handle opened it; "
                          "open it again")


def sign(v: KeyHolder, conn: Any, *, ring: K.Keyring | None = None, users: list[U.User] | None = None,
         canaries: bytes | None = None, version: int | None = None,
         signer: tuple[bytes, Callable[[bytes], bytes]] | None = None, meta: dict[str, bytes] | None = None) -> None:
    """Sign the statement again, in the caller's transaction (which holds Store.lock_keys):
    for ``ring`` (default: this handle's keys), ``users`` (default: the verified table),
    ``canaries`` (default: the stored list, which the current statement must name) and
    ``version`` (default: :func:`signable_version`; the upgrade passes the version it just
    wrote). The slots are :func:`expected_slots`; any of them the database lacks is reported.
    ``meta``: the dv_meta rows ``users`` were checked against in this transaction (its keys
    lock held since: the statement in them is the stored one), else they are read here."""
    store = v.ses.store()
    version = signable_version(v, conn, meta) if version is None else version
    if users is None:
        users = v.verified_users(conn)
    if meta is None:
        meta = store.get_meta(conn)
    if canaries is None:
        canaries = meta.get("canaries", b"")
    assert v.ring is not None
    expected = expected_slots(v, meta, users, ring or v.ring)
    for sid in store.deleted_slots(conn):  # removed by this signer in this transaction (a re-split)
        expected.pop(sid, None)
    written = store.written_slots(conn)
    rows = store.get_slots(conn)
    # what this transaction sealed is as the signer made it; any other difference is reported
    report(v, slot_problems(expected, rows, written) + keyring_problems(v, ring or v.ring, rows))
    who, sign_ = signer or _signer(v)
    store.put_meta(conn, keys_meta(ring or v.ring, v.ses.vid, who, sign_, version, users,
                                   _named(expected, written, rows), canaries))


def _signer(v: KeyHolder) -> tuple[bytes, Callable[[bytes], bytes]]:
    """The lead, whenever the handle holds the lead's identity (create()'s handle too), else
    the recovery actor: whoever holds a keyring with the lead's key alone then still checks
    the statement (a slot rebuilt around the lead's public key fails on its keys, not on
    an unknown signer)."""
    ident = v.ses.identity
    if ident is not None and v.lead_vk is not None and ident.public.ed25519 == v.lead_vk:
        return b"L", ident.signer
    return v.plan_signer()


def signed_version_hint(meta: dict[str, bytes], stored_version: int) -> tuple[int, int | None]:
    """(the version to open the vault at, the raised row version or None), before unlocking.
    A row above the version the stored statement names was raised in the database (a later
    release signs its own version): the vault is opened at the signed one, which the key
    statement's check then authenticates, and the lead's open restores the row. Anything
    else is taken as stored (too new: UnsupportedVersion; lowered: refused by the check)."""
    signed = K.statement_version(meta.get("keys_stmt"))
    if signed is not None and F.SIGNED_VERSION_FROM <= signed < stored_version:
        return signed, stored_version
    return stored_version, None
