"""What a text or list value must be before it is sealed, and the list encoding.

Why these checks live below every writer (add, add_many, update, import): a value typed
at a desk, pasted from a PDF or read from a survey export reaches the vault through each
of them, and the rules must not depend on the door it came through.

* Text is stored in NFC: a name typed on a keyboard that composes ("é") and one pasted
  from a system that decomposes ("e" + U+0301) must read back, export and compare alike.
* Control characters are refused: NUL truncates the value in C tools and spreadsheets,
  ESC and the C1 controls drive terminals, and none of them is ever part of a name or an
  address. Tab and line feed are allowed only in a ``multiline`` field (a note).
* Every text field has a length cap (``max_length``, in characters after NFC): a 10,000
  character "name" is a pasted document or an attack on whoever displays it.

Errors name the field, the rule and where in the value (a character position), never
the value itself.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from collections.abc import Sequence
from typing import Any

from .errors import ValidationError

__all__ = ["clean_text", "encode_list", "decode_list", "list_items", "DEFAULT_MAX_LENGTH",
           "DEFAULT_ITEM_MAX_LENGTH", "DEFAULT_MAX_ITEMS"]

#: Characters of a single-line text field (a name, a number, an address line). 1,000
#: is several times the longest real name or postal line, and short enough that a
#: pasted document is refused rather than stored as someone's name.
DEFAULT_MAX_LENGTH = 1_000
#: Characters of one item of a list field (a dietary need, a session code).
DEFAULT_ITEM_MAX_LENGTH = 200
#: Items of a list field.
DEFAULT_MAX_ITEMS = 64

# C0 controls, DEL and C1 controls. Tab (U+0009) and line feed (U+000A) are checked apart.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TAB_OR_LF = re.compile("[\t\n]")


def clean_text(name: str, value: str, *, multiline: bool, max_length: int, what: str = "") -> str:
    """``value`` in NFC after checking it; raises ValidationError naming ``name`` only.

    ``what`` qualifies the subject of the message ("item 2 of ") for list items."""
    text = unicodedata.normalize("NFC", value)
    bad = _CONTROL.search(text) or (None if multiline else _TAB_OR_LF.search(text))
    if bad is not None:
        kind = "a line break or tab" if bad.group() in "\t\n" else "a control character"
        raise ValidationError(
            f"field {name!r} {what}contains {kind} (U+{ord(bad.group()):04X}) at character {bad.start() + 1}"
            + ("" if multiline or bad.group() not in "\t\n" else "; the field is single-line"),
            field=name)
    if len(text) > max_length:
        raise ValidationError(f"field {name!r} {what}is longer than {max_length:,} characters (max_length)",
                              field=name)
    return text


def encode_list(items: Sequence[str]) -> bytes:
    """``u16 count || count x (u16 length || UTF-8 item)``, big-endian (docs/format.md §3).

    The caller has checked and ordered the items; this only frames them."""
    out = [struct.pack(">H", len(items))]
    for item in items:
        data = item.encode("utf-8")
        out.append(struct.pack(">H", len(data)) + data)
    return b"".join(out)


def decode_list(data: bytes) -> list[str]:
    """The items of an encoded list; ValueError on any framing or UTF-8 fault (the record
    reader turns that into "field holds an invalid encoding")."""
    if len(data) < 2:
        raise ValueError("list too short")
    (count,), pos, out = struct.unpack_from(">H", data), 2, []
    for _ in range(count):
        if pos + 2 > len(data):
            raise ValueError("list item length missing")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise ValueError("list item runs past the end")
        out.append(data[pos:pos + n].decode("utf-8"))
        pos += n
    if pos != len(data):
        raise ValueError("bytes after the last list item")
    if len(set(out)) != len(out):
        raise ValueError("repeated list item")
    return out


def list_items(name: str, value: Any) -> list[str]:
    """The items of a list value given as a list or tuple of strings (a lone string is one
    item: ``{"dietary": "vegan"}`` means what it says)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"field {name!r} expects a list of text items", field=name)
    return list(value)
