"""Who waits for whom: the locks a Store takes, and how long any wait may last.

On SQLite a write transaction begins IMMEDIATE, which serialises every writer, so these
are no-ops there. On PostgreSQL two kinds of lock serve two kinds of caller:

* **Row locks on dv_meta** (``SELECT ... FOR UPDATE``, which needs UPDATE privilege on
  dv_meta): only the lead's database login has it (vault.postgres), so no staff login can
  take these, or hold them to stall the lead. They serialise the lead's key changes and
  the upgrades.
* **Advisory locks** where staff clients must take part (audit appends, the index plan
  shared, the keys shared while writing). Any login can take an advisory lock, so every
  wait for one (indeed every lock wait of our sessions) is bounded by ``lock_timeout``
  (:data:`LOCK_WAIT_MS`); past it the operation fails with one clear
  :class:`vault.store.VaultBusy` line and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: PostgreSQL advisory locks, one set per vault: the 64-bit key is ``(0x6476_0000 + n) << 32``
#: ("dv" + n) plus the OID of the vault's dv_meta table, so that two vaults in one database
#: (schemas) never wait for each other. Any database login can take an advisory lock, so
#: they serve only where staff clients must take part, and every wait is bounded
#: (LOCK_WAIT_MS). n = 1 serialises audit appends; 2 is the blind-index plan (shared by
#: writers of index terms, exclusive for whoever changes it); 4 is taken shared by every
#: write that uses class keys and exclusive by a re-seal of the key slots, so that a
#: re-seal waits for the writes under way (Locks.lock_keys). 3 is unused.
PG_APPEND_LOCK = 0x6476_0001
PG_PLAN_LOCK = 0x6476_0002
PG_KEYS_LOCK = 0x6476_0004


def advisory_key(kind: int) -> str:
    """The SQL expression of the advisory lock key ``kind`` of the vault in the current
    schema (its dv_meta table's OID, resolved through search_path as every client does)."""
    return f"(({int(kind)}::bigint << 32) | 'dv_meta'::regclass::oid::bigint)"


#: The dv_meta rows whose row locks (SELECT ... FOR UPDATE, which needs UPDATE privilege
#: on dv_meta: a staff login has none) serialise the lead's key changes and upgrades.
#: Rows that are never rewritten, so the lock meets no ordinary write.
LEAD_KEYS_ROW = "vault_id"
LEAD_UPGRADE_ROW = "format_version"
#: PostgreSQL: the longest any statement waits for a lock (lock_timeout) before it fails
#: with VaultBusy. Why bounded: a database login can hold a lock (an advisory one, or a
#: table it may write) for as long as it likes; an unbounded wait would let one staff
#: login stall every client.
LOCK_WAIT_MS = 30_000


def install_lock_wait(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # every lock wait of this client's sessions bounded (LOCK_WAIT_MS), read at connect
        # time so that a test can lower it
        # and no JIT: the server compiles a statement whose estimated cost passes jit_above_cost,
        # and a search's union of 100 prefix ranges on dv_records (vault.index_rows) is estimated
        # high (bytea ranges have no useful statistics) though each arm reads one row by the
        # primary key: compiling took 1.2 s of a 1 ms statement. Nothing this client runs is a
        # long analytic query that JIT would speed up.
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = {int(LOCK_WAIT_MS)}")
            cur.execute("SET jit = off")
        dbapi_conn.commit()


class Locks:
    """The lock methods of :class:`vault.store.Store` (which provides ``raw`` and ``is_sqlite``)."""

    is_sqlite: bool

    def raw(self, conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:  # provided by Store
        raise NotImplementedError

    def tx(self, *, write: bool = True, snapshot: bool = False) -> Any:  # provided by Store
        raise NotImplementedError

    def _drop_conn(self) -> None:  # provided by Store
        raise NotImplementedError

    def lock_plan(self, conn: Connection, *, exclusive: bool) -> None:
        """PostgreSQL: hold the index plan as it is until the transaction ends, shared by
        writers of index terms, exclusive for whoever changes the plan. One advisory lock
        rather than row locks on the plan's six rows, which two transactions could take in
        different orders (a deadlock), and because staff clients write index terms: they
        must take part, and a staff login has no row lock on dv_meta. Any login can hold it,
        so the wait is bounded (LOCK_WAIT_MS, then VaultBusy). SQLite's BEGIN IMMEDIATE
        serialises writers anyway."""
        if not self.is_sqlite:
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            self.raw(conn, f"SELECT {fn}({advisory_key(PG_PLAN_LOCK)})")

    def _lock_row(self, conn: Connection, name: str) -> None:
        """PostgreSQL: lock one dv_meta row until the transaction ends (FOR UPDATE: only a
        login that may UPDATE dv_meta, i.e. the lead's, can; a staff login gets a clear
        StoreError, never the lock)."""
        self.raw(conn, "SELECT 1 FROM dv_meta WHERE name = %s FOR UPDATE", (name,))

    def lock_keys(self, conn: Connection) -> None:
        """PostgreSQL: one writer of key slots and the user table at a time (enrolment,
        revocation, rotation steps, passphrase change), until the transaction ends, taken
        before any slot row. Why: at READ COMMITTED a revocation committing while a rotation
        re-sealed every slot left the revoked user looking enrolled (new keys sealed to them)
        and their deleted slot written back; and two re-sealers locking slot rows in
        different orders deadlocked. Two parts: the row lock on dv_meta's LEAD_KEYS_ROW
        serialises the lead's clients, and no staff login can take or hold it; then the
        keys lock exclusive (bounded) waits for the writes under way (:meth:`lock_writes`),
        so a rotation's sweep sees their rows and a revocation starts after the revoked
        user's last write. SQLite's BEGIN IMMEDIATE serialises them already."""
        if not self.is_sqlite:
            self._lock_row(conn, LEAD_KEYS_ROW)
            self.raw(conn, f"SELECT pg_advisory_xact_lock({advisory_key(PG_KEYS_LOCK)})")

    def lock_writes(self, conn: Connection) -> None:
        """PostgreSQL: a write that uses class keys (an add, an update, a rotation or
        re-index batch) holds the keys lock shared until its transaction ends, taken before
        it reads its slot (Vault._check_keys): a re-seal (:meth:`lock_keys`) either waits for
        it, or committed first and the write sees the new slot. An advisory lock because a
        staff login must take part and may not lock slot rows (no UPDATE on dv_slots)."""
        if not self.is_sqlite:
            self.raw(conn, f"SELECT pg_advisory_xact_lock_shared({advisory_key(PG_KEYS_LOCK)})")

    def lock_upgrade(self, conn: Connection) -> None:
        """PostgreSQL: one upgrader at a time, until the transaction ends: two clients opening
        an old vault at once would otherwise both run the steps (and take the meta row and the
        log's lock in different orders: a deadlock). A row lock on dv_meta's LEAD_UPGRADE_ROW:
        an upgrade writes dv_meta, which a staff login may not. SQLite's BEGIN IMMEDIATE
        serialises them."""
        if not self.is_sqlite:
            self._lock_row(conn, LEAD_UPGRADE_ROW)

    def lock_append(self, conn: Connection) -> None:
        """PostgreSQL: appenders to the audit log queue here (exclusive, until the
        transaction ends) and read the head under it. An advisory lock (every client
        appends, staff too), so the wait is bounded (LOCK_WAIT_MS, then VaultBusy)."""
        if not self.is_sqlite:
            self.raw(conn, f"SELECT pg_advisory_xact_lock({advisory_key(PG_APPEND_LOCK)})")

    @contextmanager
    def writers_out(self) -> Iterator[None]:
        """PostgreSQL: hold the keys lock exclusive across this store's transactions (a
        session-level lock on its connection, taken with the bounded wait) until the block
        ends: every write that uses class keys (:meth:`lock_writes`) waits. For vault.move,
        whose copy and fill are two transactions with no gap for a writer between them. On
        SQLite a no-op: the caller's write transactions serialise writers."""
        if self.is_sqlite:
            yield
            return
        with self.tx() as conn:
            self.raw(conn, f"SELECT pg_advisory_lock({advisory_key(PG_KEYS_LOCK)})")
        try:
            yield
        finally:
            try:
                with self.tx() as conn:
                    self.raw(conn, f"SELECT pg_advisory_unlock({advisory_key(PG_KEYS_LOCK)})")
            except Exception:
                self._drop_conn()
