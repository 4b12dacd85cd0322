"""The shred ledger: which record ids were crypto-shredded, so that no restore brings one
back (docs/format.md 16a, docs/threat-model.md "Backups and the shred ledger").

One row per shredded record id in ``dv_shreds``, written in the transaction that deletes
the record, signed by whoever shredded it. An entry holds the vault id, the record's
random 16-byte id, the time and the shredder's public identity: no name, no field, no
pseudonym. A restore keeps every entry it finds (it never replaces the ledger) and shreds
again, in what it restores, every record an entry names.

Why signed: the database is hostile. An entry planted by a database writer would make the
next restore shred a live record; so a restore applies only entries signed by someone
the restored vault (or the live one) knows as able to shred (an enrolled user or the
recovery actor), for this vault's id, and refuses the whole restore, changing nothing,
when an entry does not verify. What a signature cannot show is an entry that was deleted:
on PostgreSQL the staff login may only append (vault.postgres.STAFF_GRANTS); on SQLite
anyone with the file can delete rows, which is why ``dvault backup`` also writes the ledger
to a file of its own, kept wherever the backups are.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, LargeBinary, MetaData, Table

from . import _crypto as C
from . import _format as F
from .errors import BadBackup, IntegrityError

_metadata = MetaData()
#: rid -> the signed entry. Made on first use (and by vault.postgres.grant_roles): no
#: database schema step, so an older vault needs no upgrade before its first shred.
shreds = Table("dv_shreds", _metadata,
               Column("rid", LargeBinary(16), primary_key=True),
               Column("entry", LargeBinary, nullable=False))

ACTOR_LEN = 64  # X25519 public key || Ed25519 public key, as in the audit log
SIG_LEN = C.ED25519_SIG_LEN
_BODY = struct.Struct(f">B{F.ID_LEN}s{F.ID_LEN}sQ{ACTOR_LEN}s")
ENTRY_LEN = _BODY.size + SIG_LEN


@dataclass(frozen=True)
class Entry:
    vault_id: bytes
    rid: bytes
    at: int
    actor: bytes
    sig: bytes

    def __repr__(self) -> str:
        return f"<ledger entry {self.rid.hex()}>"

    def body(self) -> bytes:
        return _BODY.pack(F.LEDGER_VERSION, self.vault_id, self.rid, self.at, self.actor)

    def encode(self) -> bytes:
        return self.body() + self.sig


def message(body: bytes) -> bytes:
    """What the shredder signs: the label and the entry's body (docs/format.md 16a)."""
    return F.LABEL_LEDGER_SIG + body


def make(vault_id: bytes, rid: bytes, actor: bytes, sign: Callable[[bytes], bytes], at: int | None = None) -> Entry:
    when = int(time.time()) if at is None else at
    body = _BODY.pack(F.LEDGER_VERSION, vault_id, rid, when, actor)
    return Entry(vault_id, rid, when, actor, sign(message(body)))


def parse(blob: bytes) -> Entry:
    """One entry's bytes; BadBackup if it is not exactly one entry of a known version."""
    if len(blob) != ENTRY_LEN or blob[0] != F.LEDGER_VERSION:
        raise BadBackup("a shred ledger entry is malformed (edited in the database or the file?)")
    _v, vault_id, rid, at, actor = _BODY.unpack(blob[:_BODY.size])
    return Entry(vault_id, rid, at, actor, blob[_BODY.size:])


def ensure(conn: Any) -> None:
    """Create ``dv_shreds`` if this database lacks it (inside the caller's transaction)."""
    _metadata.create_all(conn, tables=[shreds], checkfirst=True)


def record(conn: Any, vault_id: bytes, rid: bytes, actor: bytes, sign: Callable[[bytes], bytes] | None,
           signers: Callable[[], set[bytes]]) -> None:
    """The shred hook: add the signed entry for ``rid`` in the shredding transaction. A client
    that cannot sign (no key) shreds nothing: fail-closed, a shred outside the ledger would
    come back with the next restore. ``signers``: the public identities whose entries a
    restore of this vault accepts (asked only when a row is there already)."""
    if sign is None:
        raise BadBackup("this client has no signing key, so it cannot record a shred in the ledger")
    ensure(conn)
    row = conn.execute(shreds.select().where(shreds.c.rid == rid)).first()
    if row is None:
        conn.execute(shreds.insert().values(rid=rid, entry=make(vault_id, rid, actor, sign).encode()))
        return
    # A row already keyed by this record (a shred rolled back after writing it cannot leave
    # one, so it was put there by a database writer, or by a restore): kept only if it is
    # this record's own entry, signed by someone a restore accepts. A copy of another
    # record's entry under this key, or an entry signed by a key of the writer's own making,
    # would let the shred pass unrecorded: every restore then refuses that row, and once it
    # is removed a restore brings the person back.
    problem = row_problem(rid, bytes(row[1]), vault_id, signers())
    if problem is not None:
        raise IntegrityError(f"the shred ledger already holds a row for this record that is not its entry "
                             f"({problem}): shred refused, nothing changed; the lead should run dvault verify")


def adopt(conn: Any, vault_id: bytes, entries: dict[bytes, int], actor: bytes, sign: Callable[[bytes], bytes]) -> None:
    """Re-sign, as ``actor``'s own, the rows of ``entries`` (rid -> the shred's time), keeping
    each shred's time. A restore's staged vault only (vault.restoring): the entries it
    verified against the live vault's users but whose signers the restored vault does not
    know (enrolled after the backup) would otherwise be refused by its own shreds and by
    every later restore."""
    for rid, at in sorted(entries.items()):
        entry = make(vault_id, rid, actor, sign, at).encode()
        conn.execute(shreds.update().where(shreds.c.rid == rid).values(entry=entry))


def row_problem(key: bytes, blob: bytes, vault_id: bytes, signers: set[bytes] | None = None) -> str | None:
    """What is wrong with the ledger row ``key`` -> ``blob`` (None: nothing): the record its
    entry names against its key, then the entry's own checks (:func:`_entry_problem`)."""
    e, problem = _entry_problem(blob, vault_id, signers)
    if e is not None and e.rid != key:
        return "row key names another record than its entry (planted)"
    return problem


def _entry_problem(blob: bytes, vault_id: bytes, signers: set[bytes] | None) -> tuple[Entry | None, str | None]:
    """(the entry, what is wrong with it or None): its form, this vault's id, a signer in
    ``signers`` (when given) and the signature by the public key it names."""
    try:
        e = parse(blob)
    except BadBackup:
        return None, "malformed entry"
    if e.vault_id != vault_id:
        return e, "entry of another vault"
    if signers is not None and e.actor not in signers:
        return e, "entry signed by no one this vault knows"
    try:
        C.ed25519_verify(e.actor[32:], message(e.body()), e.sig)
    except C.AuthFailure:
        return e, "entry signature does not verify (edited)"
    return e, None


def rows(conn: Any) -> list[tuple[bytes, bytes]]:
    """Every stored (key, entry) pair (none if the table does not exist yet)."""
    from sqlalchemy import inspect
    if not inspect(conn).has_table("dv_shreds"):
        return []
    return [(bytes(r[0]), bytes(r[1])) for r in conn.execute(shreds.select())]


def read(conn: Any) -> list[bytes]:
    """Every stored entry's bytes (none if the table does not exist yet). A row whose key is
    not the record its entry names is refused (BadBackup): it is a planted row."""
    out = []
    for key, blob in rows(conn):
        if len(blob) == ENTRY_LEN and blob[0] == F.LEDGER_VERSION and parse(blob).rid != key:
            raise BadBackup("a shred ledger row's key names another record than its entry (planted in the "
                            "database): nothing was restored; run dvault verify on the live vault")
        out.append(blob)
    return out


def verify(blobs: Iterable[bytes], vault_id: bytes, signers: set[bytes]) -> dict[bytes, Entry]:
    """rid -> entry, every one checked: its form, this vault's id, a signer in ``signers``
    (public identities, ACTOR_LEN bytes) and its signature. Any entry that fails refuses
    them all (BadBackup): applying the rest would be a restore that silently un-shreds
    or lets a forgery through, and the lead must look at it."""
    out: dict[bytes, Entry] = {}
    bad = 0
    for blob in blobs:
        e, problem = _entry_problem(blob, vault_id, signers)
        if e is None or problem is not None:
            bad += 1
            continue
        out[e.rid] = e
    if bad:
        raise BadBackup(f"{bad} shred ledger entr{'y' if bad == 1 else 'ies'} of this vault do not verify (of another "
                        "vault, signed by no one this vault knows, or edited): nothing was restored; tell the lead")
    return out


# -- ledger files (docs/format.md 16a) ------------------------------------------------------------
def encode_file(vault_id: bytes, blobs: Iterable[bytes]) -> bytes:
    """A ledger file: magic, version, vault id, count, the entries in rid order, SHA-256."""
    entries = sorted({parse(b).rid: b for b in blobs}.items())
    head = F.LEDGER_MAGIC + bytes([F.LEDGER_VERSION]) + vault_id + struct.pack(">I", len(entries))
    body = head + b"".join(blob for _rid, blob in entries)
    return body + C.sha256(body)


def decode_file(data: bytes) -> tuple[bytes, list[bytes]]:
    """(vault id, entry blobs) of a ledger file; BadBackup for any damage or truncation."""
    head = len(F.LEDGER_MAGIC) + 1 + F.ID_LEN + 4
    if len(data) < head + 32 or not data.startswith(F.LEDGER_MAGIC):
        raise BadBackup("not a shred ledger file (or truncated)")
    if data[len(F.LEDGER_MAGIC)] != F.LEDGER_VERSION:
        raise BadBackup(f"unknown shred ledger file version {data[len(F.LEDGER_MAGIC)]}")
    if not C.mac_equal(C.sha256(data[:-32]), data[-32:]):
        raise BadBackup("the shred ledger file is corrupt or truncated (its checksum does not match)")
    vault_id = data[len(F.LEDGER_MAGIC) + 1:head - 4]
    (n,) = struct.unpack(">I", data[head - 4:head])
    if len(data) != head + n * ENTRY_LEN + 32:
        raise BadBackup("the shred ledger file is malformed (its length does not match its count)")
    return vault_id, [data[head + i * ENTRY_LEN:head + (i + 1) * ENTRY_LEN] for i in range(n)]


__all__ = ["Entry", "make", "parse", "record", "adopt", "read", "rows", "row_problem", "verify", "encode_file",
           "decode_file", "ensure"]
