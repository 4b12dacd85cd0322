"""Break-glass: a one-time, time-limited reveal of one restricted field to one user.

A staff member asks, with a reason, to see one field of one record outside their role
(say a participant's legal name for a hospital). The reason is sealed to the security
lead, since reasons often name people. The lead approves by sealing *that field's value*
(not the class key, not even the record's data key: least privilege) to the requester's
X25519 key, with an expiry, and signs the grant. The requester's client checks the
signature and the expiry, shows the value once and deletes the grant.

Honest limits: expiry and one-time use are enforced by an honest client; a modified
client can keep the value it was shown. What it cannot do is reveal anything else.
"""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Column, Integer, LargeBinary, String, Table, delete, select, update

from . import _crypto as C
from . import _format as F
from . import envelope as E
from . import notes as N
from .errors import AccessDenied, IntegrityError, NotFound, ValidationError
from .store import _blob, metadata
from .users import is_hex_id

if TYPE_CHECKING:
    from .identity import PublicIdentity
    from .vault import Vault

reveals = Table("dv_reveals", metadata,
                Column("req_id", String(32), primary_key=True),
                Column("requester", String(32), nullable=False),
                Column("record_id", LargeBinary(16), nullable=False),
                Column("field", String(64), nullable=False),
                Column("reason", LargeBinary, nullable=False),  # sealed to the lead
                Column("grant", LargeBinary, nullable=True),  # sealed to the requester, signed
                Column("created", Integer, nullable=False))

LABEL = b"dvault/v1/break-glass"
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,62}")  # a schema field name (ASCII: it is signed as such)


class _Row(NamedTuple):
    """A dv_reveals row whose columns have their types (see :func:`_row`)."""

    req_id: str
    requester: str
    record_id: bytes
    field: str
    reason: bytes
    grant: bytes | None
    created: int


def _row(r: Any) -> _Row:
    """A dv_reveals row, checked, or IntegrityError. Why: a database writer can put any
    value of any type in a column (SQLite keeps it), and the request id, requester and field
    are parsed as hex and ASCII to build the signed grant message. BLOB columns go through
    store._blob (text becomes bytes, and the grant's parser or signature names it)."""
    try:
        out = _Row(r.req_id, r.requester, _blob(r.record_id), r.field, _blob(r.reason),
                   None if r.grant is None else _blob(r.grant), r.created)
    except IntegrityError:
        out = None
    if out is None or not (is_hex_id(out.req_id) and is_hex_id(out.requester)
                           and len(out.record_id) == F.ID_LEN and isinstance(out.field, str)
                           and _FIELD.fullmatch(out.field) and type(out.created) is int):
        raise IntegrityError("a break-glass request row is malformed (edited in the database)")
    return out


@dataclass(frozen=True)
class RevealRequest:
    req_id: str
    requester: str
    record_id: str
    field: str
    reason: str | None  # plaintext only for the lead
    approved: bool

    def __repr__(self) -> str:
        return f"<RevealRequest {self.req_id} by {self.requester} for field {self.field!r}>"


def _lead(v: "Vault") -> "PublicIdentity":
    lead = next((u for u in v.users() if v.schema.roles[u.role].manage
                 and u.public.ed25519 == v._lead_vk), None)
    if lead is None:
        raise AccessDenied("this vault has no enrolled security lead to approve requests")
    return lead.public


def request(v: "Vault", record_id: str, field: str, reason: str) -> str:
    if v.user is None or v._identity is None:
        raise AccessDenied("break-glass requests are made with a user identity")
    f = v.schema.field(field)
    if f.cls in v._current:
        raise ValidationError(f"your role already holds field {field!r}; no break-glass needed")
    if not isinstance(reason, str) or len(reason.strip()) < 5:
        raise ValidationError("a break-glass request needs a reason (at least 5 characters)")
    rid = v._rid(record_id)
    store = v._s()
    req_id = C.random_bytes(8).hex()
    lead = _lead(v)
    # padded (kind Q): the blob's length tells only the reason's 32-byte bucket
    sealed_reason = N.seal_note(F.KIND_REASON_PADDED, lead.x25519, N.recipient_id(lead.raw),
                                v._vid + bytes.fromhex(req_id) + E.pad(reason.encode("utf-8")))
    with store.tx() as conn:
        if not store.record_exists(conn, rid):
            raise NotFound(f"no record {record_id}")
        conn.execute(reveals.insert().values(req_id=req_id, requester=v.user.user_id, record_id=rid,
                                             field=field, reason=sealed_reason, grant=None,
                                             created=int(time.time())))
    return req_id


def pending(v: "Vault") -> list[RevealRequest]:
    """All requests; reasons are decrypted for the lead only."""
    store = v._s()
    with store.tx(write=False) as conn:
        rows = conn.execute(select(reveals).order_by(reveals.c.created, reveals.c.req_id)).all()
    lead = v._identity if (v.role.manage and v._identity is not None) else None
    out = []
    for r in map(_row, rows):
        reason = None
        if lead is not None:
            try:
                kind, plain = N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), r.reason, lead.unseal)
                if plain[:16] == v._vid and plain[16:24] == bytes.fromhex(r.req_id):
                    body = E.unpad(plain[24:]) if kind == F.KIND_REASON_PADDED else plain[24:]
                    reason = body.decode("utf-8")
            except (C.AuthFailure, E.Malformed, UnicodeDecodeError):
                reason = None
        out.append(RevealRequest(r.req_id, r.requester, r.record_id.hex(), r.field, reason, r.grant is not None))
    return out


def forget(conn: Any, *, record_id: bytes | None = None, requester: str | None = None) -> int:
    """Delete every request (and its grant, if approved) about one record or by one user, in
    the caller's transaction; returns how many. A shred and a revocation call it: a grant is
    the value sealed to an identity key that never rotates, and a request row names the
    record, so either left behind would outlive the shred or the revocation."""
    if (record_id is None) == (requester is None):
        raise ValueError("forget() takes a record id or a requester")
    where = reveals.c.record_id == record_id if record_id is not None else reveals.c.requester == requester
    return int(conn.execute(delete(reveals).where(where)).rowcount)


def _grant_message(vault_id: bytes, req_id: str, requester: str, rid: bytes, field: str,
                   expires: int, sealed: bytes, head: bytes = b"") -> bytes:
    """What the lead signs. ``head`` is the grant's blob header (empty for a headerless grant
    of before 2026-11-26)."""
    return (LABEL + head + vault_id + bytes.fromhex(req_id) + bytes.fromhex(requester) + rid
            + field.encode("ascii") + b"\x00" + struct.pack(">Q", expires) + sealed)


def _parse_grant(grant: bytes) -> tuple[bytes, int, bytes, bytes]:
    """(header, expires, signature, sealed box) of a grant; header b"" for the headerless form."""
    head = b""
    if grant[:1] == bytes([F.FORMAT_VERSION]) and grant[1:2] in (F.KIND_GRANT_PADDED, F.KIND_GRANT):
        head, grant = grant[:N.HEADER_LEN], grant[N.HEADER_LEN:]
    elif grant[:1] != b"\x00":  # headerless grants begin with a u64 expiry (high byte 0)
        raise IntegrityError("break-glass grant has an unknown format version")
    if len(grant) < 72 + C.SEALED_OVERHEAD:
        raise IntegrityError("break-glass grant is malformed")
    return head, struct.unpack(">Q", grant[:8])[0], grant[8:72], grant[72:]


def subject(v: "Vault", req_id: str) -> tuple[str, str]:
    """(record id hex, field) a request is about, for its audit entries; NotFound if none."""
    with v._s().tx(write=False) as conn:
        r = conn.execute(select(reveals).where(reveals.c.req_id == req_id)).first()
    if r is None:
        raise NotFound(f"no break-glass request {req_id}")
    r = _row(r)
    return r.record_id.hex(), r.field


def approve(v: "Vault", req_id: str, ttl_seconds: int = 24 * 3600) -> None:
    lead = v._need_lead("approving break-glass requests")
    store = v._s()
    with store.tx(write=False) as conn:
        r = conn.execute(select(reveals).where(reveals.c.req_id == req_id)).first()
    if r is None:
        raise NotFound(f"no break-glass request {req_id}")
    r = _row(r)
    requester = next((u for u in v.users() if u.user_id == r.requester), None)
    if requester is None:
        raise NotFound("the requester is no longer enrolled")
    rid = r.record_id
    # unaudited here: the caller's reveal_approve entry, already committed, names the
    # record and field (an ordinary "read" would book the requester's access to the lead)
    rec = v._get_impl(rid.hex(), [r.field])
    expires = int(time.time()) + int(ttl_seconds)
    # padded (kind V): the grant's length tells only the JSON's 32-byte bucket, as a cell's does
    payload = E.pad(json.dumps({"value": _jsonable(rec.get(r.field))}).encode("utf-8"))
    head = N.header(F.KIND_GRANT_PADDED, bytes.fromhex(requester.user_id))
    sealed = C.seal_to(requester.public.x25519, head + v._vid + bytes.fromhex(req_id) + payload)
    sig = lead.sign(_grant_message(v._vid, req_id, requester.user_id, rid, r.field, expires, sealed, head))
    grant = head + struct.pack(">Q", expires) + sig + sealed
    with store.tx() as conn:
        conn.execute(update(reveals).where(reveals.c.req_id == req_id).values(grant=grant))


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def reveal(v: "Vault", req_id: str, now: float | None = None) -> tuple[Any, Exception | None, tuple[str, str]]:
    """Take the approved grant (its row is deleted, expired or not) and open it.

    Returns ``(value, None, about)``, or ``(None, error, about)`` when the grant was taken but cannot be
    shown (expired, forged, sealed to someone else): the caller commits the deletion with
    its audit entry and then raises the error. A missing or unapproved request raises
    here, before anything is deleted. Runs inside the caller's transaction, if any."""
    if v.user is None or v._identity is None or v._lead_vk is None:
        raise AccessDenied("break-glass reveals need the requester's identity")
    store = v._s()
    with store.tx() as conn:
        found = conn.execute(select(reveals).where(reveals.c.req_id == req_id)).first()
        if found is None or found.requester != v.user.user_id:
            raise NotFound(f"no break-glass request {req_id} of yours")
        r = _row(found)  # before the delete: a malformed row is refused, not taken
        if r.grant is None:
            raise AccessDenied("this request has not been approved (yet)")
        conn.execute(delete(reveals).where(reveals.c.req_id == req_id))
    about = (r.record_id.hex(), r.field)  # (record id, field): what the entry names
    try:
        return _open_grant(v, r, req_id, now), None, about
    except (AccessDenied, IntegrityError) as e:
        return None, e, about


def _open_grant(v: "Vault", r: _Row, req_id: str, now: float | None) -> Any:
    assert v.user is not None and v._identity is not None and v._lead_vk is not None
    head, expires, sig, sealed = _parse_grant(r.grant)
    try:
        C.ed25519_verify(v._lead_vk, _grant_message(v._vid, req_id, r.requester, r.record_id, r.field,
                                                    expires, sealed, head), sig)
    except C.AuthFailure:
        raise IntegrityError("break-glass grant is not signed by the security lead") from None
    if (time.time() if now is None else now) > expires:
        raise AccessDenied("this break-glass grant has expired")
    if head and head[2:] != bytes.fromhex(v.user.user_id):
        raise IntegrityError("break-glass grant is sealed to another identity")
    try:
        plain = v._identity.unseal(sealed)
    except C.AuthFailure:
        raise IntegrityError("break-glass grant cannot be opened with this identity") from None
    if plain[:len(head)] != head:
        raise IntegrityError("break-glass grant header does not match its sealed copy")
    plain = plain[len(head):]
    if plain[:16] != v._vid or plain[16:24] != bytes.fromhex(req_id):
        raise IntegrityError("break-glass grant belongs to another request")
    try:  # signed by the lead, but never let a parser quote the value in an error
        body = E.unpad(plain[24:]) if head[1:2] == F.KIND_GRANT_PADDED else plain[24:]
        value = json.loads(body)["value"]
        if v.schema.fields[r.field].type == "date" and value is not None:
            import datetime as dt
            value = dt.date.fromisoformat(value)
        return value
    except (ValueError, KeyError, TypeError, E.Malformed):
        pass  # raised below, outside the handler: its error (the __context__) can quote the value
    raise IntegrityError("break-glass grant holds a malformed value")
