"""The key ring of an open vault and who may do what with it.

:class:`Access` holds every key the opener unlocked (class keys, their public halves for
write-only classes, purpose keys, the meta key's record-state key, the recovery actor's
keys) and the checks made with them before any write: that these are still the current
keys (:meth:`Access.check_keys`), that the user table is the one the lead signed
(:meth:`Access.verified_users`) and that no revoked user is put back
(:meth:`Access.check_not_revoked`). It signs the user table and the key statement, and
re-seals every key slot after a rotation. It owns ``dv_slots`` and ``dv_users`` and the
``roster_sig``, ``lead_vk`` and ``keys_stmt*`` rows of ``dv_meta``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import _crypto as C
from . import _format as F
from . import audit as A
from . import compact
from . import envelope as E
from . import index as I
from . import keys as K
from . import notes as N
from . import record_states as RS
from . import statement as ST
from . import users as U
from .errors import AccessDenied, IntegrityError, KeysChanged
from .identity import Identity
from .session import Session

PASSPHRASE = ST.PASSPHRASE


class ClassKey:
    """A class key and its AEAD, built once per key ring."""

    __slots__ = ("key", "aead")

    def __init__(self, key: K.Key) -> None:
        self.key = key
        self.aead = C.Aead(key.secret)


def _cannot_unseal(_: bytes) -> bytes:
    raise C.AuthFailure()


def users_of(rows: list[tuple[str, str, str, bytes, str]]) -> list[U.User]:
    return [U.from_row(*row) for row in rows]


class Access:
    """The opener's keys, the permission checks made with them, and the signed roster."""

    def __init__(self, ses: Session, ring: K.Keyring, slot_kid: bytes, slot_secret: bytes,
                 keys_blob: bytes = b"") -> None:
        self.ses = ses
        self.codec = compact.Codec(ses.vid, ses.schema.classes, tuple(ses.schema.fields))
        self.slot_kid = slot_kid
        self.slot_secret: bytes | None = slot_secret
        # our slot's keyring blob as we loaded (or last wrote) it: every re-seal rewrites it,
        # so a change means another process rotated, revoked or re-sealed (check_keys)
        self.keys_seen = keys_blob
        self.writers: dict[bytes, tuple[bytes, frozenset[str]]] = {}
        self.signer: Callable[[bytes], bytes] | None = None
        self._recovery_signer: C.Signer | None = None
        self.opened_slots: dict[str, tuple[bytes, bytes]] = {}  # see statement.keyring_problems
        self.recovery_unseal: Callable[[bytes], bytes] = _cannot_unseal
        #: called after every new key ring (vault.plans rebuilds its indexers)
        self.on_new_ring: list[Callable[[], None]] = []
        self.load_ring(ring)

    # -- the key ring ---------------------------------------------------------------------------
    def load_ring(self, ring: K.Keyring) -> None:
        """(Re)build every key lookup from a keyring: after open, rotation or key destruction."""
        schema = self.ses.schema
        self.ring: K.Keyring | None = ring
        self._recovery_signer = None  # a new ring may hold another recovery seed
        self.by_kid: dict[bytes, ClassKey] = {
            k.kid: ClassKey(k) for k in ring.keys if k.kind == K.KIND_CLASS_KEY}
        self.codec.clear_keys()
        self.keys = {kid: self.codec.key_entry(ck.key.name, ck.key.version, ck.aead,
                                               E.class_box_secret(ck.key.secret), ck.key.secret, kid)
                     for kid, ck in self.by_kid.items()}
        self.class_pub: dict[str, K.Key] = {}
        for k in ring.keys:
            if k.kind == K.KIND_CLASS_PUBLIC and (k.name not in self.class_pub
                                                   or k.version > self.class_pub[k.name].version):
                self.class_pub[k.name] = k
        self.current: dict[str, ClassKey] = {}
        for cls in schema.classes:
            try:
                self.current[cls] = self.by_kid[ring.current(K.KIND_CLASS_KEY, cls).kid]
            except KeyError:
                if self.ses.user is None or cls in self.ses.role.classes:
                    raise IntegrityError(f"keyring lacks a key for class {cls!r}") from None
        self.lead_vk = K.signers(ring).get(b"L")
        meta_key = ring.current(K.KIND_META_KEY).secret
        self.state_key = A.state_key(meta_key)  # record states of the first kind (format.md 13a)
        self.states_v2: RS.States | None = RS.States(RS.state_key_v2(meta_key), self.ses.vid, schema.classes)
        self.purposes: dict[str, I.PurposeKeys] = {}
        for name in schema.purposes:
            try:
                cur = ring.current(K.KIND_PURPOSE_KEY, name)
            except KeyError:
                continue
            self.purposes[name] = I.PurposeKeys(name, cur.kid, cur.secret)
        for call in self.on_new_ring:
            call()

    @contextmanager
    def restored_on_failure(self) -> Iterator[None]:
        """Inside a caller's transaction, a re-seal can still roll back after it returned (a
        later step of that transaction fails): the keys in memory must then be the ones the
        database still holds, or this handle's next re-seal would write back a key ring,
        and a slot secret, that no slot has."""
        ring, seen, secret = self.ring, self.keys_seen, self.slot_secret
        try:
            yield
        except BaseException:
            self.keys_seen, self.slot_secret = seen, secret
            if ring is not None and ring is not self.ring:
                self.load_ring(ring)
            raise

    def class_key(self, cls: str, version: int) -> bytes:
        assert self.ring is not None
        for k in self.ring.keys:
            if k.kind == K.KIND_CLASS_KEY and k.name == cls and k.version == version:
                return k.secret
        raise IntegrityError(f"index plan refers to a destroyed key ({cls} v{version}); run reindex")

    def meta_secret(self) -> bytes:
        assert self.ring is not None
        return self.ring.current(K.KIND_META_KEY).secret

    def close(self) -> None:
        self.ring = None
        self.slot_secret = None
        self.by_kid = {}
        self.current = {}
        self.keys = {}
        self.codec.clear_keys()  # the derived-DEK states of the class keys (record format 2)
        self.purposes = {}
        self.state_key = b""
        self.states_v2 = None

    # -- the recovery actor and who signs -------------------------------------------------------
    def recovery_keys(self) -> tuple[bytes, bytes] | None:
        """(X25519 secret, Ed25519 seed) of the recovery actor, from the seed in the full
        keyring (passphrase openers); None for identity openers."""
        if self.ring is None:
            return None
        seed = next((k.secret for k in self.ring.keys if k.kind == K.KIND_RECOVERY_SEED), None)
        if seed is None:
            return None
        return C.hkdf_sha256(seed, F.LABEL_RECOVERY_BOX), C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN)

    def recovery_public(self) -> bytes:
        """The recovery actor's public identity (X25519 || Ed25519), from this keyring."""
        self.ses.store()  # VaultClosed on a closed handle, whose keyring is gone
        assert self.ring is not None
        box = next((k.secret for k in self.ring.keys if k.kind == K.KIND_RECOVERY_BOX), b"")
        vk = next((k.secret for k in self.ring.keys if k.kind == K.KIND_RECOVERY_VK), b"")
        return box + vk

    def plan_signer(self) -> tuple[bytes, Callable[[bytes], bytes]]:
        """Who signs schema/plan changes: the lead (by identity) or the recovery actor."""
        ident = self.ses.identity
        if self.ses.user is None:
            if self._recovery_signer is None:  # expanded once per handle: every add of ours signs
                rec = self.recovery_keys()
                assert rec is not None
                self._recovery_signer = C.Signer(rec[1])
            return b"R", self._recovery_signer
        if ident is not None and self.lead_vk is not None and ident.public.ed25519 == self.lead_vk:
            return b"L", ident.signer
        raise AccessDenied("only the security lead or the recovery passphrase can change the index plan")

    def make_auditor(self) -> A.Auditor:
        """The log writer for this opener: its actor and signer, and to whom reasons are sealed
        (the lead, or without one the recovery key from the authenticated keyring)."""
        rec = self.recovery_keys()
        ident = self.ses.identity
        if self.ses.user is not None and ident is not None:
            actor, self.signer = ident.public.raw, ident.sign
        else:
            if rec is None:
                raise IntegrityError("the recovery keyring lacks the recovery actor's seed")
            actor = C.x25519_public(rec[0]) + C.ed25519_public(rec[1])
            self.signer = C.Signer(rec[1])
        self.recovery_unseal = (lambda c: C.unseal(rec[0], c)) if rec else _cannot_unseal
        store = self.ses.store()
        with store.tx(write=False, snapshot=True) as conn:
            users = self.verified_users(conn)
        self.writers = self._writer_table(users)
        roles = self.ses.schema.roles
        lead = next((u for u in users if self.lead_vk is not None and u.public.ed25519 == self.lead_vk
                     and u.role in roles and roles[u.role].manage), None)
        rec_pub = self.recovery_public()
        reason_to = ((lead.public.x25519, N.recipient_id(lead.public.raw)) if lead
                     else (rec_pub[:32], N.recipient_id(rec_pub)) if rec_pub else None)
        return A.Auditor(actor, self.signer, reason_to)

    # -- writers of sealed (write-only) envelopes -------------------------------------------------
    def _writer_table(self, users: list[U.User]) -> dict[bytes, tuple[bytes, frozenset[str]]]:
        """User id -> (Ed25519 verify key, classes their role may fill in unread), from the
        signed user table: whose signature a sealed (kind W) envelope may carry."""
        out = {}
        for u in users:
            role = self.ses.schema.roles.get(u.role)
            if role is not None and role.write_only:
                out[bytes.fromhex(u.user_id)] = (u.public.ed25519, frozenset(role.write_only))
        return out

    def writer_key(self, writer: bytes, cls: str) -> bytes | None:
        """E.WriterKeys for this vault. A writer enrolled after this handle read the user table
        is looked up again (checked against the lead's signature); a revoked one is refused."""
        entry = self.writers.get(writer)
        if entry is None and os.getpid() == self.ses.pid:  # a forked worker never touches the parent's connection
            self.refresh_writers()
            entry = self.writers.get(writer)
        return entry[0] if entry is not None and cls in entry[1] else None

    def writers_from(self, users: list[U.User]) -> None:
        """The writer table from a user table this handle has just verified or signed."""
        self.writers = self._writer_table(users)

    def refresh_writers(self) -> None:
        with self.ses.store().tx(write=False, snapshot=True) as conn:
            self.writers = self._writer_table(self.verified_users(conn))

    def sealing_writer(self) -> tuple[bytes, Callable[[bytes], bytes]] | None:
        """(user id, sign) that signs the DEKs this opener seals to write-only classes."""
        if self.ses.user is None or self.ses.identity is None or self.signer is None:
            return None
        return bytes.fromhex(self.ses.user.user_id), self.signer

    # -- what this opener may do -----------------------------------------------------------------
    def readable_fields(self) -> list[str]:
        return [n for n, f in self.ses.schema.fields.items() if f.cls in self.current]

    def need_class(self, cls: str, what: str) -> None:
        if cls not in self.current:
            raise AccessDenied(f"{what} is in class {cls!r}, which role {self.ses.role.name!r} does not hold")

    def need_writable(self, action: str) -> None:
        """Adding a record needs, for every class, its key or at least its public key."""
        missing = [c for c in self.ses.schema.classes if c not in self.current and c not in self.class_pub]
        if missing:
            raise AccessDenied(f"{action} needs every class; role {self.ses.role.name!r} cannot write "
                               f"{', '.join(missing)}")

    def need_all_purposes(self, action: str) -> None:
        """A shred deletes every issued pseudonym of the record, found only through the
        purpose keys; without one, its rows would outlive the record."""
        missing = [p for p in self.ses.schema.purposes if p not in self.purposes]
        if missing:
            raise AccessDenied(f"{action} needs every purpose key; role {self.ses.role.name!r} lacks "
                               f"{', '.join(missing)}")

    def need_all_classes(self, action: str) -> None:
        missing = [c for c in self.ses.schema.classes if c not in self.current]
        if missing:
            raise AccessDenied(f"{action} needs every class key; role {self.ses.role.name!r} lacks "
                               f"{', '.join(missing)}")

    def need_manage(self, action: str) -> None:
        if not self.ses.role.manage:
            raise AccessDenied(f"{action} is for the security lead (or the recovery passphrase)")

    def need_lead(self, action: str) -> Identity:
        ident = self.ses.identity
        if not self.ses.role.manage or ident is None or self.lead_vk is None \
                or ident.public.ed25519 != self.lead_vk:
            raise AccessDenied(f"{action} needs the security lead's identity")
        return ident

    def need_passphrase_opener(self) -> None:
        if self.ses.user is not None:
            raise AccessDenied("opened with an identity: change the identity file's passphrase instead")

    # -- are these keys still the current ones? ----------------------------------------------------
    def check_keys(self, conn: Any, *, lock: bool = True, version: bool = True, keys: bool = True) -> None:
        """Refuse to write with keys another process has since replaced (KeysChanged).

        Why: a handle that loaded the keyring before someone else's rotation would seal new
        DEKs under a class key version that rotation destroys (those records would be lost),
        and a stale re-seal would put destroyed versions back or drop new ones (the vault
        would no longer open). Every re-seal rewrites this handle's own slot, so comparing
        that one blob, in the writing transaction, is enough. ``lock``: on PostgreSQL the
        keys lock is held shared to our commit (Store.lock_writes), so a concurrent re-seal
        either waits for us (and its rotation's sweep sees our rows) or committed first (and
        we see its blob). ``version``: also refuse if the stored database schema version is
        not the one this handle works at (an upgrade elsewhere; the upgrade itself reads it).
        ``keys``: compare the blob (else only that the slot is there: check_enrolled)."""
        store = self.ses.store()
        if lock:
            store.lock_writes(conn)
        now = store.slot_keyring(conn, self.slot_kid.hex())
        if now is None:
            raise AccessDenied("this handle's key slot is gone (revoked, or removed by another process)")
        if keys and not hmac.compare_digest(now[0], self.keys_seen):
            raise KeysChanged()
        if version and now[1] != str(self.ses.db_known).encode():
            # upgraded since we opened (the lead's open: KeysChanged), or changed in the
            # database (IntegrityError): what we would write (record states of the kind of
            # then, say) may not be what the vault's log takes
            ST.signable_version(self, conn)
            raise KeysChanged()

    def check_enrolled(self, conn: Any) -> None:
        """For a write that uses no class key (a shred, a break-glass request): refuse it once
        this handle's slot is gone (AccessDenied), as :meth:`check_keys` refuses the others,
        or once the vault was upgraded since this handle opened it (KeysChanged: a shred
        would name its state of the kind of then).
        Why: a revoked user's handle left open could still shred records (which the lead's
        record check then names as deleted behind the vault's back) and file requests. The
        keys lock is held shared to our commit, so a revocation either waits for this write
        (its entry then comes first) or committed first (and the slot is gone here)."""
        self.check_keys(conn, keys=False)

    def keys_changed(self) -> bool:
        """For error paths: has another process re-sealed the keys since we loaded them?"""
        try:
            with self.ses.store().tx(write=False) as conn:
                self.check_keys(conn, lock=False)
        except (KeysChanged, AccessDenied):
            return True
        return False

    def db_version(self, conn: Any) -> int:
        return ST.meta_version(self.ses.store().get_meta_values(conn, ["db_schema_version"]))

    # -- the signed user table ---------------------------------------------------------------------
    def verified_users(self, conn: Any, *, statement: bool = True) -> list[U.User]:
        """The user table as the lead signed it, checked on every read and not only at open:
        whoever can write the database could have edited a row since, and a public key read
        from it decides who gets a keyring, a break-glass value or a sealed reason, whose
        audit entries count as genuine, and what the lead signs next."""
        return self.verified_users_meta(conn, statement=statement)[0]

    def verified_users_meta(self, conn: Any, *, statement: bool = True) -> tuple[list[U.User], dict[str, bytes]]:
        """:meth:`verified_users`, and the dv_meta rows they were checked against (a signer
        signs from those, not from a second read: vault.canaries.reseal)."""
        store = self.ses.store()
        users = users_of(store.get_users(conn))
        meta = store.get_meta(conn)
        if users:
            if self.lead_vk is None:
                raise IntegrityError("the user table has rows but the keyring has no lead key")
            U.verify_roster(self.lead_vk, self.ses.vid, users, meta.get("roster_sig", b""))
        if statement:  # and it is the table the lead signed last, not an older signed copy
            assert self.ring is not None
            version = self.ses.db_known  # the row's own value is checked where it matters: before signing
            ST.upgraded_since(meta, version)
            try:
                signed = ST.check(meta, self.ring, self.ses.vid, version, users)
            except IntegrityError:
                self.check_keys(conn, lock=False)  # KeysChanged if it is only our keys that are old
                raise
            if signed is None and version >= F.SIGNED_VERSION_FROM:
                raise IntegrityError("this vault's keys are not signed (the database was edited); tell the lead")
        return users, meta

    def users(self, include_revoked: bool = False) -> list[U.User]:
        with self.ses.store().tx(write=False, snapshot=True) as conn:
            return [u for u in self.verified_users(conn) if include_revoked or u.role != U.REVOKED]

    def known_actors(self) -> set[bytes]:
        with self.ses.store().tx(write=False, snapshot=True) as conn:
            users = self.verified_users(conn)  # an inserted row must not vouch for forged entries
        rec = self.recovery_public()
        return {u.public.raw for u in users} | ({rec} if len(rec) == 64 else set())

    def deciders(self) -> set[bytes]:
        """Who may write the log's lead-only decisions: the lead and the recovery actor."""
        users = self.users(include_revoked=True)
        out = {u.public.raw for u in users if self.lead_vk is not None and u.public.ed25519 == self.lead_vk}
        rec = self.recovery_public()
        return out | ({rec} if len(rec) == 64 else set())

    def sign_roster(self, conn: Any, users: list[U.User]) -> None:
        """Sign the user table and, in the same transaction, the key statement that names it."""
        lead = self.need_lead("changing users")
        self.ses.store().put_meta(conn, {"roster_sig": lead.sign(U.roster_bytes(self.ses.vid, users)),
                                         "lead_vk": lead.public.ed25519})
        ST.sign(self, conn, users=users, signer=(b"L", lead.signer))

    def check_not_revoked(self, conn: Any, users: list[U.User]) -> None:
        """Refuse to seal keys to a user the lead's signed log says was revoked. Why: after a
        revocation without a rotation (``remove_user(rotate=False)``), an older copy of the
        user table, its signature, the key statement and the slot is consistent again, and
        this rotation would hand the revoked user its new keys. A full scan of the log's
        ``user_removed`` entries, by the lead or the recovery actor (a handle made by create()
        logs as the latter, its lead's identity attached): at a signer's open and at each
        re-seal, about 0.1 s per million entries."""
        from .audit_rows import detail_of
        lead = next((u for u in users if self.lead_vk is not None and u.public.ed25519 == self.lead_vk), None)
        if lead is None:
            return
        signers = {lead.public.raw} | ({rec} if len(rec := self.recovery_public()) == 64 else set())
        active = {u.user_id for u in users if u.role != U.REVOKED}
        for e in A.signed_by(self.ses.store(), conn, "user_removed", signers):
            detail = detail_of(e) or {}
            if detail.get("user") in active:
                raise IntegrityError(f"the user table lists user {detail['user']} as enrolled, but the lead revoked "
                                     f"them (audit entry {e.seq}): an older copy was put back; tell the lead")

    def reseal_slots(self, conn: Any, ring: K.Keyring, *, checked: bool = False) -> None:
        """Write ``ring`` (or each user's role subset of it) into every slot: after a rotation
        step every holder must get the new key versions, and lose destroyed ones. The caller
        took Store.lock_keys first (before any slot row), so no enrolment, revocation or other
        re-seal commits while this one reads the users and writes their slots."""
        store = self.ses.store()
        store.lock_keys(conn)  # taken already by every caller; held again, it costs nothing
        if not checked:
            self.check_keys(conn)
        ST.signable_version(self, conn)  # it signs the statement last: refuse before any slot (or state) changes
        everyone = self.verified_users(conn)
        users = {u.slot_id: u for u in everyone if u.role != U.REVOKED}
        self.check_not_revoked(conn, everyone)
        secrets = {k.name: k.secret for k in ring.keys if k.kind == K.KIND_SLOT_SECRET}
        for slot_id, kind, unlock, _old in store.get_slots(conn):
            if kind == PASSPHRASE:
                self._reseal_passphrase(conn, ring, slot_id, unlock, secrets)
            else:
                self._reseal_user(conn, ring, slot_id, kind, users.get(slot_id))
        ST.sign(self, conn, ring=ring, users=self.verified_users(conn, statement=False))  # the keys slots now hold

    def _reseal_passphrase(self, conn: Any, ring: K.Keyring, slot_id: str, unlock: bytes,
                           secrets: dict[str, bytes]) -> None:
        mine = self.slot_kid.hex()
        secret = self.slot_secret if slot_id == mine else secrets.get(slot_id)
        if secret is None:
            raise AccessDenied("cannot re-seal a passphrase slot whose secret this opener lacks")
        blob = K.seal_keyring(secret, bytes.fromhex(slot_id), self.ses.vid, ring)
        if not self.ses.store().put_slot(conn, slot_id, PASSPHRASE, unlock, blob, new=False):
            raise KeysChanged()
        if slot_id == mine:
            self.keys_seen = blob

    def _reseal_user(self, conn: Any, ring: K.Keyring, slot_id: str, kind: str, u: U.User | None) -> None:
        if u is None or self.lead_vk is None:
            raise IntegrityError("a public-key slot is not in the signed user table")
        vid = self.ses.vid
        secret = C.random_bytes(F.KEY_LEN)
        sub = U.role_keyring(ring, self.ses.schema.role(u.role), self.lead_vk)
        blob = K.seal_keyring(secret, bytes.fromhex(slot_id), vid, sub)
        if not self.ses.store().put_slot(conn, slot_id, kind, U.seal_user_slot(u.public, secret, bytes.fromhex(slot_id),
                                                                                vid), blob, new=False):
            raise KeysChanged()  # revoked meanwhile: never write their slot back
        if slot_id == self.slot_kid.hex():
            self.slot_secret = secret
            self.keys_seen = blob
