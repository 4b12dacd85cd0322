"""Storage through SQLAlchemy Core. This module only ever sees ciphertext.

SQLite is the embedded default (file created 0600, WAL, secure_delete, foreign
keys, busy timeout); PostgreSQL (``postgresql+psycopg://``) is the shared backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from . import _crypto as C
from . import _format as F
from ._files import write_private
from .buckets import ID_BYTES as ID_BYTES
from .buckets import Bucket as Bucket
from .buckets import group_terms as group_terms
from .buckets import pack_index as pack_index
from .buckets import pack_terms as pack_terms
from .buckets import split_ids as split_ids
from .errors import NotFound, UnsupportedVersion
from .index_rows import IndexRows, _rid
from .index_rows import _blob as _blob
from .locks import Locks, install_lock_wait
from .store_errors import StoreError as StoreError
from .store_errors import StoreUnavailable as StoreUnavailable
from .store_errors import VaultBusy as VaultBusy
from .store_errors import _check_sqlite_vault, _connect_cause, _store_error

metadata = MetaData()

# name -> opaque bytes: vault id, versions, schema text and its MAC.
meta = Table("dv_meta", metadata,
             Column("name", String(64), primary_key=True),
             Column("value", LargeBinary, nullable=False))
# One row per key slot. kind: "passphrase" (this release), public-key kinds later.
slots = Table("dv_slots", metadata,
              Column("slot_id", String(32), primary_key=True),
              Column("kind", String(32), nullable=False),
              Column("unlock", LargeBinary, nullable=False),
              Column("keyring", LargeBinary, nullable=False))
# One row per record: a random 128-bit id and the framed class envelopes (each a wrapped
# DEK plus a container of field ciphertexts; docs/format.md). No timestamps, no plaintext.
records = Table("dv_records", metadata,
                Column("id", LargeBinary(16), primary_key=True),
                Column("data", LargeBinary, nullable=False))


# Blind indexes: one row per (generation, index name, bucket value) and write, holding the
# ascending id prefixes (the generation plan's width: 8 bytes, or 16 for a plan before
# version 3) of that write's records in the bucket (at most F.INDEX_CHUNK_IDS of them)
# under a random chunk id. WITHOUT ROWID, so the physical order is the key order and says
# nothing about when a row was written. A bulk import writes each bucket once instead of
# one B-tree row per term (docs/format.md §10 "Stored rows"). A prefix may sit in more than one row of
# a bucket (a record added while a re-index runs): readers take the union (vault.index_rows).
blind = Table("dv_index", metadata,
              Column("gen", Integer, primary_key=True, autoincrement=False),
              Column("name", String(80), primary_key=True),
              Column("value", BigInteger, primary_key=True, autoincrement=False),
              Column("chunk", LargeBinary(F.INDEX_CHUNK_ID_LEN), primary_key=True),
              Column("ids", LargeBinary, nullable=False),
              sqlite_with_rowid=False)
# Deleting a record scans the index for its id (rare, and bounded by the vault's size).
# Issued pseudonyms: keyed lookup tag -> encrypted record id. Nothing links two purposes.
pseudonyms = Table("dv_pseudonyms", metadata,
                   Column("purpose", String(64), primary_key=True),
                   Column("tag", LargeBinary(16), primary_key=True),
                   Column("ref", LargeBinary, nullable=False),
                   sqlite_with_rowid=False)


# Enrolled users; the whole table is signed by the security lead (meta "roster_sig").
users = Table("dv_users", metadata,
              Column("user_id", String(32), primary_key=True),
              Column("name", String(200), nullable=False),
              Column("role", String(64), nullable=False),
              Column("public", LargeBinary(64), nullable=False),
              Column("slot_id", String(32), nullable=False))


def _close_quietly(cur: Any) -> None:
    """Close a cursor on an error path: the error being raised is the one to report."""
    with contextlib.suppress(Exception):
        cur.close()


def _sqlite_path(url: str) -> str | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:":
        raise StoreError("an in-memory SQLite vault cannot be persisted; give a file path")
    return u.database


#: How long a SQLite statement waits for another client's lock before failing.
BUSY_TIMEOUT_MS = 5000
#: How long the checkpoint after a delete waits for other clients (see Store.checkpoint).
CHECKPOINT_WAIT_MS = 200
#: Page size of a new SQLite vault (an existing file keeps its own: SQLite ignores the
#: pragma once the file has pages). A record row is ~900 bytes: a 4 KiB page holds four
#: and leaves ~12% unused, a 16 KiB page holds eighteen (~1% unused), and a full blind-index
#: row (F.INDEX_CHUNK_IDS: 496 eight-byte prefixes) still fits in the page itself. 32 KiB saves a little more but
#: each commit then writes 32 KiB frames to the WAL: single adds got slower, with longer
#: checkpoint stalls (bench/bytes.py; docs/benchmarks.md).
SQLITE_PAGE_SIZE = 16384


def _install_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (atomic read-modify-write)
        # synchronous=NORMAL with WAL: every commit is atomic and survives a process crash
        # (the SIGKILL tests); a power cut may lose the last commits, never corrupt the file.
        # FULL would fsync on every commit, i.e. on every audited read (docs/threat-model.md).
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # before WAL: a new file only
        for pragma in ("journal_mode=WAL", "secure_delete=ON", "foreign_keys=ON",
                       f"busy_timeout={BUSY_TIMEOUT_MS}", "temp_store=MEMORY", "synchronous=NORMAL",
                       "cache_size=-65536"):  # 64 MiB page cache: index inserts stay in memory
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # The DB-API directly (see Store.raw). IMMEDIATE takes the write lock up front for a
        # transaction that reads and then writes (an audited read): a deferred one would fail
        # with SQLITE_BUSY_SNAPSHOT if another writer committed between its read and its write.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if conn.info.get("dv_write") else "BEGIN")


class Store(IndexRows, Locks):
    """A handle on the vault's tables; every method takes/uses explicit transactions."""

    def __init__(self, url: str, *, create: bool) -> None:
        self.url = url
        self._conn: Connection | None = None
        self._depth = 0
        try:
            path = _sqlite_path(url)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
            raise StoreError("not a database URL (expected sqlite:///PATH or postgresql+psycopg://...)") from None
        self.sqlite_path = path
        if path is not None:
            if create:
                write_private(path, b"", error=StoreError)  # an empty 0600 file SQLite then fills
            elif not os.path.isfile(path):
                raise NotFound(f"no vault at {path}")
            else:
                _check_sqlite_vault(path)  # before our pragmas turn someone else's file to WAL
        #: how the connection is protected (PostgreSQL: postgres.check_transport), for status
        self.transport = "local file"
        target: Any = url
        if path is None:
            from .postgres import check_transport
            target, self.transport = check_transport(url)
        try:
            self.engine = create_engine(target, future=True)
        except (ArgumentError, ImportError, SQLAlchemyError) as e:
            raise StoreError(f"cannot use database URL: {type(e).__name__}") from None
        if path is not None:
            _install_sqlite_pragmas(self.engine)
        else:
            install_lock_wait(self.engine)
        self._dbapi = self.engine.dialect.loaded_dbapi
        ph = "?" if path is not None else "%s"  # sqlite3 is qmark, psycopg is format style
        self._ph = ph
        self._index_sql(ph)
        self._get_record_sql = f"SELECT data FROM dv_records WHERE id = {ph}"
        self._get_meta_sql = f"SELECT value FROM dv_meta WHERE name = {ph}"
        self._set_meta_sql = f"UPDATE dv_meta SET value = {ph} WHERE name = {ph}"
        self._update_record_sql = f"UPDATE dv_records SET data = {ph} WHERE id = {ph}"
        self._insert_record_sql = f"INSERT INTO dv_records (id, data) VALUES ({ph}, {ph})"

    def raw(self, conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement on the DB-API cursor of ``conn`` (inside its transaction).

        Why: on a small statement SQLAlchemy's execution context and events cost several
        times what SQLite itself does, and every audited read pays two of them. DB-API
        errors are mapped to StoreError like those that come through SQLAlchemy.

        A failed statement is reset here, in this thread (the cursor is closed): left for
        the garbage collector (the error's traceback holds the cursor), it could be reset
        by another thread that holds the write lock this connection is waiting for, and
        the reset needs this connection's mutex, which the waiting holds: a deadlock until
        the busy timeout."""
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, params)
            return cur
        except self._dbapi.Error as e:
            err = _store_error(e)  # a fresh error: it holds no reference to the cursor
        raise self._failed(conn, cur, err)

    def _failed(self, conn: Connection, cur: Any, err: StoreError) -> StoreError:
        """After a failed statement on the DB-API cursor: the cursor closed (see raw) and, on
        PostgreSQL, a connection that cannot go on invalidated, as SQLAlchemy does for its
        own statements: else the transaction's rollback fails on the dead connection and
        its error hides this one (the caller must see Unavailable, "nothing was written")."""
        _close_quietly(cur)
        if isinstance(err, StoreUnavailable) and not self.is_sqlite:
            conn.invalidate()
        return err

    def raw_many(self, conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """:meth:`raw` for a few rows of one statement (a single add's index rows). One
        ``executemany``: psycopg pipelines it, one round trip to PostgreSQL instead of one
        per row (a single add's five index rows cost a quarter of a millisecond more)."""
        cur = conn.connection.cursor()
        try:
            cur.executemany(sql, rows)
            cur.close()
            return
        except self._dbapi.Error as e:
            err = _store_error(e)
        raise self._failed(conn, cur, err)

    def _fetch(self, cur: Any, n: int) -> list[Any]:
        try:
            return list(cur.fetchmany(n))
        except self._dbapi.Error as e:
            err = _store_error(e)
        _close_quietly(cur)  # as in raw()
        raise err

    @property
    def is_sqlite(self) -> bool:  # type: ignore[override]  # Locks declares it an attribute; here it is derived
        return self.sqlite_path is not None

    @contextmanager
    def tx(self, *, write: bool = True, snapshot: bool = False) -> Iterator[Connection]:
        """One transaction on this handle's own connection (kept open: a pool checkout per
        transaction cost more than the audit entry it carried). A nested call joins the
        outer transaction. ``write`` (the default): it may write, so on SQLite it begins
        IMMEDIATE, taking the write lock up front; a deferred transaction that read and then
        wrote would fail at once (SQLITE_BUSY_SNAPSHOT) whenever another client committed in
        between. Pass ``write=False`` only for a transaction that never writes.
        ``snapshot``: on PostgreSQL, REPEATABLE READ, so that several reads that are checked
        against each other (user rows and their signature, the key statement and the slots)
        come from one commit; under READ COMMITTED a change committing between them looked
        like tampering. SQLite's transactions are snapshots already."""
        if self._depth:
            self._depth += 1
            try:
                assert self._conn is not None
                yield self._conn
            finally:
                self._depth -= 1
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.engine.connect()
            self._depth = 1
            self._conn.info["dv_write"] = write
            self._conn.info["dv_slots_written"] = {}  # Store.put_slot: what this transaction sealed
            self._conn.info["dv_slots_deleted"] = set()  # Store.delete_slot: what it removed
            try:
                with self._conn.begin():
                    if snapshot and not self.is_sqlite:
                        self._conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield self._conn
            finally:
                self._depth = 0
        except (SQLAlchemyError, self._dbapi.Error) as e:  # never its text: it can carry parameters
            # (a DB-API error comes straight from the BEGIN our begin hook issues, e.g. a lock
            # still held by another client when the busy timeout runs out)
            self._drop_conn()
            raise _store_error(e) from None

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                pass
        self._conn = None

    def has_vault(self) -> bool:
        try:
            return inspect(self.engine).has_table("dv_meta")
        except SQLAlchemyError as e:  # e.g. "file is not a database", a refused connection
            raise StoreError(f"cannot open database: {_connect_cause(e)}") from None

    def dispose(self) -> None:
        self._drop_conn()
        self.engine.dispose()

    def vault_tables(self) -> set[str]:
        """Names of the vault's tables (``dv_*``) present in this database or schema."""
        try:
            return {t for t in inspect(self.engine).get_table_names() if t.startswith("dv_")}
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open database: {_connect_cause(e)}") from None

    def drop_tables(self, names: Collection[str]) -> bool:
        """Drop the named vault tables; only for removing a vault this process has just made
        and failed to fill, and only the tables it made (any other ``dv_*`` table may hold
        someone's data). False if that failed too."""
        self._drop_conn()
        try:
            found = MetaData()
            found.reflect(self.engine, only=lambda name, _meta: name in names)
            found.drop_all(self.engine)
        except SQLAlchemyError:
            return False
        return True

    # -- meta -----------------------------------------------------------------------------
    # The reads and writes every add makes (the meta rows, the slots, the user table) go
    # through the DB-API cursor (raw): SQLAlchemy's per-statement work (cache key, compiled
    # context, an expanding IN) cost more than SQLite's, several times per add.
    def get_meta(self, conn: Connection) -> dict[str, bytes]:
        return {r[0]: _blob(r[1]) for r in self.raw(conn, "SELECT name, value FROM dv_meta").fetchall()}

    def get_meta_values(self, conn: Connection, names: Sequence[str]) -> dict[str, bytes]:
        names = list(names)
        if not names:
            return {}
        marks = ", ".join([self._ph] * len(names))
        rows = self.raw(conn, f"SELECT name, value FROM dv_meta WHERE name IN ({marks})",
                        tuple(names)).fetchall()
        return {r[0]: _blob(r[1]) for r in rows}

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this store (so a nested one commits nothing)."""
        return bool(self._depth)

    def put_meta(self, conn: Connection, values: dict[str, bytes]) -> None:
        insert = f"INSERT INTO dv_meta (name, value) VALUES ({self._ph}, {self._ph})"
        for name, value in values.items():
            if self.raw(conn, self._set_meta_sql, (value, name)).rowcount == 0:
                self.raw(conn, insert, (name, value))

    @staticmethod
    def delete_meta(conn: Connection, name: str) -> bool:
        """Remove one dv_meta row; whether there was one."""
        return bool(conn.execute(meta.delete().where(meta.c.name == name)).rowcount)

    @staticmethod
    def meta_with_prefix(conn: Connection, prefix: str) -> dict[str, bytes]:
        """The dv_meta rows whose name starts with ``prefix`` (a family of per-record rows)."""
        q = select(meta.c.name, meta.c.value).where(meta.c.name.startswith(prefix, autoescape=True))
        return {r.name: _blob(r.value) for r in conn.execute(q)}

    def meta_value(self, conn: Connection, name: str, *, lock: bool = False) -> bytes | None:
        """One dv_meta value on the DB-API cursor (the canary list is read and rewritten by
        every add: SQLAlchemy's statement overhead was most of that cost); ``lock``
        (PostgreSQL: FOR UPDATE) holds the row for a read-modify-write."""
        sql = self._get_meta_sql + (" FOR UPDATE" if lock and not self.is_sqlite else "")
        row = self.raw(conn, sql, (name,)).fetchone()
        return None if row is None else _blob(row[0])

    def set_meta_value(self, conn: Connection, name: str, value: bytes) -> None:
        """Write one dv_meta value (inserted if the row is missing), on the DB-API cursor."""
        self.put_meta(conn, {name: value})

    # -- slots ----------------------------------------------------------------------------
    def get_slots(self, conn: Connection) -> list[tuple[str, str, bytes, bytes]]:
        rows = self.raw(conn, "SELECT slot_id, kind, unlock, keyring FROM dv_slots ORDER BY slot_id").fetchall()
        return [(r[0], r[1], _blob(r[2]), _blob(r[3])) for r in rows]

    def slot_keyring(self, conn: Connection, slot_id: str) -> tuple[bytes, bytes | None] | None:
        """One slot's keyring blob and the stored database schema version (unparsed), in one
        statement (read under Store.lock_writes by a write that checks them)."""
        row = self.raw(conn, "SELECT keyring, (SELECT value FROM dv_meta WHERE name = 'db_schema_version') "
                       f"FROM dv_slots WHERE slot_id = {self._ph}", (slot_id,)).fetchone()
        return None if row is None else (_blob(row[0]), None if row[1] is None else _blob(row[1]))

    @staticmethod
    def put_slot(conn: Connection, slot_id: str, kind: str, unlock: bytes, keyring: bytes, *,
                 new: bool = True) -> bool:
        """Write a slot; False if it is gone and ``new`` is False (a re-seal must never bring
        back a slot that a revocation deleted). The SHA-256 of a new ``unlock`` (a new slot,
        or another unlock blob than the row held) is kept with the transaction
        (``written_slots``): the key statement signed in it names what this client sealed,
        and for every other slot what the previous statement named, never what the database
        happens to hold (a re-seal writes a passphrase slot's unlock back as it found it)."""
        held = conn.execute(select(slots.c.unlock).where(slots.c.slot_id == slot_id)).first()
        # updated in place: a delete and insert would show a client locking its slot row
        # (Vault._check_keys) no row at all for a moment, i.e. a revoked slot
        res = conn.execute(update(slots).where(slots.c.slot_id == slot_id)
                           .values(kind=kind, unlock=unlock, keyring=keyring))
        if res.rowcount == 0:
            if not new:
                return False
            conn.execute(slots.insert().values(slot_id=slot_id, kind=kind, unlock=unlock, keyring=keyring))
        if held is None or _blob(held[0]) != unlock:
            conn.info.setdefault("dv_slots_written", {})[slot_id] = C.sha256(unlock).hex()
        return True

    @staticmethod
    def written_slots(conn: Connection) -> dict[str, str]:
        """Slot id -> hex SHA-256 of the unlock blob, of each slot put in this transaction."""
        return dict(conn.info.get("dv_slots_written", {}))

    @staticmethod
    def delete_slot(conn: Connection, slot_id: str) -> None:
        """Remove a slot; kept with the transaction (``deleted_slots``): a passphrase slot the
        signer removed in it is no longer one the key statement it signs there names."""
        conn.execute(delete(slots).where(slots.c.slot_id == slot_id))
        conn.info.setdefault("dv_slots_deleted", set()).add(slot_id)

    @staticmethod
    def deleted_slots(conn: Connection) -> set[str]:
        """Slot ids removed in this transaction (:meth:`delete_slot`)."""
        return set(conn.info.get("dv_slots_deleted", ()))

    # -- users ----------------------------------------------------------------------------
    def get_users(self, conn: Connection) -> list[tuple[str, str, str, bytes, str]]:
        rows = self.raw(conn, "SELECT user_id, name, role, public, slot_id FROM dv_users ORDER BY user_id").fetchall()
        return [(r[0], r[1], r[2], _blob(r[3]), r[4]) for r in rows]

    @staticmethod
    def put_user(conn: Connection, user_id: str, name: str, role: str, public: bytes, slot_id: str) -> None:
        conn.execute(users.insert().values(user_id=user_id, name=name, role=role, public=public, slot_id=slot_id))

    @staticmethod
    def set_role(conn: Connection, user_id: str, role: str) -> None:
        conn.execute(update(users).where(users.c.user_id == user_id).values(role=role))

    @staticmethod
    def delete_user(conn: Connection, user_id: str) -> bool:
        return conn.execute(delete(users).where(users.c.user_id == user_id)).rowcount == 1

    # -- records --------------------------------------------------------------------------
    def insert_records(self, conn: Connection, rows: list[tuple[bytes, bytes]]) -> None:
        """Insert sealed rows (a single add's on the DB-API cursor: see raw)."""
        if len(rows) == 1:
            self.raw(conn, self._insert_record_sql, rows[0])
        elif rows:
            conn.exec_driver_sql(self._insert_record_sql, rows)

    def get_record(self, conn: Connection, rid: bytes, *, lock: bool = False) -> bytes | None:
        """One record row; ``lock`` (PostgreSQL: FOR UPDATE) for a read-modify-write, so two
        clients updating different fields of one record cannot lose each other's change
        (SQLite's BEGIN IMMEDIATE already serialises them)."""
        sql = self._get_record_sql + (" FOR UPDATE" if lock and not self.is_sqlite else "")
        row = self.raw(conn, sql, (rid,)).fetchone()
        return None if row is None else _blob(row[0])

    def get_records(self, conn: Connection, ids: list[bytes], *, lock: bool = False) -> list[tuple[bytes, bytes]]:
        """Rows by id, sorted; ``lock`` (PostgreSQL: FOR UPDATE, in id order) when they are
        rewritten from what was read, e.g. a rotation batch, so an update committed meanwhile
        is not overwritten by the old row rewrapped."""
        out: list[tuple[bytes, bytes]] = []
        tail = " ORDER BY id FOR UPDATE" if lock and not self.is_sqlite else ""
        for i in range(0, len(ids), 500):  # bounded parameter lists
            chunk = ids[i:i + 500]
            ph = ", ".join([self._ph] * len(chunk))
            rows = self.raw(conn, f"SELECT id, data FROM dv_records WHERE id IN ({ph}){tail}", tuple(chunk)).fetchall()
            out += [(_rid(r[0]), _blob(r[1])) for r in rows]
        return sorted(out)

    @staticmethod
    def scan_records(conn: Connection) -> Iterator[tuple[bytes, bytes]]:
        """(record id, data) of every row, inside the caller's transaction (a one-off sweep;
        the caller writes only after the scan ends)."""
        for rid, data in conn.execute(select(records.c.id, records.c.data)):
            yield _rid(rid), _blob(data)

    @staticmethod
    def put_record(conn: Connection, rid: bytes, data: bytes) -> None:
        if conn.execute(update(records).where(records.c.id == rid).values(data=data)).rowcount != 1:
            raise StoreError("record row vanished during update")

    def put_records(self, conn: Connection, rows: list[tuple[bytes, bytes]]) -> None:
        """(data, id) pairs: one executemany UPDATE."""
        if rows:
            conn.exec_driver_sql(self._update_record_sql, rows)

    def lock_records(self, conn: Connection, rids: list[bytes]) -> None:
        """Lock every row of ``rids`` (PostgreSQL: FOR UPDATE), in one order, for a transaction
        that updates several records: each update takes its row's lock, then the log's, held
        to the commit; a second row locked after that would wait on a colleague who holds it
        and waits for the log (a deadlock). A row that is not there is left to the update."""
        for rid in sorted(set(rids)):
            self.get_record(conn, rid, lock=True)

    def record_exists(self, conn: Connection, rid: bytes, *, hold: bool = False) -> bool:
        """``hold`` (PostgreSQL: FOR SHARE): the row stays until the transaction ends, for a
        write that must not outlive it (a pseudonym row written while a shred commits would
        be left behind, naming a record that is gone; SQLite serialises writers already).
        On the DB-API cursor: every audited read of a record names it by pseudonym, so this
        runs once per find and get."""
        sql = f"SELECT 1 FROM dv_records WHERE id = {self._ph}" + (" FOR SHARE" if hold and not self.is_sqlite else "")
        return self.raw(conn, sql, (rid,)).fetchone() is not None

    @staticmethod
    def delete_record(conn: Connection, rid: bytes) -> bool:
        # SQLite's secure_delete zeroes the freed cells. PostgreSQL keeps the dead tuple
        # (ciphertext included) until VACUUM reuses the space; see docs/threat-model.md.
        return conn.execute(delete(records).where(records.c.id == rid)).rowcount == 1

    # -- pseudonyms -------------------------------------------------------------------------
    def get_pseudonym(self, conn: Connection, purpose: str, tag: bytes) -> bytes | None:
        row = self.raw(conn, f"SELECT ref FROM dv_pseudonyms WHERE purpose = {self._ph} AND tag = {self._ph}",
                       (purpose, tag)).fetchone()
        return None if row is None else _blob(row[0])

    def put_pseudonym(self, conn: Connection, purpose: str, tag: bytes, ref: bytes) -> None:
        """Issue one. Two sessions may issue the same pseudonym at once (it is a function of
        the record id): the second insert does nothing, and either stored ref resolves."""
        ph = self._ph
        self.raw(conn, f"INSERT INTO dv_pseudonyms (purpose, tag, ref) VALUES ({ph}, {ph}, {ph}) "
                       "ON CONFLICT DO NOTHING", (purpose, tag, ref))

    @staticmethod
    def delete_pseudonym(conn: Connection, purpose: str, tag: bytes) -> None:
        conn.execute(delete(pseudonyms).where(pseudonyms.c.purpose == purpose, pseudonyms.c.tag == tag))

    def ids_after(self, after: bytes, limit: int) -> list[bytes]:
        with self.tx(write=False) as conn:
            rows = conn.execute(select(records.c.id).where(records.c.id > after)
                                .order_by(records.c.id).limit(limit))
            return [_rid(r[0]) for r in rows]

    def iter_records(self, batch: int = 2000) -> Iterator[tuple[bytes, bytes]]:
        """(record id, data) in storage order (unspecified), streamed."""
        q = select(records.c.id, records.c.data)  # physical order: no index walk
        # Its own connection, not tx()'s: the caller may read or write (audited) between rows.
        with self.engine.connect() as conn:
            if self.is_sqlite:  # sqlite3 streams by itself and returns bytes: skip the Result layer
                conn.info["dv_write"] = False  # a plain BEGIN: a long scan must not hold the write lock
                with conn.begin():
                    cur = self.raw(conn, "SELECT id, data FROM dv_records")
                    while rows := self._fetch(cur, batch):
                        for rid, data in rows:
                            yield _rid(rid), _blob(data)
                return
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
            for rid, data in result:
                yield _rid(rid), _blob(data)

    def ids(self) -> list[bytes]:
        with self.tx(write=False) as conn:
            return [_rid(r[0]) for r in conn.execute(select(records.c.id).order_by(records.c.id))]

    @staticmethod
    def count_records(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(records)).scalar_one())

    def checkpoint(self) -> bool:
        """SQLite: fold the WAL into the file and truncate it, so shredded pages leave the WAL.

        Returns False when another client's reader or writer kept the checkpoint from
        finishing (old pages then stay in the WAL until a later checkpoint). It waits at most
        CHECKPOINT_WAIT_MS for them: a TRUNCATE checkpoint holds the write lock while it
        waits for readers, so a long wait stalls every other client's writes, and one whose
        own reader it waits for deadlocks with it until a busy timeout runs out.
        """
        if not self.is_sqlite:
            return True
        if self._depth:
            return False  # inside a transaction: a checkpoint could not truncate the WAL
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.engine.connect()
            # on the DB-API connection, outside any transaction: SQLAlchemy would open one
            # first (autobegin), and a checkpoint run inside a transaction cannot finish
            raw = self._conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (SQLAlchemyError, self._dbapi.Error):
            return False
        return bool(busy) and busy[0][0] == 0


def check_db_version(stored: int) -> None:
    if stored > F.DB_SCHEMA_VERSION:
        raise UnsupportedVersion(
            f"this vault uses database schema v{stored}; this release reads up to v{F.DB_SCHEMA_VERSION}: "
            "upgrade defenders-vault"
        )


def check_app_roles(url: str, roles: Sequence[str]) -> None:
    """See :func:`vault.postgres.check_roles`."""
    from .postgres import check_roles
    check_roles(url, roles)


def restrict_audit_role(url: str, role: str) -> None:
    """PostgreSQL: give the staff clients' database role what it needs and no more
    (:func:`vault.postgres.grant_roles`, :data:`vault.postgres.STAFF_GRANTS`): among it, only
    SELECT and INSERT on the audit log. Run as the owner."""
    from .postgres import grant_roles
    grant_roles(url, staff=[role])
