"""The :class:`Vault`: the one object callers (library users and the CLI) talk to."""

from __future__ import annotations

import builtins
import dataclasses
import hmac
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from . import envelope as E
from . import index as I
from . import keys as K
from . import migrations
from . import notes as N
from . import pseudonym as P
from . import canaries as CA
from . import moving
from . import schema as S
from . import statement as ST
from . import users as U
from .errors import AccessDenied
from .identity import Identity, PublicIdentity
from .normalize import tokens
from .errors import (IntegrityError, KeysChanged, NotFound, SchemaError, ValidationError,
                     VaultClosed, VaultError, VaultExists, WrongPassphrase, utf8)
from .audit import RecordCheck, has_states, state_key, state_of
from .record import Record
from .store import Bucket, Store, StoreError, group_terms, pack_terms

_PASSPHRASE = "passphrase"


def _normalise_url(url: str | os.PathLike[str]) -> str:
    """Accept a SQLAlchemy URL, or a bare file path meaning the embedded SQLite default."""
    try:
        text = os.fspath(url)
    except TypeError:
        raise ValidationError("a vault location is a URL or a file path") from None
    if isinstance(text, bytes) or not text:
        raise ValidationError("a vault location is a URL or a file path")
    if "://" in text:
        return text
    return "sqlite:///" + os.path.abspath(text)


def _schema_text(schema: str | os.PathLike[str] | None) -> str:
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


def create(url: str | os.PathLike[str], passphrase: str, *, schema: str | os.PathLike[str] | None = None,
           kdf: F.KdfParams | None = None, population: int | None = None, k: int | None = None,
           precise: bool = False, lead: Identity | None = None, lead_name: str = "lead",
           _moving_from: str = "", _moving_sign: Callable[[bytes], bytes] | None = None) -> "Vault":
    """Create a new vault (refusing to overwrite one) and return it open.

    ``schema`` is TOML text or a path (``pathlib.Path``) to a TOML file; the default is
    the participant schema shipped in ``vault/schemas/participant.toml``. ``population``
    (expected number of records) and ``k`` (records expected to share each blind-index
    value) size the indexes; they default to the schema's ``expected_population`` and
    ``k_anonymity``. The indexes are planned jointly (vault.index.joint_bits) unless
    ``precise`` (large vaults, explicitly: each index gets the whole budget, which makes
    searches faster and lets the tuple of a record's buckets single it out; threat model
    7.2). Re-plan later with :meth:`Vault.reindex`. ``lead`` enrols the
    security lead's identity (who signs the user table and can enrol others); the
    passphrase then serves as the recovery key.

    ``_moving_from`` (vault.move only): the source vault's id, stored as the ``moving``
    mark in the first commit with the mover's signature (``_moving_sign`` returns who ||
    signature; vault.moving); open() refuses the vault until the move's import clears it.
    """
    text = _schema_text(schema)
    parsed = S.load(text)
    population = parsed.expected_population if population is None else population
    k = parsed.k_anonymity if k is None else k
    if not isinstance(population, int) or population < 1 or not isinstance(k, int) or k < 1:
        raise ValidationError("population and k must be positive integers")
    if not isinstance(precise, bool):
        raise ValidationError("precise must be true or false")
    params = kdf or F.KDF_DEFAULT
    K.check_kdf(params)
    K.passphrase_bytes(passphrase)
    if lead is not None:
        U.check_name(lead_name)  # before anything is written: a failure after it would leave a half vault
    url = _normalise_url(url)
    store = Store(url, create=True)
    made: set[str] = set()
    try:
        if store.has_vault():
            raise VaultExists("a vault already exists in this database")
        if store.vault_tables():  # a vault that lost dv_meta, a restore cut short: not ours to reuse
            raise VaultExists("this database holds vault tables (dv_*) but no vault metadata: a damaged or "
                              "partly restored vault? Refusing to create a vault over them")
        vault_id = C.random_bytes(F.ID_LEN)
        ring = K.Keyring.generate(parsed.classes, parsed.purposes)
        plan = I.make_plan(1, parsed, population, k, {c: 1 for c in parsed.classes}, precise)
        plan_text = plan.to_text()
        slot_secret = C.random_bytes(F.KEY_LEN)
        slot_kid = C.random_bytes(F.KID_LEN)
        seed = C.random_bytes(F.KEY_LEN)
        rec_sign = C.Signer(C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN))
        rec_box = C.x25519_public(C.hkdf_sha256(seed, F.LABEL_RECOVERY_BOX))
        rec_vk = C.ed25519_public(C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN))
        zero = bytes(F.KID_LEN)
        ring.keys += [K.Key(K.KIND_RECOVERY_SEED, "recovery", 1, zero, seed),
                      K.Key(K.KIND_RECOVERY_VK, "recovery", 1, zero, rec_vk),
                      K.Key(K.KIND_RECOVERY_BOX, "recovery", 1, zero, rec_box)]
        if lead is not None:
            ring.keys.append(K.Key(K.KIND_LEAD_VK, "lead", 1, zero, lead.public.ed25519))
            ring.keys.append(K.Key(K.KIND_SLOT_SECRET, slot_kid.hex(), 1, zero, slot_secret))
        who, sign = (b"L", lead.sign) if lead is not None else (b"R", rec_sign)
        unlock = K.seal_passphrase_slot(passphrase, slot_secret, slot_kid, vault_id, params)
        keyring = K.seal_keyring(slot_secret, slot_kid, vault_id, ring)
        mac = K.mac_schema(ring.current(K.KIND_META_KEY), vault_id, text)
        canaries = CA.seal_list(seed, vault_id, {})
        with store.tx() as conn:
            version = migrations.upgrade(conn, 0)
            store.put_meta(conn, {
                "vault_id": vault_id,
                "format_version": str(F.FORMAT_VERSION).encode(),
                "db_schema_version": str(version).encode(),
                "schema": text.encode("utf-8"),
                "schema_mac": mac,
                "recovery_pub": rec_box + rec_vk,
                "schema_sig": K.sign_text("schema", vault_id, text, who, sign),
                "index_plan_sig": K.sign_text("plan", vault_id, plan_text, who, sign),
                "index_plan": plan_text.encode(),
                "index_plan_mac": K.mac_plan(ring.current(K.KIND_META_KEY), vault_id, plan_text),
                # an empty list, of the size any list up to 170 canaries has: a vault with
                # no canaries looks like one with some
                "canaries": canaries,
                **ST.keys_meta(ring, vault_id, who, sign, version, [],
                               {slot_kid.hex(): (_PASSPHRASE, C.sha256(unlock).hex())}, canaries),
                **(moving.mark(_moving_from, vault_id, _moving_sign) if _moving_from and _moving_sign else {}),
            })
            store.put_slot(conn, slot_kid.hex(), _PASSPHRASE, unlock, keyring)
        made = store.vault_tables()  # committed, and none was there before: ours to drop on failure
        v = Vault(store, vault_id, parsed, ring, slot_kid, slot_secret, plan, None, keys_blob=keyring,
                  db_version=version)
        v._audit("create", "", {"schema": parsed.name, "population": population, "k": k, "plan": plan.mode})
        if lead is not None:
            v._identity = lead
            v.add_user(lead.public, lead_name, next(r.name for r in parsed.roles.values() if r.manage))
            v._setup_auditor()  # reasons from now on are sealed to the lead, as after any open
    except BaseException:
        _discard(store, made)  # no half-made vault left behind
        raise
    return v


def _discard(store: Store, made: set[str]) -> None:
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


def discard_unfinished_move(url: str | os.PathLike[str], source: "Vault | None" = None) -> str | None:
    """See vault.moving.discard_unfinished_move (a re-run of vault.move)."""
    return moving.discard_unfinished_move(os.fspath(url), source)


def discard_new(v: "Vault") -> None:
    """Close and remove a vault made moments ago whose filling failed (vault.move): every
    ``dv_*`` table is its own, as create() refuses a place that holds any."""
    store = v._s()
    made = store.vault_tables()
    v.close()
    _discard(store, made)


#: How often open() starts again when another client's rotation, revocation or re-seal
#: committed between its reads (its keys changed under it: nothing was wrong with them).
OPEN_ATTEMPTS = 5


def open(url: str | os.PathLike[str], passphrase: str | None = None, *,  # noqa: A001 - mirrors builtins
         identity: Identity | None = None, pins: str | os.PathLike[str] | None = None) -> "Vault":
    """Open an existing vault (see :func:`_open_once`). Why the retry: open reads the slots
    in one snapshot and checks the user table and key statement in later ones; a rotation
    committing in between is KeysChanged, which a fresh start resolves."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _open_once(url, passphrase, identity=identity, pins=pins)
        except KeysChanged:
            if attempt == OPEN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _open_once(url: str | os.PathLike[str], passphrase: str | None = None, *,
               identity: Identity | None = None, pins: str | os.PathLike[str] | None = None) -> "Vault":
    """Open an existing vault with the passphrase (all keys) or a user's identity (their
    role's keys); raises WrongPassphrase, AccessDenied, NotFound, IntegrityError.

    ``pins``: a known-vaults file (see vault.pins). With an identity, the first open
    records the vault's key fingerprint there and later opens refuse different keys, which
    is what a replaced key slot would give. The CLI keeps one next to each identity file."""
    if (passphrase is None) == (identity is None):
        raise ValidationError("open a vault with either a passphrase or an identity")
    if passphrase is not None:
        K.passphrase_bytes(passphrase)
    store = Store(_normalise_url(url), create=False)
    try:
        if not store.has_vault():
            raise NotFound("no vault in this database")
        with store.tx(write=False, snapshot=True) as conn:  # one commit's meta, slots and users
            meta = store.get_meta(conn)
            slot_rows = store.get_slots(conn)
            user_rows = store.get_users(conn)
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
        from .store import check_db_version
        check_db_version(stored_version)
        me: U.User | None = None
        if identity is not None:
            me = next((u for u in _users(user_rows) if u.user_id == identity.public.user_id), None)
            if me is None or me.role == U.REVOKED:
                _unlock_failed(store, identity)
                raise AccessDenied("this identity is not enrolled in this vault (never, or revoked)")
            row = next((r for r in slot_rows if r[0] == me.slot_id and r[1] == U.KIND_X25519), None)
            if row is None:
                raise IntegrityError("the user's key slot is missing")
            slot_kid = bytes.fromhex(row[0])
            try:
                slot_secret = U.open_user_slot(row[2], identity, vault_id)
            except AccessDenied:  # a failed unlock like any other (their slot was replaced)
                _unlock_failed(store, identity)
                raise
            keyring_blob = row[3]
        else:
            assert passphrase is not None
            try:
                slot_kid, slot_secret = _unlock_passphrase(slot_rows, passphrase, vault_id)
            except WrongPassphrase:
                _unlock_failed(store, None)
                raise
            keyring_blob = next(r[3] for r in slot_rows if r[0] == slot_kid.hex())
        ring = K.open_keyring(slot_secret, vault_id, keyring_blob)
        K.verify_schema(ring, vault_id, text, mac)
        K.verify_text("schema", ring, vault_id, text, meta.get("schema_sig", b""))
        try:
            parsed = S.load(text)
        except SchemaError:
            raise IntegrityError("stored schema is authenticated but unparsable by this release") from None
        _verify_users(parsed, ring, meta, vault_id, user_rows, slot_rows, me)
        plan = _verified_plan(meta, "index_plan", ring, vault_id)
        if plan is None:
            raise IntegrityError("index plan is missing")
        pending = _verified_plan(meta, "index_next", ring, vault_id)
        if pins is not None and identity is not None:  # compare first (its message is the plainest)
            from .pins import check as check_pin
            check_pin(pins, vault_id, ring.current(K.KIND_META_KEY).secret, _pin_signers(ring), record=False,
                      location=store.url)
        signer = identity is None or identity.public.ed25519 == K.signers(ring).get(b"L")
        signed_db = _check_keys_meta(meta, ring, vault_id, stored_version, _users(user_rows))
        if signed_db is None and stored_version >= F.STATEMENT_SINCE:
            # every release since wrote one, and only a signer could take a vault there: it was
            # deleted, and the lead's open would sign whatever user table it found
            raise IntegrityError("this vault's signed key statement is missing (deleted in the database?): "
                                 "restore keys_stmt and keys_stmt_sig from a backup; tell the lead")
        if signed_db is None and not signer:  # made by an older release: only the lead's open signs it
            raise IntegrityError("this vault's keys are not signed: the lead must open it once with this "
                                 "release before anyone else can (if the lead did, the database was edited)")
        if pins is not None and identity is not None:  # record only keys that passed every check
            check_pin(pins, vault_id, ring.current(K.KIND_META_KEY).secret, _pin_signers(ring), location=store.url)
    except BaseException:
        store.dispose()
        raise
    try:  # its set-up reads the user table again: a failure there must not leak the connection
        v = Vault(store, vault_id, parsed, ring, slot_kid, slot_secret, plan, pending, user=me, identity=identity,
                  keys_blob=bytes(keyring_blob), db_version=stored_version)
    except BaseException:
        store.dispose()
        raise
    try:
        if raised is not None and not signer:
            raise IntegrityError(f"this vault's database version was raised to v{raised} in the database (the lead "
                                 f"signed v{stored_version}): the database was edited; the lead's next open restores "
                                 "it; tell the lead")
        # Only a signer can write the statement that versions from SIGNED_VERSION_FROM on need;
        # others work at the version they find from there on.
        target = F.DB_SCHEMA_VERSION if signer else stored_version if stored_version >= F.SIGNED_VERSION_FROM \
            else min(F.DB_SCHEMA_VERSION, F.SIGNED_VERSION_FROM - 1)
        if stored_version < target or raised is not None \
                or (signer and (signed_db or 0) < max(stored_version, target)):
            v._upgrade(stored_version, target, resign=signer, **({"raised": raised} if raised is not None else {}))
        v._db_known = max(stored_version, target)
        if signer:  # whoever re-seals keys and signs user tables finds a revocation undone at once
            with store.tx(write=False, snapshot=True) as conn:
                users = v._verified_users(conn)
                v._check_not_revoked(conn, users)  # ... and a key slot the statement names gone
                ST.check_slots(v, store.get_meta(conn), users, ring, store.get_slots(conn))
        v._audit("open", "", {"as": "identity" if identity else "passphrase"})
    except BaseException:
        v.close()
        raise
    return v


def _pin_signers(ring: K.Keyring) -> str:
    """The pin's hash of who signs for the vault, from the opener's keyring (vault.pins)."""
    from .pins import signers_hash
    who = K.signers(ring)
    return signers_hash(who.get(b"L", b""), who.get(b"R", b""))


_meta_version = ST.meta_version
_check_keys_meta = ST.check


def _entry_detail(e: Any) -> dict[str, Any]:
    """An entry's detail as a dict; empty for one that is no JSON object (the entry fails its
    own check, so readers flag it where it stands: vault.audit_rows)."""
    from .audit_rows import detail_of
    return detail_of(e) or {}


def _check_batch(batch: Any) -> None:
    """A batch of 0 would switch in an empty index generation (reindex) or stop a rotation
    halfway; refuse it before anything is written."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValidationError("batch must be a positive integer")


def _field_names(fields: Any) -> list[str] | None:
    """A ``fields`` argument as a list, read once: validation and the work both walk it,
    and a generator would be spent by the first."""
    if fields is None:
        return None
    if isinstance(fields, (str, bytes)):
        raise ValidationError("fields must be a list of field names, not a string")
    try:
        out = list(fields)
    except TypeError:
        raise ValidationError("fields must be a list of field names") from None
    if not all(isinstance(n, str) for n in out):
        raise ValidationError("fields must be a list of field names")
    return out


def _unlock_failed(store: Store, identity: Identity | None) -> None:
    """Failed unlocks are logged too; there is no key to sign with, so the entry is only chained.
    Its shape is fixed (audit.unsigned_shape_ok): verify refuses any other unsigned entry."""
    from .audit import Auditor
    actor = identity.public.raw if identity is not None else bytes(64)
    Auditor(actor, None, None).append(store, "unlock_failed", "", {"with": "identity" if identity else "passphrase"},
                                      unsigned=True)


def _users(rows: list[tuple[str, str, str, bytes, str]]) -> list[U.User]:
    return [U.from_row(*row) for row in rows]


def _verify_users(schema: S.Schema, ring: K.Keyring, meta: dict[str, bytes], vault_id: bytes,
                  user_rows: list, slot_rows: list, me: U.User | None) -> None:
    """The user table must carry the lead's signature, every public-key slot must belong to
    a signed user, and an opener's keyring must not exceed their role."""
    users = _users(user_rows)
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


def _verified_plan(meta: dict[str, bytes], name: str, ring: K.Keyring, vault_id: bytes) -> I.Plan | None:
    if name not in meta or not meta[name]:
        return None
    try:
        text = meta[name].decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError("index plan is malformed") from None
    K.verify_plan(ring, vault_id, text, meta.get(name + "_mac", b""))
    K.verify_text("plan", ring, vault_id, text, meta.get(name + "_sig", b""))
    try:
        return I.Plan.from_text(text)
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("index plan is authenticated but unparsable") from None


def _unlock_passphrase(slot_rows: list[tuple[str, str, bytes, bytes]], passphrase: str,
                       vault_id: bytes) -> tuple[bytes, bytes]:
    candidates = [r for r in slot_rows if r[1] == _PASSPHRASE]
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


class _ClassKey:
    __slots__ = ("key", "aead")

    def __init__(self, key: K.Key) -> None:
        self.key = key
        self.aead = C.Aead(key.secret)


def _cannot_unseal(_: bytes) -> bytes:
    raise C.AuthFailure()


class Vault:
    """An open vault. Use as a context manager; ``close()`` drops key references.

    Python cannot wipe memory: closing removes our references to key material so
    the garbage collector may reclaim it, nothing more (see docs/threat-model.md).
    """

    def __init__(self, store: Store, vault_id: bytes, schema: S.Schema, ring: K.Keyring,
                 slot_kid: bytes, slot_secret: bytes, plan: I.Plan, pending: I.Plan | None,
                 user: U.User | None = None, identity: Identity | None = None, *, keys_blob: bytes = b"",
                 db_version: int = F.DB_SCHEMA_VERSION) -> None:
        self._store: Store | None = store
        # our slot's keyring blob as we loaded (or last wrote) it: every re-seal rewrites it,
        # so a change means another process rotated, revoked or re-sealed (_check_keys)
        self._keys_seen = keys_blob
        self.user = user
        self.role: S.Role = (schema.roles[user.role] if user is not None
                             else next(r for r in schema.roles.values() if r.manage))
        self._identity: Identity | None = identity
        self._vid = vault_id
        self.schema = schema
        self._ring: K.Keyring | None = ring
        self._slot_kid = slot_kid
        self._slot_secret: bytes | None = slot_secret
        self._codec = E.Codec(vault_id, schema.classes)
        self._field_class = {f.name: f.cls for f in schema.fields.values()}
        self._decoders = {f.name: (bytes.decode if f.type in ("text", "enum") else f.decode)
                          for f in schema.fields.values()}
        self._prefixes = {P.purpose_prefix(p): p for p in schema.purposes}
        self._plan_active = plan
        self._plan_pending = pending
        self._issued: set[tuple[str, bytes]] = set()  # pseudonyms known to be stored
        self._canary_cache: dict[str, int] | None = None  # vault.canaries.load
        # the database schema version this handle opened (or upgraded) the vault at: the only
        # one it signs (vault.statement.signable_version), and the one the statement must name
        self._db_known = db_version
        #: what the lead should know (a key slot the statement names is missing): the CLI prints them
        self.warnings: list[str] = []
        self._pid = os.getpid()
        self._writers: dict[bytes, tuple[bytes, frozenset[str]]] = {}
        self._load_ring(ring)
        self._setup_auditor()

    def _recovery_keys(self) -> tuple[bytes, bytes] | None:
        """(X25519 secret, Ed25519 seed) of the recovery actor, from the seed in the full
        keyring (passphrase openers); None for identity openers."""
        if self._ring is None:
            return None
        seed = next((k.secret for k in self._ring.keys if k.kind == K.KIND_RECOVERY_SEED), None)
        if seed is None:
            return None
        return C.hkdf_sha256(seed, F.LABEL_RECOVERY_BOX), C.hkdf_sha256(seed, F.LABEL_RECOVERY_SIGN)

    def _recovery_public(self) -> bytes:
        """The recovery actor's public identity (X25519 || Ed25519), from this keyring."""
        assert self._ring is not None
        box = next((k.secret for k in self._ring.keys if k.kind == K.KIND_RECOVERY_BOX), b"")
        vk = next((k.secret for k in self._ring.keys if k.kind == K.KIND_RECOVERY_VK), b"")
        return box + vk

    @property
    def recovery_actor_id(self) -> str:
        """The audit log's actor id for whoever opens the vault with the recovery passphrase
        (one actor for all of them: the passphrase names no one)."""
        from .audit import actor_id
        return actor_id(self._recovery_public())

    def _plan_signer(self) -> tuple[bytes, Callable[[bytes], bytes]]:
        """Who signs schema/plan changes: the lead (by identity) or the recovery actor."""
        if self.user is None:
            rec = self._recovery_keys()
            assert rec is not None
            return b"R", C.Signer(rec[1])
        if self._identity is not None and self._lead_vk is not None and self._identity.public.ed25519 == self._lead_vk:
            return b"L", self._identity.sign
        raise AccessDenied("only the security lead or the recovery passphrase can change the index plan")

    def _setup_auditor(self) -> None:
        from .audit import Auditor
        rec = self._recovery_keys()
        if self.user is not None and self._identity is not None:
            actor, self._signer = self._identity.public.raw, self._identity.sign
        else:
            if rec is None:
                raise IntegrityError("the recovery keyring lacks the recovery actor's seed")
            actor = C.x25519_public(rec[0]) + C.ed25519_public(rec[1])
            self._signer = C.Signer(rec[1])
        self._recovery_unseal = (lambda c: C.unseal(rec[0], c)) if rec else _cannot_unseal
        with self._s().tx(write=False, snapshot=True) as conn:
            users = self._verified_users(conn)
        self._writers = self._writer_table(users)
        lead = next((u for u in users if self._lead_vk is not None and u.public.ed25519 == self._lead_vk
                     and u.role in self.schema.roles and self.schema.roles[u.role].manage), None)
        # Reasons go to the lead, or (no lead) to the recovery key from the authenticated keyring.
        rec_pub = self._recovery_public()
        reason_to = ((lead.public.x25519, N.recipient_id(lead.public.raw)) if lead
                     else (rec_pub[:32], N.recipient_id(rec_pub)) if rec_pub else None)
        self._auditor = Auditor(actor, self._signer, reason_to)

    def _upgrade(self, stored: int, target: int, *, resign: bool, raised: int | None = None) -> None:
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
        from .rotation import adopt_sealed
        from .store import check_db_version
        store = self._s()
        with store.tx() as conn:
            store.lock_upgrade(conn)
            if resign:  # it signs the keys it holds: they must be the current ones (as any re-seal)
                store.lock_keys(conn)
                self._check_keys(conn)  # KeysChanged if a rotation happened since we opened
            now = self._db_version(conn)
            if raised is not None and now == raised:
                now = stored  # what the signed statement says; the row is written below
            else:
                raised = None
            check_db_version(now)
            if now >= target and raised is None:  # another client upgraded it since we read it
                if not resign:
                    return
                signed = _check_keys_meta(store.get_meta(conn), self._ring, self._vid, now,  # type: ignore[arg-type]
                                          self._verified_users(conn, statement=False))
                if signed is not None and signed >= now:
                    return  # ... and signed it (a signer did)
            stored = now  # or took it part of the way (staff stop at 6): go on from there
            lowered = stored < 6 and has_states(store)
            if lowered and stored < 5:
                raise IntegrityError(f"this vault's database version was lowered to v{stored} (its log holds entries "
                                     "of v6 or later): the database was edited; tell the lead")
            baseline = stored < 6 and not lowered

            def legacy(h: E.DekHeader) -> bool:
                if h.writer:  # kind W exists from v5 on: a vault below it cannot hold one
                    raise IntegrityError(f"this vault's database version was lowered to v{stored} (it holds envelopes "
                                         "of v5 or later): the database was edited; tell the lead")
                return True

            def work() -> list[str]:
                new = migrations.upgrade(conn, stored, target)
                if stored < 5 <= target:
                    adopt_sealed(store, conn, self._vid, {kid: ck.key for kid, ck in self._by_kid.items()}, legacy)
                store.put_meta(conn, {"db_schema_version": str(new).encode()})
                if raised is not None:
                    self._audit("repair", "", {"db_schema_version": {"found": raised, "signed": stored}})
                listed = None
                if resign and stored < F.STATEMENT_V3_FROM <= new:  # sealed for the lead alone from v8
                    listed = CA.upgraded_list(self, conn)
                    store.put_meta(conn, {"canaries": listed})
                if resign:  # never sign a table that lists a user the lead revoked (put back)
                    users = self._verified_users(conn, statement=False)
                    self._check_not_revoked(conn, users)
                    ST.sign(self, conn, users=users, canaries=listed, version=new)
                return [self._state_token(rid, data) for rid, data in store.scan_records(conn)] if baseline else []
            if not baseline:
                work()
                return
            self._audited("restate", work,
                          lambda put: ("", {"baseline": True, "count": len(put), **self._states(put=put)}))

    def _writer_table(self, users: list[U.User]) -> dict[bytes, tuple[bytes, frozenset[str]]]:
        """User id -> (Ed25519 verify key, classes their role may fill in unread), from the
        signed user table: whose signature a sealed (kind W) envelope may carry."""
        out = {}
        for u in users:
            role = self.schema.roles.get(u.role)
            if role is not None and role.write_only:
                out[bytes.fromhex(u.user_id)] = (u.public.ed25519, frozenset(role.write_only))
        return out

    def _writer_key(self, writer: bytes, cls: str) -> bytes | None:
        """E.WriterKeys for this vault. A writer enrolled after this handle read the user table
        is looked up again (checked against the lead's signature); a revoked one is refused."""
        entry = self._writers.get(writer)
        if entry is None and os.getpid() == self._pid:  # a forked worker never touches the parent's connection
            self._refresh_writers()
            entry = self._writers.get(writer)
        return entry[0] if entry is not None and cls in entry[1] else None

    def _refresh_writers(self) -> None:
        with self._s().tx(write=False, snapshot=True) as conn:
            self._writers = self._writer_table(self._verified_users(conn))

    def _sealing_writer(self) -> tuple[bytes, Callable[[bytes], bytes]] | None:
        """(user id, sign) that signs the DEKs this opener seals to write-only classes."""
        if self.user is None or self._identity is None:
            return None
        return bytes.fromhex(self.user.user_id), self._signer

    def _load_ring(self, ring: K.Keyring) -> None:
        """(Re)build every key lookup from a keyring: after open, rotation or key destruction."""
        self._ring = ring
        self._by_kid: dict[bytes, _ClassKey] = {
            k.kid: _ClassKey(k) for k in ring.keys if k.kind == K.KIND_CLASS_KEY}
        self._keys = {kid: self._codec.key_entry(ck.key.name, ck.key.version, ck.aead,
                                                 E.class_box_secret(ck.key.secret))
                      for kid, ck in self._by_kid.items()}
        self._class_pub: dict[str, K.Key] = {}
        for k in ring.keys:
            if k.kind == K.KIND_CLASS_PUBLIC and (k.name not in self._class_pub
                                                   or k.version > self._class_pub[k.name].version):
                self._class_pub[k.name] = k
        self._current: dict[str, _ClassKey] = {}
        for cls in self.schema.classes:
            try:
                self._current[cls] = self._by_kid[ring.current(K.KIND_CLASS_KEY, cls).kid]
            except KeyError:
                if self.user is None or cls in self.role.classes:
                    raise IntegrityError(f"keyring lacks a key for class {cls!r}") from None
        self._lead_vk = K.signers(ring).get(b"L")
        self._state_key = state_key(ring.current(K.KIND_META_KEY).secret)  # record states (format.md 13a)
        self._purposes: dict[str, I.PurposeKeys] = {}
        for name in self.schema.purposes:
            try:
                cur = ring.current(K.KIND_PURPOSE_KEY, name)
            except KeyError:
                continue
            self._purposes[name] = I.PurposeKeys(name, cur.kid, cur.secret)
        self._indexers = self._make_indexers()

    def _class_key(self, cls: str, version: int) -> bytes:
        assert self._ring is not None
        for k in self._ring.keys:
            if k.kind == K.KIND_CLASS_KEY and k.name == cls and k.version == version:
                return k.secret
        raise IntegrityError(f"index plan refers to a destroyed key ({cls} v{version}); run reindex")

    def _make_indexers(self) -> list[tuple[int, I.Indexer]]:
        """Indexers for the live plan and, during a re-index, the pending one, each with the
        class key versions its plan was built with (rotation switches them via reindex)."""
        return self._make_indexers_for(self._plan_active, self._plan_pending)

    def _make_indexers_for(self, active: I.Plan, pending: I.Plan | None) -> list[tuple[int, I.Indexer]]:
        out = []
        for plan in (active, pending):
            if plan is None:
                continue
            keys = {c: self._class_key(c, v) for c, v in plan.class_versions.items() if c in self._current}
            out.append((plan.gen, I.Indexer(self.schema, keys, plan)))
        return out

    # -- what this opener may do (for front ends) -------------------------------------------
    @property
    def readable_fields(self) -> list[str]:
        """Fields whose class key this opener holds."""
        return [n for n, f in self.schema.fields.items() if f.cls in self._current]

    @property
    def writable_fields(self) -> list[str]:
        """Fields this opener may fill in on a new record (readable or write-only classes)."""
        return [n for n, f in self.schema.fields.items() if f.cls in self._current or f.cls in self._class_pub]

    @property
    def purposes(self) -> list[str]:
        """Pseudonym purposes this opener holds keys for."""
        return [p for p in self.schema.purposes if p in self._purposes]

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._vid.hex()

    def __repr__(self) -> str:
        state = "closed" if self._store is None else "open"
        return f"<Vault {self._vid.hex()} schema={self.schema.name} {state}>"

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
        self._store = None
        self._ring = None
        self._slot_secret = None
        self._by_kid = {}
        self._current = {}
        self._keys = {}
        self._indexers = []
        self._purposes = {}
        self._state_key = b""

    def _s(self) -> Store:
        if self._store is None:
            raise VaultClosed("the vault is closed")
        return self._store

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _rid(record_id: str) -> bytes:
        if not isinstance(record_id, str) or len(record_id) != 2 * F.ID_LEN:
            raise ValidationError("malformed record id (expected 32 hex characters)")
        try:
            return bytes.fromhex(record_id)
        except ValueError:
            raise ValidationError("malformed record id (expected 32 hex characters)") from None

    def _encode(self, values: Mapping[str, Any], where: str = "", *,
                partial: bool = False) -> dict[str, dict[str, bytes]]:
        """Validate a whole record (or, ``partial``, an update's changes) before any crypto or
        database work (each value by its field, then the schema's required fields: see
        Schema.check_required); group by class."""
        if not isinstance(values, Mapping):
            raise ValidationError(f"{where}a record must be a mapping of field -> value")
        by_class: dict[str, dict[str, bytes]] = {c: {} for c in self.schema.classes}
        fields = self.schema.fields
        self.schema.check_required(values, where, partial=partial)  # a blank required value is "required" first
        for name, value in values.items():
            f = fields.get(name) if isinstance(name, str) else None
            if f is None:
                raise ValidationError(f"{where}unknown field {name!r}", field=str(name))
            if value is None:
                continue
            try:
                by_class[f.cls][name] = f.encode(value)
            except ValidationError as e:
                raise ValidationError(f"{where}{e}", field=name) from None
        return by_class

    def _seal_record(self, rid: bytes, by_class: dict[str, dict[str, bytes]],
                     rnd: bytes | None = None, only: Iterable[str] | None = None,
                     ids: list[bytes] | None = None) -> bytes:
        """Every class gets an envelope, even an empty one, so every row has the schema's shape
        and every class has a DEK to rewrap. This hides nothing about content: the field
        names present and their 32-byte length buckets are visible (docs/threat-model.md)."""
        envs = []
        need = 0
        chosen = self.schema.classes if only is None else [c for c in self.schema.classes if c in set(only)]
        for cls in chosen:
            items = sorted(by_class[cls].items()) if cls in by_class else []
            ck = self._current.get(cls)
            if ck is not None:
                envs.append((cls, ck.key.kid, ck.key.version, ck.aead, items))
            else:  # write-only class: the DEK is sealed to the class's public key
                pub = self._class_pub.get(cls)
                if pub is None:
                    raise AccessDenied(f"role {self.role.name!r} can neither read nor write class {cls!r}")
                envs.append((cls, pub.kid, pub.version, pub.secret, items))
            need += E.class_randomness(len(items))
        if rnd is None:  # one CSPRNG call per record: cheaper than one per nonce, same source
            rnd = C.random_bytes(need)
        if ids is not None:  # each class's DEK id, in row order, from where seal_record takes it
            pos = 0
            for env in envs:
                ids.append(rnd[pos + F.KEY_LEN:pos + F.KEY_LEN + F.KID_LEN])
                pos += E.class_randomness(len(env[4]))
        return self._codec.seal_record(rid, envs, rnd, self._sealing_writer())

    def _open_row(self, rid: bytes, data: bytes, classes: dict[str, list[str] | None],
                  decoders: dict[str, Callable[[bytes], Any]] | None = None) -> dict[str, Any]:
        """Authenticate a record row and return the wanted plaintexts: encoded bytes, or
        values if ``decoders`` is given."""
        try:
            return self._codec.open_record(data, rid, self._keys, classes, self._field_class, decoders,
                                           self._writer_key)
        except E.FieldFailure as e:
            raise IntegrityError("field failed authentication", record_id=rid.hex(), field=e.name) from None
        except E.FieldEncoding as e:
            raise IntegrityError("field holds an invalid encoding", record_id=rid.hex(), field=e.name) from None
        except E.EnvelopeFailure as e:
            if self._keys_changed():  # rewrapped by a rotation this handle has not seen: not tampering
                raise KeysChanged() from None
            raise IntegrityError(f"class {e.cls!r} envelope failed authentication", record_id=rid.hex()) from None
        except (E.Malformed, TypeError):  # TypeError: a row edited to hold text, not bytes
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None

    def _plan(self, fields: Sequence[str] | None) -> dict[str, list[str] | None]:
        """Which classes to open, and which fields of each to decrypt (None = all).

        Without ``fields``: every class this opener holds. Asking for a field of a class
        the opener's role does not hold is refused here, before any database work (and
        would fail anyway: the key is not in memory)."""
        if fields is None:
            return {c: None for c in self.schema.classes if c in self._current}
        if isinstance(fields, str):
            raise ValidationError("fields must be a list of field names, not a string")
        want: dict[str, list[str] | None] = {}
        for name in fields:
            f = self.schema.field(name)
            self._need_class(f.cls, f"field {name!r}")
            lst = want.setdefault(f.cls, [])
            assert lst is not None
            if name not in lst:
                lst.append(name)
        return want

    def _need_class(self, cls: str, what: str) -> None:
        if cls not in self._current:
            raise AccessDenied(f"{what} is in class {cls!r}, which role {self.role.name!r} does not hold")

    def _need_writable(self, action: str) -> None:
        """Adding a record needs, for every class, its key or at least its public key."""
        missing = [c for c in self.schema.classes if c not in self._current and c not in self._class_pub]
        if missing:
            raise AccessDenied(f"{action} needs every class; role {self.role.name!r} cannot write {', '.join(missing)}")

    def _need_all_purposes(self, action: str) -> None:
        """A shred deletes every issued pseudonym of the record, found only through the
        purpose keys; without one, its rows would outlive the record."""
        missing = [p for p in self.schema.purposes if p not in self._purposes]
        if missing:
            raise AccessDenied(f"{action} needs every purpose key; role {self.role.name!r} lacks {', '.join(missing)}")

    def _need_all_classes(self, action: str) -> None:
        missing = [c for c in self.schema.classes if c not in self._current]
        if missing:
            raise AccessDenied(f"{action} needs every class key; role {self.role.name!r} lacks {', '.join(missing)}")

    def _decode_row(self, rid: bytes, data: bytes, classes: dict[str, list[str] | None]) -> Record:
        return Record(rid.hex(), self._open_row(rid, data, classes, self._decoders))

    # -- public API -----------------------------------------------------------------------
    def add(self, values: Mapping[str, Any]) -> str:
        """Encrypt and store one record; returns its random id (32 hex characters)."""
        return self.add_many([values])[0]

    def _add_many_impl(self, rows: Iterable[Mapping[str, Any]],
                       progress: Callable[[int, int], None] | None = None, *,
                       entry: tuple[str, dict[str, Any]] = ("add", {}), canaries: Sequence[int] = (),
                       then: Callable[[list[str]], None] | None = None) -> list[str]:
        """Validate, seal and store every row in one transaction: all or nothing.

        Rows are validated, sealed and indexed in chunks, on every core for a big batch
        (vault._parallel: forked workers inherit the rows and keys; only ciphertext and
        index terms come back), while this process writes the finished chunks. A bad row
        rolls the whole transaction back; the error names the first bad row. ``entry``
        (action, detail) is appended in the same transaction, with the new rows' states, and
        a handle that holds the canary list's key re-seals it there too, with the rows
        ``canaries`` (their positions) added (vault.canaries.reseal); ``then(ids)`` runs in it
        last (vault.move: the end of the move)."""
        store = self._s()
        self._need_writable("adding records")
        rows = list(rows)

        def seal(bounds: tuple[int, int]) -> tuple[list[tuple[bytes, bytes]], dict[Bucket, bytes], list[str]]:
            batch, terms, states = [], [], []
            for i in range(*bounds):
                by_class = self._encode(rows[i], f"row {i + 1}: ")
                rid = C.random_bytes(F.ID_LEN)
                ids: list[bytes] = []
                data = self._seal_record(rid, by_class, ids=ids)
                batch.append((rid, data))
                states.append(self._state_token(rid, data, b"".join(ids)))
                try:
                    terms.extend(self._index_rows(rid, rows[i]))
                except ValidationError as e:  # a value too long to index (vault.index.capped_normalize)
                    raise ValidationError(f"row {i + 1}: {e}", field=e.field) from None
            return batch, group_terms(terms), states

        out: list[str] = []
        put: list[str] = []
        buckets: dict[Bucket, list[bytes]] = {}
        with store.tx(write=False) as conn:
            self._sync_plan(conn)  # before the workers fork: they compute the index terms
        with PAR.pool(seal, len(rows)) as pool, store.tx() as conn:
            if CA.holds_key(self):  # it signs the key statement again (the canary list): first, as every signer
                store.lock_keys(conn)
            self._check_keys(conn)  # sealed with our class keys: they must still be current
            if self._sync_plan(conn, lock=True):  # a re-index began or ended just now
                raise KeysChanged("the blind-index plan changed while adding (a re-index elsewhere); add again")
            for batch, groups, states in pool.imap(PAR.ranges(len(rows), PAR.CHUNK)):
                store.insert_records(conn, batch)
                for key, ids in groups.items():
                    buckets.setdefault(key, []).append(ids)
                out += [rid.hex() for rid, _ in batch]
                put += states
                if progress is not None:
                    progress(len(out), len(rows))
            store.insert_index_groups(conn, buckets)  # all at once: each bucket is written once
            # in the same transaction: no row without its logged state, no state without its row
            self._audit(entry[0], "", {**entry[1], "count": len(out), **self._states(put=put)})
            CA.reseal(self, conn, [out[i] for i in canaries])  # the lead's adds: after the log's lock
            if then is not None:
                then(out)
        return out

    def _index_rows(self, rid: bytes, values: Mapping[str, Any],
                    oversize: str = "raise") -> list[tuple[int, str, int, bytes]]:
        """Every generation's terms (``oversize``: see Indexer.terms)."""
        return [(gen, name, value, rid) for gen, ix in self._indexers
                for name, value in ix.terms(values, oversize=oversize)]

    def _get_impl(self, record_id: str, fields: Sequence[str] | None = None) -> Record:
        """Decrypt one record, or only the named fields of it."""
        store = self._s()
        rid = self._rid(record_id)
        classes = self._plan(fields)
        with store.tx(write=False) as conn:
            data = store.get_record(conn, rid)
        if data is None:
            raise NotFound(f"no record {record_id}")
        return self._decode_row(rid, data, classes)

    def _update_impl(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields (None removes one). Each touched class gets a fresh DEK and fresh
        ciphertexts for all its fields, so an older cell replayed into the row fails."""
        store = self._s()
        rid = self._rid(record_id)
        changes = self._encode(values, partial=True)  # update() has checked the classes
        fields = self.schema.fields
        removed = {n for n, v in values.items() if v is None}
        touched = {c for c in self.schema.classes if changes[c]} | {fields[n].cls for n in removed}
        detail: dict[str, Any] = {"fields": sorted(map(str, values))}
        with store.tx() as conn:  # the row, its index terms and its entry (with the states) commit together
            self._check_keys(conn)
            self._sync_plan(conn, lock=True)
            data = store.get_record(conn, rid, lock=True)
            if data is None:
                raise NotFound(f"no record {record_id}")
            if not touched:
                self._audit("update", self._target(record_id), detail)
                return
            plain = self._open_row(rid, data, {c: None for c in touched})
            envs = E.unpack_record(data)  # framing already verified by _open_row
            by_class: dict[str, dict[str, bytes]] = {c: {} for c in touched}
            for name, pt in plain.items():
                by_class[fields[name].cls][name] = pt
            for cls in touched:
                for n in removed:
                    by_class[cls].pop(n, None)
                by_class[cls].update(changes[cls])
            fresh = E.unpack_record(self._seal_record(rid, by_class, only=touched))
            merged = []
            for cls in self.schema.classes:
                env = fresh[cls] if cls in touched else envs.get(cls)
                if env is None:
                    raise IntegrityError(f"class {cls!r} envelope is missing", record_id=record_id)
                merged.append((cls, env[0], env[1]))
            row = E.pack_record(merged)
            store.put_record(conn, rid, row)
            # Blind-index terms of the touched classes: old ones out (computed from the values
            # we just decrypted), new ones in.
            if any(f.search == "exact" and f.cls in touched for f in fields.values()):
                def searchable(src: Mapping[str, bytes]) -> dict[str, Any]:
                    return {n: fields[n].decode(pt) for n, pt in src.items() if fields[n].search == "exact"}
                store.delete_index_terms(conn, self._index_rows(rid, searchable(plain), "index"))
                new_values = searchable({n: pt for cls in touched for n, pt in by_class[cls].items()})
                store.insert_index(conn, self._index_rows(rid, new_values))
            self._audit("update", self._target(record_id),
                        {**detail, **self._states([self._state_token(rid, data)], [self._state_token(rid, row)])})

    def _delete_impl(self, record_id: str) -> None:
        """Crypto-shred: the record's row, its blind-index entries, its issued pseudonyms and
        its break-glass requests and grants (a grant is a value sealed to an identity key,
        which no rotation reaches) are deleted; on SQLite secure_delete zeroes the freed
        pages and the WAL is checkpointed and truncated. Copies in older backups stay
        readable until the class keys rotate (docs/threat-model.md)."""
        from . import breakglass
        store = self._s()
        rid = self._rid(record_id)
        with store.tx() as conn:  # the deletion and its entry (with the dropped state) commit together
            store.lock_writes(conn)  # a write like any other: a move's copy keeps it out (vault.move)
            # the row's lock before the log's (as a rotation batch takes them): else a deadlock
            data = store.get_record(conn, rid, lock=True)
            if data is None:
                raise NotFound(f"no record {record_id}")
            asked = breakglass.forget(conn, record_id=rid)  # before the log's lock, as a reveal takes them
            self._audit("shred", self._target(record_id),
                        {**({"requests": asked} if asked else {}), **self._states([self._state_token(rid, data)])})
            self._alarm_if_canary([record_id], "shred")  # here: after the commit no pseudonym names it
            if not store.delete_record(conn, rid):
                raise NotFound(f"no record {record_id}")
            store.delete_index(conn, rid)
            for keys in self._purposes.values():
                tag = keys.tag(keys.value(rid))
                store.delete_pseudonym(conn, keys.purpose, tag)
                self._issued.discard((keys.purpose, tag))
        store.checkpoint()

    def _records_impl(self, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Stream every record (or only some fields of each), decrypting as it goes."""
        store = self._s()
        classes = self._plan(fields)
        for rid, data in store.iter_records():
            yield self._decode_row(rid, data, classes)

    # -- search ---------------------------------------------------------------------------
    def _live_indexer(self) -> I.Indexer:
        """The live generation's indexer, after following a re-index run elsewhere (a
        search with a switched-out generation would find nothing)."""
        with self._s().tx(write=False) as conn:
            self._sync_plan(conn)
        return self._indexers[0][1]

    def _search_field(self, name: str) -> S.Field:
        f = self.schema.field(name)
        self._need_class(f.cls, f"field {name!r}")
        if f.search != "exact":
            raise ValidationError(f"field {name!r} has no blind index (search = 'none')", field=name)
        return f

    def _candidates(self, terms: list[tuple[str, int]]) -> list[bytes]:
        store = self._s()
        with store.tx(write=False) as conn:
            return store.lookup_index(conn, self._plan_active.gen, terms)

    def _matches(self, ids: list[bytes], need: list[str], fields: Sequence[str] | None,
                 keep: Callable[[Record], bool]) -> list[Record]:
        """One query for all candidates; decrypt only the searched fields to drop the false
        positives, then the requested fields of the true matches only."""
        if not ids:
            return []
        store = self._s()
        with store.tx(write=False) as conn:
            rows = store.get_records(conn, ids)
        probe = self._plan(need)
        visible = [n for n, f in self.schema.fields.items() if f.cls in self._current]
        full = self._plan(visible if fields is None else list(fields))
        out = []
        for rid, data in rows:
            if keep(self._decode_row(rid, data, probe)):
                out.append(self._decode_row(rid, data, full))
        return out

    def _find_impl(self, /, fields: Sequence[str] | None = None, **criteria: Any) -> list[Record]:
        """Records whose fields equal all the given values (after normalisation).

        Uses the truncated blind indexes to pick candidates, decrypts them and drops the
        false positives, so the result is exact. ``fields`` limits what is returned.
        Example: ``v.find(legal_name="Amira Haddad", email="amira@example.org")``.
        """
        if not criteria:
            raise ValidationError("find() needs at least one field=value")
        if fields is not None:
            self._plan(fields)  # validates names
        ix = self._live_indexer()
        terms, wanted = [], {}
        for name, value in criteria.items():
            f = self._search_field(name)
            if f.type != "text" and isinstance(value, str):
                value = f.parse_text(value)  # "41", "2026-11-27", "yes": as the CLI types them
            elif f.type == "text" and not isinstance(value, str):
                raise ValidationError(f"search value for {name!r} must be text", field=name)
            elif f.type == "text":
                utf8(value, f"search value for {name!r} must be valid UTF-8 text", field=name)
            wanted[name] = I.normal_form(f, value)
            if not wanted[name]:  # e.g. "n/a" as a phone: it would match every value that is no number
                raise ValidationError(f"search value for {name!r} is empty once normalised", field=name)
            terms.append(ix.exact_term(f, value, normal=wanted[name]))
        def keep(rec: Record) -> bool:
            return all(n in rec and I.stored_normal_form(self.schema.fields[n], rec[n]) == v for n, v in wanted.items())
        return self._matches(self._candidates(terms), list(criteria), fields, keep)

    def _find_tokens_impl(self, /, fields: Sequence[str] | None = None, **criteria: str) -> list[Record]:
        """Records whose name fields contain every given token: "Haddad" finds "Amira Haddad".

        Only fields declared with ``tokens = true`` can be searched this way.
        """
        if not criteria:
            raise ValidationError("find_tokens() needs at least one field=value")
        if fields is not None:
            self._plan(fields)
        ix = self._live_indexer()
        terms, wanted = [], {}
        for name, value in criteria.items():
            f = self._search_field(name)
            if not f.tokens:
                raise ValidationError(f"field {name!r} has no token index (tokens = false)", field=name)
            if not isinstance(value, str):
                raise ValidationError(f"search value for {name!r} must be text", field=name)
            utf8(value, f"search value for {name!r} must be valid UTF-8 text", field=name)
            query = ix.token_terms(f, value)
            if not query:
                raise ValidationError(f"search for {name!r} needs a token of two or more characters", field=name)
            terms.extend(query)
            wanted[name] = set(tokens(I.capped_normalize(name, "name", value)))
        def keep(rec: Record) -> bool:
            return all(n in rec and v <= I.stored_tokens(self.schema.fields[n], rec[n]) for n, v in wanted.items())
        return self._matches(self._candidates(terms), list(criteria), fields, keep)

    # -- pseudonyms -----------------------------------------------------------------------
    def _pseudonym_impl(self, record_id: str, purpose: str, *, known_live: bool = False) -> str:
        """The record's stable pseudonym for one purpose (badge, travel, ...), e.g.
        ``BA-7KQ4-M2XP-9AW``; issuing one stores what :meth:`resolve` needs. Issued earlier
        in this session, it costs no write; the record's existence is still checked (another
        handle may have shredded it) unless the caller has just read it (``known_live``)."""
        store = self._s()
        rid = self._rid(record_id)
        keys = self._purpose_keys(purpose)
        value = keys.value(rid)
        tag = keys.tag(value)
        text = P.format(value, P.purpose_prefix(purpose))
        if (purpose, tag) in self._issued:  # issued earlier in this session: nothing to write
            if not known_live:
                with store.tx(write=False) as conn:
                    if not store.record_exists(conn, rid):
                        raise NotFound(f"no record {record_id}")
            return text
        with store.tx() as conn:
            if not store.record_exists(conn, rid, hold=True):  # a shred committing meanwhile waits for us
                raise NotFound(f"no record {record_id}")
            if store.get_pseudonym(conn, purpose, tag) is None:
                store.put_pseudonym(conn, purpose, tag, keys.seal_ref(tag, rid))
        if not store.in_transaction:  # inside a caller's transaction it is stored only if that one commits
            self._issued.add((purpose, tag))
        return text

    def _purpose_keys(self, purpose: str) -> I.PurposeKeys:
        if purpose not in self.schema.purposes:
            raise ValidationError(f"unknown purpose {purpose!r} (known: {', '.join(self.schema.purposes)})")
        keys = self._purposes.get(purpose)
        if keys is None:
            from .errors import AccessDenied
            raise AccessDenied(f"no key for purpose {purpose!r}")
        return keys

    def _resolve_impl(self, pseudonym: str, fields: Sequence[str] | None = None) -> Record:
        """The record a pseudonym of any purpose names. A mistyped pseudonym is refused by
        its check character (PseudonymError); an unknown one raises NotFound."""
        purpose, value = self._parse_pseudonym(pseudonym)
        rid = self._resolve_id(purpose, value)
        try:
            return self._get_impl(rid.hex(), fields)
        except NotFound:  # an entry left by a shred: the record's id is not the caller's business
            raise NotFound("no record has this pseudonym") from None

    def _parse_pseudonym(self, pseudonym: str) -> tuple[str, int]:
        """(purpose, value) of a pseudonym as typed: its check character is verified."""
        if not isinstance(pseudonym, str):
            raise P.PseudonymError("a pseudonym is text")
        head = pseudonym.strip()[:2].upper()
        purpose = self._prefixes.get(head)
        if purpose is None:
            raise P.PseudonymError(f"unknown pseudonym prefix (this vault uses {', '.join(sorted(self._prefixes))})")
        return purpose, P.parse(pseudonym, head)

    def _resolve_id(self, purpose: str, value: int) -> bytes:
        keys = self._purpose_keys(purpose)
        tag = keys.tag(value)
        store = self._s()
        with store.tx(write=False) as conn:
            ref = store.get_pseudonym(conn, purpose, tag)
        if ref is None:
            raise NotFound("no record has this pseudonym")
        try:
            rid = keys.open_ref(tag, ref)
        except C.AuthFailure:
            raise IntegrityError(f"{purpose} pseudonym entry failed authentication") from None
        if keys.value(rid) != value:
            raise IntegrityError(f"{purpose} pseudonym entry points at the wrong record")
        return rid

    def _audit_target_of(self, pseudonym: str) -> str:
        """The audit pseudonym (the log's target) of the record any pseudonym names. An
        audit pseudonym is taken as it is (spelled canonically), so the entries of a shredded
        record, whose pseudonyms no longer resolve, can still be found by it."""
        purpose, value = self._parse_pseudonym(pseudonym)
        if purpose == "audit":
            return P.format(value, P.purpose_prefix(purpose))
        rid = self._resolve_id(purpose, value)
        if "audit" not in self._purposes:  # without it "" would filter nothing out
            raise AccessDenied("finding a record's entries needs the audit purpose key; give its audit pseudonym")
        target = self._target(rid.hex())
        if not target:
            raise NotFound("no record has this pseudonym")
        return target

    # -- re-indexing ----------------------------------------------------------------------
    def _reindex_impl(self, *, population: int | None = None, k: int | None = None, precise: bool | None = None,
                      batch: int = 500) -> int:
        """Rebuild every blind index (new key derivation or new truncation) as a resumable
        batch job; returns the number of records indexed by this call.

        A new generation is built beside the live one (searches keep working), one batch
        per transaction with a cursor; after a crash, calling reindex() again resumes.
        When done, the new plan is switched in and the old generation deleted atomically.
        ``precise``: plan each index on its own (True) or all jointly (False); by default the
        live plan's choice, and joint for a plan of an older release.
        """
        store = self._s()
        self._need_all_classes("re-indexing")
        with store.tx(write=False) as conn:
            self._sync_plan(conn)  # resume (or see finished) a re-index another process ran
        if self._plan_pending is None:
            self._begin_reindex(population, k, precise)
        else:
            self._join_pending(population, k, precise)
        pending = self._plan_pending
        assert pending is not None
        done = 0
        with PAR.pool(self._index_rows_of, self.count()) as pool:
            while True:
                with store.tx(write=False) as conn:
                    cursor = store.get_meta(conn).get("index_cursor", b"")
                ids = store.ids_after(cursor, batch)
                if not ids:
                    break
                with store.tx() as conn:
                    self._check_keys(conn)  # index keys derive from our class keys
                    rows = store.get_records(conn, ids)
                    packed: list[tuple[int, str, int, bytes, bytes]] = []
                    for part in pool.imap(PAR.split(rows, pool.size)):
                        packed += part
                    done += self._index_batch(conn, rows, packed)
                    store.put_meta(conn, {"index_cursor": ids[-1]})
        with store.tx() as conn:
            self._check_keys(conn)  # index keys derive from our class keys
            store.lock_plan(conn, exclusive=True)
            store.put_meta(conn, {**self._plan_meta("index_plan", pending),
                                  "index_next": b"", "index_next_mac": b"", "index_next_sig": b"",
                                  "index_cursor": b""})
            store.delete_index_gen(conn, keep=pending.gen)
        self._plan_active, self._plan_pending = pending, None
        self._indexers = self._make_indexers()
        return done

    def _begin_reindex(self, population: int | None = None, k: int | None = None,
                       precise: bool | None = None) -> None:
        """Record (signed) the next index plan, built with the current class key versions."""
        store = self._s()
        cur = self._plan_active
        population = cur.population if population is None else population
        k = cur.k if k is None else k
        precise = cur.mode == "precise" if precise is None else precise
        if not isinstance(population, int) or population < 1 or not isinstance(k, int) or k < 1:
            raise ValidationError("population and k must be positive integers")
        if not isinstance(precise, bool):
            raise ValidationError("precise must be true or false")
        nxt = I.make_plan(cur.gen + 1, self.schema, population, k,
                          {c: ck.key.version for c, ck in self._current.items()}, precise)
        with store.tx() as conn:
            self._check_keys(conn)  # index keys derive from our class keys
            store.lock_plan(conn, exclusive=True)
            if self._sync_plan(conn) and self._plan_pending is not None:
                self._join_pending(population, k, precise)  # another process began one just now
                return
            store.put_meta(conn, {**self._plan_meta("index_next", nxt), "index_cursor": b""})
        self._plan_pending = nxt
        self._indexers = self._make_indexers()

    def _restart_reindex(self) -> None:
        """A pending re-index planned with class key versions that a rotation is replacing
        (it was interrupted, then a rotation began): finishing it would switch in a plan
        whose keys the rotation then destroys, and the vault would no longer open. Its rows
        are dropped and it is planned again, same population and k, with the current keys."""
        stale = self._plan_pending
        assert stale is not None
        store = self._s()
        with store.tx() as conn:
            self._check_keys(conn)
            store.lock_plan(conn, exclusive=True)
            self._sync_plan(conn)
            if self._plan_pending != stale:
                raise KeysChanged("the blind-index plan changed meanwhile (a re-index elsewhere); rotate again")
            store.delete_index_gen(conn, keep=self._plan_active.gen)
            store.put_meta(conn, {"index_next": b"", "index_next_mac": b"", "index_next_sig": b"", "index_cursor": b""})
        self._plan_pending = None
        self._indexers = self._make_indexers()
        self._begin_reindex(stale.population, stale.k, stale.mode == "precise")

    def _join_pending(self, population: int | None, k: int | None, precise: bool | None = None) -> None:
        """A re-index is under way (begun here before a crash, or by another process): it is
        resumed, not replaced, so two never write one generation with different plans. Asked
        for another plan, say so instead of building one that was not asked for."""
        pending = self._plan_pending
        assert pending is not None
        if (population is not None and population != pending.population) or (k is not None and k != pending.k) \
                or (precise is not None and precise != (pending.mode == "precise")):
            raise ValidationError(f"a re-index for population {pending.population}, k {pending.k} ({pending.mode} "
                                  "plan) is under way: "
                                  "let it finish (reindex() with no arguments), then re-plan")

    def _plan_meta(self, name: str, plan: I.Plan) -> dict[str, bytes]:
        """A plan as stored: its canonical text, MAC (meta key) and signature (lead/recovery)."""
        assert self._ring is not None
        text = plan.to_text()
        who, sign = self._plan_signer()
        return {name: text.encode(),
                name + "_mac": K.mac_plan(self._ring.current(K.KIND_META_KEY), self._vid, text),
                name + "_sig": K.sign_text("plan", self._vid, text, who, sign)}

    def _index_terms(self, rows: list[tuple[bytes, bytes]]) -> list[tuple[int, str, int, bytes]]:
        """The pending generation's index terms for these (id, row) pairs."""
        gen, ix = self._indexers[-1]
        assert self._plan_pending is not None and gen == self._plan_pending.gen
        searchable = [f.name for f in self.schema.fields.values() if f.search == "exact"]
        classes = self._plan(searchable)
        terms = []
        for rid, data in rows:
            rec = self._decode_row(rid, data, classes)
            # a stored value over the cap (an older release's) is not indexed: no capped query finds it
            terms += [(gen, name, value, rid) for name, value in ix.terms(dict(rec), oversize="skip")]
        return terms

    def _index_rows_of(self, rows: list[tuple[bytes, bytes]]) -> list[tuple[int, str, int, bytes, bytes]]:
        """The pending generation's dv_index rows for these (id, row) pairs, ready to write:
        a worker's share of a batch (two shares may each hold a row of one bucket)."""
        return pack_terms(self._index_terms(rows))

    def _index_batch(self, conn, rows: list[tuple[bytes, bytes]],  # type: ignore[no-untyped-def]
                     packed: list[tuple[int, str, int, bytes, bytes]] | None = None) -> int:
        """Write the pending generation's index rows for these (id, row) pairs (``packed``:
        already built, e.g. by workers, with :meth:`_index_rows_of`)."""
        # A record added during the re-index already has new-generation terms; it is then in
        # two chunks of a bucket, which readers (and deletes) handle as one.
        self._s().insert_index_rows(conn, self._index_rows_of(rows) if packed is None else packed)
        return len(rows)

    # -- key rotation ---------------------------------------------------------------------
    def _rotate_impl(self, classes: Sequence[str] | None = None, *, reencrypt: bool = False,
                     batch: int = 500, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Rotate class keys (default: all classes): new key versions, every DEK rewrapped
        (cheap) or, with ``reencrypt=True``, every field re-encrypted under fresh DEKs;
        blind indexes rebuilt; old versions destroyed once nothing references them.

        Resumable and crash-safe: after an interruption (even SIGKILL) the vault opens
        and reads every record, and calling rotate() again finishes the pending rotation
        with its original classes and mode, then, if those did not cover the ones asked
        for, rotates those. See vault/rotation.py.
        """
        from . import rotation

        self._need_all_classes("key rotation")
        return rotation.rotate(self, classes, reencrypt=reencrypt, batch=batch, progress=progress)

    # -- users ----------------------------------------------------------------------------
    def users(self, include_revoked: bool = False) -> list[U.User]:
        """Enrolled users (ids, names, roles, public keys), checked against the lead's signature."""
        with self._s().tx(write=False, snapshot=True) as conn:
            return [u for u in self._verified_users(conn) if include_revoked or u.role != U.REVOKED]

    def _verified_users(self, conn, *, statement: bool = True) -> list[U.User]:  # type: ignore[no-untyped-def]
        """The user table as the lead signed it, checked on every read and not only at open:
        whoever can write the database could have edited a row since, and a public key read
        from it decides who gets a keyring, a break-glass value or a sealed reason, whose
        audit entries count as genuine, and what the lead signs next."""
        store = self._s()
        users = _users(store.get_users(conn))
        meta = store.get_meta(conn)
        if users:
            if self._lead_vk is None:
                raise IntegrityError("the user table has rows but the keyring has no lead key")
            U.verify_roster(self._lead_vk, self._vid, users, meta.get("roster_sig", b""))
        if statement:  # and it is the table the lead signed last, not an older signed copy
            assert self._ring is not None
            version = self._db_known  # the row's own value is checked where it matters: before signing
            ST.upgraded_since(meta, version)
            try:
                signed = _check_keys_meta(meta, self._ring, self._vid, version, users)
            except IntegrityError:
                self._check_keys(conn, lock=False)  # KeysChanged if it is only our keys that are old
                raise
            if signed is None and version >= F.SIGNED_VERSION_FROM:
                raise IntegrityError("this vault's keys are not signed (the database was edited); tell the lead")
        return users

    def _need_lead(self, action: str) -> Identity:
        if not self.role.manage or self._identity is None or self._lead_vk is None \
                or self._identity.public.ed25519 != self._lead_vk:
            raise AccessDenied(f"{action} needs the security lead's identity")
        return self._identity

    def _sign_roster(self, conn, users: list[U.User]) -> None:  # type: ignore[no-untyped-def]
        """Sign the user table and, in the same transaction, the key statement that names it."""
        lead = self._need_lead("changing users")
        self._s().put_meta(conn, {"roster_sig": lead.sign(U.roster_bytes(self._vid, users)),
                                  "lead_vk": lead.public.ed25519})
        ST.sign(self, conn, users=users, signer=(b"L", lead.sign))

    def _db_version(self, conn) -> int:  # type: ignore[no-untyped-def]
        return _meta_version(self._s().get_meta_values(conn, ["db_schema_version"]))

    def _add_user_impl(self, public: PublicIdentity | str, name: str, role: str) -> U.User:
        """Enrol a user: seal their role's keys to their public key and sign the user table.

        Confirm the fingerprint (``PublicIdentity.fingerprint()``) with the person by voice
        before enrolling a public key that arrived over e-mail or chat."""
        self._need_lead("enrolling users")
        self._need_all_classes("enrolling users")
        pub = PublicIdentity.from_line(public) if isinstance(public, str) else public
        r = self.schema.role(role)
        name = U.check_name(name)
        store = self._s()
        assert self._ring is not None and self._lead_vk is not None
        slot_kid = C.random_bytes(F.KID_LEN)
        secret = C.random_bytes(F.KEY_LEN)
        unlock = U.seal_user_slot(pub, secret, slot_kid, self._vid)
        keyring = K.seal_keyring(secret, slot_kid, self._vid, U.role_keyring(self._ring, r, self._lead_vk))
        user = U.User(pub.user_id, name, r.name, pub, slot_kid.hex())
        with store.tx() as conn:
            store.lock_keys(conn)  # before any slot row: no re-seal or revocation meanwhile
            self._check_keys(conn)  # the new slot gets our keys: they must be the current ones
            current = self._verified_users(conn)
            self._check_not_revoked(conn, current)  # it signs this table: never one put back
            if any(u.user_id == user.user_id for u in current):
                raise ValidationError(f"user {user.user_id} is already enrolled (or was revoked: use a new identity)")
            if any(u.name.casefold() == name.casefold() and u.role != U.REVOKED for u in current):
                raise ValidationError("another enrolled user has that name; choose one that tells them apart")
            store.put_slot(conn, user.slot_id, U.KIND_X25519, unlock, keyring)
            store.put_user(conn, user.user_id, user.name, user.role, pub.raw, user.slot_id)
            self._sign_roster(conn, current + [user])
        return user

    def _remove_user_impl(self, user_id: str, *, rotate: bool = True) -> None:
        """Revoke a user: delete their slot and row, re-sign the user table, then rotate every
        class they held (a write-only role: the classes it wrote), so their old identity plus
        any keys they copied open nothing written or rewrapped afterwards
        (docs/threat-model.md says what they keep). ``rotate=False`` leaves that to a later
        rotate(); until then a database writer who puts back an older copy of the user
        table, its signature, the key statement and the slot undoes the revocation, since
        nothing the statement names has changed."""
        lead = self._need_lead("removing users")
        store = self._s()
        with store.tx() as conn:
            store.lock_keys(conn)  # before any slot row: no re-seal or enrolment meanwhile
            self._check_keys(conn)
            current = self._verified_users(conn)
            gone = next((u for u in current if u.user_id == user_id and u.role != U.REVOKED), None)
            if gone is None:
                raise NotFound(f"no user {user_id}")
            if gone.user_id == lead.public.user_id:
                raise ValidationError("the security lead cannot remove their own enrolment")
            # lock_keys above waited for their last write (each holds the keys lock shared to its
            # commit, _check_keys), so the scan below sees it, and any later write finds the slot
            # gone. Else rows they commit during the scan would be left sealed under a signature
            # that stops counting: unreadable.
            # What they sealed to write-only classes is adopted into ordinary wraps while their
            # signature still counts: from now on readers refuse any envelope they sign.
            from .rotation import adopt_sealed
            adopt_sealed(store, conn, self._vid, {kid: ck.key for kid, ck in self._by_kid.items()},
                         lambda h: h.writer == bytes.fromhex(gone.user_id), self._writer_key)
            store.delete_slot(conn, gone.slot_id)
            # The row stays, marked revoked: its public key still verifies the user's past
            # audit entries, and the id can never be enrolled again.
            store.set_role(conn, gone.user_id, U.REVOKED)
            self._sign_roster(conn, [u if u.user_id != user_id else U.User(u.user_id, u.name, U.REVOKED, u.public,
                                                                           u.slot_id) for u in current])
            # Their grants are values sealed to the identity being revoked (its keys never
            # rotate): left here, that identity file would open them from any later copy.
            from . import breakglass
            asked = breakglass.forget(conn, requester=gone.user_id)
            self._audit("user_removed", "", {"user": gone.user_id, "requests": asked})
        self._refresh_writers()
        role = self.schema.role(gone.role)
        # A write-only role held no class key; its classes are rotated all the same, so that
        # the key statement names new keys: an older copy of it (with the user table that
        # still lists them) no longer matches anyone's keyring.
        if rotate and (role.classes or role.write_only):
            self.rotate(list(role.classes or role.write_only))

    # -- break-glass ----------------------------------------------------------------------
    def _request_reveal_impl(self, record_id: str, field: str, reason: str) -> str:
        """Ask the lead for a one-time look at one field outside your role; returns a request id."""
        from . import breakglass
        return breakglass.request(self, record_id, field, reason)

    def reveal_requests(self) -> list:
        """Pending and approved requests as the caller may see them (breakglass.RevealRequest):
        every request for the lead, with who each record is (badge name, audit pseudonym), the
        reason and what is wrong with it; only their own, without record ids, for anyone else.
        Logged (``reveal_list``): the lead's listing decrypts badge names."""
        from . import breakglass

        def describe(out: list) -> tuple[str, dict]:
            shown = sorted({r.record for r in out if r.badge_name is not None and r.record})
            return "", {"requests": len(out), **({"fields": ["badge_name"], "targets": shown} if shown else {})}
        out = self._guard("reveal_list", lambda: self._audited("reveal_list", lambda: breakglass.pending(self),
                                                               describe))
        if self.role.manage:
            self._alarm_if_canary([r.record_id for r in out if r.badge_name is not None], "reveal_list")
        return out

    def _approve_reveal_impl(self, req_id: str, ttl_seconds: int, record: str, field: str) -> None:
        """Lead: seal that one field's value to the requester, signed, valid for ``ttl_seconds``."""
        from . import breakglass
        breakglass.approve(self, req_id, ttl_seconds, record, field)

    def _reveal_impl(self, req_id: str) -> tuple[Any, Exception | None, tuple[str, str]]:
        """Requester: the approved value, once (the grant is deleted as it is read); see
        breakglass.reveal for the (value, error) pair."""
        from . import breakglass
        return breakglass.reveal(self, req_id)

    def _check_keys(self, conn, *, lock: bool = True) -> None:  # type: ignore[no-untyped-def]
        """Refuse to write with keys another process has since replaced (KeysChanged).

        Why: a handle that loaded the keyring before someone else's rotation would seal new
        DEKs under a class key version that rotation destroys (those records would be lost),
        and a stale re-seal would put destroyed versions back or drop new ones (the vault
        would no longer open). Every re-seal rewrites this handle's own slot, so comparing
        that one blob, in the writing transaction, is enough. ``lock``: on PostgreSQL the
        keys lock is held shared to our commit (Store.lock_writes), so a concurrent re-seal
        either waits for us (and its rotation's sweep sees our rows) or committed first (and
        we see its blob)."""
        if lock:
            self._s().lock_writes(conn)
        now = self._s().slot_keyring(conn, self._slot_kid.hex())
        if now is None:
            raise AccessDenied("this handle's key slot is gone (revoked, or removed by another process)")
        if not hmac.compare_digest(now, self._keys_seen):
            raise KeysChanged()

    _PLAN_ROWS = ("index_plan", "index_plan_mac", "index_plan_sig", "index_next", "index_next_mac", "index_next_sig")

    def _sync_plan(self, conn, *, lock: bool = False) -> bool:  # type: ignore[no-untyped-def]
        """Follow a re-index that another process began or finished since we loaded the plan
        (verified as at open); True if ours changed. Why: writing terms of a generation that
        was switched out leaves records no search finds, and looking one up finds nothing.
        ``lock``: on PostgreSQL the plan cannot change until our transaction ends."""
        if lock:
            self._s().lock_plan(conn, exclusive=False)
        stored = self._s().get_meta_values(conn, self._PLAN_ROWS)
        try:
            active = I.Plan.from_text(stored["index_plan"].decode("utf-8"))
            pending = I.Plan.from_text(stored["index_next"].decode("utf-8")) if stored.get("index_next") else None
        except (KeyError, ValueError, TypeError, UnicodeDecodeError):
            raise IntegrityError("index plan is malformed") from None
        if active == self._plan_active and pending == self._plan_pending:
            return False
        assert self._ring is not None
        active_ok = _verified_plan(stored, "index_plan", self._ring, self._vid)
        if active_ok is None:
            raise IntegrityError("index plan is missing")
        pending_ok = _verified_plan(stored, "index_next", self._ring, self._vid)
        try:
            indexers = self._make_indexers_for(active_ok, pending_ok)
        except IntegrityError:  # the plan names key versions we lack: a rotation we have not seen
            if self._keys_changed():
                raise KeysChanged() from None
            raise
        self._plan_active, self._plan_pending, self._indexers = active_ok, pending_ok, indexers
        return True

    def _keys_changed(self) -> bool:
        """For error paths: has another process re-sealed the keys since we loaded them?"""
        try:
            with self._s().tx(write=False) as conn:
                self._check_keys(conn, lock=False)
        except (KeysChanged, AccessDenied):
            return True
        return False

    def _check_not_revoked(self, conn, users: list[U.User]) -> None:  # type: ignore[no-untyped-def]
        """Refuse to seal keys to a user the lead's signed log says was revoked. Why: after a
        revocation without a rotation (``remove_user(rotate=False)``), an older copy of the
        user table, its signature, the key statement and the slot is consistent again, and
        this rotation would hand the revoked user its new keys. A full scan of the log's
        ``user_removed`` entries, by the lead or the recovery actor (a handle made by create()
        logs as the latter, its lead's identity attached): at a signer's open and at each
        re-seal, about 0.1 s per million entries."""
        from . import audit as A
        lead = next((u for u in users if self._lead_vk is not None and u.public.ed25519 == self._lead_vk), None)
        if lead is None:
            return
        signers = {lead.public.raw} | ({rec} if len(rec := self._recovery_public()) == 64 else set())
        active = {u.user_id for u in users if u.role != U.REVOKED}
        for e in A.signed_by(self._s(), conn, "user_removed", signers):
            detail = _entry_detail(e)
            if detail.get("user") in active:
                raise IntegrityError(f"the user table lists user {detail['user']} as enrolled, but the lead revoked "
                                     f"them (audit entry {e.seq}): an older copy was put back; tell the lead")

    def _reseal_slots(self, conn, ring: K.Keyring, *, checked: bool = False) -> None:  # type: ignore[no-untyped-def]
        """Write ``ring`` (or each user's role subset of it) into every slot: after a rotation
        step every holder must get the new key versions, and lose destroyed ones. The caller
        took Store.lock_keys first (before any slot row), so no enrolment, revocation or other
        re-seal commits while this one reads the users and writes their slots."""
        store = self._s()
        store.lock_keys(conn)  # taken already by every caller; held again, it costs nothing
        if not checked:
            self._check_keys(conn)
        ST.signable_version(self, conn)  # it signs the statement last: refuse before any slot (or state) changes
        mine = self._slot_kid.hex()
        everyone = self._verified_users(conn)
        users = {u.slot_id: u for u in everyone if u.role != U.REVOKED}
        self._check_not_revoked(conn, everyone)
        secrets = {k.name: k.secret for k in ring.keys if k.kind == K.KIND_SLOT_SECRET}
        for slot_id, kind, unlock, _old in store.get_slots(conn):
            if kind == _PASSPHRASE:
                secret = self._slot_secret if slot_id == self._slot_kid.hex() else secrets.get(slot_id)
                if secret is None:
                    raise AccessDenied("cannot re-seal a passphrase slot whose secret this opener lacks")
                blob = K.seal_keyring(secret, bytes.fromhex(slot_id), self._vid, ring)
                if not store.put_slot(conn, slot_id, kind, unlock, blob, new=False):
                    raise KeysChanged()
                if slot_id == mine:
                    self._keys_seen = blob
                continue
            u = users.get(slot_id)
            if u is None or self._lead_vk is None:
                raise IntegrityError("a public-key slot is not in the signed user table")
            secret = C.random_bytes(F.KEY_LEN)
            sub = U.role_keyring(ring, self.schema.role(u.role), self._lead_vk)
            blob = K.seal_keyring(secret, bytes.fromhex(slot_id), self._vid, sub)
            if not store.put_slot(conn, slot_id, kind, U.seal_user_slot(u.public, secret, bytes.fromhex(slot_id),
                                                                         self._vid), blob, new=False):
                raise KeysChanged()  # revoked meanwhile: never write their slot back
            if slot_id == mine:
                self._slot_secret = secret
                self._keys_seen = blob
        ST.sign(self, conn, ring=ring, users=self._verified_users(conn, statement=False))  # the keys slots now hold

    # -- audited public API: every call is logged before data is returned ------------------
    def _audit(self, action: str, target: str = "", detail: dict | None = None) -> None:
        self._auditor.append(self._s(), action, target, detail)

    def _audited(self, action: str, work: Callable[[], Any], describe: Callable[[Any], tuple[str, dict]]) -> Any:
        """Run a read and write its entry, ``describe(result)``, in one transaction (see
        Auditor.append_after)."""
        return self._auditor.append_after(self._s(), action, work, describe)

    def _target(self, record_id: str) -> str:
        """The record's audit pseudonym (never its id or a name); issued on first use."""
        if "audit" not in self._purposes:
            return ""
        try:  # callers name a record they have just read (or log an attempt on one)
            return self._pseudonym_impl(record_id, "audit", known_live=True)
        except NotFound:
            return ""

    def _guard(self, op: str, call: Callable[[], Any]) -> Any:
        """Run ``call``; an AccessDenied is itself audited ('denied') before it propagates,
        once: guarded calls nest (remove_user rotates, a rotation re-indexes)."""
        try:
            return call()
        except AccessDenied as e:
            if not getattr(e, "logged", False):
                e.logged = True  # type: ignore[attr-defined]
                self._audit("denied", "", {"op": op, "why": str(e)})
            raise

    def pin(self, path: str | os.PathLike[str], *, created: bool = False) -> bool:
        """Record this vault's key fingerprint and location in a known-vaults file, or check
        them against those recorded (vault.pins); the CLI's ``init`` pins the vault it
        creates (``created``: this vault now holds its location, whatever vault was opened
        there before). True if the file had no line for this vault before."""
        from .pins import check as check_pin
        store = self._s()  # VaultClosed on a closed vault
        assert self._ring is not None
        return check_pin(path, self._vid, self._ring.current(K.KIND_META_KEY).secret, _pin_signers(self._ring),
                         location=store.url, created=created)

    @property
    def pin_line(self) -> str:
        """``vault-id fingerprint signers`` of this vault's keys (no secret): the lead sends it with
        an enrolment, and the user records it (vault.pins.add, ``dvault pin add``) before
        their first open, which is then checked rather than trusted."""
        from .pins import fingerprint
        self._s()  # VaultClosed on a closed vault
        assert self._ring is not None
        return (f"{self.id} {fingerprint(self._vid, self._ring.current(K.KIND_META_KEY).secret)} "
                f"{_pin_signers(self._ring)}")

    def set_reason(self, reason: str | None) -> None:
        """The reason attached (sealed to the lead) to every following audit entry."""
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise ValidationError("a reason must be non-empty text")
        if reason is not None:
            utf8(reason, "a reason must be valid UTF-8 text")
        self._auditor.reason = reason

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Validate every row first, then store them all in one transaction (all or nothing)."""
        if isinstance(rows, (str, bytes, Mapping)):
            raise ValidationError("add_many() takes a list of records (use add() for one)")
        try:
            rows = list(rows)
        except TypeError:
            raise ValidationError("add_many() takes a list of records") from None
        self._guard("add", lambda: self._need_writable("adding records"))
        ids = self._guard("add", lambda: self._add_many_impl(rows))  # its "add" entry commits with the rows
        self._alarm_if_canary(ids, "add")
        return ids

    def get(self, record_id: str, fields: Sequence[str] | None = None) -> Record:
        """Decrypt one record, or only the named fields of it."""
        fields = _field_names(fields)
        def describe(rec: Record) -> tuple[str, dict]:
            return self._target(record_id), {"fields": sorted(rec)}
        rec = self._guard("read", lambda: self._audited("read", lambda: self._get_impl(record_id, fields), describe))
        self._alarm_if_canary([record_id], "read")
        return rec

    def update(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields (None removes one); touched classes get fresh DEKs and ciphertexts."""
        if isinstance(values, Mapping):
            self._guard("update", lambda: [self._need_class(self.schema.field(n).cls, f"field {n!r}") for n in values])
        self._rid(record_id)  # a malformed id is refused before anything is logged
        try:
            self._guard("update", lambda: self._update_impl(record_id, values))  # its entry commits with the row
        except (NotFound, ValidationError, IntegrityError):  # an attempt that changed nothing is logged too
            self._audit("update", self._target(record_id),
                        {"fields": sorted(map(str, values)) if isinstance(values, Mapping) else []})
            self._alarm_if_canary([record_id], "update")
            raise
        self._alarm_if_canary([record_id], "update")

    def delete(self, record_id: str) -> None:
        """Crypto-shred one record (see :meth:`_delete_impl`); needs write access to every class."""
        self._guard("shred", lambda: (self._need_writable("shredding records"),
                                      self._need_all_purposes("shredding records")))
        self._rid(record_id)
        try:
            self._guard("shred", lambda: self._delete_impl(record_id))  # its entry commits with the deletion
        except (NotFound, IntegrityError):  # an attempt that changed nothing is logged too
            self._audit("shred", self._target(record_id))
            raise

    def records(self, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Stream every record (or only some fields of each), decrypting as it goes."""
        fields = _field_names(fields)
        classes = self._guard("read_all", lambda: self._plan(fields))
        shown = sorted(fields) if fields is not None else sorted(
            n for n, f in self.schema.fields.items() if f.cls in classes)
        self._audit("read_all", "", {"fields": shown, "count": self.count()})
        canaries = self._canaries()
        for rec in self._records_impl(fields):
            if rec.id in canaries:
                self._alarm(rec.id, "read_all")
            yield rec

    def _search_detail(self, criteria: Mapping[str, Any], fields: list[str] | None,
                       out: list[Record]) -> dict[str, Any]:
        """A search entry: the fields searched on (never the terms), the fields it decrypted
        and returned, and each match's audit pseudonym, so that "who looked at this person"
        finds searches too (audit_entries(target=...), the summary)."""
        returned = sorted(fields) if fields is not None else sorted(self.readable_fields)
        return {"fields": sorted(criteria), "returned": returned, "results": len(out),
                "targets": sorted(t for t in (self._target(r.id) for r in out) if t)}

    def find(self, /, fields: Sequence[str] | None = None, **criteria: Any) -> list[Record]:
        """Exact search over blind indexes (see :meth:`_find_impl`); the search term is never logged."""
        fields = _field_names(fields)
        def describe(out: list[Record]) -> tuple[str, dict]:
            return "", self._search_detail(criteria, fields, out)
        out = self._guard("search", lambda: self._audited("search", lambda: self._find_impl(fields, **criteria),
                                                          describe))
        self._alarm_if_canary([r.id for r in out], "search")
        return out

    def find_tokens(self, /, fields: Sequence[str] | None = None, **criteria: str) -> list[Record]:
        """Token search (see :meth:`_find_tokens_impl`); the search term is never logged."""
        fields = _field_names(fields)
        def describe(out: list[Record]) -> tuple[str, dict]:
            return "", {**self._search_detail(criteria, fields, out), "tokens": True}
        out = self._guard("search", lambda: self._audited(
            "search", lambda: self._find_tokens_impl(fields, **criteria), describe))
        self._alarm_if_canary([r.id for r in out], "search")
        return out

    def pseudonym(self, record_id: str, purpose: str) -> str:
        """The record's stable pseudonym for one purpose (see :meth:`_pseudonym_impl`)."""
        p = self._guard("pseudonym", lambda: self._pseudonym_impl(record_id, purpose))
        self._audit("pseudonym", self._target(record_id), {"purpose": purpose})
        self._alarm_if_canary([record_id], "pseudonym")  # a badge or a travel list names the decoy too
        return p

    def resolve(self, pseudonym: str, fields: Sequence[str] | None = None) -> Record:
        """The record a pseudonym names (see :meth:`_resolve_impl`)."""
        fields = _field_names(fields)
        def describe(rec: Record) -> tuple[str, dict]:
            return self._target(rec.id), {"fields": sorted(rec), "via": "pseudonym"}
        rec = self._guard("read", lambda: self._audited("read", lambda: self._resolve_impl(pseudonym, fields), describe))
        self._alarm_if_canary([rec.id], "read")
        return rec

    def reindex(self, *, population: int | None = None, k: int | None = None, precise: bool | None = None,
                batch: int = 500) -> int:
        """Rebuild blind indexes as a resumable batch (see :meth:`_reindex_impl`)."""
        self._guard("reindex", lambda: self._need_all_classes("re-indexing"))
        _check_batch(batch)
        self._audit("reindex", "", {"population": population, "k": k,
                                    **({} if precise is None else {"precise": precise})})
        return self._guard("reindex", lambda: self._reindex_impl(population=population, k=k, precise=precise,
                                                                 batch=batch))

    def rotate(self, classes: Sequence[str] | None = None, *, reencrypt: bool = False,
               batch: int = 500, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Rotate class keys (see :meth:`_rotate_impl`); ``progress(done, total)`` after each batch."""
        self._guard("rotate", lambda: self._need_all_classes("key rotation"))
        _check_batch(batch)
        if classes is not None:
            if isinstance(classes, str):
                raise ValidationError("classes must be a list of class names, not a string")
            classes = list(classes)
            if not classes:
                raise ValidationError("rotate() needs at least one class (or none given: every class)")
        self._audit("rotate", "", {"classes": sorted(classes) if classes is not None else "all",
                                   "reencrypt": reencrypt})
        return self._guard("rotate", lambda: self._rotate_impl(classes, reencrypt=reencrypt, batch=batch,
                                                               progress=progress))

    def add_user(self, public: PublicIdentity | str, name: str, role: str) -> U.User:
        """Enrol a user (see :meth:`_add_user_impl`)."""
        self._guard("add_user", lambda: self._need_lead("enrolling users"))
        self._audit("add_user", "", {"role": role})
        user = self._guard("add_user", lambda: self._add_user_impl(public, name, role))
        self._audit("user_added", "", {"user": user.user_id, "role": role})
        return user

    def remove_user(self, user_id: str, *, rotate: bool = True) -> None:
        """Revoke a user and rotate their classes (see :meth:`_remove_user_impl`)."""
        self._guard("remove_user", lambda: self._need_lead("removing users"))
        self._audit("remove_user", "", {"user": str(user_id)})
        self._guard("remove_user", lambda: self._remove_user_impl(user_id, rotate=rotate))

    def request_reveal(self, record_id: str, field: str, reason: str) -> str:
        """Break-glass request (see :meth:`_request_reveal_impl`); logged with its (sealed) reason."""
        if isinstance(reason, str):  # before it reaches the log's encoder, whose error would quote it
            utf8(reason, "a reason must be valid UTF-8 text")
        saved = self._auditor.reason
        self._auditor.reason = reason if isinstance(reason, str) and reason.strip() else saved
        def describe(req: str) -> tuple[str, dict]:
            return self._target(record_id), {"field": field, "request": req}
        try:  # the request row stands or falls with its entry
            req = self._guard("reveal_request", lambda: self._audited(
                "reveal_request", lambda: self._request_reveal_impl(record_id, field, reason), describe))
        finally:
            self._auditor.reason = saved
        self._alarm_if_canary([record_id], "reveal_request")
        return req

    def approve_reveal(self, req_id: str, ttl_seconds: int = 24 * 3600, *, record: str, field: str) -> None:
        """Break-glass approval by the lead of an explicit (request, record, field): ``record``
        and ``field`` are what the lead was shown (reveal_requests: the record's audit
        pseudonym, or any pseudonym or the id of it), and a request about anything else is
        refused (ValidationError), as is one that is not what its requester signed
        (IntegrityError: edited in the database) or that carries no signature (AccessDenied:
        made by an older release). See :meth:`_approve_reveal_impl`."""
        self._guard("reveal_approve", lambda: self._need_lead("approving break-glass requests"))
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 0 < ttl_seconds <= 30 * 86400:
            raise ValidationError("ttl_seconds must be a whole number of seconds, 1 to 30 days")
        from . import breakglass
        detail: dict[str, Any] = {"request": str(req_id), "ttl_seconds": ttl_seconds}
        try:
            r, _ = breakglass.checked(self, str(req_id), record, field)
        except (NotFound, ValidationError, IntegrityError, AccessDenied) as e:  # an attempt is logged too
            self._audit("reveal_approve", "", {**detail, "refused": type(e).__name__})
            raise
        rid = r.record_id.hex()
        # the lead's client decrypts the value to seal it: this entry is that access
        self._audit("reveal_approve", self._target(rid), {**detail, "field": r.field})
        self._alarm_if_canary([rid], "reveal_approve")
        self._guard("reveal_approve", lambda: self._approve_reveal_impl(req_id, ttl_seconds, record, field))

    def reveal(self, req_id: str) -> Any:
        """The approved value, once (see :meth:`_reveal_impl`). The grant's deletion commits
        with the audit entry: if the entry cannot be written the grant stays, unshown; a
        grant taken but refused (expired, forged) is gone, its entry says so, then we raise."""
        def describe(out: tuple[Any, Exception | None, tuple[str, str]]) -> tuple[str, dict]:
            return self._target(out[2][0]), {"request": str(req_id), "field": out[2][1], "shown": out[1] is None}
        value, err, about = self._guard("reveal", lambda: self._audited("reveal", lambda: self._reveal_impl(req_id),
                                                                        describe))
        self._alarm_if_canary([about[0]], "reveal")  # break-glass would show a decoy's legal name
        if err is not None:
            raise err
        return value

    def change_passphrase(self, new_passphrase: str, *, kdf: F.KdfParams | None = None) -> None:
        """Rewrap the recovery slot (see :meth:`_change_passphrase_impl`)."""
        self._guard("change_passphrase", self._need_passphrase_opener)
        self._audit("change_passphrase", "", {})
        self._guard("change_passphrase", lambda: self._change_passphrase_impl(new_passphrase, kdf=kdf))

    def export(self, fields: Sequence[str], purpose: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Rows of the given fields for every record, for handing to someone outside the vault.

        With ``purpose`` each row carries that purpose's pseudonym (``pseudonym`` column)
        and nothing else identifies it; without one, rows carry no identifier at all.
        Logged as an ``export`` with the fields and the row count.
        """
        fields = _field_names(fields)
        return self._rows(fields, purpose, "export", progress)

    def rows(self, fields: Sequence[str], purpose: str | None = None) -> list[dict[str, Any]]:
        """Like :meth:`export`, for showing on screen (logged as ``read_all``)."""
        fields = _field_names(fields)
        return self._rows(fields, purpose, "read_all")

    def _rows(self, fields: Sequence[str], purpose: str | None, action: str,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        if isinstance(fields, str) or not fields:
            raise ValidationError(f"{action} needs a list of fields")
        self._guard(action, lambda: self._plan(fields))
        if purpose is not None:
            self._guard(action, lambda: self._purpose_keys(purpose))
        total = self.count()
        self._audit(action, "", {"fields": sorted(fields), "purpose": purpose, "count": total})
        canaries = self._canaries()
        out = []
        for n, rec in enumerate(self._records_impl(fields), 1):
            if progress is not None and (n % 500 == 0 or n == total):
                progress(n, total)
            row: dict[str, Any] = {}
            if purpose is not None:
                row["pseudonym"] = self._pseudonym_impl(rec.id, purpose, known_live=True)
            row.update({f: rec.get(f) for f in fields})
            if rec.id in canaries:
                self._alarm(rec.id, action)
            out.append(row)
        return sorted(out, key=lambda r: r.get("pseudonym") or "")

    def require_writable(self, op: str = "add") -> None:
        """AccessDenied (logged as 'denied', as ``add``/``import_rows`` would log it) unless this
        role may write every class, as adding and importing need. Front ends call it before
        they prompt for a field or report on a file, so a refusal is one line, not the end
        of a dialogue."""
        what = {"add": "adding records", "import": "importing records"}.get(op)
        if what is None:
            raise ValidationError("op must be 'add' or 'import'")
        self._guard(op, lambda: self._need_writable(what))

    def import_rows(self, rows: Iterable[Mapping[str, Any]],
                    progress: Callable[[int, int], None] | None = None) -> list[str]:
        """add_many for bulk imports (validated first, one transaction), logged as ``import``;
        ``progress(done, total)`` as rows are encrypted."""
        rows = list(rows)
        self._guard("import", lambda: self._need_writable("importing records"))
        return self._guard("import", lambda: self._add_many_impl(rows, progress, entry=("import", {})))

    # -- audit log ------------------------------------------------------------------------
    def audit_entries(self, *, actor: str | None = None, action: str | None = None,
                      since_ms: int | None = None, until_ms: int | None = None,
                      target: str | None = None) -> list[dict[str, Any]]:
        """Read the log (filtered). The lead sees every entry, its number (``seq``) and its
        reason; other roles see only their own entries, without numbers or reasons. Reading
        is itself audited. ``target`` is
        a pseudonym of any purpose the caller holds (badge, travel, ...): the entries about
        that record, whose target is its audit pseudonym, are kept. Each entry says whether
        it passes its own check (``verified``: its hash, a known actor, its signature) and
        whether the lead ``quarantined`` it (vault.audit_trust); audit.summary counts only
        verified ones."""
        from . import audit as A
        from .audit_trust import mark
        for label, ms in (("since_ms", since_ms), ("until_ms", until_ms)):
            if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int)):
                raise ValidationError(f"{label} must be Unix time in milliseconds (an integer)")
        if target is not None:  # before the entry: a bad one is one error (a refusal: 'denied')
            target = self._guard("audit_read", lambda: self._audit_target_of(target))
        self._audit("audit_read", "", {"filters": [x for x, v in (("actor", actor), ("action", action),
                                                                   ("since", since_ms), ("until", until_ms),
                                                                   ("target", target)) if v is not None]})
        out, kept = [], []
        me = A.actor_id(self._auditor.actor)
        for e in A.read_entries(self._s()):
            aid = A.actor_id(e.actor)
            if not self.role.manage and (aid != me or e.action == "alarm"):
                continue  # staff and tools see their own entries, but never an alarm: it would
                # name the decoy they touched (its target); the lead sees everything
            if (actor and aid != actor) or (action and e.action != action) \
                    or (since_ms is not None and e.at < since_ms) or (until_ms is not None and e.at > until_ms):
                continue
            if target and (e.action in A.UNSIGNED_ACTIONS  # anyone with table access can chain one
                           or (e.target != target
                               and not (e.action in ("search", "reveal_list") and f'"{target}"' in e.detail
                                        and target in _entry_detail(e).get("targets", ())))):
                continue  # a search names its matches in detail.targets, a lead's request list those shown
            shown = {"at": e.at, "actor": aid, "action": e.action, "target": e.target,
                     "detail": _entry_detail(e), "reason": self._open_reason(e.reason)}
            # only the lead sees entry numbers: another role's own entries would skip the
            # number of each hidden alarm, telling a decoy from a real record
            out.append({"seq": e.seq, **shown} if self.role.manage else shown)
            kept.append(e)
        return [{**shown, **flag} for shown, flag in zip(out, mark(self, kept))]

    def _open_reason(self, sealed: bytes) -> str | None:
        if not sealed or not self.role.manage:
            return None
        opener = self._identity.unseal if self._identity is not None else self._recovery_unseal
        try:
            kind, plain = N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), sealed, opener)
            return (E.unpad(plain) if kind == F.KIND_REASON_PADDED else plain).decode("utf-8")
        except (C.AuthFailure, E.Malformed, UnicodeDecodeError, TypeError):
            return None

    def audit_verify(self, against: str | None = None) -> Any:
        """Check the whole chain (and a checkpoint, if given); returns a Verdict naming the
        first bad entry."""
        from . import audit as A
        from .audit_trust import deciders
        cp = A.Checkpoint.parse(against) if against else None
        self._audit("audit_verify", "", {"checkpoint": cp.seq if cp else None})
        return A.verify(A.read_entries(self._s(), damaged=True), self._known_actors(), cp, deciders(self))

    def audit_problem(self, seq: int) -> dict[str, Any]:
        """Lead: audit entry ``seq`` and what is wrong with it (``problem``, None if it
        verifies on its own), before deciding to quarantine it. Logged as a read of the log."""
        from .audit_trust import describe
        self._guard("audit_read", lambda: self._need_manage("examining an audit entry"))
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValidationError("an audit entry number is a positive integer")
        self._audit("audit_read", "", {"filters": ["seq"]})
        return describe(self, seq)

    def quarantine(self, seq: int) -> str:
        """Lead: write a signed decision that audit entry ``seq`` (a forged or edited entry
        that verify stops at for good) is bad; verify and the record check then step over
        it and report it as quarantined. Returns what is wrong with it."""
        from .audit_trust import quarantine
        self._guard("quarantine", lambda: self._need_manage("quarantining an audit entry"))
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValidationError("an audit entry number is a positive integer")
        return self._guard("quarantine", lambda: quarantine(self, seq))

    def check_records(self, *, accept: bool = False) -> RecordCheck:
        """Lead: compare every record row with the state the audit log says it has, which
        the log alone cannot show (docs/format.md 13a, "Record states"). Finds a row put
        back to an older version of itself (a state an entry dropped), a row no entry put
        (inserted behind the vault's back, or resurrected after a shred) and a logged state
        no row has (a record deleted, or rolled back, without an entry). The log is verified
        first: a log that fails verification proves nothing about the rows. Every row is
        also opened in full, so a ciphertext edited in place is named (``damaged``) here
        rather than at someone's next read.

        ``accept``: after a deliberate restore, take the rows as they are from here on: one
        ``restate`` entry, signed by whoever accepts, drops the states no row has and puts
        those of the rows that differed. Damaged rows cannot be accepted (they open for no
        one): restore or shred them first. Returns what was found before accepting."""
        from . import audit as A
        from .audit_trust import deciders
        self._guard("check_records", lambda: self._need_manage("checking records against the log"))
        store = self._s()
        known = self._known_actors()
        decide = deciders(self)

        def compare() -> tuple[RecordCheck, list[str], list[str]]:
            with store.tx(write=accept) as conn:
                if not store.is_sqlite and accept:  # no append can land between our reads and our entry
                    store.lock_append(conn)
                elif not store.is_sqlite:  # one snapshot for the log and the rows
                    store.raw(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                entries = A.read_entries(store)
                rows, damaged = [], []
                everything: dict[str, list[str] | None] = {c: None for c in self._current}
                scanned = 0
                for rid, data in store.scan_records(conn):
                    scanned += 1
                    try:
                        self._open_row(rid, data, everything)
                    except IntegrityError:
                        damaged.append(rid.hex())
                    try:
                        rows.append((rid, self._state_token(rid, data)))
                    except IntegrityError:  # malformed: no DEK ids to name its state (already damaged)
                        pass
                found = A.compare_states(entries, known, rows, tuple(damaged), decide)
                found = (dataclasses.replace(found[0], rows=scanned), found[1], found[2])  # unparseable ones too
                if accept and found[0].damaged:
                    raise IntegrityError(f"{len(found[0].damaged)} record row(s) fail authentication and cannot be "
                                         "accepted: restore them from a backup, or shred them, first")
                return found
        try:
            if accept:
                out, drop, put = self._audited("restate", compare, lambda r: ("", {
                    "accepted": True, **r[0].counts(), **self._states(r[1], r[2])}))
            else:
                out, _, _ = compare()
        except IntegrityError:
            self._audit("check_records", "", {"log_ok": False})
            raise
        if not accept:
            self._audit("check_records", "", out.counts())
        return out

    def _need_manage(self, action: str) -> None:
        if not self.role.manage:
            raise AccessDenied(f"{action} is for the security lead (or the recovery passphrase)")

    def audit_checkpoint(self) -> str:
        """A signed head of the log: write it down or send it elsewhere; verify against it later."""
        from . import audit as A
        self._audit("audit_checkpoint", "", {})
        seq, h = A.head(self._s())
        return str(A.make_checkpoint(seq, h, self._auditor.actor, self._signer))

    def _known_actors(self) -> set[bytes]:
        with self._s().tx(write=False, snapshot=True) as conn:
            users = self._verified_users(conn)  # an inserted row must not vouch for forged entries
        rec = self._recovery_public()
        return {u.public.raw for u in users} | ({rec} if len(rec) == 64 else set())

    # -- tripwires ------------------------------------------------------------------------
    def plant_canary(self, values: Mapping[str, Any]) -> str:
        """Lead: add a decoy participant (vault.canaries). Any read, search hit, listing,
        export, pseudonym, update, shred or break-glass step touching it shows in
        :meth:`alarms`; its row is indistinguishable from a real one on disk, and only the
        lead's and the recovery passphrase's keys open the list that names it."""
        self._guard("plant_canary", lambda: (self._need_all_classes("planting canaries"),
                                             self._need_manage("planting canaries")))
        # one transaction for the decoy row, its "add" entry and its place in the list
        return self._guard("plant_canary", lambda: self._add_many_impl([values], canaries=[0]))[0]

    def _state_token(self, rid: bytes, data: bytes, ids: bytes | None = None) -> str:
        """The row's state as the audit log names it (audit.record_state), or from the DEK ids
        a writer just drew (``ids``: no parsing on the bulk insert path)."""
        try:
            return state_of(self._state_key, self._vid, rid, E.dek_ids(data) if ids is None else ids)
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None

    @staticmethod
    def _states(drop: Iterable[str] = (), put: Iterable[str] = ()) -> dict[str, Any]:
        """The ``state`` member of an entry's detail: tokens sorted, empty lists left out."""
        out = {k: sorted(v) for k, v in (("drop", drop), ("put", put)) if v}
        return {"state": out} if out else {}

    def _store_canaries(self, blob: bytes) -> None:
        """Write the sealed list (joining the caller's transaction, if any)."""
        with self._s().tx() as conn:
            self._s().set_meta_value(conn, "canaries", blob)

    def _canaries(self) -> set[str]:
        """Record ids (hex) of the canaries present; empty for a handle without the list's key."""
        return CA.live(self)

    def _alarm_if_canary(self, record_ids: Iterable[str], op: str) -> None:
        CA.alarm_if_canary(self, record_ids, op)

    def _alarm(self, record_id: str, op: str) -> None:
        CA.own_touch(self, record_id, op)

    def alarms(self) -> list[dict[str, Any]]:
        """Every touch of a canary in the log (vault.canaries.alarms), for the lead's status
        screen (not itself logged). Lead only: another role could count the alarms before
        and after a read and so tell a decoy from a real record (a refusal is logged, as
        every denial is)."""
        self._guard("alarms", lambda: self._need_manage("listing canary alarms"))
        return CA.alarms(self)

    def canary_count(self) -> int:
        """Lead: how many canaries are planted and present (the status screen)."""
        self._guard("canaries", lambda: self._need_manage("counting canaries"))
        return CA.count(self)

    def ids(self) -> list[str]:
        """All record ids (random; they reveal nothing but the count)."""
        return [rid.hex() for rid in self._s().ids()]

    def count(self) -> int:
        store = self._s()
        with store.tx(write=False) as conn:
            return store.count_records(conn)

    def __len__(self) -> int:
        return self.count()

    def index_advice(self) -> list[str]:
        """Re-plan advice when the record count is far from the index plan's population
        (vault.index.drift_warnings), for the roles that can act on it (all classes)."""
        if set(self.schema.classes) - set(self._current):
            return []
        return I.drift_warnings(self._plan_active, self.count())

    def _need_passphrase_opener(self) -> None:
        if self.user is not None:
            raise AccessDenied("opened with an identity: change the identity file's passphrase instead")

    def _change_passphrase_impl(self, new_passphrase: str, *, kdf: F.KdfParams | None = None) -> None:
        """A new recovery passphrase and/or stronger Argon2id cost, with a *new* slot secret.

        Record data and DEKs are untouched. The slot secret changes too, so an old copy of
        the slot plus the old passphrase no longer opens the keyring in the live database
        (it still opens old copies of the database, which hold their own old keyring).
        """
        store = self._s()
        self._need_passphrase_opener()
        params = kdf or F.KDF_DEFAULT
        assert self._ring is not None
        secret = C.random_bytes(F.KEY_LEN)
        unlock = K.seal_passphrase_slot(new_passphrase, secret, self._slot_kid, self._vid, params)
        slot_id = self._slot_kid.hex()
        ring = K.Keyring([k if not (k.kind == K.KIND_SLOT_SECRET and k.name == slot_id)
                          else K.Key(k.kind, k.name, k.version, k.kid, secret) for k in self._ring.keys])
        with store.tx() as conn:
            store.lock_keys(conn)  # before any slot row (it re-seals every slot)
            if slot_id not in {r[0] for r in store.get_slots(conn)}:
                raise VaultError("this vault's passphrase slot disappeared")
            self._check_keys(conn)
            store.put_slot(conn, slot_id, _PASSPHRASE, unlock, K.seal_keyring(secret, self._slot_kid, self._vid, ring))
            self._slot_secret = secret
            # the lead's keyring carries the recovery slot's secret
            self._reseal_slots(conn, ring, checked=True)
        self._load_ring(ring)

    def status(self) -> dict[str, Any]:
        """Non-secret facts for operators: ids, sizes, KDF cost, accepted schema risks."""
        store = self._s()
        with store.tx(write=False) as conn:
            n = store.count_records(conn)
            slots = store.get_slots(conn)
            meta = store.get_meta(conn)
        kdf = [K.passphrase_slot_params(s[2]) for s in slots if s[1] == _PASSPHRASE]
        return {
            "vault_id": self.id,
            "opened_as": (f"user {self.user.user_id} ({self.user.name})" if self.user else "passphrase"),
            "role": self.role.name,
            "schema": f"{self.schema.name} v{self.schema.version}",
            "records": n,
            "classes": list(self.schema.classes),
            "slots": len(slots),
            "kdf": [f"argon2id t={p.t} m={p.m_kib}KiB p={p.p}" for p in kdf],
            "index": {**I.plan_status(self._plan_active, n), "reindex_pending": self._plan_pending is not None},
            "rotation_pending": bool(meta.get("rotation")),
            "transport": store.transport,  # how the database connection is protected (vault.postgres)
            "warnings": self.schema.warnings() + I.plan_warnings(self._plan_active, n)
            + ([store.transport] if store.transport.startswith("NOT") else []),
        }

    # ---- verify: delegates to vault/verify.py ----
    def verify(self, progress: Callable[[int, int], None] | None = None, repair_index: bool = False) -> Any:
        """Check everything this opener's keys allow (vault.verify.run); a Report, audited."""
        from . import verify as VR
        return self._guard("verify", lambda: VR.run(self._verify_parts(), progress=progress, repair_index=repair_index))

    def _verify_parts(self) -> Any:
        from . import verify as VR
        lead, everything = self.role.manage, {c: None for c in self._current}
        return VR.Parts(self._s(), self.schema, frozenset(self._current), lead,
                        lambda rid, data: dict(self._decode_row(rid, data, dict(everything))),
                        lambda conn: (self._sync_plan(conn), (self._plan_active.gen, list(self._indexers)))[1],
                        dict(self._purposes), self._verified_users, self._verify_slots if lead else None,
                        self.audit_verify, self.check_records if lead else None,
                        self._verify_canaries if lead and CA.holds_key(self) else None, self._audit)

    def _verify_slots(self, conn: Any) -> list[str]:
        assert self._ring is not None
        meta, rows, users = self._s().get_meta(conn), self._s().get_slots(conn), _users(self._s().get_users(conn))
        return ST.slot_problems(ST.expected_slots(self, meta, users, self._ring), rows) \
            + ST.keyring_problems(self, self._ring, rows)

    def _verify_canaries(self) -> dict[str, int]:
        self._canary_cache = None  # the list as stored now, not as this handle first read it
        return CA.load(self)


__all__ = ["create", "open", "Vault", "Record", "StoreError"]
