"""Creating, unlocking and upgrading a vault: everything checked before any of it is trusted.

:func:`make` writes a new vault (keys, slot, signed schema, plan and key statement, an
empty canary list) in one transaction; :func:`unlock` reads one snapshot of ``dv_meta``,
``dv_slots`` and ``dv_users``, opens the opener's slot, and verifies the schema, the user
table, the index plans, the pin and the key statement before anything else reads them.
:func:`settle` then brings the database to this release's version (:func:`upgrade`) and
makes a signer's checks. vault.vault wires the collaborators between the two.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _crypto as C
from . import _format as F
from . import canaries as CA
from . import index as I
from . import keys as K
from . import ledger, migrations, moving
from . import schema as S
from . import statement as ST
from . import users as U
from .access import PASSPHRASE, Access, users_of
from .adopt import adopt_sealed
from .audit import Auditor, has_states
from .envelope import DekHeader
from .errors import AccessDenied, IntegrityError, NotFound, SchemaError, VaultExists, WrongPassphrase
from .identity import Identity
from .journal import Journal
from .locations import normalise_url
from .plans import check_plan_args, verified_plan
from .records import Records
from .store import Store, check_db_version


@dataclass
class Opened:
    """What an unlocked (or new) vault hands to its handle: every value verified."""

    store: Store
    vault_id: bytes
    schema: S.Schema
    ring: K.Keyring
    slot_kid: bytes
    slot_secret: bytes
    plan: I.Plan
    pending: I.Plan | None
    user: U.User | None
    identity: Identity | None
    keys_blob: bytes
    db_version: int
    raised: int | None = None  # open: the row's version, raised above the signed one
    signer: bool = True  # open: the opener may sign (the lead, or the recovery passphrase)
    signed_db: int | None = None  # open: the version the key statement names


__all__ = ["Opened", "Parts", "make", "unlock", "upgrade", "normalise_url", "discard"]


class Parts(NamedTuple):
    """What settling an opened vault needs of its handle."""

    access: Access
    records: Records
    canaries: CA.Canaries
    journal: Journal


def schema_text(schema: str | os.PathLike[str] | None) -> str:
    if schema is None:
        return S.default_schema_text()
    if isinstance(schema, os.PathLike):
        try:
            with builtins.open(schema, encoding="utf-8") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SchemaError(f"cannot read schema file: {e.__class__.__name__}") from None
    if isinstance(schema, str):
        return schema
    raise SchemaError("schema must be TOML text or a path to a TOML file")


def pin_signers(ring: K.Keyring) -> str:
    """The pin's hash of who signs for the vault, from the opener's keyring (vault.pins)."""
    from .pins import signers_hash
    who = K.signers(ring)
    return signers_hash(who.get(b"L", b""), who.get(b"R", b""))


# -- create ---------------------------------------------------------------------------------------
def plan_args(parsed: S.Schema, population: int | None, k: int | None, precise: Any) -> tuple[int, int]:
    population = parsed.expected_population if population is None else population
    k = parsed.k_anonymity if k is None else k
    check_plan_args(population, k, precise)
    assert population is not None and k is not None
    return population, k


def _recovery_keys(ring: K.Keyring) -> tuple[bytes, Callable[[bytes], bytes]]:
    """Add the recovery actor's seed and public keys to a new ring; (seed, its signer)."""
    seed = C.random_bytes(F.KEY_LEN)
    rec_box = C.x25519_public(C.hkdf_sha256(seed, F.LABEL_RECOVERY_BOX))
    rec_vk = C.ed25519_public(C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN))
    zero = bytes(F.KID_LEN)
    ring.keys += [K.Key(K.KIND_RECOVERY_SEED, "recovery", 1, zero, seed),
                  K.Key(K.KIND_RECOVERY_VK, "recovery", 1, zero, rec_vk),
                  K.Key(K.KIND_RECOVERY_BOX, "recovery", 1, zero, rec_box)]
    return seed, C.Signer(C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN))


def make(store: Store, text: str, parsed: S.Schema, passphrase: str, params: F.KdfParams, plan_for: tuple[int, int],
         precise: bool, lead: Identity | None, moving_mark: tuple[str, Callable[[bytes], bytes] | None]) -> Opened:
    """Write a new vault into an empty ``store`` in one transaction (the caller has checked
    every argument and that no vault is there) and return it as opened with the passphrase."""
    vault_id = C.random_bytes(F.ID_LEN)
    ring = K.Keyring.generate(parsed.classes, parsed.purposes)
    plan = I.make_plan(1, parsed, plan_for[0], plan_for[1], {c: 1 for c in parsed.classes}, precise)
    plan_text = plan.to_text()
    slot_secret = C.random_bytes(F.KEY_LEN)
    slot_kid = C.random_bytes(F.KID_LEN)
    seed, rec_sign = _recovery_keys(ring)
    if lead is not None:
        zero = bytes(F.KID_LEN)
        ring.keys.append(K.Key(K.KIND_LEAD_VK, "lead", 1, zero, lead.public.ed25519))
        ring.keys.append(K.Key(K.KIND_SLOT_SECRET, slot_kid.hex(), 1, zero, slot_secret))
    who, sign = (b"L", lead.sign) if lead is not None else (b"R", rec_sign)
    unlock = K.seal_passphrase_slot(passphrase, slot_secret, slot_kid, vault_id, params)
    keyring = K.seal_keyring(slot_secret, slot_kid, vault_id, ring)
    meta_key = ring.current(K.KIND_META_KEY)
    canaries = CA.seal_list(seed, vault_id, {})
    rec_pub = next(k.secret for k in ring.keys if k.kind == K.KIND_RECOVERY_BOX) \
        + next(k.secret for k in ring.keys if k.kind == K.KIND_RECOVERY_VK)
    moving_from, moving_sign = moving_mark
    with store.tx() as conn:
        version = migrations.upgrade(conn, 0)
        ledger.ensure(conn)  # the shred ledger's table (vault.ledger), from the first commit on
        store.put_meta(conn, {
            "vault_id": vault_id,
            "format_version": str(F.FORMAT_VERSION).encode(),
            "db_schema_version": str(version).encode(),
            "schema": text.encode("utf-8"),
            "schema_mac": K.mac_schema(meta_key, vault_id, text),
            "recovery_pub": rec_pub,
            "schema_sig": K.sign_text("schema", vault_id, text, who, sign),
            "index_plan_sig": K.sign_text("plan", vault_id, plan_text, who, sign),
            "index_plan": plan_text.encode(),
            "index_plan_mac": K.mac_plan(meta_key, vault_id, plan_text),
            # an empty list, of the size any list up to 170 canaries has: a vault with
            # no canaries looks like one with some
            "canaries": canaries,
            **ST.keys_meta(ring, vault_id, who, sign, version, [],
                           {slot_kid.hex(): (PASSPHRASE, C.sha256(unlock).hex())}, canaries),
            **(moving.mark(moving_from, vault_id, moving_sign) if moving_from and moving_sign else {}),
        })
        store.put_slot(conn, slot_kid.hex(), PASSPHRASE, unlock, keyring)
    return Opened(store, vault_id, parsed, ring, slot_kid, slot_secret, plan, None, None, None, keyring, version)


def discard(store: Store, made: set[str]) -> None:
    """Remove a vault this process has just made: SQLite's files (``Store(create=True)``
    refused an existing file, so they are ours even before anything was committed), or on
    PostgreSQL the tables ``made`` (a failure before their commit rolled them back; any
    other ``dv_*`` table may be someone else's). A vault that holds more than its creation
    wrote is set aside instead (vault.moving): no clean-up drops an audit log of use."""
    if made and moving.written_since_creation(store):
        try:
            moving.set_aside(store)
        finally:
            store.dispose()
        return
    if store.sqlite_path is None and made:
        store.drop_tables(made)
    store.dispose()
    if store.sqlite_path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(store.sqlite_path + suffix)
            except FileNotFoundError:
                pass


def check_empty(store: Store) -> None:
    if store.has_vault():
        raise VaultExists("a vault already exists in this database")
    if store.vault_tables():  # a vault that lost dv_meta, a restore cut short: not ours to reuse
        raise VaultExists("this database holds vault tables (dv_*) but no vault metadata: a damaged or "
                          "partly restored vault? Refusing to create a vault over them")


# -- open -----------------------------------------------------------------------------------------
def unlock_failed(store: Store, identity: Identity | None) -> None:
    """Failed unlocks are logged too; there is no key to sign with, so the entry is only chained.
    Its shape is fixed (audit.unsigned_shape_ok): verify refuses any other unsigned entry."""
    actor = identity.public.raw if identity is not None else bytes(64)
    Auditor(actor, None, None).append(store, "unlock_failed", "", {"with": "identity" if identity else "passphrase"},
                                      unsigned=True)


def verify_users(schema: S.Schema, ring: K.Keyring, meta: dict[str, bytes], vault_id: bytes,
                 user_rows: list[Any], slot_rows: list[Any], me: U.User | None) -> None:
    """The user table must carry the lead's signature, every public-key slot must belong to
    a signed user, and an opener's keyring must not exceed their role."""
    users = users_of(user_rows)
    x_slots = {r[0] for r in slot_rows if r[1] == U.KIND_X25519}
    if not users and not x_slots:
        return
    lead_vk = K.signers(ring).get(b"L")
    if lead_vk is None or meta.get("lead_vk") != lead_vk:
        raise IntegrityError("the lead's verify key in the database does not match the keyring")
    U.verify_roster(lead_vk, vault_id, users, meta.get("roster_sig", b""))
    if x_slots != {u.slot_id for u in users if u.role != U.REVOKED}:
        raise IntegrityError("a public-key slot is not in the signed user table")
    for u in users:
        if u.user_id != u.public.user_id:
            raise IntegrityError("a user id does not match its public key")
        if u.role not in schema.roles and u.role != U.REVOKED:
            raise IntegrityError(f"user {u.user_id} has an unknown role")
    if me is not None:
        role = schema.roles[me.role]
        held = {k.name for k in ring.keys if k.kind == K.KIND_CLASS_KEY}
        if not held <= set(role.classes):
            raise IntegrityError("this user's keyring holds more classes than their role")


def unlock_passphrase(slot_rows: list[tuple[str, str, bytes, bytes]], passphrase: str,
                      vault_id: bytes) -> tuple[bytes, bytes]:
    candidates = [r for r in slot_rows if r[1] == PASSPHRASE]
    if not candidates:
        raise WrongPassphrase("this vault has no passphrase slot")
    damaged: IntegrityError | None = None
    for slot_id, _kind, unlock, _ring in candidates:
        if K.slot_kid(unlock).hex() != slot_id:
            damaged = IntegrityError("key slot id does not match its blob")
            continue
        try:
            return K.slot_kid(unlock), K.open_passphrase_slot(unlock, passphrase, vault_id)
        except WrongPassphrase:
            continue
        except IntegrityError as e:
            damaged = e
    if damaged is not None:
        raise damaged
    raise WrongPassphrase()


def _read_meta(store: Store, meta: dict[str, bytes]) -> tuple[bytes, int, str, bytes, int | None]:
    """(vault id, version to open at, schema text, schema MAC, raised row version) from an
    unauthenticated dv_meta, refused if malformed or of an unknown format."""
    try:
        vault_id = meta["vault_id"]
        stored_version = int(meta["db_schema_version"])
        fmt = int(meta["format_version"])
        text = meta["schema"].decode("utf-8")
        mac = meta["schema_mac"]
    except (KeyError, ValueError):
        raise IntegrityError("vault metadata is missing or malformed") from None
    if stored_version < 1:  # every vault starts at 1: there is no step to migrate from below it
        raise IntegrityError("vault metadata is malformed (database schema version below 1)")
    if fmt != F.FORMAT_VERSION:
        raise IntegrityError(f"unknown vault format version {fmt}")
    if meta.get("moving"):
        moving.check_open(store)
    if len(vault_id) != F.ID_LEN:
        raise IntegrityError("vault id is malformed")
    # a row above the signed version was raised by hand: opened at the signed one (below)
    stored_version, raised = ST.signed_version_hint(meta, stored_version)
    if stored_version >= 7 and not meta.get("canaries"):  # format.md 13a: always there from 7 on
        raise IntegrityError("the canary list is missing (deleted in the database?); tell the lead")
    check_db_version(stored_version)
    return vault_id, stored_version, text, mac, raised


def _open_slot(store: Store, vault_id: bytes, passphrase: str | None, identity: Identity | None,
               user_rows: list[Any], slot_rows: list[Any]) -> tuple[U.User | None, bytes, bytes, bytes]:
    """(the opener's user or None, slot id, slot secret, keyring blob); a failure is logged."""
    if identity is not None:
        me = next((u for u in users_of(user_rows) if u.user_id == identity.public.user_id), None)
        if me is None or me.role == U.REVOKED:
            unlock_failed(store, identity)
            raise AccessDenied("this identity is not enrolled in this vault (never, or revoked)")
        row = next((r for r in slot_rows if r[0] == me.slot_id and r[1] == U.KIND_X25519), None)
        if row is None:
            raise IntegrityError("the user's key slot is missing")
        try:
            slot_secret = U.open_user_slot(row[2], identity, vault_id)
        except AccessDenied:  # a failed unlock like any other (their slot was replaced)
            unlock_failed(store, identity)
            raise
        return me, bytes.fromhex(row[0]), slot_secret, row[3]
    assert passphrase is not None
    try:
        slot_kid, slot_secret = unlock_passphrase(slot_rows, passphrase, vault_id)
    except WrongPassphrase:
        unlock_failed(store, None)
        raise
    return None, slot_kid, slot_secret, next(r[3] for r in slot_rows if r[0] == slot_kid.hex())


def unlock(store: Store, passphrase: str | None, identity: Identity | None,
           pins: str | os.PathLike[str] | None) -> Opened:
    """Unlock the vault in ``store`` and verify everything the handle will trust; raises
    WrongPassphrase, AccessDenied, NotFound, IntegrityError."""
    if not store.has_vault():
        raise NotFound("no vault in this database")
    with store.tx(write=False, snapshot=True) as conn:  # one commit's meta, slots and users
        meta = store.get_meta(conn)
        slot_rows = store.get_slots(conn)
        user_rows = store.get_users(conn)
    vault_id, stored_version, text, mac, raised = _read_meta(store, meta)
    me, slot_kid, slot_secret, keyring_blob = _open_slot(store, vault_id, passphrase, identity, user_rows, slot_rows)
    ring = K.open_keyring(slot_secret, vault_id, keyring_blob)
    K.verify_schema(ring, vault_id, text, mac)
    K.verify_text("schema", ring, vault_id, text, meta.get("schema_sig", b""))
    try:
        parsed = S.load(text)
    except SchemaError:
        raise IntegrityError("stored schema is authenticated but unparsable by this release") from None
    verify_users(parsed, ring, meta, vault_id, user_rows, slot_rows, me)
    plan = verified_plan(meta, "index_plan", ring, vault_id)
    if plan is None:
        raise IntegrityError("index plan is missing")
    pending = verified_plan(meta, "index_next", ring, vault_id)
    if pins is not None and identity is not None:  # compare first (its message is the plainest)
        from .pins import check as check_pin
        check_pin(pins, vault_id, ring.current(K.KIND_META_KEY).secret, pin_signers(ring), record=False,
                  location=store.url)
    signer = identity is None or identity.public.ed25519 == K.signers(ring).get(b"L")
    signed_db = ST.check(meta, ring, vault_id, stored_version, users_of(user_rows))
    if signed_db is None and stored_version >= F.STATEMENT_SINCE:
        # every release since wrote one, and only a signer could take a vault there: it was
        # deleted, and the lead's open would sign whatever user table it found
        raise IntegrityError("this vault's signed key statement is missing (deleted in the database?): "
                             "restore keys_stmt and keys_stmt_sig from a backup; tell the lead")
    if signed_db is None and not signer:  # made by an older release: only the lead's open signs it
        raise IntegrityError("this vault's keys are not signed: the lead must open it once with this "
                             "release before anyone else can (if the lead did, the database was edited)")
    if pins is not None and identity is not None:  # record only keys that passed every check
        check_pin(pins, vault_id, ring.current(K.KIND_META_KEY).secret, pin_signers(ring), location=store.url)
    return Opened(store, vault_id, parsed, ring, slot_kid, slot_secret, plan, pending, me, identity,
                  bytes(keyring_blob), stored_version, raised, signer, signed_db)


def target_version(o: Opened) -> int:
    """The version an opener takes the vault to. Only a signer can write the statement that
    versions from SIGNED_VERSION_FROM on need; others work at the version they find from
    there on."""
    if o.raised is not None and not o.signer:
        raise IntegrityError(f"this vault's database version was raised to v{o.raised} in the database (the lead "
                             f"signed v{o.db_version}): the database was edited; the lead's next open restores "
                             "it; tell the lead")
    if o.signer:
        return F.DB_SCHEMA_VERSION
    return o.db_version if o.db_version >= F.SIGNED_VERSION_FROM else min(F.DB_SCHEMA_VERSION,
                                                                         F.SIGNED_VERSION_FROM - 1)


def needs_upgrade(o: Opened, target: int) -> bool:
    return o.db_version < target or o.raised is not None \
        or (o.signer and (o.signed_db or 0) < max(o.db_version, target))


def check_signer(p: Parts, o: Opened) -> None:
    """Whoever re-seals keys and signs user tables finds a revocation undone at once, and a
    key slot the statement names gone."""
    store = o.store
    with store.tx(write=False, snapshot=True) as conn:
        users = p.access.verified_users(conn)
        p.access.check_not_revoked(conn, users)
        ST.check_slots(p.access, store.get_meta(conn), users, o.ring, store.get_slots(conn))


# -- upgrade --------------------------------------------------------------------------------------
def upgrade(p: Parts, stored: int, target: int, *, resign: bool, raised: int | None = None) -> None:
    """Bring the database to schema version ``target`` in one transaction: the table
    migrations; from before v5, the adoption of unsigned sealed DEKs (readers refuse them
    from v5 on; it needs the class keys); from before v6, a ``restate`` entry with the
    states of every row present, the baseline the record check starts from (what is
    there at the upgrade is taken as it is); and (``resign``: the lead or the recovery
    passphrase) the key statement signed for the new version. Not if the log already
    holds record states: then the stored version was lowered by hand, and a baseline
    would launder whatever rows were put back before (a shredded record restored, say),
    as the adoption would launder unsigned envelopes put there (refused). All of it under
    an exclusive lock, with the version read again under it: of two clients opening an
    old vault at once, the second finds it upgraded and leaves it (one baseline, and no
    deadlock on PostgreSQL). ``raised``: the row held this version, above the signed
    ``stored`` (open() authenticated the latter); the signer's upgrade writes the signed
    one back (and on), logging a ``repair`` entry, instead of signing the raised one."""
    a = p.access
    store = a.ses.store()
    with store.tx() as conn:
        store.lock_upgrade(conn)
        if resign:  # it signs the keys it holds: they must be the current ones (as any re-seal)
            store.lock_keys(conn)
            a.check_keys(conn, version=False)  # KeysChanged if a rotation happened since we opened
        now = a.db_version(conn)
        if raised is not None and now == raised:
            now = stored  # what the signed statement says; the row is written below
        else:
            raised = None
        check_db_version(now)
        if now >= target and raised is None:  # another client upgraded it since we read it
            if not resign:
                return
            assert a.ring is not None
            signed = ST.check(store.get_meta(conn), a.ring, a.ses.vid, now, a.verified_users(conn, statement=False))
            if signed is not None and signed >= now:
                return  # ... and signed it (a signer did)
        stored = now  # or took it part of the way (staff stop at 6): go on from there
        lowered = stored < 6 and has_states(store)
        if lowered and stored < 5:
            raise IntegrityError(f"this vault's database version was lowered to v{stored} (its log holds entries "
                                 "of v6 or later): the database was edited; tell the lead")
        baseline = stored < 6 and not lowered
        pairs = not baseline and stored < F.RECORD_STATES_V2_FROM <= target
        second = target >= F.RECORD_STATES_V2_FROM  # the kind the vault's entries take from now on
        kinds = (second,) if baseline else (False, True) if pairs else ()
        work = _upgrade_work(p, conn, stored, target, resign, raised, kinds)
        if baseline:
            p.journal.around("restate", work, lambda got: ("", {
                "baseline": True, "count": len(got), **p.journal.states(put=[t for (t,) in got])}))
        elif pairs:
            p.journal.around("restate", work, lambda got: ("", _paired(got)))
        else:
            work()


def _tokens(p: Parts, rows: Iterable[tuple[bytes, bytes]], kinds: tuple[bool, ...]) -> list[tuple[str, ...]]:
    """Each row's state tokens of the given kinds (False: first, True: second), or none for a
    row that does not parse: it has no state to name (the record check reports it damaged),
    and one planted row must not stop the lead's open."""
    out = []
    for rid, data in rows:
        try:
            out.append(tuple(p.records.state_token(rid, data, second=k) for k in kinds))
        except IntegrityError:
            continue
    return out


def _paired(pairs: list[tuple[str, ...]]) -> dict[str, Any]:
    """The upgrade to the second kind of record states (docs/format.md 13a): for every row
    present, its first-kind token dropped and its second-kind token put, the two lists in
    the same order (sorted by the dropped one), so that the check moves each row's state
    only where the first was live, and a person's subject export can follow it back."""
    pairs = sorted(pairs)
    state = {k: [t[i] for t in pairs] for i, k in enumerate(("drop", "put"))} if pairs else {}
    return {"upgrade": F.RECORD_STATES_V2_FROM, "count": len(pairs), **({"state": state} if state else {})}


def _upgrade_work(p: Parts, conn: Any, stored: int, target: int, resign: bool, raised: int | None,
                  kinds: tuple[bool, ...]) -> Callable[[], list[tuple[str, ...]]]:
    """The upgrade's writes, in the caller's transaction; then, with ``kinds``, every row's
    state tokens of those kinds (:func:`_tokens`), for the entry that names them."""
    a = p.access
    store = a.ses.store()

    def legacy(h: DekHeader) -> bool:
        if h.writer:  # kind W exists from v5 on: a vault below it cannot hold one
            raise IntegrityError(f"this vault's database version was lowered to v{stored} (it holds envelopes "
                                 "of v5 or later): the database was edited; tell the lead")
        return True

    def work() -> list[tuple[str, ...]]:
        new = migrations.upgrade(conn, stored, target)
        if stored < 5 <= target:
            adopt_sealed(store, conn, a.ses.vid, {kid: ck.key for kid, ck in a.by_kid.items()}, legacy,
                         codec=a.codec)
        store.put_meta(conn, {"db_schema_version": str(new).encode()})
        if raised is not None:
            p.journal.record("repair", "", {"db_schema_version": {"found": raised, "signed": stored}})
        listed = None
        if resign and stored < F.STATEMENT_V3_FROM <= new:  # sealed for the lead alone from v8
            listed = p.canaries.upgraded_list(conn)
            store.put_meta(conn, {"canaries": listed})
        if resign:  # never sign a table that lists a user the lead revoked (put back)
            users = a.verified_users(conn, statement=False)
            a.check_not_revoked(conn, users)
            ST.sign(a, conn, users=users, canaries=listed, version=new)
        return _tokens(p, store.scan_records(conn), kinds) if kinds else []
    return work
