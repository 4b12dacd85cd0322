"""A person's own data: everything the vault holds about one participant, and erasure.

``export`` gathers, for one record named by any pseudonym: every stored field, the
pseudonyms issued for it (one per purpose that was used), its retention (the rule's date
and any override), and the audit history of accesses to it: when, which action, by which
*role*. Never a user's name or id (staff are other people), never a reason (a reason the
lead typed may name someone else), never another record's pseudonym (a search entry
lists every match). The lead only: it reads every class.

``write`` puts it on disk: as JSON and as a readable text file, each created 0600 and never
over an existing file, or signed and sealed to one identity (a kind O export, docs/format.md
8d, whose payload is one JSON line holding both). ``erase`` shreds the record through the
vault's own ``delete``, after removing its retention override; both are audited.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import pseudonym as P
from . import record_states as RS
from ._files import write_private
from .errors import AccessDenied, VaultExists

FORMAT = "dvault-subject-export-1"  # the JSON's "format" member


class Host(Protocol):
    """The public face of a Vault this module uses."""

    @property
    def schema(self) -> Any: ...
    @property
    def role(self) -> Any: ...

    @property
    def id(self) -> str: ...
    @property
    def recovery_actor_id(self) -> str: ...
    def resolve(self, pseudonym: str, fields: Sequence[str] | None = None) -> Any: ...
    def pseudonym(self, record_id: str, purpose: str) -> str: ...
    def audit_entries(self, *, action: str | None = None, target: str | None = None) -> list[dict[str, Any]]: ...
    def users(self, include_revoked: bool = False) -> list[Any]: ...
    def delete(self, record_id: str) -> None: ...


@dataclass(frozen=True)
class Wiring:
    """What a Vault hands this module: the pseudonyms already issued for a record id
    (purpose -> pseudonym, issuing none), the retention facts of a record (a dict), a way
    to remove its retention override before a shred, the audit append, the record row's
    current state token as the log names it (vault.audit.record_state; None if unknown), and
    the entries whose states the record check would not take (None: the log does not
    verify), which no export follows."""

    issued: Callable[[str], dict[str, str]]
    retention: Callable[[str, Mapping[str, Any]], dict[str, Any]]
    drop_override: Callable[[str], None]
    audit: Callable[[str, str, dict[str, Any]], None]
    state: Callable[[str], str | None]
    refused: Callable[[], set[int] | None] = lambda: None


@dataclass(frozen=True)
class SubjectData:
    """One person's data as exported; ``repr`` names no value."""

    data: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        n, a = len(self.data.get("fields", {})), len(self.data.get("accesses", []))
        return f"<SubjectData {n} field(s), {a} access(es)>"

    def to_json(self) -> str:
        return json.dumps(self.data, ensure_ascii=False, sort_keys=True, indent=2) + "\n"

    def to_text(self) -> str:
        return render_text(self.data)


def _need_lead(v: Host, what: str) -> None:
    if not v.role.manage:
        raise AccessDenied(f"{what} is for the security lead (it reads every class)")


def _plain(value: Any) -> Any:
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


def _roles(v: Host) -> dict[str, str]:
    out = {u.user_id: str(u.role) for u in v.users(include_revoked=True)}
    out[v.recovery_actor_id] = "recovery passphrase"
    return out


def _access(e: Mapping[str, Any], roles: Mapping[str, str]) -> dict[str, Any]:
    """One entry as the person may see it: time, action, role, and which fields (names only)."""
    when = _dt.datetime.fromtimestamp(int(e["at"]) / 1000, _dt.UTC)
    out: dict[str, Any] = {"at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "action": str(e["action"]),
                           "role": roles.get(str(e.get("actor")), "unknown")}
    detail = e.get("detail") or {}
    fields = detail.get("fields") if isinstance(detail, dict) else None
    if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
        out["fields"] = sorted(fields)
    if e.get("verified") is False:
        out["verified"] = False
    return out


#: actions that read every record at once (their entries name no record, yet covered this one)
BULK = ("read_all", "export")


def _with_bulk(v: Host, roles: Mapping[str, str], own: list[dict[str, Any]], token: str | None,
               refused: Callable[[], set[int] | None]) -> list[dict[str, Any]]:
    """The record's own entries (``own``: raw entries) plus every bulk read since it was
    added (a bulk read before the record existed did not see it), marked ``"scope": "all
    records"``, by time.

    The start is the record's add or import entry, found through its state token
    (:func:`_added_at`), not its first entry with a target: add and import entries name
    no target, so a bulk read between the add and the first lookup was left out. Times
    are compared in milliseconds, as the log holds them (the shown ones are to the
    second). Only entries whose states the record check takes are followed (``refused``:
    the others; a colleague's forged ``add`` would move the start past their own bulk
    read). When the log does not say when the record came (no states, a log that does not
    verify), every bulk read is kept: a read listed that may not
    have covered the person is better than one that did and is not listed."""
    entries = v.audit_entries()
    skip = refused()
    start = None if skip is None else _added_at(entries, token, skip)
    bulk = [e for e in entries if e["action"] in BULK and not e.get("target") and (start is None or e["at"] >= start)]
    shown = [(int(e["at"]), _access(e, roles)) for e in own]
    shown += [(int(e["at"]), {**_access(e, roles), "scope": "all records"}) for e in bulk]
    return [a for _, a in sorted(shown, key=lambda x: x[0])]


def _added_at(entries: Sequence[Mapping[str, Any]], token: str | None, skip: set[int] = frozenset()  # type: ignore[assignment]
              ) -> int | None:
    """The time (ms) of the add or import entry that put the record's row, following its
    state back through the updates and re-encryptions that dropped one state for another
    (docs/format.md 13a): in the second kind only through states of the record's own tag,
    and past the upgrade's pairs through its own pair; None if the log does not lead there
    (a baseline, or an accept that does not name the record's earlier state)."""
    if not token:
        return None
    tokens = {token}
    for e in reversed(entries):
        state = (e.get("detail") or {}).get("state") if isinstance(e.get("detail"), dict) else None
        if not isinstance(state, dict) or e.get("verified") is False or e.get("quarantined") or e.get("seq") in skip:
            continue
        put, drop = state.get("put") or [], state.get("drop") or []
        if not isinstance(put, list) or not isinstance(drop, list):
            continue
        put = [t for t in put if isinstance(t, str)]  # (the log is hostile input: no unhashable items)
        if tokens.isdisjoint(put):
            continue
        if e["action"] in ("add", "import"):
            return int(e["at"])
        if not drop:  # a restate baseline: the record is older than the log's states
            return None
        if (e.get("detail") or {}).get("upgrade") and len(drop) == len(put):  # pairs: follow the record's own
            tokens |= {d for d, p in zip(drop, put, strict=True) if p in tokens and isinstance(d, str)}
            continue
        tag = next((RS.record_of(t) for t in tokens & set(put) if RS.TOKEN_V2.fullmatch(t)), None)
        if tag is not None:  # second kind: the record's own earlier state, by its tag
            earlier = {t for t in drop if isinstance(t, str) and RS.record_of(t) == tag}
            if not earlier:  # an accept that found the row unlogged: the log does not say since when
                return None
            tokens |= earlier
        elif e["action"] == "restate":  # first kind, an accept: whose states it drops it does not say
            return None
        else:
            tokens |= {t for t in drop if isinstance(t, str)}  # a re-encryption drops many: earlier, never later
    return None


def export(v: Host, wiring: Wiring, pseudonym: str, *, now: _dt.datetime | None = None) -> SubjectData:
    """Everything held about the person ``pseudonym`` names (lead only); one
    ``subject_export`` entry, whose target is the record's audit pseudonym."""
    _need_lead(v, "exporting a person's data")
    rec = v.resolve(pseudonym)
    issued = wiring.issued(rec.id)
    target = issued.get("audit") or (v.pseudonym(rec.id, "audit") if "audit" in v.schema.purposes else "")
    roles = _roles(v)
    own = v.audit_entries(target=target or pseudonym)
    accesses = _with_bulk(v, roles, own, wiring.state(rec.id), wiring.refused)
    made = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {
        "format": FORMAT, "vault": v.id, "created": made,
        "fields": {name: _plain(rec[name]) for name in v.schema.fields if name in rec},
        "pseudonyms": dict(sorted(issued.items())),
        "retention": wiring.retention(rec.id, rec),
        "accesses": accesses,
    }
    wiring.audit("subject_export", target, {"fields": sorted(data["fields"]), "accesses": len(accesses)})
    return SubjectData(data)


def erase(v: Host, wiring: Wiring, pseudonym: str) -> None:
    """Shred the person's record (its override first), with a ``subject_erase`` entry
    before the vault's own ``shred`` entry."""
    _need_lead(v, "erasing a person's data")
    rec = v.resolve(pseudonym, [])
    target = wiring.issued(rec.id).get("audit", "")
    wiring.drop_override(rec.id)
    wiring.audit("subject_erase", target, {})
    v.delete(rec.id)


def issued_pseudonyms(store: Any, purposes: Mapping[str, Any], record_id: str) -> dict[str, str]:
    """purpose -> pseudonym, for the purposes whose pseudonym of this record was issued
    (its lookup row exists); ``purposes``: name -> vault.index.PurposeKeys."""
    rid = bytes.fromhex(record_id)
    out = {}
    with store.tx(write=False) as conn:
        for name, keys in purposes.items():
            value = keys.value(rid)
            if store.get_pseudonym(conn, name, keys.tag(value)) is not None:
                out[name] = P.format(value, P.purpose_prefix(name))
    return out


# -- the readable text ------------------------------------------------------------------------
def _lines(data: Mapping[str, Any]) -> Iterator[str]:
    yield "What this vault holds about you"
    yield "=" * 31
    yield f"vault {data['vault']}, written {data['created']}"
    yield ""
    yield "Your details"
    for name, value in data["fields"].items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else (
            ("yes" if value else "no") if isinstance(value, bool) else str(value))
        yield f"  {name}: " + shown.replace("\n", "\n    ")
    yield ""
    yield "Names the vault uses for you instead of your name (pseudonyms)"
    for purpose, pn in data["pseudonyms"].items():
        yield f"  {purpose}: {pn}"
    ret = data.get("retention") or {}
    yield ""
    yield "How long it is kept"
    yield f"  {ret.get('summary', 'not set')}"
    yield ""
    yield f"Who accessed your record ({len(data['accesses'])} time(s); by role, never by name)"
    for a in data["accesses"]:
        extra = f" fields: {', '.join(a['fields'])}" if a.get("fields") else ""
        extra += " (every record at once)" if a.get("scope") else ""
        yield f"  {a['at']}  {a['action']:<14} {a['role']}{extra}"


def render_text(data: Mapping[str, Any]) -> str:
    return "\n".join(_lines(data)) + "\n"


# -- writing it out ---------------------------------------------------------------------------
def write(sd: SubjectData, out: str | os.PathLike[str], *, seal_with: Callable[[bytes, list[str]], bytes] | None = None
          ) -> list[Path]:
    """Write the export. Plain: ``OUT.json`` and ``OUT.txt`` (0600, neither over an existing
    file; both or none). Sealed (``seal_with(payload, fields)`` gives the armoured kind O
    blob): ``OUT`` itself, one JSON line with the data and its text. Returns the paths."""
    base = Path(out)
    if seal_with is not None:
        line = json.dumps({**sd.data, "text": sd.to_text()}, ensure_ascii=False, sort_keys=True) + "\n"
        blob = seal_with(line.encode("utf-8"), sorted(sd.data["fields"]))
        return [write_private(base, blob)]
    paths = [base.with_name(base.name + ".json"), base.with_name(base.name + ".txt")]
    for p in paths:
        if p.exists() or p.is_symlink():
            raise VaultExists(f"refusing to overwrite {p}")
    write_private(paths[0], sd.to_json().encode("utf-8"))
    try:
        write_private(paths[1], sd.to_text().encode("utf-8"))
    except BaseException:
        paths[0].unlink(missing_ok=True)
        raise
    return paths


__all__ = ["FORMAT", "SubjectData", "Wiring", "erase", "export", "issued_pseudonyms", "render_text", "write"]
