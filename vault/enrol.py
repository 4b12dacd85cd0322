"""Changing who holds the keys: enrolling and revoking users, and the recovery passphrase.

Each function works on vault.access (the key ring, the slots, the signed user table) in
one transaction that holds the keys lock before any slot row, so no re-seal, enrolment or
revocation commits meanwhile. The revocation's rotation is the caller's (vault.vault):
it runs after the revocation commits.
"""

from __future__ import annotations

from . import _crypto as C
from . import _format as F
from . import keys as K
from . import schema as S
from . import users as U
from .access import PASSPHRASE, Access
from .adopt import adopt_sealed
from .args import check_text
from .breakglass_rows import forget
from .errors import NotFound, ValidationError, VaultError
from .identity import PublicIdentity
from .journal import Journal


def check_user_args(public: object, name: object, role: object) -> None:
    """The types of add_user's arguments, before anything is logged or written: None or a
    private Identity as ``public``, or a list as ``role``, failed deep inside."""
    if not isinstance(public, (PublicIdentity, str)):
        raise ValidationError("public must be a PublicIdentity or its dvault1... line")
    check_text(name, "name")
    check_text(role, "role")


def add_user(a: Access, public: PublicIdentity | str, name: str, role: str) -> U.User:
    """Enrol a user: seal their role's keys to their public key and sign the user table.

    Confirm the fingerprint (``PublicIdentity.fingerprint()``) with the person by voice
    before enrolling a public key that arrived over e-mail or chat."""
    a.need_lead("enrolling users")
    a.need_all_classes("enrolling users")
    check_user_args(public, name, role)
    pub = PublicIdentity.from_line(public) if isinstance(public, str) else public
    r = a.ses.schema.role(role)
    name = U.check_name(name)
    store = a.ses.store()
    vid = a.ses.vid
    assert a.ring is not None and a.lead_vk is not None
    slot_kid = C.random_bytes(F.KID_LEN)
    secret = C.random_bytes(F.KEY_LEN)
    unlock = U.seal_user_slot(pub, secret, slot_kid, vid)
    keyring = K.seal_keyring(secret, slot_kid, vid, U.role_keyring(a.ring, r, a.lead_vk))
    user = U.User(pub.user_id, name, r.name, pub, slot_kid.hex())
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row: no re-seal or revocation meanwhile
        a.check_keys(conn)  # the new slot gets our keys: they must be the current ones
        current = a.verified_users(conn)
        a.check_not_revoked(conn, current)  # it signs this table: never one put back
        if any(u.user_id == user.user_id for u in current):
            raise ValidationError(f"user {user.user_id} is already enrolled (or was revoked: use a new identity)")
        if any(u.name.casefold() == name.casefold() and u.role != U.REVOKED for u in current):
            raise ValidationError("another enrolled user has that name; choose one that tells them apart")
        store.put_slot(conn, user.slot_id, U.KIND_X25519, unlock, keyring)
        store.put_user(conn, user.user_id, user.name, user.role, pub.raw, user.slot_id)
        a.sign_roster(conn, current + [user])
    return user


def remove_user(a: Access, journal: Journal, user_id: str) -> S.Role:
    """Revoke a user: delete their slot, mark their row revoked, re-sign the user table and
    forget their break-glass requests; returns their role, whose classes (a write-only
    role: the classes it wrote) the caller then rotates, so their old identity plus any
    keys they copied open nothing written or rewrapped afterwards (docs/threat-model.md
    says what they keep). Until that rotation a database writer who puts back an older
    copy of the user table, its signature, the key statement and the slot undoes the
    revocation, since nothing the statement names has changed."""
    lead = a.need_lead("removing users")
    store = a.ses.store()
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row: no re-seal or enrolment meanwhile
        a.check_keys(conn)
        current = a.verified_users(conn)
        gone = next((u for u in current if u.user_id == user_id and u.role != U.REVOKED), None)
        if gone is None:
            raise NotFound(f"no user {user_id}")
        if gone.user_id == lead.public.user_id:
            raise ValidationError("the security lead cannot remove their own enrolment")
        # lock_keys above waited for their last write (each holds the keys lock shared to its
        # commit, check_keys), so the scan below sees it, and any later write finds the slot
        # gone. Else rows they commit during the scan would be left sealed under a signature
        # that stops counting: unreadable.
        # What they sealed to write-only classes is adopted into ordinary wraps while their
        # signature still counts: from now on readers refuse any envelope they sign. One that
        # does not verify (tampered or planted) stays as it is, as unreadable as it was, and is
        # counted: a database writer, the user being revoked included, cannot stop this.
        unadopted: list[bytes] = []
        adopt_sealed(store, conn, a.ses.vid, {kid: ck.key for kid, ck in a.by_kid.items()},
                     lambda h: h.writer == bytes.fromhex(gone.user_id), a.writer_key, a.codec, unadopted)
        store.delete_slot(conn, gone.slot_id)
        # The row stays, marked revoked: its public key still verifies the user's past
        # audit entries, and the id can never be enrolled again.
        store.set_role(conn, gone.user_id, U.REVOKED)
        after = [u if u.user_id != user_id else U.User(u.user_id, u.name, U.REVOKED, u.public, u.slot_id)
                 for u in current]
        a.sign_roster(conn, after)
        # Their grants are values sealed to the identity being revoked (its keys never
        # rotate): left here, that identity file would open them from any later copy.
        asked = forget(conn, requester=gone.user_id)
        detail: dict[str, object] = {"user": gone.user_id, "requests": asked}
        if unadopted:
            detail["unreadable_rows"] = len(set(unadopted))  # a count: the log names no record
        journal.record("user_removed", "", detail)
    # the table just signed, not a fresh read: a rotation elsewhere since the commit would make
    # that read raise KeysChanged, reporting a revocation that committed as failed
    a.writers_from(after)
    return a.ses.schema.role(gone.role)


def change_passphrase(a: Access, new_passphrase: str, *, kdf: F.KdfParams | None = None) -> None:
    """A new recovery passphrase and/or stronger Argon2id cost, with a *new* slot secret.

    Record data and DEKs are untouched. The slot secret changes too, so an old copy of
    the slot plus the old passphrase no longer opens the keyring in the live database
    (it still opens old copies of the database, which hold their own old keyring).
    """
    store = a.ses.store()
    a.need_passphrase_opener()
    params = F.KDF_DEFAULT if kdf is None else kdf
    assert a.ring is not None
    vid = a.ses.vid
    secret = C.random_bytes(F.KEY_LEN)
    unlock = K.seal_passphrase_slot(new_passphrase, secret, a.slot_kid, vid, params)
    slot_id = a.slot_kid.hex()
    ring = K.Keyring([k if not (k.kind == K.KIND_SLOT_SECRET and k.name == slot_id)
                      else K.Key(k.kind, k.name, k.version, k.kid, secret) for k in a.ring.keys])
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row (it re-seals every slot)
        if slot_id not in {r[0] for r in store.get_slots(conn)}:
            raise VaultError("this vault's passphrase slot disappeared")
        a.check_keys(conn)
        store.put_slot(conn, slot_id, PASSPHRASE, unlock, K.seal_keyring(secret, a.slot_kid, vid, ring))
        a.slot_secret = secret
        # the lead's keyring carries the recovery slot's secret
        a.reseal_slots(conn, ring, checked=True)
    a.load_ring(ring)
