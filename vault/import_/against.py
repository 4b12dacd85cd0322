"""A plan checked against what the vault already holds.

Re-importing a fresh download of the whole form is the usual workflow. It must not give
anyone a second record (two pseudonyms, two badges), and a corrected answer (a passport
number fixed on the form) must reach the record instead of being dropped as "already
in the vault". So: a row whose source id (Kobo ``_uuid``, CiviCRM contact id) names a
stored record is compared with it field by field, and becomes an update of the fields
that differ, or "unchanged"; any other row with a stored record's e-mail, passport
number, or name and birth date is refused as already in the vault.

Reading the stored values is an access like any other: one ``read_all`` entry names the
fields read. Only fields the caller's role can read are compared; the others are listed
in ``ImportPlan.not_compared`` (a write-only role cannot tell whether they changed).
"""

from __future__ import annotations

from typing import Any

from ..normalize import normalize
from .plan import DUPLICATE_RULES, ImportPlan, RowError, RowValues, Update, rule_key

__all__ = ["check_against_vault"]

_SOURCE = "source_id"


def check_against_vault(v: Any, plan: ImportPlan) -> tuple[ImportPlan, list[str]]:
    """The plan split into rows to add, updates, unchanged rows and rows already in the
    vault (errors of kind "in_vault"); and the duplicate rules that could not be checked
    because the caller's role cannot read their fields."""
    mapped = {f for _, values in plan.rows for f in values}
    rules = [r for r in DUPLICATE_RULES if r[0] != (_SOURCE,)
             and all(f in v.schema.fields for f in r[0]) and set(r[0]) <= mapped]
    usable = [r for r in rules if all(f in v.readable_fields for f in r[0])]
    unchecked = [r[2] for r in rules if r not in usable]
    by_source = _SOURCE in mapped and _SOURCE in v.readable_fields
    if (not usable and not by_source) or not plan.rows:
        return plan, unchecked
    compare = sorted(f for f in mapped if f in v.readable_fields) if by_source else []
    needed = sorted({f for fields, _, _ in usable for f in fields} | set(compare) | ({_SOURCE} if by_source else set()))
    stored: list[set[tuple[Any, ...]]] = [set() for _ in usable]
    sources: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rec in v.records(fields=needed):
        for (fields, kinds, _), keys in zip(usable, stored, strict=False):
            if (key := rule_key(fields, kinds, rec)) is not None:
                keys.add(key)
        if by_source and isinstance(sid := rec.get(_SOURCE), str) and (k := normalize("compact", sid)):
            sources.setdefault(k, []).append((rec.id, {f: rec[f] for f in compare if f in rec}))
    out = ImportPlan([], list(plan.errors), plan.total, skipped=plan.skipped, unmapped=plan.unmapped,
                     hints=plan.hints, unreadable=plan.unreadable)
    if by_source:
        out.not_compared = sorted(f for f in mapped if f not in v.readable_fields)
    for line, values in plan.rows:
        sid = values.get(_SOURCE)
        matches = sources.get(normalize("compact", sid), []) if by_source and isinstance(sid, str) else []
        if len(matches) > 1:
            out.errors.append(RowError(line, None, f"its source id names {len(matches)} stored records"))
        elif matches:
            _compare(out, line, values, *matches[0], compare)
        elif hits := [what for (fields, kinds, what), keys in zip(usable, stored, strict=False)
                      if (key := rule_key(fields, kinds, values)) is not None and key in keys]:
            out.errors.append(RowError(line, None, f"already in the vault ({'; '.join(hits)})", kind="in_vault"))
        else:
            out.rows.append((line, values))
    out.errors.sort(key=lambda e: e.line)
    return out, unchecked


def _compare(out: ImportPlan, line: int, values: dict[str, object], rid: str,
             have: dict[str, Any], compare: list[str]) -> None:
    """An update of the readable fields whose value differs (a field empty in the file
    is left as stored: removing data is for ``dvault edit``, not for a download)."""
    changes = RowValues({f: x for f, x in values.items() if f in compare and have.get(f) != x})
    if changes:
        out.updates.append(Update(line, rid, changes))
    else:
        out.unchanged.append(line)
