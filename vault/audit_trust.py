"""Which audit entries to believe: each entry's own check, the lead's quarantine decisions
and the order of the writers' clocks (docs/format.md 13a).

Anyone who can append to the log (every client, and a database login holding the append
lock) can chain an entry that names a colleague as its actor; only its signature tells.
So a reader of the log (``audit show``, ``--actor``, ``--summary``, the lead's canary
alarms) counts an entry only if its hash matches its content and its actor, a known
public identity, signed it, and flags the rest. An entry that fails for good stops
``verify`` and the record check where it stands; the lead can *quarantine* it: a
``quarantine`` entry the lead (or the recovery actor) signs, naming the bad entry's seq and
stored hash (a malformed row: its name, vault.audit_rows), after which verify and the
record check step over it and report it as quarantined: it keeps its place in the sequence
(unless the decision also acknowledges the entries missing before it) and the next entry
must link to it, but its own checks and its link to the entry before it are skipped. So
whatever verify stops at (an entry that fails its own check, a broken link, a gap, an
entry of the older form after labelled ones, a detail that is no JSON object) and
whatever the record check refuses to replay, the lead can get past, by a signed decision
that every later verify shows.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from . import audit_rows as RW
from . import record_states as RS
from .audit_entry import (
    GENESIS,
    PARALLEL_VERIFY_MIN,
    UNSIGNED_ACTIONS,
    Entry,
    actor_id,
    entry_form,
    entry_signed,
    unsigned_shape_ok,
)
from .audit_replay import Rights, kinds_of, replay
from .errors import NotFound, ValidationError

QUARANTINE = "quarantine"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def problem(e: Entry, known: set[bytes]) -> str | None:
    """Why an entry is not to be believed on its own, or None: its columns, its hash, its
    actor, its signature (an unsigned failed unlock: its fixed shape), and a detail that is
    no JSON object (a modified client's, which readers cannot take apart)."""
    if RW.is_damaged(e):
        return "it is malformed (a column was edited)"
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
    if RW.detail_of(e) is None:
        return "its detail is not a JSON object (written by a modified client)"
    return None


def _flag_range(entries: list[Entry], known: set[bytes], lo: int, hi: int) -> list[bool]:
    return [problem(entries[i], known) is None for i in range(lo, hi)]


def flags(entries: list[Entry], known: set[bytes]) -> list[bool]:
    """Whether each entry passes :func:`problem` (forked workers for long lists: an Ed25519
    verification each)."""
    with PAR.pool(lambda b: _flag_range(entries, known, *b), len(entries), min_items=PARALLEL_VERIFY_MIN) as pool:
        parts = pool.imap(PAR.ranges(len(entries), max(1, -(-len(entries) // (pool.size * 4)))))
        return [ok for part in parts for ok in part]


def decision(e: Entry, deciders: set[bytes]) -> tuple[int, bytes, int | None] | None:
    """(seq, stored hash, seq it follows or None) that a quarantine entry names, if it is
    one the lead or the recovery actor wrote and signed, naming an earlier entry (and, with
    ``after``, an earlier seq still: the entries between are acknowledged missing); else
    None."""
    if e.action != QUARANTINE or e.actor not in deciders or problem(e, deciders) is not None:
        return None
    detail = RW.detail_of(e)
    if detail is None:
        return None
    seq, h, after = detail.get("seq"), detail.get("hash"), detail.get("after")
    if type(seq) is not int or not 0 < seq < e.seq or not isinstance(h, str) or not _HEX64.fullmatch(h):
        return None
    if after is not None and (type(after) is not int or not 0 <= after < seq - 1):
        return None
    return seq, bytes.fromhex(h), after


def decisions(entries: Iterable[Entry], deciders: set[bytes]) -> dict[int, tuple[bytes, int | None]]:
    """Seq -> (named hash, seq it follows) of every entry the lead quarantined (only
    candidates are checked: entries of the quarantine action, rare)."""
    out: dict[int, tuple[bytes, int | None]] = {}
    for e in entries:
        if e.action == QUARANTINE:
            d = decision(e, deciders)
            if d is not None:
                out[d[0]] = (d[1], d[2] if d[2] is not None else out.get(d[0], (b"", None))[1])
    return out


def standing(entries: list[Entry], deciders: set[bytes]) -> tuple[frozenset[int], dict[int, int]]:
    """(the seqs of the entries a decision names by their seq and stored hash (a malformed
    row: its name), the seq each of them follows when a decision acknowledged a gap)."""
    named = decisions(entries, deciders)
    by_seq = {e.seq: e for e in entries if e.seq in named}
    held = frozenset(s for s, (h, _) in named.items() if s in by_seq and C.mac_equal(RW.name_of(by_seq[s]), h))
    return held, {s: after for s, (_, after) in named.items() if s in held and after is not None}


def quarantined(entries: list[Entry], deciders: set[bytes]) -> frozenset[int]:
    """The seqs of the entries that a decision names by their seq and stored hash."""
    return standing(entries, deciders)[0]


def clock_problem(at: int, latest_at: int, latest_seq: int) -> str | None:
    """Whether an entry's time goes back further than clocks differ (F.AUDIT_CLOCK_TOLERANCE_MS)
    behind the latest time seen before it; the message names that entry."""
    if at + F.AUDIT_CLOCK_TOLERANCE_MS >= latest_at:
        return None
    back = (latest_at - at) // 1000
    return (f"dated {back} s before entry {latest_seq}, beyond the {F.AUDIT_CLOCK_TOLERANCE_MS // 60000}-minute "
            "tolerance for clock skew (backdated, or one of the two clocks is wrong)")


# -- what the lead is shown and decides ---------------------------------------------------------------------
def mark(entries: list[Entry], known: set[bytes], whole_log: Callable[[], list[Entry]],
         decide: Callable[[], set[bytes]]) -> list[dict[str, Any]]:
    """``verified`` (and ``quarantined``) for each of ``entries`` as audit_entries shows them;
    the whole log and the deciders are read only if an entry fails its own check."""
    ok = flags(entries, known)
    held = quarantined(whole_log(), decide()) if any(not x for x in ok) else frozenset()
    return [{"verified": good} if e.seq not in held else {"verified": False, "quarantined": True}
            for e, good in zip(entries, ok, strict=True)]


def describe(entries: list[Entry], known: set[bytes], decide: set[bytes], seq: int, second: bool = False,
             states: RS.States | None = None, may: Rights | None = None) -> dict[str, Any]:
    """The entry ``seq`` and what is wrong with it (``problem``, None if nothing), for the
    lead's decision: whatever verify or the record check stops at, in the order they
    check (``second``, ``states``, ``may``: as audit.compare_states). A
    ``seq`` verify names as missing describes the next entry there is, with
    ``after``, the seq before the gap. ``hash``: what a decision names (audit_rows.name_of);
    ``instead``: for an entry out of time order only against a forward-dated one, that one."""
    held, _ = standing(entries, decide)
    i = next((n for n, x in enumerate(entries) if x.seq >= seq), None)
    if i is None:
        raise NotFound(f"no audit entry {seq}")
    e = entries[i]
    link, after = _link(entries, i)
    if entries[i].seq != seq and after is None:
        raise NotFound(f"no audit entry {seq}")
    own = problem(e, known)
    why = "; ".join(p for p in (own, link) if p) or _downgrade(entries, i, held) \
        or replay(entries, held, decide, may, kinds_of(entries, held, decide, second, states)).refused.get(e.seq)
    clock, instead = _clock(entries, i, known, held) if why is None else (None, None)
    return {"seq": e.seq, "at": e.at, "actor": actor_id(e.actor), "action": e.action, "target": e.target,
            "problem": why or clock, "hash": RW.name_of(e).hex(), "after": after, "instead": instead}


def _link(entries: list[Entry], i: int) -> tuple[str | None, int | None]:
    """(what is wrong with entry ``i``'s place in the chain, the seq before a gap there)."""
    e = entries[i]
    before, link = (entries[i - 1].seq, entries[i - 1].hash) if i else (0, GENESIS)
    if e.seq > before + 1:
        gone = f"entry {before + 1} is" if e.seq == before + 2 else f"entries {before + 1} to {e.seq - 1} are"
        return (f"{gone} missing before it (deleted, or this entry was inserted past the end of the log)",
                before)
    if e.prev != link:
        return (f"its link to entry {before} is broken (its prev is not that entry's hash): inserted, or entry "
                f"{before} was changed after it was written", None)
    return None, None


def _form(e: Entry) -> bool | None:
    try:
        return None if RW.is_damaged(e) else entry_form(e)
    except (TypeError, AttributeError, ValueError, UnicodeEncodeError, OverflowError, struct.error):
        return None


def _downgrade(entries: list[Entry], i: int, held: frozenset[int]) -> str | None:
    """Whether entry ``i`` has the older form after one of the labelled form (as verify finds
    it: the nearest earlier entry of either form that is not quarantined is labelled)."""
    if _form(entries[i]) is not False:
        return None
    for x in reversed(entries[:i]):
        f = None if x.seq in held else _form(x)
        if f is not None:
            return "it has the older, unlabelled form after labelled ones (inserted, or downgraded)" if f else None
    return None


def _clock(entries: list[Entry], i: int, known: set[bytes], held: frozenset[int]) -> tuple[str | None, int | None]:
    """(whether entry ``i`` is dated back beyond the tolerance behind an earlier signed entry,
    as verify finds it, or forward beyond it ahead of the next one (the entry whose clock
    made its successors look backdated); the seq of the forward-dated entry it is dated back
    against, when that alone makes it so)."""
    def timed(e: Entry) -> bool:
        return e.actor in known and not (e.action in UNSIGNED_ACTIONS and e.sig == bytes(64)) and e.seq not in held
    ts = [n for n, x in enumerate(entries) if timed(x)]
    forward = {a for a, b in zip(ts, ts[1:], strict=False)
               if clock_problem(entries[b].at, entries[a].at, entries[a].seq)}
    latest = max(((entries[n].at, entries[n].seq) for n in ts if n < i), default=(0, 0))
    back = clock_problem(entries[i].at, *latest)
    if back is not None:
        fair = max(((entries[n].at, entries[n].seq) for n in ts if n < i and n not in forward), default=(0, 0))
        return f"it is {back}", (latest[1] if clock_problem(entries[i].at, *fair) is None else None)
    nxt = next((entries[n] for n in ts if n > i), None)
    if nxt is not None and clock_problem(nxt.at, entries[i].at, entries[i].seq) is not None:
        ahead = (entries[i].at - nxt.at) // 1000
        return (f"it is dated {ahead} s after entry {nxt.seq}, which follows it, beyond the "
                f"{F.AUDIT_CLOCK_TOLERANCE_MS // 60000}-minute tolerance (dated forward, or a clock running "
                "fast)"), None
    return None, None


def quarantine_detail(entries: list[Entry], known: set[bytes], decide: set[bytes], seq: int, second: bool = False,
                      states: RS.States | None = None, may: Rights | None = None) -> tuple[dict[str, Any], str]:
    """The detail of the lead's signed decision that entry ``seq`` is bad (see the module's
    docstring; for a seq verify names as missing, the entry after the gap, the gap
    acknowledged) and what is wrong with it. Refused for an entry that verifies, one
    already quarantined, and one out of time order only against a forward-dated entry
    (that one is to be quarantined: its successors' times are sound)."""
    found = describe(entries, known, decide, seq, second, states, may)
    if found["problem"] is None:
        raise ValidationError(f"audit entry {seq} verifies: there is nothing to quarantine")
    if found["instead"] is not None:
        raise ValidationError(f"audit entry {seq} is out of time order only against entry {found['instead']}, which "
                              "is dated forward (ahead of the entries after it): quarantine that one instead")
    held, gaps = standing(entries, decide)
    if found["seq"] in held and (found["after"] is None or gaps.get(found["seq"]) == found["after"]):
        raise ValidationError(f"audit entry {found['seq']} is quarantined already")
    detail: dict[str, Any] = {"seq": found["seq"], "hash": found["hash"], "problem": found["problem"]}
    if found["after"] is not None:
        detail["after"] = found["after"]
    return detail, str(found["problem"]) if found["seq"] == seq else f"entry {found['seq']}: {found['problem']}"
