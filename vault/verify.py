"""One pass over everything a vault stores, compared with what the records prove.

Most stored state is checked only when it is used: a record when it is read, a slot when
someone opens with it, the roster when users are listed. Blind-index rows are not
authenticated at all (docs/threat-model.md 7.4): a deleted row hides a person from a
search, a planted one points a search at the wrong person, and nothing notices. ``verify``
recomputes, from the decrypted records, every index term and every pseudonym row the log
says was issued, and compares them with the database; it opens every record, checks the
key statement, the slots, the roster, the audit chain (with the record states) and the
canary list. Problems name records by their audit pseudonym and fields by name, never a
value; the report's counts go to the audit log.

The module takes its collaborators as a :class:`Parts` bundle (the store, the schema and
callables for what needs the vault's keys), so that it depends on no vault internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select

from . import audit as A
from . import envelope as E
from . import pseudonym as P
from ._crypto import AuthFailure
from .audit_rows import detail_of
from .errors import AccessDenied, IntegrityError, ValidationError, VaultError
from .index import Indexer, PurposeKeys
from .schema import Schema
from .store import Store, blind, pseudonyms, split_ids

Term = tuple[int, str, int, bytes]  # (generation, index name, bucket value, record id or its prefix)
Step = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Parts:
    """What verify needs from an open vault. Callables run in the caller's transaction
    (where they take a connection) and raise IntegrityError for what fails authentication."""

    store: Store
    schema: Schema
    held: frozenset[str]  # classes whose keys this opener holds
    manage: bool  # the lead or the recovery passphrase
    open_row: Callable[[bytes, bytes], dict[str, Any]]  # decoded values of the held classes
    indexers: Callable[[Any], tuple[int, list[tuple[int, Indexer]]]]  # (live gen, [(gen, indexer)]), plan synced
    purposes: Mapping[str, PurposeKeys]
    roster: Callable[[Any], object]  # the roster and key statement checked (raises IntegrityError)
    slots: Callable[[Any], list[str]] | None  # slot problems (None: this opener cannot account for slots)
    audit_verify: Callable[[], A.Verdict]
    check_records: Callable[[], A.RecordCheck] | None
    canaries: Callable[[], dict[str, int]] | None  # listed canary id (hex) -> planting entry
    audit: Callable[[str, str, dict[str, Any]], None]
    signers: Callable[[], set[bytes]] | None = None  # public identities whose ledger entries count
    retention: Callable[[], list[str]] | None = None  # retention override problems (counts, no record)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing found wrong: which check, what kind, the record (audit pseudonym, or its
    random id for an opener without the audit purpose key) and the field or index name."""

    check: str
    kind: str
    record: str = ""
    field: str = ""
    detail: str = ""

    def __str__(self) -> str:
        where = ", ".join(x for x in (f"record {self.record}" if self.record else "",
                                      f"field {self.field!r}" if self.field else "") if x)
        return (f"{self.check}: {self.kind}" + (f" ({where})" if where else "")
                + (f": {self.detail}" if self.detail else ""))


_REPAIRABLE = frozenset({"index", "pseudonyms"})


@dataclasses.dataclass
class Report:
    """What verify found: counts per check, the problems, the checks skipped (and why) and,
    with ``repair_index``, how many index terms and pseudonym rows were rewritten."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    repaired: dict[str, int] = dataclasses.field(default_factory=dict)
    after_repair: list[Problem] = dataclasses.field(default_factory=list)  # index and pseudonym checks run again

    @property
    def ok(self) -> bool:
        """Nothing wrong that is still wrong: problems a repair fixed do not count."""
        return not self.remaining()

    def remaining(self) -> list[Problem]:
        if not self.repaired:
            return list(self.problems)
        return [p for p in self.problems if p.check not in _REPAIRABLE] + self.after_repair

    def summary(self) -> dict[str, Any]:
        """Counts only (what the audit entry records)."""
        by_check: dict[str, int] = {}
        for p in self.problems:
            by_check[p.check] = by_check.get(p.check, 0) + 1
        return {"ok": self.ok, "counts": dict(self.counts), "problems": by_check, "skipped": sorted(self.skipped),
                **({"repaired": dict(self.repaired)} if self.repaired else {})}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": dict(self.counts),
                "problems": [dataclasses.asdict(p) for p in self.problems],
                "skipped": dict(self.skipped), "repaired": dict(self.repaired),
                "after_repair": [dataclasses.asdict(p) for p in self.after_repair]}

    def __str__(self) -> str:
        lines = [f"{p}" for p in self.problems]
        lines += [f"skipped {name}: {why}" for name, why in sorted(self.skipped.items())]
        if self.repaired:
            lines.append("repaired: " + ", ".join(f"{n} {k}" for k, n in sorted(self.repaired.items())))
            lines += [f"still after the repair: {p}" for p in self.after_repair]
        head = ("vault verified: " if self.ok else f"vault damaged: {len(self.remaining())} problem(s); ") + \
            ", ".join(f"{n} {k}" for k, n in self.counts.items())
        return "\n".join([head, *lines])


def run(parts: Parts, *, progress: Step | None = None, repair_index: bool = False) -> Report:
    """Every check this opener's keys allow; the skipped ones are named in the report.
    ``repair_index``: afterwards rebuild, in one audited transaction, the index terms and
    pseudonym rows that the records prove (every class key needed). The run is audited."""
    if repair_index and set(parts.schema.classes) - parts.held:
        raise AccessDenied("repairing the index needs every class key (the lead's or the recovery passphrase's)")
    report = Report()
    namer = _namer(parts.purposes.get("audit"))
    _check_keys(parts, report)
    # one snapshot for the rows and what names them: a shred or an add committing between
    # two reads would look like a ledger entry naming a live record, or a pseudonym row
    # naming none (the audit's check takes its own snapshot, and writes its entry)
    with parts.store.tx(write=False, snapshot=True):
        live = _check_records_and_index(parts, report, namer, progress)
        _check_pseudonyms(parts, report, namer, live)
        _check_canaries(parts, report, namer, live)
        _check_ledger(parts, report, namer, live)
    _check_audit(parts, report)
    _check_retention(parts, report)
    if repair_index:
        report.repaired = repair(parts, namer)
        again = Report()
        _check_pseudonyms(parts, again, namer, _check_records_and_index(parts, again, namer, None))
        report.after_repair = [p for p in again.problems if p.check in _REPAIRABLE]
    parts.audit("verify", "", report.summary())
    return report


def _namer(audit_keys: PurposeKeys | None) -> Callable[[bytes], str]:
    """How a record is named in a problem: its audit pseudonym (what the log names it by),
    computed from its id; without the audit purpose key, its random id."""
    if audit_keys is None:
        return lambda rid: rid.hex()
    prefix = P.purpose_prefix(audit_keys.purpose)
    return lambda rid: P.format(audit_keys.value(rid), prefix)


def _check_keys(parts: Parts, report: Report) -> None:
    """The signed roster and key statement, and (for the lead) every slot."""
    store = parts.store
    with store.tx(write=False, snapshot=True) as conn:
        try:
            parts.roster(conn)
        except IntegrityError as e:
            report.problems.append(Problem("keys", "roster or key statement fails verification", detail=str(e)))
        if parts.slots is None:
            report.skipped["slots"] = "only the security lead (or the recovery passphrase) can account for every slot"
            return
        try:
            found = parts.slots(conn)
        except IntegrityError as e:
            found = [str(e)]
        report.counts["slots"] = len(store.get_slots(conn))
    report.problems += [Problem("slots", "slot not as signed", detail=text) for text in found]


def _check_records_and_index(parts: Parts, report: Report, namer: Callable[[bytes], str],
                             progress: Step | None) -> set[bytes]:
    """Open every record; recompute its index terms; compare them with the stored ones.
    Returns the ids of the records present."""
    store = parts.store
    with store.tx(write=False, snapshot=True) as conn:
        total = store.count_records(conn)
        live_gen, indexers = parts.indexers(conn)
        widths = {g: ix.id_bytes for g, ix in indexers}
        seen = _expected_terms(parts, report, namer, conn, indexers, total, progress)
        stored, malformed, foreign = _stored_terms(conn, widths)
    report.counts["records"] = len(seen.live)
    report.counts["index terms"] = len(stored)
    unwritten = len(_prefixed(seen.later, widths) - stored)
    if unwritten:  # not a problem: what a write-only writer's add does; a re-index writes them
        report.counts["index terms a re-index will add"] = unwritten
    names = {n for _, ix in indexers for n in ix.plan_bits if ix.can_search(n)}
    if len(names) < len({n for _, ix in indexers for n in ix.plan_bits}):
        report.skipped["index (some)"] = "indexes of classes this opener lacks are not recomputed"
    if any(g != live_gen for g, _ in indexers):
        report.skipped["index (re-index)"] = ("a re-index is under way: missing terms of its new generation are not "
                                              "counted (dvault reindex finishes it)")
    for gen, name, _value, _chunk, n in malformed:
        report.problems.append(Problem("index", "malformed bucket row", field=name,
                                       detail=f"generation {gen}, {n} bytes"))
    report.problems += [Problem("index", "entry of no live index generation", field=n, detail=f"generation {g}")
                        for g, n in sorted(set(foreign))]
    missing = {t for t in seen.expected if t[0] == live_gen and t[:3] + (t[3][:widths[t[0]]],) not in stored}
    owners = _owners(seen.live, set(widths.values()))
    extra = {t for t in stored - _prefixed(seen.expected | seen.tolerated, widths)
             if t[1] in names and all(r in seen.readable for r in owners.get(t[3], ()))}
    report.problems += _index_problems(missing, extra, owners, widths, namer)
    return seen.live


def _owners(live: set[bytes], widths: set[int]) -> dict[bytes, list[bytes]]:
    """Each id prefix (of the widths in use) -> the records present whose id starts with it."""
    out: dict[bytes, list[bytes]] = {}
    for rid in sorted(live):
        for w in widths:
            out.setdefault(rid[:w], []).append(rid)
    return out


def _index_problems(missing: set[Term], extra: set[Term], owners: Mapping[bytes, list[bytes]],
                    widths: Mapping[int, int], namer: Callable[[bytes], str]) -> list[Problem]:
    """A record's term both missing and extra in one index is one edited entry. ``missing``
    holds whole record ids, ``extra`` stored prefixes; an extra prefix is named by the
    record present that has it (the first, in the rare case that two share it)."""
    miss_keys = {(g, n, r[:widths[g]]): r for g, n, _, r in missing}
    wrong = {(g, n, r) for g, n, _, r in extra if (g, n, r) in miss_keys}
    out = [Problem("index", "entry missing", namer(r), n) for g, n, _, r in sorted(missing)
           if (g, n, r[:widths[g]]) not in wrong]
    out += [Problem("index", "entry in the wrong bucket (edited)", namer(miss_keys[k]), k[1]) for k in sorted(wrong)]
    for g, n, _, r in sorted(extra):
        if (g, n, r) in wrong:
            continue
        if r in owners:
            out.append(Problem("index", "entry the record's values do not give (planted)", namer(owners[r][0]), n))
        else:
            out.append(Problem("index", "entry for an id that is no record (planted, or left by a shred)", field=n))
    return out


@dataclasses.dataclass
class _Seen:
    expected: set[Term]  # the terms the records give
    tolerated: set[Term]  # the terms an older release also stored for an over-long value
    live: set[bytes]  # ids of the records present
    readable: set[bytes]  # ids of those that opened
    later: set[Term] = dataclasses.field(default_factory=set)  # of classes a write-only writer sealed


def _sealed_classes(data: bytes, classes: tuple[str, ...]) -> set[str]:
    """The classes of a row whose data key a writer without the class key sealed (a
    write-only role): that writer could not compute their index terms, so there are none
    until a re-index or rotation by someone holding the class writes them."""
    try:
        return {c for c, (dek, _) in E.row_envelopes(data, classes).items() if E.parse_dek_header(dek).sealed}
    except E.Malformed:
        return set()


def _expected_terms(parts: Parts, report: Report, namer: Callable[[bytes], str], conn: Any,
                    indexers: list[tuple[int, Indexer]], total: int, progress: Step | None) -> _Seen:
    """Every record opened and its terms computed; each that fails authentication named."""
    seen = _Seen(set(), set(), set(), set())
    done = 0
    for rid, data in parts.store.scan_records(conn):
        seen.live.add(rid)
        done += 1
        try:
            values = parts.open_row(rid, data)
        except IntegrityError as e:
            report.problems.append(Problem("records", "fails authentication", namer(rid), e.field or "",
                                           "edited in place, or malformed"))
            values = None
        if values is not None:
            seen.readable.add(rid)
            sealed = _sealed_classes(data, parts.schema.classes)
            for gen, ix in indexers:
                got = {(gen, n, val, rid) for n, val in ix.terms(values, oversize="skip")}
                later = {t for t in got if parts.schema.fields[t[1].split("#")[0]].cls in sealed}
                seen.expected |= got - later
                seen.later |= later
                seen.tolerated |= later | {(gen, n, val, rid) for n, val in ix.terms(values, oversize="index")} - got
        if progress is not None and (done % 200 == 0 or done == total):
            progress(done, max(total, done))
    return seen


def _stored_terms(conn: Any, widths: Mapping[int, int]) -> tuple[set[Term], list[tuple[int, str, int, bytes, int]],
                                                               list[tuple[int, str]]]:
    """Every stored entry (gen, name, value, id prefix of the generation's width), the
    bucket rows whose id list is malformed (their keys and length) and the (gen, name) of
    each row of a generation no plan names (its width is unknown: it is not parsed)."""
    out: set[Term] = set()
    bad = []
    foreign = []
    for gen, name, value, chunk, ids in conn.execute(
            select(blind.c.gen, blind.c.name, blind.c.value, blind.c.chunk, blind.c.ids)):
        ids, w = bytes(ids), widths.get(int(gen))
        if w is None:
            foreign.append((int(gen), str(name)))
            continue
        if not ids or len(ids) % w:
            bad.append((int(gen), str(name), int(value), bytes(chunk), len(ids)))
            continue
        out.update((int(gen), str(name), int(value), p) for p in split_ids(ids, w))
    return out, bad, foreign


def _prefixed(terms: Iterable[Term], widths: Mapping[int, int]) -> set[Term]:
    """Terms (whole record ids) as their generation stores them (id prefixes)."""
    return {(g, n, v, r[:widths[g]]) for g, n, v, r in terms}


def _issued(entries: Iterable[A.Entry]) -> tuple[set[str], set[tuple[str, str]]]:
    """(audit pseudonyms the log names as targets, (audit pseudonym, purpose) of every
    pseudonym the log says was issued): rows that must exist while their record does."""
    targets: set[str] = set()
    issued: set[tuple[str, str]] = set()
    for e in entries:
        if not e.target:
            continue
        targets.add(e.target)
        if e.action == "pseudonym":
            purpose = (detail_of(e) or {}).get("purpose")
            if isinstance(purpose, str):
                issued.add((e.target, purpose))
    return targets, issued


def _check_pseudonyms(parts: Parts, report: Report, namer: Callable[[bytes], str], live: set[bytes]) -> None:
    """Each stored row opens under its purpose key, names a present record and is that
    record's tag; each row the log says was issued for a present record exists."""
    store = parts.store
    with store.tx(write=False, snapshot=True) as conn:
        rows = [(str(p), bytes(t), bytes(r)) for p, t, r in
                conn.execute(select(pseudonyms.c.purpose, pseudonyms.c.tag, pseudonyms.c.ref))]
    report.counts["pseudonyms"] = len(rows)
    lacking = sorted(set(parts.schema.purposes) - set(parts.purposes))
    if lacking:
        report.skipped["pseudonyms (some)"] = f"no key for purpose(s) {', '.join(lacking)}"
    have: set[tuple[str, bytes]] = set()
    for purpose, tag, ref in rows:
        keys = parts.purposes.get(purpose)
        if keys is None:
            if purpose not in parts.schema.purposes:
                report.problems.append(Problem("pseudonyms", "row of an unknown purpose", field=purpose))
            continue
        problem = _pseudonym_row(keys, tag, ref, live)
        if problem:
            report.problems.append(Problem("pseudonyms", problem[0], namer(problem[1]) if problem[1] else "", purpose))
        else:
            have.add((purpose, tag))
    if "audit" not in parts.purposes:
        report.skipped["pseudonyms (missing rows)"] = ("finding rows the log says were issued needs the audit "
                                                       "purpose key")
        return
    for rid, purpose in _expected_pseudonyms(parts, namer, live):
        keys = parts.purposes[purpose]
        if (purpose, keys.tag(keys.value(rid))) not in have:
            report.problems.append(Problem("pseudonyms", "row missing (issued, per the log)", namer(rid), purpose))


def _pseudonym_row(keys: PurposeKeys, tag: bytes, ref: bytes, live: set[bytes]) -> tuple[str, bytes] | None:
    """What is wrong with one stored row (and the record it names), or None."""
    try:
        rid = keys.open_ref(tag, ref)
    except (AuthFailure, ValueError, VaultError):
        return "row fails authentication", b""
    if keys.tag(keys.value(rid)) != tag:
        return "row names another record than its tag (swapped)", rid
    if rid not in live:
        return "row names a record that is not present (left by a shred, or the record deleted)", rid
    return None


def _expected_pseudonyms(parts: Parts, namer: Callable[[bytes], str], live: set[bytes]) -> list[tuple[bytes, str]]:
    targets, issued = _issued(A.read_entries(parts.store))
    by_name = {namer(rid): rid for rid in live}
    out = [(by_name[t], "audit") for t in targets if t in by_name]
    out += [(by_name[t], p) for t, p in issued if t in by_name and p in parts.purposes]
    return sorted(set(out))


def _check_audit(parts: Parts, report: Report) -> None:
    """The chain and its signatures, then (the lead) every row against its logged state."""
    try:
        verdict = parts.audit_verify()
    except IntegrityError as e:  # the signers come from the roster: an edited one proves nothing
        report.problems.append(Problem("audit", "chain not checked: its signers cannot be established", detail=str(e)))
        return
    report.counts["audit entries"] = verdict.entries
    if not verdict.ok:
        report.problems.append(Problem("audit", "chain fails verification", detail=str(verdict)))
        return
    if parts.check_records is None:
        report.skipped["audit (record states)"] = "comparing records with the log is for the security lead"
        return
    try:
        check = parts.check_records()
    except IntegrityError as e:
        report.problems.append(Problem("audit", "record states not checked", detail=str(e)))
        return
    for kind, rids in (("rolled back to an older state", check.rolled_back),
                       ("holds a state no entry wrote (log truncated, or row inserted)", check.unlogged)):
        report.problems += [Problem("audit", kind, rid) for rid in rids]
    report.problems += [Problem("audit", "a logged record state is in no row (record deleted or log edited)",
                                detail=f"entry {seq}") for seq in check.missing]
    report.problems += [Problem("audit", "entry carries record states it may not", detail=f"entry {seq}")
                        for seq in check.refused]


def _check_canaries(parts: Parts, report: Report, namer: Callable[[bytes], str], live: set[bytes]) -> None:
    """Every canary the signed list names is present, unless the log shows it shredded."""
    if parts.canaries is None:
        report.skipped["canaries"] = "only the security lead (or the recovery passphrase) holds the canary list"
        return
    try:
        listed = parts.canaries()
    except IntegrityError as e:
        report.problems.append(Problem("canaries", "canary list fails verification", detail=str(e)))
        return
    report.counts["canaries"] = len(listed)
    shredded = {e.target for e in A.read_entries(parts.store) if e.action == "shred" and e.target}
    for hexid in sorted(listed):
        rid = bytes.fromhex(hexid)
        if rid not in live and namer(rid) not in shredded:
            report.problems.append(Problem("canaries", "canary missing (deleted without a shred entry)", namer(rid)))


def _check_retention(parts: Parts, report: Report) -> None:
    """Retention overrides as the lead signed them and the log names them: an edited,
    planted, put-back or deleted one would shred someone early or keep them too long."""
    if parts.retention is None:
        report.skipped["retention"] = "only the security lead (or the recovery passphrase) checks retention overrides"
        return
    try:
        found = parts.retention()
    except IntegrityError as e:  # the log's signers cannot be established: the keys check says why
        report.problems.append(Problem("retention", "overrides not checked", detail=str(e)))
        return
    report.problems += [Problem("retention", text) for text in found]


def _check_ledger(parts: Parts, report: Report, namer: Callable[[bytes], str], live: set[bytes]) -> None:
    """Every shred ledger row is its key's own entry, for this vault, signed by someone the
    vault knows, and names no live record (a restore would shred it). Not found here: a
    deleted row (the ledger file written by dvault backup is the copy that shows it)."""
    from . import ledger
    with parts.store.tx(write=False) as conn:
        found = ledger.rows(conn)
        vault_id = parts.store.get_meta_values(conn, ["vault_id"]).get("vault_id", b"")
    try:
        signers = parts.signers() if parts.signers is not None else None
    except IntegrityError:  # the roster fails (reported under keys): the signers cannot be established
        signers = None
        report.skipped["ledger signers"] = "the user table does not verify, so who may sign is unknown"
    report.counts["ledger entries"] = len(found)
    for key, blob in found:
        problem = ledger.row_problem(key, blob, vault_id, signers)
        if problem is not None:
            report.problems.append(Problem("ledger", problem, namer(key) if len(key) == 16 else ""))
        elif key in live:
            report.problems.append(Problem("ledger", "entry names a live record (a restore would shred it)",
                                           namer(key)))


def repair(parts: Parts, namer: Callable[[bytes], str]) -> dict[str, int]:
    """Rewrite the live generation's index terms and the pseudonym rows so that they are
    exactly what the records (and the log's issued pseudonyms) give, in one transaction
    with its audit entry. Refused during a re-index (it rebuilds the index anyway)."""
    store = parts.store
    with store.tx() as conn:
        store.lock_writes(conn)
        store.lock_plan(conn, exclusive=True)
        live_gen, indexers = parts.indexers(conn)
        if any(g != live_gen for g, _ in indexers):
            raise ValidationError("a re-index is under way: finish it (dvault reindex), then verify again")
        scratch = Report()
        seen = _expected_terms(parts, scratch, namer, conn, indexers, 0, None)
        if scratch.problems:
            raise IntegrityError("records fail authentication: restore or shred them before repairing the index")
        live = seen.live
        widths = {g: ix.id_bytes for g, ix in indexers}
        stored, malformed, _foreign = _stored_terms(conn, widths)  # the foreign go with the other generations
        drop = sorted(stored - _prefixed(seen.expected | seen.tolerated, widths))
        add = sorted(t for t in seen.expected if t[:3] + (t[3][:widths[t[0]]],) not in stored)
        for gen, name, value, chunk, _n in malformed:
            conn.execute(blind.delete().where(blind.c.gen == gen, blind.c.name == name, blind.c.value == value,
                                              blind.c.chunk == chunk))
        store.drop_index_entries(conn, drop, widths)
        store.delete_index_gen(conn, live_gen)
        store.insert_index(conn, add, widths)
        fixed = _repair_pseudonyms(parts, conn, namer, live)
        out = {"index terms removed": len(drop), "index terms added": len(add), "pseudonym rows": fixed}
        parts.audit("repair_index", "", out)
    return out


def _repair_pseudonyms(parts: Parts, conn: Any, namer: Callable[[bytes], str], live: set[bytes]) -> int:
    """Drop rows that fail or name no present record; issue the missing ones again."""
    store = parts.store
    fixed = 0
    rows = [(str(p), bytes(t), bytes(r)) for p, t, r in
            conn.execute(select(pseudonyms.c.purpose, pseudonyms.c.tag, pseudonyms.c.ref))]
    have = set()
    for purpose, tag, ref in rows:
        keys = parts.purposes.get(purpose)
        if keys is None:
            continue
        if _pseudonym_row(keys, tag, ref, live) is not None:
            store.delete_pseudonym(conn, purpose, tag)
            fixed += 1
        else:
            have.add((purpose, tag))
    for rid, purpose in _expected_pseudonyms(parts, namer, live):
        keys = parts.purposes[purpose]
        tag = keys.tag(keys.value(rid))
        if (purpose, tag) not in have:
            store.put_pseudonym(conn, purpose, tag, keys.seal_ref(tag, rid))
            fixed += 1
    return fixed
