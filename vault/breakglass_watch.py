"""What the lead's view of a break-glass request warns about the record's own label.

The lead decides whom a request is about from what the view shows: the record's badge
name, beside the reason. The requester may change that badge name (staff write the class
it is in) with the ordinary client: rename the target after someone the reason is truly
about, ask, and rename it back after the reveal. The update entries are in the log, signed
by whoever made them, so the view names them: every update of a field the view shows, or
of the requested field, made by the requester at any time or by anyone in the last
REVEAL_WATCH_S seconds, with who made it and when. Only entries that pass their own check
count (a forged one is verify's to report).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import _format as F
from . import audit as A
from . import audit_rows as RW

if TYPE_CHECKING:
    from .access import Access
    from .users import User

#: The fields the lead's view shows of a record (besides pseudonyms nobody can change).
SHOWN = ("badge_name",)


def changes(v: Access, wanted: list[tuple[str, str, str, str]]) -> dict[str, list[str]]:
    """For each (request id, record's audit pseudonym, requester id, requested field) of
    ``wanted``: the warnings about updates of the record's shown fields or its requested
    field (one scan of the log's update entries for those records). Empty without the audit
    purpose (no pseudonym to find the entries by)."""
    targets = sorted({w[1] for w in wanted if w[1]})
    if not targets:
        return {}
    store = v.ses.store()
    ph = "?" if store.is_sqlite else "%s"
    with store.tx(write=False) as conn:
        rows = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig FROM dv_audit "  # noqa: S608 - only the placeholder style is formatted in
                               f"WHERE action = {ph} AND target IN ({', '.join([ph] * len(targets))}) ORDER BY seq",
                         ("update", *targets)).fetchall()
    entries = [e for e in (A._row_entry(store, r) for r in rows) if e is not None]
    known = v.known_actors()
    names = {u.public.raw: u for u in v.users(include_revoked=True)}
    since = int((time.time() - F.REVEAL_WATCH_S) * 1000)
    return {req_id: _about([e for e in entries if e.target == target], known, names, requester, field, since)
            for req_id, target, requester, field in wanted if target}


def _about(entries: list[A.Entry], known: set[bytes], names: dict[bytes, User], requester: str, field: str,
           since: int) -> list[str]:
    from .audit_trust import problem
    out = []
    for e in entries:
        fields = (RW.detail_of(e) or {}).get("fields")
        named = {f for f in fields if isinstance(f, str)} if isinstance(fields, list) else set()
        touched = sorted(named & {*SHOWN, field})
        if not touched or problem(e, known) is not None:
            continue
        who = names.get(e.actor)
        by_requester = who is not None and who.user_id == requester
        if not by_requester and e.at < since:
            continue
        name = "the requester" if by_requester else (who.name if who is not None else "the recovery passphrase")
        out.append(f"{' and '.join(touched)} of this record {'was' if len(touched) == 1 else 'were'} changed by "
                   f"{name} {_ago(e.at)} (audit entry {e.seq}): make sure the record is the person the reason "
                   "means (the requester can change what this view shows)")
    return out


def _ago(at_ms: int) -> str:
    hours = max(0, int(time.time() * 1000) - at_ms) // 3_600_000
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"
