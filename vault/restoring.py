"""Restoring a backup (vault.backup) over a vault, or into an empty place, all or nothing.

The order is the point: parse and checksum the file; load it into a staging place; open it
there as a vault (keys, schema, user table, key statement), verify its audit log and every
record row against it, check the backup's signature; merge the shred ledger (the live
vault's, the backup's, a ledger file's) and shred again every record it names; only then
replace the live tables in one transaction. Any failure before that transaction leaves
the live vault as it was (docs/threat-model.md "Backups and the shred ledger").
"""

from __future__ import annotations

import glob
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from . import _crypto as C
from . import backup as BK
from . import ledger as LG
from .args import check_path
from .errors import AccessDenied, BadBackup, IntegrityError, NotFound, VaultError
from .locations import normalise_url
from .store import Store, StoreError, _sqlite_path
from .users import REVOKED

_STAGE_PREFIX = "dvrestore_"
_IN_USE = "another client has the vault open: stop every client, then restore again; the vault is unchanged"


class Restorable(Protocol):
    """What restore needs of an opened vault (vault.Vault has it)."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> Any: ...
    def signing_actors(self, *, managers: bool = False) -> set[bytes]: ...
    def audit_verify(self) -> Any: ...
    def check_records(self) -> Any: ...
    def ids(self) -> list[str]: ...
    def users(self, include_revoked: bool = False) -> list[Any]: ...
    def delete(self, record_id: str) -> None: ...
    def adopt_shreds(self, entries: dict[bytes, int]) -> None: ...
    def note_restore(self, detail: dict[str, Any]) -> None: ...
    def audit_checkpoint(self) -> str: ...
    def close(self) -> None: ...


Opener = Callable[[str], Restorable]


@dataclass
class Restored:
    """What a restore did: counts, and what the lead should read (``warnings``)."""

    records: int
    audit_entries: int
    replayed: int
    backup_seq: int
    checkpoint: str  # of the restored log's head: write it down, as after audit checkpoint
    warnings: list[str] = field(default_factory=list)


def _live_state(url: str) -> tuple[str, bytes | None, list[bytes], dict[str, str]]:
    """("live" | "empty", the live vault's id, its ledger entries, its revoked users' ids and
    names) without changing a byte. The user rows are read unverified: they only decide a
    warning (a restore does not replay revocations)."""
    path = _sqlite_path(url)
    if path is not None and (not os.path.exists(path) or os.path.getsize(path) == 0):
        return "empty", None, [], {}
    try:
        store = Store(url, create=False)
    except NotFound:  # a SQLite database that holds no vault: someone's file, never replaced
        raise StoreError("the file there is a database but not a vault: not restoring over it (give a new "
                         "path, or move that file away)") from None
    try:
        tables = store.vault_tables()
        if "dv_meta" not in tables:
            if tables:
                raise StoreError("this database holds vault tables (dv_*) but no vault metadata: not restoring over "
                                 "them (move them away first)")
            return "empty", None, [], {}
        with store.tx(write=False) as conn:
            vid = store.meta_value(conn, "vault_id")
            blobs = LG.read(conn)
            revoked = {row[0]: row[1] for row in store.get_users(conn) if row[2] == REVOKED}
        return "live", vid, blobs, revoked
    finally:
        store.dispose()


# -- staging ---------------------------------------------------------------------------------------
def _stage_url(url: str, prefix: str) -> tuple[str, str]:
    """(URL of a fresh staging place, its name: a file path or a schema). ``prefix``: the
    staging schemas' prefix of this target (_clear_stale), PostgreSQL only."""
    path = _sqlite_path(url)
    tag = C.random_bytes(6).hex()
    if path is not None:
        folder, name = os.path.split(os.path.abspath(path))
        staged = os.path.join(folder, f".{name}.restoring-{tag}")
        return "sqlite:///" + staged, staged
    schema = prefix + tag
    u = make_url(url)
    query = dict(u.query)
    query["options"] = f"-csearch_path={schema}"
    return u.set(query=query).render_as_string(hide_password=False), schema


def _clear_stale(url: str) -> str:
    """Remove what a restore of this target killed part way left: staging files or schemas
    (never the vault, never another vault's restore in the same database: the staging
    schemas carry a digest of the target's schema). Returns that prefix ("" on SQLite)."""
    path = _sqlite_path(url)
    if path is not None:
        folder, name = os.path.split(os.path.abspath(path))
        for left in glob.glob(os.path.join(folder, f".{glob.escape(name)}.restoring-*")):
            os.unlink(left)
        return ""
    store = Store(url, create=False)
    try:
        with store.tx() as conn:
            target = str(store.raw(conn, "SELECT current_schema()").fetchone()[0])
            prefix = f"{_STAGE_PREFIX}{C.sha256(target.encode('utf-8'))[:4].hex()}_"
            for (schema,) in store.raw(conn, "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s",
                                       (len(prefix), prefix)).fetchall():
                if re.fullmatch(re.escape(prefix) + "[0-9a-f]{12}", schema):  # a name we make; never quoted blind
                    store.raw(conn, f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        store.dispose()
    return prefix


def _ph(store: Store) -> str:
    return "?" if store.is_sqlite else "%s"


def _insert(store: Store, conn: Any, t: BK.Table) -> None:
    """One table's rows into the staging place: PostgreSQL's COPY (SQLite: _insert_sqlite)."""
    if not t.rows or store.is_sqlite:
        return
    cur = conn.connection.driver_connection.cursor()
    with cur.copy(f"COPY {t.name} ({BK.quoted(t.columns)}) FROM STDIN") as copy:
        for row in t.rows:
            copy.write_row(row)


def _insert_sqlite(path: str, b: BK.Backup) -> None:
    """The rows into the staging file in one transaction, with neither journal nor fsync: the
    file is a scratch copy until verified (a crash leaves a leftover the next restore
    removes), and _single_file makes it whole before it takes the vault's place."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("BEGIN")
        for t in b.tables.values():
            if t.rows:
                ph = ", ".join(["?"] * len(t.columns))
                con.executemany(f"INSERT INTO {t.name} ({BK.quoted(t.columns)}) VALUES ({ph})", t.rows)  # noqa: S608
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        raise BadBackup(f"the backup's rows do not fit its tables ({type(e).__name__}): nothing was restored") from None
    finally:
        con.close()


def _load(url: str, name: str, b: BK.Backup, extra_ledger: list[bytes]) -> None:
    """Create the staging vault's tables and fill them from the backup (and the ledger)."""
    from . import migrations
    if _sqlite_path(url) is None:
        _pg_run(url, f'CREATE SCHEMA "{name}"')
    store = Store(url, create=True)
    try:
        with store.tx() as conn:
            migrations.upgrade(conn, 0)
            LG.ensure(conn)
            from sqlalchemy import inspect
            insp = inspect(conn)
            have = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t.startswith("dv_")}
            for t in b.tables.values():
                if t.name not in have or not set(t.columns) <= have[t.name]:
                    raise BadBackup(f"the backup holds a table this release does not know ({t.name}): made by a "
                                    "newer release? Nothing was restored")
                _insert(store, conn, t)
            kept = b.tables.get("dv_shreds")
            held = {bytes(r[kept.columns.index("rid")]) for r in kept.rows} if kept else set()
            fresh = {}
            for blob in extra_ledger:
                e = LG.parse(blob)
                if e.rid not in held:
                    fresh[e.rid] = blob
            if fresh:
                conn.exec_driver_sql(f"INSERT INTO dv_shreds (rid, entry) VALUES ({_ph(store)}, {_ph(store)})",  # noqa: S608
                                     sorted(fresh.items()))
    finally:
        store.dispose()
    path = _sqlite_path(url)
    if path is not None:
        _insert_sqlite(path, b)


def _drop_stage(url: str, staged_url: str, name: str) -> None:
    if _sqlite_path(url) is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(name + suffix)
            except FileNotFoundError:
                pass
        return
    _pg_run(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _pg_run(url: str, sql: str) -> None:
    """One statement of the staging's own (a staging schema's name only, never a value)."""
    store = Store(url, create=False)
    try:
        with store.tx() as conn:
            store.raw(conn, sql)
    finally:
        store.dispose()


# -- verification in the staging place -------------------------------------------------------------
def _verify_and_replay(v: Restorable, b: BK.Backup, blobs: list[bytes], more_signers: Callable[[], set[bytes]],
                       restored_from: str, deep: bool) -> tuple[int, str]:
    """Every check of a staged backup, then the ledger replay; returns how many were shredded
    and a checkpoint of the restored log's head (its last entry).
    The maker's signature (the lead's or the recovery actor's, over the SHA-256 of the whole
    file) covers every blob as the vault held it; ``deep`` also opens every record row and
    compares it with the log (Vault.check_records), which finds rows that were already
    damaged or rolled back in the vault the backup was taken from."""
    if not v.role.manage:
        raise AccessDenied("restoring a backup is for the security lead (or the recovery passphrase)")
    if v.id != b.vault_id.hex():
        raise BadBackup("the backup file's header names another vault than its tables: nothing was restored")
    BK.check_signature(b, v.signing_actors(managers=True))
    signers = v.signing_actors()
    if deep:
        try:
            found = v.check_records()
        except IntegrityError as e:
            raise BadBackup(f"the backup's audit log does not verify ({e}): nothing was restored") from None
        if not found.ok:
            raise BadBackup(f"the backup's records do not match its audit log ({found}): nothing was restored")
    else:
        verdict = v.audit_verify()
        if not verdict.ok:
            raise BadBackup(f"the backup's audit log does not verify ({verdict}): nothing was restored")
    own = signers
    if any(len(x) == LG.ENTRY_LEN and LG.parse(x).actor not in signers for x in blobs):
        signers = signers | more_signers()  # a user enrolled after the backup, known to the live vault
    entries = LG.verify(blobs, b.vault_id, signers)
    # entries of users the restored vault does not know: re-signed by the restorer, else its
    # own shreds and every later restore would refuse them (vault.ledger.record, verify)
    strangers = {rid: e.at for rid, e in entries.items() if e.actor not in own}
    if strangers:
        v.adopt_shreds(strangers)
    present = set(v.ids()) if entries else set()
    replay = sorted(rid.hex() for rid in entries if rid.hex() in present)
    for rid in replay:
        v.delete(rid)
    v.note_restore({"backup_seq": b.audit_seq, "replayed": len(replay), "from": restored_from,
                    **({"adopted": len(strangers)} if strangers else {})})
    return len(replay), v.audit_checkpoint()


def _checkpoint_warning(b: BK.Backup, checkpoints: str | os.PathLike[str] | None) -> list[str]:
    """What to tell the lead when their newest checkpoint (canaries.witness's file) is past
    the backup's log, or is not in it."""
    if checkpoints is None or not os.path.exists(checkpoints):
        return []
    from . import audit as A
    from .audit_rows import link_of
    vid = b.vault_id.hex()
    try:
        with open(checkpoints, encoding="ascii") as f:
            line = next((x.split(" ", 1)[1] for x in f.read().splitlines() if x.startswith(vid + " ")), None)
    except (OSError, UnicodeDecodeError, IndexError):
        return [f"cannot read the checkpoints file {checkpoints}"]
    if line is None:
        return []
    cp = A.Checkpoint.parse(line)
    if cp.seq > b.audit_seq:
        return [f"this backup is older than your newest checkpoint: it ends at audit entry {b.audit_seq}, your "
                f"checkpoint is at entry {cp.seq}. Everything written after the backup (records, users, log "
                "entries) is gone, except the shreds the ledger re-applied. Your next open will refuse the log "
                f"until you remove this vault's line from {checkpoints}"]
    audit = b.tables.get("dv_audit")
    row = next((r for r in (audit.rows if audit else []) if r[0] == cp.seq), None)
    if row is None or not cp.matches(link_of(row)):
        return [f"this backup's audit log does not hold your checkpoint at entry {cp.seq}: it is not a copy of the "
                "log you last saw (a rewritten log?)"]
    return []


def _keep_checkpoint(path: str | os.PathLike[str], vault_id: str, checkpoint: str) -> None:
    """The restorer's checkpoints file (canaries.witness, format.md 8e) names the restored
    log's head for this vault: a restore is the lead's deliberate rollback, after which the
    next open must compare the log with what was restored, not with what was replaced."""
    from ._files import replace_private
    kept: dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="ascii") as f:
            for line in f.read().splitlines():
                parts = line.split(" ")
                if len(parts) == 2:
                    kept[parts[0]] = parts[1]
    kept[vault_id] = checkpoint
    replace_private(path, "".join(f"{vid} {cp}\n" for vid, cp in sorted(kept.items())).encode("ascii"))


# -- the swap ---------------------------------------------------------------------------------------
def _swap_sqlite(path: str, staged: str, live_ledger: set[bytes]) -> None:
    """Put the staged file in the live file's place with one rename (atomic on POSIX): a
    kill before it leaves the old vault, after it the restored one. Both are made single
    files first (WAL folded in, rollback-journal mode; the next open turns WAL on again),
    so that no -wal file of one is ever read with the other. Taking the live vault out of
    WAL mode needs it to itself: another client still connected refuses the restore."""
    from ._files import _fsync_dir
    _single_file(staged)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=5000")
            _refuse_new_shreds(con.execute, "", live_ledger)
            busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()
            if (busy is not None and busy[0]) or mode is None or str(mode[0]).lower() != "delete":
                raise StoreError(_IN_USE)
            con.execute("BEGIN EXCLUSIVE")  # held across the rename: no client writes the old file meanwhile
            _refuse_new_shreds(con.execute, "", live_ledger)
            os.replace(staged, path)
            con.execute("ROLLBACK")
        except sqlite3.OperationalError:  # locked: a client holds it
            raise StoreError(_IN_USE) from None
        except sqlite3.Error as e:
            raise StoreError(f"the restore could not take the vault's place ({type(e).__name__}); the vault is "
                             "unchanged") from None
        finally:
            con.close()
    else:
        os.replace(staged, path)
    _fsync_dir(Path(path).parent)


def _single_file(path: str) -> None:
    """Fold the WAL into ``path`` and leave WAL mode, so the file alone is the database."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()
        if mode is None or str(mode[0]).lower() != "delete":
            raise StoreError("the staged restore is still in use; nothing was replaced")
    finally:
        con.close()


def _refuse_new_shreds(run: Callable[..., Any], prefix: str, seen: set[bytes]) -> None:
    """A shred committed after the ledger was read would be undone by the swap: refuse."""
    try:
        now = {bytes(r[0]) for r in run(f"SELECT rid FROM {prefix}dv_shreds").fetchall()}  # noqa: S608 - names checked against the catalog
    except (sqlite3.Error, VaultError):
        return  # no ledger table there yet
    if now - seen:
        raise StoreError("a record was shredded while the restore ran: nothing was replaced; run the restore again")


_COLUMNS_SQL = ("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position")


def _swap_pg(url: str, schema: str, live_ledger: set[bytes]) -> None:
    """Replace the live schema's vault tables' rows by the staged ones in one transaction
    (the tables stay, with their grants and the audit log's insert guard)."""
    from . import migrations
    store = Store(url, create=False)
    try:
        with store.tx() as conn:
            live = store.vault_tables()
            if "dv_meta" not in live:
                migrations.upgrade(conn, 0)
            else:  # as a rotation and an append take them: every writer and appender waits or went first
                store.lock_keys(conn)
                store.lock_append(conn)
            LG.ensure(conn)
            store.raw(conn, "LOCK TABLE dv_shreds IN EXCLUSIVE MODE")
            _refuse_new_shreds(lambda sql: store.raw(conn, sql), "", live_ledger)
            names = [str(r[0]) for r in store.raw(conn, "SELECT table_name FROM information_schema.tables WHERE "
                                                        "table_schema = %s AND left(table_name, 3) = 'dv_' ORDER BY 1",
                                                  (schema,)).fetchall()]
            for name in names:
                cols = [str(r[0]) for r in store.raw(conn, _COLUMNS_SQL, (schema, name)).fetchall()]
                listed = ", ".join(f'"{c}"' for c in cols)
                # TRUNCATE, not DELETE: the replaced rows leave no dead tuples behind, and
                # readers wait for the commit (its lock) instead of seeing empty tables
                store.raw(conn, f'TRUNCATE "{name}"')
                order = " ORDER BY seq" if name == "dv_audit" else ""
                sql = f'INSERT INTO "{name}" ({listed}) SELECT {listed} FROM "{schema}"."{name}"{order}'  # noqa: S608
                store.raw(conn, sql)
    finally:
        store.dispose()


def restore(url: str | os.PathLike[str], path: str | os.PathLike[str], opener: Callable[[str], Restorable], *,
            ledger: str | os.PathLike[str] | None = None, checkpoints: str | os.PathLike[str] | None = None,
            deep: bool = False) -> Restored:
    """Restore the backup file ``path`` at ``url`` (a live vault of the same id, or an empty
    place); ``opener(url)`` opens a vault there with the restorer's credentials (the lead's
    identity or the recovery passphrase). ``ledger``: a ledger file (Vault.backup's
    ``ledger=``) whose entries are re-applied too, for when the live vault is lost."""
    target = normalise_url(url)
    path, ledger = check_path(path, "path"), None if ledger is None else check_path(ledger, "ledger")
    checkpoints = None if checkpoints is None else check_path(checkpoints, "checkpoints")
    b = BK.read_file(path)  # every byte checked before anything else
    file_ledger: list[bytes] = []
    if ledger is not None:
        try:
            with open(ledger, "rb") as f:
                lid, file_ledger = LG.decode_file(f.read())
        except OSError as e:
            raise BadBackup(f"cannot read the ledger file ({e.strerror or type(e).__name__})") from None
        if lid != b.vault_id:
            raise BadBackup("the ledger file is of another vault than the backup")
    kind, live_id, live_blobs, live_revoked = _live_state(target)
    if kind == "live" and live_id != b.vault_id:
        raise BadBackup("this backup is of another vault than the one at that place: nothing was restored")
    staged_url, name = _stage_url(target, _clear_stale(target))
    kept = b.tables.get("dv_shreds")
    backup_ledger = [r[kept.columns.index("entry")] for r in kept.rows] if kept and "entry" in kept.columns else []
    blobs = list({*backup_ledger, *live_blobs, *file_ledger})

    def live_signers() -> set[bytes]:
        if kind != "live":
            return set()
        try:
            lv = opener(target)
        except VaultError:
            return set()
        try:
            return lv.signing_actors()
        finally:
            lv.close()
    try:
        _load(staged_url, name, b, [*live_blobs, *file_ledger])
        v = opener(staged_url)
        try:
            replayed, checkpoint = _verify_and_replay(v, b, blobs, live_signers, "file" if ledger else "vault",
                                                      deep)
            enrolled = {u.user_id: u.name for u in v.users() if u.user_id in live_revoked}
        finally:
            v.close()
        seen = {LG.parse(x).rid for x in live_blobs}
        if _sqlite_path(target) is not None:
            _swap_sqlite(_sqlite_path(target) or "", name, seen)
        else:
            _swap_pg(target, name, seen)
    finally:
        _drop_stage(target, staged_url, name)
    warnings = _checkpoint_warning(b, checkpoints)
    if enrolled:  # a restore does not replay revocations (threat model 12.3)
        warnings.append(f"{len(enrolled)} user(s) revoked in the vault this restore replaced are enrolled in the "
                        f"backup: remove them again before anyone else opens the vault (dvault user remove "
                        f"{' / '.join(sorted(enrolled.values()))})")
    if checkpoints is not None:
        _keep_checkpoint(checkpoints, b.vault_id.hex(), checkpoint)
    return Restored(b.count("dv_records") - replayed, b.count("dv_audit"), replayed, b.audit_seq, checkpoint,
                    warnings)


__all__ = ["restore", "Restored", "Restorable"]
