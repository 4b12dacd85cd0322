"""Moving every record into a new vault under a new lead (docs/threat-model.md 6.6), and
the ``moving`` mark of the vault a move is filling (docs/format.md 12).

Why a new vault rather than a new lead in place: whoever holds the old lead's identity,
or the recovery passphrase, holds the meta and purpose keys, which never rotate (section
8), and the old lead could go on signing the schema, index plan and user table. A fresh
vault draws every key anew: class, meta and purpose keys, record ids, DEKs and the
recovery passphrase's slot, and the rows go in in a random order. Nothing in it is
linkable to the old rows without reading both with their own keys, except through a row's
shape (its fields and their length buckets, which carry over); pseudonyms change.

What is carried: every record's values (with every class opened, so the mover must hold
every class key) and which records are canaries. What is not: users (the old user table
is signed by the key that may be in other hands: the new lead re-enrols each user after
checking their fingerprint), break-glass requests and grants, and the audit log (it stays
with the old vault, which is evidence: keep it until the log has been read).

The mark: a move killed part way (SIGKILL, power cut) cannot clean up after itself, so
the new vault carries the mark from its first commit until the transaction that imports the records.
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
import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import _crypto as C
from . import _format as F
from . import index as I
from . import keys as K
from .access import Access
from .canaries import Canaries
from .errors import AccessDenied, IntegrityError, NotFound, UnfinishedMove, ValidationError
from .identity import Identity
from .journal import Journal
from .locations import normalise_url
from .plans import Plans
from .records import Records
from .store import Store, StoreError

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
    except Exception:
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


def _check_signed(meta: dict[str, bytes], source: Access) -> None:
    """The mark names ``source`` and carries its lead's or recovery actor's signature."""
    refused = IntegrityError("this vault's moving mark is not one a move from this vault signed (set in the "
                             "database?): not replacing it; tell the lead")
    try:
        src_id = meta["moving"].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        raise refused from None
    sig, vault_id = meta.get("moving_sig", b""), meta.get("vault_id", b"")
    allowed = K.signers(source.ring) if source.ring is not None else {}
    if src_id != source.ses.vid.hex() or len(sig) != 1 + C.ED25519_SIG_LEN or sig[:1] not in allowed \
            or len(vault_id) != F.ID_LEN:
        raise refused
    try:
        C.ed25519_verify(allowed[sig[:1]], message(vault_id, bytes.fromhex(src_id)), sig[1:])
    except C.AuthFailure:
        raise refused from None


def discard_unfinished_move(url: str, source: Access | None = None) -> str | None:
    """Set aside the vault at ``url`` if it is what a killed move from ``source`` left (see
    the module's docstring); returns where it was kept, or None if there was nothing to do
    (no vault, or an empty place). A finished vault is refused (VaultExists, by create()
    after this); a marked one that fails a check is refused as edited (IntegrityError).
    A SQLite database without a single table (a move killed inside create()'s first
    transaction leaves one, with its -wal and -shm) holds nothing: it is removed, so that
    the re-run can create the vault there."""
    from .store import _sqlite_path
    path = _sqlite_path(normalise_url(url))
    if path is not None and _tableless(path):
        _remove_sqlite(path)
        return None
    try:
        store = Store(normalise_url(url), create=False)
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
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + C.random_bytes(3).hex()
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


# -- the move itself ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moved:
    """The new vault (open, as its lead) and what went into it, with what its users need
    before their first open of it: its pin line (``Vault.pin_line``) and its location (the
    spelling the known-vaults file hashes, docs/format.md 8c). Each user records both
    (``vault.pins.add``, ``dvault pin add``), so that a vault built in its place before
    they open it is refused, not trusted as a first sight."""

    vault: Any  # the vault.Vault, open
    records: int
    canaries: int
    url: str = ""  # where it is (its store's URL), spelled as vault.pins does in ``location``
    pin_line: str = field(init=False)
    location: str = field(init=False)

    def __post_init__(self) -> None:  # taken now: the caller may close the vault, which then says nothing
        from .pins import location_text
        object.__setattr__(self, "pin_line", self.vault.pin_line)
        object.__setattr__(self, "location", location_text(self.url))

    def __repr__(self) -> str:
        return f"<Moved {self.records} records into vault {self.vault.id}>"


class Source(NamedTuple):
    """What a move needs of a vault, either end: its keys, records, canaries, log and plan."""

    access: Access
    records: Records
    canaries: Canaries
    journal: Journal
    plans: Plans


def prepare(src: Source, url: str | os.PathLike[str], lead: Identity) -> tuple[I.Plan, Callable[[bytes], bytes]]:
    """Before the new vault is made: the mover may move (every class key, a managing role),
    the new lead is not the old one, and a vault an earlier, killed run of this move left
    at ``url`` is set aside (never dropped). Returns the source's index plan (the new
    vault is sized alike) and what signs the new vault's ``moving`` mark (who || signature:
    only a re-run of this move may set it aside)."""
    a = src.access

    def check() -> None:
        a.need_all_classes("moving the vault")
        if not a.ses.role.manage:
            raise AccessDenied("only the security lead or the recovery passphrase moves a vault")
    src.journal.guard("move", check)
    assert a.ring is not None
    old_lead = next((k.secret for k in a.ring.keys if k.kind == K.KIND_LEAD_VK), b"")
    if hmac.compare_digest(old_lead, lead.public.ed25519):
        raise ValidationError("the new vault needs a new lead identity: this one leads the old vault")
    discard_unfinished_move(os.fspath(url), a)
    who, sign = a.plan_signer()
    return src.plans.active, lambda m: who + sign(m)


def fill(src: Source, dest: Source, progress: Callable[[int, int], None] | None) -> tuple[int, int]:
    """Copy every record of ``src`` into the new vault ``dest`` (see :func:`_writers_out`);
    returns (records, canaries) moved. The import's transaction clears the ``moving`` mark."""
    with _writers_out(src) as taken:
        # In a random order: kept in the old storage order, row k of the new vault would be
        # row k of the old one to anyone holding copies of both (threat model 6.6).
        secrets.SystemRandom().shuffle(taken)
        rows = [values for values, _ in taken]
        marked = [i for i, (_, canary) in enumerate(taken) if canary]
        dest.journal.auditor.reason = src.journal.auditor.reason  # sealed, in the new log, to the new lead
        store = dest.access.ses.store()

        def finish(ids: list[str]) -> None:  # in the import's transaction: a finished vault has it all
            with store.tx() as conn:
                store.put_meta(conn, {"moving": b""})  # empty: as no row (docs/format.md 12)
        ids = dest.records.add_many(rows, progress, entry=("import", {"op": "move", "from": src.access.ses.vid.hex()}),
                                    canaries=marked, then=finish)
    return len(ids), len(marked)


@contextmanager
def _writers_out(src: Source) -> Iterator[list[tuple[dict[str, Any], bool]]]:
    """Keep every other writer of records out of ``src`` from the copy until the new vault
    is filled, and yield the copy: every record (its values, and whether it is a canary).
    Why: records added while a move ran never reached the new vault, and the count in the
    log was taken before the copy, so nothing said so. Now a client that writes meanwhile
    waits (bounded; then it fails busy, writing nothing), and the move ends holding exactly
    the records the source holds, or refuses.

    The copy is one transaction that also commits the ``export`` entry (with the number
    copied), before anything reaches the new vault (fail-closed). A
    second transaction then holds the writers out while the new vault is filled: SQLite's
    write lock (BEGIN IMMEDIATE); on PostgreSQL the lead's keys lock, which every add,
    update, shred, rotation and re-index step takes shared, held across both (a session
    lock, Store.writers_out) so no writer gets in between. The rows are compared again with
    those copied at the start and the end of the hold, by every row's id and bytes
    (:func:`_rows_print`), not by their number: a writer that got in between (SQLite) or a
    database login that writes rows without the client (it honours no lock) refuses the
    move, also when it deleted one row and inserted another, or changed one in place."""
    store = src.access.ses.store()
    with store.writers_out():
        taken, copied = _copy(src)
        with store.tx() as conn:
            store.lock_keys(conn)
            _same_rows(store, conn, copied, len(taken))
            yield taken
            _same_rows(store, conn, copied, len(taken))


def _rows_print(rows: Iterable[tuple[bytes, bytes]]) -> bytes:
    """SHA-256 over every record row's id and the SHA-256 of its bytes, in id order."""
    return C.sha256(b"".join(rid + C.sha256(data) for rid, data in sorted(rows)))


def _same_rows(store: Store, conn: Any, copied: bytes, n: int) -> None:
    if not C.mac_equal(_rows_print(store.scan_records(conn)), copied):
        raise StoreError(f"the source vault's records changed while the move copied {n} of them (a client "
                         "that did not wait, or a database login writing rows directly): nothing was moved; "
                         "stop it, then run the move again")


def _copy(src: Source) -> tuple[list[tuple[dict[str, Any], bool]], bytes]:
    """The records of ``src`` (and the :func:`_rows_print` of what was copied) and the move's
    ``export`` entry, in one write transaction that holds the lead's keys lock (see
    :func:`_writers_out`). No alarm is written for the
    canaries among them: an entry staff can read would tell them which records are decoys
    (vault.canaries)."""
    store = src.access.ses.store()
    classes = src.records.classes_for(None)
    with store.tx() as conn:
        store.lock_keys(conn)
        canaries = src.canaries.live()
        taken, rows = [], []
        for rid, data in store.scan_records(conn):
            rec = src.records.decode_row(rid, data, classes)
            taken.append((dict(rec), rec.id in canaries))
            rows.append((rid, data))
        copied = _rows_print(rows)
        src.journal.record("export", "", {"fields": sorted(src.access.readable_fields()), "purpose": None,
                                          "count": len(taken), "op": "move"})
        _same_rows(store, conn, copied, len(taken))  # under the log's lock: no client's add lands now
    return taken, copied
