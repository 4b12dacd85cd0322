"""Encoding whole new records for a bulk write, with each field's checks resolved once.

Why a second encoder: a bulk insert encodes every field of every record, and on one core
Field.encode's general path (isinstance chains, NFC, two regular-expression scans, the list
machinery) cost about a sixth of a record's time, the shortcuts here about a tenth. The
values a registration form gives are almost always of a few plain shapes; for those this
module takes a shortcut whose result is, by construction, what Field.encode returns (the
reasoning is at each shortcut), and anything else, every error included, goes through
Field.encode itself. tests/test_bulk_seal.py compares the two on generated rows and on every
field with awkward values, errors and all.
"""

from __future__ import annotations

import datetime as _dt
import struct
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from . import _format as F
from .errors import ValidationError
from .schema import Field, Schema

Encoded = dict[str, dict[str, bytes]]  # class -> field -> canonical bytes

# the shortcut each field may take (_spec)
_TEXT, _NOTES, _DATE, _ENUM, _LIST, _NONE = range(6)
_TAB_LF_AS_SPACE = str.maketrans("\t\n", "  ")
_ONE_ITEM = struct.pack(">H", 1)
_u16 = struct.Struct(">H").pack


def _spec(f: Field) -> tuple[str, int, int, frozenset[str], Callable[[Any], bytes]]:
    """(class, shortcut, length limit in characters, allowed values, Field.encode)."""
    if f.type == "text":
        kind = _NOTES if f.multiline else _TEXT
    elif f.type == "date":
        kind = _DATE
    elif f.type == "enum":
        kind = _ENUM
    elif f.type == "list" and not f.values and f.max_items >= 1:
        kind = _LIST
    else:
        kind = _NONE
    return f.cls, kind, min(f.max_length, F.MAX_VALUE_BYTES), frozenset(f.values), f.encode


def row_encoder(schema: Schema, general: Callable[[Mapping[str, Any], str], Encoded]
                ) -> Callable[[Mapping[str, Any], str], Encoded]:
    """``encode(values, where)``: class -> field -> bytes for a whole new record, as
    ``general`` (Records.encode) gives it; a row that is not a plain dict, or that names a
    field the schema lacks, goes to ``general`` whole (which raises its error)."""
    classes = schema.classes
    specs = {f.name: _spec(f) for f in schema.fields.values()}
    check_required = schema.check_required
    # Schema.check_required passes a record in which every required field, and some field
    # of each required_any group, is a non-empty string with a non-space character (the
    # common case, checked here); anything else it checks itself (and names what is missing)
    needed = [(f.name,) for f in schema.fields.values() if f.required] + list(schema.required_any)

    def encode(values: Mapping[str, Any], where: str) -> Encoded:
        if type(values) is not dict:
            return general(values, where)
        for group in needed:
            for n in group:
                v = values.get(n)
                if type(v) is str and not v.isspace() and v:
                    break
            else:
                check_required(values, where)
                break
        by_class: Encoded = {c: {} for c in classes}
        for name, value in values.items():
            spec = specs.get(name) if type(name) is str else None  # (a key that only equals a name is none)
            if spec is None:
                return general(values, where)  # an unknown field: encode names it
            if value is None:
                continue
            cls, kind, limit, allowed, field_encode = spec
            if kind == _TEXT and type(value) is str and len(value) <= limit and value.isascii() \
                    and value.isprintable():  # the commonest value: _shortcut's first case, without the call
                by_class[cls][name] = value.encode("ascii")
                continue
            data = _shortcut(kind, limit, allowed, value)
            if data is None:
                try:
                    data = field_encode(value)
                except ValidationError as e:
                    raise ValidationError(f"{where}{e}", field=name) from None
            by_class[cls][name] = data
        return by_class
    return encode


def _shortcut(kind: int, limit: int, allowed: frozenset[str], value: Any) -> bytes | None:
    """Field.encode's result for a value of a plain shape, else None (take Field.encode)."""
    if type(value) is str:
        if kind <= _NOTES:
            # Field.canonical passes printable ASCII as it is; clean_text passes any other text
            # that is NFC already and holds no control character (all of them are Cc, so not
            # printable; tab and line feed only in a multiline field), within max_length
            if len(value) > limit:
                return None
            if value.isascii():
                if value.isprintable() or (kind == _NOTES and value.translate(_TAB_LF_AS_SPACE).isprintable()):
                    return value.encode("ascii")
                return None
            if (value.isprintable() or (kind == _NOTES and value.translate(_TAB_LF_AS_SPACE).isprintable())) \
                    and unicodedata.is_normalized("NFC", value):
                data = value.encode("utf-8")  # printable: no lone surrogate, so valid UTF-8
                return data if len(data) <= F.MAX_VALUE_BYTES else None
            return None
        if kind == _ENUM:
            if value in allowed:
                data = value.encode("utf-8")  # a schema may list a value over the 1 MiB a value may hold
                return data if len(data) <= F.MAX_VALUE_BYTES else None
            return None
        if kind == _LIST:
            # a lone string is one item, stripped; printable ASCII is clean, one item is
            # neither a repeat nor (a list without values) out of order
            item = value.strip()
            if item and len(item) <= limit and item.isascii() and item.isprintable() and len(item) <= 0xFFFF:
                return _ONE_ITEM + _u16(len(item)) + item.encode("ascii")
        return None
    if kind == _DATE and type(value) is _dt.date:  # not a datetime (a subclass): Field.encode refuses those
        return value.isoformat().encode("ascii")
    return None
