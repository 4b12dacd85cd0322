"""Issuing and resolving a record's pseudonyms (badge, travel, audit, ...).

:class:`Pseudonyms` owns ``dv_pseudonyms``: issuing a pseudonym stores the record's id
sealed under the purpose key (what :meth:`Pseudonyms.resolve_id` needs), keyed by the
pseudonym's tag. The purpose keys are vault.access's; the format is vault.pseudonym's.
The audit pseudonym (:meth:`Pseudonyms.audit_name`) is what the log names a record by.
"""

from __future__ import annotations

from typing import Any

from . import _crypto as C
from . import _format as F
from . import index as I
from . import pseudonym as P
from .access import Access
from .errors import AccessDenied, IntegrityError, NotFound, ValidationError
from .session import Session


def record_id_bytes(record_id: str) -> bytes:
    """A record id as given by a caller (32 hex characters), or ValidationError."""
    if not isinstance(record_id, str) or len(record_id) != 2 * F.ID_LEN:
        raise ValidationError("malformed record id (expected 32 hex characters)")
    try:
        return bytes.fromhex(record_id)
    except ValueError:
        raise ValidationError("malformed record id (expected 32 hex characters)") from None


class Pseudonyms:
    """Issue, parse and resolve pseudonyms with the opener's purpose keys."""

    def __init__(self, ses: Session, access: Access) -> None:
        self.ses = ses
        self.access = access
        self.prefixes = {P.purpose_prefix(p): p for p in ses.schema.purposes}
        self.issued: set[tuple[str, bytes]] = set()  # pseudonyms known to be stored

    def issue(self, record_id: str, purpose: str, *, known_live: bool = False) -> str:
        """The record's stable pseudonym for one purpose, e.g. ``BA-7KQ4-M2XP-9AW``; issuing
        one stores what :meth:`resolve_id` needs. Issued earlier in this session, it costs no
        write; the record's existence is still checked (another handle may have shredded it)
        unless the caller has just read it (``known_live``)."""
        store = self.ses.store()
        rid = record_id_bytes(record_id)
        keys = self.purpose_keys(purpose)
        value = keys.value(rid)
        tag = keys.tag(value)
        text = P.format(value, P.purpose_prefix(purpose))
        if (purpose, tag) in self.issued:  # issued earlier in this session: nothing to write
            if not known_live:
                with store.tx(write=False) as conn:
                    if not store.record_exists(conn, rid):
                        raise NotFound(f"no record {record_id}")
            return text
        with store.tx() as conn:
            if not store.record_exists(conn, rid, hold=True):  # a shred committing meanwhile waits for us
                raise NotFound(f"no record {record_id}")
            # stored already (this session's earlier transaction rolled back, another handle's
            # issue): the insert does nothing (ON CONFLICT), one statement instead of a read first
            store.put_pseudonym(conn, purpose, tag, keys.seal_ref(tag, rid))
        if not store.in_transaction:  # inside a caller's transaction it is stored only if that one commits
            self.issued.add((purpose, tag))
        return text

    def audit_name(self, record_id: str) -> str:
        """The record's audit pseudonym (the log's target: never its id or a name); issued on
        first use; "" without the audit purpose key or for a record that is gone."""
        if "audit" not in self.access.purposes:
            return ""
        try:  # callers name a record they have just read (or log an attempt on one)
            return self.issue(record_id, "audit", known_live=True)
        except NotFound:
            return ""

    def forget(self, conn: Any, rid: bytes) -> None:
        """In a shred's transaction: delete every pseudonym of the record (all purposes)."""
        store = self.ses.store()
        for keys in self.access.purposes.values():
            tag = keys.tag(keys.value(rid))
            store.delete_pseudonym(conn, keys.purpose, tag)
            self.issued.discard((keys.purpose, tag))

    def purpose_keys(self, purpose: str) -> I.PurposeKeys:
        known = self.ses.schema.purposes
        if not isinstance(purpose, str) or purpose not in known:
            # named only when it is short printable text: a caller's mistake may be a record's
            # value (a dict of fields) or megabytes, neither of which belongs in a message
            named = f" {purpose!r}" if isinstance(purpose, str) and len(purpose) <= 40 and purpose.isprintable() else ""
            raise ValidationError(f"unknown purpose{named} (known: {', '.join(known)})")
        keys = self.access.purposes.get(purpose)
        if keys is None:
            raise AccessDenied(f"no key for purpose {purpose!r}")
        return keys

    def parse(self, pseudonym: str) -> tuple[str, int]:
        """(purpose, value) of a pseudonym as typed: its check character is verified."""
        if not isinstance(pseudonym, str):
            raise P.PseudonymError("a pseudonym is text")
        head = pseudonym.strip()[:2].upper()
        purpose = self.prefixes.get(head)
        if purpose is None:
            raise P.PseudonymError(f"unknown pseudonym prefix (this vault uses {', '.join(sorted(self.prefixes))})")
        return purpose, P.parse(pseudonym, head)

    def resolve_id(self, purpose: str, value: int) -> bytes:
        keys = self.purpose_keys(purpose)
        tag = keys.tag(value)
        store = self.ses.store()
        with store.tx(write=False) as conn:
            ref = store.get_pseudonym(conn, purpose, tag)
        if ref is None:
            raise NotFound("no record has this pseudonym")
        try:
            rid = keys.open_ref(tag, ref)
        except C.AuthFailure:
            raise IntegrityError(f"{purpose} pseudonym entry failed authentication") from None
        if keys.value(rid) != value:
            raise IntegrityError(f"{purpose} pseudonym entry points at the wrong record")
        return rid

    def audit_target_of(self, pseudonym: str) -> str:
        """The audit pseudonym (the log's target) of the record any pseudonym names. An
        audit pseudonym is taken as it is (spelled canonically), so the entries of a shredded
        record, whose pseudonyms no longer resolve, can still be found by it."""
        purpose, value = self.parse(pseudonym)
        if purpose == "audit":
            return P.format(value, P.purpose_prefix(purpose))
        rid = self.resolve_id(purpose, value)
        if "audit" not in self.access.purposes:  # without it "" would filter nothing out
            raise AccessDenied("finding a record's entries needs the audit purpose key; give its audit pseudonym")
        target = self.audit_name(rid.hex())
        if not target:
            raise NotFound("no record has this pseudonym")
        return target
