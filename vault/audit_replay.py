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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import audit_rows as RW

if TYPE_CHECKING:
    from .audit_entry import Entry

#: Actions whose entries write record rows, and so may carry states.
WRITERS = frozenset({"add", "import", "update", "shred", "reencrypt", "restate"})

#: ``may(actor, action, seq)``: whether the actor could write rows that way at that entry.
Rights = Callable[[bytes, str, int], bool]


def rights(users: Iterable[Any], roles: Mapping[str, Any], classes: Iterable[str], purposes: Iterable[str],
           entries: list[Entry], deciders: set[bytes], revoked_role: str) -> Rights:
    """What each user's role lets them write, as the client refuses it (vault.Vault.add,
    update, delete, rotate): an add or import needs every class (its key or its public key),
    an update a class key, a shred every class and every purpose, a re-encryption every class
    key. A revoked user counts for entries before the lead's (or the recovery actor's)
    ``user_removed`` entry naming them, and for none after it (their role then is gone: what
    they wrote before is taken as before). Why: any client can sign an entry, and the state
    key derives from the meta key every role holds; without this, a tool identity, or a
    revoked user who kept their identity, signs a ``shred`` and so excuses a row it deleted
    with a database login (docs/threat-model.md 10)."""
    classes, purposes = set(classes), set(purposes)
    revoked_at: dict[str, int] = {}
    for e in entries:
        if e.action == "user_removed" and e.actor in deciders:
            detail = RW.detail_of(e)
            user = detail.get("user") if detail is not None else None
            if isinstance(user, str):
                revoked_at.setdefault(user, e.seq)
    may_do: dict[bytes, tuple[frozenset[str], int | None]] = {}
    for u in users:
        if u.role == revoked_role:
            may_do[u.public.raw] = (frozenset(WRITERS), revoked_at.get(u.user_id))
            continue
        r = roles.get(u.role)
        held = set(r.classes) if r is not None else set()
        writes = held | set(r.write_only) if r is not None else set()
        allowed = {a for a, ok in (("add", writes >= classes), ("import", writes >= classes), ("update", bool(held)),
                                   ("shred", writes >= classes and set(r.purposes if r else ()) >= purposes),
                                   ("reencrypt", held >= classes)) if ok}
        may_do[u.public.raw] = (frozenset(allowed), None)

    def may(actor: bytes, action: str, seq: int) -> bool:
        if actor in deciders:
            return True
        got = may_do.get(actor)
        if got is None:
            return False
        allowed, until = got
        return action in allowed and (until is None or seq < until)
    return may


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
          first: bool, may: Rights | None = None) -> str | None:
    """Why the entry may not carry these states, or None (format.md 13a: what each writes)."""
    a = e.action
    if a not in WRITERS:
        return f"a {a!r} entry writes no record rows, yet it carries record states"
    if a != "restate" and may is not None and not may(e.actor, a, e.seq):
        return f"its actor's role may not write a {a} (or they were revoked before it)"
    if a == "restate":
        if e.actor in deciders or (baseline and first and not drop):
            return None
        return ("a restate entry by someone other than the lead or the recovery passphrase (and not the upgrade's "
                "baseline)")
    fits = {"add": bool(put) and not drop, "import": bool(put) and not drop,
            "update": len(drop) == 1 and len(put) == 1, "shred": len(drop) == 1 and not put,
            "reencrypt": bool(drop) and len(drop) == len(put)}[a]
    return None if fits else f"its record states do not fit a {a} entry"


def replay(entries: list[Entry], held: frozenset[int], deciders: set[bytes], may: Rights | None = None) -> Replay:
    """Replay the states of the entries, in order, leaving out the quarantined ``held``;
    ``may`` (:func:`rights`): whose entries may carry which states."""
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
        why = _rule(e, drop, put, baseline, deciders, first, may)
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
