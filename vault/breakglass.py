"""Break-glass: a one-time, time-limited reveal of one restricted field to one user.

A staff member asks, with a reason, to see one field of one record outside their role
(say a participant's legal name for a hospital). The reason is sealed to the security
lead, since reasons often name people. The requester signs what they ask for (the vault,
the request, the record, the field and the sealed reason), so that a database writer
cannot point the lead's approval at another person or field. The lead is shown who the
record is (its badge name and audit pseudonym, decrypted on the lead's side), approves
that explicit (request, record, field), and seals *that field's value* (not the class
key, not even the record's data key: least privilege) to the requester's X25519 key,
with an expiry, and signs the grant. The requester's client checks the signature and the
expiry, shows the value once and deletes the grant.

Honest limits: expiry and one-time use are enforced by an honest client; a modified
client can keep the value it was shown. What it cannot do is reveal anything else.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import delete, select, update

from . import _crypto as C
from . import _format as F
from . import envelope as E
from . import notes as N
from . import pseudonym as P
from .access import Access
from .breakglass_rows import forget, reveals
from .canaries import Canaries
from .envelope import _lp8
from .errors import AccessDenied, IntegrityError, NotFound, ValidationError, utf8
from .journal import Journal
from .pseudonyms import Pseudonyms, record_id_bytes
from .records import Records
from .store import _blob
from .users import is_hex_id

if TYPE_CHECKING:
    from .identity import PublicIdentity
    from .users import User

__all__ = ["Desk", "RevealRequest", "forget", "reveals", "request", "pending", "checked", "approve", "reveal",
           "audited_request", "audited_pending", "audited_approve", "audited_reveal"]


class Desk(NamedTuple):
    """What break-glass needs of an open vault: the keys and roster, the records (a badge
    name for the lead's view), the pseudonyms (a request named by one), the log and the
    canaries (a request, approval or reveal of a decoy is a touch of it)."""

    access: Access
    records: Records
    pseudonyms: Pseudonyms
    journal: Journal
    canaries: Canaries


LABEL = b"dvault/v1/break-glass"
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,62}")  # a schema field name (ASCII: it is signed as such)
# The columns every reader takes; ``sig`` only exists from database schema version 8 on (a
# staff member's open stops an older vault at 6), so it is read apart, by the lead.
_COLUMNS = [reveals.c.req_id, reveals.c.requester, reveals.c.record_id, reveals.c.field, reveals.c.reason,
            reveals.c.grant, reveals.c.created]
SIGNED_FROM = 8  # the database schema version from which requests carry their requester's signature


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
    are parsed as hex and ASCII to build the signed messages. BLOB columns go through
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
    """One request as its viewer may see it. The lead sees every request, its record id,
    who it is (``record``: its audit pseudonym; ``badge_name``), the reason, ``problem``
    (why an approval would be refused) and ``flags`` (reasons to look twice). Anyone else
    sees only their own requests, the record as its audit pseudonym if they hold that
    purpose's key (else None), and no record id."""

    req_id: str
    requester: str
    record_id: str | None
    field: str
    reason: str | None  # plaintext only for the lead
    approved: bool
    record: str | None = None
    badge_name: str | None = None
    requester_name: str | None = None
    problem: str | None = None
    flags: tuple[str, ...] = _field(default=())

    def __repr__(self) -> str:
        return f"<RevealRequest {self.req_id} by {self.requester} for field {self.field!r}>"


def _lead(v: Desk) -> PublicIdentity:
    lead = next((u for u in v.access.users() if v.access.ses.schema.roles[u.role].manage
                 and u.public.ed25519 == v.access.lead_vk), None)
    if lead is None:
        raise AccessDenied("this vault has no enrolled security lead to approve requests")
    return lead.public


def request_message(vault_id: bytes, req_id: str, requester: str, rid: bytes, field: str, reason: bytes) -> bytes:
    """What a requester signs (docs/format.md 8b): the vault, the request, who asks, the
    record, the field and the sealed reason's SHA-256, so that none of them can be edited
    in the database after the fact."""
    return (F.LABEL_REVEAL_REQUEST + vault_id + bytes.fromhex(req_id) + bytes.fromhex(requester) + rid
            + _lp8(field.encode("ascii")) + C.sha256(reason))


def request(v: Desk, record_id: str, field: str, reason: str) -> str:
    user, ident = v.access.ses.user, v.access.ses.identity
    if user is None or ident is None:
        raise AccessDenied("break-glass requests are made with a user identity")
    f = v.access.ses.schema.field(field)
    if f.cls in v.access.current:
        raise ValidationError(f"your role already holds field {field!r}; no break-glass needed")
    if not isinstance(reason, str) or len(reason.strip()) < 5:
        raise ValidationError("a break-glass request needs a reason (at least 5 characters)")
    rid = record_id_bytes(record_id)
    store = v.access.ses.store()
    req_id = C.random_bytes(8).hex()
    lead = _lead(v)
    # padded (kind Q): the blob's length tells only the reason's 32-byte bucket
    sealed_reason = N.seal_note(F.KIND_REASON_PADDED, lead.x25519, N.recipient_id(lead.raw),
                                v.access.ses.vid + bytes.fromhex(req_id) + E.pad(reason.encode("utf-8")))
    sig = ident.sign(request_message(v.access.ses.vid, req_id, user.user_id, rid, field, sealed_reason))
    with store.tx() as conn:
        v.access.check_enrolled(conn)  # a revoked requester's handle left open asks nothing
        if v.access.db_version(conn) < SIGNED_FROM:
            raise AccessDenied("this vault must be opened once by the security lead with this release before "
                               "break-glass requests can be made")
        if not store.record_exists(conn, rid, hold=True):  # a shred under way waits for us, then takes it too
            raise NotFound(f"no record {record_id}")
        conn.execute(reveals.insert().values(req_id=req_id, requester=user.user_id, record_id=rid,
                                             field=field, reason=sealed_reason, grant=None,
                                             created=int(time.time()), sig=sig))
    return req_id


def pending(v: Desk) -> list[RevealRequest]:
    """Requests as the caller may see them (see :class:`RevealRequest`): all of them, fully,
    for the lead (and a recovery-passphrase opener, without the reasons, which are sealed
    to the lead); only their own, without record ids, for anyone else. A malformed row (a
    database writer's) is left out, and the lead told (``Vault.warnings``): it must not hide
    every other request."""
    from .breakglass_watch import changes
    store = v.access.ses.store()
    query = select(*_COLUMNS).order_by(reveals.c.created, reveals.c.req_id)
    if not v.access.ses.role.manage:
        if v.access.ses.user is None:
            return []
        query = query.where(reveals.c.requester == v.access.ses.user.user_id)
    with store.tx(write=False) as conn:
        rows = _rows(v, conn.execute(query).all())
        sigs = _signatures(conn) if v.access.ses.role.manage and v.access.db_version(conn) >= SIGNED_FROM else {}
    if not v.access.ses.role.manage:
        return [RevealRequest(r.req_id, r.requester, None, r.field, None, r.grant is not None,
                              record=_label(v, r.record_id)) for r in rows]
    users = {u.user_id: u for u in v.access.users()}
    audit_names = "audit" in v.access.purposes
    watched = changes(v.access, [(r.req_id, _label(v, r.record_id) or "" if audit_names else "", r.requester, r.field)
                                 for r in rows])
    return [_lead_view(v, r, sigs.get(r.req_id), users.get(r.requester), watched.get(r.req_id, []))
            for r in rows]


def _rows(v: Desk, found: Sequence[Any]) -> list[_Row]:
    """The well-formed rows of ``found``; one warning for the lead if any is not."""
    out, bad = [], 0
    for r in found:
        try:
            out.append(_row(r))
        except IntegrityError:
            bad += 1
    if bad and v.access.ses.role.manage:
        warning = (f"{bad} break-glass request row(s) are malformed (edited in the database): left out of the list; "
                   "they can be deleted with the lead's database login")
        if warning not in v.access.ses.warnings:
            v.access.ses.warnings.append(warning)
    return out


def _signatures(conn: Any) -> dict[str, bytes | None]:
    """Request id -> the requester's signature (None: none; a non-bytes value as b"")."""
    out: dict[str, bytes | None] = {}
    for req_id, sig in conn.execute(select(reveals.c.req_id, reveals.c.sig)).all():
        try:
            out[str(req_id)] = None if sig is None else _blob(sig)
        except IntegrityError:
            out[str(req_id)] = b""
    return out


def _lead_view(v: Desk, r: _Row, sig: bytes | None, requester: User | None,
               changed: list[str] | None = None) -> RevealRequest:
    """The lead's view of one request: who the record is, the reason, what is wrong, and
    (``changed``, vault.breakglass_watch) recent changes of what identifies the record."""
    label = _label(v, r.record_id)
    problem = _problem(v, r, sig, requester)
    badge = None
    if "badge_name" in v.access.ses.schema.fields and v.access.ses.schema.fields["badge_name"].cls in v.access.current:
        try:
            badge = v.records.get(r.record_id.hex(), ["badge_name"]).get("badge_name")
        except NotFound:
            problem = problem or "no such record (shredded, or the row was edited)"
    reason = _open_reason(v, r)
    flags = (_reason_flags(v, r.record_id, reason) if reason else ()) + tuple(changed or ())
    return RevealRequest(r.req_id, r.requester, r.record_id.hex(), r.field, reason, r.grant is not None,
                         record=label, badge_name=badge, requester_name=None if requester is None else requester.name,
                         problem=problem, flags=flags)


def _problem(v: Desk, r: _Row, sig: bytes | None, requester: User | None) -> str | None:
    try:
        _check_signed(v, r, sig, requester)
    except (AccessDenied, IntegrityError, NotFound) as e:
        return str(e)
    return None


def _open_reason(v: Desk, r: _Row) -> str | None:
    if v.access.ses.identity is None:
        return None
    try:
        kind, plain = N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), r.reason, v.access.ses.identity.unseal)
        if plain[:16] == v.access.ses.vid and plain[16:24] == bytes.fromhex(r.req_id):
            body = E.unpad(plain[24:]) if kind == F.KIND_REASON_PADDED else plain[24:]
            return body.decode("utf-8")
    except (C.AuthFailure, E.Malformed, UnicodeDecodeError):
        pass
    return None


def _label(v: Desk, rid: bytes) -> str | None:
    """The record as the viewer may name it: its audit pseudonym (a pure computation, nothing
    is issued), else, for the lead, its pseudonym of the schema's first purpose."""
    purpose = "audit" if "audit" in v.access.purposes else None
    if purpose is None and v.access.ses.role.manage:
        purpose = next((p for p in v.access.ses.schema.purposes if p in v.access.purposes), None)
    if purpose is None:
        return None
    return P.format(v.access.purposes[purpose].value(rid), P.purpose_prefix(purpose))


# A pseudonym as people write it: two letters, then 4 + 4 + 3 characters, each group after an
# optional space or dash. Taken as one when a separator follows the letters or a digit is in
# it: a 13-letter word ("authorisation") has the shape too.
_SEP = r"[\s\-\u2010-\u2015\u2212]?"
_PSEUDONYM_LIKE = re.compile(rf"(?<![0-9A-Za-z])([A-Za-z]{{2}})({_SEP})([0-9A-Za-z]{{4}}){_SEP}([0-9A-Za-z]{{4}})"
                             rf"{_SEP}([0-9A-Za-z]{{3}})(?![0-9A-Za-z])")


def _reason_flags(v: Desk, rid: bytes, reason: str) -> tuple[str, ...]:
    """Pseudonyms (of any purpose of this vault) that a reason names and that are not the
    requested record's: "hospital admission for BA-..." on a request for someone else's
    legal name is how a requester would get the lead to approve the wrong person."""
    prefixes = {P.purpose_prefix(p): p for p in v.access.ses.schema.purposes}
    out = []
    for m in _PSEUDONYM_LIKE.finditer(reason):
        prefix = m.group(1).upper()
        purpose = prefixes.get(prefix)
        if purpose is None or not (m.group(2) or any(c.isdigit() for c in m.group(0))):
            continue
        try:
            value = P.parse(m.group(0), prefix)
        except P.PseudonymError:
            out.append(f"the reason names a {purpose} pseudonym that does not read (mistyped?): check whom it means")
            continue
        keys = v.access.purposes.get(purpose)
        if keys is None or keys.value(rid) != value:
            out.append(f"the reason names {P.format(value, prefix)}, which is not the requested record's "
                       f"{purpose} pseudonym")
    return tuple(out)


def known_form(req_id: object) -> str:
    """``req_id`` if it has the form request ids have (16 lower-case hex digits, as
    :func:`request` makes them); else NotFound, without repeating what was typed: an id
    is echoed in errors, and a typed one may hold a newline or a terminal escape that
    would forge a second line ("dvault: ok: approved")."""
    if not is_hex_id(req_id):
        raise NotFound("no break-glass request with that id (a request id is 16 hex digits, as dvault reveal "
                       "request printed it)")
    return str(req_id)


def _load(v: Desk, req_id: str) -> tuple[_Row, bytes | None]:
    """The request's row, checked, and its requester's signature; NotFound if none."""
    known_form(req_id)
    with v.access.ses.store().tx(write=False) as conn:
        signed = v.access.db_version(conn) >= SIGNED_FROM  # (a vault this opener could not take to 8 has no column)
        r = conn.execute(select(*_COLUMNS, *([reveals.c.sig] if signed else []))
                         .where(reveals.c.req_id == req_id)).first()
    if r is None:
        raise NotFound(f"no break-glass request {req_id}")
    try:
        sig = None if not signed or r.sig is None else _blob(r.sig)
    except IntegrityError:
        sig = b""
    return _row(r), sig


def _check_signed(v: Desk, r: _Row, sig: bytes | None, requester: User | None) -> None:
    """That the row is what its (enrolled) requester signed: NotFound without an enrolled
    requester, AccessDenied without a signature (a request of an older release), and
    IntegrityError for a signature that does not cover the row (edited in the database)."""
    if requester is None:
        raise NotFound("the requester is no longer enrolled")
    if not sig:
        raise AccessDenied(f"request {r.req_id} carries no signature of its requester (made by an older release, "
                           "or the signature was removed): ask them to request again")
    try:
        C.ed25519_verify(requester.public.ed25519, request_message(v.access.ses.vid, r.req_id, r.requester, r.record_id,
                                                                   r.field, r.reason), sig)
    except C.AuthFailure:
        raise IntegrityError(f"request {r.req_id} is not what its requester signed (its record, field, reason or "
                             "requester was edited in the database): nothing approved; ask the requester to "
                             "request again") from None


def checked(v: Desk, req_id: str, record: str, field: str) -> tuple[_Row, User]:
    """The request, after checking that it is what its requester signed and that it is
    about the ``record`` (its id, or any pseudonym of it the caller holds, as the lead saw
    it) and ``field`` the lead confirmed; ValidationError on a mismatch."""
    r, sig = _load(v, req_id)
    requester = next((u for u in v.access.users() if u.user_id == r.requester), None)
    _check_signed(v, r, sig, requester)
    assert requester is not None
    if not isinstance(field, str) or field != r.field:
        raise ValidationError(f"request {req_id} is for another field than the one you confirmed: nothing approved; "
                              "list it again (dvault requests)")
    if not _names(v, r.record_id, record):
        raise ValidationError(f"request {req_id} is about another record than the one you confirmed: nothing "
                              "approved; list it again (dvault requests)")
    return r, requester


def _names(v: Desk, rid: bytes, record: Any) -> bool:
    """Whether ``record`` (a record id in hex, or a pseudonym) names the record ``rid``."""
    if not isinstance(record, str):
        return False
    if re.fullmatch(r"[0-9a-f]{32}", record):
        return C.mac_equal(bytes.fromhex(record), rid)
    try:
        purpose, value = v.pseudonyms.parse(record)
    except P.PseudonymError:
        return False
    keys = v.access.purposes.get(purpose)
    return keys is not None and keys.value(rid) == value


def _grant_message(vault_id: bytes, req_id: str, requester: str, rid: bytes, field: str,
                   expires: int, sealed: bytes, head: bytes = b"") -> bytes:
    """What the lead signs. ``head`` is the grant's blob header (empty for a headerless grant,
    docs/format.md 8b, which is still read)."""
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


def approve(v: Desk, req_id: str, ttl_seconds: int, record: str, field: str) -> None:
    """Seal the request's value to its requester, once :func:`checked` (signed by the
    requester, about the ``record`` and ``field`` the lead confirmed)."""
    lead = v.access.need_lead("approving break-glass requests")
    r, requester = checked(v, req_id, record, field)
    rid = r.record_id
    # unaudited here: the caller's reveal_approve entry, already committed, names the
    # record and field (an ordinary "read" would book the requester's access to the lead)
    rec = v.records.get(rid.hex(), [r.field])
    expires = int(time.time()) + int(ttl_seconds)
    # padded (kind V): the grant's length tells only the JSON's 32-byte bucket, as a cell's does
    payload = E.pad(json.dumps({"value": _jsonable(rec.get(r.field))}).encode("utf-8"))
    head = N.header(F.KIND_GRANT_PADDED, bytes.fromhex(requester.user_id))
    sealed = C.seal_to(requester.public.x25519, head + v.access.ses.vid + bytes.fromhex(req_id) + payload)
    sig = lead.sign(_grant_message(v.access.ses.vid, req_id, requester.user_id, rid, r.field, expires, sealed, head))
    grant = head + struct.pack(">Q", expires) + sig + sealed
    with v.access.ses.store().tx() as conn:
        done = conn.execute(update(reveals).where(reveals.c.req_id == req_id).values(grant=grant)).rowcount
    if done != 1:  # a shred of the record, or the requester's revocation, took the request meanwhile
        raise NotFound("the request was withdrawn meanwhile (its record shredded or its requester revoked): "
                       "nothing granted")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def reveal(v: Desk, req_id: str, now: float | None = None) -> tuple[Any, Exception | None, tuple[str, str]]:
    """Take the approved grant (its row is deleted, expired or not) and open it.

    Returns ``(value, None, about)``, or ``(None, error, about)`` when the grant was taken but cannot be
    shown (expired, forged, sealed to someone else): the caller commits the deletion with
    its audit entry and then raises the error. A missing or unapproved request raises
    here, before anything is deleted. Runs inside the caller's transaction, if any."""
    if v.access.ses.user is None or v.access.ses.identity is None or v.access.lead_vk is None:
        raise AccessDenied("break-glass reveals need the requester's identity")
    known_form(req_id)
    store = v.access.ses.store()
    with store.tx() as conn:
        found = conn.execute(select(*_COLUMNS).where(reveals.c.req_id == req_id)).first()
        if found is None or found.requester != v.access.ses.user.user_id:
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


def _open_grant(v: Desk, r: _Row, req_id: str, now: float | None) -> Any:
    assert v.access.ses.user is not None and v.access.ses.identity is not None and v.access.lead_vk is not None
    assert r.grant is not None  # reveal() takes only approved requests
    head, expires, sig, sealed = _parse_grant(r.grant)
    try:
        C.ed25519_verify(v.access.lead_vk, _grant_message(v.access.ses.vid, req_id, r.requester, r.record_id, r.field,
                                                    expires, sealed, head), sig)
    except C.AuthFailure:
        raise IntegrityError("break-glass grant is not signed by the security lead") from None
    if (time.time() if now is None else now) > expires:
        raise AccessDenied("this break-glass grant has expired")
    if head and head[2:] != bytes.fromhex(v.access.ses.user.user_id):
        raise IntegrityError("break-glass grant is sealed to another identity")
    try:
        plain = v.access.ses.identity.unseal(sealed)
    except C.AuthFailure:
        raise IntegrityError("break-glass grant cannot be opened with this identity") from None
    if plain[:len(head)] != head:
        raise IntegrityError("break-glass grant header does not match its sealed copy")
    plain = plain[len(head):]
    if plain[:16] != v.access.ses.vid or plain[16:24] != bytes.fromhex(req_id):
        raise IntegrityError("break-glass grant belongs to another request")
    try:  # signed by the lead, but never let a parser quote the value in an error
        body = E.unpad(plain[24:]) if head[1:2] == F.KIND_GRANT_PADDED else plain[24:]
        value = json.loads(body)["value"]
        if v.access.ses.schema.fields[r.field].type == "date" and value is not None:
            import datetime as dt
            value = dt.date.fromisoformat(value)
        return value
    except (ValueError, KeyError, TypeError, E.Malformed):
        pass  # raised below, outside the handler: its error (the __context__) can quote the value
    raise IntegrityError("break-glass grant holds a malformed value")


# -- the audited calls (vault.Vault's break-glass methods) ----------------------------------------
def audited_request(d: Desk, record_id: str, field: str, reason: str) -> str:
    """:func:`request`, its ``reveal_request`` entry (with the reason, sealed to the lead)
    committed with the request row."""
    if isinstance(reason, str):  # before it reaches the log's encoder, whose error would quote it
        utf8(reason, "a reason must be valid UTF-8 text")
    j = d.journal
    saved = j.auditor.reason
    j.auditor.reason = reason if isinstance(reason, str) and reason.strip() else saved

    def describe(req: str) -> tuple[str, dict[str, Any]]:
        return j.target(record_id), {"field": field, "request": req}
    try:  # the request row stands or falls with its entry
        req = j.guard("reveal_request", lambda: j.around(
            "reveal_request", lambda: request(d, record_id, field, reason), describe))
    finally:
        j.auditor.reason = saved
    d.canaries.alarm_if_canary([record_id], "reveal_request")
    return req


def audited_pending(d: Desk) -> list[RevealRequest]:
    """:func:`pending`, logged as ``reveal_list`` (the lead's listing decrypts badge names:
    the entry names the records shown)."""
    j = d.journal

    def describe(out: list[RevealRequest]) -> tuple[str, dict[str, Any]]:
        shown = sorted({r.record for r in out if r.badge_name is not None and r.record})
        return "", {"requests": len(out), **({"fields": ["badge_name"], "targets": shown} if shown else {})}
    out = j.guard("reveal_list", lambda: j.around("reveal_list", lambda: pending(d), describe))
    if d.access.ses.role.manage:
        shown = [r.record_id for r in out if r.badge_name is not None and r.record_id]
        d.canaries.alarm_if_canary(shown, "reveal_list")
    return out


def audited_approve(d: Desk, req_id: str, ttl_seconds: int, record: str, field: str) -> None:
    """:func:`approve` after :func:`checked`; the ``reveal_approve`` entry names the record
    (the lead's client decrypts the value to seal it: the entry is that access), and a
    refused attempt is logged too."""
    j = d.journal
    j.guard("reveal_approve", lambda: d.access.need_lead("approving break-glass requests"))
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 0 < ttl_seconds <= 30 * 86400:
        raise ValidationError("ttl_seconds must be a whole number of seconds, 1 to 30 days")
    # as reveal() does: a malformed id (a lone surrogate, a newline, not a str) is refused
    # before its text reaches the database driver or the attempt's audit entry
    req_id = known_form(req_id)
    detail: dict[str, Any] = {"request": req_id, "ttl_seconds": ttl_seconds}
    try:
        r, _ = checked(d, req_id, record, field)
    except (NotFound, ValidationError, IntegrityError, AccessDenied) as e:  # an attempt is logged too
        j.record("reveal_approve", "", {**detail, "refused": type(e).__name__})
        raise
    rid = r.record_id.hex()
    j.record("reveal_approve", j.target(rid), {**detail, "field": r.field})
    d.canaries.alarm_if_canary([rid], "reveal_approve")
    j.guard("reveal_approve", lambda: approve(d, req_id, ttl_seconds, record, field))


def audited_reveal(d: Desk, req_id: str) -> Any:
    """:func:`reveal`, the grant's deletion committed with the ``reveal`` entry: if the entry
    cannot be written the grant stays, unshown; a grant taken but refused (expired, forged)
    is gone, its entry says so, then the error is raised."""
    j = d.journal

    def describe(out: tuple[Any, Exception | None, tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        return j.target(out[2][0]), {"request": str(req_id), "field": out[2][1], "shown": out[1] is None}
    value, err, about = j.guard("reveal", lambda: j.around("reveal", lambda: reveal(d, req_id), describe))
    d.canaries.alarm_if_canary([about[0]], "reveal")  # break-glass would show a decoy's legal name
    if err is not None:
        raise err
    return value
