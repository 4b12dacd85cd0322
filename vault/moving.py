"""The ``moving`` mark of a vault that vault.move is filling (docs/format.md 12), and the
only thing allowed to take such a vault away: a re-run of the same move.

A move killed part way (SIGKILL, power cut) cannot clean up after itself, so the new vault
carries the mark from its first commit until the transaction that imports the records.
The mark says "a killed move's leftover: replace me", which is exactly what a database
writer would like the lead to do to a live vault (every record, user and audit entry added
since the move, gone). So the mark is signed by whoever ran the move (the source vault's
lead or recovery actor), bound to both vault ids; a re-run replaces a marked vault only if
that signature verifies for the source it moves from, the vault holds no record and no
audit entry beyond the ones its creation wrote; and even then it is set aside, never
dropped: its tables (SQLite: its file) are renamed and kept, audit log included.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING, Any, Callable

from . import _crypto as C
from . import _format as F
from . import keys as K
from .errors import IntegrityError, NotFound, UnfinishedMove
from .store import Store

if TYPE_CHECKING:
    from .vault import Vault

#: The entries a move's new vault holds before its import: what create() writes.
MOVE_OWN_ACTIONS = ("create", "add_user", "user_added")


def message(dest_vault_id: bytes, source_vault_id: bytes) -> bytes:
    """What the mover signs (``dv_meta.moving_sig = who || Ed25519(signer, message)``)."""
    return F.LABEL_MOVING_SIG + dest_vault_id + source_vault_id


def mark(source_id: str, dest_vault_id: bytes, sign: Callable[[bytes], bytes]) -> dict[str, bytes]:
    """The ``moving`` and ``moving_sig`` rows of a move's new vault; ``sign`` returns who || signature."""
    return {"moving": source_id.encode("ascii"), "moving_sig": sign(message(dest_vault_id, bytes.fromhex(source_id)))}


def _problem(store: Store, conn: Any) -> str | None:
    """Why a marked vault is not what a killed move leaves: records, or log entries beyond
    its creation's (its import, and the mark's removal, commit with the records)."""
    if store.count_records(conn):
        return "holds records"
    actions = [str(r[0]) for r in store.raw(conn, "SELECT action FROM dv_audit ORDER BY seq LIMIT 10").fetchall()]
    if len(actions) > len(MOVE_OWN_ACTIONS) or any(a not in MOVE_OWN_ACTIONS for a in actions):
        return "holds audit entries beyond its creation's"
    return None


def written_since_creation(store: Store) -> bool:
    """Whether a vault this process has just made holds anything but what its creation
    wrote (someone wrote there meanwhile, or it cannot be told): then it is set aside, not
    dropped, by the clean-up of a failed create() or move."""
    try:
        with store.tx(write=False) as conn:
            return _problem(store, conn) is not None
    except Exception:  # noqa: BLE001 - unreadable: keep it rather than drop what we cannot see
        return True


def check_open(store: Store) -> None:
    """open() of a marked vault: UnfinishedMove, or IntegrityError if the mark was set by hand."""
    with store.tx(write=False) as conn:
        why = _problem(store, conn)
    if why is not None:
        raise IntegrityError(f"this vault {why} but is marked as an unfinished move (edited in the database?); do "
                             "not re-run the move over it, tell the lead")
    raise UnfinishedMove("this vault is the destination of a move that did not finish (it was interrupted and may "
                         "lack records): run the move again; it sets this vault aside and makes a new one")


def _check_signed(meta: dict[str, bytes], source: "Vault") -> None:
    """The mark names ``source`` and carries its lead's or recovery actor's signature."""
    refused = IntegrityError("this vault's moving mark is not one a move from this vault signed (set in the "
                             "database?): not replacing it; tell the lead")
    try:
        src_id = meta["moving"].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        raise refused from None
    sig, vault_id = meta.get("moving_sig", b""), meta.get("vault_id", b"")
    allowed = K.signers(source._ring) if source._ring is not None else {}
    if src_id != source.id or len(sig) != 1 + C.ED25519_SIG_LEN or sig[:1] not in allowed or len(vault_id) != F.ID_LEN:
        raise refused
    try:
        C.ed25519_verify(allowed[sig[:1]], message(vault_id, bytes.fromhex(src_id)), sig[1:])
    except C.AuthFailure:
        raise refused from None


def discard_unfinished_move(url: str, source: "Vault | None" = None) -> str | None:
    """Set aside the vault at ``url`` if it is what a killed move from ``source`` left (see
    the module's docstring); returns where it was kept, or None if there was nothing to do
    (no vault, or an empty place). A finished vault is refused (VaultExists, by create()
    after this); a marked one that fails a check is refused as edited (IntegrityError).
    A SQLite database without a single table (a move killed inside create()'s first
    transaction leaves one, with its -wal and -shm) holds nothing: it is removed, so that
    the re-run can create the vault there."""
    from .store import _sqlite_path
    from .vault import _normalise_url
    path = _sqlite_path(_normalise_url(url))
    if path is not None and _tableless(path):
        _remove_sqlite(path)
        return None
    try:
        store = Store(_normalise_url(url), create=False)
    except NotFound:
        return None
    try:
        if not store.has_vault():
            return None
        with store.tx(write=False) as conn:
            meta = store.get_meta_values(conn, ["moving", "moving_sig", "vault_id"])
            if not meta.get("moving"):
                return None
            why = _problem(store, conn)
        if why is not None:
            raise IntegrityError(f"this vault {why} but is marked as an unfinished move (edited in the "
                                 "database?): not replacing it")
        if source is None:
            raise IntegrityError("this vault is marked as an unfinished move; only a re-run of the move, from the "
                                 "vault it moved, may set it aside")
        _check_signed(meta, source)
        return set_aside(store)
    finally:
        store.dispose()


def _checkpoint(store: Store) -> None:
    """Move every committed page of the WAL into the database file and empty the WAL, before
    the files are renamed one by one: a kill between two renames then leaves no WAL holding
    pages its database lacks (nor one that a new database at the old name would pick up)."""
    from sqlalchemy.exc import SQLAlchemyError
    try:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except SQLAlchemyError:
        pass  # nothing more to move (busy: dispose() checkpoints as the last connection closes)


def _tableless(path: str) -> bool:
    """Whether ``path`` is a SQLite database (or an empty file) holding no table at all,
    read without changing a byte of it."""
    import sqlite3
    from urllib.parse import quote
    if not os.path.isfile(path):
        return False
    wal = path + "-wal"
    if os.path.getsize(path) == 0 and (not os.path.exists(wal) or os.path.getsize(wal) == 0):
        return True
    try:
        con = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0
        finally:
            con.close()
    except sqlite3.DatabaseError:  # not a database: someone's file, not ours to remove
        return False


def _remove_sqlite(path: str) -> None:
    for suffix in ("-wal", "-shm", "-journal", ""):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def set_aside(store: Store) -> str:
    """Rename the vault's tables (SQLite: its files) out of the way and keep them."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + C.random_bytes(3).hex()
    if store.sqlite_path is not None:
        _checkpoint(store)
        store.dispose()
        kept = f"{store.sqlite_path}.unfinished-move-{stamp}"
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(store.sqlite_path + suffix):
                os.rename(store.sqlite_path + suffix, kept + suffix)
        return kept
    prefix = f"dvaside_{stamp.replace('-', '_').lower()}_"
    tables = sorted(store.vault_tables())
    with store.tx() as conn:
        for table in tables:
            indexes = [str(r[0]) for r in store.raw(conn, "SELECT indexname FROM pg_indexes WHERE schemaname = "
                                                          "current_schema() AND tablename = %s", (table,)).fetchall()]
            store.raw(conn, f'ALTER TABLE "{table}" RENAME TO "{prefix}{table[3:]}"')
            for index in indexes:  # an index name is a relation name too: dv_meta_pkey would block the new vault
                kept = index[3:] if index.startswith("dv_") else index
                store.raw(conn, f'ALTER INDEX "{index}" RENAME TO "{prefix}{kept}"')
    return f"tables {prefix}* in the same schema"
