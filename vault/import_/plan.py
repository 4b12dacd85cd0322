"""Plan an import: which rows can be added, what is wrong with the others, and which
columns were not used. Pure: bytes and a mapping in, a plan out; no vault, no crypto.

Security rule: cells may be the names, passport numbers and phone numbers of people at
risk, and error text ends up in terminals, logs and screenshots. No cell value ever
appears in a RowError, an exception, a ``repr`` or a log line; messages name the line,
the column and the rule that was broken.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..normalize import normalize
from ..schema import Field, Schema
from .convert import cell_text, convert, date_of, list_items
from .mapping import Mapping, rule
from .source import Cell, SourceError, Table, read_table

__all__ = ["RowError", "RowValues", "ImportPlan", "plan_import", "DUPLICATE_RULES", "rule_key"]

#: Duplicate rules: (schema fields, normalisation kind per field, what the message says).
#: Only applied when every field exists in the schema and is mapped.
DUPLICATE_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("source_id",), ("compact",), "same source id"),
    (("email",), ("email",), "same e-mail"),
    (("passport_number",), ("compact",), "same passport number"),
    (("legal_name", "date_of_birth"), ("name", "none"), "same legal name and date of birth"),
)


@dataclass(frozen=True)
class RowError:
    """One problem in the file: where it is and which rule it breaks.

    ``line`` is the physical line on which the record starts (the header is line 1);
    ``column`` the header (or None for a problem with the whole row or file); ``message``
    never contains a cell value. ``kind`` "in_vault" marks a row whose person is already
    stored (a re-download), which ``--skip-bad`` treats as "nothing new", not a failure."""

    line: int
    column: str | None
    message: str
    kind: str = "error"

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"


class RowValues(dict[str, Any]):
    """The values of one planned row (a plain dict for ``Vault.add_many``).

    Only the ``repr`` differs: it shows field names, not values, so a row printed by
    a debugger, a log call or a test failure reveals no one.
    """

    def __repr__(self) -> str:
        return f"<RowValues fields=[{', '.join(sorted(self))}]>"

    __str__ = __repr__


@dataclass(frozen=True)
class Update:
    """A row whose source id names a stored record that differs: the fields to set."""

    line: int
    record_id: str
    values: RowValues

    @property
    def fields(self) -> list[str]:
        return sorted(self.values)


@dataclass
class ImportPlan:
    """What an import would do.

    ``rows`` (line, values) to add; ``errors`` every problem of every row (a row with any
    error is in neither ``rows`` nor ``updates``); ``total`` the data rows read;
    ``skipped`` (line, why) rows left out by the source-status filter; ``updates`` and
    ``unchanged`` rows matched to stored records by source id (see against.py);
    ``unmapped`` the header names no rule used (by position where a name could be a
    person's data, _Layout._shown); ``hints`` advice on file-level errors;
    ``not_compared`` fields an update could not compare (the role cannot read them);
    ``unreadable`` True when the errors are the whole file's (encoding, quoting, header),
    which no row can be skipped past. The repr shows counts only."""

    rows: list[tuple[int, dict[str, object]]]
    errors: list[RowError]
    total: int
    skipped: list[tuple[int, str]] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    unreadable: bool = False

    @property
    def ok(self) -> bool:
        """True when the file can be imported as a whole (no errors at all)."""
        return not self.errors

    def bad_lines(self) -> list[int]:
        """The distinct lines with at least one error, in file order."""
        return sorted({e.line for e in self.errors})

    @property
    def nothing_new(self) -> bool:
        """Nothing to add or update, and every problem is a row already in the vault."""
        return (not self.rows and not self.updates and bool(self.total)
                and all(e.kind == "in_vault" for e in self.errors))

    def __repr__(self) -> str:
        return (f"ImportPlan(total={self.total}, good_rows={len(self.rows)}, errors={len(self.errors)}, "
                f"updates={len(self.updates)}, skipped={len(self.skipped)})")

    __str__ = __repr__


def plan_import(data: bytes, mapping: Mapping, schema: Schema, *, encoding: str | None = None,
                include_status: bool = False) -> ImportPlan:
    """Read an export (CSV or XLSX) and work out which rows can be imported and what is wrong.

    Every problem of every row is collected (a dry run must show the whole list, so the
    operator fixes the file once rather than once per error). File-level problems
    (encoding, header, malformed quoting) plan no rows at all. ``schema`` must be the
    schema ``mapping`` was loaded with. ``include_status``: import the rows the source
    marks as not approved too."""
    wanted = tuple(mapping.columns) + tuple(p for ps in mapping.join.values() for p in ps)
    try:
        table = read_table(data, encoding=encoding, delimiter=mapping.delimiter, wanted=wanted)
    except SourceError as e:
        return ImportPlan([], [RowError(e.line, None, e.message)], 0, hints=[e.hint] if e.hint else [],
                          unreadable=True)
    total = len(table.rows)
    layout = _Layout(table, mapping, schema)
    if layout.errors:
        return ImportPlan([], layout.errors, total, unmapped=layout.unmapped(), hints=layout.hints(),
                          unreadable=True)  # the header's errors: every row would fail
    planner = _RowPlanner(mapping, schema, layout)
    out = ImportPlan([], [], total, unmapped=layout.unmapped(), hints=layout.hints())
    for line, cells in table.rows:
        if len(cells) != len(table.header):
            # Cells are shifted: checking them against their columns would only
            # produce misleading errors, so the count is the one error reported.
            out.errors.append(RowError(line, None, f"row has {len(cells)} cells, header has {len(table.header)}"))
            continue
        if not include_status and (why := layout.status_skip(cells)) is not None:
            out.skipped.append((line, why))
            continue
        values, row_errors = planner.plan(line, cells)
        out.errors.extend(row_errors)
        if not row_errors:
            out.rows.append((line, values))
    return out


# -- which columns feed which field ---------------------------------------------------------


@dataclass
class _Feed:
    """Where one field's value comes from: column indexes, and how to combine them."""

    kind: str  # "column" | "join" | "select"
    label: str  # the column name(s) an error names
    cols: list[int] = field(default_factory=list)
    options: list[tuple[str, int]] = field(default_factory=list)
    other: int | None = None


class _Layout:
    """The mapping applied to one header: each field's feed, the status column, and the
    columns nothing uses."""

    def __init__(self, table: Table, m: Mapping, schema: Schema) -> None:
        self.table, self.m, self.schema = table, m, schema
        self.header = table.header
        self.errors: list[RowError] = []
        self.used: set[int] = set()
        self.feeds: dict[str, _Feed] = {}
        self._missing = False
        # A header line wider than every row is probably a header that swallowed the first
        # row (its line break lost): its cells may be a person's, so none is named.
        self.swallowed = bool(table.rows) and all(len(c) < len(self.header) for _, c in table.rows)
        self._columns()
        self._joins()
        self._selects()
        self.status = self._find_one(m.status_column, required=m.missing_columns == "error") \
            if m.status_column else None
        self.skip = {s.casefold() for s in m.skip_status}
        if not self.errors:
            self._required()

    def _matches(self, key: str) -> list[int]:
        return [i for i, h in enumerate(self.header)
                if h == key or (self.m.match_groups and h.endswith("/" + key))]

    def _missing_column(self, key: str) -> None:
        self._missing = True
        self.errors.append(RowError(self.table.header_line, key, "missing column"))

    def _find_one(self, key: str, *, required: bool) -> int | None:
        hits = self._matches(key)
        if not hits:
            if required:
                self._missing_column(key)
            return None
        if len(hits) > 1:
            exact = [i for i in hits if self.header[i] == key]
            if len(exact) == 1 and self.m.match_groups:
                hits = exact
            else:
                msg = ("column appears more than once in the header" if len(exact) > 1 or not self.m.match_groups
                       else "column matches several headers (in different groups)")
                self.errors.append(RowError(self.table.header_line, key, msg))
                return None
        self.used.add(hits[0])
        return hits[0]

    def _columns(self) -> None:
        strict = self.m.missing_columns == "error"
        for key, target in self.m.columns.items():
            i = self._find_one(key, required=strict)
            if i is None:
                continue
            if target in self.feeds:  # a lenient mapping's second candidate column for a field
                self.errors.append(RowError(self.table.header_line, self.header[i],
                                            f"field {target!r} is fed by two columns in this file "
                                            f"({self.feeds[target].label!r} too)"))
                continue
            self.feeds[target] = _Feed("column", self.header[i], [i])

    def _joins(self) -> None:
        strict = self.m.missing_columns == "error"
        for target, parts in self.m.join.items():
            cols = [i for p in parts if (i := self._find_one(p, required=strict)) is not None]
            if cols and target not in self.feeds:
                self.feeds[target] = _Feed("join", " + ".join(self.header[i] for i in cols), cols)

    def _selects(self) -> None:
        strict = self.m.missing_columns == "error"
        for target, spec in self.m.select_many.items():
            col = self._find_one(spec.column, required=strict) if spec.column else None
            other = self._find_one(spec.other, required=strict) if spec.other else None
            options = self._option_columns(spec.options) if spec.options else []
            if spec.options and strict and not options and col is None:
                self._missing_column(spec.options + "...")
            if col is None and other is None and not options:
                continue
            label = spec.column or spec.options or spec.other or target
            self.feeds[target] = _Feed("select", label, [col] if col is not None else [], options, other)

    def _option_columns(self, prefix: str) -> list[tuple[str, int]]:
        """(choice, index) of every "PREFIX choice" column (with match_groups, also behind a
        group: "needs/dietary/halal" for "dietary/")."""
        out = []
        for i, h in enumerate(self.header):
            for start in [0] + ([k + 1 for k, c in enumerate(h) if c == "/"] if self.m.match_groups else []):
                tail = h[start:]
                if tail.startswith(prefix) and len(tail) > len(prefix) and "/" not in tail[len(prefix):]:
                    out.append((tail[len(prefix):], i))
                    self.used.add(i)
                    break
        return out

    def _required(self) -> None:
        """With a lenient mapping, the file itself must hold the fields a record needs."""
        fed = set(self.feeds)
        line = self.table.header_line
        for f in self.schema.fields.values():
            if f.required and f.name not in fed:
                self.errors.append(RowError(line, None, f"no column of this file feeds required field {f.name!r}"))
        for group in self.schema.required_any:
            if not set(group) & fed:
                self.errors.append(RowError(line, None, f"no column of this file feeds any of {', '.join(group)}"))
        if self.errors:
            self._missing = True

    def status_skip(self, cells: list[Cell]) -> str | None:
        """Why the source-status filter leaves this row out, or None."""
        if self.status is None or not self.skip:
            return None
        if cell_text(cells[self.status]).casefold() in self.skip:
            return f"source status ({self.header[self.status]}) says not approved"
        return None

    def _shown(self, i: int) -> str:
        """Header cell ``i`` as a report may name it: by position when the first line is no
        header (no cell is a column the mapping names: an export saved without its header
        line, whose first line is a person's data) or when the cell looks like a value (an
        address, a number, a date). Why: the report goes to a screen and a terminal's
        scrollback, and must not carry the names, passport numbers or e-mails of a row."""
        h = self.header[i]
        if not h:
            return f"(unnamed column {i + 1})"
        return f"(column {i + 1})" if not self.used or self.swallowed or _looks_like_value(h) else h

    def unmapped(self) -> list[str]:
        return [self._shown(i) for i in range(len(self.header)) if i not in self.used]

    def hints(self) -> list[str]:
        if self.swallowed:
            return [f"the header line has more cells than any row ({len(self.header)}): is the line break after "
                    "the header missing? (Its cells are not shown: they may be a person's data)"]
        if not self._missing:
            return []
        if not self.used:
            return [f"the file's first line does not look like a header: none of its {len(self.header)} cell(s) is a "
                    "column the mapping names (was the export saved without its header line? Its cells are not "
                    "shown: they may be a person's data)"]
        return ["the file's header has: " + ", ".join(repr(self._shown(i)) for i in range(len(self.header)))]


def _looks_like_value(text: str) -> bool:
    """A header cell that reads as data rather than a column name: an e-mail address, or
    four digits or more (a passport or phone number, a date). Column names rarely carry
    either; one that does is named by its position, which loses little."""
    return "@" in text or sum(c.isdigit() for c in text) >= 4


# -- one row ---------------------------------------------------------------------------------


class _RowPlanner:
    """Per-row conversion plus the duplicate bookkeeping across rows."""

    def __init__(self, m: Mapping, schema: Schema, layout: _Layout) -> None:
        self.m, self.schema, self.layout = m, schema, layout
        self.rules = [r for r in DUPLICATE_RULES if all(f in layout.feeds for f in r[0])]
        self.seen_rows: dict[tuple[Any, ...], int] = {}
        self.seen_keys: list[dict[tuple[Any, ...], int]] = [{} for _ in self.rules]

    def plan(self, line: int, cells: list[Cell]) -> tuple[RowValues, list[RowError]]:
        errors: list[RowError] = []
        values = RowValues()
        identity: list[tuple[Any, ...]] = []
        for fname, feed in self.layout.feeds.items():
            f = self.schema.fields[fname]
            try:
                value = self._value(f, feed, cells)
                if value is not None:
                    value = f.canonical(value)
                    f.encode(value)
            except ValidationError as e:
                errors.append(RowError(line, feed.label, rule(e, fname)))
                identity.append((fname, "raw", tuple(cell_text(cells[i]) for i in feed.cols)))
                continue
            if value is None or value == []:
                if f.required:
                    errors.append(RowError(line, feed.label, f"field {fname!r} is required but the cell is empty"))
                identity.append((fname, "absent"))
                continue
            values[fname] = value
            identity.append((fname, "ok", tuple(value) if isinstance(value, list) else value))
        if not errors:
            try:
                self.schema.check_required(values)
            except ValidationError as e:
                errors.append(RowError(line, None, str(e)))
        errors.extend(self._duplicates(line, tuple(identity), values, claim=not errors))
        return values, errors

    def _value(self, f: Field, feed: _Feed, cells: list[Cell]) -> Any:
        """The field's value from its columns, or None when they are empty."""
        if feed.kind == "select":
            cell = cell_text(cells[feed.cols[0]]) if feed.cols else ""
            other = cell_text(cells[feed.other]) if feed.other is not None else ""
            opts = [(c, cell_text(cells[i])) for c, i in feed.options]
            if not any(v for _c, v in opts):  # the question was not shown: no 0/1 at all
                opts = []
            items = list_items(f, self.m, cell, opts, other)
            if f.type == "text":
                return ", ".join(items) or None
            return items or None
        if feed.kind == "join":
            text = " ".join(t for i in feed.cols if (t := cell_text(cells[i])))
        else:
            raw = cells[feed.cols[0]]
            if isinstance(raw, _dt.date) and f.type == "date" and f.name not in self.m.values:
                return raw  # an XLSX date cell is a date already
            text = cell_text(raw)
        if not text:
            return None
        if f.type == "list":
            return list_items(f, self.m, text, [], None)
        if f.name == "source_id" and self.m.source and f.name not in self.m.values:
            return f"{self.m.source}:{text}"
        if f.type == "date" and f.name not in self.m.values:
            return date_of(f, text, self.m)
        return convert(f, text, self.m)

    def _duplicates(self, line: int, identity: tuple[Any, ...], values: RowValues, *, claim: bool) -> list[RowError]:
        """Compare with earlier rows. Only a row without errors (``claim``) claims its
        e-mail, passport...: a form re-submitted to correct a bad first submission is the
        one to import, and with --skip-bad a claim by the bad row would lose both."""
        first = self.seen_rows.get(identity)
        if first is not None:
            return [RowError(line, None, f"duplicate of line {first} (identical row)")]
        if claim:
            self.seen_rows[identity] = line
        hits: dict[int, list[tuple[str, str]]] = {}
        for (fields, kinds, what), seen in zip(self.rules, self.seen_keys, strict=False):
            key = rule_key(fields, kinds, values)
            if key is None:
                continue
            earlier = seen.get(key)
            if earlier is None:
                if claim:
                    seen[key] = line
            else:
                hits.setdefault(earlier, []).append((self.layout.feeds[fields[0]].label, what))
        out = []
        for earlier, reasons in sorted(hits.items()):
            column = reasons[0][0] if len(reasons) == 1 else None
            out.append(RowError(line, column, f"duplicate of line {earlier} ({'; '.join(r for _, r in reasons)})"))
        return out


def rule_key(fields: tuple[str, ...], kinds: tuple[str, ...], values: Any) -> tuple[Any, ...] | None:
    """What a duplicate rule compares for one row or record: its fields normalised, or None
    when one is absent or normalises to nothing (no key: nothing to be a duplicate of)."""
    if not all(f in values for f in fields):
        return None
    key = tuple(normalize(kind, v) if isinstance(v := values[f], str) else v
                for f, kind in zip(fields, kinds, strict=False))
    return None if any(k == "" for k in key) else key
