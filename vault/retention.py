"""Retention: which records have outlived the schema's rule, their overrides, and purge.

The rule is the schema's ``[retention]`` table (vault.retention_rule): authenticated with
the schema, so no database writer changes it. A record's *override* (a participant who
agreed to be invited again: keep until a later date, or an earlier one) is a row of
``dv_meta`` named ``retain:`` + the record id, holding a blob signed by the lead or the
recovery actor (kind T, docs/format.md 9d) over the vault id, the record id, a random
override id and the date. A signature alone cannot stop a writer of the database from
deleting a row (the record is then purged too early) or putting back an older one (kept
too long), so every change of an override is also a lead-signed ``retain`` entry of the
audit log naming the override id it sets and the one it replaces. The overrides in force
are those the log names; a row the log does not name, or a named one that is missing,
stops a purge (IntegrityError) and is a warning of ``status``.

Purging shreds each expired record with the vault's own ``delete`` (one code path for
every shred: its audit entry, index and pseudonym rows, break-glass grants), then writes
one ``purge`` entry with the counts. A dry run names no one: counts by cause only.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _crypto as C
from . import _format as F
from .errors import AccessDenied, IntegrityError, NotFound, ValidationError
from .retention_rule import Rule

#: why a record is expired (the dry run's classes): its rule date field, the event's end, an override
CAUSES = ("after", "event_end", "override")
_BODY_LEN = 2 + F.ID_LEN + 10  # version, kind, override id, date (YYYY-MM-DD)
_BLOB_LEN = _BODY_LEN + 1 + C.ED25519_SIG_LEN


class _Role(Protocol):
    manage: bool


class _Schema(Protocol):
    @property
    def retention(self) -> Rule | None: ...


class Host(Protocol):
    """The public face of a Vault this module uses."""

    @property
    def schema(self) -> Any: ...
    @property
    def role(self) -> Any: ...

    def records(self, fields: Sequence[str] | None = None) -> Iterator[Any]: ...
    def delete(self, record_id: str) -> None: ...
    def audit_entries(self, *, action: str | None = None) -> list[dict[str, Any]]: ...
    def users(self, include_revoked: bool = False) -> list[Any]: ...
    @property
    def recovery_actor_id(self) -> str: ...


@dataclass(frozen=True)
class Keys:
    """What a Vault hands this module: its store, id, the signers' verify keys (b"L", b"R"),
    a way to get (who, sign) for a signature (AccessDenied unless lead or recovery), the
    audit append, and a record's audit pseudonym."""

    store: Any
    vault_id: bytes
    verify_keys: Mapping[bytes, bytes]
    signer: Callable[[], tuple[bytes, Callable[[bytes], bytes]]]
    audit: Callable[[str, str, dict[str, Any]], None]
    target: Callable[[str], str]
    #: (record id, its row) -> the row's decrypted fields, unaudited (the purge's check of a
    #: record it is about to shred, under the row's lock: vault.lifecycle passes Records')
    decode: Callable[[bytes, bytes, list[str]], Mapping[str, Any]]


@dataclass(frozen=True)
class Override:
    until: _dt.date
    override_id: str  # hex of the random id the audit log names


@dataclass(frozen=True)
class Plan:
    """What a purge would shred: ``expired`` record ids (for the library only, never shown),
    counts by cause, and records without a date to count from (``undated``)."""

    today: _dt.date
    expired: list[str] = field(default_factory=list, repr=False)
    by: dict[str, int] = field(default_factory=dict)
    undated: int = 0
    total: int = 0

    @property
    def count(self) -> int:
        return len(self.expired)


@dataclass(frozen=True)
class PurgeReport:
    """A purge's outcome, as counts: nothing here names or identifies anyone."""

    dry_run: bool
    count: int
    by: dict[str, int]
    undated: int
    total: int
    today: _dt.date

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "count": self.count, "by": dict(self.by), "undated": self.undated,
                "total": self.total, "today": self.today.isoformat()}


# -- the override blob (docs/format.md 9d) -------------------------------------------------------
def _message(vault_id: bytes, rid: bytes, body: bytes) -> bytes:
    return F.LABEL_RETENTION_SIG + vault_id + rid + body


def encode(vault_id: bytes, rid: bytes, override_id: bytes, until: _dt.date, who: bytes,
           sign: Callable[[bytes], bytes]) -> bytes:
    """version || "T" || override id (16) || YYYY-MM-DD || who (1) || Ed25519 signature."""
    body = bytes([F.FORMAT_VERSION]) + F.KIND_RETENTION + override_id + until.isoformat().encode("ascii")
    if len(body) != _BODY_LEN or len(who) != 1:
        raise ValidationError("a retention override needs a date from year 1000 to 9999")
    return body + who + sign(_message(vault_id, rid, body))


def decode(vault_id: bytes, rid: bytes, blob: bytes, verify_keys: Mapping[bytes, bytes]) -> Override:
    """The override a stored blob says, or IntegrityError (unsigned, moved from another record, malformed)."""
    bad = IntegrityError("a record's retention override failed the lead's signature (edited in the database?)")
    if len(blob) != _BLOB_LEN or blob[0] != F.FORMAT_VERSION or blob[1:2] != F.KIND_RETENTION:
        raise bad
    body, who, sig = blob[:_BODY_LEN], blob[_BODY_LEN:_BODY_LEN + 1], blob[_BODY_LEN + 1:]
    if who not in verify_keys:
        raise bad
    try:
        C.ed25519_verify(verify_keys[who], _message(vault_id, rid, body), sig)
        until = _dt.date.fromisoformat(body[2 + F.ID_LEN:].decode("ascii"))
    except (C.AuthFailure, UnicodeDecodeError, ValueError):
        raise bad from None
    return Override(until, body[2:2 + F.ID_LEN].hex())


def _rid(record_id: str) -> bytes:
    try:
        rid = bytes.fromhex(record_id)
    except (TypeError, ValueError):
        rid = b""
    if len(rid) != F.ID_LEN:
        raise ValidationError("record ids are 32 hexadecimal characters")
    return rid


def _need_lead(v: Host, what: str) -> None:
    if not v.role.manage:
        raise AccessDenied(f"{what} is for the security lead")


# -- setting an override -----------------------------------------------------------------------
def set_override(v: Host, keys: Keys, record_id: str, until: _dt.date | None) -> None:
    """Keep one record until ``until`` whatever the rule says (None: remove the override).
    Lead (or recovery passphrase) only; the row and its ``retain`` entry commit together."""
    _need_lead(v, "setting a record's retention")
    if until is not None and (not isinstance(until, _dt.date) or isinstance(until, _dt.datetime)):
        raise ValidationError("a retention override is a date (datetime.date)")
    rid = _rid(record_id)
    who, sign = keys.signer()
    store = keys.store
    name = F.RETENTION_META_PREFIX + rid.hex()
    with store.tx() as conn:
        # held (PostgreSQL: FOR SHARE) to our commit: a purge locks the row before it reads
        # the override, so it either sees this one or shredded the record first (NotFound here)
        if not store.record_exists(conn, rid, hold=True):
            raise NotFound(f"no record {record_id}")
        old = store.get_meta_values(conn, [name]).get(name)
        replaces = decode(keys.vault_id, rid, old, keys.verify_keys).override_id if old is not None else None
        new_id = None
        if until is None:
            store.delete_meta(conn, name)
        else:
            oid = C.random_bytes(F.ID_LEN)
            store.put_meta(conn, {name: encode(keys.vault_id, rid, oid, until, who, sign)})
            new_id = oid.hex()
        keys.audit("retain", keys.target(record_id), {"override": new_id, "replaces": replaces})


def _drop_override(keys: Keys, record_id: str, override_id: str, *, live: bool) -> None:
    """Remove an override row before its record is shredded (``live``) or after (an orphan)."""
    store = keys.store
    with store.tx() as conn:
        store.delete_meta(conn, F.RETENTION_META_PREFIX + record_id)
        keys.audit("retain", keys.target(record_id) if live else "", {"override": None, "replaces": override_id})


# -- reading the overrides in force ---------------------------------------------------------------
def _deciders(v: Host) -> set[str]:
    """Actor ids whose ``retain`` entries count: the managing users and the recovery actor."""
    out = {v.recovery_actor_id}
    for u in v.users(include_revoked=True):
        role = v.schema.roles.get(u.role)
        if role is not None and role.manage:
            out.add(u.user_id)
    return out


def _named_by_log(v: Host) -> set[str]:
    """The override ids the audit log says are in force: set by a lead-signed ``retain``
    entry and not replaced by a later one. Entries that fail their check, are quarantined
    or come from anyone else count for nothing."""
    deciders = _deciders(v)
    live: set[str] = set()
    for e in v.audit_entries(action="retain"):
        if e.get("verified") is False or e.get("quarantined") or e.get("actor") not in deciders:
            continue
        detail = e.get("detail") or {}
        if isinstance(detail.get("replaces"), str):
            live.discard(detail["replaces"])
        if isinstance(detail.get("override"), str):
            live.add(detail["override"])
    return live


def overrides(v: Host, keys: Keys) -> tuple[dict[str, Override], list[str]]:
    """(record id -> override in force, problems). Problems (tampering) name no record."""
    store = keys.store
    with store.tx(write=False) as conn:
        rows = store.meta_with_prefix(conn, F.RETENTION_META_PREFIX)
    named = _named_by_log(v)
    out: dict[str, Override] = {}
    problems: list[str] = []
    bad = stale = 0
    for name, blob in rows.items():
        record_id = name[len(F.RETENTION_META_PREFIX):]
        try:
            o = decode(keys.vault_id, _rid(record_id), blob, keys.verify_keys)
        except (IntegrityError, ValidationError):
            bad += 1
            continue
        if o.override_id not in named:
            stale += 1
            continue
        out[record_id] = o
    missing = len(named - {o.override_id for o in out.values()})
    if bad:
        problems.append(f"{bad} retention override(s) fail the lead's signature (edited in the database?)")
    if stale:
        problems.append(f"{stale} retention override(s) are not the ones the audit log says the lead set "
                        "(an older one put back, or planted)")
    if missing:
        problems.append(f"{missing} retention override(s) the lead set are missing from the database (deleted?)")
    return out, problems


# -- what has expired ---------------------------------------------------------------------------
def check_today(today: object) -> None:
    """``today`` is None or a date that is not a datetime: a datetime or a string fails as a
    TypeError when compared with a record's date, part way through the records."""
    if today is not None and (not isinstance(today, _dt.date) or isinstance(today, _dt.datetime)):
        raise ValidationError("today must be a datetime.date (not a datetime), or None")


def plan(v: Host, keys: Keys, today: _dt.date | None = None) -> Plan:
    """Which records are past retention on ``today`` (UTC today by default). Lead only;
    IntegrityError if an override was tampered with (nothing is decided on a forged state)."""
    check_today(today)
    _need_lead(v, "purging records")
    rule: Rule | None = v.schema.retention
    if rule is None:
        raise ValidationError("this vault's schema sets no retention ([retention] table): nothing expires")
    day = today or _dt.datetime.now(_dt.UTC).date()
    kept, problems = overrides(v, keys)
    if problems:
        raise IntegrityError("; ".join(problems) + "; nothing purged (see dvault status)")
    expired: list[str] = []
    by: Counter[str] = Counter()
    undated = total = 0
    for rec in v.records(fields=[rule.after] if rule.after else []):
        total += 1
        last, cause = _last_day(rule, kept.get(rec.id), rec)
        if last is None:
            undated += 1
        elif day > last:
            expired.append(rec.id)
            by[cause] += 1
    return Plan(day, expired, {c: by[c] for c in CAUSES if by[c]}, undated, total)


def _last_day(rule: Rule, o: Override | None, rec: Mapping[str, Any]) -> tuple[_dt.date | None, str]:
    """(the last day a record is kept, why): its override, else the rule on its fields."""
    if o is not None:
        return o.until, "override"
    value = rec.get(rule.after) if rule.after else None
    return rule.expires(value), ("after" if rule.after and isinstance(value, _dt.date) else "event_end")


def purge(v: Host, keys: Keys, *, dry_run: bool = True, today: _dt.date | None = None) -> PurgeReport:
    """Shred every expired record through ``v.delete`` (dry run by default: counts only),
    then write one ``purge`` entry with the counts. Overrides of shredded records, and of
    records shredded earlier by hand, are removed with a ``retain`` entry each."""
    p = plan(v, keys, today)
    if dry_run:
        keys.audit("purge", "", {"dry_run": True, "count": p.count, "by": p.by, "undated": p.undated})
        return PurgeReport(True, p.count, p.by, p.undated, p.total, p.today)
    kept, _ = overrides(v, keys)
    done = 0
    try:
        for record_id in p.expired:
            o = kept.pop(record_id, None)
            if _shred_if_expired(v, keys, record_id, o, p.today):
                done += 1
        _drop_orphans(keys, kept, set(p.expired))
    finally:
        keys.audit("purge", "", {"dry_run": False, "count": done, "by": p.by, "undated": p.undated})
    return PurgeReport(False, done, p.by, p.undated, p.total, p.today)


def _shred_if_expired(v: Host, keys: Keys, record_id: str, o: Override | None, day: _dt.date) -> bool:
    """Shred one record the plan found expired, if it still is: checked again in the shred's
    transaction, under the record's row lock (PostgreSQL: FOR UPDATE, taken after the keys
    and plan locks, as a shred takes them). Why: another client may have updated the
    record's date, or the lead set an override, since the plan read them; shredding from
    that read would destroy a record the rule keeps. A record changed so is left for the
    next purge to judge; one shredded meanwhile by someone else is gone, as was asked."""
    store = keys.store
    rid = _rid(record_id)
    name = F.RETENTION_META_PREFIX + record_id
    rule = v.schema.retention
    assert rule is not None  # plan() refused a schema without one
    with store.tx() as conn:
        store.lock_writes(conn)
        store.lock_plan(conn, exclusive=False)
        data = store.get_record(conn, rid, lock=True)
        if data is None:
            return False
        blob = store.get_meta_values(conn, [name]).get(name)
        try:
            now = decode(keys.vault_id, rid, blob, keys.verify_keys) if blob is not None else None
        except (IntegrityError, ValidationError):
            return False  # set meanwhile and not readable: not this purge's to judge
        if (now is None) != (o is None) or (now is not None and o is not None and now.override_id != o.override_id):
            return False  # an override set, changed or removed since the plan
        fields = keys.decode(rid, data, [rule.after]) if o is None and rule.after else {}
        last, _ = _last_day(rule, o, fields)
        if last is None or day <= last:
            return False  # kept by its date or override as they are now
        if o is not None:
            _drop_override(keys, record_id, o.override_id, live=True)
        v.delete(record_id)  # joins this transaction (its entry and ledger row commit with it)
    store.checkpoint()  # what the shred's own checkpoint could not do inside our transaction
    return True


def _drop_orphans(keys: Keys, kept: dict[str, Override], purged: set[str]) -> None:
    """Overrides whose record no longer exists (shredded by hand): removed, each audited."""
    store = keys.store
    with store.tx(write=False) as conn:
        gone = [rid for rid in kept if rid not in purged and not store.record_exists(conn, bytes.fromhex(rid))]
    for rid in gone:
        _drop_override(keys, rid, kept[rid].override_id, live=False)


def drop_for(keys: Keys, v: Host, record_id: str) -> None:
    """Before a record is shredded on purpose (subject erase): remove its override, audited.
    A row that fails its checks is removed too (the record is going)."""
    store = keys.store
    name = F.RETENTION_META_PREFIX + record_id
    with store.tx(write=False) as conn:
        blob = store.get_meta_values(conn, [name]).get(name)
    if blob is None:
        return
    try:
        oid: str | None = decode(keys.vault_id, _rid(record_id), blob, keys.verify_keys).override_id
    except IntegrityError:
        oid = None
    with store.tx() as conn:
        store.delete_meta(conn, name)
        keys.audit("retain", keys.target(record_id), {"override": None, "replaces": oid})


def facts(v: Host, keys: Keys, record_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One record's retention, for its subject export: the last day it is kept and why."""
    rule: Rule | None = v.schema.retention
    kept, _ = overrides(v, keys)
    o = kept.get(record_id)
    if o is not None:
        return {"keep_until": o.until.isoformat(), "by": "override",
                "summary": f"kept until {o.until.isoformat()} (you agreed to be kept on record)"}
    if rule is None:
        return {"keep_until": None, "by": None, "summary": "no retention period is set: kept until deleted"}
    last = rule.expires(record.get(rule.after) if rule.after else None)
    if last is None:
        return {"keep_until": None, "by": None, "summary": "no date to count the retention period from"}
    by = "after" if rule.after and isinstance(record.get(rule.after), _dt.date) else "event_end"
    since = rule.after if by == "after" else "the end of the event"
    if last == _dt.date.max:  # the count ran past the calendar's end (vault.retention_rule)
        return {"keep_until": last.isoformat(), "by": by,
                "summary": f"kept for ever ({since} is too near the end of the calendar to count from)"}
    return {"keep_until": last.isoformat(), "by": by,
            "summary": f"kept until {last.isoformat()} ({rule.days} days after {since}), then deleted"}


# -- status ------------------------------------------------------------------------------------
def warnings(v: Host, keys: Keys, today: _dt.date | None = None) -> list[str]:
    """Retention warnings for ``status``: not set; and, for the lead, records past retention,
    records without a date to count from, and tampered overrides. Counts only."""
    check_today(today)
    rule: Rule | None = v.schema.retention
    if rule is None:
        return ["retention is not set: the schema has no [retention] table, so records are kept "
                "until shredded by hand (docs/guide.md, lifecycle)"]
    if not v.role.manage:
        return []
    try:
        p = plan(v, keys, today)
    except IntegrityError as e:
        return [f"retention: {e}"]
    out = []
    if p.count:
        out.append(f"{p.count} record(s) past retention: see dvault purge --expired (a dry run), "
                   "then dvault purge --expired --yes")
    if p.undated:
        what = f"no {rule.after} date and " if rule.after else ""
        out.append(f"{p.undated} record(s) have {what}no event_end in [retention]: their retention "
                   "cannot be counted")
    return out
