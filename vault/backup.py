"""Backups: one file holding every table of a vault (docs/format.md 16), and the way back.

A backup is taken in one read transaction (SQLite: one snapshot; PostgreSQL: REPEATABLE
READ), so it is consistent while other clients go on working. It holds the tables as they
are, which is ciphertext for every protected field: nothing in it opens without a key slot's
passphrase or identity (what it does show is in docs/threat-model.md). It ends with the
maker's signature and a SHA-256 over the whole file, so a flipped byte or a cut is found
before anything is read into a database.

A restore (vault.restoring) never writes the live vault until the backup has passed every
check: it is loaded into a staging place of its own (a SQLite file beside the vault, a
PostgreSQL schema beside the vault's), opened there like any vault (schema MAC and
signature, signed key statement, user table), its audit log verified and every record row
opened and compared with the log (Vault.check_records), the backup's signature checked
against the people that vault knows; every record the shred ledger names is shredded again
there. Only then are the live tables replaced, in one transaction: a process killed at any
point leaves the old vault or the restored one, and a staging leftover that the next
restore clears.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect

from . import _crypto as C
from . import _format as F
from .errors import BadBackup, Unavailable, VaultError, VaultExists

_HEAD = struct.Struct(f">{len(F.BACKUP_MAGIC)}sB{F.ID_LEN}sQQ32sH")
_TRAILER = 64 + C.ED25519_SIG_LEN + 32  # actor, signature, SHA-256
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
NULL, INT, TEXT, BLOB = 0, 1, 2, 3


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Backup:
    """A parsed backup file (checksum checked; the signature is checked by restore, against
    the signers of the vault the backup holds)."""

    vault_id: bytes
    made_at: int
    audit_seq: int
    audit_head: bytes
    tables: dict[str, Table]
    actor: bytes
    sig: bytes
    digest: bytes  # SHA-256 of everything before the trailer: what the maker signed

    def __repr__(self) -> str:
        return f"<Backup of vault {self.vault_id.hex()} at audit entry {self.audit_seq}>"

    def count(self, table: str) -> int:
        t = self.tables.get(table)
        return 0 if t is None else len(t.rows)


def signed_message(digest: bytes) -> bytes:
    return F.LABEL_BACKUP_SIG + digest


# -- encoding ---------------------------------------------------------------------------------------
def _values(rows: list[tuple[Any, ...]], out: list[bytes]) -> None:
    """Append every value of ``rows`` to ``out`` (a tag, then a length or the integer, then
    the bytes as a part of their own: the file is joined once, not copied per value)."""
    pack_q, pack_i, add = _I64.pack, _U32.pack, out.append
    for row in rows:
        for x in row:
            if type(x) is bytes:
                add(b"\x03" + pack_i(len(x)))
                add(x)
            elif x is None:
                add(b"\x00")
            elif type(x) is int:
                add(b"\x01" + pack_q(x))
            elif type(x) is str:
                b = x.encode("utf-8", "surrogatepass")
                add(b"\x02" + pack_i(len(b)))
                add(b)
            elif isinstance(x, (bytearray, memoryview)):
                add(b"\x03" + pack_i(len(x)))
                add(bytes(x))
            else:
                raise BadBackup(f"a stored value has a type a backup cannot hold ({type(x).__name__})")


def _lp8(s: str) -> bytes:
    b = s.encode("ascii")
    if len(b) > 255:
        raise BadBackup("a table or column name is too long for a backup")
    return bytes([len(b)]) + b


def encode(vault_id: bytes, made_at: int, audit_seq: int, audit_head: bytes, tables: Iterable[Table],
           actor: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """The backup file's bytes (docs/format.md 16): header, tables in name order, trailer."""
    return b"".join(encode_parts(vault_id, made_at, audit_seq, audit_head, tables, actor, sign))


def encode_parts(vault_id: bytes, made_at: int, audit_seq: int, audit_head: bytes, tables: Iterable[Table],
                 actor: bytes, sign: Callable[[bytes], bytes], tally: _Tally | None = None) -> list[bytes]:
    """:func:`encode` as the list of its parts, in order (written without joining them);
    the rows are reported to ``tally`` as they are encoded."""
    ordered = sorted(tables, key=lambda t: t.name)
    out = [_HEAD.pack(F.BACKUP_MAGIC, F.BACKUP_VERSION, vault_id, made_at, audit_seq, audit_head, len(ordered))]
    for t in ordered:
        out.append(_lp8(t.name) + bytes([len(t.columns)]) + b"".join(_lp8(c) for c in t.columns)
                   + _U64.pack(len(t.rows)))
        if tally is None:
            _values(t.rows, out)
            continue
        for at in range(0, len(t.rows), _PROGRESS_ROWS):
            chunk = t.rows[at:at + _PROGRESS_ROWS]
            _values(chunk, out)
            tally.add(len(chunk))
    h = C.sha256_stream()
    for part in out:
        h.update(part)
    sig = sign(signed_message(h.copy().digest()))
    if len(actor) != 64 or len(sig) != C.ED25519_SIG_LEN:
        raise BadBackup("the backup's signer is malformed")
    h.update(actor + sig)
    out += [actor, sig, h.digest()]
    return out


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        end = self.at + n
        if end > len(self.data):
            raise BadBackup("the backup file is malformed (a length runs past its end)")
        out = self.data[self.at:end]
        self.at = end
        return out

    def name(self) -> str:
        n = self.take(1)[0]
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise BadBackup("the backup file is malformed (a name is not ASCII)") from None


def _rows(data: bytes, at: int, n: int, width: int) -> tuple[list[tuple[Any, ...]], int]:
    """``n`` rows of ``width`` values from ``data`` at ``at``; (rows, where they end)."""
    unpack_q, unpack_i, end = _I64.unpack_from, _U32.unpack_from, len(data)
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    try:
        for _ in range(n):
            row: list[Any] = []
            for _c in range(width):
                tag = data[at]
                if tag == BLOB or tag == TEXT:
                    start = at + 5
                    at = start + unpack_i(data, at + 1)[0]
                    if at > end:
                        raise BadBackup("the backup file is malformed (a length runs past its end)")
                    x: Any = data[start:at]
                    if tag == TEXT:
                        x = x.decode("utf-8", "surrogatepass")
                elif tag == INT:
                    x = unpack_q(data, at + 1)[0]
                    at += 9
                elif tag == NULL:
                    x = None
                    at += 1
                else:
                    raise BadBackup(f"the backup file is malformed (unknown value tag {tag})")
                row.append(x)
            add(tuple(row))
    except (IndexError, struct.error):
        raise BadBackup("the backup file is malformed (a row runs past its end)") from None
    except UnicodeDecodeError:
        raise BadBackup("the backup file is malformed (text that is not UTF-8)") from None
    return rows, at


def decode(data: bytes) -> Backup:
    """Parse and check a backup file: one BadBackup for any corruption or truncation, found
    by the checksum before any of its content is believed."""
    if len(data) < _HEAD.size + _TRAILER or not data.startswith(F.BACKUP_MAGIC):
        raise BadBackup("not a vault backup file (or cut short)")
    if data[len(F.BACKUP_MAGIC)] != F.BACKUP_VERSION:
        raise BadBackup(f"backup format v{data[len(F.BACKUP_MAGIC)]} is not one this release reads "
                        f"(v{F.BACKUP_VERSION}): upgrade defenders-vault")
    body_end = len(data) - _TRAILER
    view = memoryview(data)
    h = C.sha256_stream()
    h.update(view[:body_end])
    digest = h.copy().digest()  # what the maker signed
    h.update(view[body_end:-32])
    if not C.mac_equal(h.digest(), data[-32:]):
        raise BadBackup("the backup file is corrupt or truncated (its checksum does not match): nothing was "
                        "restored, the vault is unchanged")
    body = data[:body_end]
    _m, _v, vault_id, made_at, seq, head, ntables = _HEAD.unpack(body[:_HEAD.size])
    r = _Reader(body)
    r.at = _HEAD.size
    tables: dict[str, Table] = {}
    for _ in range(ntables):
        name = r.name()
        cols = tuple(r.name() for _c in range(r.take(1)[0]))
        (n,) = _U64.unpack(r.take(8))
        if not name.startswith("dv_") or name in tables or not cols or len(set(cols)) != len(cols):
            raise BadBackup("the backup file is malformed (a table is named twice, or not a vault table)")
        rows, r.at = _rows(body, r.at, n, len(cols))
        tables[name] = Table(name, cols, rows)
    if r.at != body_end:
        raise BadBackup("the backup file is malformed (bytes after its last table)")
    actor = data[body_end:body_end + 64]
    sig = data[body_end + 64:body_end + 64 + C.ED25519_SIG_LEN]
    return Backup(vault_id, made_at, seq, head, tables, actor, sig, digest)


def check_signature(b: Backup, signers: set[bytes]) -> None:
    """The maker is someone the backed-up vault knows, and signed this file."""
    if b.actor not in signers:
        raise BadBackup("the backup is signed by someone its vault does not know (forged?): nothing was restored")
    try:
        C.ed25519_verify(b.actor[32:], signed_message(b.digest), b.sig)
    except C.AuthFailure:
        raise BadBackup("the backup's signature does not verify (forged?): nothing was restored") from None


# -- taking a backup ------------------------------------------------------------------------------
def quoted(names: Iterable[str]) -> str:
    """Column names for SQL, quoted (``grant`` is a keyword in PostgreSQL)."""
    return ", ".join(f'"{n}"' for n in names)


#: Rows read or encoded between two progress reports.
_PROGRESS_ROWS = 5000

Progress = Callable[[int, int], None]


class _Tally:
    """``progress(done, total)`` in rows: each row counts once when it is read and once when
    it is encoded (the two slow halves of a backup), so ``total`` is twice the rows."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.done, self.total = progress, 0, 0

    def add(self, rows: int) -> None:
        if self.progress is not None and rows:
            self.done = min(self.total, self.done + rows)
            self.progress(self.done, self.total)


def snapshot(store: Any, tally: _Tally | None = None) -> tuple[list[Table], int, bytes]:
    """Every ``dv_*`` table (rows in primary-key order) and the audit log's head, read in one
    snapshot transaction. With a ``tally`` the rows are counted first (in the same
    snapshot) and reported as they are read."""
    from .audit_rows import head_row
    out = []
    with store.tx(write=False, snapshot=True) as conn:
        insp = inspect(conn)
        names = sorted(t for t in insp.get_table_names() if t.startswith("dv_"))
        if tally is not None and tally.progress is not None:
            tally.total = 2 * sum(store.raw(conn, f"SELECT COUNT(*) FROM {n}").fetchone()[0]  # noqa: S608 - catalog
                                  for n in names)
        for name in names:
            cols = tuple(c["name"] for c in insp.get_columns(name))
            keys = insp.get_pk_constraint(name).get("constrained_columns") or list(cols)
            sql = f"SELECT {quoted(cols)} FROM {name} ORDER BY {quoted(keys)}"  # noqa: S608 - names from the catalog
            cur = store.raw(conn, sql)
            rows: list[tuple[Any, ...]] = []
            while chunk := cur.fetchmany(_PROGRESS_ROWS):
                rows += [tuple(r) for r in chunk]
                if tally is not None:
                    tally.add(len(chunk))
            out.append(Table(name, cols, rows))
        seq, head = head_row(store, conn)
    return out, seq, head


#: what a failed write means when no retry mends it (vault.Unavailable, exit 6), in plain words
_UNUSABLE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk is full (quota)",
             errno.EROFS: "the file system is read-only", errno.EIO: "disk I/O error",
             errno.EACCES: "permission denied"}


#: a path that names no place a file can be made (a mistyped folder): bad input, exit 1
_NO_PLACE = {errno.ENOENT: "no such folder", errno.ENOTDIR: "a part of the path is not a folder",
             errno.EISDIR: "it is a folder", errno.ENAMETOOLONG: "the name is too long",
             errno.ELOOP: "too many symbolic links in the path"}


def _failed(e: OSError, path: str) -> Exception:
    """The error for a backup or ledger file that could not be written: the storage
    (Unavailable, exit 6), else a plain VaultError (exit 1). Never BadBackup, an
    IntegrityError (exit 5): that says a backup file is damaged, and nothing was read."""
    meaning = _UNUSABLE.get(e.errno or 0)
    if meaning is not None:
        return Unavailable(f"cannot write {path}: {meaning}")
    return VaultError(f"cannot write {path}: {_NO_PLACE.get(e.errno or 0) or e.strerror or type(e).__name__}")


def write_new(path: str, parts: list[bytes]) -> None:
    """Write ``parts`` to the new file ``path`` (0600, never over an existing file) through a
    temporary file beside it, fsynced, then linked to its name: a full disk, or a process
    killed part-way, leaves no file at ``path`` that looks like a backup and is cut short.
    A file system without hard links (FAT on a USB stick) gets a rename after checking that
    nothing is at ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    if os.path.lexists(path):
        raise VaultExists(f"refusing to overwrite {path}")
    tmp = os.path.join(folder, f".{name}.tmp-{C.random_bytes(4).hex()}")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.writelines(parts)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise VaultExists(f"refusing to overwrite {path}") from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                if os.path.lexists(path):
                    raise VaultExists(f"refusing to overwrite {path}") from None
                os.rename(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise _failed(e, path) from None


def take(store: Any, path: str, vault_id: bytes, actor: bytes, sign: Callable[[bytes], bytes], *,
         ledger: str | None = None, progress: Progress | None = None) -> dict[str, int]:
    """Write a backup of the vault behind ``store`` to ``path`` (created 0600, never over an
    existing file) and, if asked, the shred ledger of the same snapshot to the file
    ``ledger`` (vault.ledger). Returns counts: records, audit entries, ledger entries, bytes.
    ``progress(done, total)``: rows read and encoded so far, of twice the rows (a front
    end's progress bar; it is called on this thread and sees no value)."""
    from .ledger import encode_file
    tally = _Tally(progress)
    tables, seq, head = snapshot(store, tally)
    data = encode_parts(vault_id, int(time.time()), seq, head, tables, actor, sign, tally)
    by_name = {t.name: len(t.rows) for t in tables}
    ledger_data = None
    if ledger is not None:
        shreds = next((t for t in tables if t.name == "dv_shreds"), None)
        ledger_data = encode_file(vault_id, [r[1] for r in shreds.rows] if shreds else [])
    write_new(path, data)
    if ledger is not None and ledger_data is not None:
        try:
            write_new(ledger, [ledger_data])
        except BaseException:
            os.unlink(path)  # all or nothing: a backup without the ledger file asked for is not one
            raise
    return {"records": by_name.get("dv_records", 0), "audit_entries": by_name.get("dv_audit", 0),
            "ledger": by_name.get("dv_shreds", 0), "bytes": sum(map(len, data)), "audit_seq": seq}


def read_file(path: str) -> Backup:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadBackup(f"cannot read the backup file ({e.strerror or type(e).__name__})") from None
    return decode(data)


__all__ = ["Backup", "Table", "encode", "decode", "take", "read_file", "check_signature", "snapshot"]
