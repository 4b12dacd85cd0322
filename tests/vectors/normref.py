"""Reference text normalisers, written from docs/format.md section 10 alone.

This module re-implements the blind-index normalisers (`none`, `text`, `name`,
`email`, `phone`, `compact`) and `tokens()` using only the wording of
docs/format.md, "## 10. Blind indexes", paragraph **Normalisers**.  It was
written without reading vault/normalize.py, so that comparing the two tests the
specification, not the code.  It needs only the standard library and is meant to
run on Python 3.11 (Unicode 14.0 character database), as the spec requires.

Public API:

    normalize_ref(kind, value) -> str
    tokens_ref(n) -> list[str]

Where the spec text admits more than one reading, the choice made is stated in a
comment marked "AMBIGUITY".
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["KINDS", "normalize_ref", "tokens_ref"]

KINDS = ("none", "text", "name", "email", "phone", "compact")

# --------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s)


def is_whitespace(c: str) -> bool:
    """*whitespace*: general category Zs or bidirectional class WS, B or S.

    The spec says this is Python's `str.isspace`; it is spelled out here from the
    character database so that the equivalence is itself tested.
    """
    return (
        unicodedata.category(c) == "Zs"
        or unicodedata.bidirectional(c) in ("WS", "B", "S")
    )


def collapse(s: str) -> str:
    """Split on runs of whitespace, drop empty parts, join with one U+0020."""
    parts: list[str] = []
    cur: list[str] = []
    for c in s:
        if is_whitespace(c):
            if cur:
                parts.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        parts.append("".join(cur))
    return " ".join(parts)


def strip(s: str) -> str:
    """Remove leading and trailing whitespace (as defined above)."""
    i, j = 0, len(s)
    while i < j and is_whitespace(s[i]):
        i += 1
    while j > i and is_whitespace(s[j - 1]):
        j -= 1
    return s[i:j]


def casefold(s: str) -> str:
    # Unicode full case folding (CaseFolding.txt statuses C and F).  Python's
    # str.casefold implements exactly that table; no copy of CaseFolding.txt is
    # bundled here.
    return s.casefold()


def lower(s: str) -> str:
    return s.lower()


def upper(s: str) -> str:
    return s.upper()


# --------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------


def _text(v: str) -> str:
    # text: collapse(NFKC(casefold(NFKC(v))))
    return collapse(_nfkc(casefold(_nfkc(v))))


_NAME_MAP = {cp: "-" for cp in range(0x2010, 0x2016)}
_NAME_MAP[0x2212] = "-"
_NAME_MAP.update({0x2018: "'", 0x2019: "'", 0x02BC: "'", 0x0060: "'"})
_NAME_MAP[0x00AD] = None  # deleted

_STRIP_MARKS_SCRIPTS = ("LATIN ", "GREEK ", "CYRILLIC ")


def _base_strips_marks(base: str | None) -> bool:
    # AMBIGUITY: before the first character of canonical combining class 0 there
    # is no base.  "kept otherwise" is read as: marks with no base are kept.
    if base is None:
        return False
    # AMBIGUITY: characters with no Unicode name (controls, unassigned code
    # points, private use, noncharacters) cannot start with `LATIN ` etc., so
    # marks after them are kept.
    name = unicodedata.name(base, "")
    return name.startswith(_STRIP_MARKS_SCRIPTS)


def _name(v: str) -> str:
    f = _nfkc(casefold(_nfkc(v)))
    f = f.translate(_NAME_MAP)
    d = unicodedata.normalize("NFKD", f)
    out: list[str] = []
    base: str | None = None
    for c in d:
        if unicodedata.combining(c) == 0:
            # AMBIGUITY: only class-0 characters become the base; a kept
            # non-zero-class mark does not change it.
            base = c
            out.append(c)
        elif not _base_strips_marks(base):
            out.append(c)
    return collapse(unicodedata.normalize("NFC", "".join(out)))


def _email(v: str) -> str:
    # email: NFKC(lower(strip(NFKC(v))))
    return _nfkc(lower(strip(_nfkc(v))))


_LEADING_TRUNK = re.compile(r"^([0-9]{1,3})T")


def _phone(v: str) -> str:
    # (1) t = NFKC(v), every Nd character replaced by its ASCII digit.
    t = "".join(
        str(unicodedata.decimal(c)) if unicodedata.category(c) == "Nd" else c
        for c in _nfkc(v)
    )
    # (2) keep ASCII digits and parentheses; "(0)" -> T left to right; drop the
    # remaining parentheses.
    k = "".join(c for c in t if c in "0123456789()")
    k = k.replace("(0)", "T")  # non-overlapping, left to right
    k = k.replace("(", "").replace(")", "")
    # (3) international if the first ASCII digit or '+' of t is '+'.
    first = next((c for c in t if c in "+0123456789"), None)
    international = first == "+"
    # (4) otherwise a leading 00 (T read as 0) is an international prefix.
    if not international and k.replace("T", "0").startswith("00"):
        international = True
        if k.startswith("00"):
            k = k[2:]
        else:
            k = k.replace("T", "0")[2:]
    # (5) international: a T right after a 1-3 digit country code is deleted.
    if international:
        k = _LEADING_TRUNK.sub(r"\1", k, count=1)
    # (6) remaining T -> 0.
    k = k.replace("T", "0")
    if not k:
        return ""
    return ("+" if international else "") + k


_COMPACT_DELETE = {ord(c): None for c in "-.\u00ad\u2212"}
_COMPACT_DELETE.update({cp: None for cp in range(0x2010, 0x2016)})


def _compact(v: str) -> str:
    u = _nfkc(upper(_nfkc(casefold(_nfkc(v)))))
    u = "".join(c for c in u if not is_whitespace(c)).translate(_COMPACT_DELETE)
    return _nfkc(u)


_KIND_FUNCS = {
    "none": lambda v: v,
    "text": _text,
    "name": _name,
    "email": _email,
    "phone": _phone,
    "compact": _compact,
}


def normalize_ref(kind: str, value: str) -> str:
    """Normalise `value` with the normaliser `kind` (one of KINDS)."""
    try:
        fn = _KIND_FUNCS[kind]
    except KeyError:
        raise ValueError(f"unknown normalize kind {kind!r}") from None
    return fn(value)


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------

_TOKEN_SPLIT = re.compile(r"[ \-]+")


def tokens_ref(n: str) -> list[str]:
    """Tokens of a `name`-normalised string, in order of first appearance."""
    out: list[str] = []
    seen: set[str] = set()
    for part in _TOKEN_SPLIT.split(n):
        if len(part.rstrip(".")) < 2:
            continue
        # AMBIGUITY: duplicates are compared as whole parts, dots included
        # ("ab." and "ab" are both kept).
        if part in seen:
            continue
        seen.add(part)
        out.append(part)
    return out
