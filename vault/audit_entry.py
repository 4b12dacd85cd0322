"""One audit log entry as stored and checked on its own: its fields, its hash in either
form, its signature, and the one shape an unsigned entry may have. The log as a whole
(the chain, verification, checkpoints, record states) is vault.audit's."""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import _crypto as C
from . import _format as F
from .envelope import _lp8

LABEL = b"dvault/v1/audit"
GENESIS = bytes(32)
UNSIGNED_ACTIONS = frozenset({"unlock_failed"})  # no key to sign with: chained, not signed
PASSPHRASE_ACTOR = bytes(64)  # the actor of a failed passphrase unlock: no one


def unsigned_shape_ok(e: Entry) -> bool:
    """Whether an unsigned entry is exactly what ``vault.opening.unlock_failed`` writes: no target,
    no reason, ``{"with": "identity"}`` by a (non-zero) public identity or ``{"with":
    "passphrase"}`` by the zero actor. Anyone who can write the table can chain an unsigned
    entry, so verify accepts no other shape: a forged "unlock_failed" naming fields and a
    record would otherwise book reads to a colleague who never made them."""
    if e.target != "" or e.reason != b"" or not isinstance(e.actor, bytes) or len(e.actor) != 64:
        return False
    if e.detail == '{"with":"passphrase"}':
        return e.actor == PASSPHRASE_ACTOR
    return e.detail == '{"with":"identity"}' and e.actor != PASSPHRASE_ACTOR

#: From this many entries on, verify checks signatures on every core (vault._parallel).
PARALLEL_VERIFY_MIN = 20_000


class Entry(NamedTuple):
    """One log row (a tuple: a million of them are built by every verify)."""

    seq: int
    prev: bytes
    at: int
    actor: bytes
    action: str
    target: str
    detail: str
    reason: bytes
    hash: bytes
    sig: bytes

    def __repr__(self) -> str:
        return f"<Entry {self.seq} {self.action} {self.target}>"


def entry_hash(seq: int, prev: bytes, at: int, actor: bytes, action: str, target: str, detail: str,
               reason: bytes, *, labelled: bool = False) -> bytes:
    """The entry's hash; ``labelled``: the form written from database schema version 8 on,
    whose first bytes (the form marker) are LABEL_AUDIT_ENTRY instead of LABEL."""
    return C.sha256((F.LABEL_AUDIT_ENTRY if labelled else LABEL) + struct.pack(">QQ", seq, at) + prev + actor
                    + _lp8(action.encode()) + _lp8(target.encode()) + struct.pack(">I", len(detail.encode()))
                    + detail.encode() + struct.pack(">I", len(reason)) + reason)


def signed_message(h: bytes, labelled: bool) -> bytes:
    """What an entry's actor signs: the hash under its own label (the bare hash in the
    older form, which no other signed message of the vault could be mistaken for only
    because it is a SHA-256 output; the label makes that hold by construction)."""
    return F.LABEL_AUDIT_SIG + h if labelled else h


def entry_form(e: Entry, first: bool = True) -> bool | None:
    """Which form the entry's hash has: True (labelled), False (older), None (neither:
    the entry was edited). ``first``: the form to try first (the previous entry's).

    Why the verifier can tell, and cannot be fooled: the form marker is inside what is
    hashed, so the hash names the form; passing a labelled entry off as an older one
    would need the actor's bare signature over another hash, and from the first labelled
    entry on, verify refuses any entry of the older form (:func:`verify`)."""
    for labelled in (first, not first):
        if C.mac_equal(entry_hash(e.seq, e.prev, e.at, e.actor, e.action, e.target, e.detail, e.reason,
                                  labelled=labelled), e.hash):
            return labelled
    return None


def entry_signed(e: Entry, labelled: bool) -> bool:
    """Whether the entry's signature verifies under its actor's key, in its form."""
    try:
        C.ed25519_verify(e.actor[32:], signed_message(e.hash, labelled), e.sig)
    except (C.AuthFailure, TypeError, ValueError):
        return False
    return True


def actor_id(actor: bytes) -> str:
    from .identity import PublicIdentity
    return PublicIdentity(actor[:32], actor[32:]).user_id if len(actor) == 64 else "unknown"
