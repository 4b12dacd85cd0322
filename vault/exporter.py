"""Exports: the moment plaintext leaves the vault, so the safe path must be the easy one.

Files are created 0600 and never overwrite anything; rows carry a per-purpose pseudonym
instead of any internal id, so a badge list cannot be joined with a travel list; an
export can be sealed to one recipient's public identity instead of written in clear.

A sealed export (kind O, docs/format.md 8d) is signed by whoever made it, with the
identity they opened the vault with, over everything that says what it is: the vault it
came from, when, for which purpose, which fields and how many rows, to whom, and the
payload itself. Why: a sealed box is anonymous, and a recipient's public line is in
clear in dv_users, so anyone could seal a "travel list" of their own making (wrong dates,
a live formula) to them; and an unbound export of one vault or purpose could be passed
off as another's. The recipient's identity is inside what is signed, so a recipient
cannot re-seal a signed export to a third person as if it had been sent to them.

Whether a valid signature is *trusted* is the opener's decision (``check_sender``): a
fingerprint they confirmed with the sender, or the sender's enrolment in a vault they
have pinned. Whatever is written out goes through the formula guard again: the payload
is the sender's, not ours.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _crypto as C
from . import _format as F
from ._files import write_private
from .errors import IntegrityError, ValidationError, VaultError
from .identity import PUBLIC_PREFIX, Identity, PublicIdentity

if TYPE_CHECKING:
    from .vault import Vault

__all__ = ["ARMOR", "ARMOR_END", "Opened", "check_sender", "fingerprint_given", "guard_cell", "guard_csv",
           "open_sealed", "seal", "to_csv", "to_json", "write_private"]

ARMOR = "-----BEGIN DVAULT SEALED EXPORT-----"
ARMOR_END = "-----END DVAULT SEALED EXPORT-----"
_V1_PREFIX = b"dvault-export-v1\n"  # unsigned sealed exports of earlier releases (read on request only)
_FORMATS = ("csv", "json")
_MANIFEST_KEYS = {"created", "fields", "format", "purpose", "recipient", "rows", "sender", "vault"}


# -- the formula guard ----------------------------------------------------------------------------
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A telephone number as registration forms hold it: "+", then digits with spaces, dots,
# hyphens and parentheses between them. No letter, quote, colon, "!" or "|" can occur in
# one, so a spreadsheet finds in it no function, no cell reference and no DDE link: at
# worst it would do arithmetic on the digits. 7 to 15 digits (E.164 allows 15): "+2-3"
# is no phone number and stays guarded.
_PHONE = re.compile(r"\+[0-9][0-9 ().-]*")


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


def guard_cell(text: str) -> str:
    """``text`` as a spreadsheet may safely open it: a leading =, +, -, @, tab or carriage
    return would make it evaluate the cell (CSV injection, as OWASP lists it), so such a
    cell gets a leading apostrophe, unless it is a plain number or a telephone number
    (``+93 70 123 4567`` stays as it is; ``=HYPERLINK(...)``, ``@SUM(...)``, ``-2+3`` and
    ``+cmd|...`` do not). Idempotent: a guarded cell starts with an apostrophe."""
    if text[:1] not in ("=", "+", "-", "@", "\t", "\r"):
        return text
    if _NUMBER.fullmatch(text) or _is_phone(text):
        return text
    return "'" + text


def _is_phone(text: str) -> bool:
    return _PHONE.fullmatch(text) is not None and 7 <= sum(c.isdigit() for c in text) <= 15


def to_csv(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    return _write_csv([columns, *([_cell(r.get(col)) for col in columns] for r in rows)])


def _write_csv(rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    # CRLF (RFC 4180). Every cell is quoted: spreadsheets in much of Europe and Latin
    # America split CSV on ";", so an unquoted "Ana;=cmd|..." would open as two cells, the
    # second a formula that the leading-character guard never saw.
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        w.writerow([guard_cell(c) for c in row])
    return buf.getvalue()


def guard_csv(data: bytes) -> bytes:
    """Someone else's CSV (a sealed export, whoever made it) as ``to_csv`` would have written
    it: every cell quoted and guarded, the header too. A CSV that ``to_csv`` wrote comes back
    unchanged."""
    rows = None
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):
        pass  # raised below, outside the handler: the decoder's error holds the decrypted payload
    if rows is None:
        raise IntegrityError("the export's CSV is malformed")
    return _write_csv(rows).encode("utf-8")


def _check_json_lines(data: bytes) -> bytes:
    """JSON lines as ``to_json`` writes them, one object per line, or IntegrityError: a
    payload that says it is JSON must not be a CSV in disguise, which the guard never saw."""
    ok = False
    try:
        lines = data.decode("utf-8").split("\n")
        if lines[-1] == "":
            lines.pop()
        ok = all(isinstance(json.loads(line), dict) for line in lines)
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass  # raised below, outside the handler: the parser's error holds the decrypted line
    if not ok:
        raise IntegrityError("the export's JSON lines are malformed")
    return data


def to_json(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: (_cell(v) if isinstance(v, dt.date) else v) for k, v in r.items()},
                              ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


# -- sealing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Opened:
    """An opened sealed export: the payload (formula-guarded again) and what the signed
    manifest says of it. ``sender`` is None for an unsigned export of an earlier release,
    and so are the vault id, time, purpose, fields, format and row count (nothing says)."""

    data: bytes
    sender: PublicIdentity | None
    recipient: PublicIdentity
    vault_id: str | None = None
    created: int | None = None  # Unix seconds, UTC
    purpose: str | None = None
    fields: tuple[str, ...] = ()
    format: str | None = None
    rows: int | None = None

    def __repr__(self) -> str:  # never the payload
        who = self.sender.user_id if self.sender else "unsigned"
        return f"<Opened export from {who}, vault {self.vault_id}, {self.rows} rows>"

    @property
    def created_text(self) -> str:
        if self.created is None:
            return "unknown"
        return dt.datetime.fromtimestamp(self.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seal(data: bytes, recipient: PublicIdentity, sender: Identity, *, vault_id: str, purpose: str | None,
         fields: Sequence[str], fmt: str, rows: int, now: int | None = None) -> bytes:
    """``data`` (``to_csv`` or ``to_json`` output) signed by ``sender`` and sealed to
    ``recipient``, with the manifest that says where it came from (docs/format.md 8d),
    ASCII-armoured. ``now``: Unix seconds (tests and vectors), else the clock."""
    if fmt not in _FORMATS:
        raise ValidationError("an export's format is csv or json")
    if not isinstance(rows, int) or rows < 0 or len(vault_id) != 2 * F.ID_LEN:
        raise ValidationError("a sealed export needs a row count and the vault id")
    manifest = json.dumps({"created": int(time.time()) if now is None else now, "fields": list(fields),
                           "format": fmt, "purpose": purpose, "recipient": recipient.raw.hex(), "rows": rows,
                           "sender": sender.public.raw.hex(), "vault": vault_id},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(manifest) > F.EXPORT_MANIFEST_MAX:
        raise ValidationError("too many fields for one sealed export")
    header = _header(recipient)
    body = header + len(manifest).to_bytes(4, "big") + manifest + data
    signature = sender.sign(F.LABEL_EXPORT_SIG + body)
    return _armour(recipient, header + C.seal_to(recipient.x25519, body + signature))


def _header(recipient: PublicIdentity) -> bytes:
    return bytes([F.FORMAT_VERSION]) + F.KIND_EXPORT + bytes.fromhex(recipient.user_id)


def _armour(recipient: PublicIdentity, blob: bytes) -> bytes:
    body = base64.encodebytes(blob).decode()
    return f"{ARMOR}\nrecipient: {recipient.user_id}\n\n{body}{ARMOR_END}\n".encode()


def _unarmour(blob: bytes) -> tuple[str | None, bytes]:
    """(the armour's recipient line, the decoded blob)."""
    try:
        text = blob.decode("ascii")
        head, rest = text.split("\n\n", 1)
        if not head.startswith(ARMOR) or ARMOR_END not in rest:
            raise ValueError
        lines = head.split("\n")[1:]
        named = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("recipient:")), None)
        return named, base64.b64decode(rest.split(ARMOR_END)[0], validate=False)
    except (UnicodeDecodeError, IndexError, ValueError):
        raise VaultError("not a dvault sealed export") from None


def open_sealed(blob: bytes, identity: Identity, *, allow_unsigned: bool = False) -> Opened:
    """Open and verify an export sealed to ``identity``: kind O (docs/format.md 8d), checked
    in the order the spec gives. An unsigned export (earlier releases) is refused unless
    ``allow_unsigned``: anyone who knows the recipient's public line can make one. Does
    not decide whether the sender is trusted: see check_sender."""
    named, raw = _unarmour(blob)
    me = identity.public
    if raw[:2] == bytes([F.FORMAT_VERSION]) + F.KIND_EXPORT and len(raw) >= 2 + F.KID_LEN + C.SEALED_OVERHEAD:
        try:
            return _open_signed(named, raw, identity)
        except IntegrityError:
            if not allow_unsigned:  # an unsigned box starts with these two bytes once in 65536
                raise
    if not allow_unsigned:
        raise IntegrityError("this export is not signed (an earlier release, or made by anyone who knows your "
                             "public line): refused; open it only if you know where it came from")
    try:
        plain = identity.unseal(raw)
    except C.AuthFailure:
        raise IntegrityError("this export is not sealed to your identity, or it was altered") from None
    if not plain.startswith(_V1_PREFIX) or (named is not None and named != me.user_id):
        raise IntegrityError("sealed export has an unknown format")
    data = plain[len(_V1_PREFIX):]
    return Opened(_guard_unknown(data), None, me)


def _open_signed(named: str | None, raw: bytes, identity: Identity) -> Opened:
    me = identity.public
    header = raw[:2 + F.KID_LEN]
    if header[2:].hex() != me.user_id:
        raise IntegrityError(f"this export is sealed to user {header[2:].hex()}, not to you ({me.user_id})")
    if named is not None and named != me.user_id:
        raise IntegrityError("this export's recipient line was altered")
    try:
        inner = identity.unseal(raw[len(header):])
    except C.AuthFailure:
        raise IntegrityError("this export is not sealed to your identity, or it was altered") from None
    if len(inner) < len(header) + 4 + C.ED25519_SIG_LEN or inner[:len(header)] != header:
        raise IntegrityError("this export is malformed (its inner header differs)")
    body, signature = inner[:-C.ED25519_SIG_LEN], inner[-C.ED25519_SIG_LEN:]
    n = int.from_bytes(body[len(header):len(header) + 4], "big")
    start = len(header) + 4
    if n > F.EXPORT_MANIFEST_MAX or start + n > len(body):
        raise IntegrityError("this export is malformed (its manifest length)")
    m = _manifest(body[start:start + n])
    sender = PublicIdentity(bytes.fromhex(m["sender"])[:32], bytes.fromhex(m["sender"])[32:])
    try:
        C.ed25519_verify(sender.ed25519, F.LABEL_EXPORT_SIG + body, signature)
    except C.AuthFailure:
        raise IntegrityError("this export's signature does not verify: it was altered or forged") from None
    if m["recipient"] != me.raw.hex():
        raise IntegrityError("this export was signed for another recipient (forwarded?)")
    payload = body[start + n:]
    data = guard_csv(payload) if m["format"] == "csv" else _check_json_lines(payload)
    return Opened(data, sender, me, m["vault"], m["created"], m["purpose"], tuple(m["fields"]), m["format"],
                  m["rows"])


def _manifest(text: bytes) -> dict[str, Any]:
    """The manifest's members, each of the type the spec gives, or IntegrityError."""
    try:
        m = json.loads(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntegrityError("this export's manifest is malformed") from None
    ok = (isinstance(m, dict) and set(m) == _MANIFEST_KEYS
          and isinstance(m["created"], int) and not isinstance(m["created"], bool) and m["created"] >= 0
          and isinstance(m["fields"], list) and all(isinstance(f, str) for f in m["fields"])
          and m["format"] in _FORMATS and (m["purpose"] is None or isinstance(m["purpose"], str))
          and isinstance(m["rows"], int) and not isinstance(m["rows"], bool) and m["rows"] >= 0
          and all(isinstance(m[k], str) and _is_hex(m[k], n) for k, n in
                  (("recipient", 128), ("sender", 128), ("vault", 2 * F.ID_LEN))))
    if not ok:
        raise IntegrityError("this export's manifest is malformed")
    return dict(m)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _guard_unknown(data: bytes) -> bytes:
    """An unsigned export says nothing of its format: JSON lines stay as they are (no line
    can open as a formula); anything else is guarded as CSV."""
    try:
        return _check_json_lines(data) if data else data
    except IntegrityError:
        return guard_csv(data)


def check_sender(opened: Opened, *, fingerprints: Iterable[str] = (), vault: Vault | None = None) -> str:
    """Decide whether the sender of a signed export is trusted; returns how, or raises
    IntegrityError naming the sender. Trusted: a fingerprint in ``fingerprints`` (as
    ``PublicIdentity.fingerprint`` shows it, spaces and case free, or the sender's public
    line) that the opener confirmed with the sender; or an enrolled, unrevoked user of ``vault``, an open vault
    that must be the one the export names (the CLI opens it with the opener's own
    identity, only if pinned). A valid signature from anyone else proves only that
    somebody holding some key made the export."""
    if opened.sender is None:
        raise IntegrityError("this export is not signed: nothing says who sent it")
    if fingerprint_given(opened, fingerprints):
        return "its fingerprint was given with --trust-sender"
    if vault is not None:
        if vault.id != opened.vault_id:
            raise IntegrityError(f"this export says it comes from vault {opened.vault_id}, not from the vault you "
                                 f"named ({vault.id})")
        u = next((u for u in vault.users() if u.public.raw == opened.sender.raw), None)
        if u is not None:
            return f"enrolled in vault {vault.id} as {u.name} ({u.role})"
    raise IntegrityError(f"unknown sender: user {opened.sender.user_id}, fingerprint {opened.sender.fingerprint()}; "
                         "nothing you trust vouches for this key. Check the fingerprint with the sender by voice "
                         "and give --trust-sender, or --vault for a vault you pinned where they are enrolled")


def fingerprint_given(opened: Opened, fingerprints: Iterable[str]) -> bool:
    """The sender's fingerprint is among ``fingerprints``: fingerprints (spaces and case do
    not matter) or public lines (``dvault1...``, as the sender gave theirs to the lead)."""
    if opened.sender is None:
        return False
    mine = _fp(opened.sender.fingerprint())
    return any(C.mac_equal(_fp(f).encode(), mine.encode()) for f in fingerprints if isinstance(f, str))


def _fp(text: str) -> str:
    if text.strip().lower().startswith(PUBLIC_PREFIX):
        text = PublicIdentity.from_line(text).fingerprint()  # a garbled line: IdentityError, one line
    return "".join(text.split()).lower()
