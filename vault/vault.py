"""The :class:`Vault`: the one object callers (library users and the CLI) talk to."""

from __future__ import annotations

import builtins
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

from . import _crypto as C
from . import _format as F
from . import envelope as E
from . import keys as K
from . import migrations
from . import schema as S
from .errors import (IntegrityError, NotFound, SchemaError, ValidationError, VaultClosed, VaultError,
                     VaultExists, WrongPassphrase)
from .record import Record
from .store import Store, StoreError

_PASSPHRASE = "passphrase"


def _normalise_url(url: str | os.PathLike[str]) -> str:
    """Accept a SQLAlchemy URL, or a bare file path meaning the embedded SQLite default."""
    text = os.fspath(url)
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
           kdf: F.KdfParams | None = None) -> "Vault":
    """Create a new vault (refusing to overwrite one) and return it open.

    ``schema`` is TOML text or a path (``pathlib.Path``) to a TOML file; the default is
    the participant schema shipped in ``vault/schemas/participant.toml``.
    """
    text = _schema_text(schema)
    parsed = S.load(text)
    params = kdf or F.KDF_DEFAULT
    K.check_kdf(params)
    K.passphrase_bytes(passphrase)
    url = _normalise_url(url)
    store = Store(url, create=True)
    try:
        if store.has_vault():
            raise VaultExists("a vault already exists in this database")
        vault_id = C.random_bytes(F.ID_LEN)
        ring = K.Keyring.generate(parsed.classes)
        slot_secret = C.random_bytes(F.KEY_LEN)
        slot_kid = C.random_bytes(F.KID_LEN)
        unlock = K.seal_passphrase_slot(passphrase, slot_secret, slot_kid, vault_id, params)
        keyring = K.seal_keyring(slot_secret, slot_kid, vault_id, ring)
        mac = K.mac_schema(ring.current(K.KIND_META_KEY), vault_id, text)
        with store.tx() as conn:
            version = migrations.upgrade(conn, 0)
            store.put_meta(conn, {
                "vault_id": vault_id,
                "format_version": str(F.FORMAT_VERSION).encode(),
                "db_schema_version": str(version).encode(),
                "schema": text.encode("utf-8"),
                "schema_mac": mac,
            })
            store.put_slot(conn, slot_kid.hex(), _PASSPHRASE, unlock, keyring)
    except BaseException:
        store.dispose()
        if store.sqlite_path is not None:  # no half-made vault left behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(store.sqlite_path + suffix)
                except FileNotFoundError:
                    pass
        raise
    return Vault(store, vault_id, parsed, ring, slot_kid, slot_secret)


def open(url: str | os.PathLike[str], passphrase: str) -> "Vault":  # noqa: A001 - mirrors builtins by design
    """Open an existing vault with a passphrase; raises WrongPassphrase, NotFound, IntegrityError."""
    K.passphrase_bytes(passphrase)
    store = Store(_normalise_url(url), create=False)
    try:
        if not store.has_vault():
            raise NotFound("no vault in this database")
        with store.tx() as conn:
            meta = store.get_meta(conn)
            slot_rows = store.get_slots(conn)
        try:
            vault_id = meta["vault_id"]
            stored_version = int(meta["db_schema_version"])
            fmt = int(meta["format_version"])
            text = meta["schema"].decode("utf-8")
            mac = meta["schema_mac"]
        except (KeyError, ValueError):
            raise IntegrityError("vault metadata is missing or malformed") from None
        if fmt != F.FORMAT_VERSION:
            raise IntegrityError(f"unknown vault format version {fmt}")
        if len(vault_id) != F.ID_LEN:
            raise IntegrityError("vault id is malformed")
        from .store import check_db_version
        check_db_version(stored_version)
        slot_kid, slot_secret = _unlock_passphrase(slot_rows, passphrase, vault_id)
        keyring_blob = next(r[3] for r in slot_rows if r[0] == slot_kid.hex())
        ring = K.open_keyring(slot_secret, vault_id, keyring_blob)
        K.verify_schema(ring, vault_id, text, mac)
        try:
            parsed = S.load(text)
        except SchemaError:
            raise IntegrityError("stored schema is authenticated but unparsable by this release") from None
        if stored_version < F.DB_SCHEMA_VERSION:
            with store.tx() as conn:
                new = migrations.upgrade(conn, stored_version)
                store.put_meta(conn, {"db_schema_version": str(new).encode()})
    except BaseException:
        store.dispose()
        raise
    return Vault(store, vault_id, parsed, ring, slot_kid, slot_secret)


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


class Vault:
    """An open vault. Use as a context manager; ``close()`` drops key references.

    Python cannot wipe memory: closing removes our references to key material so
    the garbage collector may reclaim it, nothing more (see docs/threat-model.md).
    """

    def __init__(self, store: Store, vault_id: bytes, schema: S.Schema, ring: K.Keyring,
                 slot_kid: bytes, slot_secret: bytes) -> None:
        self._store: Store | None = store
        self._vid = vault_id
        self.schema = schema
        self._ring: K.Keyring | None = ring
        self._slot_kid = slot_kid
        self._slot_secret: bytes | None = slot_secret
        self._by_kid: dict[bytes, _ClassKey] = {
            k.kid: _ClassKey(k) for k in ring.keys if k.kind == K.KIND_CLASS_KEY}
        self._codec = E.Codec(vault_id, schema.classes)
        self._keys = {kid: (ck.key.name, ck.key.version, ck.aead) for kid, ck in self._by_kid.items()}
        self._field_class = {f.name: f.cls for f in schema.fields.values()}
        self._decoders = {f.name: (bytes.decode if f.type in ("text", "enum") else f.decode)
                          for f in schema.fields.values()}
        self._current: dict[str, _ClassKey] = {}
        for cls in schema.classes:
            try:
                self._current[cls] = self._by_kid[ring.current(K.KIND_CLASS_KEY, cls).kid]
            except KeyError:
                raise IntegrityError(f"keyring lacks a key for class {cls!r}") from None

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

    def _encode(self, values: Mapping[str, Any], where: str = "") -> dict[str, dict[str, bytes]]:
        """Validate a whole record before any crypto or database work; group by class."""
        if not isinstance(values, Mapping):
            raise ValidationError(f"{where}a record must be a mapping of field -> value")
        by_class: dict[str, dict[str, bytes]] = {c: {} for c in self.schema.classes}
        fields = self.schema.fields
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
        for f in fields.values():
            if f.required and f.name not in by_class[f.cls]:
                raise ValidationError(f"{where}field {f.name!r} is required", field=f.name)
        return by_class

    def _seal_record(self, rid: bytes, by_class: dict[str, dict[str, bytes]],
                     rnd: bytes | None = None) -> bytes:
        """Every class gets an envelope, even an empty one, so every row has the schema's shape
        and every class has a DEK to rewrap. This hides nothing about content: the field
        names present and their 32-byte length buckets are visible (docs/threat-model.md)."""
        envs = []
        need = 0
        for cls in self.schema.classes:
            ck = self._current[cls]
            items = sorted(by_class[cls].items()) if cls in by_class else []
            envs.append((cls, ck.key.kid, ck.key.version, ck.aead, items))
            need += 52 + 12 * len(items)
        if rnd is None:  # one CSPRNG call per record: cheaper than one per nonce, same source
            rnd = C.random_bytes(need)
        return self._codec.seal_record(rid, envs, rnd)

    def _open_row(self, rid: bytes, data: bytes, classes: dict[str, list[str] | None]) -> dict[str, bytes]:
        """Authenticate a record row and return the wanted plaintexts (encoded bytes)."""
        try:
            return self._codec.open_record(data, rid, self._keys, classes, self._field_class)
        except E.FieldFailure as e:
            raise IntegrityError("field failed authentication", record_id=rid.hex(), field=e.name) from None
        except E.EnvelopeFailure as e:
            raise IntegrityError(f"class {e.cls!r} envelope failed authentication", record_id=rid.hex()) from None
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None

    def _plan(self, fields: Sequence[str] | None) -> dict[str, list[str] | None]:
        """Which classes to open, and which fields of each to decrypt (None = all)."""
        if fields is None:
            return {c: None for c in self.schema.classes}
        if isinstance(fields, str):
            raise ValidationError("fields must be a list of field names, not a string")
        want: dict[str, list[str] | None] = {}
        for name in fields:
            f = self.schema.field(name)
            lst = want.setdefault(f.cls, [])
            assert lst is not None
            if name not in lst:
                lst.append(name)
        return want

    def _decode_row(self, rid: bytes, data: bytes, classes: dict[str, list[str] | None]) -> Record:
        plain = self._open_row(rid, data, classes)
        decoders = self._decoders
        values: dict[str, Any] = {}
        try:
            for name, pt in plain.items():
                values[name] = decoders[name](pt)
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError("field holds an invalid encoding", record_id=rid.hex(), field=name) from None
        return Record(rid.hex(), values)

    # -- public API -----------------------------------------------------------------------
    def add(self, values: Mapping[str, Any]) -> str:
        """Encrypt and store one record; returns its random id (32 hex characters)."""
        return self.add_many([values])[0]

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Validate every row first, then store them all in one transaction (all or nothing)."""
        store = self._s()
        encoded = [self._encode(r, f"row {i + 1}: ") for i, r in enumerate(rows)]
        out, batch = [], []
        for by_class in encoded:
            rid = C.random_bytes(F.ID_LEN)
            batch.append((rid, self._seal_record(rid, by_class)))
            out.append(rid.hex())
        with store.tx() as conn:
            store.insert_records(conn, batch)
        return out

    def get(self, record_id: str, fields: Sequence[str] | None = None) -> Record:
        """Decrypt one record, or only the named fields of it."""
        store = self._s()
        rid = self._rid(record_id)
        classes = self._plan(fields)
        with store.tx() as conn:
            data = store.get_record(conn, rid)
        if data is None:
            raise NotFound(f"no record {record_id}")
        return self._decode_row(rid, data, classes)

    def update(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields (None removes one). Each touched class gets a fresh DEK and fresh
        ciphertexts for all its fields, so an older cell replayed into the row fails."""
        store = self._s()
        rid = self._rid(record_id)
        changes = self._encode(values)
        fields = self.schema.fields
        removed = {n for n, v in values.items() if v is None}
        touched = {c for c in self.schema.classes if changes[c]} | {fields[n].cls for n in removed}
        with store.tx() as conn:
            data = store.get_record(conn, rid)
            if data is None:
                raise NotFound(f"no record {record_id}")
            if not touched:
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
            fresh = E.unpack_record(self._seal_record(rid, by_class))
            merged = []
            for cls in self.schema.classes:
                env = fresh[cls] if cls in touched else envs.get(cls)
                if env is None:
                    raise IntegrityError(f"class {cls!r} envelope is missing", record_id=record_id)
                merged.append((cls, env[0], env[1]))
            store.put_record(conn, rid, E.pack_record(merged))

    def delete(self, record_id: str) -> None:
        """Crypto-shred: the record's wrapped DEKs and ciphertexts are overwritten and deleted.

        On SQLite, secure_delete zeroes the freed pages and the WAL is checkpointed and
        truncated. Copies in older backups stay readable until the class keys rotate.
        """
        store = self._s()
        rid = self._rid(record_id)
        with store.tx() as conn:
            if not store.delete_record(conn, rid):
                raise NotFound(f"no record {record_id}")
        store.checkpoint()

    def records(self, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Stream every record (or only some fields of each), decrypting as it goes."""
        store = self._s()
        classes = self._plan(fields)
        for rid, data in store.iter_records():
            yield self._decode_row(rid, data, classes)

    def ids(self) -> list[str]:
        """All record ids (random; they reveal nothing but the count)."""
        return [rid.hex() for rid in self._s().ids()]

    def count(self) -> int:
        store = self._s()
        with store.tx() as conn:
            return store.count_records(conn)

    def __len__(self) -> int:
        return self.count()

    def change_passphrase(self, new_passphrase: str, *, kdf: F.KdfParams | None = None) -> None:
        """Rewrap the slot secret under a new passphrase and/or stronger Argon2id cost.

        Record data, DEKs and the keyring are untouched: only the 106-byte slot changes.
        """
        store = self._s()
        params = kdf or F.KDF_DEFAULT
        assert self._slot_secret is not None
        unlock = K.seal_passphrase_slot(new_passphrase, self._slot_secret, self._slot_kid, self._vid, params)
        with store.tx() as conn:
            rows = {r[0]: r for r in store.get_slots(conn)}
            row = rows.get(self._slot_kid.hex())
            if row is None:
                raise VaultError("this vault's passphrase slot disappeared")
            store.put_slot(conn, row[0], row[1], unlock, row[3])

    def status(self) -> dict[str, Any]:
        """Non-secret facts for operators: ids, sizes, KDF cost, accepted schema risks."""
        store = self._s()
        with store.tx() as conn:
            n = store.count_records(conn)
            slots = store.get_slots(conn)
        kdf = [K.passphrase_slot_params(s[2]) for s in slots if s[1] == _PASSPHRASE]
        return {
            "vault_id": self.id,
            "schema": f"{self.schema.name} v{self.schema.version}",
            "records": n,
            "classes": list(self.schema.classes),
            "slots": len(slots),
            "kdf": [f"argon2id t={p.t} m={p.m_kib}KiB p={p.p}" for p in kdf],
            "warnings": self.schema.warnings(),
        }


__all__ = ["create", "open", "Vault", "Record", "StoreError"]
