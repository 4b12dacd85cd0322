"""Exports: the moment plaintext leaves the vault, so the safe path must be the easy one.

Files are created 0600 and never overwrite anything; rows carry a per-purpose pseudonym
instead of any internal id, so a badge list cannot be joined with a travel list; an
export can be sealed to one recipient's public identity instead of written in clear.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from typing import Any, Iterable

from . import _crypto as C
from ._files import write_private
from .errors import IntegrityError, VaultError
from .identity import Identity, PublicIdentity

__all__ = ["ARMOR", "ARMOR_END", "open_sealed", "seal", "to_csv", "to_json", "write_private"]

ARMOR = "-----BEGIN DVAULT SEALED EXPORT-----"
ARMOR_END = "-----END DVAULT SEALED EXPORT-----"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):  # a list field: one item per line of the cell (items hold no line break)
        return "\n".join(v)
    return str(v)


def to_csv(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    # CRLF (RFC 4180). Every cell is quoted: spreadsheets in much of Europe and Latin
    # America split CSV on ";", so an unquoted "Ana;=cmd|..." would open as two cells, the
    # second a formula that the leading-character guard below never saw.
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    w.writerow(columns)
    for r in rows:
        # A leading =, +, -, @, tab or carriage return would make spreadsheets evaluate the
        # cell (CSV injection, as OWASP lists it).
        w.writerow([("'" + c) if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(c) else c
                    for c in (_cell(r.get(col)) for col in columns)])
    return buf.getvalue()


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def to_json(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: (_cell(v) if isinstance(v, dt.date) else v) for k, v in r.items()},
                              ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def seal(data: bytes, recipient: PublicIdentity) -> bytes:
    """ASCII-armoured sealed box to the recipient's X25519 key (anonymous sender)."""
    body = base64.encodebytes(C.seal_to(recipient.x25519, b"dvault-export-v1\n" + data)).decode()
    return f"{ARMOR}\nrecipient: {recipient.user_id}\n\n{body}{ARMOR_END}\n".encode()


def open_sealed(blob: bytes, identity: Identity) -> bytes:
    try:
        text = blob.decode("ascii")
        body = text.split("\n\n", 1)[1].split(ARMOR_END)[0]
        sealed = base64.b64decode(body)
    except (UnicodeDecodeError, IndexError, ValueError):
        raise VaultError("not a dvault sealed export") from None
    try:
        plain = identity.unseal(sealed)
    except C.AuthFailure:
        raise IntegrityError("this export is not sealed to your identity, or it was altered") from None
    if not plain.startswith(b"dvault-export-v1\n"):
        raise IntegrityError("sealed export has an unknown format")
    return plain[len(b"dvault-export-v1\n"):]
