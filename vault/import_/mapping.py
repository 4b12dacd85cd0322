"""Mapping files: which column of an export feeds which schema field, and how.

The format is specified in docs/mapping.md. Everything that can be checked without the
export is checked here (:func:`load_mapping`), so a wrong mapping fails once, up front,
instead of as one error per row. Messages name mapping keys and schema fields (text the
operator wrote), never data from an export.
"""

from __future__ import annotations

import datetime as _dt
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationError
from ..schema import Field, Schema, parse_date

__all__ = ["MappingError", "Mapping", "SelectMany", "load_mapping", "mapping_from_doc", "parse_toml",
           "DEFAULT_TRUE_VALUES",
           "DEFAULT_FALSE_VALUES", "format_label"]

#: Defaults for bool fields without a values table (compared case-insensitively).
DEFAULT_TRUE_VALUES: tuple[str, ...] = ("yes", "true", "1")
DEFAULT_FALSE_VALUES: tuple[str, ...] = ("no", "false", "0")

_TOP_KEYS = {"options", "columns", "values", "join", "select_many"}
_OPTION_KEYS = {"delimiter", "true_values", "false_values", "date_formats", "source", "status_column",
                "skip_status", "missing_columns", "match_groups"}
_SELECT_KEYS = {"column", "options", "other"}
# strptime directives a date format may use: day, month, year, month names. Times and
# time zones are not dates; %y guesses a century, which a birth date must not.
_DATE_DIRECTIVES = re.compile(r"%[dmYbB%]")
_SOURCE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class MappingError(ValidationError):
    """The mapping file is malformed or does not fit the schema.

    A subclass of ValidationError so callers that already handle bad input handle
    this too. Messages name mapping keys and schema fields (text the operator wrote),
    never data from an export.
    """


@dataclass(frozen=True)
class SelectMany:
    """Where a list field's "tick all that apply" answer comes from (any of the three).

    ``column``: one cell of space-separated choices (Kobo's select_multiple column);
    ``options``: the prefix of one 0/1 column per choice (``dietary/`` for ``dietary/halal``);
    ``other``: a free-text column whose text becomes one more item ("other: ...")."""

    column: str | None = None
    options: str | None = None
    other: str | None = None


@dataclass(frozen=True)
class Mapping:
    """A parsed, checked mapping (docs/mapping.md).

    ``columns`` maps header -> field; ``join`` field -> headers whose cells are joined with
    one space; ``select_many`` field -> SelectMany; ``values`` field -> {text -> value};
    ``delimiter`` None means "sniff ';' or ','"; ``date_formats`` strptime formats tried
    after ISO 8601; ``source`` prefixes source ids ("kobo" gives "kobo:<id>");
    ``status_column``/``skip_status`` skip rows the source marks as not approved;
    ``missing_columns`` "error" or "ignore" (presets, which name more columns than one
    form has); ``match_groups``: a key also matches a header ending in "/key" (Kobo's
    "group/question" headers).
    """

    columns: dict[str, str]
    values: dict[str, dict[str, object]] = field(default_factory=dict)
    delimiter: str | None = None
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES
    false_values: tuple[str, ...] = DEFAULT_FALSE_VALUES
    join: dict[str, tuple[str, ...]] = field(default_factory=dict)
    select_many: dict[str, SelectMany] = field(default_factory=dict)
    date_formats: tuple[str, ...] = ()
    source: str | None = None
    status_column: str | None = None
    skip_status: tuple[str, ...] = ()
    missing_columns: str = "error"
    match_groups: bool = False
    name: str = "mapping"  # "preset kobo" in messages about a shipped mapping

    def targets(self) -> set[str]:
        """Every field some column may feed."""
        return set(self.columns.values()) | set(self.join) | set(self.select_many)

    def with_date_formats(self, formats: tuple[str, ...]) -> Mapping:
        """This mapping with ``formats`` instead of its own (``--date-format``)."""
        for f in formats:
            _check_date_format(f)
        return _replace(self, date_formats=tuple(formats))


def _replace(m: Mapping, **kw: Any) -> Mapping:
    from dataclasses import replace
    return replace(m, **kw)


def format_label(fmt: str) -> str:
    """A strptime format as people write it: "%d/%m/%Y" -> "DD/MM/YYYY"."""
    return (fmt.replace("%d", "DD").replace("%m", "MM").replace("%Y", "YYYY")
            .replace("%b", "Mon").replace("%B", "Month").replace("%%", "%"))


def load_mapping(text: str, schema: Schema, *, name: str = "mapping") -> Mapping:
    """Parse and check a mapping TOML against ``schema``."""
    return mapping_from_doc(parse_toml(text, name), schema, name=name)


def parse_toml(text: str, name: str) -> dict[str, Any]:
    """The TOML document of a mapping. A leading byte-order mark is dropped: Notepad on
    Windows saved UTF-8 with one, and tomllib refuses it as an invalid statement at
    line 1, column 1, which points at nothing the operator can see."""
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"{name} is not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise MappingError(f"{name} is nested too deeply to be a mapping") from None


def mapping_from_doc(doc: dict[str, Any], schema: Schema, *, name: str = "mapping") -> Mapping:
    """Check a parsed mapping against ``schema``."""
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise MappingError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} "
                           "(expected [options], [columns], [join], [select_many.FIELD], [values.FIELD])")
    opts = _options(doc.get("options", {}), name)
    columns, join, select = _sources(doc, schema, name, lenient=opts["missing_columns"] == "ignore")
    targets = set(columns.values()) | set(join) | set(select)
    values = _values(doc.get("values", {}), schema, targets, name)
    missing = [f.name for f in schema.fields.values() if f.required and f.name not in targets]
    if missing:
        raise MappingError(f"{name}: required field(s) not mapped: {', '.join(missing)}")
    for group in schema.required_any:
        if not set(group) & targets:
            raise MappingError(f"{name}: maps none of {', '.join(group)} (a record needs one of them)")
    return Mapping(columns=columns, values=values, join=join, select_many=select, name=name, **opts)


def _options(options: Any, name: str) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise MappingError(f"{name}: options must be a table")
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise MappingError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}")
    delimiter = options.get("delimiter")
    if delimiter is not None and (
        not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n"
    ):
        raise MappingError(f"{name}: options.delimiter must be one character (not a quote or newline)")
    true_values = _word_list(options, "true_values", DEFAULT_TRUE_VALUES, name)
    false_values = _word_list(options, "false_values", DEFAULT_FALSE_VALUES, name)
    if {v.casefold() for v in true_values} & {v.casefold() for v in false_values}:
        raise MappingError(f"{name}: options.true_values and options.false_values overlap")
    formats = options.get("date_formats", [])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise MappingError(f"{name}: options.date_formats must be a list of strptime formats such as \"%d/%m/%Y\"")
    for f in formats:
        _check_date_format(f, name)
    source = options.get("source")
    if source is not None and (not isinstance(source, str) or not _SOURCE_RE.fullmatch(source)):
        raise MappingError(f"{name}: options.source must be a short lower-case name such as \"kobo\"")
    status = options.get("status_column")
    if status is not None and (not isinstance(status, str) or not status.strip()):
        raise MappingError(f"{name}: options.status_column must be a column name")
    skip = _word_list(options, "skip_status", (), name)
    if skip and status is None:
        raise MappingError(f"{name}: options.skip_status needs options.status_column")
    missing = options.get("missing_columns", "error")
    if missing not in ("error", "ignore"):
        raise MappingError(f"{name}: options.missing_columns must be \"error\" or \"ignore\"")
    groups = options.get("match_groups", False)
    if not isinstance(groups, bool):
        raise MappingError(f"{name}: options.match_groups must be true or false")
    return dict(delimiter=delimiter, true_values=true_values, false_values=false_values,
                date_formats=tuple(formats), source=source, status_column=status, skip_status=skip,
                missing_columns=missing, match_groups=groups)


def _check_date_format(fmt: str, name: str = "--date-format") -> None:
    if not isinstance(fmt, str) or "%" not in fmt or _DATE_DIRECTIVES.sub("", fmt).count("%"):
        raise MappingError(f"{name}: a date format uses %d, %m, %Y (and %b or %B), as in \"%d/%m/%Y\"")
    if not {"%d", "%m", "%Y"} <= set(re.findall(r"%[dmY]", fmt)) and not (
            "%d" in fmt and "%Y" in fmt and ("%b" in fmt or "%B" in fmt)):
        raise MappingError(f"{name}: a date format needs a day, a month and a four-digit year (%d, %m or %b, %Y)")


def _word_list(options: dict[str, Any], key: str, default: tuple[str, ...], name: str) -> tuple[str, ...]:
    v = options.get(key)
    if v is None:
        return default
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
        raise MappingError(f"{name}: options.{key} must be a non-empty list of non-empty strings")
    return tuple(s.strip() for s in v)


def _header(h: Any, name: str, where: str) -> str:
    if not isinstance(h, str) or not h.strip():
        raise MappingError(f"{name}: {where} has an empty column name")
    if h != h.strip():
        raise MappingError(f"{name}: column {h!r} has leading or trailing spaces")
    return h


def _sources(doc: dict[str, Any], schema: Schema, name: str, *, lenient: bool
             ) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, SelectMany]]:
    """[columns], [join] and [select_many]; a field fed twice is refused, except that a
    lenient mapping (missing_columns = "ignore") may name several candidate columns for
    one field, of which a file may hold one."""
    columns = doc.get("columns", {})
    join_raw = doc.get("join", {})
    select_raw = doc.get("select_many", {})
    if not isinstance(columns, dict) or not isinstance(join_raw, dict) or not isinstance(select_raw, dict):
        raise MappingError(f"{name}: [columns], [join] and [select_many] must be tables")
    if not columns and not join_raw and not select_raw:
        raise MappingError(f"{name} needs a non-empty [columns] table (CSV header = schema field)")
    by_field: dict[str, str] = {}

    def claim(target: str, what: str) -> None:
        if target in by_field and not lenient:
            raise MappingError(f"{name}: field {target!r} is mapped twice ({by_field[target]} and {what}); "
                               "to combine columns use [join]")
        by_field.setdefault(target, what)

    for header, target in columns.items():
        _header(header, name, "[columns]")
        if not isinstance(target, str):
            raise MappingError(f"{name}: column {header!r} must map to a schema field name")
        _field(schema, target, f"column {header!r}", name)
        claim(target, f"column {header!r}")
    join: dict[str, tuple[str, ...]] = {}
    for target, parts in join_raw.items():
        f = _field(schema, target, f"[join] {target}", name)
        if f.type != "text":
            raise MappingError(f"{name}: [join] {target}: only text fields can be joined")
        if not isinstance(parts, list) or len(parts) < 2:
            raise MappingError(f"{name}: [join] {target} must list two or more columns")
        join[target] = _distinct(tuple(_header(p, name, f"[join] {target}") for p in parts), name, f"[join] {target}")
        claim(target, "[join]")
    select: dict[str, SelectMany] = {}
    for target, spec in select_raw.items():
        f = _field(schema, target, f"[select_many.{target}]", name)
        if f.type not in ("list", "text") or not isinstance(spec, dict) or not spec or set(spec) - _SELECT_KEYS:
            raise MappingError(f"{name}: [select_many.{target}] needs a list field and column, options or other")
        parts = {k: _header(v, name, f"[select_many.{target}]") for k, v in spec.items()}
        _distinct(tuple(v for k, v in parts.items() if k != "options"), name, f"[select_many.{target}]")
        select[target] = SelectMany(**parts)
        claim(target, f"[select_many.{target}]")
    return dict(columns), join, select


def _distinct(headers: tuple[str, ...], name: str, where: str) -> tuple[str, ...]:
    """``headers`` if no column is named twice in one rule: a join of a column with itself
    stored its text twice ("Amira Amira"), and a select-many answer read as its own
    "other" text one more item, silently."""
    seen: set[str] = set()
    for h in headers:
        if h in seen:
            raise MappingError(f"{name}: {where} names column {h!r} twice")
        seen.add(h)
    return headers


def _field(schema: Schema, target: str, where: str, name: str) -> Field:
    f = schema.fields.get(target)
    if f is None:
        raise MappingError(f"{name}: {where} maps to unknown field {target!r}{_did_you_mean(target, schema)}")
    return f


def _did_you_mean(target: str, schema: Schema) -> str:
    """A mapping is typed by hand: name the closest field of the schema, if one is close."""
    import difflib

    close = difflib.get_close_matches(target.strip().lower(), list(schema.fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _values(raw: Any, schema: Schema, targets: set[str], name: str) -> dict[str, dict[str, object]]:
    if not isinstance(raw, dict):
        raise MappingError(f"{name}: values must be a table of [values.FIELD] tables")
    out: dict[str, dict[str, object]] = {}
    for fname, table in raw.items():
        if fname not in schema.fields:
            raise MappingError(f"{name}: [values.{fname}] names an unknown field{_did_you_mean(fname, schema)}")
        if fname not in targets:
            raise MappingError(f"{name}: [values.{fname}] is for a field no column maps to")
        if not isinstance(table, dict) or not table:
            raise MappingError(f"{name}: [values.{fname}] must be a non-empty table")
        out[fname] = _value_table(schema.fields[fname], table, name)
    return out


def _value_table(f: Field, table: dict[str, Any], name: str) -> dict[str, object]:
    """Check one [values.FIELD] table: each value must be one the field accepts (for a
    list field: an item, or a list of items, [] for "none")."""
    out: dict[str, object] = {}
    folded: dict[str, object] = {}
    for key, value in table.items():
        where = f"{name}: [values.{f.name}] entry {key!r}"
        if not key.strip():
            raise MappingError(f"{name}: [values.{f.name}] has an empty key")
        if isinstance(value, _dt.datetime) or isinstance(value, dict) or (
                isinstance(value, list) and f.type not in ("list", "text")):
            raise MappingError(f"{where}: not a value for a {f.type} field")
        if f.type == "date" and isinstance(value, str):
            try:
                value = parse_date(value, f.name)
            except ValidationError:
                pass  # left as text: f.encode below says what a date must look like
        if f.type == "list" and isinstance(value, str):
            value = [value]
        try:
            if isinstance(value, list):  # choices of a select-many answer ([] for "none")
                for item in value:
                    f.encode([item] if f.type == "list" else item)
            else:
                f.encode(value)
        except ValidationError as e:
            raise MappingError(f"{where}: {rule(e, f.name)}", field=f.name) from None
        k = key.strip()
        fk = k.casefold()
        if fk in folded and folded[fk] != value:
            raise MappingError(f"{name}: [values.{f.name}] has keys that differ only in case "
                               "but map to different values")
        folded[fk] = value
        out[k] = value
    return out


def rule(e: ValidationError, fname: str) -> str:
    """The rule from a field's ValidationError, without the "field 'x' " prefix the
    RowError's column already gives. (Field messages never carry the value.)"""
    msg = str(e)
    prefix = f"field {fname!r} "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
