"""Vault schemas: which fields exist, their types, classes and search rules.

A schema is TOML. The text as given is stored in the vault and authenticated
(see :mod:`vault.keys`), so a database writer cannot move a field into a weaker
class or add or drop one unnoticed. The rules here also refuse designs that would
de-anonymise a small population (a blind index on nationality, say).
"""

from __future__ import annotations

import datetime as _dt
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from . import _format as F
from . import values as VAL
from .errors import SchemaError, ValidationError, utf8
from .pseudonym import purpose_prefix, valid_prefix
from .retention_rule import Rule
from .retention_rule import parse as retention_table

TYPES = ("text", "date", "enum", "bool", "integer", "list")
SEARCH_MODES = ("none", "exact")
NORMALIZERS = ("none", "text", "name", "email", "phone", "compact")
# Class, purpose, field and role names; always with fullmatch: "$" also matches before a final
# newline, and a name ending in one would break the signed key statement's lines (no reopen).
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    cls: str
    search: str = "none"
    normalize: str = "text"
    values: tuple[str, ...] = ()
    tokens: bool = False
    low_cardinality: bool = False
    allow_low_cardinality: bool = False
    required: bool = False
    #: text: characters after NFC; list: characters of each item (vault.values has the defaults)
    max_length: int = VAL.DEFAULT_MAX_LENGTH
    multiline: bool = False  # text only: tab and line feed allowed (a notes field)
    max_items: int = VAL.DEFAULT_MAX_ITEMS  # list only

    # -- value codec -------------------------------------------------------------
    def canonical(self, value: Any) -> Any:
        """The value as it will be stored and read back: text in NFC, a list's items checked
        and (for a list of ``values``) in the schema's order. Raises ValidationError naming
        only the field. Other types are returned as given (``encode`` checks them)."""
        if self.type == "text":
            if not isinstance(value, str):
                raise ValidationError(f"field {self.name!r} expects text", field=self.name)
            if value.isascii() and value.isprintable() and len(value) <= self.max_length:
                # the common value, checked as clean_text would: printable ASCII is NFC already, valid
                # UTF-8, and holds no control character, tab or line feed (the write hot path)
                return value
            utf8(value, f"field {self.name!r} contains characters that are not valid Unicode text", field=self.name)
            return VAL.clean_text(self.name, value, multiline=self.multiline, max_length=self.max_length)
        if self.type == "list":
            return self._canonical_list(value)
        return value

    def _canonical_list(self, value: Any) -> list[str]:
        items = VAL.list_items(self.name, value)
        if len(items) > self.max_items:
            raise ValidationError(f"field {self.name!r} has more than {self.max_items} items (max_items)",
                                  field=self.name)
        out: list[str] = []
        for i, item in enumerate(items, 1):
            utf8(item, f"field {self.name!r} contains characters that are not valid Unicode text", field=self.name)
            item = VAL.clean_text(self.name, item.strip(), multiline=False, max_length=self.max_length,
                                  what=f"item {i} ")
            if not item:
                raise ValidationError(f"field {self.name!r} item {i} is empty", field=self.name)
            if len(item) > 0x3FFF and len(item.encode("utf-8")) > 0xFFFF:  # the u16 length of §3's list framing
                raise ValidationError(f"field {self.name!r} item {i} is longer than 65,535 bytes of UTF-8",
                                      field=self.name)
            if self.values and item not in self.values:
                raise ValidationError(f"field {self.name!r} item {i} is not one of: {', '.join(self.values)}",
                                      field=self.name)
            if item in out:
                raise ValidationError(f"field {self.name!r} item {i} repeats an earlier item", field=self.name)
            out.append(item)
        if self.values:  # a set of choices: one spelling, whatever order they were ticked in
            out.sort(key=self.values.index)
        return out

    def encode(self, value: Any) -> bytes:
        """Canonical bytes for a Python value; raises ValidationError naming only the field."""
        t = self.type
        if t == "text":
            data = self.canonical(value).encode("utf-8")
        elif t == "list":
            data = VAL.encode_list(self.canonical(value))
        elif t == "date":
            if isinstance(value, _dt.datetime) or not isinstance(value, (_dt.date, str)):
                raise ValidationError(f"field {self.name!r} expects a date (YYYY-MM-DD)", field=self.name)
            if isinstance(value, str):
                value = parse_date(value, self.name)
            data = value.isoformat().encode("ascii")
        elif t == "enum":
            if not isinstance(value, str) or value not in self.values:
                raise ValidationError(
                    f"field {self.name!r} expects one of: {', '.join(self.values)}", field=self.name
                )
            data = value.encode("utf-8")
        elif t == "bool":
            if not isinstance(value, bool):
                raise ValidationError(f"field {self.name!r} expects true or false", field=self.name)
            data = b"\x01" if value else b"\x00"
        else:  # integer
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"field {self.name!r} expects an integer", field=self.name)
            if not _INT_MIN <= value <= _INT_MAX:
                raise ValidationError(f"field {self.name!r} is out of the 64-bit range", field=self.name)
            data = str(value).encode("ascii")
        if len(data) > F.MAX_VALUE_BYTES:
            raise ValidationError(f"field {self.name!r} is longer than 1 MiB", field=self.name)
        return bytes(data)

    def parse_text(self, text: str) -> Any:
        """The field's value from typed text (a CLI argument, a search term): why here and not
        in each front end: a date or a number must mean the same wherever it is typed."""
        t = text.strip()
        if self.type == "bool":
            low = t.lower()
            if low in ("y", "yes", "true", "1"):
                return True
            if low in ("n", "no", "false", "0"):
                return False
            raise ValidationError(f"field {self.name!r} expects yes or no", field=self.name)
        if self.type == "integer":
            if not re.fullmatch(r"[+-]?[0-9]{1,19}", t):
                raise ValidationError(f"field {self.name!r} expects an integer", field=self.name)
            return int(t)
        if self.type == "date":
            return parse_date(t, self.name)
        if self.type == "list":  # typed at a prompt or on a command line: "vegan, halal"
            return [item.strip() for item in t.split(",") if item.strip()]
        return t

    def decode(self, data: bytes) -> Any:
        t = self.type
        if t in ("text", "enum"):
            return data.decode("utf-8")
        if t == "list":
            items = VAL.decode_list(data)
            if self.values and any(i not in self.values for i in items):
                raise ValueError("list item is not one of the field's values")
            return items
        if t == "date":
            return _dt.date.fromisoformat(data.decode("ascii"))
        if t == "bool":
            if data not in (b"\x00", b"\x01"):
                raise ValueError("bad bool encoding")
            return data == b"\x01"
        return int(data.decode("ascii"))


def parse_date(text: str, name: str) -> _dt.date:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return _dt.date.fromisoformat(text)
        except ValueError:
            pass  # raised below, outside the handler, whose error quotes the text
    raise ValidationError(f"field {name!r} expects a date (YYYY-MM-DD)", field=name)


@dataclass(frozen=True)
class Role:
    """What a role's members hold: the keys of whole classes and purposes."""

    name: str
    classes: tuple[str, ...]
    purposes: tuple[str, ...]
    manage: bool = False  # may enrol/remove users, rotate keys, approve break-glass
    write_only: tuple[str, ...] = ()  # classes it may fill in (sealed to the class) but not read


@dataclass(frozen=True)
class Schema:
    name: str
    version: int
    classes: tuple[str, ...]
    purposes: tuple[str, ...]
    fields: Mapping[str, Field]
    expected_population: int = 150
    k_anonymity: int = 4
    roles: Mapping[str, Role] = field(default_factory=dict)
    #: groups of fields of which every record must give at least one ("a name": legal or badge)
    required_any: tuple[tuple[str, ...], ...] = ()
    #: purpose -> the bool field saying whether a person agreed to it (vault.consent)
    consent: Mapping[str, str] = field(default_factory=dict)
    #: how long a record is kept (vault.retention_rule); None: not set, kept until shredded by hand
    retention: Rule | None = None
    source: str = field(default="", repr=False, compare=False)

    def check_required(self, values: Mapping[str, Any], where: str = "", *, partial: bool = False) -> None:
        """Refuse a record without a ``required`` field or without any field of a
        ``required_any`` group. An update (``partial``) may leave fields out, not remove them:
        it may not set a required field, or a group's field, to None (or blank) unless it
        gives another field of that group in the same call."""
        for f in self.fields.values():
            if not f.required or (partial and f.name not in values):
                continue
            if _blank(values.get(f.name)):
                raise ValidationError(f"{where}field {f.name!r} is required", field=f.name)
        for group in self.required_any:
            given = [n for n in group if not _blank(values.get(n))]
            if given:
                continue
            if partial and not any(n in values for n in group):
                continue
            raise ValidationError(f"{where}a record needs at least one of: {', '.join(group)}", field=group[0])

    def role(self, name: str) -> Role:
        if not isinstance(name, str):  # a list would fail as "unhashable"
            raise ValidationError(f"a role is named by text (known: {', '.join(self.roles)})")
        try:
            return self.roles[name]
        except KeyError:
            raise ValidationError(f"unknown role {name!r} (known: {', '.join(self.roles)})") from None

    def fields_of(self, cls: str) -> list[Field]:
        return [f for f in self.fields.values() if f.cls == cls]

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise ValidationError(f"unknown field {name!r}", field=name) from None

    def warnings(self) -> list[str]:
        """Risks the schema owner accepted explicitly, and settings that do nothing (shown by
        ``status``). Why warnings and not errors for the latter: a schema stored in a vault
        must keep parsing, or the vault would no longer open."""
        out = [
            f"field {f.name!r} has a blind index although it is low-cardinality "
            "(allow_low_cardinality = true): its index can single people out in a small vault"
            for f in self.fields.values()
            if f.search == "exact" and f.allow_low_cardinality
        ]
        out += [f"field {f.name!r}: normalize has no effect on a {f.type} field (its value has one spelling)"
                for f in self.fields.values() if f.type != "text" and f.normalize != "none"]
        if "fields" in self.fields and self.fields["fields"].search == "exact":
            out.append("field 'fields' cannot be searched with find(), whose fields= names the fields "
                       "to return; rename it")
        return out


def _blank(value: Any) -> bool:
    """Not given: None, text of spaces only, or a list with no items."""
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple)) and not value)


def default_schema_text() -> str:
    return resources.files("vault.schemas").joinpath("participant.toml").read_text("utf-8")


def consent_table(raw: Any, purposes: Sequence[str], fields: Mapping[str, Field]) -> dict[str, str]:
    """The ``[consent]`` table (vault.consent): each key a declared purpose, each value a bool field."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SchemaError("[consent] must be a table of purpose = \"bool field\"")
    out: dict[str, str] = {}
    for purpose, name in raw.items():
        if purpose not in purposes:
            raise SchemaError(f"[consent] names an undeclared purpose {purpose!r}")
        if not isinstance(name, str) or name not in fields:
            raise SchemaError(f"[consent] {purpose}: {name!r} is not a field of this schema")
        if fields[name].type != "bool":
            raise SchemaError(f"[consent] {purpose}: field {name!r} must be a bool field (yes/no)")
        out[purpose] = name
    return out


def load(text: str | None = None) -> Schema:
    """Parse and check a schema TOML; ``None`` gives the default participant schema."""
    if text is None:
        text = default_schema_text()
    if not isinstance(text, str):
        raise SchemaError("a schema is TOML text (str)")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SchemaError(f"schema is not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise SchemaError("schema is nested too deeply to be a schema") from None
    head = doc.get("schema")
    if not isinstance(head, dict):
        raise SchemaError("schema needs a [schema] table")
    name = _get(head, "name", str, "schema")
    version = _get(head, "version", int, "schema")
    classes = tuple(_get(head, "classes", list, "schema"))
    purposes = head.get("purposes", ["badge", "travel", "sessions", "audit"])
    if not isinstance(purposes, list):
        raise SchemaError("schema.purposes must be a list of names")
    purposes = tuple(purposes)
    population = head.get("expected_population", 150)
    k = head.get("k_anonymity", 4)
    if not isinstance(population, int) or isinstance(population, bool) or population < 1:
        raise SchemaError("schema.expected_population must be a positive integer")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SchemaError("schema.k_anonymity must be a positive integer")
    for kind, names in (("class", classes), ("purpose", purposes)):
        if not names:
            raise SchemaError(f"schema needs at least one {kind}")
        for n in names:
            if not isinstance(n, str) or not _NAME_RE.fullmatch(n):
                raise SchemaError(f"bad {kind} name {n!r}: use lower-case letters, digits and _")
        if len(set(names)) != len(names):
            raise SchemaError(f"duplicate {kind} name in schema")
    prefixes = [purpose_prefix(p) for p in purposes]
    if not all(valid_prefix(x) for x in prefixes):
        raise SchemaError("purpose names must start with two letters (they prefix pseudonyms)")
    if len(set(prefixes)) != len(prefixes):
        raise SchemaError("purposes must differ in their first two letters (they prefix pseudonyms)")
    unknown = set(doc) - {"schema", "fields", "roles", "consent", "retention"}
    if unknown:
        raise SchemaError(f"unknown schema section(s): {', '.join(sorted(unknown))}")
    raw_fields = doc.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise SchemaError("schema needs at least one [fields.NAME] table")
    fields: dict[str, Field] = {}
    for fname, spec in raw_fields.items():
        fields[fname] = _field(fname, spec, classes)
    roles = _roles(doc.get("roles"), classes, purposes)
    return Schema(
        name=name, version=version, classes=classes, purposes=purposes, fields=fields,
        expected_population=population, k_anonymity=k, roles=roles, source=text,
        required_any=_required_any(head.get("required_any", []), fields),
        consent=consent_table(doc.get("consent"), purposes, fields),
        retention=retention_table(doc.get("retention"), fields),
    )


def _required_any(raw: Any, fields: dict[str, Field]) -> tuple[tuple[str, ...], ...]:
    if not isinstance(raw, list) or not all(isinstance(g, list) and g for g in raw):
        raise SchemaError("schema.required_any must be a list of non-empty lists of field names")
    for group in raw:
        for n in group:
            if n not in fields:
                raise SchemaError(f"schema.required_any names an unknown field {n!r}")
        if len(set(group)) != len(group):
            raise SchemaError("schema.required_any: a group names a field twice")
    return tuple(tuple(g) for g in raw)


def _roles(raw: Any, classes: tuple[str, ...], purposes: tuple[str, ...]) -> dict[str, Role]:
    """Roles from [roles.NAME]; without a [roles] table: lead (everything), staff (public,
    logistics, contact where they exist) and tool (public where it exists)."""
    if raw is None:
        roles = {"lead": Role("lead", classes, purposes, manage=True)}
        staff = tuple(c for c in ("public", "logistics", "contact") if c in classes)
        if staff:
            roles["staff"] = Role("staff", staff, purposes, write_only=tuple(c for c in classes if c not in staff))
        if "public" in classes:
            roles["tool"] = Role("tool", ("public",), tuple(p for p in ("badge",) if p in purposes))
        return roles
    if not isinstance(raw, dict) or not raw:
        raise SchemaError("[roles] must define at least one role")
    out: dict[str, Role] = {}
    for rname, spec in raw.items():
        if not _NAME_RE.fullmatch(rname) or not isinstance(spec, dict):
            raise SchemaError(f"bad role {rname!r}")
        unknown = set(spec) - {"classes", "purposes", "manage", "write_only"}
        if unknown:
            raise SchemaError(f"role {rname!r}: unknown key(s) {', '.join(sorted(unknown))}")
        rc, rp, manage = spec.get("classes", []), spec.get("purposes", []), spec.get("manage", False)
        if not isinstance(rc, list) or any(c not in classes for c in rc):
            raise SchemaError(f"role {rname!r}: classes must be a list of declared classes")
        if not isinstance(rp, list) or any(p not in purposes for p in rp):
            raise SchemaError(f"role {rname!r}: purposes must be a list of declared purposes")
        if not isinstance(manage, bool):
            raise SchemaError(f"role {rname!r}: manage must be true or false")
        wo = spec.get("write_only", [])
        if not isinstance(wo, list) or any(c not in classes or c in rc for c in wo):
            raise SchemaError(f"role {rname!r}: write_only must list declared classes the role does not read")
        if manage and (set(rc) != set(classes) or set(rp) != set(purposes)):
            raise SchemaError(f"role {rname!r}: a managing role must hold every class and purpose")
        out[rname] = Role(rname, tuple(rc), tuple(rp), manage, tuple(wo))
    if not any(r.manage for r in out.values()):
        raise SchemaError("one role must have manage = true (the security lead)")
    return out


_FIELD_KEYS = {"type", "class", "search", "normalize", "values", "tokens", "low_cardinality",
               "allow_low_cardinality", "required", "max_length", "multiline", "max_items"}


def _field(name: str, spec: Any, classes: tuple[str, ...]) -> Field:
    if not _NAME_RE.fullmatch(name):
        raise SchemaError(f"bad field name {name!r}: use lower-case letters, digits and _")
    if not isinstance(spec, dict):
        raise SchemaError(f"field {name!r} must be a table")
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise SchemaError(f"field {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
    ftype = spec.get("type")
    if ftype not in TYPES:
        raise SchemaError(f"field {name!r}: type must be one of {', '.join(TYPES)}")
    cls = spec.get("class")
    if cls not in classes:
        raise SchemaError(f"field {name!r}: class {cls!r} is not declared in schema.classes")
    search = spec.get("search", "none")
    if search not in SEARCH_MODES:
        raise SchemaError(f"field {name!r}: search must be 'none' or 'exact'")
    if ftype == "list" and search != "none":
        raise SchemaError(f"field {name!r}: a list field cannot have a blind index")
    normalize = spec.get("normalize", "text" if ftype == "text" else "none")
    if normalize not in NORMALIZERS:
        raise SchemaError(f"field {name!r}: normalize must be one of {', '.join(NORMALIZERS)}")
    values = spec.get("values", [])
    if not isinstance(values, list):
        raise SchemaError(f"field {name!r}: values must be a list of strings")
    if ftype == "enum" or (ftype == "list" and values):
        if not values or not all(isinstance(v, str) for v in values) or len(set(values)) != len(values):
            raise SchemaError(f"field {name!r}: an enum needs a list of distinct string values")
        if ftype == "list" and any(not v.strip() or v != v.strip() or "," in v or not v.isprintable()
                                   for v in values):
            raise SchemaError(f"field {name!r}: list values must be printable, without commas or outer spaces")
    elif values:
        raise SchemaError(f"field {name!r}: only enum and list fields take values")
    flags = {}
    for key in ("tokens", "low_cardinality", "allow_low_cardinality", "required", "multiline"):
        v = spec.get(key, False)
        if not isinstance(v, bool):
            raise SchemaError(f"field {name!r}: {key} must be true or false")
        flags[key] = v
    if flags["tokens"] and (ftype != "text" or search != "exact"):
        raise SchemaError(f"field {name!r}: tokens = true needs a text field with search = 'exact'")
    # Small populations: an index on a field with few distinct values splits ~150 people into
    # a handful of buckets and singles out the rare ones. Refuse unless explicitly accepted.
    low = flags["low_cardinality"] or ftype in ("enum", "bool", "date")
    if search == "exact" and low and not flags["allow_low_cardinality"]:
        raise SchemaError(
            f"field {name!r}: refusing a blind index on a low-cardinality field "
            "(set allow_low_cardinality = true to accept the risk)"
        )
    if flags["multiline"] and ftype != "text":
        raise SchemaError(f"field {name!r}: multiline is for text fields")
    default_len = VAL.DEFAULT_ITEM_MAX_LENGTH if ftype == "list" else VAL.DEFAULT_MAX_LENGTH
    max_length = _limit(name, spec, "max_length", default_len, ("text", "list"), ftype, F.MAX_VALUE_BYTES // 4)
    max_items = _limit(name, spec, "max_items", VAL.DEFAULT_MAX_ITEMS, ("list",), ftype, 10_000)
    return Field(
        name=name, type=ftype, cls=cls, search=search, normalize=normalize, values=tuple(values),
        tokens=flags["tokens"], low_cardinality=low, allow_low_cardinality=flags["allow_low_cardinality"],
        required=flags["required"], max_length=max_length, multiline=flags["multiline"], max_items=max_items,
    )


def _limit(name: str, spec: dict[str, Any], key: str, default: int, types: tuple[str, ...], ftype: str,
           top: int) -> int:
    """A positive size limit; ``top`` keeps a value (4 bytes per character at most in UTF-8)
    under the 1 MiB cap of every value, so the field's own limit is the one that speaks."""
    if key not in spec:
        return default
    v = spec[key]
    if ftype not in types:
        raise SchemaError(f"field {name!r}: {key} is for {' and '.join(types)} fields")
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
        raise SchemaError(f"field {name!r}: {key} must be an integer from 1 to {top}")
    return v


def _get(table: dict[str, Any], key: str, typ: type, where: str) -> Any:
    v = table.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise SchemaError(f"{where}.{key} is missing or not a {typ.__name__}")
    return v
