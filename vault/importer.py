"""Plan the import of a CSV export (KoboToolbox, ODK, a spreadsheet) into a vault.

Registration forms are usually collected with a survey tool and arrive as one CSV
export. This module turns that export into field values the vault accepts, *without*
touching a vault: it is pure (bytes in, plan out; no database, no crypto), so the CLI
can run it as a dry run, show every problem at once and import nothing until the file
is clean (``dvault import FILE.csv --mapping MAP.toml``, ``--skip-bad`` to import only
the good rows).

Security rule: cell values may be the names, passport numbers and phone numbers of
people at risk, and error text ends up in terminals, logs and screenshots. No cell
value ever appears in a :class:`RowError`, an exception, a ``repr`` or a log line;
messages name the physical line, the CSV column (taken from the mapping file, never
from the data) and the rule that was broken. :class:`ImportPlan` and the row value
dicts have ``repr`` forms that show field names and counts only.

Mapping file
============

A mapping is TOML with three tables; no other top-level key is accepted, so a typo
cannot silently disable a rule::

    [options]                     # optional table
    delimiter = ";"               # optional; one character. Default: chosen between
                                  # ";" and "," by parsing the header line with each
    true_values = ["yes", "true", "1"]    # optional; for bool fields without a
    false_values = ["no", "false", "0"]   # [values.FIELD] table (case-insensitive)

    [columns]                     # required: CSV header -> schema field
    "personal/full_name" = "legal_name"
    "contact/email" = "email"

    [values.photo_consent]        # optional, per field: CSV text -> value
    yes = true
    no = false

Rules checked when the mapping is loaded (:func:`load_mapping`, raising
:class:`MappingError`): every target field exists in the schema; no field is the
target of two columns; every required schema field is mapped; a ``[values.FIELD]``
table names a mapped field, is not empty, holds values of the field's type (TOML
booleans for bool, integers for integer, ``YYYY-MM-DD`` or a TOML date for date, a
listed value for enum) and has no two keys that differ only in case.

CSV columns that the mapping does not name (Kobo's ``_id``, ``_uuid``,
``_submission_time``, ``start``/``end``...) are ignored.

How a cell becomes a value (:func:`plan_import`)
================================================

* Line breaks inside a quoted cell become ``\n`` (CRLF files give ``\r\n``); the
  cell is stripped; an empty cell means "field absent" (not an empty string).
* If the field has a ``[values.FIELD]`` table, the text is looked up there (exact
  match first, then case-insensitive); text not listed is an error.
* Otherwise by the field's type: ``text`` -> the stripped text; ``date`` ->
  ``datetime.date`` from ``YYYY-MM-DD``, or from the leading date of an ISO datetime
  such as ``2026-09-13T06:00:00.000+02:00`` (survey tools export both); ``bool`` ->
  ``true_values``/``false_values`` (case-insensitive); ``integer`` -> ``int`` (ASCII
  digits with an optional sign); ``enum`` -> one of the field's values (exact, then
  case-insensitive, giving the schema's spelling).
* The value is then checked by :meth:`vault.schema.Field.encode`, the same check
  ``Vault.add_many`` applies, so a planned row cannot be refused later.

Rows that repeat an earlier row are refused (registration forms get submitted twice,
and a person registered twice gets two pseudonyms and two badges): same mapped values,
same normalised e-mail, same normalised passport number, or same normalised legal name
and date of birth. The first occurrence is kept.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import ValidationError
from .normalize import normalize
from .schema import Field, Schema, parse_date

__all__ = ["MappingError", "RowError", "Mapping", "ImportPlan", "RowValues",
           "load_mapping", "plan_import", "check_against_vault"]

#: Defaults for bool fields without a values table (compared case-insensitively).
DEFAULT_TRUE_VALUES: tuple[str, ...] = ("yes", "true", "1")
DEFAULT_FALSE_VALUES: tuple[str, ...] = ("no", "false", "0")

#: Delimiters tried when the mapping does not name one.
SNIFF_DELIMITERS: tuple[str, ...] = (";", ",")

#: Duplicate rules: (schema fields, normalisation kind per field, what the message says).
#: Only applied when every field exists in the schema and is mapped.
DUPLICATE_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("email",), ("email",), "same e-mail"),
    (("passport_number",), ("compact",), "same passport number"),
    (("legal_name", "date_of_birth"), ("name", "none"), "same legal name and date of birth"),
)

_TOP_KEYS = {"options", "columns", "values"}
_OPTION_KEYS = {"delimiter", "true_values", "false_values"}
# YYYY-MM-DD, optionally followed by the time part of an ISO datetime.
_DATE_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")


class MappingError(ValidationError):
    """The mapping file is malformed or does not fit the schema.

    A subclass of ValidationError so callers that already handle bad input handle
    this too. Messages name mapping keys and schema fields (text the operator wrote),
    never data from a CSV file.
    """


@dataclass(frozen=True)
class RowError:
    """One problem in the CSV file: where it is and which rule it breaks.

    ``line`` is the physical line on which the record starts (the header is line 1),
    so an operator can find it in an editor; ``column`` is the CSV header (from the
    mapping) or None for a problem with the whole row or file. ``message`` never
    contains a cell value.
    """

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Mapping:
    """A parsed, checked mapping file (see the module docstring for the format).

    ``columns`` maps CSV header -> schema field; ``values`` maps schema field ->
    {CSV text -> value}; ``delimiter`` None means "sniff ';' or ','".
    """

    columns: dict[str, str]
    values: dict[str, dict[str, object]] = field(default_factory=dict)
    delimiter: str | None = None
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES
    false_values: tuple[str, ...] = DEFAULT_FALSE_VALUES


class RowValues(dict):
    """The values of one planned row (a plain dict for ``Vault.add_many``).

    Only the ``repr`` differs: it shows field names, not values, so a row printed by
    a debugger, a log call or a test failure reveals no one.
    """

    def __repr__(self) -> str:
        return f"<RowValues fields=[{', '.join(sorted(self))}]>"

    __str__ = __repr__


@dataclass
class ImportPlan:
    """What an import would do: the good rows and every problem found.

    ``rows`` holds (line, values) for the rows that passed every check, ready for
    ``Vault.add_many``; ``errors`` holds every problem of every row (a row with any
    error is not in ``rows``); ``total`` counts the data records read (blank lines
    excluded). The repr shows counts only.
    """

    rows: list[tuple[int, dict[str, object]]]
    errors: list[RowError]
    total: int

    @property
    def ok(self) -> bool:
        """True when the file can be imported as a whole (no errors at all)."""
        return not self.errors

    def bad_lines(self) -> list[int]:
        """The distinct lines with at least one error, in file order."""
        return sorted({e.line for e in self.errors})

    def __repr__(self) -> str:
        return f"ImportPlan(total={self.total}, good_rows={len(self.rows)}, errors={len(self.errors)})"

    __str__ = __repr__


# -- mapping -------------------------------------------------------------------------------


def load_mapping(text: str, schema: Schema) -> Mapping:
    """Parse and check a mapping TOML against ``schema``.

    Everything that can be checked without the CSV is checked here, so a wrong
    mapping fails once, up front, instead of as one error per row.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"mapping is not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise MappingError("mapping is nested too deeply to be a mapping") from None
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise MappingError(f"mapping: unknown key(s) {', '.join(sorted(unknown))} "
                           "(expected [options], [columns], [values.FIELD])")

    options = doc.get("options", {})
    if not isinstance(options, dict):
        raise MappingError("mapping: options must be a table")
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise MappingError(f"mapping: unknown option(s) {', '.join(sorted(unknown))}")
    delimiter = options.get("delimiter")
    if delimiter is not None and (
        not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n"
    ):
        raise MappingError("mapping: options.delimiter must be one character (not a quote or newline)")
    true_values = _word_list(options, "true_values", DEFAULT_TRUE_VALUES)
    false_values = _word_list(options, "false_values", DEFAULT_FALSE_VALUES)
    if {v.casefold() for v in true_values} & {v.casefold() for v in false_values}:
        raise MappingError("mapping: options.true_values and options.false_values overlap")

    columns = doc.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise MappingError("mapping needs a non-empty [columns] table (CSV header = schema field)")
    by_field: dict[str, str] = {}
    for header, target in columns.items():
        if not header.strip():
            raise MappingError("mapping: [columns] has an empty CSV header")
        if header != header.strip():
            raise MappingError(f"mapping: CSV header {header!r} has leading or trailing spaces")
        if not isinstance(target, str):
            raise MappingError(f"mapping: column {header!r} must map to a schema field name")
        if target not in schema.fields:
            raise MappingError(f"mapping: column {header!r} maps to unknown field {target!r}")
        if target in by_field:
            raise MappingError(
                f"mapping: field {target!r} is mapped twice (columns {by_field[target]!r} and {header!r})"
            )
        by_field[target] = header
    missing = [f.name for f in schema.fields.values() if f.required and f.name not in by_field]
    if missing:
        raise MappingError(f"mapping: required field(s) not mapped: {', '.join(missing)}")

    raw_values = doc.get("values", {})
    if not isinstance(raw_values, dict):
        raise MappingError("mapping: values must be a table of [values.FIELD] tables")
    values: dict[str, dict[str, object]] = {}
    for fname, table in raw_values.items():
        if fname not in schema.fields:
            raise MappingError(f"mapping: [values.{fname}] names an unknown field")
        if fname not in by_field:
            raise MappingError(f"mapping: [values.{fname}] is for a field no column maps to")
        if not isinstance(table, dict) or not table:
            raise MappingError(f"mapping: [values.{fname}] must be a non-empty table")
        values[fname] = _value_table(schema.fields[fname], table)

    return Mapping(columns=dict(columns), values=values, delimiter=delimiter,
                   true_values=true_values, false_values=false_values)


def _word_list(options: dict, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    v = options.get(key)
    if v is None:
        return default
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
        raise MappingError(f"mapping: options.{key} must be a non-empty list of non-empty strings")
    return tuple(s.strip() for s in v)


def _value_table(f: Field, table: dict) -> dict[str, object]:
    """Check one [values.FIELD] table: each value must be one the field accepts."""
    out: dict[str, object] = {}
    folded: dict[str, object] = {}
    for key, value in table.items():
        where = f"mapping: [values.{f.name}] entry {key!r}"
        if not key.strip():
            raise MappingError(f"mapping: [values.{f.name}] has an empty key")
        if isinstance(value, _dt.datetime) or isinstance(value, (dict, list)):
            raise MappingError(f"{where}: not a value for a {f.type} field")
        if f.type == "date" and isinstance(value, str):
            try:
                value = parse_date(value, f.name)
            except ValidationError:
                pass  # left as text: f.encode below says what a date must look like
        try:
            f.encode(value)
        except ValidationError as e:
            raise MappingError(f"{where}: {_rule(e, f.name)}", field=f.name) from None
        k = key.strip()
        fk = k.casefold()
        if fk in folded and folded[fk] != value:
            raise MappingError(f"mapping: [values.{f.name}] has keys that differ only in case "
                               "but map to different values")
        folded[fk] = value
        out[k] = value
    return out


# -- CSV -----------------------------------------------------------------------------------


class _Malformed(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(start line, cells) for each CSV record; blank lines are skipped.

    The line is the physical line where the record starts, counting line breaks
    inside quoted cells, so it matches what an editor shows.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    prev = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # csv's messages carry no cell text, but we keep to fixed wording anyway.
            if "field larger than field limit" in str(e):
                msg = f"malformed CSV: a cell is longer than {csv.field_size_limit()} characters"
            else:
                msg = "malformed CSV: a quote is not closed, or text follows a closing quote"
            raise _Malformed(prev + 1, msg) from None
        start = prev + 1
        prev = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        yield start, cells


def _sniff(text: str, mapping: Mapping) -> str:
    """Pick ';' or ',': the one whose header finds more mapped columns, then more cells."""
    best, best_score = SNIFF_DELIMITERS[-1], (-1, -1)
    for d in SNIFF_DELIMITERS:
        try:
            header = next(_records(text, d), (1, []))[1]
        except _Malformed:
            continue
        names = {h.strip() for h in header}
        score = (sum(1 for c in mapping.columns if c in names), len(header))
        if score > best_score:
            best, best_score = d, score
    return best


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8")  # strict: latin-1, UTF-16 and lone surrogates fail


# -- planning ------------------------------------------------------------------------------


def plan_import(data: bytes, mapping: Mapping, schema: Schema) -> ImportPlan:
    """Read a CSV export and work out which rows can be imported and what is wrong.

    Every problem of every row is collected (a dry run must show the whole list, so
    the operator fixes the file once rather than once per error). File-level problems
    (encoding, header, malformed quoting) plan no rows at all, since the remaining
    rows cannot be trusted. ``schema`` must be the schema ``mapping`` was loaded with.
    """
    try:
        text = _decode(data)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return ImportPlan([], [RowError(line, None, "file is not UTF-8 text (bad encoding)")], 0)

    delimiter = mapping.delimiter or _sniff(text, mapping)
    try:
        records = list(_records(text, delimiter))
    except _Malformed as e:
        return ImportPlan([], [RowError(e.line, None, e.message)], 0)
    if not records:
        return ImportPlan([], [RowError(1, None, "file is empty (no header line)")], 0)

    (header_line, header), body = records[0], records[1:]
    total = len(body)
    names = [h.strip() for h in header]
    errors: list[RowError] = []
    index: dict[str, int] = {}
    for column in mapping.columns:
        count = names.count(column)
        if count == 0:
            errors.append(RowError(header_line, column, "missing column"))
        elif count > 1:
            errors.append(RowError(header_line, column, "column appears more than once in the header"))
        else:
            index[column] = names.index(column)
    if errors:
        return ImportPlan([], errors, total)

    planner = _RowPlanner(mapping, schema, index, len(header))
    rows: list[tuple[int, dict[str, object]]] = []
    for line, cells in body:
        values, row_errors = planner.plan(line, cells)
        errors.extend(row_errors)
        if values is not None and not row_errors:
            rows.append((line, values))
    return ImportPlan(rows, errors, total)


def check_against_vault(v: Any, plan: ImportPlan) -> tuple[ImportPlan, list[str]]:
    """The plan without the rows already in the vault (same e-mail, passport number, or
    legal name and birth date as a stored record), each reported as an error; and the
    rules that could not be checked because the caller's role cannot read their fields.

    Why: re-importing a fresh download of the whole form is the usual workflow, and it
    must not give everyone a second record (two pseudonyms, two badges). Reading the
    stored values is an access like any other: one ``read_all`` entry names the fields."""
    mapped = {f for _, values in plan.rows for f in values}
    rules = [r for r in DUPLICATE_RULES if all(f in v.schema.fields for f in r[0]) and set(r[0]) <= mapped]
    usable = [r for r in rules if all(f in v.readable_fields for f in r[0])]
    unchecked = [r[2] for r in rules if r not in usable]
    if not usable or not plan.rows:
        return plan, unchecked
    needed = sorted({f for fields, _, _ in usable for f in fields})
    stored: list[set[tuple]] = [set() for _ in usable]
    for rec in v.records(fields=needed):
        for (fields, kinds, _), keys in zip(usable, stored):
            if (key := _rule_key(fields, kinds, rec)) is not None:
                keys.add(key)
    rows, errors = [], list(plan.errors)
    for line, values in plan.rows:
        hits = [what for (fields, kinds, what), keys in zip(usable, stored)
                if (key := _rule_key(fields, kinds, values)) is not None and key in keys]
        if hits:
            errors.append(RowError(line, None, f"already in the vault ({'; '.join(hits)})"))
        else:
            rows.append((line, values))
    errors.sort(key=lambda e: e.line)
    return ImportPlan(rows, errors, plan.total), unchecked


class _RowPlanner:
    """Per-row conversion plus the duplicate bookkeeping across rows."""

    def __init__(self, mapping: Mapping, schema: Schema, index: dict[str, int], width: int) -> None:
        self.mapping = mapping
        self.schema = schema
        self.index = index
        self.width = width
        self.column_of = {f: c for c, f in mapping.columns.items()}
        self.true = {v.casefold() for v in mapping.true_values}
        self.false = {v.casefold() for v in mapping.false_values}
        self.rules = [r for r in DUPLICATE_RULES if all(f in self.column_of for f in r[0])]
        self.seen_rows: dict[tuple, int] = {}
        self.seen_keys: list[dict[tuple, int]] = [{} for _ in self.rules]

    def plan(self, line: int, cells: list[str]) -> tuple[RowValues | None, list[RowError]]:
        if len(cells) != self.width:
            # Cells are shifted: checking them against their columns would only
            # produce misleading errors, so the count is the one error reported.
            return None, [RowError(line, None, f"row has {len(cells)} cells, header has {self.width}")]
        errors: list[RowError] = []
        values = RowValues()
        identity: list[tuple] = []
        for column, fname in self.mapping.columns.items():
            f = self.schema.fields[fname]
            # Line breaks inside quoted cells are stored as "\n" whatever the file used.
            text = cells[self.index[column]].replace("\r\n", "\n").replace("\r", "\n").strip()
            if not text:
                if f.required:
                    errors.append(RowError(line, column, f"field {fname!r} is required but the cell is empty"))
                identity.append((fname, "absent"))
                continue
            try:
                value = self._convert(f, text)
                f.encode(value)
            except ValidationError as e:
                errors.append(RowError(line, column, _rule(e, fname)))
                identity.append((fname, "raw", text))
                continue
            values[fname] = value
            identity.append((fname, "ok", value))
        errors.extend(self._duplicates(line, tuple(identity), values, claim=not errors))
        return values, errors

    def _convert(self, f: Field, text: str) -> Any:
        table = self.mapping.values.get(f.name)
        if table is not None:
            if text in table:
                return table[text]
            folded = text.casefold()
            for key, value in table.items():
                if key.casefold() == folded:
                    return value
            raise ValidationError("not one of the values the mapping lists", field=f.name)
        t = f.type
        if t == "text":
            return text
        if t == "date":
            m = _DATE_RE.fullmatch(text)
            if m is None:
                raise ValidationError("expects a date (YYYY-MM-DD)", field=f.name)
            try:
                return _dt.date.fromisoformat(m.group(1))
            except ValueError:
                pass  # raised below, outside the handler, whose error quotes the cell
            raise ValidationError("expects a date (YYYY-MM-DD)", field=f.name)
        if t == "bool":
            folded = text.casefold()
            if folded in self.true:
                return True
            if folded in self.false:
                return False
            raise ValidationError(
                f"expects {'/'.join(self.mapping.true_values)} or {'/'.join(self.mapping.false_values)}",
                field=f.name,
            )
        if t == "integer":
            if not _INT_RE.fullmatch(text):
                raise ValidationError("expects an integer", field=f.name)
            sign, digits = text[0] if text[0] in "+-" else "", text.lstrip("+-").lstrip("0") or "0"
            if len(digits) > 19:  # no 64-bit value has more; and int() of over 4300 digits raises ValueError
                raise ValidationError("is out of the 64-bit range", field=f.name)
            return int(sign + digits)
        # enum
        if text in f.values:
            return text
        matches = [v for v in f.values if v.casefold() == text.casefold()]
        if len(matches) == 1:
            return matches[0]
        raise ValidationError(f"expects one of: {', '.join(f.values)}", field=f.name)

    def _duplicates(self, line: int, identity: tuple, values: RowValues, *, claim: bool) -> list[RowError]:
        """Compare with earlier rows. Only a row without errors (``claim``) claims its
        e-mail, passport...: a form re-submitted to correct a bad first submission is the
        one to import, and with --skip-bad a claim by the bad row would lose both."""
        first = self.seen_rows.get(identity)
        if first is not None:
            return [RowError(line, None, f"duplicate of line {first} (identical row)")]
        if claim:
            self.seen_rows[identity] = line
        hits: dict[int, list[tuple[str, str]]] = {}
        for (fields, kinds, what), seen in zip(self.rules, self.seen_keys):
            key = _rule_key(fields, kinds, values)
            if key is None:
                continue
            earlier = seen.get(key)
            if earlier is None:
                if claim:
                    seen[key] = line
            else:
                hits.setdefault(earlier, []).append((self.column_of[fields[0]], what))
        out = []
        for earlier, reasons in sorted(hits.items()):
            column = reasons[0][0] if len(reasons) == 1 else None
            out.append(RowError(line, column,
                                f"duplicate of line {earlier} ({'; '.join(r for _, r in reasons)})"))
        return out


def _rule_key(fields: tuple[str, ...], kinds: tuple[str, ...], values: Any) -> tuple | None:
    """What a duplicate rule compares for one row or record: its fields normalised, or None
    when one is absent or normalises to nothing (no key: nothing to be a duplicate of)."""
    if not all(f in values for f in fields):
        return None
    key = tuple(_norm(kind, values[f]) for f, kind in zip(fields, kinds))
    return None if any(k == "" for k in key) else key


def _norm(kind: str, value: object) -> object:
    if isinstance(value, str):
        return normalize(kind, value)
    return value


def _rule(e: ValidationError, fname: str) -> str:
    """The rule from a field's ValidationError, without the "field 'x' " prefix the
    RowError's column already gives. (Field messages never carry the value.)"""
    msg = str(e)
    prefix = f"field {fname!r} "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
