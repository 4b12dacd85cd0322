"""One cell (or the cells of a join or a select-many answer) -> a field value.

Each function raises ValidationError with a message that names the rule, never the cell.
The value is then checked by the field itself (``Field.canonical`` and ``encode``, the
checks ``Vault.add_many`` applies), so a planned row cannot be refused later.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from typing import Any

from ..errors import ValidationError
from ..schema import Field
from .mapping import Mapping, format_label
from .source import Cell

__all__ = ["convert", "date_of", "list_items", "cell_text"]

# YYYY-MM-DD, optionally followed by the time part of an ISO datetime.
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
# Day and month in either order, then the year: 03/04/1990, 3.4.1990, 03-04-1990.
_AMBIGUOUS_RE = re.compile(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_OPTION_TRUE = {"1", "true", "yes"}
_OPTION_FALSE = {"0", "false", "no", ""}


def cell_text(c: Cell) -> str:
    """A cell as text: line breaks inside a quoted CSV cell become "\\n" whatever the file
    used, and the text is stripped (an XLSX date cell becomes YYYY-MM-DD)."""
    if isinstance(c, _dt.date):
        return c.isoformat()
    return c.replace("\r\n", "\n").replace("\r", "\n").strip()


def convert(f: Field, text: str, m: Mapping) -> Any:
    """The value of ``f`` for a non-empty cell text (not a list field: see list_items)."""
    table = m.values.get(f.name)
    if table is not None:
        hit = _lookup(table, text)
        if hit is _MISS:
            raise ValidationError("not one of the values the mapping lists", field=f.name)
        if isinstance(hit, list):  # choices for a text field (a schema from before list fields)
            return ", ".join(hit) or None
        return hit
    t = f.type
    if t == "text":
        return text
    if t == "date":
        return date_of(f, text, m)
    if t == "bool":
        folded = text.casefold()
        if folded in {v.casefold() for v in m.true_values}:
            return True
        if folded in {v.casefold() for v in m.false_values}:
            return False
        raise ValidationError(f"expects {'/'.join(m.true_values)} or {'/'.join(m.false_values)}", field=f.name)
    if t == "integer":
        if not _INT_RE.fullmatch(text):
            raise ValidationError("expects an integer", field=f.name)
        sign, digits = text[0] if text[0] in "+-" else "", text.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 19:  # no 64-bit value has more; and int() of over 4300 digits raises ValueError
            raise ValidationError("is out of the 64-bit range", field=f.name)
        return int(sign + digits)
    if t == "enum":
        return _enum(f, text)
    raise ValidationError(f"cannot be read from one cell ({t})", field=f.name)


def _enum(f: Field, text: str) -> str:
    if text in f.values:
        return text
    matches = [v for v in f.values if v.casefold() == text.casefold()]
    if len(matches) == 1:
        return matches[0]
    raise ValidationError(f"expects one of: {', '.join(f.values)}", field=f.name)


_MISS = object()


def _lookup(table: dict[str, object], text: str) -> object:
    """A values table entry: exact match first, then case-insensitive."""
    if text in table:
        return table[text]
    folded = text.casefold()
    for key, value in table.items():
        if key.casefold() == folded:
            return value
    return _MISS


def date_of(f: Field, text: str, m: Mapping) -> _dt.date:
    """ISO 8601 (a date, or the day of a datetime), then the mapping's date formats.

    A day/month/year cell under no format is refused as ambiguous rather than guessed
    (03/04/1990 is 3 April in Europe, 4 March in the US); a cell that fits a format but
    names no real day (1987-02-30) is refused as such, apart from "not in the format"."""
    iso = _DATE_RE.fullmatch(text)
    if iso is not None:
        return _real_date(f, int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    out_of_range = False
    for fmt in m.date_formats:
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError as e:  # the message quotes the text: only its kind is used
            out_of_range = out_of_range or "does not match format" not in str(e) and "unconverted" not in str(e)
    if out_of_range:
        raise ValidationError("is not a real date (no such day in that month)", field=f.name)
    accepted = " or ".join(["YYYY-MM-DD"] + [format_label(x) for x in m.date_formats])
    if not m.date_formats and _AMBIGUOUS_RE.fullmatch(text):
        raise ValidationError(
            f"expects a date ({accepted}); day and month could be either way round here: name the "
            "format with options.date_formats in the mapping or --date-format, e.g. %d/%m/%Y",
            field=f.name)
    raise ValidationError(f"expects a date ({accepted})", field=f.name)  # not in the expected format


def _real_date(f: Field, y: int, mo: int, d: int) -> _dt.date:
    try:
        return _dt.date(y, mo, d)
    except ValueError:
        pass  # raised below, outside the handler
    raise ValidationError("is not a real date (no such day in that month)", field=f.name)


def list_items(f: Field, m: Mapping, cell: str | None, options: Sequence[tuple[str, str]],
               other: str | None) -> list[str]:
    """The items of a list field (or, for a text field, items to join with ", ").

    ``options`` (choice, cell) pairs of 0/1 columns win over ``cell`` when present: they
    are unambiguous, while a space-separated cell of labels ("Halal Nut allergy") is not.
    Each choice goes through the field's values table (labels -> codes; [] for "none").
    ``other`` (free text) replaces the "other" choice, or is added as one more item."""
    table = m.values.get(f.name)
    items: list[str] = []
    if options:
        for choice, flag in options:
            low = flag.strip().casefold()
            if low in _OPTION_FALSE:
                continue
            if low not in _OPTION_TRUE:
                raise ValidationError("a choice column holds something other than 1 or 0", field=f.name)
            items += _mapped(f, table, choice)
    elif cell:
        whole = _lookup(table, cell) if table is not None else _MISS
        if whole is not _MISS:
            items += whole if isinstance(whole, list) else [str(whole)]
        else:
            items += _split(f, table, cell)
    if other:
        items = [i for i in items if i.casefold() != "other"] + [other]
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)  # a choice ticked and also typed is one item
    return list(seen)


def _mapped(f: Field, table: dict[str, object] | None, choice: str) -> list[str]:
    """A choice through the values table. A choice the table does not list is kept as it is
    when the field takes free items (the table renames some: a label to its code), and is
    an error when the field's items are fixed (the schema lists them)."""
    hit = _lookup(table, choice) if table is not None else _MISS
    if hit is _MISS:
        if f.values and choice not in f.values:
            raise ValidationError("has a choice the mapping does not list", field=f.name)
        return [choice]
    return hit if isinstance(hit, list) else [str(hit)]


def _split(f: Field, table: dict[str, object] | None, cell: str) -> list[str]:
    """Kobo joins the chosen codes with spaces (codes never contain one). Labels can, so
    with a values table the words are grouped into listed labels, the fewest groups
    winning ("no pork" is one listed answer, not "no" and "pork"); a cell that can be
    grouped in two equally good ways is refused as ambiguous."""
    words = cell.split()
    if table is None:
        return [i for w in words for i in _mapped(f, None, w)]
    best = _parses(words, table, free=not f.values)
    if best is None:
        raise ValidationError("has a choice the mapping does not list", field=f.name)
    if best is _AMBIGUOUS:
        raise ValidationError("is ambiguous: its words can be read as different sets of choices", field=f.name)
    out: list[str] = []
    for hit in best:
        out += hit if isinstance(hit, list) else [str(hit)]
    return out


_AMBIGUOUS: list[object] = []


def _parses(words: list[str], table: dict[str, object], *, free: bool) -> list[object] | None:
    """The cut of ``words`` into the fewest runs that are keys of ``table`` (with ``free``,
    a single word not in the table is a run of its own); None when there is no cut,
    _AMBIGUOUS when two cuts tie."""
    # memo[i]: (runs, ambiguous, values) for words[i:]
    memo: dict[int, tuple[int, bool, list[object]] | None] = {len(words): (0, False, [])}
    for start in range(len(words) - 1, -1, -1):
        best: tuple[int, bool, list[object]] | None = None
        for end in range(start + 1, len(words) + 1):
            rest = memo[end]
            hit = _lookup(table, " ".join(words[start:end]))
            if hit is _MISS and free and end == start + 1:
                hit = words[start]
            if hit is _MISS or rest is None:
                continue
            cand = (rest[0] + 1, rest[1], [hit, *rest[2]])
            if best is None or cand[0] < best[0]:
                best = cand
            elif cand[0] == best[0]:
                best = (best[0], True, best[2])
        memo[start] = best
    top = memo[0]
    if top is None:
        return None
    return _AMBIGUOUS if top[1] else top[2]
