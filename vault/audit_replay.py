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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _crypto as C
from . import _format as F
from . import audit_rows as RW
from . import record_states as RS

if TYPE_CHECKING:
    from .audit_entry import Entry

#: Actions whose entries write record rows, and so may carry states.
WRITERS = frozenset({"add", "import", "update", "shred", "reencrypt", "restate"})

class Rights:
    """``may(actor, action, seq)``: whether the actor could write rows that way at that
    entry; ``updatable(actor)``: the classes an update of theirs may change (None: any, a
    decider's)."""

    def __init__(self, may_do: Mapping[bytes, tuple[frozenset[str], int | None, frozenset[str]]],
                 deciders: set[bytes]) -> None:
        self._may_do, self._deciders = may_do, deciders

    def __call__(self, actor: bytes, action: str, seq: int) -> bool:
        if actor in self._deciders:
            return True
        got = self._may_do.get(actor)
        if got is None:
            return False
        allowed, until, _ = got
        return action in allowed and (until is None or seq < until)

    def updatable(self, actor: bytes) -> frozenset[str] | None:
        if actor in self._deciders:
            return None
        got = self._may_do.get(actor)
        return frozenset() if got is None else got[2]


def rights(users: Iterable[Any], roles: Mapping[str, Any], classes: Iterable[str], purposes: Iterable[str],
           entries: list[Entry], deciders: set[bytes], revoked_role: str,
           quarantined: frozenset[int] = frozenset()) -> Rights:
    """What each user's role lets them write, as the client refuses it (vault.Vault.add,
    update, delete, rotate): an add or import needs every class (its key or its public key),
    an update a class key (and changes only classes whose key it holds), a shred every class
    and every purpose, a re-encryption every class key. A revoked user counts, with the role
    the lead's ``user_added`` entry gave them, for entries before the lead's (or the recovery
    actor's) ``user_removed`` entry naming them, and for none after it (nor at all if no
    such entry is taken): a revocation never turns an entry the check refused into one it
    takes. Quarantined entries (``quarantined``) say nothing here: an edited one would decide. Why:
    any client can sign an entry, and the state key derives from the meta key every role
    holds; without this, a tool identity, or a revoked user who kept their identity, signs a
    ``shred`` and so excuses a row it deleted with a database login (docs/threat-model.md 10)."""
    classes, purposes = set(classes), set(purposes)
    revoked_at: dict[str, int] = {}
    added_as: dict[str, str] = {}
    for e in entries:  # not a quarantined one: an edited entry's role would decide
        if e.action in ("user_removed", "user_added") and e.actor in deciders and e.seq not in quarantined:
            detail = RW.detail_of(e)
            user = detail.get("user") if detail is not None else None
            if isinstance(user, str) and e.action == "user_removed":
                revoked_at.setdefault(user, e.seq)
            elif isinstance(user, str) and detail is not None and isinstance(detail.get("role"), str):
                added_as.setdefault(user, detail["role"])
    may_do: dict[bytes, tuple[frozenset[str], int | None, frozenset[str]]] = {}
    for u in users:
        revoked = u.role == revoked_role
        # a revoked user's row no longer says what they held: the lead's user_added entry
        # does (none found: they may have written nothing, and vouch for nothing)
        r = roles.get(added_as.get(u.user_id, "") if revoked else u.role)
        held = set(r.classes) if r is not None else set()
        writes = held | set(r.write_only) if r is not None else set()
        allowed = {a for a, ok in (("add", writes >= classes), ("import", writes >= classes), ("update", bool(held)),
                                   ("shred", writes >= classes and set(r.purposes if r else ()) >= purposes),
                                   ("reencrypt", held >= classes)) if ok}
        until = revoked_at.get(u.user_id, 0) if revoked else None  # 0: revoked, no entry says when: nothing
        may_do[u.public.raw] = (frozenset(allowed), until, frozenset(held))
    return Rights(may_do, set(deciders))


@dataclass
class Replay:
    """The live states (token -> seq of the entry that put it), every token dropped, the
    entries whose states were refused (seq -> why), and, for states of the second kind, the
    tags of the records added, of those shredded since, and each record's state now."""

    live: dict[str, int] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    refused: dict[int, str] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    current: dict[str, str] = field(default_factory=dict)  # record tag -> its state now


@dataclass(frozen=True)
class Kinds:
    """Which kind of record state each entry names (vault.record_states): the first kind
    before ``since`` (the seq of the upgrade's ``restate``, or 0: from the start, or None:
    never), the second from then on. ``states`` recomputes an update's tokens from its parts
    (None: the parts are not checked, for a reader without the meta key)."""

    since: int | None
    states: RS.States | None = None

    def second(self, seq: int) -> bool:
        return self.since is not None and seq > self.since


def _states(e: Entry) -> tuple[list[str], list[str], dict[str, Any]] | str | None:
    """(drop, put, detail) of an entry's ``state``; None without one; a text if malformed."""
    if not isinstance(e.detail, str) or '"state"' not in e.detail:
        return None
    detail = RW.detail_of(e)
    if detail is None or "state" not in detail:
        return None
    state = detail["state"]
    if not isinstance(state, dict) or set(state) - {"drop", "put", "was", "now"}:
        return "its record state is malformed"
    drop, put = state.get("drop", []), state.get("put", [])
    if not (isinstance(drop, list) and isinstance(put, list) and all(isinstance(t, str) for t in drop + put)):
        return "its record state is malformed"
    return drop, put, detail


def _upgrade(e: Entry, detail: dict[str, Any], deciders: set[bytes]) -> bool:
    """Whether this is the upgrade's pairing ``restate`` (docs/format.md 13a), a decider's."""
    return e.action == "restate" and e.actor in deciders and detail.get("upgrade") == F.RECORD_STATES_V2_FROM


def _kind_ok(e: Entry, drop: list[str], put: list[str], detail: dict[str, Any], kinds: Kinds,
             deciders: set[bytes]) -> bool:
    """Whether the tokens are of the kind the entry's place in the log takes: the upgrade
    drops the first and puts the second; after it, a decider's restate may also drop one of
    the first (a state the upgrade found no row for)."""
    if _upgrade(e, detail, deciders):
        return len(drop) == len(put) and all(RS.TOKEN_V1.fullmatch(t) for t in drop) \
            and all(RS.TOKEN_V2.fullmatch(t) for t in put)
    second = kinds.second(e.seq)
    want = RS.TOKEN_V2 if second else RS.TOKEN_V1
    old_too = second and e.action == "restate" and e.actor in deciders  # a first-kind state left over
    return all(want.fullmatch(t) for t in put) and all(
        want.fullmatch(t) or (old_too and RS.TOKEN_V1.fullmatch(t)) for t in drop)


def _parts_rule(e: Entry, drop: list[str], put: list[str], state: dict[str, Any], kinds: Kinds,
                may: Rights | None) -> str | None:
    """An update of the second kind: its parts must give the tokens it drops and puts, and
    change only classes its actor may update; other entries carry no parts."""
    has = "was" in state or "now" in state
    if e.action != "update" or not kinds.second(e.seq):
        return "its record state is malformed" if has else None
    if kinds.states is None:
        return None
    was, now = kinds.states.mac_of_named(state.get("was")), kinds.states.mac_of_named(state.get("now"))
    tag = RS.TAG_CHARS
    if was is None or now is None or drop[0][:tag] != put[0][:tag] or not (
            C.mac_equal(was.encode(), drop[0][tag:].encode()) and C.mac_equal(now.encode(), put[0][tag:].encode())):
        return "its record state's parts do not give the states it names"
    changed = {c for c in state["was"] if state["was"][c] != state["now"][c]}
    allowed = None if may is None else may.updatable(e.actor)
    if allowed is not None and not changed <= allowed:
        return f"it changes class(es) its actor may not update: {', '.join(sorted(changed - allowed))}"
    return None


def _rule(e: Entry, drop: list[str], put: list[str], detail: dict[str, Any], deciders: set[bytes],
          first: bool, kinds: Kinds, may: Rights | None = None) -> str | None:
    """Why the entry may not carry these states, or None (format.md 13a: what each writes)."""
    a = e.action
    if a not in WRITERS:
        return f"a {a!r} entry writes no record rows, yet it carries record states"
    if a != "restate" and may is not None and not may(e.actor, a, e.seq):
        return f"its actor's role may not write a {a} (or they were revoked before it)"
    if not _kind_ok(e, drop, put, detail, kinds, deciders):
        return "its record states are not of the kind the log takes there"
    baseline = detail.get("baseline") is True
    if a == "restate":
        if e.actor in deciders or (baseline and first and not drop):
            return None
        return ("a restate entry by someone other than the lead or the recovery passphrase (and not the upgrade's "
                "baseline)")
    fits = {"add": bool(put) and not drop, "import": bool(put) and not drop,
            "update": len(drop) == 1 and len(put) == 1, "shred": len(drop) == 1 and not put,
            "reencrypt": bool(drop) and len(drop) == len(put)}[a]
    if not fits:
        return f"its record states do not fit a {a} entry"
    return _parts_rule(e, drop, put, detail["state"], kinds, may)


def kinds_of(entries: list[Entry], held: frozenset[int], deciders: set[bytes], second_now: bool,
             states: RS.States | None = None) -> Kinds:
    """Where the log's second kind starts: after the first upgrade ``restate`` by a decider
    (not quarantined); without one, from the start if the vault is at the second kind now
    (made at it, or its baseline was of it), else never."""
    for e in entries:
        if e.action == "restate" and e.actor in deciders and e.seq not in held and '"upgrade"' in str(e.detail):
            detail = RW.detail_of(e)
            if detail is not None and _upgrade(e, detail, deciders):
                return Kinds(e.seq, states)
    return Kinds(0 if second_now else None, states)


def replay(entries: list[Entry], held: frozenset[int], deciders: set[bytes], may: Rights | None = None,
           kinds: Kinds | None = None) -> Replay:
    """Replay the states of the entries, in order, leaving out the quarantined ``held``;
    ``may`` (:func:`rights`): whose entries may carry which states; ``kinds``
    (:func:`kinds_of`): which kind of state each entry names."""
    kinds = kinds if kinds is not None else kinds_of(entries, held, deciders, False)
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
        drop, put, detail = got
        why = _rule(e, drop, put, detail, deciders, first, kinds, may)
        if why is None and not (e.action == "restate" and e.actor in deciders) \
                and (len(set(put)) != len(put) or not put_before.isdisjoint(put)):
            why = "it puts a record state an earlier entry put already (a row put back, or an entry replayed)"
        if why is not None:
            out.refused[e.seq] = why
            continue
        second = kinds.second(e.seq)
        why = _records_rule(out, e, drop, put, detail, deciders) if second else None
        if why is not None:
            out.refused[e.seq] = why
            continue
        first = False
        if _upgrade(e, detail, deciders):
            _pair(out, e.seq, drop, put)
        elif second and e.action == "reencrypt":
            _reencrypt(out, e.seq, drop, put)
        else:
            for t in drop:
                out.live.pop(t, None)
                out.dropped.add(t)
            for t in put:
                out.live[t] = e.seq
            if second:
                _track(out, e, drop, put, deciders)
        put_before.update(put)
    return out


def _records_rule(out: Replay, e: Entry, drop: list[str], put: list[str], detail: dict[str, Any],
                  deciders: set[bytes]) -> str | None:
    """Second kind: whether the records the states name fit the action. An add or import
    names records no entry added before; an update or re-encryption records added and not
    shredded, each once on both sides, from the state the log holds for it now; a
    re-encryption the same records on both sides, each once, and is taken record by record
    (:func:`_reencrypt`: a rotation cannot tell a row put back from any other); a shred a
    record not shredded (a planted row's record, which no entry added, may be shredded:
    its row goes either way). Why: without it a colleague's ``shred`` that
    deletes nothing and ``add`` of a mixed row of the same record, or an ``update`` from a
    state the record left long ago (a rolled-back row), vouch for a row the log never had."""
    of = RS.record_of
    a = e.action
    if a in ("add", "import") or (a == "restate" and detail.get("baseline") is True):
        names = [of(t) for t in put]
        if len(set(names)) != len(names) or not out.added.isdisjoint(names):
            return "it adds a record an earlier entry added already (a record is added once)"
    elif a in ("update", "shred", "reencrypt"):
        before, after = sorted(of(t) for t in drop), sorted(of(t) for t in put)
        if (a != "shred" and before != after) or len(set(before)) != len(before):
            return "its record states name other records before and after"
        if a != "reencrypt" and any(r in out.gone or (r not in out.added and a != "shred") for r in before):
            return f"its {a} names a record no entry added, or one shredded before"
        if a == "update" and any(out.current.get(of(t)) != t for t in drop):
            return f"its {a} does not start from the record's logged state (a stale or rolled-back row)"
    return None


def _track(out: Replay, e: Entry, drop: list[str], put: list[str], deciders: set[bytes]) -> None:
    """Which records the entry added or shredded, and each record's state now (second
    kind). A decider's accepting ``restate`` takes the rows as they are: a record it puts a
    state for is there; one whose state now it drops, and puts none for, is gone."""
    of = RS.record_of
    if e.action == "shred":
        for t in drop:
            out.gone.add(of(t))
            out.current.pop(of(t), None)
        return
    named = {of(t) for t in put}
    out.added |= named
    if e.action == "restate" and e.actor in deciders:
        out.gone -= named
        for t in drop:
            r = of(t)
            if RS.TOKEN_V2.fullmatch(t) and r not in named and out.current.get(r) == t:
                out.current.pop(r)
                out.gone.add(r)
    out.current.update((of(t), t) for t in put)


def _reencrypt(out: Replay, seq: int, drop: list[str], put: list[str]) -> None:
    """A re-encrypting rotation's batch (second kind), record by record: a record whose
    state now it drops moves to the state it puts; a row it re-encrypted from a state the
    record had left (rolled back) stays rolled back, one no entry wrote stays unnamed. Why
    not refuse the entry as an update's: one rolled-back row would make its whole batch
    look unlogged (the rotation cannot tell it), and taking it as it is would launder it."""
    new = {RS.record_of(t): t for t in put}
    for old in drop:
        r = RS.record_of(old)
        if out.current.get(r) == old and out.live.pop(old, None) is not None:
            out.dropped.add(old)
            out.live[new[r]] = seq
            out.current[r] = new[r]
        elif old in out.dropped or r in out.current:
            out.dropped.add(new[r])


def _pair(out: Replay, seq: int, drop: list[str], put: list[str]) -> None:
    """The upgrade's pairs: a row's state moves to the second kind only where its first was
    live (the log vouched for the row); one rolled back before stays rolled back; one the
    log never named stays unnamed; and a live state of the first kind no pair drops stays
    live, so the check reports its row missing."""
    for old, new in zip(drop, put, strict=True):
        if out.live.pop(old, None) is not None:
            out.dropped.add(old)
            out.live[new] = seq
            out.added.add(RS.record_of(new))
            out.current[RS.record_of(new)] = new
        elif old in out.dropped:
            out.dropped.add(new)
            out.added.add(RS.record_of(new))  # rolled back or shredded: never added again
