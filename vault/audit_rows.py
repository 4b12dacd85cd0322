"""Audit rows as the database hands them over, whatever they hold (docs/format.md 13a,
"Malformed rows").

Anyone who can write a SQLite file (and, on PostgreSQL, whoever can get past the insert
guard: the tables' owner) can put a row of any shape in ``dv_audit``: text in a BLOB
column, a one-byte hash, a detail that is JSON but no object. Such a row must never stop a
reader (the lead's listing, the canary alarms, the record check, the next append): it is
flagged where it stands, named by the SHA-256 of its raw columns so that the lead can
quarantine it, and linked over so that the log goes on. Pure: no database access.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _crypto as C
from . import _format as F

if TYPE_CHECKING:
    from .audit_entry import Entry

#: The largest seq a row can hold (BIGINT, SQLite's INTEGER): no entry can follow it.
MAX_SEQ = 2**63 - 1


def plain(r: Sequence[Any]) -> list[Any]:
    """A fetched row with PostgreSQL's memoryview values as bytes."""
    return [bytes(x) if isinstance(x, memoryview) else x for x in r]


def _column(x: Any) -> bytes:
    """One raw column as the row's name encodes it: a type letter, then its value."""
    if x is None:
        return b"n"
    if isinstance(x, bool) or not isinstance(x, (int, float, bytes, bytearray, str)):
        x = str(x)
    if isinstance(x, int) and -2**63 <= x < 2**63:
        return b"i" + struct.pack(">q", x)
    if isinstance(x, float):
        return b"f" + struct.pack(">d", x)
    if isinstance(x, (bytes, bytearray)):
        return b"b" + struct.pack(">I", len(x)) + bytes(x)
    raw = str(x).encode("utf-8", "surrogatepass")
    return b"t" + struct.pack(">I", len(raw)) + raw


def row_name(r: Sequence[Any]) -> bytes:
    """SHA-256(LABEL_AUDIT_ROW || each of the ten columns, in table order, as a type letter
    and its value): what names a malformed row (docs/format.md 13a)."""
    return C.sha256(F.LABEL_AUDIT_ROW + b"".join(_column(x) for x in plain(r)))


def link_of(r: Sequence[Any]) -> bytes:
    """What the next entry's ``prev`` is after the row ``r``: its stored ``hash`` if that is
    32 bytes of BLOB, else the row's name (a hash column someone cut or retyped still lets
    the log go on, and the writer and every reader agree on the link)."""
    h = r[8]
    h = bytes(h) if isinstance(h, memoryview) else h
    return h if type(h) is bytes and len(h) == 32 else row_name(r)


def is_damaged(e: Entry) -> bool:
    """Whether ``e`` stands for a malformed row (audit.read_entries): no 64-byte actor."""
    return len(e.actor) != 64


def name_of(e: Entry) -> bytes:
    """The hash a quarantine decision names ``e`` by: its stored hash, or for a malformed
    row its name (kept in the stand-in's ``sig``: see audit._damaged)."""
    return e.sig if is_damaged(e) else e.hash


def detail_of(e: Entry) -> dict[str, Any] | None:
    """The entry's detail as a JSON object, or None if it is not one (malformed; a reader
    shows it as such and counts it for nothing, it never stops)."""
    text = e.detail
    if not isinstance(text, str) or not text.startswith("{"):
        return None
    try:
        out = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "{"a":[[[[..." nested past the limit
        return None
    return out if isinstance(out, dict) else None


def head_row(store: Any, conn: Any) -> tuple[int, bytes]:
    """(seq, link) of the last entry, (0, 32 zero bytes) for an empty log; the link is what the
    next entry's prev must be (audit_rows.link_of: the stored hash, or a malformed row's
    name)."""
    row = store.raw(conn, "SELECT seq, hash FROM dv_audit ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return 0, bytes(32)
    h = bytes(row[1]) if isinstance(row[1], memoryview) else row[1]
    if type(h) is bytes and len(h) == 32:
        return int(row[0]), h
    ph = "?" if store.is_sqlite else "%s"
    full = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "  # noqa: S608 - only the placeholder style is formatted in
                           f"FROM dv_audit WHERE seq = {ph}", (row[0],)).fetchone()
    return int(row[0]), link_of(full)
