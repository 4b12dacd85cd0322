"""Which audit entries to believe: each entry's own check, the lead's quarantine decisions
and the order of the writers' clocks (docs/format.md 13a).

Anyone who can append to the log (every client, and a database login holding the append
lock) can chain an entry that names a colleague as its actor; only its signature tells.
So a reader of the log (``audit show``, ``--actor``, ``--summary``, the lead's canary
alarms) counts an entry only if its hash matches its content and its actor, a known
public identity, signed it, and flags the rest. An entry that fails for good stops
``verify`` and the record check where it stands; the lead can *quarantine* it: a
``quarantine`` entry the lead (or the recovery actor) signs, naming the bad entry's seq and
stored hash, after which verify and the record check step over it (still requiring the
chain to run through it) and report it as quarantined.
"""

from __future__ import annotations

import json
import re
import struct
from typing import TYPE_CHECKING, Any, Iterable

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from .audit import UNSIGNED_ACTIONS, Entry, entry_form, entry_signed, unsigned_shape_ok

if TYPE_CHECKING:
    from .vault import Vault

QUARANTINE = "quarantine"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def problem(e: Entry, known: set[bytes]) -> str | None:
    """Why an entry is not to be believed on its own, or None: its hash, its actor, its
    signature (an unsigned failed unlock: its fixed shape)."""
    try:
        form = entry_form(e)
    except (TypeError, AttributeError, ValueError, UnicodeEncodeError, OverflowError, struct.error):
        return "it is malformed (a column was edited)"
    if form is None:
        return "its hash does not match its content (edited)"
    if e.action in UNSIGNED_ACTIONS and e.sig == bytes(64):
        return None if unsigned_shape_ok(e) else "an unsigned entry the vault never writes (inserted or edited)"
    if e.actor not in known:
        return "written by an unknown actor (inserted)"
    if not entry_signed(e, form):
        return "its signature does not verify (forged in its actor's name, or edited)"
    return None


def _flag_range(entries: list[Entry], known: set[bytes], lo: int, hi: int) -> list[bool]:
    return [problem(entries[i], known) is None for i in range(lo, hi)]


def flags(entries: list[Entry], known: set[bytes]) -> list[bool]:
    """Whether each entry passes :func:`problem` (forked workers for long lists: an Ed25519
    verification each)."""
    from .audit import PARALLEL_VERIFY_MIN
    with PAR.pool(lambda b: _flag_range(entries, known, *b), len(entries), min_items=PARALLEL_VERIFY_MIN) as pool:
        parts = pool.imap(PAR.ranges(len(entries), max(1, -(-len(entries) // (pool.size * 4)))))
        return [ok for part in parts for ok in part]


def decision(e: Entry, deciders: set[bytes]) -> tuple[int, bytes] | None:
    """(seq, stored hash) that a quarantine entry names, if it is one the lead or the
    recovery actor wrote and signed, naming an earlier entry; else None."""
    if e.action != QUARANTINE or e.actor not in deciders or problem(e, deciders) is not None:
        return None
    try:
        detail = json.loads(e.detail)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(detail, dict):
        return None
    seq, h = detail.get("seq"), detail.get("hash")
    if type(seq) is not int or not 0 < seq < e.seq or not isinstance(h, str) or not _HEX64.fullmatch(h):
        return None
    return seq, bytes.fromhex(h)


def decisions(entries: Iterable[Entry], deciders: set[bytes]) -> dict[int, bytes]:
    """Seq -> stored hash of every entry the lead quarantined (only candidates are checked:
    entries of the quarantine action, rare)."""
    out: dict[int, bytes] = {}
    for e in entries:
        if e.action == QUARANTINE:
            d = decision(e, deciders)
            if d is not None:
                out[d[0]] = d[1]
    return out


def quarantined(entries: list[Entry], deciders: set[bytes]) -> frozenset[int]:
    """The seqs of the entries that a decision names by their seq and stored hash."""
    named = decisions(entries, deciders)
    by_seq = {e.seq: e for e in entries if e.seq in named}
    return frozenset(s for s, h in named.items() if s in by_seq and C.mac_equal(by_seq[s].hash, h))


def clock_problem(at: int, latest_at: int, latest_seq: int) -> str | None:
    """Whether an entry's time goes back further than clocks differ (F.AUDIT_CLOCK_TOLERANCE_MS)
    behind the latest time seen before it; the message names that entry."""
    if at + F.AUDIT_CLOCK_TOLERANCE_MS >= latest_at:
        return None
    back = (latest_at - at) // 1000
    return (f"dated {back} s before entry {latest_seq}, beyond the {F.AUDIT_CLOCK_TOLERANCE_MS // 60000}-minute "
            "tolerance for clock skew (backdated, or one of the two clocks is wrong)")


# -- a handle's use of them ---------------------------------------------------------------------
def deciders(v: "Vault") -> set[bytes]:
    """Who may quarantine: the lead (the enrolled user whose key the keyring names as the
    lead's) and the recovery actor, as the key statement's signers."""
    users = v.users(include_revoked=True)
    out = {u.public.raw for u in users if v._lead_vk is not None and u.public.ed25519 == v._lead_vk}
    rec = v._recovery_public()
    return out | ({rec} if len(rec) == 64 else set())


def mark(v: "Vault", entries: list[Entry]) -> list[dict[str, Any]]:
    """``verified`` (and ``quarantined``) for each of ``entries`` as audit_entries shows them."""
    from .audit import read_entries
    known = v._known_actors()
    ok = flags(entries, known)
    held = quarantined(read_entries(v._s(), damaged=True), deciders(v)) if any(not x for x in ok) else frozenset()
    return [{"verified": good} if e.seq not in held else {"verified": False, "quarantined": True}
            for e, good in zip(entries, ok)]


def describe(v: "Vault", seq: int) -> dict[str, Any]:
    """The entry ``seq`` and what is wrong with it (None if nothing), for the lead's decision."""
    from .audit import actor_id, read_entries
    from .errors import NotFound
    entries = read_entries(v._s(), damaged=True)
    i = next((n for n, x in enumerate(entries) if x.seq == seq), None)
    if i is None:
        raise NotFound(f"no audit entry {seq}")
    e, known = entries[i], v._known_actors()
    why = problem(e, known) if len(e.hash) == 32 else "it is malformed (a column was edited)"
    return {"seq": e.seq, "at": e.at, "actor": actor_id(e.actor), "action": e.action, "target": e.target,
            "problem": why or _clock(entries, i, known), "hash": e.hash.hex()}


def _clock(entries: list[Entry], i: int, known: set[bytes]) -> str | None:
    """Whether entry ``i`` is dated back beyond the tolerance behind an earlier signed
    entry (as verify finds it), or forward beyond it ahead of the next one (the entry
    whose clock made its successors look backdated)."""
    def timed(e: Entry) -> bool:
        return e.actor in known and not (e.action in UNSIGNED_ACTIONS and e.sig == bytes(64))
    latest = max(((e.at, e.seq) for e in entries[:i] if timed(e)), default=(0, 0))
    back = clock_problem(entries[i].at, *latest)
    if back is not None:
        return f"it is {back}"
    nxt = next((e for e in entries[i + 1:] if timed(e)), None)
    if nxt is not None and clock_problem(nxt.at, entries[i].at, entries[i].seq) is not None:
        ahead = (entries[i].at - nxt.at) // 1000
        return (f"it is dated {ahead} s after entry {nxt.seq}, which follows it, beyond the "
                f"{F.AUDIT_CLOCK_TOLERANCE_MS // 60000}-minute tolerance (dated forward, or a clock running fast)")
    return None


def quarantine(v: "Vault", seq: int) -> str:
    """Write the lead's signed decision that entry ``seq`` is bad (see the module's
    docstring); returns what is wrong with it. Refused for an entry that verifies, one
    already quarantined, and a malformed row (no hash to name: restore it instead)."""
    from .audit import read_entries
    from .errors import AccessDenied, ValidationError
    if v._auditor.actor not in deciders(v):
        raise AccessDenied("quarantining an audit entry needs the security lead's identity or the recovery passphrase")
    found = describe(v, seq)
    if found["problem"] is None:
        raise ValidationError(f"audit entry {seq} verifies: there is nothing to quarantine")
    if len(found["hash"]) != 64:
        raise ValidationError(f"audit entry {seq} is malformed (a column was edited): it cannot be named; restore "
                              "it from a backup")
    if seq in quarantined(read_entries(v._s(), damaged=True), deciders(v)):
        raise ValidationError(f"audit entry {seq} is quarantined already")
    v._audit(QUARANTINE, "", {"seq": seq, "hash": found["hash"], "problem": found["problem"]})
    return str(found["problem"])
