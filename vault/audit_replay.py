"""Which entries' record states the record check replays (docs/format.md 13a, "Record
states").

A state names a row the log vouches for: ``put`` says "this row was written", ``drop``
"this row is gone, by design". Any client can sign an entry, so a state is taken only from
an entry whose action writes rows, in the shape that action writes: a staff member's own
``read`` carrying ``{"drop": [victim]}`` would otherwise excuse the victim row's deletion
behind the log's back, and a ``put`` of a state that an earlier entry put already (a
fresh row always has fresh DEK ids, so a fresh state) would vouch for a row put back from
an older copy, or for someone else's row. Every other state-carrying entry is reported
(``refused``: the check is not ok), never replayed; the lead can quarantine it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import audit_rows as RW

if TYPE_CHECKING:
    from .audit_entry import Entry

#: Actions whose entries write record rows, and so may carry states.
WRITERS = frozenset({"add", "import", "update", "shred", "reencrypt", "restate"})


@dataclass
class Replay:
    """The live states (token -> seq of the entry that put it), every token dropped, and
    the entries whose states were refused (seq -> why)."""

    live: dict[str, int] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)


def _states(e: Entry) -> tuple[list[str], list[str], bool] | str | None:
    """(drop, put, baseline) of an entry's ``state``; None without one; a text if malformed."""
    if not isinstance(e.detail, str) or '"state"' not in e.detail:
        return None
    detail = RW.detail_of(e)
    if detail is None or "state" not in detail:
        return None
    state = detail["state"]
    if not isinstance(state, dict) or set(state) - {"drop", "put"}:
        return "its record state is malformed"
    drop, put = state.get("drop", []), state.get("put", [])
    if not (isinstance(drop, list) and isinstance(put, list) and all(isinstance(t, str) for t in drop + put)):
        return "its record state is malformed"
    return drop, put, detail.get("baseline") is True


def _rule(e: Entry, drop: list[str], put: list[str], baseline: bool, deciders: set[bytes],
          first: bool) -> str | None:
    """Why the entry may not carry these states, or None (format.md 13a: what each writes)."""
    a = e.action
    if a not in WRITERS:
        return f"a {a!r} entry writes no record rows, yet it carries record states"
    if a == "restate":
        if e.actor in deciders or (baseline and first and not drop):
            return None
        return ("a restate entry by someone other than the lead or the recovery passphrase (and not the upgrade's "
                "baseline)")
    fits = {"add": bool(put) and not drop, "import": bool(put) and not drop,
            "update": len(drop) == 1 and len(put) == 1, "shred": len(drop) == 1 and not put,
            "reencrypt": bool(drop) and len(drop) == len(put)}[a]
    return None if fits else f"its record states do not fit a {a} entry"


def replay(entries: list[Entry], held: frozenset[int], deciders: set[bytes]) -> Replay:
    """Replay the states of the entries, in order, leaving out the quarantined ``held``."""
    out = Replay()
    put_before: set[str] = set()
    first = True
    for e in entries:
        if e.seq in held:
            continue
        got = _states(e)
        if got is None:
            continue
        if isinstance(got, str):
            out.refused[e.seq] = got
            continue
        drop, put, baseline = got
        why = _rule(e, drop, put, baseline, deciders, first)
        if why is None and not (e.action == "restate" and e.actor in deciders) \
                and (len(set(put)) != len(put) or not put_before.isdisjoint(put)):
            why = "it puts a record state an earlier entry put already (a row put back, or an entry replayed)"
        if why is not None:
            out.refused[e.seq] = why
            continue
        first = False
        for t in drop:
            out.live.pop(t, None)
            out.dropped.add(t)
        for t in put:
            out.live[t] = e.seq
        put_before.update(put)
    return out
