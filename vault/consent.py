"""Consent in exports: the schema's ``[consent]`` table (docs/format.md, "Schema text").

A schema may name, for any of its purposes, a ``bool`` field that says whether the
person agreed to that use::

    [consent]
    badge = "photo_consent"

Every export under that purpose then reads the consent field as well, and each person
whose field is not ``true`` (``false``, or never given) is either left out (``omit``:
a photographer's list, a press list) or kept and marked (``mark``: a badge sheet, where
everyone needs a badge but those without consent carry a "no photos" mark). Not given
counts as no: consent is something a person gives, not something they forgot to refuse.

Only the public :class:`~vault.vault.Vault` methods are used: the export is the library's
own (one audited ``export`` entry, which names the consent field among the fields read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .schema import Schema
from .schema import consent_table as parse  # noqa: F401 - the table's parser, where the schema reads it

if TYPE_CHECKING:
    from .vault import Vault

#: What an export does with a person whose consent field is not true.
WITHOUT_CONSENT = ("omit", "mark")


def field_for(schema: Schema, purpose: str | None) -> str | None:
    """The consent field the schema names for ``purpose``, if any."""
    if purpose is None:
        return None
    return dict(getattr(schema, "consent", {}) or {}).get(purpose)


@dataclass(frozen=True)
class ConsentExport:
    """Rows of an export with consent applied, and what was done, as counts only."""

    rows: list[dict[str, Any]]
    columns: list[str]
    consent_field: str | None
    without: int  # people without consent: left out (omit) or marked (mark)
    mode: str


def export(v: Vault, fields: Sequence[str], purpose: str | None, *, without_consent: str = "mark",
           progress: Callable[[int, int], None] | None = None) -> ConsentExport:
    """``v.export(fields, purpose)`` with the schema's consent rule for ``purpose`` applied.

    ``omit``: rows without consent are dropped, and the consent field is dropped from the
    rest unless asked for. ``mark``: every row stays and carries the consent field as
    true or false (not given reads as false). Without a rule for the purpose, the export
    is unchanged. The columns returned start with ``pseudonym`` when a purpose is given."""
    if without_consent not in WITHOUT_CONSENT:
        raise ValidationError(f"without_consent must be one of: {', '.join(WITHOUT_CONSENT)}")
    names = list(fields)
    cf = field_for(v.schema, purpose)
    asked = cf in names if cf else False
    read = names + ([cf] if cf and not asked else [])
    rows = v.export(read, purpose=purpose, progress=progress)
    lead = ["pseudonym"] if purpose is not None else []
    if cf is None:
        return ConsentExport(rows, lead + names, None, 0, without_consent)
    without = 0
    out: list[dict[str, Any]] = []
    for row in rows:
        ok = row.get(cf) is True
        without += not ok
        if without_consent == "omit" and not ok:
            continue
        row[cf] = ok
        if without_consent == "omit" and not asked:
            del row[cf]
        out.append(row)
    columns = lead + names + ([cf] if without_consent == "mark" and not asked else [])
    return ConsentExport(out, columns, cf, without, without_consent)
